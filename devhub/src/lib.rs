//! devhub: a local IoT Edge hub for developing and testing modules: no Docker, no cloud.
//!
//! ```no_run
//! # async fn demo() -> edgemodule::Result<()> {
//! let mut cfg = edgemodule_devhub::Config::ephemeral("/tmp/devhub-state");
//! cfg.modules = vec!["sensor".into(), "filter".into()];
//! let hub = edgemodule_devhub::start(cfg).await?;
//! let cs = hub.connection_string("sensor").unwrap();   // HostName=..;GatewayHostName=localhost
//! let port = hub.addresses().mqtt_tls.port();           // connect to localhost:port, trust ca_cert_path()
//! # let _ = (cs, port);
//! hub.stop().await;
//! # Ok(()) }
//! ```
//!
//! What a started devhub serves (all on `Config::bind`, 127.0.0.1 by default):
//! - MQTT 3.1.1 over TLS (`mqtt_tls`), optionally plain MQTT (`mqtt_plain`, tests only);
//! - HTTPS (`https`): MQTT over WebSockets (`wss://localhost:PORT/$iothub/websocket`), module
//!   to module method invoke (`POST /twins/{d}/modules/{m}/methods` with `x-ms-edge-moduleId`),
//!   the service API subset (`GET|PATCH|PUT /twins/{d}/modules/{m}`, `POST .../methods`;
//!   `POST /twins/{d}/methods` answers 404 `Device {d} not found`: no leaf devices) and
//!   devhub's own API: `POST /devhub/modules/{m}/inputs/{i}` (inject),
//!   `GET /devhub/upstream[?follow=1]`, `GET /devhub/status`, `POST /devhub/faults/...`.
//!   Service and `/devhub/` calls take a service SAS (`skn=iothubowner`, key in
//!   `{state}/keys.json`) or, from a loopback address only, no `Authorization` at all;
//! - the Workload API on a unix socket (`{state}/workload.sock`): trust bundle, sign,
//!   encrypt/decrypt, certs; at most 10 connections served at once (edgelet's throttle).
//!
//! State directory: `ca.pem` (the trust bundle) + `ca-key.pem`, `server.pem` + `server-key.pem`
//! (reissued when the host names change), `keys.json` (module keys and the service key, stable
//! across restarts), the engine's twins and queues, and `ready.json`, written once every
//! listener is up (removed on stop): `{mqtt_tls, https, mqtt_plain ("ip:port" strings),
//! mqtt_tls_port, https_port, mqtt_plain_port, workload_socket, ca_file, hub_host_name,
//! device_id, state_dir, pid}`.
//!
//! Routing: with `Config::manifest`, modules, routes, TTL, the store limit
//! (`storeLimits.maxSizeBytes`: oldest messages dropped beyond it), initial desired properties
//! and the broker policy come from the deployment manifest. A module's reported-properties
//! patch is routed from `/twinChangeNotifications/` (body = the patch, `application/json`). Without one, the modules are
//! `Config::modules` and there are **no routes**: outputs go nowhere (not even `$upstream`).

pub mod hub;
pub mod manifest;
pub mod routing;

pub mod certs;
pub mod cli;
pub mod config;
pub mod http_api;
pub mod http_util;
pub mod listeners;
pub mod ready;
pub mod state;
pub mod tls;
pub mod websocket;
pub mod workload;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use edgemodule::{Error, ErrorKind, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Addresses, Config};
pub use ready::ReadyInfo;

use crate::listeners::{Kind, MqttHandler};

/// Bound of the in-memory `$upstream` feed.
const UPSTREAM_BUFFER: usize = 1000;

/// A running devhub. Dropping it without [`DevHub::stop`] leaves the tasks running until the
/// runtime ends.
pub struct DevHub {
    addresses: Addresses,
    hub_host_name: String,
    device_id: String,
    state_dir: PathBuf,
    ca_cert_path: PathBuf,
    module_keys: BTreeMap<String, String>,
    ready_files: Vec<PathBuf>,
    hub: Arc<hub::Hub>,
    accept_tasks: Vec<JoinHandle<()>>,
    stop_tx: watch::Sender<bool>,
}

impl Drop for DevHub {
    /// Dropped without [`DevHub::stop`]: close the listeners and connections at once (the
    /// engine's state is not flushed).
    fn drop(&mut self) {
        if self.accept_tasks.is_empty() {
            return; // stopped
        }
        for t in self.accept_tasks.drain(..) {
            t.abort();
        }
        for p in &self.ready_files {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_file(&self.addresses.workload_socket);
        let _ = self.stop_tx.send(true);
    }
}

fn bind_err(what: &str, addr: SocketAddr, e: std::io::Error) -> Error {
    let hint = if e.kind() == std::io::ErrorKind::PermissionDenied && addr.port() < 1024 {
        " (ports below 1024 need privileges: choose another port, e.g. --https-port 8443, or 0 for any)"
    } else {
        ""
    };
    Error::new(
        ErrorKind::Io,
        format!("cannot listen for {what} on {addr}: {e}{hint}"),
    )
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| bind_err(what, addr, e))
}

fn local_addr(l: &TcpListener) -> Result<SocketAddr> {
    l.local_addr().map_err(Error::from)
}

/// Reads the manifest, if any.
fn load_manifest(path: Option<&Path>) -> Result<Option<manifest::Manifest>> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(format!("{}: {e}", path.display())))?;
    manifest::parse_manifest(&text)
        .map(Some)
        .map_err(|e| Error::config(format!("{}: {e}", path.display())))
}

fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", parent.display())))?;
        }
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("another process (devhub?) is serving {}", path.display()),
        ));
    }
    // A socket file left by a previous run that was killed.
    let _ = std::fs::remove_file(path);
    tokio::net::UnixListener::bind(path).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot listen on {}: {e}", path.display()),
        )
    })
}

/// Starts devhub: state, certificates, the engine, every listener, then the ready file.
pub async fn start(config: Config) -> Result<DevHub> {
    state::create_state_dir(&config.state_dir)?;
    // Absolute paths in the ready file, so readers in other directories can use them.
    let state_dir = std::fs::canonicalize(&config.state_dir).unwrap_or(config.state_dir.clone());

    let manifest = load_manifest(config.manifest.as_deref())?;
    let mut modules: Vec<String> = manifest
        .as_ref()
        .map(|m| m.modules.clone())
        .unwrap_or_default();
    for m in &config.modules {
        if !modules.contains(m) {
            modules.push(m.clone());
        }
    }
    let keys = state::Keys::load_and_ensure(&state_dir, &modules)?;
    let module_keys: BTreeMap<String, String> = modules
        .iter()
        .filter_map(|m| keys.modules.get(m).map(|k| (m.clone(), k.clone())))
        .collect();

    let ca = Arc::new(certs::CertAuthority::load_or_create(&state_dir)?);
    let sans = certs::server_sans(&config.hub_host_name, &config.gateway_hosts);
    let server = certs::ensure_server_cert(&state_dir, &ca, &sans)?;
    let acceptor =
        tokio_rustls::TlsAcceptor::from(tls::server_config(&server.chain_pem, &server.key_pem)?);

    let (routes, default_ttl_secs, initial_desired, broker, max_store_bytes) = match manifest {
        Some(m) => (
            m.routes,
            m.default_ttl_secs,
            m.desired,
            m.broker,
            m.max_store_bytes,
        ),
        None => (
            Vec::new(),
            manifest::DEFAULT_TTL_SECS,
            BTreeMap::new(),
            None,
            None,
        ),
    };
    // Listeners first: a port in use must fail before the engine opens its state files.
    let mqtt_tls_l = bind(
        "MQTT/TLS",
        SocketAddr::new(config.bind, config.mqtt_tls_port),
    )
    .await?;
    let https_l = bind("HTTPS", SocketAddr::new(config.bind, config.https_port)).await?;
    let plain_l = match config.mqtt_plain_port {
        Some(p) => Some(bind("MQTT", SocketAddr::new(config.bind, p)).await?),
        None => None,
    };
    let workload_path = config.workload_socket_path();
    let workload_l = bind_unix(&workload_path)?;
    let workload_path = std::fs::canonicalize(&workload_path).unwrap_or(workload_path);

    let hub = hub::Hub::new(hub::HubConfig {
        hub_host_name: config.hub_host_name.clone(),
        device_id: config.device_id.clone(),
        modules: module_keys.clone(),
        router: routing::Router::new(routes),
        default_ttl_secs,
        ack_timeout: config.ack_timeout,
        max_clock_skew: config.max_clock_skew,
        state_dir: state_dir.clone(),
        initial_desired,
        broker,
        upstream_buffer: UPSTREAM_BUFFER,
        max_store_bytes,
    })
    .inspect_err(|_| {
        let _ = std::fs::remove_file(&workload_path);
    })?;

    state::Identity {
        hub_host_name: config.hub_host_name.clone(),
        device_id: config.device_id.clone(),
        workload_socket: workload_path.clone(),
    }
    .save(&state_dir)?;

    let addresses = Addresses {
        mqtt_tls: local_addr(&mqtt_tls_l)?,
        https: local_addr(&https_l)?,
        mqtt_plain: plain_l.as_ref().map(local_addr).transpose()?,
        workload_socket: workload_path,
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let mqtt: MqttHandler = {
        let hub = hub.clone();
        Arc::new(move |stream, peer, kind| {
            let transport = match kind {
                Kind::Tls => hub::Transport::Tls,
                Kind::WebSocket => hub::Transport::WebSocket,
                Kind::Plain => hub::Transport::Plain,
            };
            Box::pin(hub.clone().serve_connection(stream, peer, transport))
        })
    };
    let decode = |k: &str| edgemodule::protocol::sas::decode_key(k);
    let api = Arc::new(http_api::Api {
        hub: hub.clone(),
        hub_host_name: config.hub_host_name.clone(),
        device_id: config.device_id.clone(),
        service_keys: keys
            .service
            .iter()
            .map(|(n, k)| Ok((n.clone(), decode(k)?)))
            .collect::<Result<_>>()?,
        max_clock_skew: config.max_clock_skew,
        mqtt: mqtt.clone(),
        stop: stop_rx.clone(),
    });
    let workload = Arc::new(workload::Workload {
        ca: ca.clone(),
        keys: module_keys
            .iter()
            .map(|(m, k)| Ok((m.clone(), decode(k)?)))
            .collect::<Result<_>>()?,
    });

    let mut accept_tasks = vec![
        tokio::spawn(listeners::serve_mqtt(
            mqtt_tls_l,
            Some(acceptor.clone()),
            mqtt.clone(),
            stop_rx.clone(),
        )),
        tokio::spawn(listeners::serve_https(
            https_l,
            acceptor,
            Arc::new(move |req, peer| Box::pin(api.clone().handle(req, peer))),
            stop_rx.clone(),
        )),
        tokio::spawn(workload::serve(workload_l, workload, stop_rx.clone())),
    ];
    if let Some(l) = plain_l {
        accept_tasks.push(tokio::spawn(listeners::serve_mqtt(
            l,
            None,
            mqtt,
            stop_rx.clone(),
        )));
    }

    let info = ReadyInfo {
        mqtt_tls: addresses.mqtt_tls.to_string(),
        https: addresses.https.to_string(),
        mqtt_plain: addresses.mqtt_plain.map(|a| a.to_string()),
        mqtt_tls_port: addresses.mqtt_tls.port(),
        https_port: addresses.https.port(),
        mqtt_plain_port: addresses.mqtt_plain.map(|a| a.port()),
        workload_socket: addresses.workload_socket.clone(),
        ca_file: ca.cert_path().to_path_buf(),
        hub_host_name: config.hub_host_name.clone(),
        device_id: config.device_id.clone(),
        state_dir: state_dir.clone(),
        pid: std::process::id(),
    };
    let mut ready_files = vec![ready::ready_path(&state_dir)];
    if let Some(p) = &config.ready_file {
        ready_files.push(p.clone());
    }
    let devhub = DevHub {
        addresses,
        hub_host_name: config.hub_host_name,
        device_id: config.device_id,
        state_dir,
        ca_cert_path: ca.cert_path().to_path_buf(),
        module_keys,
        ready_files,
        hub,
        accept_tasks,
        stop_tx,
    };
    for p in &devhub.ready_files {
        if let Err(e) = ready::write(p, &info) {
            devhub.stop().await;
            return Err(e);
        }
    }
    tracing::info!(
        mqtt_tls = %info.mqtt_tls, https = %info.https, workload = %info.workload_socket.display(),
        "devhub ready"
    );
    Ok(devhub)
}

impl DevHub {
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    /// The CA certificate (PEM) every devhub server certificate chains to.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.ca_cert_path.clone()
    }

    pub fn hub_host_name(&self) -> &str {
        &self.hub_host_name
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Module ids with identities (manifest modules, then `Config::modules`), sorted.
    pub fn module_ids(&self) -> Vec<String> {
        self.module_keys.keys().cloned().collect()
    }

    /// The module's base64 primary key.
    pub fn module_key(&self, module: &str) -> Option<String> {
        self.module_keys.get(module).cloned()
    }

    /// `HostName=..;DeviceId=..;ModuleId=..;SharedAccessKey=..;GatewayHostName=localhost`
    /// (the port is chosen by the client's options).
    pub fn connection_string(&self, module: &str) -> Option<String> {
        let key = self.module_keys.get(module)?;
        Some(state::connection_string(
            &self.hub_host_name,
            &self.device_id,
            module,
            key,
        ))
    }

    /// The engine: twins, methods, inject, upstream feed, status, faults.
    pub fn hub(&self) -> Arc<hub::Hub> {
        self.hub.clone()
    }

    /// Closes the listeners and every connection and flushes the engine's state.
    pub async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.accept_tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        // Ready files go first: from now on nobody should try to connect.
        for p in &self.ready_files {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_file(&self.addresses.workload_socket);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.hub.shutdown()).await;
        let _ = self.stop_tx.send(true);
    }
}
