//! Messages between modules through devhub over real sockets (TLS and WebSockets).

mod common;

use std::time::Duration;

use common::{manifest, next_input, Hub};
use edgemodule::{ErrorKind, Message, TransportKind};

const ROUTE_AB: (&str, &str) = (
    "ab",
    "FROM /messages/modules/a/outputs/out1 INTO BrokeredEndpoint(\"/modules/b/inputs/in1\")",
);

#[tokio::test(flavor = "multi_thread")]
async fn a_to_b_through_a_route_keeps_every_property() {
    let hub = Hub::start(&manifest(&["a", "b"], &[ROUTE_AB], serde_json::json!({}))).await;
    let a = hub.connected("a").await;
    let b = hub.connected("b").await;
    let msg = Message::new(b"{\"t\":21.5}".to_vec())
        .with_message_id("m-1")
        .with_correlation_id("c/1 & 2")
        .with_content_type("application/json")
        .with_content_encoding("utf-8")
        .with_property("k&=/%", "v \u{fc}&=?#+")
        .with_property("empty", "")
        .with_property("null", None::<String>);
    a.send_message_to_output("out1", msg).await.expect("PUBACK");
    let (input, got) = next_input(&b, Duration::from_secs(10)).await;
    assert_eq!(input, "in1");
    assert_eq!(got.input_name.as_deref(), Some("in1"));
    assert_eq!(got.body, b"{\"t\":21.5}");
    assert_eq!(got.message_id.as_deref(), Some("m-1"));
    assert_eq!(got.correlation_id.as_deref(), Some("c/1 & 2"));
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(got.content_encoding.as_deref(), Some("utf-8"));
    assert_eq!(got.property("k&=/%"), Some("v \u{fc}&=?#+"));
    assert_eq!(got.property("empty"), Some(""));
    assert!(got.has_property("null"));
    assert_eq!(got.property("null"), None);
    assert_eq!(got.connection_module_id.as_deref(), Some("a"));
    assert_eq!(
        got.connection_device_id.as_deref(),
        Some(hub.dh().device_id())
    );
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_over_websockets() {
    let hub = Hub::start(&manifest(&["a", "b"], &[ROUTE_AB], serde_json::json!({}))).await;
    let mut opts = hub.options();
    opts.transport = TransportKind::MqttWebSocket;
    opts.mqtt_port = Some(hub.dh().addresses().https.port());
    let a = hub.client_with("a", opts);
    a.connect().await.expect("connects over WebSockets");
    let b = hub.connected("b").await;
    a.send_message_to_output("out1", Message::new(b"ws".to_vec()))
        .await
        .unwrap();
    let (_, got) = next_input(&b, Duration::from_secs(10)).await;
    assert_eq!(got.body, b"ws");
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_batch_in_order_and_offline_target_gets_them_later() {
    let hub = Hub::start(&manifest(&["a", "b"], &[ROUTE_AB], serde_json::json!({}))).await;
    let a = hub.connected("a").await;
    // b has never connected: devhub stores its messages.
    let batch: Vec<Message> = (0..500)
        .map(|i| Message::new(format!("{i}").into_bytes()))
        .collect();
    let results = a.send_messages_to_output("out1", batch).await;
    assert_eq!(results.len(), 500);
    assert!(
        results.iter().all(|r| r.is_ok()),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    let b = hub.connected("b").await;
    for i in 0..500 {
        let (_, got) = next_input(&b, Duration::from_secs(10)).await;
        assert_eq!(got.body, format!("{i}").into_bytes(), "order kept");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unacked_input_is_redelivered_after_reconnect() {
    let hub = Hub::start(&manifest(&["a", "b"], &[ROUTE_AB], serde_json::json!({}))).await;
    let a = hub.connected("a").await;
    let b = hub.connected("b").await;
    a.send_message_to_output("out1", Message::new(b"once".to_vec()))
        .await
        .unwrap();
    // Take it without acking, as a handler that crashed would.
    let first = common::next_matching(&b, Duration::from_secs(10), |ev| match ev {
        edgemodule::Event::InputMessage { message, ack, .. } => Some((message, ack)),
        _ => None,
    })
    .await;
    assert_eq!(first.0.body, b"once");
    drop(first);
    b.close().await;
    let b2 = hub.connected("b").await;
    let (_, again) = next_input(&b2, Duration::from_secs(10)).await;
    assert_eq!(again.body, b"once");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_messages_fail_before_sending() {
    let hub = Hub::start(&manifest(&["a"], &[], serde_json::json!({}))).await;
    let a = hub.connected("a").await;
    let e = a
        .send_message_to_output("out1", Message::new(vec![b'x'; 256 * 1024 + 1]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::MessageTooLarge);
    // The connection is unharmed.
    a.send_message_to_output("out1", Message::new(vec![b'x'; 200 * 1024]))
        .await
        .expect("a large but legal message goes through");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_route_reaches_the_feed() {
    let hub = Hub::start(&manifest(
        &["a"],
        &[(
            "up",
            "FROM /messages/modules/a/* WHERE alert = 'yes' INTO $upstream",
        )],
        serde_json::json!({}),
    ))
    .await;
    let a = hub.connected("a").await;
    a.send_message_to_output(
        "o",
        Message::new(b"no".to_vec()).with_property("alert", "no"),
    )
    .await
    .unwrap();
    a.send_message_to_output(
        "o",
        Message::new(b"yes".to_vec()).with_property("alert", "yes"),
    )
    .await
    .unwrap();
    let recent = hub.dh().hub().upstream_recent();
    let bodies: Vec<Vec<u8>> = recent.iter().map(|u| u.message.body.clone()).collect();
    assert_eq!(bodies, vec![b"yes".to_vec()]);
}
