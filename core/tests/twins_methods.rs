//! Twins and direct methods against devhub over real sockets.

mod common;

use std::time::Duration;

use common::{manifest, next_matching, Hub};
use edgemodule::{ErrorKind, Event};
use serde_json::json;

fn desired_patch(ev: Event) -> Option<(serde_json::Value, Option<i64>)> {
    match ev {
        Event::DesiredPropertiesPatch { patch, version } => Some((patch, version)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn twin_get_patch_and_desired_updates() {
    let hub = Hub::start(&manifest(
        &["f"],
        &[],
        json!({"f": {"TemperatureThreshold": 25}}),
    ))
    .await;
    let f = hub.connected("f").await;
    let twin = f.get_twin().await.expect("twin");
    assert_eq!(twin.desired["TemperatureThreshold"], json!(25));
    let v0 = twin.desired_version().expect("desired $version");

    f.patch_reported(json!({"threshold": 25, "nested": {"a": 1}}))
        .await
        .expect("reported patch accepted");
    f.patch_reported(json!({"nested": {"a": null, "b": 2}}))
        .await
        .unwrap();
    let twin = f.get_twin().await.unwrap();
    assert_eq!(twin.reported["threshold"], json!(25));
    assert_eq!(twin.reported["nested"], json!({"b": 2}));

    hub.dh()
        .hub()
        .update_twin(
            "f",
            json!({"properties": {"desired": {"TemperatureThreshold": 30}}}),
            None,
        )
        .expect("service patch");
    let (patch, version) = next_matching(&f, Duration::from_secs(10), desired_patch).await;
    assert_eq!(patch["TemperatureThreshold"], json!(30));
    assert_eq!(version, Some(v0 + 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_reported_patches_are_refused_locally() {
    let hub = Hub::start(&manifest(&["f"], &[], json!({}))).await;
    let f = hub.connected("f").await;
    for bad in [
        json!([1, 2]),
        json!({"a.b": 1}),
        json!({"$x": 1}),
        json!("text"),
    ] {
        let e = f.patch_reported(bad.clone()).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn desired_change_made_while_disconnected_arrives_after_reconnect() {
    let mut hub = Hub::start_restartable(&manifest(&["f"], &[], json!({"f": {"x": 1}}))).await;
    let f = hub.connected("f").await;
    let v0 = f.get_twin().await.unwrap().desired_version().unwrap();
    // Take the hub away, change the twin while the module cannot hear it, bring it back.
    hub.stop().await;
    hub.restart().await;
    // The client reconnects by itself; make the change right after devhub is back but before
    // the client is (the backoff is at least 50 ms).
    hub.dh()
        .hub()
        .update_twin("f", json!({"properties": {"desired": {"x": 2}}}), None)
        .unwrap();
    let (patch, version) = next_matching(&f, Duration::from_secs(15), desired_patch).await;
    assert_eq!(patch["x"], json!(2), "{patch}");
    assert_eq!(version, Some(v0 + 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn twin_errors_from_the_hub_surface_with_status() {
    let hub = Hub::start(&manifest(&["f"], &[], json!({}))).await;
    let f = hub.connected("f").await;
    // 500s are retried: two failures, then success.
    hub.dh().hub().faults().fail_twin_requests(500, 2);
    f.get_twin().await.expect("retried past two 500s");
    // A 400-class answer is not retried.
    hub.dh().hub().faults().fail_twin_requests(403, 1);
    let e = f.get_twin().await.unwrap_err();
    assert_eq!(e.status, Some(403), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn method_invoked_by_the_service_is_answered() {
    let hub = Hub::start(&manifest(&["f"], &[], json!({}))).await;
    let f = hub.connected("f").await;
    let responder = {
        let f = f.clone();
        tokio::spawn(async move {
            let (rid, name, payload) = next_matching(&f, Duration::from_secs(10), |ev| match ev {
                Event::MethodRequest {
                    request_id,
                    name,
                    payload,
                } => Some((request_id, name, payload)),
                _ => None,
            })
            .await;
            assert_eq!(name, "reset");
            assert_eq!(payload, json!({"to": 5}));
            f.respond_method(&rid, 200, json!({"threshold": 5}))
                .await
                .unwrap();
        })
    };
    let result = hub
        .dh()
        .hub()
        .invoke_method(
            "f",
            "reset",
            json!({"to": 5}),
            Duration::from_secs(10),
            Duration::from_secs(5),
        )
        .await
        .expect("method result");
    assert_eq!(result.status, 200);
    assert_eq!(result.payload, json!({"threshold": 5}));
    responder.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn module_to_module_invoke_and_its_timeouts() {
    let hub = Hub::start(&manifest(&["caller", "target", "absent"], &[], json!({}))).await;
    let caller = hub.connected("caller").await;
    let target = hub.connected("target").await;
    let device = hub.dh().device_id().to_string();
    let t = target.clone();
    tokio::spawn(async move {
        while let Some(ev) = t.next_event().await {
            if let Event::MethodRequest {
                request_id,
                name,
                payload,
                ..
            } = ev
            {
                if name == "echo" {
                    t.respond_method(&request_id, 201, payload).await.unwrap();
                }
                // "slow": never answered.
            }
        }
    });
    let r = caller
        .invoke_method(
            &device,
            "target",
            "echo",
            json!({"n": [1, 2]}),
            Duration::from_secs(10),
            Duration::from_secs(0),
        )
        .await
        .expect("echo answered");
    assert_eq!(r.status, 201);
    assert_eq!(r.payload, json!({"n": [1, 2]}));

    let e = caller
        .invoke_method(
            &device,
            "target",
            "slow",
            json!(null),
            Duration::from_secs(5),
            Duration::from_secs(0),
        )
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::Timeout, Some(504)), "{e}");

    let e = caller
        .invoke_method(
            &device,
            "absent",
            "x",
            json!(null),
            Duration::from_secs(5),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::NotFound, Some(404)), "{e}");
}
