//! Broker mode: user topics against a real mosquitto (the harness starts it on a free port) and
//! against devhub's MQTT broker (schema 1.2 authorization policy).

mod common;

use std::time::Duration;

use common::{free_port, next_matching, start_mosquitto_on, Hub, Mosquitto};
use edgemodule::{BrokerOptions, ClientOptions, ErrorKind, Event, ModuleClient};

fn start_mosquitto() -> Mosquitto {
    start_mosquitto_on(free_port())
}

fn broker_client(port: u16, id: &str) -> ModuleClient {
    let mut opts = ClientOptions::default();
    opts.backoff.min = Duration::from_millis(50);
    opts.backoff.max = Duration::from_millis(500);
    ModuleClient::from_broker(
        BrokerOptions {
            host: "127.0.0.1".into(),
            port,
            client_id: id.into(),
            ..Default::default()
        },
        opts,
    )
    .unwrap()
}

fn topic_message(ev: Event) -> Option<(String, Vec<u8>)> {
    match ev {
        Event::TopicMessage { topic, payload, .. } => Some((topic, payload)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_subscribe_through_mosquitto() {
    let m = start_mosquitto();
    let sub = broker_client(m.port, "sub-1");
    sub.connect().await.unwrap();
    sub.subscribe("sensors/+/temp", 1).await.unwrap();
    let publ = broker_client(m.port, "pub-1");
    publ.connect().await.unwrap();
    publ.publish("sensors/7/temp", b"21.5".to_vec(), 1)
        .await
        .unwrap();
    publ.publish("other/topic", b"no".to_vec(), 1)
        .await
        .unwrap();
    publ.publish("sensors/8/temp", b"22".to_vec(), 0)
        .await
        .unwrap();
    let got = next_matching(&sub, Duration::from_secs(5), topic_message).await;
    assert_eq!(got, ("sensors/7/temp".to_string(), b"21.5".to_vec()));
    let got = next_matching(&sub, Duration::from_secs(5), topic_message).await;
    assert_eq!(got, ("sensors/8/temp".to_string(), b"22".to_vec()));

    sub.unsubscribe("sensors/+/temp").await.unwrap();
    publ.publish("sensors/9/temp", b"gone".to_vec(), 1)
        .await
        .unwrap();
    let none = tokio::time::timeout(
        Duration::from_millis(500),
        next_matching(&sub, Duration::from_secs(5), topic_message),
    )
    .await;
    assert!(none.is_err(), "no message after unsubscribe");
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_subscriptions_survive_a_broker_restart() {
    let m = start_mosquitto();
    let port = m.port;
    let sub = broker_client(port, "sub-2");
    sub.connect().await.unwrap();
    sub.subscribe("alerts/#", 1).await.unwrap();
    drop(m); // mosquitto without persistence forgets every session
    let _m2 = start_mosquitto_on(port);
    next_matching(&sub, Duration::from_secs(10), |ev| match ev {
        Event::ConnectionStatus {
            status: edgemodule::ConnectionStatus::Connected,
            ..
        } => Some(()),
        _ => None,
    })
    .await;
    let publ = broker_client(port, "pub-2");
    publ.connect().await.unwrap();
    // The client re-subscribed by itself although the new broker had no session for it.
    let mut got = None;
    for _ in 0..20 {
        publ.publish("alerts/fire", b"!".to_vec(), 1).await.unwrap();
        if let Ok(v) = tokio::time::timeout(
            Duration::from_millis(250),
            next_matching(&sub, Duration::from_secs(5), topic_message),
        )
        .await
        {
            got = Some(v);
            break;
        }
    }
    assert_eq!(got, Some(("alerts/fire".to_string(), b"!".to_vec())));
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_mode_input_validation() {
    let c = broker_client(1, "x");
    assert_eq!(
        c.publish("a/+", vec![], 1).await.unwrap_err().kind,
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        c.subscribe("a/#/b", 1).await.unwrap_err().kind,
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        c.publish("a", vec![], 2).await.unwrap_err().kind,
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        c.send_message(edgemodule::Message::new(b"x".to_vec()))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::InvalidArgument
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_topics_between_modules_through_devhub() {
    let manifest = serde_json::json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "modules": {
            "pub": {"type": "docker", "settings": {"image": "x"}},
            "sub": {"type": "docker", "settings": {"image": "x"}},
            "nosy": {"type": "docker", "settings": {"image": "x"}}}}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.2", "routes": {},
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200},
            "mqttBroker": {"authorizations": [
                {"identities": ["{{iot:identity}}"], "allow": [{"operations": ["mqtt:connect"]}]},
                {"identities": ["devhub.local/devhub-device/pub"], "allow": [{"operations": ["mqtt:publish"], "resources": ["alerts/#"]}]},
                {"identities": ["devhub.local/devhub-device/sub"], "allow": [{"operations": ["mqtt:subscribe"], "resources": ["alerts/#"]}]}
            ]}}}
    }});
    let hub = Hub::start(&manifest.to_string()).await;
    let sub = hub.connected("sub").await;
    sub.subscribe("alerts/#", 1).await.unwrap();
    let nosy = hub.connected("nosy").await;
    assert!(
        nosy.subscribe("alerts/#", 1).await.is_err(),
        "denied by policy"
    );
    let publ = hub.connected("pub").await;
    publ.publish("alerts/fire", b"hot".to_vec(), 1)
        .await
        .unwrap();
    let got = next_matching(&sub, Duration::from_secs(5), topic_message).await;
    assert_eq!(got, ("alerts/fire".to_string(), b"hot".to_vec()));
}
