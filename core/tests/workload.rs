//! The IoT Edge environment path: Workload API signing and trust bundle (devhub's socket), and
//! every way a Workload API can fail (a socket server that answers badly on purpose).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::{manifest, next_input, Hub};
use edgemodule::{ClientOptions, ErrorKind, Message, ModuleClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn edge_env(hub: &Hub, module: &str, socket: &Path) -> HashMap<String, String> {
    let d = hub.dh();
    [
        ("IOTEDGE_IOTHUBHOSTNAME", d.hub_host_name().to_string()),
        ("IOTEDGE_DEVICEID", d.device_id().to_string()),
        ("IOTEDGE_MODULEID", module.to_string()),
        ("IOTEDGE_MODULEGENERATIONID", "gen-1".to_string()),
        (
            "IOTEDGE_WORKLOADURI",
            format!("unix://{}", socket.display()),
        ),
        ("IOTEDGE_GATEWAYHOSTNAME", "localhost".to_string()),
        ("IOTEDGE_AUTHSCHEME", "sasToken".to_string()),
        ("IOTEDGE_APIVERSION", "2019-01-30".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn env_options(hub: &Hub) -> ClientOptions {
    let mut o = hub.options();
    o.trust_bundle_pem = None; // from the Workload API
    o
}

#[tokio::test(flavor = "multi_thread")]
async fn modules_connect_through_the_workload_api() {
    let route = (
        "ab",
        "FROM /messages/modules/a/outputs/out1 INTO BrokeredEndpoint(\"/modules/b/inputs/in1\")",
    );
    let hub = Hub::start(&manifest(&["a", "b"], &[route], serde_json::json!({}))).await;
    let socket = hub.dh().addresses().workload_socket.clone();
    let a_env = edge_env(&hub, "a", &socket);
    let a =
        ModuleClient::from_environment_with(|k| a_env.get(k).cloned(), env_options(&hub)).unwrap();
    a.connect()
        .await
        .expect("connects with a Workload-signed token");
    let b = hub.connected("b").await;
    a.send_message_to_output("out1", Message::new(b"via workload".to_vec()))
        .await
        .unwrap();
    let (_, got) = next_input(&b, Duration::from_secs(10)).await;
    assert_eq!(got.body, b"via workload");
}

/// A Workload API that answers every request with `response` (raw HTTP).
async fn bad_workload(dir: &Path, response: &'static str) -> std::path::PathBuf {
    let path = dir.join("bad.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(response.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    path
}

async fn connect_error(hub: &Hub, socket: &Path) -> edgemodule::Error {
    let env = edge_env(hub, "a", socket);
    let mut opts = env_options(hub);
    opts.connect_timeout = Duration::from_secs(3);
    let c = ModuleClient::from_environment_with(|k| env.get(k).cloned(), opts).unwrap();
    tokio::time::timeout(Duration::from_secs(20), c.connect())
        .await
        .expect("connect gives up in time")
        .unwrap_err()
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_failures_are_typed_and_carry_the_server_message() {
    let hub = Hub::start(&manifest(&["a"], &[], serde_json::json!({}))).await;
    let dir = tempfile::tempdir().unwrap();

    let s404 = bad_workload(
        dir.path(),
        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 24\r\nConnection: close\r\n\r\n{\"message\":\"not found!\"}",
    )
    .await;
    let e = connect_error(&hub, &s404).await;
    assert_eq!((e.kind, e.status), (ErrorKind::Workload, Some(404)), "{e}");
    assert!(e.message.contains("not found!"), "{}", e.message);

    let d2 = tempfile::tempdir().unwrap();
    let s500 = bad_workload(
        d2.path(),
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 18\r\nConnection: close\r\n\r\n{\"message\":\"boom\"}",
    )
    .await;
    let e = connect_error(&hub, &s500).await;
    assert_eq!((e.kind, e.status), (ErrorKind::Workload, Some(500)), "{e}");
    assert!(e.message.contains("boom"), "{}", e.message);

    let d3 = tempfile::tempdir().unwrap();
    let garbage = bad_workload(d3.path(), "this is not HTTP at all\r\n\r\n").await;
    let e = connect_error(&hub, &garbage).await;
    assert_eq!(e.kind, ErrorKind::Workload, "{e}");

    let d4 = tempfile::tempdir().unwrap();
    let bad_json = bad_workload(
        d4.path(),
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{nope",
    )
    .await;
    let e = connect_error(&hub, &bad_json).await;
    assert_eq!(e.kind, ErrorKind::Workload, "{e}");

    let e = connect_error(&hub, &dir.path().join("missing.sock")).await;
    assert_eq!(e.kind, ErrorKind::Workload, "{e}");
    assert!(e.message.contains("missing.sock"), "{}", e.message);
}
