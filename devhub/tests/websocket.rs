//! MQTT over WebSockets on the HTTPS port, and the $upstream feed.

mod common;

use std::time::Duration;

use common::Via;
use edgemodule_devhub::{start, Config};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

async fn hub_with_upstream_route() -> (edgemodule_devhub::DevHub, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("deployment.json");
    std::fs::write(
        &manifest,
        r#"{"modulesContent":{
            "$edgeAgent":{"properties.desired":{"modules":{"sensor":{},"filter":{}}}},
            "$edgeHub":{"properties.desired":{"schemaVersion":"1.1",
                "routes":{"up":"FROM /messages/modules/sensor/* INTO $upstream"}}}}}"#,
    )
    .unwrap();
    let mut cfg = Config::ephemeral(dir.path().join("state"));
    cfg.manifest = Some(manifest);
    (start(cfg).await.unwrap(), dir)
}

async fn drive(mut el: rumqttc::EventLoop) {
    while el.poll().await.is_ok() {}
}

#[tokio::test]
async fn mqtt_over_websocket_and_upstream_feed() {
    let (hub, _dir) = hub_with_upstream_route().await;

    // Follow the feed before anything is sent.
    let tcp = tokio::net::TcpStream::connect(hub.addresses().https)
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(common::client_config(&hub))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/devhub/upstream?follow=1")
        .header("host", "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let mut feed = resp.into_body();

    let (client, el) = common::mqtt(&hub, "sensor", Via::WebSocket).await;
    tokio::spawn(drive(el));
    client
        .publish(
            "devices/devhub-device/modules/sensor/messages/events/%24.on=temps&%24.ct=application%2Fjson&k=v",
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"t":1}"#,
        )
        .await
        .unwrap();

    let line = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = Vec::new();
        loop {
            let frame = feed.frame().await.expect("feed open").unwrap();
            buf.extend_from_slice(frame.data_ref().unwrap());
            if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                return String::from_utf8(buf[..pos].to_vec()).unwrap();
            }
        }
    })
    .await
    .expect("upstream message in time");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["module"], "sensor");
    assert_eq!(v["output"], "temps");
    assert_eq!(v["body"], r#"{"t":1}"#);
    assert_eq!(v["bodyBase64"], "eyJ0IjoxfQ==");
    assert_eq!(v["contentType"], "application/json");
    assert_eq!(v["properties"]["k"], "v");

    let r = common::https_get(&hub, "/devhub/upstream").await;
    let list = r.json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["output"], "temps");

    let r = common::https_get(&hub, "/devhub/status").await;
    let conns = r.json()["connections"].clone();
    assert_eq!(conns[0]["identity"], "devhub-device/sensor", "{conns}");
    assert_eq!(conns[0]["transport"], "websocket", "{conns}");
    hub.stop().await;
}

#[tokio::test]
async fn websocket_upgrade_handshake_rules() {
    let (hub, _dir) = common::start_hub().await;
    let base = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let mut with_mqtt = base.to_vec();
    with_mqtt.push(("sec-websocket-protocol", "mqtt"));
    let r = common::https(&hub, Method::GET, "/$iothub/websocket", &with_mqtt, "").await;
    assert_eq!(r.status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        r.headers["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(r.headers["sec-websocket-protocol"], "mqtt");

    let mut amqp = base.to_vec();
    amqp.push(("sec-websocket-protocol", "AMQPWSB10"));
    let r = common::https(&hub, Method::GET, "/$iothub/websocket", &amqp, "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = common::https(&hub, Method::GET, "/$iothub/websocket", &base[1..], "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    hub.stop().await;
}

#[tokio::test]
async fn all_three_transports_connect() {
    let (hub, _dir) = common::start_hub().await;
    for (module, via) in [("sensor", Via::Tls), ("filter", Via::Plain)] {
        let (c, el) = common::mqtt(&hub, module, via).await;
        tokio::spawn(drive(el));
        c.subscribe("$iothub/methods/POST/#", rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = common::https_get(&hub, "/devhub/status").await;
    let s = r.json();
    let transports: Vec<&str> = s["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["transport"].as_str().unwrap())
        .collect();
    assert_eq!(transports, vec!["plain", "tls"], "{s}");
    hub.stop().await;
}
