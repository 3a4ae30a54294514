//! The IoT Edge environment path: Workload API signing and trust bundle (devhub's socket), and
//! every way a Workload API can fail (a socket server that answers badly on purpose).
//! On Windows the core reaches the Workload API over http:// only (unix:// is a configuration
//! error there): the same tests then use devhub's API through a TCP forward and TCP fakes.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::{manifest, next_input, Hub};
use edgemodule::{ClientOptions, ErrorKind, Message, ModuleClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn edge_env(hub: &Hub, module: &str, workload_uri: &str) -> HashMap<String, String> {
    let d = hub.dh();
    [
        ("IOTEDGE_IOTHUBHOSTNAME", d.hub_host_name().to_string()),
        ("IOTEDGE_DEVICEID", d.device_id().to_string()),
        ("IOTEDGE_MODULEID", module.to_string()),
        ("IOTEDGE_MODULEGENERATIONID", "gen-1".to_string()),
        ("IOTEDGE_WORKLOADURI", workload_uri.to_string()),
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
    let a_env = edge_env(&hub, "a", &hub.dh().workload_uri());
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

/// A Workload API that answers every request with `response` (raw HTTP); its URI.
#[cfg(unix)]
async fn bad_workload(dir: &Path, response: &'static str) -> String {
    let path = dir.join("bad.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(answer(s, response));
        }
    });
    format!("unix://{}", path.display())
}

/// Windows: the same over TCP (`dir` unused).
#[cfg(not(unix))]
async fn bad_workload(_dir: &Path, response: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(answer(s, response));
        }
    });
    uri
}

async fn answer<S: AsyncReadExt + AsyncWriteExt + Unpin>(mut s: S, response: &'static str) {
    let mut buf = vec![0u8; 8192];
    let _ = s.read(&mut buf).await;
    let _ = s.write_all(response.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// A Workload API nobody serves: its URI and the part of it an error must name.
fn missing_workload(dir: &Path) -> (String, String) {
    if cfg!(unix) {
        let p = dir.join("missing.sock");
        (format!("unix://{}", p.display()), "missing.sock".into())
    } else {
        let addr = format!("127.0.0.1:{}", common::free_port());
        (format!("http://{addr}"), addr)
    }
}

async fn connect_error(hub: &Hub, workload_uri: &str) -> edgemodule::Error {
    let env = edge_env(hub, "a", workload_uri);
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

    let (missing, name) = missing_workload(dir.path());
    let e = connect_error(&hub, &missing).await;
    assert_eq!(e.kind, ErrorKind::Workload, "{e}");
    assert!(e.message.contains(&name), "{}", e.message);
}

/// Windows builds have no unix sockets: a unix:// Workload URI is a configuration error naming
/// the variable, before any I/O.
#[cfg(not(unix))]
#[tokio::test(flavor = "multi_thread")]
async fn unix_workload_uri_is_a_configuration_error_on_windows() {
    let hub = Hub::start(&manifest(&["a"], &[], serde_json::json!({}))).await;
    let env = edge_env(&hub, "a", "unix:///var/run/iotedge/workload.sock");
    let e = ModuleClient::from_environment_with(|k| env.get(k).cloned(), env_options(&hub))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Configuration, "{e}");
    assert!(e.message.contains("IOTEDGE_WORKLOADURI"), "{}", e.message);
    assert!(e.message.contains("http://"), "{}", e.message);
}
