//! Helpers shared by devhub's integration tests: an ephemeral hub, raw HTTPS and Workload API
//! requests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use edgemodule_devhub::{start, Config, DevHub};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

pub const MODULES: [&str; 2] = ["sensor", "filter"];

/// A hub on ephemeral ports with modules `sensor` and `filter`; keep the TempDir alive.
pub async fn start_hub() -> (DevHub, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::ephemeral(dir.path().join("state"));
    cfg.modules = MODULES.iter().map(|s| s.to_string()).collect();
    let hub = start(cfg).await.expect("devhub starts");
    (hub, dir)
}

pub fn ca_pem(hub: &DevHub) -> String {
    std::fs::read_to_string(hub.ca_cert_path()).unwrap()
}

pub fn client_config(hub: &DevHub) -> Arc<rustls::ClientConfig> {
    edgemodule_devhub::tls::default_client_config(&ca_pem(hub)).unwrap()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn send<T>(io: T, req: Request<Full<Bytes>>) -> Reply
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

fn build(
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(body.into())).unwrap()
}

/// One HTTPS request to the hub (TLS to "localhost", trusting the hub's CA).
pub async fn https(
    hub: &DevHub,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let tcp = tokio::net::TcpStream::connect(hub.addresses().https)
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(client_config(hub))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    send(
        hyper_util::rt::TokioIo::new(tls),
        build(method, path, headers, body),
    )
    .await
}

/// A GET without headers or body: `https(hub, Method::GET, path, &[], "")`.
pub async fn https_get(hub: &DevHub, path: &str) -> Reply {
    https(hub, Method::GET, path, &[], "").await
}

/// A POST without headers: `https(hub, Method::POST, path, &[], body)`.
pub async fn https_post(hub: &DevHub, path: &str, body: impl Into<Bytes>) -> Reply {
    https(hub, Method::POST, path, &[], body).await
}

/// One Workload API request over the unix socket.
pub async fn workload(
    socket: &Path,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let s = tokio::net::UnixStream::connect(socket).await.unwrap();
    send(
        hyper_util::rt::TokioIo::new(s),
        build(method, path, headers, body),
    )
    .await
}

/// A GET without headers or body: `workload(socket, Method::GET, path, &[], "")`.
pub async fn workload_get(socket: &Path, path: &str) -> Reply {
    workload(socket, Method::GET, path, &[], "").await
}

/// A POST without headers: `workload(socket, Method::POST, path, &[], body)`.
pub async fn workload_post(socket: &Path, path: &str, body: impl Into<Bytes>) -> Reply {
    workload(socket, Method::POST, path, &[], body).await
}

/// How a test MQTT client reaches the hub.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    Plain,
    Tls,
    WebSocket,
}

/// A connected rumqttc client for `module` (CONNACK accepted), its event loop driven by the
/// caller.
pub async fn mqtt(
    hub: &DevHub,
    module: &str,
    via: Via,
) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    use edgemodule::protocol::{sas, topics};
    let a = hub.addresses();
    let tls = || rumqttc::TlsConfiguration::Rustls(client_config(hub));
    let mut opts = match via {
        Via::Plain => rumqttc::MqttOptions::new(
            format!("{}/{module}", hub.device_id()),
            "127.0.0.1",
            a.mqtt_plain.unwrap().port(),
        ),
        Via::Tls => {
            let mut o = rumqttc::MqttOptions::new(
                format!("{}/{module}", hub.device_id()),
                "localhost",
                a.mqtt_tls.port(),
            );
            o.set_transport(rumqttc::Transport::Tls(tls()));
            o
        }
        Via::WebSocket => {
            let mut o = rumqttc::MqttOptions::new(
                format!("{}/{module}", hub.device_id()),
                format!("wss://localhost:{}/$iothub/websocket", a.https.port()),
                a.https.port(),
            );
            o.set_transport(rumqttc::Transport::Wss(tls()));
            o
        }
    };
    let key = sas::decode_key(&hub.module_key(module).unwrap()).unwrap();
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    opts.set_credentials(
        topics::username(
            hub.hub_host_name(),
            hub.device_id(),
            module,
            "2021-04-12",
            "devhub-tests",
            None,
        ),
        sas::module_token(hub.hub_host_name(), hub.device_id(), module, &key, expiry),
    );
    opts.set_clean_session(false);
    opts.set_keep_alive(std::time::Duration::from_secs(30));
    opts.set_max_packet_size(512 * 1024, 512 * 1024);
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 100);
    let deadline = std::time::Duration::from_secs(10);
    tokio::time::timeout(deadline, async {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => {
                    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
                    break;
                }
                Ok(_) => {}
                Err(e) => panic!("{module} via {via:?}: {e}"),
            }
        }
    })
    .await
    .expect("CONNACK in time");
    (client, el)
}
