//! The `devhub` command line: `run` starts a hub; the other commands either read the state
//! directory (`env`, `connection-string`, `service-connection-string`) or talk to a running
//! devhub over its HTTPS API, found through `{state}/ready.json` (the port and the CA to trust).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use edgemodule::{Error, ErrorKind, Result};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::config::{self, Config};
use crate::{certs, ready, state};

/// devhub: a local IoT Edge hub for developing and testing modules (no Docker, no cloud).
#[derive(Debug, Parser)]
#[command(name = "devhub", version, propagate_version = true)]
pub struct Cli {
    /// State directory: CA, certificates, keys, twins, queues, ready.json.
    #[arg(long, global = true, env = "DEVHUB_STATE_DIR", default_value = config::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub until Ctrl-C (or SIGTERM).
    Run(RunArgs),
    /// Print the environment (`export ...` lines) a module needs to connect to devhub.
    Env {
        /// Module id.
        module: String,
    },
    /// Print a module's connection string (HostName=..;GatewayHostName=localhost).
    ConnectionString {
        /// Module id.
        module: String,
    },
    /// Print the service connection string (HostName=..;SharedAccessKeyName=iothubowner;SharedAccessKey=..)
    ///
    /// For IoT Hub service SDKs and tools that call devhub's HTTPS API (twins, methods). Works
    /// with devhub stopped; the key lives in {state}/keys.json.
    ServiceConnectionString,
    /// Read or update a module twin (needs a running devhub).
    #[command(subcommand)]
    Twin(TwinCommand),
    /// Invoke a direct method on a module (needs a running devhub).
    Invoke {
        /// Target module id.
        module: String,
        /// Method name.
        method: String,
        /// JSON payload.
        #[arg(long, default_value = "null")]
        payload: String,
        /// Response timeout in seconds (5-300).
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// How long to wait for the module to connect, in seconds (0-300).
        #[arg(long, default_value_t = 0)]
        connect_timeout: u64,
    },
    /// Send a message to a module input (needs a running devhub).
    Send(SendArgs),
    /// Print messages routed to $upstream as they arrive (needs a running devhub).
    Monitor {
        /// One JSON object per line instead of a human-readable line.
        #[arg(long)]
        json: bool,
    },
    /// Print connections, subscriptions, queue depths and store use (needs a running devhub).
    Status {
        /// The raw JSON of `GET /devhub/status` instead of tables.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Deployment manifest (modules, routes, TTL, desired properties). Without one, there are
    /// no routes: module outputs go nowhere.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Module identity to create (repeatable; added to the manifest's modules).
    #[arg(long = "module", value_name = "NAME")]
    pub modules: Vec<String>,
    /// IoT Hub host name modules use in SAS tokens and MQTT usernames.
    #[arg(long, default_value = config::DEFAULT_HUB_HOST_NAME)]
    pub hub_host_name: String,
    /// Edge device id.
    #[arg(long, default_value = config::DEFAULT_DEVICE_ID)]
    pub device_id: String,
    /// Extra host name (or IP) for the server certificate (repeatable).
    #[arg(long = "gateway-host", value_name = "NAME")]
    pub gateway_hosts: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// MQTT over TLS port (0 = any free port).
    #[arg(long, default_value_t = config::DEFAULT_MQTT_TLS_PORT)]
    pub mqtt_port: u16,
    /// HTTPS port: WebSockets, method invoke, service and devhub APIs (0 = any free port).
    #[arg(long, default_value_t = config::DEFAULT_HTTPS_PORT)]
    pub https_port: u16,
    /// Also serve plain MQTT (no TLS) on this port (tests only; 0 = any free port).
    #[arg(long)]
    pub mqtt_plain_port: Option<u16>,
    /// Workload API socket (default {state}/workload.sock).
    #[arg(long)]
    pub workload_socket: Option<PathBuf>,
    /// Seconds a module-bound message waits for PUBACK before redelivery.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub ack_timeout: u64,
    /// Also write the ready file here ({state}/ready.json is always written).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, trace, or a tracing filter). RUST_LOG wins.
    #[arg(long, default_value = "info")]
    pub log: String,
}

#[derive(Debug, Subcommand)]
pub enum TwinCommand {
    /// Print the module twin (service view).
    Get {
        /// Module id.
        module: String,
    },
    /// Merge a patch into the desired properties (pushed to the module if connected).
    Update {
        /// Module id.
        module: String,
        /// Desired properties patch, a JSON object (null deletes a property).
        #[arg(long)]
        desired: String,
    },
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Target module id.
    pub module: String,
    /// Input name.
    pub input: String,
    /// Message body text.
    #[arg(long, conflicts_with = "file")]
    pub body: Option<String>,
    /// Read the message body from this file.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Application property (repeatable).
    #[arg(long = "prop", value_name = "K=V")]
    pub props: Vec<String>,
    /// Content type ($.ct), e.g. application/json.
    #[arg(long)]
    pub content_type: Option<String>,
    /// Content encoding ($.ce), e.g. utf-8.
    #[arg(long)]
    pub content_encoding: Option<String>,
}

/// Parses arguments and runs; returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("devhub")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("devhub: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_command(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devhub: {}", e.message);
            std::process::ExitCode::FAILURE
        }
    }
}

pub async fn run_command(cli: Cli) -> Result<()> {
    let state_dir = cli.state_dir;
    match cli.command {
        Command::Run(args) => run(state_dir, args).await,
        Command::Env { module } => {
            print!("{}", env_lines(&state_dir, &module)?);
            Ok(())
        }
        Command::ConnectionString { module } => {
            let (id, key) = module_identity(&state_dir, &module)?;
            println!(
                "{}",
                state::connection_string(&id.hub_host_name, &id.device_id, &module, &key)
            );
            Ok(())
        }
        Command::ServiceConnectionString => {
            println!("{}", service_connection_string(&state_dir)?);
            Ok(())
        }
        Command::Twin(TwinCommand::Get { module }) => {
            let c = Client::from_state(&state_dir)?;
            let path = format!("/twins/{}/modules/{}", enc(&c.info.device_id), enc(&module));
            let v = c.json(Method::GET, &path, None).await?;
            print_json(&v);
            Ok(())
        }
        Command::Twin(TwinCommand::Update { module, desired }) => {
            let desired: Value = serde_json::from_str(&desired)
                .map_err(|e| Error::invalid(format!("--desired is not JSON: {e}")))?;
            if !desired.is_object() {
                return Err(Error::invalid("--desired must be a JSON object"));
            }
            let c = Client::from_state(&state_dir)?;
            let path = format!("/twins/{}/modules/{}", enc(&c.info.device_id), enc(&module));
            let body = json!({ "properties": { "desired": desired } });
            let v = c.json(Method::PATCH, &path, Some(body)).await?;
            print_json(&v);
            Ok(())
        }
        Command::Invoke {
            module,
            method,
            payload,
            timeout,
            connect_timeout,
        } => {
            let payload: Value = serde_json::from_str(&payload)
                .map_err(|e| Error::invalid(format!("--payload is not JSON: {e}")))?;
            let c = Client::from_state(&state_dir)?;
            let path = format!(
                "/twins/{}/modules/{}/methods",
                enc(&c.info.device_id),
                enc(&module)
            );
            let body = json!({
                "methodName": method,
                "payload": payload,
                "responseTimeoutInSeconds": timeout,
                "connectTimeoutInSeconds": connect_timeout,
            });
            let v = c.json(Method::POST, &path, Some(body)).await?;
            print_json(&v);
            Ok(())
        }
        Command::Send(args) => send(&state_dir, args).await,
        Command::Monitor { json } => monitor(&state_dir, json).await,
        Command::Status { json } => {
            let c = Client::from_state(&state_dir)?;
            let v = c.json(Method::GET, "/devhub/status", None).await?;
            if json {
                print_json(&v);
            } else {
                print!("{}", status_table(&v));
            }
            Ok(())
        }
    }
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// Path segment encoding (ids may hold `$`, `/`...).
fn enc(s: &str) -> String {
    edgemodule::protocol::property_bag::pct_encode(s)
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(state_dir: PathBuf, a: RunArgs) -> Result<()> {
    init_logging(&a.log);
    let cfg = Config {
        state_dir,
        manifest: a.manifest,
        modules: a.modules,
        hub_host_name: a.hub_host_name,
        device_id: a.device_id,
        gateway_hosts: a.gateway_hosts,
        bind: a.bind,
        mqtt_tls_port: a.mqtt_port,
        https_port: a.https_port,
        mqtt_plain_port: a.mqtt_plain_port,
        workload_socket: a.workload_socket,
        ack_timeout: Duration::from_secs(a.ack_timeout),
        ready_file: a.ready_file,
        ..Config::default()
    };
    let hub = crate::start(cfg).await?;
    let ad = hub.addresses();
    eprintln!(
        "devhub ready: MQTT/TLS {}, HTTPS {}{}, Workload API unix://{}\n  CA: {}\n  modules: {}",
        ad.mqtt_tls,
        ad.https,
        ad.mqtt_plain
            .map(|a| format!(", MQTT {a}"))
            .unwrap_or_default(),
        ad.workload_socket.display(),
        hub.ca_cert_path().display(),
        hub.module_ids().join(", "),
    );
    wait_for_signal().await;
    eprintln!("devhub: stopping");
    hub.stop().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Hub host name, device id and workload socket: from the running devhub's ready file, else
/// from the last run's `devhub.json`, else the defaults.
fn identity(state_dir: &Path) -> state::Identity {
    if let Ok(info) = ready::read(state_dir) {
        return state::Identity {
            hub_host_name: info.hub_host_name,
            device_id: info.device_id,
            workload_socket: info.workload_socket,
        };
    }
    state::Identity::load(state_dir).unwrap_or_else(|| state::Identity {
        hub_host_name: config::DEFAULT_HUB_HOST_NAME.into(),
        device_id: config::DEFAULT_DEVICE_ID.into(),
        workload_socket: absolute(&state_dir.join("workload.sock")),
    })
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    })
}

/// The module's key from keys.json. A stopped devhub gets a key created (the next `run` that
/// knows the module uses it); a running one must already know the module.
fn module_identity(state_dir: &Path, module: &str) -> Result<(state::Identity, String)> {
    let id = identity(state_dir);
    let keys = state::Keys::load(state_dir)?;
    if let Some(k) = keys.modules.get(module) {
        return Ok((id, k.clone()));
    }
    if ready::read(state_dir).is_ok() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "the running devhub has no module {module:?} (restart it with --module {module} or list it in the manifest)"
            ),
        ));
    }
    state::create_state_dir(state_dir)?;
    let keys = state::Keys::load_and_ensure(state_dir, &[module.to_owned()])?;
    Ok((id, keys.modules[module].clone()))
}

/// `HostName={hub};SharedAccessKeyName=iothubowner;SharedAccessKey={key}` from keys.json. Like
/// `connection-string`, works with devhub stopped (a fresh state directory gets its key now;
/// the next `run` uses it).
pub fn service_connection_string(state_dir: &Path) -> Result<String> {
    let id = identity(state_dir);
    let mut keys = state::Keys::load(state_dir)?;
    if keys.service_key().is_none() {
        state::create_state_dir(state_dir)?;
        keys = state::Keys::load_and_ensure(state_dir, &[])?;
    }
    let key = keys
        .service_key()
        .ok_or_else(|| Error::config("keys.json has no iothubowner key"))?;
    Ok(format!(
        "HostName={};SharedAccessKeyName={};SharedAccessKey={key}",
        id.hub_host_name,
        state::SERVICE_POLICY
    ))
}

/// Left-aligned columns, two spaces apart; `(none)` under the header when there are no rows.
fn table(out: &mut String, title: &str, header: &[&str], rows: &[Vec<String>]) {
    out.push_str(title);
    out.push('\n');
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut l = String::from("  ");
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        l.trim_end().to_owned() + "\n"
    };
    out.push_str(&line(header));
    if rows.is_empty() {
        out.push_str("  (none)\n");
    }
    for r in rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        out.push_str(&line(&cells));
    }
    out.push('\n');
}

/// The human-readable `devhub status`: hub, connections, subscriptions, queues, store, upstream.
pub fn status_table(v: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let mut out = format!(
        "devhub {} / {}{}\n",
        s(&v["hubHostName"]),
        s(&v["deviceId"]),
        if v["broker"] == Value::Bool(true) {
            " (broker mode)"
        } else {
            ""
        }
    );
    let modules: Vec<String> = v["modules"]
        .as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default();
    out.push_str(&format!("modules: {}\n\n", modules.join(", ")));

    let conns: Vec<Vec<String>> = v["connections"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    ["identity", "transport", "peer", "since"]
                        .iter()
                        .map(|k| s(&c[*k]))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &mut out,
        "CONNECTIONS",
        &["IDENTITY", "TRANSPORT", "PEER", "SINCE"],
        &conns,
    );

    let mut subs = Vec::new();
    if let Some(m) = v["subscriptions"].as_object() {
        for (identity, filters) in m {
            for f in filters.as_array().into_iter().flatten() {
                subs.push(vec![identity.clone(), s(f)]);
            }
        }
    }
    table(&mut out, "SUBSCRIPTIONS", &["IDENTITY", "FILTER"], &subs);

    let queues: Vec<Vec<String>> = v["queues"]
        .as_object()
        .map(|m| m.iter().map(|(e, n)| vec![e.clone(), s(n)]).collect())
        .unwrap_or_default();
    table(&mut out, "QUEUES", &["ENDPOINT", "DEPTH"], &queues);

    let st = &v["store"];
    if st.is_object() {
        let limit = match st["maxBytes"].as_u64() {
            Some(m) => format!(" of {m} bytes max"),
            None => " (no limit)".to_owned(),
        };
        out.push_str(&format!(
            "STORE\n  {} messages, {} bytes{limit}; dropped: {} by the store limit, {} by TTL\n\n",
            s(&st["messages"]),
            s(&st["bytes"]),
            s(&st["dropped"]["storeLimit"]),
            s(&st["dropped"]["ttl"]),
        ));
    }
    out.push_str(&format!(
        "UPSTREAM\n  {} routed, {} buffered\n",
        s(&v["upstream"]["count"]),
        s(&v["upstream"]["buffered"]),
    ));
    out
}

/// POSIX shell single quoting.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `export` lines of `devhub env`.
pub fn env_lines(state_dir: &Path, module: &str) -> Result<String> {
    let (id, key) = module_identity(state_dir, module)?;
    let ca_path = match ready::read(state_dir) {
        Ok(info) => info.ca_file,
        Err(_) => {
            state::create_state_dir(state_dir)?;
            certs::CertAuthority::load_or_create(state_dir)?;
            absolute(&state_dir.join(certs::CA_CERT_FILE))
        }
    };
    let port_note = match ready::read(state_dir) {
        Ok(info) => format!(
            "# devhub MQTT/TLS port: {} (SDKs assume 8883; WebSockets on HTTPS port {})",
            info.mqtt_tls_port, info.https_port
        ),
        Err(_) => format!(
            "# devhub MQTT/TLS port: see {} once devhub runs (default 8883)",
            ready::ready_path(&absolute(state_dir)).display()
        ),
    };
    let cs = state::connection_string(&id.hub_host_name, &id.device_id, module, &key);
    let vars: [(&str, String); 10] = [
        ("IOTEDGE_IOTHUBHOSTNAME", id.hub_host_name.clone()),
        ("IOTEDGE_DEVICEID", id.device_id.clone()),
        ("IOTEDGE_MODULEID", module.to_owned()),
        (
            "IOTEDGE_MODULEGENERATIONID",
            crate::workload::GENERATION_ID.to_owned(),
        ),
        (
            "IOTEDGE_WORKLOADURI",
            format!("unix://{}", id.workload_socket.display()),
        ),
        ("IOTEDGE_GATEWAYHOSTNAME", "localhost".to_owned()),
        ("IOTEDGE_AUTHSCHEME", "sasToken".to_owned()),
        ("IOTEDGE_APIVERSION", "2019-01-30".to_owned()),
        ("EdgeHubConnectionString", cs),
        ("EdgeModuleCACertificateFile", ca_path.display().to_string()),
    ];
    let mut out = String::new();
    for (k, v) in vars {
        out.push_str(&format!("export {k}={}\n", sh_quote(&v)));
    }
    out.push_str(&port_note);
    out.push('\n');
    Ok(out)
}

fn parse_prop(p: &str) -> Result<(String, String)> {
    match p.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(Error::invalid(format!("--prop {p:?} is not KEY=VALUE"))),
    }
}

async fn send(state_dir: &Path, a: SendArgs) -> Result<()> {
    let body = match (&a.body, &a.file) {
        (Some(b), _) => b.clone().into_bytes(),
        (None, Some(f)) => std::fs::read(f)
            .map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", f.display())))?,
        (None, None) => Vec::new(),
    };
    let c = Client::from_state(state_dir)?;
    // Properties travel in the query string: header names would be lower-cased.
    let mut query = String::new();
    for p in &a.props {
        let (k, v) = parse_prop(p)?;
        query.push(if query.is_empty() { '?' } else { '&' });
        query.push_str(&format!("{}={}", enc(&k), enc(&v)));
    }
    let path = format!(
        "/devhub/modules/{}/inputs/{}{query}",
        enc(&a.module),
        enc(&a.input)
    );
    let mut headers = Vec::new();
    if let Some(ct) = &a.content_type {
        headers.push(("content-type", ct.clone()));
    }
    if let Some(ce) = &a.content_encoding {
        headers.push(("content-encoding", ce.clone()));
    }
    let (status, resp) = c.request(Method::POST, &path, body, &headers).await?;
    let bytes = collect(resp).await?;
    check_status(status, &bytes)?;
    eprintln!("sent to {}/{}", a.module, a.input);
    Ok(())
}

async fn monitor(state_dir: &Path, as_json: bool) -> Result<()> {
    let c = Client::from_state(state_dir)?;
    let (status, mut body) = c
        .request(Method::GET, "/devhub/upstream?follow=1", Vec::new(), &[])
        .await?;
    if status != StatusCode::OK {
        let bytes = collect(body).await?;
        return check_status(status, &bytes);
    }
    eprintln!("devhub: following $upstream (Ctrl-C to stop)");
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::new(ErrorKind::Connection, e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if as_json {
                println!("{line}");
            } else if let Ok(v) = serde_json::from_str::<Value>(&line) {
                println!("{}", human_line(&v));
            }
        }
    }
    Err(Error::new(ErrorKind::Connection, "devhub closed the feed"))
}

/// `time module/output: body {props}`.
pub fn human_line(v: &Value) -> String {
    if let Some(n) = v.get("lagged") {
        return format!("... {n} messages skipped (monitor too slow)");
    }
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let body = match v.get("body").and_then(Value::as_str) {
        Some(b) => b.to_owned(),
        None => format!("base64:{}", s("bodyBase64")),
    };
    let source = match v.get("output").and_then(Value::as_str) {
        Some(o) => format!("{}/{}", s("module"), o),
        None if s("source").starts_with("/twinChangeNotifications") => {
            format!("{} (reported properties)", s("module"))
        }
        None => s("module").to_owned(),
    };
    let props = v
        .get("properties")
        .filter(|p| p.as_object().is_some_and(|o| !o.is_empty()))
        .map(|p| format!(" {p}"))
        .unwrap_or_default();
    format!("{} {source}: {body}{props}", s("enqueued"))
}

fn check_status(status: StatusCode, body: &[u8]) -> Result<()> {
    if status.is_success() {
        return Ok(());
    }
    let msg = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let kind = match status.as_u16() {
        404 => ErrorKind::NotFound,
        401 | 403 => ErrorKind::Authentication,
        504 => ErrorKind::Timeout,
        400 => ErrorKind::InvalidArgument,
        _ => ErrorKind::HubError,
    };
    Err(Error::with_status(
        kind,
        status.as_u16(),
        format!("{} {msg}", status.as_u16()),
    ))
}

async fn collect(body: Incoming) -> Result<Bytes> {
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| Error::new(ErrorKind::Connection, format!("reading the response: {e}")))
}

/// An HTTPS client for a running devhub (one connection per request).
pub struct Client {
    pub info: ready::ReadyInfo,
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
}

impl Client {
    /// Finds the running devhub through `{state}/ready.json`.
    pub fn from_state(state_dir: &Path) -> Result<Client> {
        let info = ready::read(state_dir)?;
        let mut addr: SocketAddr = info.https.parse().map_err(|_| {
            Error::config(format!("bad https address {:?} in ready.json", info.https))
        })?;
        if addr.ip().is_unspecified() {
            addr.set_ip(IpAddr::from([127, 0, 0, 1]));
        }
        let ca = std::fs::read_to_string(&info.ca_file)
            .map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", info.ca_file.display())))?;
        let tls = tokio_rustls::TlsConnector::from(crate::tls::default_client_config(&ca)?);
        Ok(Client { info, addr, tls })
    }

    /// Sends one request; returns the status and the (unread) body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Result<(StatusCode, Incoming)> {
        let not_running = |e: std::io::Error| {
            Error::new(
                ErrorKind::Connection,
                format!(
                    "devhub is not running at {} ({e}); stale {}?",
                    self.addr,
                    ready::ready_path(&self.info.state_dir).display()
                ),
            )
        };
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(not_running)?;
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("valid name");
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| Error::new(ErrorKind::Tls, format!("TLS to devhub failed: {e}")))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| Error::new(ErrorKind::Connection, e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::invalid(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Error::new(ErrorKind::Connection, e.to_string()))?;
        Ok((resp.status(), resp.into_body()))
    }

    /// JSON request and response; a non-2xx status is an error carrying the hub's message.
    pub async fn json(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let (bytes, headers) = match body {
            Some(v) => (
                serde_json::to_vec(&v).unwrap_or_default(),
                vec![("content-type", "application/json".to_owned())],
            ),
            None => (Vec::new(), Vec::new()),
        };
        let (status, resp) = self.request(method, path, bytes, &headers).await?;
        let bytes = collect(resp).await?;
        check_status(status, &bytes)?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::new(ErrorKind::Protocol, format!("bad JSON from devhub: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        let c = Cli::try_parse_from([
            "devhub",
            "run",
            "--module",
            "a",
            "--module",
            "b",
            "--mqtt-port",
            "0",
            "--state-dir",
            "/s",
        ])
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/s"));
        let Command::Run(r) = c.command else { panic!() };
        assert_eq!(r.modules, vec!["a", "b"]);
        assert_eq!((r.mqtt_port, r.https_port), (0, 443));
        assert_eq!(r.mqtt_plain_port, None);
        let c = Cli::try_parse_from(["devhub", "send", "m", "in", "--body", "x", "--prop", "a=b"])
            .unwrap();
        let Command::Send(s) = c.command else {
            panic!()
        };
        assert_eq!(
            (s.module.as_str(), s.input.as_str(), s.props.len()),
            ("m", "in", 1)
        );
        assert!(
            Cli::try_parse_from(["devhub", "send", "m", "in", "--body", "x", "--file", "f"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["devhub", "twin", "update", "m"]).is_err());
    }

    #[test]
    fn quoting_and_props() {
        assert_eq!(sh_quote("a;b"), "'a;b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(parse_prop("k=v=w").unwrap(), ("k".into(), "v=w".into()));
        assert!(parse_prop("=v").is_err());
        assert!(parse_prop("k").is_err());
    }

    #[test]
    fn status_tables() {
        let v = json!({
            "hubHostName": "h.local", "deviceId": "dev", "modules": ["a", "bb"], "broker": false,
            "connections": [
                {"identity": "dev/a", "transport": "tls", "peer": "127.0.0.1:5000", "since": "t1"},
                {"identity": "dev/bb", "transport": "websocket", "peer": "127.0.0.1:6", "since": "t2"}
            ],
            "subscriptions": {"dev/a": ["devices/dev/modules/a/inputs/#", "$iothub/twin/res/#"]},
            "queues": {"dev/bb/in1": 3},
            "store": {"messages": 3, "bytes": 78, "maxBytes": 80,
                      "dropped": {"storeLimit": 2, "ttl": 0}},
            "upstream": {"count": 5, "buffered": 4},
        });
        let t = status_table(&v);
        let expected = "\
devhub h.local / dev
modules: a, bb

CONNECTIONS
  IDENTITY  TRANSPORT  PEER            SINCE
  dev/a     tls        127.0.0.1:5000  t1
  dev/bb    websocket  127.0.0.1:6     t2

SUBSCRIPTIONS
  IDENTITY  FILTER
  dev/a     devices/dev/modules/a/inputs/#
  dev/a     $iothub/twin/res/#

QUEUES
  ENDPOINT    DEPTH
  dev/bb/in1  3

STORE
  3 messages, 78 bytes of 80 bytes max; dropped: 2 by the store limit, 0 by TTL

UPSTREAM
  5 routed, 4 buffered
";
        assert_eq!(t, expected, "{t}");
        let empty = json!({"hubHostName": "h", "deviceId": "d", "modules": [], "broker": true,
            "connections": [], "subscriptions": {}, "queues": {},
            "upstream": {"count": 0, "buffered": 0}});
        let t = status_table(&empty);
        assert!(t.starts_with("devhub h / d (broker mode)\n"), "{t}");
        assert_eq!(t.matches("  (none)").count(), 3, "{t}");
        assert!(!t.contains("STORE"), "{t}");
    }

    #[test]
    fn human_lines() {
        let v = json!({"module":"m","output":"o","enqueued":"t","body":"hi","bodyBase64":"aGk=","properties":{"a":"1"}});
        assert_eq!(human_line(&v), r#"t m/o: hi {"a":"1"}"#);
        let v = json!({"module":"m","output":null,"enqueued":"t","body":null,"bodyBase64":"/w==","properties":{}});
        assert_eq!(human_line(&v), "t m: base64:/w==");
        let v = json!({"module":"m","output":null,"source":"/twinChangeNotifications/","enqueued":"t","body":"{\"a\":1}","properties":{}});
        assert_eq!(human_line(&v), r#"t m (reported properties): {"a":1}"#);
    }
}
