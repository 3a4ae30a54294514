//! Engine tests over real sockets (127.0.0.1, plain MQTT), with rumqttc as the module client
//! and a raw packet client for protocol violations.

use super::*;
use crate::manifest::{AuthRule, AuthorizationStatement, BrokerConfig};
use crate::routing::{parse_route, Router};
use edgemodule::protocol::{property_bag, topics};
use rumqttc::mqttbytes::v4::{Packet, PubAck, Publish as RawPublish, Subscribe};
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, QoS};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const HOST: &str = "devhub.local";
const DEV: &str = "dev1";
const T: Duration = Duration::from_secs(5);

fn key_of(module: &str) -> Vec<u8> {
    let mut k = module.as_bytes().to_vec();
    k.resize(32, 7);
    k
}

fn b64(k: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(k)
}

fn config(dir: &std::path::Path, routes: &[&str]) -> HubConfig {
    let routes = routes
        .iter()
        .enumerate()
        .map(|(i, r)| parse_route(&format!("r{i}"), r).expect("route"))
        .collect();
    HubConfig {
        hub_host_name: HOST.into(),
        device_id: DEV.into(),
        modules: ["a", "b", "c"]
            .iter()
            .map(|m| (m.to_string(), b64(&key_of(m))))
            .collect(),
        router: Router::new(routes),
        default_ttl_secs: 7200,
        ack_timeout: Duration::from_secs(30),
        max_clock_skew: Duration::from_secs(300),
        state_dir: dir.to_path_buf(),
        initial_desired: [("a".to_string(), json!({"speed": 1}))]
            .into_iter()
            .collect(),
        broker: None,
        upstream_buffer: 10,
        max_store_bytes: None,
    }
}

const A_TO_B: &str =
    r#"FROM /messages/modules/a/outputs/out1 INTO BrokeredEndpoint("/modules/b/inputs/in1")"#;
const UP: &str = "FROM /messages/modules/a/* INTO $upstream";

async fn start(cfg: HubConfig) -> (Arc<Hub>, SocketAddr) {
    let hub = Hub::new(cfg).expect("hub");
    (hub.clone(), listen(hub).await)
}

async fn listen(hub: Arc<Hub>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, peer)) = l.accept().await {
            tokio::spawn(
                hub.clone()
                    .serve_connection(s, peer.to_string(), Transport::Plain),
            );
        }
    });
    addr
}

fn future_expiry() -> u64 {
    now_ms() / 1000 + 3600
}

fn username(module: &str) -> String {
    topics::username(HOST, DEV, module, "2020-09-30", "devhub-test", None)
}

fn password(module: &str, key: &[u8], expiry: u64) -> String {
    sas::module_token(HOST, DEV, module, key, expiry)
}

fn options(addr: SocketAddr, client_id: &str, user: &str, pass: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    o.set_credentials(user, pass);
    o.set_clean_session(false);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

/// A rumqttc client whose incoming packets arrive on `rx` (an `Err` ends the stream).
struct Client {
    c: AsyncClient,
    rx: mpsc::UnboundedReceiver<Result<Packet, String>>,
}

impl Client {
    async fn next(&mut self) -> Result<Packet, String> {
        tokio::time::timeout(T, self.rx.recv())
            .await
            .map_err(|_| "timeout".to_string())?
            .unwrap_or_else(|| Err("closed".into()))
    }

    /// Next incoming PUBLISH (skipping acks and pings).
    async fn publish(&mut self) -> RawPublish {
        loop {
            match self.next().await.expect("a publish") {
                Packet::Publish(p) => return p,
                _ => continue,
            }
        }
    }

    async fn suback(&mut self) -> Vec<rumqttc::SubscribeReasonCode> {
        loop {
            match self.next().await.expect("a suback") {
                Packet::SubAck(s) => return s.return_codes,
                _ => continue,
            }
        }
    }

    async fn puback(&mut self) -> u16 {
        loop {
            match self.next().await.expect("a puback") {
                Packet::PubAck(a) => return a.pkid,
                _ => continue,
            }
        }
    }

    /// Nothing arrives within `d` (errors count as "something").
    async fn quiet_for(&mut self, d: Duration) -> bool {
        tokio::time::timeout(d, async {
            loop {
                match self.rx.recv().await {
                    Some(Ok(Packet::PingResp)) => continue,
                    other => return other,
                }
            }
        })
        .await
        .is_err()
    }
}

async fn connect_with(
    o: MqttOptions,
    manual_acks: bool,
) -> Result<(Client, bool), ConnectionError> {
    let mut o = o;
    o.set_manual_acks(manual_acks);
    let (c, mut el) = AsyncClient::new(o, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ctx, crx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ctx = Some(ctx);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => {
                    if let Some(c) = ctx.take() {
                        let _ = c.send(Ok(a.session_present));
                    }
                }
                Ok(Event::Incoming(p)) => {
                    let _ = tx.send(Ok(p));
                }
                Ok(Event::Outgoing(_)) => {}
                Err(e) => {
                    match ctx.take() {
                        Some(c) => {
                            let _ = c.send(Err(e));
                        }
                        None => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                    break;
                }
            }
        }
    });
    let present = tokio::time::timeout(T, crx)
        .await
        .expect("CONNACK in time")
        .expect("event loop alive")?;
    Ok((Client { c, rx }, present))
}

async fn connect(addr: SocketAddr, module: &str) -> Client {
    let o = options(
        addr,
        &format!("{DEV}/{module}"),
        &username(module),
        &password(module, &key_of(module), future_expiry()),
    );
    connect_with(o, false).await.expect("connect").0
}

fn refused(r: Result<(Client, bool), ConnectionError>) -> ConnectReturnCode {
    match r {
        Err(ConnectionError::ConnectionRefused(code)) => code,
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, got a connection"),
    }
}

/// Poll `f` for up to 2 s.
async fn eventually(f: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn inputs(m: &str) -> String {
    format!("devices/{DEV}/modules/{m}/inputs/#")
}

fn out_topic(module: &str, bag: &[(&str, Option<&str>)]) -> String {
    let bag: Vec<(String, Option<String>)> = bag
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect();
    topics::events_topic(DEV, module, &property_bag::encode(&bag))
}

#[tokio::test]
async fn bad_credentials_are_refused_with_connack_5() {
    let dir = tempfile::tempdir().unwrap();
    let (_hub, addr) = start(config(dir.path(), &[])).await;
    let good = password("a", &key_of("a"), future_expiry());
    let cid = format!("{DEV}/a");
    // Wrong key.
    let o = options(
        addr,
        &cid,
        &username("a"),
        &password("a", &key_of("zz"), future_expiry()),
    );
    assert_eq!(
        refused(connect_with(o, false).await),
        ConnectReturnCode::NotAuthorized
    );
    // Expired beyond the clock skew.
    let old = now_ms() / 1000 - 301;
    let o = options(
        addr,
        &cid,
        &username("a"),
        &password("a", &key_of("a"), old),
    );
    assert_eq!(
        refused(connect_with(o, false).await),
        ConnectReturnCode::NotAuthorized
    );
    // Client id differs from the username identity.
    let o = options(addr, &format!("{DEV}/b"), &username("a"), &good);
    assert_eq!(
        refused(connect_with(o, false).await),
        ConnectReturnCode::NotAuthorized
    );
    // Unknown module (signed with a key of its own).
    let o = options(
        addr,
        &format!("{DEV}/x"),
        &username("x"),
        &password("x", &key_of("x"), future_expiry()),
    );
    assert_eq!(
        refused(connect_with(o, false).await),
        ConnectReturnCode::NotAuthorized
    );
    // Token for another module.
    let o = options(
        addr,
        &cid,
        &username("a"),
        &password("b", &key_of("b"), future_expiry()),
    );
    assert_eq!(
        refused(connect_with(o, false).await),
        ConnectReturnCode::NotAuthorized
    );
    // Garbage password.
    let o = options(addr, &cid, &username("a"), "SharedAccessSignature nonsense");
    assert_eq!(
        refused(connect_with(o, false).await),
        ConnectReturnCode::NotAuthorized
    );
    // Finally the right credentials work; a first connection has no stored session.
    let o = options(addr, &cid, &username("a"), &good);
    let (_c, present) = connect_with(o, false).await.expect("good credentials");
    assert!(!present);
}

#[tokio::test]
async fn output_routed_to_input_with_properties_and_sender_identity() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, addr) = start(config(dir.path(), &[A_TO_B, UP])).await;
    let mut up = hub.upstream_subscribe();
    let mut b = connect(addr, "b").await;
    b.c.subscribe(inputs("b"), QoS::AtLeastOnce).await.unwrap();
    assert_eq!(
        b.suback().await,
        vec![rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let mut a = connect(addr, "a").await;
    let topic = out_topic(
        "a",
        &[
            ("$.on", Some("out1")),
            ("$.mid", Some("m-1")),
            ("$.ct", Some("application/json")),
            ("k e/y", Some("v&=/%")),
            ("nul", None),
        ],
    );
    a.c.publish(topic, QoS::AtLeastOnce, false, br#"{"x":1}"#.to_vec())
        .await
        .unwrap();
    a.puback().await;
    let p = b.publish().await;
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert_eq!(&p.payload[..], br#"{"x":1}"#);
    let t = topics::parse_input_topic(&p.topic).expect("input topic");
    assert_eq!(
        (
            t.device_id.as_str(),
            t.module_id.as_str(),
            t.input_name.as_str()
        ),
        (DEV, "b", "in1")
    );
    let props = t.properties;
    let get = |k: &str| props.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
    assert_eq!(get("$.mid"), Some(Some("m-1".into())));
    assert_eq!(get("$.ct"), Some(Some("application/json".into())));
    assert_eq!(get("k e/y"), Some(Some("v&=/%".into())));
    assert_eq!(get("nul"), Some(None));
    assert_eq!(get("$.cdid"), Some(Some(DEV.into())));
    assert_eq!(get("$.cmid"), Some(Some("a".into())));
    assert_eq!(get("$.on"), None);
    // The same message went upstream too.
    let u = tokio::time::timeout(T, up.recv()).await.unwrap().unwrap();
    assert_eq!(
        (u.module.as_str(), u.output.as_deref()),
        ("a", Some("out1"))
    );
    assert_eq!(u.message.message_id.as_deref(), Some("m-1"));
    assert_eq!(u.message.property("k e/y"), Some("v&=/%"));
    assert_eq!(hub.upstream_recent().len(), 1);
    // Node's trailing '/' form; an output that no route takes goes nowhere.
    let t2 = format!(
        "{}/",
        out_topic("a", &[("$.on", Some("out1")), ("n", Some("2"))])
    );
    a.c.publish(t2, QoS::AtLeastOnce, false, b"two".to_vec())
        .await
        .unwrap();
    let p = b.publish().await;
    assert_eq!(&p.payload[..], b"two");
    let st = hub.status();
    assert_eq!(st["connections"].as_array().unwrap().len(), 2);
    assert_eq!(st["upstream"]["count"], json!(2));
}

#[tokio::test]
async fn offline_target_gets_messages_on_connect_and_session_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, addr) = start(config(dir.path(), &[A_TO_B])).await;
    // b subscribes once with CleanSession=0, then goes away.
    {
        let mut b = connect(addr, "b").await;
        b.c.subscribe(format!("devices/{DEV}/modules/b/#"), QoS::AtLeastOnce)
            .await
            .unwrap();
        b.suback().await;
        b.c.disconnect().await.unwrap();
        let _ = b.next().await;
    }
    let mut a = connect(addr, "a").await;
    for i in 0..3 {
        a.c.publish(
            out_topic("a", &[("$.on", Some("out1")), ("i", Some(&i.to_string()))]),
            QoS::AtLeastOnce,
            false,
            format!("m{i}").into_bytes(),
        )
        .await
        .unwrap();
        a.puback().await;
    }
    assert_eq!(hub.status()["queues"][format!("{DEV}/b/in1")], json!(3));
    // Reconnect without subscribing: the stored session delivers, in order.
    let o = options(
        addr,
        &format!("{DEV}/b"),
        &username("b"),
        &password("b", &key_of("b"), future_expiry()),
    );
    let (mut b, present) = connect_with(o, false).await.unwrap();
    assert!(present);
    for i in 0..3 {
        assert_eq!(b.publish().await.payload, format!("m{i}").into_bytes());
    }
    // Acks drain the queue.
    assert!(eventually(|| hub.status()["queues"] == json!({})).await);
}

#[tokio::test]
async fn unacked_messages_are_redelivered_on_reconnect_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &[A_TO_B]);
    let (hub, addr) = start(cfg).await;
    let mut a = connect(addr, "a").await;
    a.c.publish(
        out_topic("a", &[("$.on", Some("out1")), ("p", Some("1"))]),
        QoS::AtLeastOnce,
        false,
        b"kept".to_vec(),
    )
    .await
    .unwrap();
    a.puback().await;
    // b receives without acking (manual acks), then reconnects: redelivered.
    let o = options(
        addr,
        &format!("{DEV}/b"),
        &username("b"),
        &password("b", &key_of("b"), future_expiry()),
    );
    let (mut b, _) = connect_with(o.clone(), true).await.unwrap();
    b.c.subscribe(inputs("b"), QoS::AtLeastOnce).await.unwrap();
    assert_eq!(&b.publish().await.payload[..], b"kept");
    drop(b);
    let (mut b, present) = connect_with(o.clone(), true).await.unwrap();
    assert!(present);
    assert_eq!(&b.publish().await.payload[..], b"kept");
    drop(b);
    drop(a);
    hub.shutdown().await;
    drop(hub);

    // A new hub on the same state dir still has it (and the session of b).
    let (hub2, addr2) = start(config(dir.path(), &[A_TO_B])).await;
    assert_eq!(hub2.status()["queues"][format!("{DEV}/b/in1")], json!(1));
    let o = options(
        addr2,
        &format!("{DEV}/b"),
        &username("b"),
        &password("b", &key_of("b"), future_expiry()),
    );
    let (mut b, present) = connect_with(o, false).await.unwrap();
    assert!(present);
    let p = b.publish().await;
    assert_eq!(&p.payload[..], b"kept");
    let t = topics::parse_input_topic(&p.topic).unwrap();
    assert!(t.properties.contains(&("p".into(), Some("1".into()))));
    assert!(eventually(|| hub2.status()["queues"] == json!({})).await);
}

#[tokio::test]
async fn ttl_expires_stored_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &[A_TO_B]);
    cfg.default_ttl_secs = 1;
    let (hub, addr) = start(cfg).await;
    let mut a = connect(addr, "a").await;
    a.c.publish(
        out_topic("a", &[("$.on", Some("out1"))]),
        QoS::AtLeastOnce,
        false,
        b"old".to_vec(),
    )
    .await
    .unwrap();
    a.puback().await;
    assert_eq!(hub.status()["queues"][format!("{DEV}/b/in1")], json!(1));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(eventually(|| hub.status()["queues"] == json!({})).await);
    let mut b = connect(addr, "b").await;
    b.c.subscribe(inputs("b"), QoS::AtLeastOnce).await.unwrap();
    b.suback().await;
    assert!(b.quiet_for(Duration::from_millis(300)).await);
}

#[tokio::test]
async fn inject_delivers_to_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, addr) = start(config(dir.path(), &[])).await;
    let msg = edgemodule::Message::new("hello")
        .with_message_id("i-1")
        .with_property("x", "y");
    hub.inject("b", "cmd", msg).unwrap();
    assert_eq!(
        hub.inject("nope", "cmd", edgemodule::Message::new("x"))
            .unwrap_err()
            .status,
        404
    );
    let mut b = connect(addr, "b").await;
    b.c.subscribe(inputs("b"), QoS::AtLeastOnce).await.unwrap();
    let p = b.publish().await;
    let t = topics::parse_input_topic(&p.topic).unwrap();
    assert_eq!(t.input_name, "cmd");
    assert_eq!(
        t.properties,
        vec![
            ("$.mid".into(), Some("i-1".into())),
            ("x".into(), Some("y".into()))
        ]
    );
    assert_eq!(&p.payload[..], b"hello");
}

#[tokio::test]
async fn twins_get_patch_and_desired_push() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, addr) = start(config(dir.path(), &[])).await;
    let mut a = connect(addr, "a").await;
    a.c.subscribe("$iothub/twin/res/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    a.c.subscribe("$iothub/twin/PATCH/properties/desired/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    a.suback().await;
    a.suback().await;
    a.c.publish(
        "$iothub/twin/GET/?$rid=1",
        QoS::AtMostOnce,
        false,
        b" ".to_vec(),
    )
    .await
    .unwrap();
    let p = a.publish().await;
    assert_eq!(p.topic, "$iothub/twin/res/200/?$rid=1");
    let v: Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(
        v,
        json!({"desired": {"speed": 1, "$version": 1}, "reported": {"$version": 1}})
    );

    a.c.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=2",
        QoS::AtLeastOnce,
        false,
        br#"{"temp": 20}"#.to_vec(),
    )
    .await
    .unwrap();
    let p = a.publish().await;
    assert_eq!(p.topic, "$iothub/twin/res/204/?$rid=2&$version=2");
    a.c.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=3",
        QoS::AtLeastOnce,
        false,
        b"not json".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(a.publish().await.topic, "$iothub/twin/res/400/?$rid=3");

    let t = hub.twin("a").unwrap();
    assert_eq!(
        t["properties"]["reported"],
        json!({"temp": 20, "$version": 2})
    );
    assert_eq!(t["moduleId"], json!("a"));
    let etag = t["etag"].as_str().unwrap().to_string();
    let t = hub
        .update_twin(
            "a",
            json!({"properties": {"desired": {"speed": 5}}}),
            Some(&etag),
        )
        .unwrap();
    assert_eq!(
        t["properties"]["desired"],
        json!({"speed": 5, "$version": 2})
    );
    let p = a.publish().await;
    assert_eq!(p.topic, "$iothub/twin/PATCH/properties/desired/?$version=2");
    assert_eq!(
        serde_json::from_slice::<Value>(&p.payload).unwrap(),
        json!({"speed": 5, "$version": 2})
    );
    assert_eq!(
        hub.update_twin("a", json!({}), Some("\"stale\""))
            .unwrap_err()
            .status,
        412
    );
    assert_eq!(hub.twin("zz").unwrap_err().status, 404);

    // Fault: the next twin request fails with 500.
    hub.faults().fail_twin_requests(500, 1);
    a.c.publish(
        "$iothub/twin/GET/?$rid=4",
        QoS::AtMostOnce,
        false,
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(a.publish().await.topic, "$iothub/twin/res/500/?$rid=4");
    a.c.publish(
        "$iothub/twin/GET/?$rid=5",
        QoS::AtMostOnce,
        false,
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(a.publish().await.topic, "$iothub/twin/res/200/?$rid=5");

    // Twins persist.
    drop(a);
    hub.shutdown().await;
    let hub2 = Hub::new(config(dir.path(), &[])).unwrap();
    let t = hub2.twin("a").unwrap();
    assert_eq!(
        t["properties"]["desired"],
        json!({"speed": 5, "$version": 2})
    );
    assert_eq!(
        t["properties"]["reported"],
        json!({"temp": 20, "$version": 2})
    );
}

#[tokio::test]
async fn methods_ok_not_found_and_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, addr) = start(config(dir.path(), &[])).await;
    let s = Duration::from_secs;
    // Unknown module and module not connected -> 404.
    let e = hub
        .invoke_method("zz", "m", Value::Null, s(5), s(0))
        .await
        .unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (404, "Client dev1/zz not found")
    );
    let e = hub
        .invoke_method("a", "m", Value::Null, s(5), s(0))
        .await
        .unwrap_err();
    assert_eq!(e.status, 404);
    assert_eq!(
        hub.invoke_method("a", "", Value::Null, s(5), s(0))
            .await
            .unwrap_err()
            .status,
        400
    );

    let mut a = connect(addr, "a").await;
    // connectTimeout: the invocation waits for the subscription.
    let h2 = hub.clone();
    let call = tokio::spawn(async move {
        h2.invoke_method("a", "reboot", json!({"delay": 1}), s(5), s(5))
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.c.subscribe("$iothub/methods/POST/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let p = a.publish().await;
    let req = topics::parse_method_request_topic(&p.topic).unwrap();
    assert_eq!(req.name, "reboot");
    assert_eq!(
        serde_json::from_slice::<Value>(&p.payload).unwrap(),
        json!({"delay": 1})
    );
    a.c.publish(
        topics::method_response_topic(201, &req.rid.to_uppercase()),
        QoS::AtLeastOnce,
        false,
        br#"{"ok":true}"#.to_vec(),
    )
    .await
    .unwrap();
    let r = call.await.unwrap().unwrap();
    assert_eq!(
        r,
        MethodResult {
            status: 201,
            payload: json!({"ok": true})
        }
    );

    // No answer -> 504 after the response timeout (5 s is the minimum allowed).
    let started = Instant::now();
    let e = hub
        .invoke_method("a", "slow", Value::Null, s(5), s(0))
        .await
        .unwrap_err();
    assert_eq!(e.status, 504);
    assert!(e
        .message
        .starts_with("Timed out waiting for device to respond to method request "));
    assert!(started.elapsed() >= s(5));
    let p = a.publish().await;
    assert_eq!(&p.payload[..], b"null");
}

#[tokio::test]
async fn cross_module_subscribe_is_refused_and_unknown_filters_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (_hub, addr) = start(config(dir.path(), &[])).await;
    let mut a = connect(addr, "a").await;
    let sub = Subscribe::new_many([
        rumqttc::SubscribeFilter::new(format!("devices/{DEV}/modules/b/#"), QoS::AtLeastOnce),
        rumqttc::SubscribeFilter::new(inputs("a"), QoS::ExactlyOnce),
        rumqttc::SubscribeFilter::new("some/user/topic".into(), QoS::AtMostOnce),
    ]);
    a.c.subscribe_many(sub.filters).await.unwrap();
    assert_eq!(
        a.suback().await,
        vec![
            rumqttc::SubscribeReasonCode::Failure,
            rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce),
            rumqttc::SubscribeReasonCode::Success(QoS::AtMostOnce),
        ]
    );
}

/// Minimal raw MQTT client for protocol-violation tests.
struct Raw {
    s: TcpStream,
    buf: bytes::BytesMut,
}

impl Raw {
    async fn connect(addr: SocketAddr, module: &str) -> Raw {
        let s = TcpStream::connect(addr).await.unwrap();
        let mut r = Raw {
            s,
            buf: bytes::BytesMut::new(),
        };
        let mut c = rumqttc::mqttbytes::v4::Connect::new(format!("{DEV}/{module}"));
        c.clean_session = false;
        c.keep_alive = 0;
        c.set_login(
            username(module),
            password(module, &key_of(module), future_expiry()),
        );
        r.send(Packet::Connect(c)).await;
        match r.read().await {
            Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Success),
            other => panic!("no CONNACK: {other:?}"),
        }
        r
    }

    async fn send(&mut self, p: Packet) {
        let mut b = bytes::BytesMut::new();
        p.write(&mut b, usize::MAX).unwrap();
        self.s.write_all(&b).await.unwrap();
    }

    /// Next packet, or None once the hub closed the connection.
    async fn read(&mut self) -> Option<Packet> {
        tokio::time::timeout(T, async {
            loop {
                match Packet::read(&mut self.buf, 1 << 20) {
                    Ok(p) => return Some(p),
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("bad packet from hub: {e}"),
                }
                match self.s.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("hub answered or closed in time")
    }
}

#[tokio::test]
async fn protocol_violations_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (_hub, addr) = start(config(dir.path(), &[A_TO_B])).await;
    // QoS 2 publish.
    let mut r = Raw::connect(addr, "a").await;
    let p = RawPublish::new(out_topic("a", &[]), QoS::ExactlyOnce, b"x".to_vec());
    let mut p = p;
    p.pkid = 1;
    r.send(Packet::Publish(p)).await;
    assert_eq!(r.read().await, None);
    // Oversize message (body + properties > 256 KB).
    let mut r = Raw::connect(addr, "a").await;
    let mut p = RawPublish::new(
        out_topic("a", &[("$.on", Some("out1"))]),
        QoS::AtLeastOnce,
        vec![b'x'; 262_140],
    );
    p.pkid = 1;
    r.send(Packet::Publish(p)).await;
    assert_eq!(r.read().await, None);
    // Just under the limit is accepted.
    let mut r = Raw::connect(addr, "a").await;
    let mut p = RawPublish::new(out_topic("a", &[]), QoS::AtLeastOnce, vec![b'x'; 262_000]);
    p.pkid = 9;
    r.send(Packet::Publish(p)).await;
    assert_eq!(r.read().await, Some(Packet::PubAck(PubAck::new(9))));
    // Publishing as another module.
    let mut p = RawPublish::new(out_topic("b", &[]), QoS::AtLeastOnce, b"x".to_vec());
    p.pkid = 2;
    r.send(Packet::Publish(p)).await;
    assert_eq!(r.read().await, None);
    // A malformed bag is dropped but acknowledged.
    let mut r = Raw::connect(addr, "a").await;
    let mut p = RawPublish::new(
        format!("devices/{DEV}/modules/a/messages/events/a=%zz"),
        QoS::AtLeastOnce,
        b"x".to_vec(),
    );
    p.pkid = 3;
    r.send(Packet::Publish(p)).await;
    assert_eq!(r.read().await, Some(Packet::PubAck(PubAck::new(3))));
    r.send(Packet::PingReq).await;
    assert_eq!(r.read().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn second_connection_drops_the_first_and_faults_work() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, addr) = start(config(dir.path(), &[])).await;
    let mut first = Raw::connect(addr, "a").await;
    let mut second = Raw::connect(addr, "a").await;
    assert_eq!(first.read().await, None);
    hub.faults().disconnect_gracefully();
    assert_eq!(second.read().await, None);
    assert!(eventually(|| hub.status()["connections"] == json!([])).await);
    hub.faults().drop_connections();
    // Refuse for a while: CONNACK 3.
    hub.faults().refuse_connections_for(Duration::from_secs(60));
    let o = options(
        addr,
        &format!("{DEV}/a"),
        &username("a"),
        &password("a", &key_of("a"), future_expiry()),
    );
    assert_eq!(
        refused(connect_with(o, false).await),
        ConnectReturnCode::ServiceUnavailable
    );
    hub.faults().refuse_connections_for(Duration::ZERO);
    // expire_tokens: the token in use is refused afterwards.
    let pass = password("a", &key_of("a"), future_expiry());
    let o = options(addr, &format!("{DEV}/a"), &username("a"), &pass);
    let (mut c, _) = connect_with(o.clone(), false).await.unwrap();
    hub.faults().expire_tokens();
    assert!(c.next().await.is_err());
    assert_eq!(
        refused(connect_with(o, false).await),
        ConnectReturnCode::NotAuthorized
    );
    assert_eq!(hub.verify_sas(&pass, DEV, "a").unwrap_err().status, 401);
    let fresh = password("a", &key_of("a"), future_expiry() + 1);
    assert!(hub.verify_sas(&fresh, DEV, "a").is_ok());
    assert_eq!(hub.verify_sas(&fresh, DEV, "b").unwrap_err().status, 401);
}

#[tokio::test]
async fn broker_mode_user_topics() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &[]);
    let rule = |ops: &[&str], res: &[&str]| AuthRule {
        operations: ops.iter().map(|s| s.to_string()).collect(),
        resources: res.iter().map(|s| s.to_string()).collect(),
    };
    cfg.broker = Some(BrokerConfig {
        authorizations: vec![AuthorizationStatement {
            identities: vec!["{{iot:identity}}".into()],
            allow: vec![
                rule(&["mqtt:connect"], &[]),
                rule(&["mqtt:publish", "mqtt:subscribe"], &["alerts/#"]),
            ],
            deny: vec![rule(&["mqtt:publish"], &["alerts/secret"])],
        }],
    });
    let (_hub, addr) = start(cfg).await;
    let a = connect(addr, "a").await;
    let mut b = connect(addr, "b").await;
    b.c.subscribe("alerts/+", QoS::AtLeastOnce).await.unwrap();
    b.c.subscribe("other/#", QoS::AtLeastOnce).await.unwrap();
    assert_eq!(
        b.suback().await,
        vec![rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    assert_eq!(
        b.suback().await,
        vec![rumqttc::SubscribeReasonCode::Failure]
    );
    a.c.publish("alerts/secret", QoS::AtLeastOnce, false, b"no".to_vec())
        .await
        .unwrap();
    a.c.publish("alerts/fire", QoS::AtLeastOnce, false, b"yes".to_vec())
        .await
        .unwrap();
    let p = b.publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("alerts/fire", &b"yes"[..])
    );
    assert!(b.quiet_for(Duration::from_millis(200)).await);
}

#[tokio::test]
async fn unacked_message_is_resent_with_dup_after_ack_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &[]);
    cfg.ack_timeout = Duration::from_millis(500);
    let (hub, addr) = start(cfg).await;
    let o = options(
        addr,
        &format!("{DEV}/b"),
        &username("b"),
        &password("b", &key_of("b"), future_expiry()),
    );
    let (mut b, _) = connect_with(o, true).await.unwrap();
    b.c.subscribe(inputs("b"), QoS::AtLeastOnce).await.unwrap();
    hub.inject("b", "in", edgemodule::Message::new("once"))
        .unwrap();
    let first = b.publish().await;
    assert!(!first.dup);
    let again = b.publish().await;
    assert!(again.dup);
    assert_eq!((again.pkid, &again.payload[..]), (first.pkid, &b"once"[..]));
    b.c.ack(&again).await.unwrap();
    assert!(eventually(|| hub.status()["queues"] == json!({})).await);
    assert!(b.quiet_for(Duration::from_millis(800)).await);
}

#[tokio::test]
async fn keepalive_is_enforced_at_one_and_a_half_times() {
    let dir = tempfile::tempdir().unwrap();
    let (_hub, addr) = start(config(dir.path(), &[])).await;
    let s = TcpStream::connect(addr).await.unwrap();
    let mut r = Raw {
        s,
        buf: bytes::BytesMut::new(),
    };
    let mut c = rumqttc::mqttbytes::v4::Connect::new(format!("{DEV}/a"));
    c.keep_alive = 1;
    c.set_login(username("a"), password("a", &key_of("a"), future_expiry()));
    r.send(Packet::Connect(c)).await;
    assert!(matches!(r.read().await, Some(Packet::ConnAck(_))));
    let started = Instant::now();
    assert_eq!(r.read().await, None);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test]
async fn reported_patches_are_routed_as_twin_change_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let routes = [
        r#"FROM /twinChangeNotifications/* INTO BrokeredEndpoint("/modules/b/inputs/twin")"#,
        r#"FROM /twinChangeNotifications WHERE $body.temp > 25 INTO BrokeredEndpoint("/modules/c/inputs/hot")"#,
        r#"FROM /messages/* INTO BrokeredEndpoint("/modules/c/inputs/tel")"#,
        "FROM /* INTO $upstream",
    ];
    let (hub, addr) = start(config(dir.path(), &routes)).await;
    let mut up = hub.upstream_subscribe();
    let mut b = connect(addr, "b").await;
    b.c.subscribe(inputs("b"), QoS::AtLeastOnce).await.unwrap();
    b.suback().await;
    let mut a = connect(addr, "a").await;
    a.c.subscribe("$iothub/twin/res/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    a.suback().await;

    let patch = br#"{"temp": 20, "unit": {"c": true}}"#;
    a.c.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=1",
        QoS::AtLeastOnce,
        false,
        patch.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(
        a.publish().await.topic,
        "$iothub/twin/res/204/?$rid=1&$version=2"
    );
    // The /twinChangeNotifications/ route delivers the patch with its sender and JSON type.
    let p = b.publish().await;
    assert_eq!(&p.payload[..], patch);
    let t = topics::parse_input_topic(&p.topic).expect("input topic");
    assert_eq!(t.input_name, "twin");
    let get = |k: &str| {
        t.properties
            .iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("$.ct"), Some(Some("application/json".into())));
    assert_eq!(get("$.ce"), Some(Some("utf-8".into())));
    assert_eq!(get("$.cdid"), Some(Some(DEV.into())));
    assert_eq!(get("$.cmid"), Some(Some("a".into())));
    // `FROM /*` sees it too, marked by its source.
    let u = tokio::time::timeout(T, up.recv()).await.unwrap().unwrap();
    assert_eq!(u.source, "/twinChangeNotifications/");
    assert_eq!((u.module.as_str(), u.output.as_deref()), ("a", None));
    assert_eq!(u.message.body, patch.to_vec());
    assert_eq!(u.message.content_type.as_deref(), Some("application/json"));
    assert_eq!(u.message.connection_module_id.as_deref(), Some("a"));
    // Neither the /messages/* route nor the body condition (temp 20) took it.
    assert!(eventually(|| hub.status()["queues"] == json!({})).await);

    // A hot patch satisfies the body query; a refused patch notifies nobody.
    a.c.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=2",
        QoS::AtLeastOnce,
        false,
        br#"{"temp": 30}"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(
        a.publish().await.topic,
        "$iothub/twin/res/204/?$rid=2&$version=3"
    );
    assert_eq!(&b.publish().await.payload[..], br#"{"temp": 30}"#);
    assert!(eventually(|| hub.status()["queues"] == json!({format!("{DEV}/c/hot"): 1})).await);
    a.c.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=3",
        QoS::AtLeastOnce,
        false,
        b"not json".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(a.publish().await.topic, "$iothub/twin/res/400/?$rid=3");

    // Module telemetry never matches /twinChangeNotifications/ routes.
    a.c.publish(
        out_topic("a", &[("$.on", Some("twinChangeNotifications"))]),
        QoS::AtLeastOnce,
        false,
        br#"{"temp": 99}"#.to_vec(),
    )
    .await
    .unwrap();
    a.puback().await;
    assert!(b.quiet_for(Duration::from_millis(300)).await);
    assert_eq!(
        hub.status()["queues"],
        json!({format!("{DEV}/c/hot"): 1, format!("{DEV}/c/tel"): 1})
    );
    let sources: Vec<String> = hub
        .upstream_recent()
        .into_iter()
        .map(|u| u.source)
        .collect();
    assert_eq!(
        sources,
        vec![
            "/twinChangeNotifications/",
            "/twinChangeNotifications/",
            "/messages/modules/a/outputs/twinChangeNotifications/"
        ]
    );
}

#[tokio::test]
async fn store_limit_drops_the_oldest_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &[A_TO_B]);
    // Each message: 9-byte body + "$.cdid"/"dev1" + "$.cmid"/"a" = 26 bytes; room for 3.
    cfg.max_store_bytes = Some(80);
    let (hub, addr) = start(cfg).await;
    let mut a = connect(addr, "a").await;
    for i in 0..5 {
        a.c.publish(
            out_topic("a", &[("$.on", Some("out1"))]),
            QoS::AtLeastOnce,
            false,
            format!("message-{i}").into_bytes(),
        )
        .await
        .unwrap();
        a.puback().await;
    }
    let st = hub.status();
    assert_eq!(st["queues"][format!("{DEV}/b/in1")], json!(3));
    assert_eq!(
        st["store"],
        json!({"messages": 3, "bytes": 78, "maxBytes": 80, "dropped": {"storeLimit": 2, "ttl": 0}})
    );
    // b gets the three newest, in order.
    let mut b = connect(addr, "b").await;
    b.c.subscribe(inputs("b"), QoS::AtLeastOnce).await.unwrap();
    for i in 2..5 {
        assert_eq!(
            b.publish().await.payload,
            format!("message-{i}").into_bytes()
        );
    }
    assert!(eventually(|| hub.status()["store"]["bytes"] == json!(0)).await);
    // A restart with a smaller limit trims what queue.log holds.
    drop(b);
    hub.inject("c", "x", edgemodule::Message::new("0123456789"))
        .unwrap();
    hub.inject("c", "x", edgemodule::Message::new("abcdefghij"))
        .unwrap();
    hub.shutdown().await;
    let mut cfg = config(dir.path(), &[A_TO_B]);
    cfg.max_store_bytes = Some(15);
    let hub2 = Hub::new(cfg).unwrap();
    let st = hub2.status();
    assert_eq!(st["queues"], json!({format!("{DEV}/c/x"): 1}));
    assert_eq!(st["store"]["dropped"]["storeLimit"], json!(1));
}

/// Routing throughput A -> B over real sockets (run with `--ignored --nocapture`, release).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_a_to_b() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let (_hub, addr) = start(config(dir.path(), &[A_TO_B])).await;
    let mut b = connect(addr, "b").await;
    b.c.subscribe(inputs("b"), QoS::AtLeastOnce).await.unwrap();
    b.suback().await;
    let mut o = options(
        addr,
        &format!("{DEV}/a"),
        &username("a"),
        &password("a", &key_of("a"), future_expiry()),
    );
    o.set_inflight(100);
    let (a, _) = connect_with(o, false).await.unwrap();
    let topic = out_topic("a", &[("$.on", Some("out1")), ("$.mid", Some("x"))]);
    let started = Instant::now();
    let payload = vec![b'p'; 100];
    tokio::spawn({
        let c = a.c.clone();
        async move {
            for _ in 0..n {
                c.publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
                    .await
                    .unwrap();
            }
        }
    });
    for _ in 0..n {
        b.publish().await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{n} messages in {secs:.2}s = {:.0} msg/s", n as f64 / secs);
}
