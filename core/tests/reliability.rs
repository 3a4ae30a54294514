//! Reconnects, token renewal, the offline queue and shutdown, against devhub over real sockets.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{free_port, manifest, next_input, next_matching, Hub};
use edgemodule::{ConnectionStatus, ErrorKind, Event, Message, ModuleClient, StatusReason};

const ROUTE_AB: (&str, &str) = (
    "ab",
    "FROM /messages/modules/a/outputs/out1 INTO BrokeredEndpoint(\"/modules/b/inputs/in1\")",
);

/// Send `count` sequence-numbered messages from a at `every`, while `during` runs; then check
/// that b received every number.
async fn stream_and_check(
    a: &ModuleClient,
    b: &ModuleClient,
    count: u32,
    every: Duration,
    during: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let disturb = tokio::spawn(during);
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut waits = Vec::new();
            for i in 0..count {
                let a = a.clone();
                waits.push(tokio::spawn(async move {
                    a.send_message_to_output("out1", Message::new(i.to_string().into_bytes()))
                        .await
                }));
                tokio::time::sleep(every).await;
            }
            for (i, w) in waits.into_iter().enumerate() {
                w.await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("message {i} failed: {e}"));
            }
        })
    };
    let mut seen = BTreeSet::new();
    while seen.len() < count as usize {
        let (_, m) = next_input(b, Duration::from_secs(60)).await;
        let n: u32 = String::from_utf8(m.body).unwrap().parse().unwrap();
        seen.insert(n);
    }
    sender.await.unwrap();
    disturb.await.unwrap();
    assert_eq!(seen, (0..count).collect::<BTreeSet<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn devhub_restart_mid_stream_loses_nothing() {
    let hub =
        Hub::start_restartable(&manifest(&["a", "b"], &[ROUTE_AB], serde_json::json!({}))).await;
    let a = hub.connected("a").await;
    let b = hub.connected("b").await;
    let hub = std::sync::Arc::new(tokio::sync::Mutex::new(hub));
    let h = hub.clone();
    stream_and_check(&a, &b, 300, Duration::from_millis(10), async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let mut hub = h.lock().await;
        hub.stop().await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        hub.restart().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_connections_mid_stream_lose_nothing() {
    let hub = Hub::start(&manifest(&["a", "b"], &[ROUTE_AB], serde_json::json!({}))).await;
    let a = hub.connected("a").await;
    let b = hub.connected("b").await;
    let hubref = hub.dh().hub();
    stream_and_check(&a, &b, 300, Duration::from_millis(5), async move {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            hubref.faults().drop_connections();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn short_sas_ttl_renews_without_loss() {
    let hub = Hub::start(&manifest(&["a", "b"], &[ROUTE_AB], serde_json::json!({}))).await;
    let mut opts = hub.options();
    opts.sas_ttl = Duration::from_secs(5);
    let a = hub.client_with("a", opts.clone());
    a.connect().await.unwrap();
    let b = hub.client_with("b", opts);
    b.connect().await.unwrap();
    // 30 s of traffic: each client renews its token (and reconnects) about every 4 s.
    stream_and_check(&a, &b, 300, Duration::from_millis(100), async {}).await;
    // The renewals were announced as status events with their reason.
    let mut renewals = 0;
    while let Some(ev) = a.try_next_event() {
        if let Event::ConnectionStatus {
            reason: StatusReason::ExpiredSasToken,
            ..
        } = ev
        {
            renewals += 1;
        }
    }
    assert!(renewals >= 5, "{renewals} token renewals seen in 30 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_queue_is_bounded_and_observable() {
    let mut hub = Hub::start(&manifest(&["a", "b"], &[ROUTE_AB], serde_json::json!({}))).await;
    let mut opts = hub.options();
    opts.offline_queue_limit = 5;
    opts.mqtt_port = Some(free_port()); // nothing listens: the client stays offline
    let a = hub.client_with("a", opts);
    let _ = tokio::time::timeout(Duration::from_millis(300), a.connect()).await;
    let mut waits = Vec::new();
    for i in 0..5 {
        let a = a.clone();
        waits.push(tokio::spawn(async move {
            a.send_message_to_output("out1", Message::new(vec![i]))
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = a.queue_stats();
    assert_eq!(stats.depth, 5);
    assert!(stats.oldest_age.is_some());
    let e = a
        .send_message_to_output("out1", Message::new(b"6th".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::QueueFull);
    a.close().await;
    for w in waits {
        assert_eq!(w.await.unwrap().unwrap_err().kind, ErrorKind::Closed);
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_messages_past_the_age_limit_fail_with_timeout() {
    let hub = Hub::start(&manifest(&["a"], &[], serde_json::json!({}))).await;
    let mut opts = hub.options();
    opts.offline_queue_max_age = Duration::from_millis(400);
    opts.mqtt_port = Some(free_port()); // nothing listens: the client stays offline
    let a = hub.client_with("a", opts);
    let _ = tokio::time::timeout(Duration::from_millis(100), a.connect()).await;
    let started = std::time::Instant::now();
    let e = a
        .send_message_to_output("out1", Message::new(b"late".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(a.queue_stats().depth, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_events_and_close() {
    let hub = Hub::start(&manifest(&["a"], &[], serde_json::json!({}))).await;
    let a = hub.connected("a").await;
    let (status, reason) = next_matching(&a, Duration::from_secs(5), |ev| match ev {
        Event::ConnectionStatus { status, reason } => Some((status, reason)),
        _ => None,
    })
    .await;
    assert_eq!(
        (status, reason),
        (ConnectionStatus::Connected, StatusReason::ConnectionOk)
    );
    hub.dh().hub().faults().drop_connections();
    let (status, reason) = next_matching(&a, Duration::from_secs(5), |ev| match ev {
        Event::ConnectionStatus { status, reason } => Some((status, reason)),
        _ => None,
    })
    .await;
    assert!(
        matches!(
            status,
            ConnectionStatus::DisconnectedRetrying { attempt: 1, .. }
        ),
        "{status:?}"
    );
    assert_eq!(reason, StatusReason::CommunicationError);
    next_matching(&a, Duration::from_secs(5), |ev| match ev {
        Event::ConnectionStatus {
            status: ConnectionStatus::Connected,
            ..
        } => Some(()),
        _ => None,
    })
    .await;
    a.close().await;
    assert!(a.next_event().await.is_none());
    let e = a
        .send_message_to_output("o", Message::new(b"x".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Closed);
    assert_eq!(a.get_twin().await.unwrap_err().kind, ErrorKind::Closed);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_key_is_refused_with_an_authentication_error() {
    let hub = Hub::start(&manifest(&["a"], &[], serde_json::json!({}))).await;
    let cs = hub.dh().connection_string("a").unwrap();
    let key_start = cs.find("SharedAccessKey=").unwrap() + "SharedAccessKey=".len();
    let key_end = cs[key_start..]
        .find(';')
        .map(|i| key_start + i)
        .unwrap_or(cs.len());
    let bad = format!(
        "{}{}{}",
        &cs[..key_start],
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        &cs[key_end..]
    );
    let c = ModuleClient::from_connection_string(&bad, hub.options()).unwrap();
    let e = c.connect().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Authentication, "{e}");
    assert!(!e.message.contains("AAAAAAAA"));
}

#[test]
fn bad_connection_strings_name_the_field() {
    let opts = edgemodule::ClientOptions {
        trust_bundle_pem: Some("x".into()),
        ..Default::default()
    };
    let cases = [
        ("DeviceId=d;ModuleId=m;SharedAccessKey=a2V5", "HostName"),
        ("HostName=h;ModuleId=m;SharedAccessKey=a2V5", "DeviceId"),
        ("HostName=h;DeviceId=d;SharedAccessKey=a2V5", "ModuleId"),
        ("HostName=h;DeviceId=d;ModuleId=m", "SharedAccessKey"),
        (
            "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=!!notbase64",
            "SharedAccessKey",
        ),
        (
            "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5;GatewayHostName=gw:notaport",
            "GatewayHostName",
        ),
        ("garbage", ""),
    ];
    for (cs, field) in cases {
        let e = ModuleClient::from_connection_string(cs, opts.clone()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Configuration, "{cs}");
        assert!(e.message.contains(field), "{cs}: {}", e.message);
        assert!(!e.message.contains("notbase64"), "{}", e.message);
    }
}
