//! The devhub engine: MQTT sessions, authentication, ACLs, routing of module outputs into
//! store-and-forward input queues, twins, direct methods, broker-mode user topics and fault
//! injection. Listeners (stream L) call [`Hub::serve_connection`] for each accepted stream.
//!
//! Concurrency: one `Arc<Hub>` with a `std::sync::Mutex<State>`; the lock is never held across
//! an `.await`. Every connection has a writer task fed through an unbounded channel of encoded
//! packets (bounded in practice by the per-connection in-flight window), so the engine can push
//! to any connection from anywhere while holding the lock.

mod auth;
mod broker;
mod connection;
mod faults;
mod methods;
mod sessions;
mod store;
mod twins;

#[cfg(test)]
mod tests;

pub use faults::Faults;

use bytes::Bytes;
use edgemodule::message::{self, keys};
use edgemodule::protocol::{sas, topics};
use edgemodule::{Error, ErrorKind};
use serde_json::{json, Value};
use sessions::{Session, State};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use store::{Bag, LogFile, Store};
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

/// Everything the engine needs; built by stream L from the CLI/config and the manifest.
pub struct HubConfig {
    pub hub_host_name: String,
    pub device_id: String,
    /// Module id -> base64 primary key.
    pub modules: BTreeMap<String, String>,
    pub router: crate::routing::Router,
    /// Store-and-forward TTL for routes without their own; < 0 (or 0) = infinite.
    pub default_ttl_secs: i64,
    pub ack_timeout: Duration,
    pub max_clock_skew: Duration,
    /// twins.json, sessions.json and queue.log live here.
    pub state_dir: PathBuf,
    /// Applied when a module has no persisted twin yet.
    pub initial_desired: BTreeMap<String, Value>,
    /// Some => broker mode (user topics) enabled.
    pub broker: Option<crate::manifest::BrokerConfig>,
    /// Size of the bounded `$upstream` buffer (e.g. 1000).
    pub upstream_buffer: usize,
    /// `storeAndForwardConfiguration.storeLimits.maxSizeBytes`: when the stored messages
    /// (body + properties, counted per endpoint) would exceed it, the oldest are dropped.
    /// None = unlimited.
    pub max_store_bytes: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tls,
    WebSocket,
    Plain,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Tls => "tls",
            Transport::WebSocket => "websocket",
            Transport::Plain => "plain",
        }
    }
}

/// The result of a direct method invocation, as the REST API returns it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MethodResult {
    pub status: i32,
    pub payload: Value,
}

/// An HTTP status plus edgeHub's message text; stream L renders `{"message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

/// A message routed to `$upstream` (what IoT Hub would have received).
#[derive(Clone, Debug, serde::Serialize)]
pub struct UpstreamMessage {
    pub module: String,
    pub output: Option<String>,
    /// The routing source path: `/messages/modules/{m}/...` for module output,
    /// `/twinChangeNotifications/` for a reported-properties change.
    pub source: String,
    pub message: edgemodule::Message,
    /// RFC 3339.
    pub enqueued: String,
}

/// Largest MQTT packet read; the 256 KB message limit itself is checked on body + properties.
const MAX_PACKET: usize = message::MAX_MESSAGE_SIZE + 64 * 1024;
/// Input messages awaiting PUBACK per connection.
const INFLIGHT_WINDOW: usize = 100;

/// Static configuration, decoded once.
struct Cfg {
    hub_host: String,
    device_id: String,
    keys: BTreeMap<String, Vec<u8>>,
    router: crate::routing::Router,
    default_ttl_secs: i64,
    ack_timeout: Duration,
    max_skew: Duration,
    state_dir: PathBuf,
    broker: Option<crate::manifest::BrokerConfig>,
    upstream_buffer: usize,
}

pub struct Hub {
    cfg: Cfg,
    state: Mutex<State>,
    /// Lock order: `log_file` before `state`.
    log_file: Mutex<LogFile>,
    /// Serialises twins.json / sessions.json writes.
    meta_file: Mutex<()>,
    /// Signalled on connect, disconnect and subscription changes (method connect wait).
    changed: Notify,
    upstream_tx: broadcast::Sender<UpstreamMessage>,
    faults: Faults,
    ticker_started: AtomicBool,
    stop: CancellationToken,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

impl Hub {
    pub fn new(cfg: HubConfig) -> edgemodule::Result<Arc<Hub>> {
        let mut keys = BTreeMap::new();
        for (module, key) in &cfg.modules {
            let k = sas::decode_key(key).map_err(|_| {
                Error::config(format!("the key of module {module:?} is not valid base64"))
            })?;
            keys.insert(module.clone(), k);
        }
        std::fs::create_dir_all(&cfg.state_dir).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot create state dir {}: {e}", cfg.state_dir.display()),
            )
        })?;
        let io_err = |what: &str, e: std::io::Error| {
            Error::new(ErrorKind::Io, format!("cannot load {what}: {e}"))
        };
        // Load the queue and rewrite it compacted, so the log only grows from live records.
        let mut store = Store::load(&cfg.state_dir).map_err(|e| io_err("queue.log", e))?;
        let dropped = store.set_max_bytes(cfg.max_store_bytes);
        if dropped > 0 {
            store.take_unlogged_limit_drops();
            tracing::warn!(
                count = dropped,
                max_bytes = cfg.max_store_bytes,
                "stored messages exceed storeLimits.maxSizeBytes; the oldest were dropped"
            );
        }
        let mut log_file = LogFile::new(&cfg.state_dir);
        log_file
            .rewrite(&store.snapshot())
            .map_err(|e| io_err("queue.log", e))?;
        let mut twins = twins::Twins::load(&cfg.state_dir.join("twins.json"))
            .map_err(|e| io_err("twins.json", e))?;
        let mut twins_dirty = false;
        for module in keys.keys() {
            if !twins.twins.contains_key(module) {
                let doc = twins::TwinDoc::new(cfg.initial_desired.get(module));
                twins.twins.insert(module.clone(), doc);
                twins_dirty = true;
            }
        }
        let sessions = sessions::load_sessions(&cfg.state_dir.join("sessions.json"));
        let state = State {
            sessions,
            store,
            twins,
            twins_dirty,
            ..State::default()
        };
        let (upstream_tx, _) = broadcast::channel(cfg.upstream_buffer.clamp(16, 65536));
        let hub = Arc::new_cyclic(|weak| Hub {
            cfg: Cfg {
                hub_host: cfg.hub_host_name,
                device_id: cfg.device_id,
                keys,
                router: cfg.router,
                default_ttl_secs: cfg.default_ttl_secs,
                ack_timeout: cfg.ack_timeout,
                max_skew: cfg.max_clock_skew,
                state_dir: cfg.state_dir,
                broker: cfg.broker,
                upstream_buffer: cfg.upstream_buffer,
            },
            state: Mutex::new(state),
            log_file: Mutex::new(log_file),
            meta_file: Mutex::new(()),
            changed: Notify::new(),
            upstream_tx,
            faults: Faults::new(weak.clone()),
            ticker_started: AtomicBool::new(false),
            stop: CancellationToken::new(),
        });
        hub.save_meta();
        hub.ensure_ticker();
        Ok(hub)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough state for a dev hub.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serve one MQTT connection until it ends. Stream L calls this for each accepted
    /// TLS / WebSocket / TCP stream.
    pub async fn serve_connection<S>(self: Arc<Self>, stream: S, peer: String, transport: Transport)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        self.ensure_ticker();
        connection::serve(self, stream, peer, transport).await
    }

    pub fn hub_host_name(&self) -> &str {
        &self.cfg.hub_host
    }

    pub fn device_id(&self) -> &str {
        &self.cfg.device_id
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    fn not_found(&self, module: &str) -> ApiError {
        ApiError::new(
            404,
            format!("Client {}/{module} not found", self.cfg.device_id),
        )
    }

    // ----- twins (service side) -----

    /// Service view of a module twin.
    pub fn twin(&self, module: &str) -> Result<Value, ApiError> {
        let st = self.lock();
        let doc = st
            .twins
            .twins
            .get(module)
            .filter(|_| self.cfg.keys.contains_key(module))
            .ok_or_else(|| self.not_found(module))?;
        let connected = st.sessions.get(module).is_some_and(|s| s.conn.is_some());
        Ok(doc.service_view(&self.cfg.device_id, module, connected))
    }

    /// PATCH: merge `properties.desired` (and `tags`); pushes the desired patch to the module.
    pub fn update_twin(
        &self,
        module: &str,
        patch: Value,
        if_match: Option<&str>,
    ) -> Result<Value, ApiError> {
        self.change_twin(module, |doc| doc.update(&patch, if_match))
    }

    /// PUT: replace desired (and tags); pushes the change to the module.
    pub fn replace_twin(
        &self,
        module: &str,
        twin: Value,
        if_match: Option<&str>,
    ) -> Result<Value, ApiError> {
        self.change_twin(module, |doc| doc.replace(&twin, if_match))
    }

    fn change_twin(
        &self,
        module: &str,
        f: impl FnOnce(&mut twins::TwinDoc) -> Result<Option<Value>, ApiError>,
    ) -> Result<Value, ApiError> {
        let view = {
            let mut st = self.lock();
            if !self.cfg.keys.contains_key(module) {
                return Err(self.not_found(module));
            }
            let st = &mut *st;
            let doc = st
                .twins
                .twins
                .get_mut(module)
                .ok_or_else(|| self.not_found(module))?;
            let push = f(doc)?;
            let connected = st.sessions.get(module).is_some_and(|s| s.conn.is_some());
            let view = doc.service_view(&self.cfg.device_id, module, connected);
            st.twins_dirty = true;
            if let Some(patch) = push {
                let version = patch["$version"].as_i64().unwrap_or_default();
                let topic = topics::desired_patch_topic(version);
                let body = serde_json::to_vec(&patch).unwrap_or_default();
                st.publish_kind(
                    module,
                    auth::SubKind::DesiredPatches,
                    &topic,
                    Bytes::from(body),
                );
            }
            view
        };
        self.save_meta();
        Ok(view)
    }

    // ----- messages -----

    /// Deliver `msg` to `module`'s input `input` (stored while the module is offline).
    pub fn inject(
        &self,
        module: &str,
        input: &str,
        msg: edgemodule::Message,
    ) -> Result<(), ApiError> {
        if !self.cfg.keys.contains_key(module) {
            return Err(ApiError::new(404, format!("Module {module} not found")));
        }
        if input.is_empty() {
            return Err(ApiError::new(400, "The input name must not be empty"));
        }
        let mut bag = message::to_bag(&msg, None);
        if let Some(d) = &msg.connection_device_id {
            bag.push((keys::CONNECTION_DEVICE_ID.into(), Some(d.clone())));
        }
        if let Some(m) = &msg.connection_module_id {
            bag.push((keys::CONNECTION_MODULE_ID.into(), Some(m.clone())));
        }
        if msg.body.len() + bag_size(&bag) > message::MAX_MESSAGE_SIZE {
            return Err(ApiError::new(413, "Message size exceeds 256 KB"));
        }
        let enq = now_ms();
        let expires = self.expiry(enq, 0);
        {
            let mut st = self.lock();
            st.store.push(
                module,
                input,
                Bytes::from(msg.body),
                Arc::new(bag),
                enq,
                expires,
            );
            st.pump(&self.cfg.device_id, module);
        }
        self.flush_store();
        Ok(())
    }

    /// Absolute expiry for a message enqueued at `enq_ms` by a route with `route_ttl` seconds.
    fn expiry(&self, enq_ms: u64, route_ttl: u32) -> Option<u64> {
        let ttl = if route_ttl > 0 {
            route_ttl as i64
        } else {
            self.cfg.default_ttl_secs
        };
        // <= 0: infinite (0 is documented as "inherit" by edgeHub; with nothing to inherit
        // from we keep messages rather than drop them at once).
        (ttl > 0).then(|| enq_ms + ttl as u64 * 1000)
    }

    /// Route a module's output message. `Err` = close the connection (too large).
    fn route_events(&self, module: &str, bag: Bag, body: Bytes) -> Result<(), String> {
        let size = body.len() + bag_size(&bag);
        if size > message::MAX_MESSAGE_SIZE {
            return Err(format!(
                "message of {size} bytes exceeds the 256 KB limit (body + properties)"
            ));
        }
        let output = message::output_name(&bag).map(str::to_owned);
        let enq = now_ms();
        let enq_text = rfc3339(enq);
        let device = self.cfg.device_id.as_str();
        let rm = routed_message(&bag, &body, device, module, &enq_text);
        let source = crate::routing::source_path(Some(module), output.as_deref());
        let routes = self.cfg.router.route(&source, &rm);
        if routes.is_empty() {
            tracing::debug!(module, source = %source, "no route matched; message dropped");
            return Ok(());
        }
        // The bag as inputs receive it: no $.on / $.ifid, sender identity added.
        let mut in_bag: Bag = bag
            .iter()
            .filter(|(k, _)| k != keys::OUTPUT_NAME && k != "$.ifid")
            .filter(|(k, _)| k != keys::CONNECTION_DEVICE_ID && k != keys::CONNECTION_MODULE_ID)
            .cloned()
            .collect();
        in_bag.push((keys::CONNECTION_DEVICE_ID.into(), Some(device.into())));
        in_bag.push((keys::CONNECTION_MODULE_ID.into(), Some(module.into())));
        self.deliver(
            module,
            output,
            source,
            &routes,
            body,
            Arc::new(in_bag),
            enq,
            enq_text,
        );
        Ok(())
    }

    /// Route a module's accepted reported-properties patch as a twin change notification:
    /// source `/twinChangeNotifications/` (PROTOCOL §10), body = the patch JSON
    /// (`application/json`, `utf-8`), sender identity in connectionDeviceId/ModuleId.
    fn route_twin_change(&self, module: &str, patch: Bytes) {
        let enq = now_ms();
        let enq_text = rfc3339(enq);
        let device = self.cfg.device_id.as_str();
        let bag: Bag = vec![
            (keys::CONTENT_TYPE.into(), Some("application/json".into())),
            (keys::CONTENT_ENCODING.into(), Some("utf-8".into())),
        ];
        let rm = routed_message(&bag, &patch, device, module, &enq_text);
        let source = crate::routing::TWIN_CHANGE_NOTIFICATIONS_SOURCE;
        let routes = self.cfg.router.route(source, &rm);
        if routes.is_empty() {
            return;
        }
        let mut in_bag = bag;
        in_bag.push((keys::CONNECTION_DEVICE_ID.into(), Some(device.into())));
        in_bag.push((keys::CONNECTION_MODULE_ID.into(), Some(module.into())));
        let source = source.to_owned();
        self.deliver(
            module,
            None,
            source,
            &routes,
            patch,
            Arc::new(in_bag),
            enq,
            enq_text,
        );
        self.flush_store();
    }

    /// Hand a routed message to each route's sink: `$upstream` (feed) or a module input
    /// (store-and-forward queue).
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &self,
        module: &str,
        output: Option<String>,
        source: String,
        routes: &[&crate::routing::Route],
        body: Bytes,
        in_bag: Arc<Bag>,
        enq: u64,
        enq_text: String,
    ) {
        let device = self.cfg.device_id.as_str();
        let mut upstream = None;
        let mut st = self.lock();
        for route in routes {
            match &route.sink {
                crate::routing::Sink::Upstream => {
                    let mut msg = message::from_bag(body.to_vec(), (*in_bag).clone(), None);
                    msg.input_name = None;
                    let up = UpstreamMessage {
                        module: module.to_owned(),
                        output: output.clone(),
                        source: source.clone(),
                        message: msg,
                        enqueued: enq_text.clone(),
                    };
                    st.upstream_total += 1;
                    st.upstream.push_back(up.clone());
                    while st.upstream.len() > self.cfg.upstream_buffer.max(1) {
                        st.upstream.pop_front();
                    }
                    upstream = Some(up);
                }
                crate::routing::Sink::Module {
                    module: target,
                    input,
                } => {
                    if !self.cfg.keys.contains_key(target) {
                        tracing::warn!(route = %route.name, target = %target, "route targets an unknown module; message dropped");
                        continue;
                    }
                    let expires = self.expiry(enq, route.ttl_secs);
                    st.store
                        .push(target, input, body.clone(), in_bag.clone(), enq, expires);
                    st.pump(device, target);
                }
            }
        }
        drop(st);
        if let Some(up) = upstream {
            let _ = self.upstream_tx.send(up);
        }
    }

    /// Messages routed to `$upstream`, oldest first (bounded).
    pub fn upstream_recent(&self) -> Vec<UpstreamMessage> {
        self.lock().upstream.iter().cloned().collect()
    }

    pub fn upstream_subscribe(&self) -> broadcast::Receiver<UpstreamMessage> {
        self.upstream_tx.subscribe()
    }

    /// Write buffered store records to the log (called before PUBACKing senders).
    fn flush_store(&self) {
        let mut file = self.log_file.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = {
            let mut st = self.lock();
            if !st.store.has_pending_log() {
                return;
            }
            st.store.take_pending_log()
        };
        if let Err(e) = file.append(&bytes) {
            tracing::error!("cannot write the store log: {e}");
        }
    }

    fn compact_store(&self) {
        let mut file = self.log_file.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = {
            let mut st = self.lock();
            if !st.store.wants_compaction() {
                return;
            }
            st.store.snapshot()
        };
        if let Err(e) = file.rewrite(&snapshot) {
            tracing::error!("cannot compact the store log: {e}");
        }
    }

    /// Persist twins.json and sessions.json if they changed.
    fn save_meta(&self) {
        let _guard = self.meta_file.lock().unwrap_or_else(|e| e.into_inner());
        let (twins, sessions) = {
            let mut st = self.lock();
            let twins = std::mem::take(&mut st.twins_dirty).then(|| st.twins.to_bytes());
            let sessions = std::mem::take(&mut st.sessions_dirty)
                .then(|| sessions::sessions_bytes(&st.sessions));
            (twins, sessions)
        };
        if let Some(b) = twins {
            if let Err(e) = store::write_atomic(&self.cfg.state_dir.join("twins.json"), &b) {
                tracing::error!("cannot write twins.json: {e}");
            }
        }
        if let Some(b) = sessions {
            if let Err(e) = store::write_atomic(&self.cfg.state_dir.join("sessions.json"), &b) {
                tracing::error!("cannot write sessions.json: {e}");
            }
        }
    }

    // ----- periodic work -----

    fn ensure_ticker(self: &Arc<Self>) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        if self.ticker_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        let stop = self.stop.clone();
        let period =
            (self.cfg.ack_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(period);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = iv.tick() => {}
                }
                let Some(hub) = weak.upgrade() else { break };
                hub.tick();
            }
        });
    }

    /// Redeliver unacked messages, expire TTLs, drop connections whose token expired, flush.
    fn tick(&self) {
        let now = Instant::now();
        let unix = now_ms() / 1000;
        {
            let mut st = self.lock();
            let expired = st.store.expire(now_ms());
            if expired > 0 {
                tracing::info!(count = expired, "messages expired (TTL) in the store");
            }
            // One warning per tick rather than one per message while the limit is hit.
            let dropped = st.store.take_unlogged_limit_drops();
            if dropped > 0 {
                tracing::warn!(
                    count = dropped,
                    max_bytes = st.store.stats().2,
                    "store limit (storeLimits.maxSizeBytes) reached: oldest messages dropped"
                );
            }
            let skew = self.cfg.max_skew.as_secs();
            let modules: Vec<String> = st.sessions.keys().cloned().collect();
            for module in modules {
                st.redeliver(&self.cfg.device_id, &module, now, self.cfg.ack_timeout);
                let st = &mut *st;
                if let Some(conn) = st.sessions.get_mut(&module).and_then(|s| s.conn.as_mut()) {
                    conn.other_inflight
                        .retain(|_, sent| now.duration_since(*sent) < Duration::from_secs(300));
                    if conn.token_expiry.saturating_add(skew) < unix {
                        tracing::info!(module = %module, "SAS token expired; dropping the connection");
                        conn.cancel.cancel();
                    }
                }
            }
        }
        self.flush_store();
        self.compact_store();
        self.save_meta();
    }

    // ----- status, auth helper, shutdown -----

    /// Connections, subscriptions, queue depths per endpoint, store use (bytes, limit, messages
    /// dropped by the limit and by TTL) and upstream count.
    pub fn status(&self) -> Value {
        let st = self.lock();
        let d = &self.cfg.device_id;
        let mut connections = Vec::new();
        let mut subscriptions = serde_json::Map::new();
        let mut modules: Vec<&String> = st.sessions.keys().collect();
        modules.sort();
        for m in modules {
            let s: &Session = &st.sessions[m];
            if let Some(c) = &s.conn {
                connections.push(json!({
                    "identity": format!("{d}/{m}"),
                    "transport": c.transport.name(),
                    "peer": c.peer,
                    "since": c.since,
                }));
            }
            if !s.subs.is_empty() {
                let filters: Vec<&String> = s.subs.keys().collect();
                subscriptions.insert(format!("{d}/{m}"), json!(filters));
            }
        }
        let mut queues = serde_json::Map::new();
        for (m, i, n) in st.store.depths() {
            queues.insert(format!("{d}/{m}/{i}"), json!(n));
        }
        let (messages, bytes, max_bytes, dropped_limit, dropped_ttl) = st.store.stats();
        json!({
            "hubHostName": self.cfg.hub_host,
            "deviceId": d,
            "modules": self.cfg.keys.keys().collect::<Vec<_>>(),
            "connections": connections,
            "subscriptions": subscriptions,
            "queues": queues,
            "store": {
                "messages": messages,
                "bytes": bytes,
                "maxBytes": max_bytes,
                "dropped": {"storeLimit": dropped_limit, "ttl": dropped_ttl},
            },
            "upstream": {"count": st.upstream_total, "buffered": st.upstream.len()},
            "broker": self.cfg.broker.is_some(),
        })
    }

    /// Check a SAS token for `device/module` (HTTP module-to-module method auth): 401 on failure.
    pub fn verify_sas(&self, token: &str, device: &str, module: &str) -> Result<(), ApiError> {
        let unauthorized = || ApiError::new(401, "Unauthorized");
        if device != self.cfg.device_id {
            return Err(unauthorized());
        }
        let key = self.cfg.keys.get(module).ok_or_else(unauthorized)?;
        let revoked = self.lock().revoked_sigs.clone();
        let key_of = |_: &str| None;
        let is_revoked = |s: &str| revoked.contains(s);
        let ctx = self.auth_context(&key_of, &is_revoked);
        let (sig, _) = auth::check_sas(&ctx, token, device, module, key).map_err(|r| {
            tracing::info!(device, module, "HTTP SAS rejected: {}", r.reason);
            unauthorized()
        })?;
        if revoked.contains(&sig) {
            return Err(unauthorized());
        }
        Ok(())
    }

    fn auth_context<'a>(
        &'a self,
        key_of: &'a dyn Fn(&str) -> Option<Vec<u8>>,
        revoked: &'a dyn Fn(&str) -> bool,
    ) -> auth::AuthContext<'a> {
        auth::AuthContext {
            hub_host: &self.cfg.hub_host,
            device_id: &self.cfg.device_id,
            key_of,
            now_unix: now_ms() / 1000,
            max_skew_secs: self.cfg.max_skew.as_secs(),
            revoked,
        }
    }

    /// Close every connection cleanly and persist the state. Later connections are refused.
    pub async fn shutdown(&self) {
        {
            let mut st = self.lock();
            st.closed = true;
            for s in st.sessions.values_mut() {
                if let Some(c) = &s.conn {
                    let _ = c.tx.send(sessions::Out::Close);
                }
            }
        }
        // Give writers a moment to flush, then cut whatever is left.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && self.connection_count() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        {
            let st = self.lock();
            for s in st.sessions.values() {
                if let Some(c) = &s.conn {
                    c.cancel.cancel();
                }
            }
        }
        self.stop.cancel();
        self.flush_store();
        {
            let mut st = self.lock();
            st.twins_dirty = true;
            st.sessions_dirty = true;
        }
        self.save_meta();
    }

    fn connection_count(&self) -> usize {
        self.lock()
            .sessions
            .values()
            .filter(|s| s.conn.is_some())
            .count()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Body-size accounting for the 256 KB limit: key and value lengths of the decoded bag.
fn bag_size(bag: &[(String, Option<String>)]) -> usize {
    bag.iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len))
        .sum()
}

/// The routing view of an output message, with edgeHub's internal system property names.
fn routed_message(
    bag: &[(String, Option<String>)],
    body: &[u8],
    device: &str,
    module: &str,
    enqueued: &str,
) -> crate::routing::RoutedMessage {
    let mut rm = crate::routing::RoutedMessage::new(body.to_vec());
    for (k, v) in bag {
        let sys = match k.as_str() {
            "$.mid" => "messageId",
            "$.cid" => "correlationId",
            "$.uid" => "userId",
            "$.ct" => "contentType",
            "$.ce" => "contentEncoding",
            "$.exp" => "expiryTimeUtc",
            "$.ctime" => "creationTime",
            "$.on" => "outputName",
            "$.to" => "to",
            "$.schema" => "messageSchema",
            "$.ifid" => "edgeHubOriginInterface",
            "$.sub" => "componentName",
            "iothub-operation" => "operation",
            "$.cdid" | "$.cmid" => continue,
            _ => {
                rm.app.push((k.clone(), v.clone()));
                continue;
            }
        };
        if let Some(v) = v {
            rm.system.insert(sys.to_owned(), v.clone());
        }
    }
    rm.system
        .insert("connectionDeviceId".into(), device.to_owned());
    rm.system
        .insert("connectionModuleId".into(), module.to_owned());
    rm.system.insert("enqueuedTime".into(), enqueued.to_owned());
    rm.system.insert(
        "connectionAuthMethod".into(),
        r#"{"scope":"module","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#.into(),
    );
    rm
}
