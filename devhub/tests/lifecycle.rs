//! start/stop, the ready file, state reuse across restarts, TLS handshakes.

mod common;

use std::net::SocketAddr;

use edgemodule_devhub::{ready, start, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn start_writes_ready_file_and_stop_frees_everything() {
    let (hub, dir) = common::start_hub().await;
    let a = hub.addresses().clone();
    assert_ne!(a.mqtt_tls.port(), 0);
    assert_ne!(a.https.port(), 0);
    let plain = a
        .mqtt_plain
        .expect("plain MQTT enabled by Config::ephemeral");
    assert!(a.mqtt_tls.ip().is_loopback());
    assert!(a.workload_socket.exists());

    let state = std::fs::canonicalize(dir.path().join("state")).unwrap();
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("ready.json")).unwrap()).unwrap();
    assert_eq!(raw["mqtt_tls"], a.mqtt_tls.to_string());
    assert_eq!(raw["https"], a.https.to_string());
    assert_eq!(raw["mqtt_plain"], plain.to_string());
    assert_eq!(raw["mqtt_tls_port"], a.mqtt_tls.port());
    assert_eq!(raw["https_port"], a.https.port());
    assert_eq!(raw["mqtt_plain_port"], plain.port());
    assert_eq!(raw["workload_socket"], a.workload_socket.to_str().unwrap());
    assert_eq!(raw["ca_file"], hub.ca_cert_path().to_str().unwrap());
    assert_eq!(raw["hub_host_name"], "devhub.local");
    assert_eq!(raw["device_id"], "devhub-device");
    assert_eq!(raw["state_dir"], state.to_str().unwrap());
    assert_eq!(raw["pid"], std::process::id());
    let info = ready::read(&state).unwrap();
    assert_eq!(info.https, a.https.to_string());

    assert_eq!(hub.hub_host_name(), "devhub.local");
    assert_eq!(hub.device_id(), "devhub-device");
    let key = hub.module_key("sensor").unwrap();
    assert_eq!(
        hub.connection_string("sensor").unwrap(),
        format!("HostName=devhub.local;DeviceId=devhub-device;ModuleId=sensor;SharedAccessKey={key};GatewayHostName=localhost")
    );
    assert_ne!(hub.module_key("filter").unwrap(), key);
    assert_eq!(hub.module_key("nope"), None);
    assert_eq!(hub.connection_string("nope"), None);

    hub.stop().await;
    assert!(!state.join("ready.json").exists());
    assert!(!a.workload_socket.exists());
    for addr in [a.mqtt_tls, a.https, plain] {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "{addr} still accepts after stop"
        );
        // The port can be bound again.
        tokio::net::TcpListener::bind(addr).await.unwrap();
    }
}

#[tokio::test]
async fn restart_reuses_ca_and_keys_and_extra_ready_file() {
    let dir = tempfile::tempdir().unwrap();
    let extra = dir.path().join("extra-ready.json");
    let mut cfg = Config::ephemeral(dir.path().join("s"));
    cfg.modules = vec!["a".into()];
    cfg.ready_file = Some(extra.clone());
    let hub = start(cfg.clone()).await.unwrap();
    let ca = std::fs::read_to_string(hub.ca_cert_path()).unwrap();
    let key_a = hub.module_key("a").unwrap();
    let extra_info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&extra).unwrap()).unwrap();
    assert_eq!(extra_info["mqtt_tls"], hub.addresses().mqtt_tls.to_string());
    hub.stop().await;
    assert!(!extra.exists());

    cfg.modules = vec!["a".into(), "b".into()];
    cfg.gateway_hosts = vec!["myhost.example".into()];
    let hub = start(cfg).await.unwrap();
    assert_eq!(std::fs::read_to_string(hub.ca_cert_path()).unwrap(), ca);
    assert_eq!(hub.module_key("a").unwrap(), key_a);
    assert!(hub.module_key("b").is_some());
    // The reissued leaf (new SAN) still chains to the same CA and carries the new name.
    tls_handshake(
        hub.addresses().mqtt_tls,
        &ca,
        "myhost.example",
        &rustls::version::TLS13,
    )
    .await;
    tls_handshake(
        hub.addresses().mqtt_tls,
        &ca,
        "devhub.local",
        &rustls::version::TLS12,
    )
    .await;
    hub.stop().await;
}

#[tokio::test]
async fn manifest_defines_modules() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("deployment.json");
    std::fs::write(
        &manifest,
        r#"{"modulesContent":{
            "$edgeAgent":{"properties.desired":{"modules":{"m1":{},"m2":{}}}},
            "$edgeHub":{"properties.desired":{"schemaVersion":"1.1","routes":{"r":"FROM /messages/* INTO $upstream"},
                        "storeAndForwardConfiguration":{"timeToLiveSecs":60}}},
            "m1":{"properties.desired":{"x":1}}}}"#,
    )
    .unwrap();
    let mut cfg = Config::ephemeral(dir.path().join("s"));
    cfg.manifest = Some(manifest.clone());
    cfg.modules = vec!["extra".into()];
    let hub = start(cfg.clone()).await.unwrap();
    assert_eq!(hub.module_ids(), vec!["extra", "m1", "m2"]);
    hub.stop().await;

    std::fs::write(&manifest, "{not json").unwrap();
    let e = start(cfg).await.err().expect("bad manifest fails");
    assert_eq!(e.kind, edgemodule::ErrorKind::Configuration);
    assert!(e.message.contains("deployment.json"), "{e}");
}

#[tokio::test]
async fn manifest_store_limit_reaches_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("deployment.json");
    std::fs::write(
        &manifest,
        r#"{"modulesContent":{
            "$edgeAgent":{"properties.desired":{"modules":{"m1":{}}}},
            "$edgeHub":{"properties.desired":{"schemaVersion":"1.1","routes":{},
                        "storeAndForwardConfiguration":{"timeToLiveSecs":60,
                                                        "storeLimits":{"maxSizeBytes":25}}}}}}"#,
    )
    .unwrap();
    let mut cfg = Config::ephemeral(dir.path().join("s"));
    cfg.manifest = Some(manifest);
    let hub = start(cfg).await.unwrap();
    for body in ["first-msg-", "second-msg", "third-msg-"] {
        hub.hub()
            .inject("m1", "in", edgemodule::Message::new(body))
            .unwrap();
    }
    let st = hub.hub().status();
    assert_eq!(st["store"]["maxBytes"], 25);
    assert_eq!(st["store"]["messages"], 2);
    assert_eq!(st["store"]["dropped"]["storeLimit"], 1);
    assert_eq!(st["queues"]["devhub-device/m1/in"], 2);
    hub.stop().await;
}

#[tokio::test]
async fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::ephemeral(dir.path());
    cfg.mqtt_tls_port = port;
    let e = start(cfg).await.err().expect("port in use");
    assert_eq!(e.kind, edgemodule::ErrorKind::Io);
    assert!(e.message.contains(&format!("127.0.0.1:{port}")), "{e}");
}

async fn tls_handshake(
    addr: SocketAddr,
    ca: &str,
    name: &str,
    version: &'static rustls::SupportedProtocolVersion,
) {
    let cfg = edgemodule_devhub::tls::client_config(ca, &[version]).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let s = tokio_rustls::TlsConnector::from(cfg)
        .connect(name.to_owned().try_into().unwrap(), tcp)
        .await
        .unwrap_or_else(|e| panic!("handshake with {name} {version:?}: {e}"));
    assert_eq!(s.get_ref().1.protocol_version(), Some(version.version));
}

#[tokio::test]
async fn tls_12_and_13_on_mqtt_and_https_with_localhost() {
    let (hub, _dir) = common::start_hub().await;
    let ca = common::ca_pem(&hub);
    for addr in [hub.addresses().mqtt_tls, hub.addresses().https] {
        for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
            tls_handshake(addr, &ca, "localhost", v).await;
        }
        tls_handshake(addr, &ca, "127.0.0.1", &rustls::version::TLS13).await;
        tls_handshake(addr, &ca, "devhub.local", &rustls::version::TLS12).await;
    }
    // A name the certificate does not carry is refused.
    let cfg = edgemodule_devhub::tls::default_client_config(&ca).unwrap();
    let tcp = tokio::net::TcpStream::connect(hub.addresses().mqtt_tls)
        .await
        .unwrap();
    let r = tokio_rustls::TlsConnector::from(cfg)
        .connect("other.example".try_into().unwrap(), tcp)
        .await;
    assert!(r.is_err());
    hub.stop().await;
}

#[tokio::test]
async fn plain_mqtt_listener_answers_connect() {
    let (hub, _dir) = common::start_hub().await;
    // CONNECT with a bad password: the hub must answer with a CONNACK (type 0x20), whatever
    // the return code.
    let mut s = tokio::net::TcpStream::connect(hub.addresses().mqtt_plain.unwrap())
        .await
        .unwrap();
    let client_id = b"devhub-device/sensor";
    let user = b"devhub.local/devhub-device/sensor/?api-version=2021-04-12";
    let pass = b"SharedAccessSignature sr=x&sig=y&se=1";
    let mut var = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0b1100_0000, 0, 60];
    for f in [&client_id[..], &user[..], &pass[..]] {
        var.extend_from_slice(&(f.len() as u16).to_be_bytes());
        var.extend_from_slice(f);
    }
    let mut pkt = vec![0x10];
    let mut len = var.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        pkt.push(b);
        if len == 0 {
            break;
        }
    }
    pkt.extend_from_slice(&var);
    s.write_all(&pkt).await.unwrap();
    let mut head = [0u8; 2];
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_exact(&mut head))
        .await
        .expect("CONNACK in time")
        .unwrap();
    assert_eq!(head[0], 0x20);
    hub.stop().await;
}

#[tokio::test]
async fn a_second_hub_on_the_same_state_dir_is_refused_and_drop_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::ephemeral(dir.path());
    let first = start(cfg.clone()).await.unwrap();
    let e = start(cfg.clone()).await.err().expect("second hub refused");
    assert!(e.message.contains("another process"), "{e}");
    // The first one still serves.
    let sock = first.addresses().workload_socket.clone();
    let r = common::workload(
        &sock,
        http::Method::GET,
        "/trust-bundle?api-version=2019-01-30",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, http::StatusCode::OK);
    let tls = first.addresses().mqtt_tls;
    drop(first);
    assert!(!sock.exists());
    assert!(!dir.path().join("ready.json").exists());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(tokio::net::TcpStream::connect(tls).await.is_err());
    // And a new one can start.
    start(cfg).await.unwrap().stop().await;
}
