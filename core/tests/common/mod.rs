//! Test harness: devhub on ephemeral ports, clients from its connection strings.
//!
//! One API, two backends:
//! - in-process (default; unix only): `edgemodule_devhub::start` on the test's runtime;
//! - external (env `EDGEMODULE_HOSTCTL=127.0.0.1:PORT`, the only one on Windows): cross-target
//!   runs (qemu-user, wine; see cross/run.sh) ask cross/hostctl.py, a helper on the host, to run
//!   a native devhub per test (same manifest), stop and restart it on the same ports and state,
//!   and to forward service calls (twins, methods, faults, upstream feed) to devhub's HTTPS API.
//!   Broker tests get their mosquitto from it too.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
#[cfg(unix)]
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use edgemodule::{ClientOptions, Event, Message, ModuleClient};
use serde_json::{json, Value};

#[cfg(unix)]
use edgemodule_devhub::{Config, DevHub};

/// Set by cross/run.sh: where cross/hostctl.py listens.
pub const HOSTCTL_ENV: &str = "EDGEMODULE_HOSTCTL";

/// The host helper's address when the tests run against external processes.
pub fn hostctl() -> Option<String> {
    match std::env::var(HOSTCTL_ENV) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if cfg!(unix) => None,
        _ => panic!(
            "{HOSTCTL_ENV} is not set: on this platform devhub cannot run in-process; \
             run the tests through cross/run.sh (it starts cross/hostctl.py on the host)"
        ),
    }
}

pub struct Hub {
    pub devhub: Option<Dh>,
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    how: Restart,
}

/// What `restart` needs.
enum Restart {
    #[cfg(unix)]
    Local(Box<Config>),
    Remote {
        ctl: String,
        id: String,
    },
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGEMODULE_TEST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A manifest with modules and string routes.
pub fn manifest(modules: &[&str], routes: &[(&str, &str)], desired: serde_json::Value) -> String {
    let mut mods = serde_json::Map::new();
    for m in modules {
        mods.insert(
            m.to_string(),
            serde_json::json!({"type":"docker","settings":{"image":"example/img:1"}}),
        );
    }
    let mut r = serde_json::Map::new();
    for (name, text) in routes {
        r.insert(
            name.to_string(),
            serde_json::Value::String(text.to_string()),
        );
    }
    let mut content = serde_json::json!({
        "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "modules": mods}},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": r,
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}},
    });
    if let serde_json::Value::Object(d) = desired {
        for (m, props) in d {
            content[m] = serde_json::json!({"properties.desired": props});
        }
    }
    serde_json::json!({"modulesContent": content}).to_string()
}

/// A free TCP port on 127.0.0.1 (for tests that restart devhub on the same ports).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Hub {
    pub async fn start(manifest_json: &str) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        match hostctl() {
            Some(ctl) => Self::start_remote(ctl, dir, manifest_json),
            None => Self::start_local(dir, manifest_json, false).await,
        }
    }

    /// Start on fixed free ports, so `restart` comes back where clients expect it. (The
    /// external helper always restarts a hub on the ports it first got.)
    pub async fn start_restartable(manifest_json: &str) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        match hostctl() {
            Some(ctl) => Self::start_remote(ctl, dir, manifest_json),
            None => Self::start_local(dir, manifest_json, true).await,
        }
    }

    #[cfg(unix)]
    async fn start_local(dir: tempfile::TempDir, manifest_json: &str, fixed_ports: bool) -> Hub {
        let mut config = Self::config_in(dir.path(), manifest_json);
        if fixed_ports {
            config.mqtt_tls_port = free_port();
            config.https_port = free_port();
            config.mqtt_plain_port = None;
        }
        Self::start_with(dir, config).await
    }

    #[cfg(not(unix))]
    async fn start_local(_: tempfile::TempDir, _: &str, _: bool) -> Hub {
        unreachable!("hostctl() panics without {HOSTCTL_ENV} here")
    }

    #[cfg(unix)]
    pub fn config_in(dir: &Path, manifest_json: &str) -> Config {
        init_tracing();
        let path = dir.join("deployment.json");
        std::fs::write(&path, manifest_json).unwrap();
        let mut config = Config::ephemeral(dir.join("state"));
        config.manifest = Some(path);
        config.ack_timeout = Duration::from_secs(3);
        config
    }

    #[cfg(unix)]
    pub async fn start_with(dir: tempfile::TempDir, config: Config) -> Hub {
        let devhub = edgemodule_devhub::start(config.clone())
            .await
            .expect("devhub starts");
        let ca_pem = std::fs::read_to_string(devhub.ca_cert_path()).unwrap();
        Hub {
            devhub: Some(Dh::Local(devhub)),
            dir,
            ca_pem,
            how: Restart::Local(Box::new(config)),
        }
    }

    fn start_remote(ctl: String, dir: tempfile::TempDir, manifest_json: &str) -> Hub {
        init_tracing();
        // Same ack timeout as the in-process config.
        let info = ctl_call(
            &ctl,
            "POST",
            "/hubs",
            Some(&json!({"manifest": manifest_json, "ack_timeout": 3})),
        );
        let remote = RemoteHub::from_info(&ctl, &info);
        Hub {
            ca_pem: remote.ca_pem.clone(),
            how: Restart::Remote {
                ctl,
                id: remote.id.clone(),
            },
            devhub: Some(Dh::Remote(remote)),
            dir,
        }
    }

    pub fn dh(&self) -> &Dh {
        self.devhub.as_ref().expect("devhub running")
    }

    pub fn options(&self) -> ClientOptions {
        let mut o = ClientOptions {
            trust_bundle_pem: Some(self.ca_pem.clone()),
            mqtt_port: Some(self.dh().addresses().mqtt_tls.port()),
            https_port: Some(self.dh().addresses().https.port()),
            ..Default::default()
        };
        o.backoff.min = Duration::from_millis(50);
        o.backoff.max = Duration::from_millis(500);
        o.operation_timeout = Duration::from_secs(20);
        o
    }

    pub fn client(&self, module: &str) -> ModuleClient {
        self.client_with(module, self.options())
    }

    pub fn client_with(&self, module: &str, options: ClientOptions) -> ModuleClient {
        let cs = self.dh().connection_string(module).expect("known module");
        ModuleClient::from_connection_string(&cs, options).expect("client")
    }

    pub async fn connected(&self, module: &str) -> ModuleClient {
        let c = self.client(module);
        c.connect().await.expect("connects");
        c
    }

    pub async fn stop(&mut self) {
        match self.devhub.take() {
            #[cfg(unix)]
            Some(Dh::Local(d)) => d.stop().await,
            Some(Dh::Remote(r)) => {
                let path = format!("/hubs/{}/stop", r.id);
                blocking(move || ctl_call(&r.ctl, "POST", &path, None)).await;
            }
            None => {}
        }
    }

    /// Start again on the same state dir and ports.
    pub async fn restart(&mut self) {
        self.stop().await;
        let dh = match &self.how {
            #[cfg(unix)]
            Restart::Local(config) => Dh::Local(
                edgemodule_devhub::start((**config).clone())
                    .await
                    .expect("devhub restarts"),
            ),
            Restart::Remote { ctl, id } => {
                let (ctl, path) = (ctl.clone(), format!("/hubs/{id}/start"));
                let c = ctl.clone();
                let info = blocking(move || ctl_call(&c, "POST", &path, None)).await;
                Dh::Remote(RemoteHub::from_info(&ctl, &info))
            }
        };
        self.devhub = Some(dh);
    }

    pub fn state_dir(&self) -> PathBuf {
        match &self.how {
            #[cfg(unix)]
            Restart::Local(config) => config.state_dir.clone(),
            Restart::Remote { .. } => match &self.devhub {
                Some(Dh::Remote(r)) => r.state_dir.clone(),
                _ => panic!("the external hub's state dir is known while it runs"),
            },
        }
    }
}

impl Drop for Hub {
    #[cfg_attr(not(unix), allow(irrefutable_let_patterns))]
    fn drop(&mut self) {
        if let Restart::Remote { ctl, id } = &self.how {
            // Best effort: hostctl stops everything it started when the run ends anyway.
            let _ = try_ctl_call(ctl, "DELETE", &format!("/hubs/{id}"), None);
        }
    }
}

/// Where a devhub listens (the fields of `edgemodule_devhub::Addresses`).
#[derive(Clone, Debug)]
pub struct Addresses {
    pub mqtt_tls: SocketAddr,
    pub https: SocketAddr,
    pub mqtt_plain: Option<SocketAddr>,
    /// Host path of the Workload API socket.
    pub workload_socket: PathBuf,
}

/// A running devhub: in this process, or on the host behind cross/hostctl.py.
pub enum Dh {
    #[cfg(unix)]
    Local(DevHub),
    Remote(RemoteHub),
}

pub struct RemoteHub {
    ctl: String,
    id: String,
    addresses: Addresses,
    hub_host_name: String,
    device_id: String,
    module_keys: BTreeMap<String, String>,
    ca_pem: String,
    state_dir: PathBuf,
    /// `127.0.0.1:port` forwarded by hostctl to the Workload API socket.
    workload_http: String,
}

impl RemoteHub {
    fn from_info(ctl: &str, v: &Value) -> RemoteHub {
        let s = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("hostctl hub info lacks {k}: {v}"))
                .to_string()
        };
        let addr = |k: &str| s(k).parse::<SocketAddr>().expect("ip:port");
        RemoteHub {
            ctl: ctl.to_string(),
            id: s("id"),
            addresses: Addresses {
                mqtt_tls: addr("mqtt_tls"),
                https: addr("https"),
                mqtt_plain: v["mqtt_plain"]
                    .as_str()
                    .map(|a| a.parse().expect("ip:port")),
                workload_socket: PathBuf::from(s("workload_socket")),
            },
            hub_host_name: s("hub_host_name"),
            device_id: s("device_id"),
            module_keys: serde_json::from_value(v["module_keys"].clone()).expect("module_keys"),
            ca_pem: s("ca_pem"),
            state_dir: PathBuf::from(s("state_dir")),
            workload_http: s("workload_http"),
        }
    }
}

impl Dh {
    pub fn addresses(&self) -> Addresses {
        match self {
            #[cfg(unix)]
            Dh::Local(d) => {
                let a = d.addresses();
                Addresses {
                    mqtt_tls: a.mqtt_tls,
                    https: a.https,
                    mqtt_plain: a.mqtt_plain,
                    workload_socket: a.workload_socket.clone(),
                }
            }
            Dh::Remote(r) => r.addresses.clone(),
        }
    }

    /// `IOTEDGE_WORKLOADURI` for this devhub: its unix socket, or on Windows (no unix
    /// sockets in the core there) hostctl's TCP forward of it, as IoT Edge on Windows does.
    pub fn workload_uri(&self) -> String {
        match self {
            Dh::Remote(r) if cfg!(not(unix)) => format!("http://{}", r.workload_http),
            _ => format!("unix://{}", self.addresses().workload_socket.display()),
        }
    }

    pub fn hub_host_name(&self) -> &str {
        match self {
            #[cfg(unix)]
            Dh::Local(d) => d.hub_host_name(),
            Dh::Remote(r) => &r.hub_host_name,
        }
    }

    pub fn device_id(&self) -> &str {
        match self {
            #[cfg(unix)]
            Dh::Local(d) => d.device_id(),
            Dh::Remote(r) => &r.device_id,
        }
    }

    pub fn module_key(&self, module: &str) -> Option<String> {
        match self {
            #[cfg(unix)]
            Dh::Local(d) => d.module_key(module),
            Dh::Remote(r) => r.module_keys.get(module).cloned(),
        }
    }

    /// Same text as devhub's (`GatewayHostName=localhost`, no port).
    pub fn connection_string(&self, module: &str) -> Option<String> {
        match self {
            #[cfg(unix)]
            Dh::Local(d) => d.connection_string(module),
            Dh::Remote(r) => {
                let key = r.module_keys.get(module)?;
                Some(
                    edgemodule::protocol::connection_string::ConnectionString {
                        host_name: r.hub_host_name.clone(),
                        device_id: r.device_id.clone(),
                        module_id: Some(module.to_owned()),
                        shared_access_key: Some(key.clone()),
                        shared_access_key_name: None,
                        gateway_host_name: Some("localhost".to_owned()),
                        gateway_port: None,
                    }
                    .to_string(),
                )
            }
        }
    }

    /// The engine's service side: twins, methods, upstream feed, faults.
    pub fn hub(&self) -> HubApi {
        match self {
            #[cfg(unix)]
            Dh::Local(d) => HubApi::Local(d.hub()),
            Dh::Remote(r) => HubApi::Remote {
                ctl: r.ctl.clone(),
                id: r.id.clone(),
                device: r.device_id.clone(),
            },
        }
    }
}

/// The subset of `edgemodule_devhub::hub::Hub` the tests use; errors as text.
#[derive(Clone)]
pub enum HubApi {
    #[cfg(unix)]
    Local(std::sync::Arc<edgemodule_devhub::hub::Hub>),
    Remote {
        ctl: String,
        id: String,
        device: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct MethodResult {
    pub status: i32,
    pub payload: Value,
}

#[derive(Clone, Debug)]
pub struct UpstreamMessage {
    pub module: String,
    pub output: Option<String>,
    pub message: Message,
}

impl HubApi {
    /// A devhub API call through hostctl: (status, body).
    fn api(ctl: &str, id: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let r = ctl_call(
            ctl,
            "POST",
            &format!("/hubs/{id}/api"),
            Some(&json!({"method": method, "path": path, "body": body})),
        );
        (r["status"].as_u64().unwrap_or(0) as u16, r["body"].clone())
    }

    #[cfg_attr(not(unix), allow(irrefutable_let_patterns))]
    fn api_ok(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let HubApi::Remote { ctl, id, .. } = self else {
            unreachable!("remote only")
        };
        match Self::api(ctl, id, method, path, body) {
            (200..=299, v) => Ok(v),
            (status, v) => Err(format!("{method} {path}: HTTP {status}: {v}")),
        }
    }

    pub fn update_twin(
        &self,
        module: &str,
        patch: Value,
        if_match: Option<&str>,
    ) -> Result<Value, String> {
        match self {
            #[cfg(unix)]
            HubApi::Local(h) => h
                .update_twin(module, patch, if_match)
                .map_err(|e| format!("{e:?}")),
            HubApi::Remote { device, .. } => {
                assert!(if_match.is_none(), "If-Match is not forwarded by hostctl");
                self.api_ok(
                    "PATCH",
                    &format!("/twins/{}/modules/{}", enc(device), enc(module)),
                    Some(patch),
                )
            }
        }
    }

    pub async fn invoke_method(
        &self,
        module: &str,
        method: &str,
        payload: Value,
        response_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<MethodResult, String> {
        match self {
            #[cfg(unix)]
            HubApi::Local(h) => h
                .invoke_method(module, method, payload, response_timeout, connect_timeout)
                .await
                .map(|r| MethodResult {
                    status: r.status,
                    payload: r.payload,
                })
                .map_err(|e| format!("{e:?}")),
            HubApi::Remote { device, .. } => {
                let (this, path) = (
                    self.clone(),
                    format!("/twins/{}/modules/{}/methods", enc(device), enc(module)),
                );
                let body = json!({
                    "methodName": method, "payload": payload,
                    "responseTimeoutInSeconds": response_timeout.as_secs(),
                    "connectTimeoutInSeconds": connect_timeout.as_secs(),
                });
                // Blocks for as long as the module takes: keep it off the test's workers.
                let v = blocking(move || this.api_ok("POST", &path, Some(body))).await?;
                Ok(MethodResult {
                    status: v["status"].as_i64().expect("status") as i32,
                    payload: v["payload"].clone(),
                })
            }
        }
    }

    pub fn upstream_recent(&self) -> Vec<UpstreamMessage> {
        match self {
            #[cfg(unix)]
            HubApi::Local(h) => h
                .upstream_recent()
                .into_iter()
                .map(|u| UpstreamMessage {
                    module: u.module,
                    output: u.output,
                    message: u.message,
                })
                .collect(),
            HubApi::Remote { .. } => {
                let list = self
                    .api_ok("GET", "/devhub/upstream", None)
                    .expect("upstream feed");
                list.as_array()
                    .expect("a JSON array")
                    .iter()
                    .map(upstream_from_json)
                    .collect()
            }
        }
    }

    pub fn faults(&self) -> Faults {
        Faults(self.clone())
    }
}

/// devhub's JSON view of an upstream message (http_api::upstream_json) back into a Message.
fn upstream_from_json(v: &Value) -> UpstreamMessage {
    use base64::Engine as _;
    let text = |k: &str| v[k].as_str().map(str::to_string);
    let mut message = Message::new(
        base64::engine::general_purpose::STANDARD
            .decode(v["bodyBase64"].as_str().unwrap_or_default())
            .expect("bodyBase64"),
    );
    message.message_id = text("messageId");
    message.correlation_id = text("correlationId");
    message.user_id = text("userId");
    message.content_type = text("contentType");
    message.content_encoding = text("contentEncoding");
    message.creation_time_utc = text("creationTimeUtc");
    message.expiry_time_utc = text("expiryTimeUtc");
    message.connection_device_id = text("connectionDeviceId");
    message.connection_module_id = text("connectionModuleId");
    if let Some(props) = v["properties"].as_object() {
        message.properties = props
            .iter()
            .map(|(k, p)| (k.clone(), p.as_str().map(str::to_string)))
            .collect();
    }
    UpstreamMessage {
        module: text("module").unwrap_or_default(),
        output: text("output"),
        message,
    }
}

/// devhub's fault injection (`Hub::faults()`; `/devhub/faults/...` over HTTPS).
pub struct Faults(HubApi);

impl Faults {
    fn remote(&self, path: &str) {
        self.0.api_ok("POST", path, None).expect("fault accepted");
    }

    pub fn drop_connections(&self) {
        match &self.0 {
            #[cfg(unix)]
            HubApi::Local(h) => h.faults().drop_connections(),
            HubApi::Remote { .. } => self.remote("/devhub/faults/drop-connections"),
        }
    }

    pub fn disconnect_gracefully(&self) {
        match &self.0 {
            #[cfg(unix)]
            HubApi::Local(h) => h.faults().disconnect_gracefully(),
            HubApi::Remote { .. } => self.remote("/devhub/faults/disconnect"),
        }
    }

    pub fn refuse_connections_for(&self, d: Duration) {
        match &self.0 {
            #[cfg(unix)]
            HubApi::Local(h) => h.faults().refuse_connections_for(d),
            HubApi::Remote { .. } => {
                self.remote(&format!("/devhub/faults/refuse?secs={}", d.as_secs()))
            }
        }
    }

    pub fn fail_twin_requests(&self, status: u16, count: u32) {
        match &self.0 {
            #[cfg(unix)]
            HubApi::Local(h) => h.faults().fail_twin_requests(status, count),
            HubApi::Remote { .. } => self.remote(&format!(
                "/devhub/faults/twin-errors?status={status}&count={count}"
            )),
        }
    }

    pub fn expire_tokens(&self) {
        match &self.0 {
            #[cfg(unix)]
            HubApi::Local(h) => h.faults().expire_tokens(),
            HubApi::Remote { .. } => self.remote("/devhub/faults/expire-tokens"),
        }
    }
}

/// Percent-encodes a path segment (module ids are plain, but be safe).
fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Runs a blocking hostctl call off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("hostctl call")
}

/// One JSON request to cross/hostctl.py (plain HTTP/1.1 on loopback); panics on failure.
pub fn ctl_call(ctl: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    try_ctl_call(ctl, method, path, body).unwrap_or_else(|e| panic!("hostctl {method} {path}: {e}"))
}

pub fn try_ctl_call(
    ctl: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(ctl).map_err(|e| format!("connect {ctl}: {e}"))?;
    let data = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: hostctl\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(&data))
        .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("bad answer {text:?}"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {head:?}"))?;
    let v: Value = serde_json::from_str(body).map_err(|e| format!("{e}: {body:?}"))?;
    if status != 200 {
        return Err(format!("HTTP {status}: {v}"));
    }
    Ok(v)
}

/// A mosquitto on 127.0.0.1: spawned here, or by hostctl in external mode. Stopped on drop.
pub struct Mosquitto {
    pub port: u16,
    how: MosquittoProc,
}

enum MosquittoProc {
    Local(std::process::Child, tempfile::TempDir),
    Remote { ctl: String, id: String },
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        match &mut self.how {
            MosquittoProc::Local(child, _) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            MosquittoProc::Remote { ctl, id } => {
                let _ = try_ctl_call(ctl, "DELETE", &format!("/mosquitto/{id}"), None);
            }
        }
    }
}

fn mosquitto_binary() -> String {
    for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if std::path::Path::new(p).exists() {
            return p.to_string();
        }
    }
    panic!("mosquitto is not installed: `make test` installs it with apt-get (package mosquitto)");
}

fn unsafe_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// mosquitto on 127.0.0.1:`port`, without persistence (a restart forgets every session).
pub fn start_mosquitto_on(port: u16) -> Mosquitto {
    if let Some(ctl) = hostctl() {
        let v = ctl_call(&ctl, "POST", "/mosquitto", Some(&json!({ "port": port })));
        return Mosquitto {
            port: v["port"].as_u64().expect("port") as u16,
            how: MosquittoProc::Remote {
                ctl,
                id: v["id"].as_str().expect("id").to_string(),
            },
        };
    }
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    let mut text = format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 0\n"
    );
    // As root, mosquitto drops to user `mosquitto` unless told otherwise.
    if unsafe_is_root() {
        text.push_str("user root\n");
    }
    std::fs::write(&conf, text).unwrap();
    let child = Command::new(mosquitto_binary())
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto starts");
    let m = Mosquitto {
        port,
        how: MosquittoProc::Local(child, dir),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("mosquitto did not listen on {port}");
}

/// The next event that `pick` accepts, skipping others, within `within`.
pub async fn next_matching<T>(
    client: &ModuleClient,
    within: Duration,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let ev = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .expect("timed out waiting for an event")
            .expect("client closed while waiting for an event");
        if let Some(v) = pick(ev) {
            return v;
        }
    }
}

/// The next input message (acked), within `within`.
pub async fn next_input(client: &ModuleClient, within: Duration) -> (String, Message) {
    next_matching(client, within, |ev| match ev {
        Event::InputMessage {
            input,
            message,
            ack,
        } => {
            ack.ack();
            Some((input, message))
        }
        _ => None,
    })
    .await
}
