//! The HTTPS API: service twins and methods, module-to-module invoke, devhub's own endpoints.

mod common;

use common::{https, https_get, https_post, Via};
use edgemodule::protocol::sas;
use http::{Method, StatusCode};
use serde_json::{json, Value};

const JSON_UTF8: &str = "application/json; charset=utf-8";

fn service_token(hub: &edgemodule_devhub::DevHub, key_b64: &str, expiry: u64) -> String {
    let sr = sas::encode_resource_uri(hub.hub_host_name());
    let sig = sas::sign(
        &sas::decode_key(key_b64).unwrap(),
        sas::string_to_sign(&sr, expiry).as_bytes(),
    );
    format!("{}&skn=iothubowner", sas::token(&sr, &sig, expiry))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn unknown_paths_and_bad_api_version() {
    let (hub, _dir) = common::start_hub().await;
    for path in ["/", "/nope", "/twins/devhub-device", "/devhub/nope"] {
        let r = https_get(&hub, path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.content_type(), JSON_UTF8);
        assert_eq!(r.json(), json!({"message": "not found"}));
    }
    let r = https_get(
        &hub,
        "/twins/devhub-device/modules/sensor?api-version=bogus",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = https_get(
        &hub,
        "/twins/devhub-device/modules/sensor?api-version=2021-04-12",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = https(
        &hub,
        Method::DELETE,
        "/twins/devhub-device/modules/sensor",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    hub.stop().await;
}

#[tokio::test]
async fn twin_get_patch_put() {
    let (hub, _dir) = common::start_hub().await;
    let path = "/twins/devhub-device/modules/sensor?api-version=2021-04-12";
    let r = https_get(&hub, path).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), JSON_UTF8);
    let t = r.json();
    assert_eq!(t["deviceId"], "devhub-device");
    assert_eq!(t["moduleId"], "sensor");

    let patch = json!({"properties":{"desired":{"interval":5}}}).to_string();
    let r = https(
        &hub,
        Method::PATCH,
        path,
        &[("content-type", "application/json"), ("if-match", "*")],
        patch,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["properties"]["desired"]["interval"], 5);
    let r = https_get(&hub, path).await;
    assert_eq!(r.json()["properties"]["desired"]["interval"], 5);

    for bad in ["{not json", ""] {
        let r = https(&hub, Method::PATCH, path, &[], bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(
            r.message().starts_with("malformed JSON body"),
            "{}",
            r.message()
        );
        let r = https(&hub, Method::PUT, path, &[], bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }
    let r = https_get(&hub, "/twins/devhub-device/modules/ghost").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = https_get(&hub, "/twins/other-device/modules/sensor").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.message(), "Device other-device not found");
    hub.stop().await;
}

#[tokio::test]
async fn service_sas_is_checked_when_present() {
    let (hub, _dir) = common::start_hub().await;
    let keys = edgemodule_devhub::state::Keys::load(hub.state_dir()).unwrap();
    let key = keys.service_key().unwrap().to_owned();
    let path = "/twins/devhub-device/modules/sensor";
    let good = service_token(&hub, &key, now() + 600);
    let r = https(&hub, Method::GET, path, &[("authorization", &good)], "").await;
    assert_eq!(r.status, StatusCode::OK);

    let wrong_key = service_token(&hub, &edgemodule_devhub::state::random_key(), now() + 600);
    let expired = service_token(&hub, &key, now() - 3600);
    let no_skn = good.replace("&skn=iothubowner", "");
    for bad in [
        wrong_key.as_str(),
        expired.as_str(),
        no_skn.as_str(),
        "Bearer x",
    ] {
        let r = https(&hub, Method::GET, path, &[("authorization", bad)], "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(r.content_type(), JSON_UTF8);
    }
    hub.stop().await;
}

#[tokio::test]
async fn inject_status_upstream_and_faults() {
    let (hub, _dir) = common::start_hub().await;
    let r = https(
        &hub,
        Method::POST,
        "/devhub/modules/filter/inputs/in1?api-version=2021-04-12&temp=21&Mixed=Case",
        &[
            ("content-type", "application/json"),
            ("x-devhub-prop-alert", "yes"),
        ],
        r#"{"t":21}"#,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = https_post(&hub, "/devhub/modules/ghost/inputs/in1", "x").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = https_get(&hub, "/devhub/modules/filter/inputs/in1").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);

    let r = https_get(&hub, "/devhub/status").await;
    assert_eq!(r.status, StatusCode::OK);
    let s = r.json();
    assert_eq!(s["deviceId"], "devhub-device");
    assert_eq!(s["queues"]["devhub-device/filter/in1"], 1, "{s}");

    let r = https_get(&hub, "/devhub/upstream").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!([]));

    // The stored message reaches the module when it connects, with its properties.
    let (client, mut el) = common::mqtt(&hub, "filter", Via::Plain).await;
    client
        .subscribe(
            "devices/devhub-device/modules/filter/inputs/#",
            rumqttc::QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    let publish = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = el.poll().await.unwrap()
            {
                return p;
            }
        }
    })
    .await
    .expect("input message delivered");
    assert!(
        publish
            .topic
            .starts_with("devices/devhub-device/modules/filter/inputs/in1/"),
        "{}",
        publish.topic
    );
    assert!(publish.topic.contains("temp=21"), "{}", publish.topic);
    assert!(publish.topic.contains("Mixed=Case"), "{}", publish.topic);
    assert!(publish.topic.contains("alert=yes"), "{}", publish.topic);
    assert!(
        publish.topic.contains("%24.ct=application%2Fjson"),
        "{}",
        publish.topic
    );
    assert!(!publish.topic.contains("api-version"), "{}", publish.topic);
    assert_eq!(&publish.payload[..], br#"{"t":21}"#);

    for (path, status) in [
        ("/devhub/faults/refuse?secs=1", StatusCode::OK),
        ("/devhub/faults/refuse", StatusCode::BAD_REQUEST),
        ("/devhub/faults/refuse?secs=x", StatusCode::BAD_REQUEST),
        (
            "/devhub/faults/twin-errors?status=500&count=1",
            StatusCode::OK,
        ),
        (
            "/devhub/faults/twin-errors?status=42",
            StatusCode::BAD_REQUEST,
        ),
        ("/devhub/faults/bogus", StatusCode::NOT_FOUND),
        ("/devhub/faults/drop-connections", StatusCode::OK),
    ] {
        let r = https_post(&hub, path, "").await;
        assert_eq!(
            r.status,
            status,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let r = https_get(&hub, "/devhub/faults/disconnect").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    hub.stop().await;
}

/// Answers every method request on `el` with status 200 and `{"echo": payload}`.
fn serve_methods(client: rumqttc::AsyncClient, mut el: rumqttc::EventLoop) {
    tokio::spawn(async move {
        while let Ok(ev) = el.poll().await {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = ev {
                let t = edgemodule::protocol::topics::parse_method_request_topic(&p.topic).unwrap();
                let payload: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                let body = json!({"method": t.name, "echo": payload}).to_string();
                let topic = edgemodule::protocol::topics::method_response_topic(200, &t.rid);
                let c = client.clone();
                tokio::spawn(async move {
                    c.publish(topic, rumqttc::QoS::AtLeastOnce, false, body)
                        .await
                });
            }
        }
    });
}

#[tokio::test]
async fn service_and_module_to_module_invoke() {
    let (hub, _dir) = common::start_hub().await;
    let path = "/twins/devhub-device/modules/sensor/methods?api-version=2021-04-12";
    let call = json!({"methodName":"reboot","payload":{"delay":1},"responseTimeoutInSeconds":10,"connectTimeoutInSeconds":0}).to_string();

    // Target offline, connectTimeout 0: 404.
    let r = https_post(&hub, path, call.clone()).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.content_type(), JSON_UTF8);

    let (client, el) = common::mqtt(&hub, "sensor", Via::Tls).await;
    client
        .subscribe("$iothub/methods/POST/#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    serve_methods(client, el);
    // connectTimeout covers the subscription race.
    let call = json!({"methodName":"reboot","payload":{"delay":1},"responseTimeoutInSeconds":10,"connectTimeoutInSeconds":5}).to_string();

    let r = https(
        &hub,
        Method::POST,
        path,
        &[("content-type", "application/json")],
        call.clone(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.content_type(), JSON_UTF8);
    assert_eq!(
        r.json(),
        json!({"status": 200, "payload": {"method": "reboot", "echo": {"delay": 1}}})
    );

    // Module to module: filter calls sensor with its own SAS.
    let key = sas::decode_key(&hub.module_key("filter").unwrap()).unwrap();
    let token = sas::module_token(
        hub.hub_host_name(),
        hub.device_id(),
        "filter",
        &key,
        now() + 600,
    );
    let m2m = "/twins/devhub-device/modules/sensor/methods?api-version=2019-10-01";
    let r = https(
        &hub,
        Method::POST,
        m2m,
        &[
            ("x-ms-edge-moduleId", "devhub-device/filter"),
            ("authorization", &token),
        ],
        call.clone(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["status"], 200);

    let sensor_key = sas::decode_key(&hub.module_key("sensor").unwrap()).unwrap();
    let wrong = sas::module_token(
        hub.hub_host_name(),
        hub.device_id(),
        "filter",
        &sensor_key,
        now() + 600,
    );
    for (headers, status, message) in [
        (
            vec![
                ("x-ms-edge-moduleId", "nodevice"),
                ("authorization", token.as_str()),
            ],
            400,
            "Invalid header value for x-ms-edge-moduleId",
        ),
        (
            vec![
                ("x-ms-edge-moduleId", "devhub-device/"),
                ("authorization", token.as_str()),
            ],
            400,
            "Invalid header value for x-ms-edge-moduleId",
        ),
        (
            vec![
                ("x-ms-edge-moduleId", "other/filter"),
                ("authorization", token.as_str()),
            ],
            401,
            "Only modules on the same device can invoke DirectMethods",
        ),
        (
            vec![("x-ms-edge-moduleId", "devhub-device/filter")],
            401,
            "missing Authorization header",
        ),
        (
            vec![
                ("x-ms-edge-moduleId", "devhub-device/filter"),
                ("authorization", wrong.as_str()),
            ],
            401,
            "Unauthorized",
        ),
        // A token for filter presented as sensor.
        (
            vec![
                ("x-ms-edge-moduleId", "devhub-device/sensor"),
                ("authorization", token.as_str()),
            ],
            401,
            "Unauthorized",
        ),
    ] {
        let r = https(&hub, Method::POST, m2m, &headers, call.clone()).await;
        assert_eq!(r.status.as_u16(), status, "{headers:?}");
        assert_eq!(r.message(), message);
        assert_eq!(r.content_type(), JSON_UTF8);
    }

    for bad in [
        "{not json".to_owned(),
        json!({"payload":1}).to_string(),
        json!({"methodName":"m","responseTimeoutInSeconds":1}).to_string(),
    ] {
        let r = https_post(&hub, path, bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        let r = https(
            &hub,
            Method::POST,
            m2m,
            &[
                ("x-ms-edge-moduleId", "devhub-device/filter"),
                ("authorization", &token),
            ],
            bad.clone(),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn device_methods_have_no_target() {
    let (hub, _dir) = common::start_hub().await;
    let call =
        json!({"methodName":"reboot","payload":null,"responseTimeoutInSeconds":5}).to_string();
    let service_key = edgemodule_devhub::state::Keys::load(hub.state_dir())
        .unwrap()
        .service_key()
        .unwrap()
        .to_owned();
    let service = service_token(&hub, &service_key, now() + 600);
    let module_key = sas::decode_key(&hub.module_key("filter").unwrap()).unwrap();
    let module = sas::module_token(
        hub.hub_host_name(),
        hub.device_id(),
        "filter",
        &module_key,
        now() + 600,
    );
    let by_module = [
        ("x-ms-edge-moduleId", "devhub-device/filter"),
        ("authorization", module.as_str()),
    ];
    let by_service = [("authorization", service.as_str())];
    // Service (SAS or loopback without one) and module callers alike: 404, edgeHub's wording.
    for headers in [&by_service[..], &by_module[..], &[]] {
        let r = https(
            &hub,
            Method::POST,
            "/twins/leaf-1/methods?api-version=2021-04-12",
            headers,
            call.clone(),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{headers:?}");
        assert_eq!(r.content_type(), JSON_UTF8);
        assert_eq!(r.json(), json!({"message": "Device leaf-1 not found"}));
    }
    // The edge device itself has no device client either: the message points at modules.
    let r = https(
        &hub,
        Method::POST,
        "/twins/devhub-device/methods",
        &by_service,
        call.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.message()
            .starts_with("Device devhub-device not found: devhub has no leaf devices"),
        "{}",
        r.message()
    );
    assert!(
        r.message()
            .contains("/twins/devhub-device/modules/{moduleId}/methods"),
        "{}",
        r.message()
    );
    // Authorization still comes first; other methods are refused.
    let wrong = service_token(&hub, &edgemodule_devhub::state::random_key(), now() + 600);
    let r = https(
        &hub,
        Method::POST,
        "/twins/leaf-1/methods",
        &[("authorization", &wrong)],
        call.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = https(
        &hub,
        Method::POST,
        "/twins/leaf-1/methods",
        &[("x-ms-edge-moduleId", "devhub-device/filter")],
        call.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = https_get(&hub, "/twins/leaf-1/methods").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    hub.stop().await;
}
