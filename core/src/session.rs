//! The session task: owns the MQTT connection (through rumqttc), the offline queue, the
//! request/response correlation and the reconnect policy. Public calls talk to it with commands.
//!
//! rumqttc's `EventLoop` runs in its own *driver* task so that `poll()` is never cancelled in the
//! middle of a connect; the session task only selects on channels, which is cancel-safe.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, EventLoop, Incoming, MqttOptions, Outgoing,
    Publish, QoS, SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::credentials::{unix_now, Credentials, Token};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{AckHandle, AckTarget, ConnectionStatus, Event, StatusReason};
use crate::message;
use crate::options::{client_type, BrokerOptions, ClientOptions, TransportKind};
use crate::protocol::{property_bag, topics, twin};

/// Largest MQTT packet we send or accept (256 KB message + topic and header room).
const MAX_PACKET: usize = 256 * 1024 + 16 * 1024;
const TICK: Duration = Duration::from_millis(200);

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// Requests from the public API to the session task.
#[derive(Debug)]
pub enum Command {
    Connect(Reply<()>),
    Publish {
        topic: String,
        payload: Bytes,
        qos: QoS,
        reply: Option<Reply<()>>,
    },
    Subscribe {
        filter: String,
        qos: QoS,
        reply: Reply<()>,
    },
    Unsubscribe {
        filter: String,
        reply: Reply<()>,
    },
    GetTwin(Reply<twin::Twin>),
    PatchReported(serde_json::Value, Reply<Option<i64>>),
    Ack {
        pkid: u16,
        generation: u64,
    },
    Close(oneshot::Sender<()>),
}

/// How the session authenticates.
#[derive(Clone, Debug)]
pub(crate) enum Auth {
    /// A module of an IoT Edge hub: SAS tokens, renewed before they expire.
    Module {
        credentials: Arc<Credentials>,
        options: ClientOptions,
    },
    /// A plain MQTT broker (broker mode against any MQTT 3.1.1 server).
    Broker(BrokerOptions, ClientOptions),
}

impl Auth {
    fn options(&self) -> &ClientOptions {
        match self {
            Auth::Module { options, .. } => options,
            Auth::Broker(_, options) => options,
        }
    }
}

/// Observable state shared with the client handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub status: ConnectionStatus,
    pub queue_depth: usize,
    pub oldest_queued: Option<std::time::Instant>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            status: ConnectionStatus::Disconnected,
            queue_depth: 0,
            oldest_queued: None,
        }
    }
}

enum Ctl {
    Connect(String),
    Renew(String),
    Stop,
}

enum Net {
    Event(rumqttc::Event),
    Error(ConnectionError),
}

/// Drives rumqttc's event loop: polls until an error, then waits for the session to say
/// when (and with which password) to try again.
async fn drive(mut el: EventLoop, mut ctl: mpsc::UnboundedReceiver<Ctl>, net: mpsc::Sender<Net>) {
    let mut active = false;
    loop {
        if !active {
            match ctl.recv().await {
                Some(Ctl::Connect(pw)) => {
                    set_password(&mut el, pw);
                    active = true;
                }
                Some(Ctl::Renew(pw)) => set_password(&mut el, pw),
                Some(Ctl::Stop) | None => return,
            }
            continue;
        }
        let result = if el.network.is_some() {
            tokio::select! {
                biased;
                c = ctl.recv() => {
                    match c {
                        Some(Ctl::Renew(pw)) => {
                            // New token: drop the connection (unacked publishes move to
                            // `pending` and are retransmitted) and reconnect with it.
                            set_password(&mut el, pw);
                            el.clean();
                        }
                        Some(Ctl::Connect(_)) => {}
                        Some(Ctl::Stop) | None => return,
                    }
                    continue;
                }
                r = el.poll() => r,
            }
        } else {
            el.poll().await
        };
        let msg = match result {
            Ok(ev) => Net::Event(ev),
            Err(e) => {
                active = false;
                Net::Error(e)
            }
        };
        if net.send(msg).await.is_err() {
            return;
        }
    }
}

fn set_password(el: &mut EventLoop, password: String) {
    if let Some(login) = el.mqtt_options.credentials() {
        el.mqtt_options.set_credentials(login.username, password);
    }
}

struct PendingSend {
    topic: String,
    payload: Bytes,
    qos: QoS,
    reply: Option<Reply<()>>,
    queued_at: Instant,
    sent_at: Option<Instant>,
}

enum TwinOp {
    Get(Option<Reply<twin::Twin>>),
    Patch(Bytes, Reply<Option<i64>>),
}

struct TwinRequest {
    op: TwinOp,
    deadline: Instant,
    /// Waiting for a retry after a 429/5xx.
    retry_at: Option<Instant>,
    attempts: u32,
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum Link {
    /// Not connected and not trying (before connect, after giving up).
    Idle,
    /// A connection attempt is under way in the driver.
    Connecting,
    Connected,
    /// Waiting before the next attempt.
    Waiting(Instant),
    Closed,
}

pub(crate) struct Session {
    auth: Auth,
    commands_tx: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedSender<Event>,
    shared: Arc<Mutex<Shared>>,
    client: Option<AsyncClient>,
    ctl: Option<mpsc::UnboundedSender<Ctl>>,
    net_rx: Option<mpsc::Receiver<Net>>,
    link: Link,
    generation: u64,
    ever_connected: bool,
    connect_waiters: Vec<Reply<()>>,
    connect_deadline: Option<Instant>,
    backoff: Backoff,
    last_reason: StatusReason,
    token: Option<Token>,
    renew_at: Option<Instant>,
    next_id: u64,
    sends: BTreeMap<u64, PendingSend>,
    /// Not yet handed to rumqttc (offline queue), oldest first.
    outbox: VecDeque<u64>,
    /// Handed to rumqttc, waiting for `Outgoing::Publish` to learn the packet id.
    fifo: VecDeque<u64>,
    collided: Option<u64>,
    inflight: HashMap<u16, u64>,
    subs: BTreeMap<String, QoS>,
    sub_waiters: VecDeque<Option<Reply<()>>>,
    sub_pkids: HashMap<u16, Option<Reply<()>>>,
    unsub_waiters: VecDeque<Reply<()>>,
    unsub_pkids: HashMap<u16, Reply<()>>,
    twin_requests: HashMap<String, TwinRequest>,
    last_desired_version: Option<i64>,
    closing: Option<oneshot::Sender<()>>,
}

impl Session {
    pub(crate) fn new(
        auth: Auth,
        commands_tx: mpsc::UnboundedSender<Command>,
        events: mpsc::UnboundedSender<Event>,
        shared: Arc<Mutex<Shared>>,
    ) -> Session {
        let opts = auth.options().clone();
        let mut subs = BTreeMap::new();
        if let Auth::Module { credentials, .. } = &auth {
            let id = &credentials.identity;
            if opts.enable_inputs {
                subs.insert(
                    topics::inputs_filter(&id.device_id, &id.module_id),
                    QoS::AtLeastOnce,
                );
            }
            subs.insert(topics::TWIN_RESPONSE_FILTER.to_string(), QoS::AtLeastOnce);
            if opts.enable_twin_patches {
                subs.insert(topics::TWIN_DESIRED_FILTER.to_string(), QoS::AtLeastOnce);
            }
            if opts.enable_methods {
                subs.insert(topics::METHODS_FILTER.to_string(), QoS::AtLeastOnce);
            }
        }
        Session {
            backoff: Backoff::new(opts.backoff.clone()),
            auth,
            commands_tx,
            events,
            shared,
            client: None,
            ctl: None,
            net_rx: None,
            link: Link::Idle,
            generation: 0,
            ever_connected: false,
            connect_waiters: Vec::new(),
            connect_deadline: None,
            last_reason: StatusReason::ConnectionOk,
            token: None,
            renew_at: None,
            next_id: 0,
            sends: BTreeMap::new(),
            outbox: VecDeque::new(),
            fifo: VecDeque::new(),
            collided: None,
            inflight: HashMap::new(),
            subs,
            sub_waiters: VecDeque::new(),
            sub_pkids: HashMap::new(),
            unsub_waiters: VecDeque::new(),
            unsub_pkids: HashMap::new(),
            twin_requests: HashMap::new(),
            last_desired_version: None,
            closing: None,
        }
    }

    fn opts(&self) -> &ClientOptions {
        self.auth.options()
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            enum Wake {
                Cmd(Option<Command>),
                Net(Option<Net>),
                Tick,
            }
            let wake = {
                let net = self.net_rx.as_mut();
                tokio::select! {
                    biased;
                    n = async { match net { Some(rx) => rx.recv().await, None => std::future::pending().await } } => Wake::Net(n),
                    c = commands.recv() => Wake::Cmd(c),
                    _ = tick.tick() => Wake::Tick,
                }
            };
            match wake {
                Wake::Cmd(Some(cmd)) => self.on_command(cmd).await,
                Wake::Cmd(None) => {
                    self.shutdown(StatusReason::ClientClose);
                    return;
                }
                Wake::Net(Some(Net::Event(ev))) => self.on_mqtt(ev),
                Wake::Net(Some(Net::Error(e))) => self.on_connection_error(e),
                Wake::Net(None) => {
                    self.net_rx = None;
                    if self.link != Link::Closed {
                        self.on_connection_error(ConnectionError::RequestsDone);
                    }
                }
                Wake::Tick => self.on_tick().await,
            }
            if self.link == Link::Closed {
                if let Some(done) = self.closing.take() {
                    let _ = done.send(());
                }
                return;
            }
        }
    }

    // ----- commands -------------------------------------------------------------------------

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Connect(reply) => match self.link {
                Link::Connected => {
                    let _ = reply.send(Ok(()));
                }
                Link::Closed => {
                    let _ = reply.send(Err(Error::closed()));
                }
                Link::Connecting | Link::Waiting(_) => self.connect_waiters.push(reply),
                Link::Idle => {
                    self.connect_waiters.push(reply);
                    self.connect_deadline = Some(Instant::now() + self.opts().connect_timeout);
                    self.backoff.reset();
                    self.start_attempt().await;
                }
            },
            Command::Publish {
                topic,
                payload,
                qos,
                reply,
            } => self.enqueue(topic, payload, qos, reply),
            Command::Subscribe { filter, qos, reply } => {
                self.subs.insert(filter.clone(), qos);
                if self.link == Link::Connected {
                    if let Some(c) = &self.client {
                        if c.try_subscribe(filter, qos).is_ok() {
                            self.sub_waiters.push_back(Some(reply));
                            return;
                        }
                    }
                }
                // Offline: it is subscribed with the others on the next connect.
                let _ = reply.send(Ok(()));
            }
            Command::Unsubscribe { filter, reply } => {
                self.subs.remove(&filter);
                if self.link == Link::Connected {
                    if let Some(c) = &self.client {
                        if c.try_unsubscribe(filter).is_ok() {
                            self.unsub_waiters.push_back(reply);
                            return;
                        }
                    }
                }
                let _ = reply.send(Ok(()));
            }
            Command::GetTwin(reply) => self.twin_request(TwinOp::Get(Some(reply))),
            Command::PatchReported(patch, reply) => {
                if let Err(e) = twin::validate_reported_patch(&patch) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let body = Bytes::from(patch.to_string());
                self.twin_request(TwinOp::Patch(body, reply));
            }
            Command::Ack { pkid, generation } => {
                // An ack for a delivery of an earlier connection is void: the hub redelivers.
                if generation == self.generation && self.link == Link::Connected {
                    if let Some(c) = &self.client {
                        let mut p = Publish::new("", QoS::AtLeastOnce, Vec::<u8>::new());
                        p.pkid = pkid;
                        let _ = c.try_ack(&p);
                    }
                }
            }
            Command::Close(done) => {
                self.closing = Some(done);
                if self.link == Link::Connected {
                    if let Some(c) = &self.client {
                        let _ = c.try_disconnect();
                        // Let the DISCONNECT reach the wire before the driver stops.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                self.shutdown(StatusReason::ClientClose);
            }
        }
    }

    fn next_send_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn enqueue(&mut self, topic: String, payload: Bytes, qos: QoS, reply: Option<Reply<()>>) {
        if self.link == Link::Closed {
            if let Some(r) = reply {
                let _ = r.send(Err(Error::closed()));
            }
            return;
        }
        if self.outbox.len() >= self.opts().offline_queue_limit {
            if let Some(r) = reply {
                let _ = r.send(Err(Error::new(
                    ErrorKind::QueueFull,
                    format!(
                        "the offline queue is full ({} messages waiting)",
                        self.outbox.len()
                    ),
                )));
            }
            return;
        }
        let id = self.next_send_id();
        self.sends.insert(
            id,
            PendingSend {
                topic,
                payload,
                qos,
                reply,
                queued_at: Instant::now(),
                sent_at: None,
            },
        );
        self.outbox.push_back(id);
        self.pump();
    }

    /// Hand queued sends to rumqttc while connected and its window has room.
    fn pump(&mut self) {
        if self.link == Link::Connected {
            let window = (self.opts().inflight as usize) * 2;
            while self.fifo.len() < window {
                let Some(id) = self.outbox.pop_front() else {
                    break;
                };
                let Some(send) = self.sends.get_mut(&id) else {
                    continue;
                };
                let Some(client) = &self.client else {
                    self.outbox.push_front(id);
                    break;
                };
                match client.try_publish(send.topic.clone(), send.qos, false, send.payload.clone())
                {
                    Ok(()) => {
                        send.sent_at = Some(Instant::now());
                        self.fifo.push_back(id);
                    }
                    Err(_) => {
                        self.outbox.push_front(id);
                        break;
                    }
                }
            }
        }
        self.update_shared();
    }

    fn update_shared(&self) {
        let oldest = self
            .outbox
            .front()
            .and_then(|id| self.sends.get(id))
            .map(|s| s.queued_at.into_std());
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.queue_depth = self.outbox.len();
        shared.oldest_queued = oldest;
    }

    fn twin_request(&mut self, op: TwinOp) {
        let rid = uuid::Uuid::new_v4().to_string();
        let deadline = Instant::now() + self.opts().operation_timeout;
        self.twin_requests.insert(
            rid.clone(),
            TwinRequest {
                op,
                deadline,
                retry_at: None,
                attempts: 0,
            },
        );
        self.send_twin_request(&rid);
    }

    fn send_twin_request(&mut self, rid: &str) {
        let Some(req) = self.twin_requests.get_mut(rid) else {
            return;
        };
        req.attempts += 1;
        req.retry_at = None;
        let (topic, body) = match &req.op {
            TwinOp::Get(_) => (topics::twin_get_topic(rid), Bytes::new()),
            TwinOp::Patch(body, _) => (topics::twin_patch_reported_topic(rid), body.clone()),
        };
        if self.link == Link::Connected {
            self.enqueue(topic, body, QoS::AtMostOnce, None);
        }
        // Offline: sent by `resend_twin_requests` after the next CONNACK.
    }

    // ----- connecting -----------------------------------------------------------------------

    async fn start_attempt(&mut self) {
        if self.client.is_none() {
            if let Err(e) = self.build_connection().await {
                self.fail_connect_waiters(e.clone());
                self.link = Link::Idle;
                self.emit_status(ConnectionStatus::Disconnected, reason_for_error(&e));
                return;
            }
        }
        let password = match self.password().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("cannot make a SAS token: {e}");
                self.schedule_retry(StatusReason::CommunicationError, Some(e));
                return;
            }
        };
        self.link = Link::Connecting;
        if let Some(ctl) = &self.ctl {
            let _ = ctl.send(Ctl::Connect(password.unwrap_or_default()));
        }
    }

    /// The MQTT password for the next CONNECT (a fresh token when the current one is old).
    async fn password(&mut self) -> Result<Option<String>> {
        match &self.auth {
            Auth::Broker(b, _) => Ok(b.password.clone()),
            Auth::Module {
                credentials,
                options,
            } => {
                let ttl = options.sas_ttl;
                let fresh_enough = self
                    .token
                    .as_ref()
                    .is_some_and(|t| t.expiry > unix_now() + (ttl.as_secs() / 5).max(1));
                if !fresh_enough {
                    let token = credentials.token(ttl).await?;
                    self.token = Some(token);
                }
                let token = self.token.as_ref().expect("token just made");
                let lifetime = token.expiry.saturating_sub(unix_now());
                self.renew_at = Some(Instant::now() + Duration::from_secs(lifetime) * 4 / 5);
                Ok(Some(token.value.clone()))
            }
        }
    }

    /// Create rumqttc's client and event loop, and the driver task.
    async fn build_connection(&mut self) -> Result<()> {
        let mut mqtt = match &self.auth {
            Auth::Module {
                credentials,
                options,
            } => {
                let id = &credentials.identity;
                let client_id = format!("{}/{}", id.device_id, id.module_id);
                let ca = credentials.trust_bundle().await?;
                let tls = crate::tls::client_config(&ca, &[])?;
                let mut mqtt = match options.transport {
                    TransportKind::Mqtt => {
                        let port = options.mqtt_port.or(id.gateway_port).unwrap_or(8883);
                        let mut m = MqttOptions::new(client_id, id.gateway_host.clone(), port);
                        m.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
                        m
                    }
                    TransportKind::MqttWebSocket => {
                        let port = options.mqtt_port.unwrap_or(443);
                        let url = format!("wss://{}:{}/$iothub/websocket", id.gateway_host, port);
                        let mut m = MqttOptions::new(client_id, url, port);
                        m.set_transport(Transport::Wss(TlsConfiguration::Rustls(tls)));
                        m
                    }
                };
                let user = topics::username(
                    &id.hub_host,
                    &id.device_id,
                    &id.module_id,
                    &options.api_version,
                    &client_type(options.product_info.as_deref()),
                    options.model_id.as_deref(),
                );
                mqtt.set_credentials(user, "");
                mqtt
            }
            Auth::Broker(b, _) => {
                let mut m = MqttOptions::new(b.client_id.clone(), b.host.clone(), b.port);
                if let Some(ca) = &b.tls_ca_pem {
                    let tls = crate::tls::client_config(ca, &[])?;
                    m.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
                }
                if let Some(u) = &b.username {
                    m.set_credentials(u.clone(), b.password.clone().unwrap_or_default());
                }
                m
            }
        };
        let opts = self.opts().clone();
        mqtt.set_keep_alive(opts.keep_alive.max(Duration::from_secs(5)))
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_inflight(opts.inflight.max(1))
            .set_max_packet_size(MAX_PACKET, MAX_PACKET);
        let capacity = opts.inflight as usize * 4 + 1024;
        let (client, mut el) = AsyncClient::new(mqtt, capacity);
        let mut net_opts = rumqttc::NetworkOptions::new();
        net_opts.set_connection_timeout(opts.connect_timeout.as_secs().max(1));
        el.set_network_options(net_opts);
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (net_tx, net_rx) = mpsc::channel(256);
        tokio::spawn(drive(el, ctl_rx, net_tx));
        self.client = Some(client);
        self.ctl = Some(ctl_tx);
        self.net_rx = Some(net_rx);
        Ok(())
    }

    fn on_connection_error(&mut self, e: ConnectionError) {
        if self.link == Link::Closed {
            return;
        }
        let reason = match &e {
            ConnectionError::ConnectionRefused(
                ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
            ) => {
                let expired = self.token.as_ref().is_some_and(|t| t.expiry <= unix_now());
                if expired {
                    StatusReason::ExpiredSasToken
                } else {
                    StatusReason::BadCredential
                }
            }
            ConnectionError::Io(_) | ConnectionError::NetworkTimeout => {
                if self.link == Link::Connected {
                    StatusReason::CommunicationError
                } else {
                    StatusReason::NoNetwork
                }
            }
            _ => StatusReason::CommunicationError,
        };
        let was_connected = self.link == Link::Connected;
        tracing::info!("connection lost or refused: {e}");
        self.link = Link::Idle;
        self.fifo_to_outbox_on_disconnect();
        if reason == StatusReason::BadCredential {
            // A refused credential is not going to improve by retrying; try once more with a
            // fresh token, then stop.
            self.token = None;
            if !was_connected && self.backoff.attempt() >= 1 {
                let err = Error::new(
                    ErrorKind::Authentication,
                    "the hub refused the module's credentials",
                );
                self.fail_connect_waiters(err);
                self.emit_status(ConnectionStatus::Disconnected, reason);
                return;
            }
        }
        let err = Error::new(
            if reason == StatusReason::BadCredential {
                ErrorKind::Authentication
            } else {
                ErrorKind::Connection
            },
            format!("cannot reach the hub: {e}"),
        );
        self.schedule_retry(reason, Some(err));
    }

    /// On a lost link: unnumbered and unacknowledged sends stay where they are (rumqttc keeps
    /// them in its `pending` list and resends them if the broker kept our session; `on_connack`
    /// handles the other case). Subscription waiters are answered now: every subscription is
    /// made again on the next CONNACK anyway.
    fn fifo_to_outbox_on_disconnect(&mut self) {
        for w in self.sub_waiters.drain(..).flatten() {
            let _ = w.send(Ok(()));
        }
        for (_, w) in self.sub_pkids.drain() {
            if let Some(w) = w {
                let _ = w.send(Ok(()));
            }
        }
        for w in self.unsub_waiters.drain(..) {
            let _ = w.send(Ok(()));
        }
        for (_, w) in self.unsub_pkids.drain() {
            let _ = w.send(Ok(()));
        }
    }

    fn schedule_retry(&mut self, reason: StatusReason, err: Option<Error>) {
        self.last_reason = reason;
        let deadline_passed = self
            .connect_deadline
            .is_some_and(|d| Instant::now() >= d && !self.ever_connected);
        let delay = if deadline_passed {
            None
        } else {
            self.backoff
                .next_delay(rand::random::<f64>(), std::time::Instant::now())
        };
        match delay {
            Some(d) => {
                self.link = Link::Waiting(Instant::now() + d);
                self.emit_status(
                    ConnectionStatus::DisconnectedRetrying {
                        attempt: self.backoff.attempt(),
                        next_delay: d,
                    },
                    reason,
                );
            }
            None => {
                self.link = Link::Idle;
                let e = err.unwrap_or_else(|| Error::new(ErrorKind::Connection, "gave up"));
                self.fail_connect_waiters(e);
                if self.ever_connected {
                    self.fail_all_sends(Error::new(
                        ErrorKind::Connection,
                        "gave up reconnecting to the hub (retry policy expired)",
                    ));
                }
                self.emit_status(ConnectionStatus::Disconnected, StatusReason::RetryExpired);
            }
        }
    }

    fn fail_connect_waiters(&mut self, e: Error) {
        for w in self.connect_waiters.drain(..) {
            let _ = w.send(Err(e.clone()));
        }
        self.connect_deadline = None;
    }

    fn on_connack(&mut self, session_present: bool) {
        let reconnect = self.ever_connected;
        self.link = Link::Connected;
        self.generation += 1;
        self.ever_connected = true;
        self.backoff.reset();
        self.connect_deadline = None;
        for w in self.connect_waiters.drain(..) {
            let _ = w.send(Ok(()));
        }
        if !session_present {
            // rumqttc dropped its retransmission list: resubmit every unacknowledged send
            // ourselves, in the original order, ahead of the offline queue.
            let mut ids: Vec<u64> = self.inflight.values().copied().collect();
            ids.extend(self.fifo.drain(..));
            ids.extend(self.collided.take());
            ids.sort_unstable();
            self.inflight.clear();
            for id in ids.into_iter().rev() {
                let keep = self
                    .sends
                    .get(&id)
                    .is_some_and(|s| s.reply.is_some() || s.qos == QoS::AtMostOnce);
                if keep {
                    self.outbox.push_front(id);
                } else {
                    self.sends.remove(&id);
                }
            }
        }
        self.emit_status(ConnectionStatus::Connected, StatusReason::ConnectionOk);
        // Subscribe every enabled feature whatever the session flag says.
        if !self.subs.is_empty() {
            if let Some(c) = &self.client {
                let filters: Vec<SubscribeFilter> = self
                    .subs
                    .iter()
                    .map(|(f, q)| SubscribeFilter::new(f.clone(), *q))
                    .collect();
                if c.try_subscribe_many(filters).is_ok() {
                    self.sub_waiters.push_back(None);
                }
            }
        }
        self.resend_twin_requests();
        if reconnect && self.opts().enable_twin_patches && matches!(self.auth, Auth::Module { .. })
        {
            // Desired changes made while we were away are not queued by the hub: GET the twin
            // and raise a synthetic patch if the desired version moved (PROTOCOL §7).
            self.twin_request(TwinOp::Get(None));
        }
        self.pump();
    }

    fn resend_twin_requests(&mut self) {
        let rids: Vec<String> = self
            .twin_requests
            .iter()
            .filter(|(_, r)| r.retry_at.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for rid in rids {
            self.send_twin_request(&rid);
        }
    }

    // ----- incoming -------------------------------------------------------------------------

    fn on_mqtt(&mut self, ev: rumqttc::Event) {
        match ev {
            rumqttc::Event::Incoming(Incoming::ConnAck(ack)) => {
                self.on_connack(ack.session_present)
            }
            rumqttc::Event::Incoming(Incoming::PubAck(ack)) => {
                if let Some(id) = self.inflight.remove(&ack.pkid) {
                    if let Some(mut s) = self.sends.remove(&id) {
                        if let Some(r) = s.reply.take() {
                            let _ = r.send(Ok(()));
                        }
                    }
                }
                self.pump();
            }
            rumqttc::Event::Incoming(Incoming::Publish(p)) => self.on_publish(p),
            rumqttc::Event::Incoming(Incoming::SubAck(ack)) => {
                let failed = ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure));
                if let Some(Some(reply)) = self.sub_pkids.remove(&ack.pkid) {
                    let _ = reply.send(if failed {
                        Err(Error::new(
                            ErrorKind::Authentication,
                            "the broker refused the subscription",
                        ))
                    } else {
                        Ok(())
                    });
                } else if failed {
                    tracing::warn!("the hub refused one of our subscriptions");
                }
            }
            rumqttc::Event::Incoming(Incoming::UnsubAck(ack)) => {
                if let Some(reply) = self.unsub_pkids.remove(&ack.pkid) {
                    let _ = reply.send(Ok(()));
                }
            }
            rumqttc::Event::Incoming(Incoming::Disconnect) => {}
            rumqttc::Event::Outgoing(Outgoing::Publish(pkid)) => self.on_outgoing_publish(pkid),
            rumqttc::Event::Outgoing(Outgoing::AwaitAck(_)) => {
                // A packet-id collision: this publish goes out once the old one is acked.
                self.collided = self.fifo.pop_front();
            }
            rumqttc::Event::Outgoing(Outgoing::Subscribe(pkid)) => {
                if let Some(w) = self.sub_waiters.pop_front() {
                    self.sub_pkids.insert(pkid, w);
                }
            }
            rumqttc::Event::Outgoing(Outgoing::Unsubscribe(pkid)) => {
                if let Some(w) = self.unsub_waiters.pop_front() {
                    self.unsub_pkids.insert(pkid, w);
                }
            }
            _ => {}
        }
    }

    fn on_outgoing_publish(&mut self, pkid: u16) {
        if pkid != 0 && self.inflight.contains_key(&pkid) {
            return; // a retransmission after reconnect
        }
        let id = if pkid != 0 && self.collided.is_some() {
            self.collided.take()
        } else {
            self.fifo.pop_front()
        };
        let Some(id) = id else {
            return;
        };
        if pkid == 0 {
            // QoS 0: done once written.
            if let Some(mut s) = self.sends.remove(&id) {
                if let Some(r) = s.reply.take() {
                    let _ = r.send(Ok(()));
                }
            }
        } else {
            self.inflight.insert(pkid, id);
        }
        self.pump();
    }

    fn on_publish(&mut self, p: Publish) {
        let topic = p.topic.clone();
        let ack = if p.qos == QoS::AtMostOnce {
            None
        } else {
            Some(AckTarget {
                commands: self.commands_tx.clone(),
                pkid: p.pkid,
                generation: self.generation,
            })
        };
        if let Some(rest) = topic.strip_prefix("$iothub/") {
            self.ack_now(&p);
            if rest.starts_with("twin/res/") {
                self.on_twin_response(&topic, p.payload);
            } else if rest.starts_with("twin/PATCH/properties/desired/") {
                self.on_desired_patch(&topic, &p.payload);
            } else if rest.starts_with("methods/POST/") {
                match topics::parse_method_request_topic(&topic) {
                    Ok(m) => {
                        let payload = json_or_text(&p.payload);
                        self.emit(Event::MethodRequest {
                            request_id: m.rid,
                            name: m.name,
                            payload,
                        });
                    }
                    Err(e) => tracing::warn!("ignoring a malformed method request topic: {e}"),
                }
            } else {
                tracing::debug!("ignoring {topic}");
            }
            return;
        }
        if let Auth::Module { credentials, .. } = &self.auth {
            let prefix = format!(
                "devices/{}/modules/{}/inputs/",
                credentials.identity.device_id, credentials.identity.module_id
            );
            if topic.starts_with(&prefix) {
                match topics::parse_input_topic(&topic) {
                    Ok(t) => {
                        let msg = message::from_bag(
                            p.payload.to_vec(),
                            t.properties,
                            Some(t.input_name.clone()),
                        );
                        self.emit(Event::InputMessage {
                            input: t.input_name,
                            message: msg,
                            ack: AckHandle::new(ack),
                        });
                    }
                    Err(e) => {
                        // Undecodable: ack it so the hub does not redeliver it forever.
                        tracing::warn!("dropping an input message with a malformed topic: {e}");
                        self.ack_now(&p);
                    }
                }
                return;
            }
        }
        self.ack_now(&p);
        self.emit(Event::TopicMessage {
            topic,
            payload: p.payload.to_vec(),
            qos: p.qos as u8,
        });
    }

    fn ack_now(&self, p: &Publish) {
        if p.qos != QoS::AtMostOnce {
            if let Some(c) = &self.client {
                let _ = c.try_ack(p);
            }
        }
    }

    fn on_twin_response(&mut self, topic: &str, body: Bytes) {
        let resp = match topics::parse_twin_response_topic(topic) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("ignoring a malformed twin response topic: {e}");
                return;
            }
        };
        let Some(req) = self.twin_requests.get_mut(&resp.rid) else {
            return; // late or duplicate answer
        };
        if resp.status == 429 || resp.status >= 500 {
            // Retryable: try again after a pause that grows with each attempt.
            let pause = Duration::from_millis(250 * 2u64.pow(req.attempts.min(6)));
            if Instant::now() + pause < req.deadline {
                req.retry_at = Some(Instant::now() + pause);
                return;
            }
        }
        let Some(req) = self.twin_requests.remove(&resp.rid) else {
            return;
        };
        let failure = |status: u16| {
            let kind = if status == 429 {
                ErrorKind::Throttled
            } else {
                ErrorKind::HubError
            };
            Error::with_status(
                kind,
                status,
                format!(
                    "the hub answered the twin request with {status}: {}",
                    crate::http::error_message(&body)
                ),
            )
        };
        match req.op {
            TwinOp::Get(reply) => {
                let result = if resp.status >= 300 {
                    Err(failure(resp.status))
                } else {
                    twin::parse_twin(&body)
                };
                if let Ok(t) = &result {
                    let version = t.desired_version();
                    if reply.is_none() && version != self.last_desired_version {
                        // Resync after reconnect: the desired section moved while we were away.
                        self.emit(Event::DesiredPropertiesPatch {
                            patch: t.desired.clone(),
                            version,
                        });
                    }
                    if version.is_some() {
                        self.last_desired_version = version;
                    }
                }
                if let Some(r) = reply {
                    let _ = r.send(result);
                }
            }
            TwinOp::Patch(_, reply) => {
                let _ = reply.send(if resp.status >= 300 {
                    Err(failure(resp.status))
                } else {
                    Ok(resp.version)
                });
            }
        }
    }

    fn on_desired_patch(&mut self, topic: &str, body: &[u8]) {
        let patch: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("ignoring a desired patch that is not JSON: {e}");
                return;
            }
        };
        let version = topics::parse_desired_patch_topic(topic)
            .ok()
            .flatten()
            .or_else(|| twin::patch_version(&patch));
        if let (Some(v), Some(last)) = (version, self.last_desired_version) {
            if v <= last {
                return; // already seen (e.g. through the resync GET)
            }
        }
        if version.is_some() {
            self.last_desired_version = version;
        }
        self.emit(Event::DesiredPropertiesPatch { patch, version });
    }

    // ----- timers ---------------------------------------------------------------------------

    async fn on_tick(&mut self) {
        let now = Instant::now();
        match self.link {
            Link::Waiting(at) if now >= at => self.start_attempt().await,
            Link::Connected if self.renew_at.is_some_and(|t| now >= t) => {
                self.renew_token().await;
            }
            _ => {}
        }
        self.expire(now);
    }

    async fn renew_token(&mut self) {
        self.renew_at = None;
        self.token = None;
        match self.password().await {
            Ok(Some(pw)) => {
                tracing::info!("SAS token renewed; reconnecting with it");
                if let Some(ctl) = &self.ctl {
                    let _ = ctl.send(Ctl::Renew(pw));
                }
                // The driver drops the link and reconnects; the CONNACK that follows puts us
                // back to Connected.
                self.link = Link::Connecting;
                self.emit_status(
                    ConnectionStatus::DisconnectedRetrying {
                        attempt: 1,
                        next_delay: Duration::ZERO,
                    },
                    StatusReason::ExpiredSasToken,
                );
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("cannot renew the SAS token: {e}; will try again");
                self.renew_at = Some(Instant::now() + Duration::from_secs(5));
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let max_age = self.opts().offline_queue_max_age;
        let op_timeout = self.opts().operation_timeout;
        // Offline queue: age limit. The observable depth is updated before the senders learn
        // of their failure.
        let mut aged = Vec::new();
        while let Some(id) = self.outbox.front().copied() {
            let old = self
                .sends
                .get(&id)
                .is_none_or(|s| now.duration_since(s.queued_at) > max_age);
            if !old {
                break;
            }
            self.outbox.pop_front();
            aged.extend(self.sends.remove(&id).and_then(|mut s| s.reply.take()));
        }
        if !aged.is_empty() {
            self.update_shared();
            for r in aged {
                let _ = r.send(Err(Error::new(
                    ErrorKind::Timeout,
                    format!("the message waited over {max_age:?} in the offline queue"),
                )));
            }
        }
        // Transmitted but not acknowledged in time: fail it (it stays in rumqttc's window and
        // may still arrive: at-least-once).
        for s in self.sends.values_mut() {
            if s.sent_at
                .is_some_and(|t| now.duration_since(t) > op_timeout)
            {
                if let Some(r) = s.reply.take() {
                    let _ = r.send(Err(Error::new(
                        ErrorKind::Timeout,
                        format!("no PUBACK from the hub within {op_timeout:?}"),
                    )));
                }
            }
        }
        // Twin requests: retries due and deadlines.
        let mut due = Vec::new();
        let mut dead = Vec::new();
        for (rid, r) in &self.twin_requests {
            if now >= r.deadline {
                dead.push(rid.clone());
            } else if r.retry_at.is_some_and(|t| now >= t) {
                due.push(rid.clone());
            }
        }
        for rid in due {
            self.send_twin_request(&rid);
        }
        for rid in dead {
            if let Some(r) = self.twin_requests.remove(&rid) {
                let e = Error::new(
                    ErrorKind::Timeout,
                    "the hub did not answer the twin request in time",
                );
                match r.op {
                    TwinOp::Get(Some(reply)) => {
                        let _ = reply.send(Err(e));
                    }
                    TwinOp::Get(None) => {}
                    TwinOp::Patch(_, reply) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
        }
        self.update_shared();
    }

    // ----- shutdown and events --------------------------------------------------------------

    fn fail_all_sends(&mut self, e: Error) {
        for (_, mut s) in std::mem::take(&mut self.sends) {
            if let Some(r) = s.reply.take() {
                let _ = r.send(Err(e.clone()));
            }
        }
        self.outbox.clear();
        self.fifo.clear();
        self.inflight.clear();
        self.collided = None;
        for (_, r) in self.twin_requests.drain() {
            match r.op {
                TwinOp::Get(Some(reply)) => {
                    let _ = reply.send(Err(e.clone()));
                }
                TwinOp::Get(None) => {}
                TwinOp::Patch(_, reply) => {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        for w in self.sub_waiters.drain(..).flatten() {
            let _ = w.send(Err(e.clone()));
        }
        for (_, w) in self.sub_pkids.drain() {
            if let Some(w) = w {
                let _ = w.send(Err(e.clone()));
            }
        }
        for w in self.unsub_waiters.drain(..) {
            let _ = w.send(Err(e.clone()));
        }
        for (_, w) in self.unsub_pkids.drain() {
            let _ = w.send(Err(e.clone()));
        }
        self.update_shared();
    }

    fn shutdown(&mut self, reason: StatusReason) {
        if self.link == Link::Closed {
            return;
        }
        self.fail_connect_waiters(Error::closed());
        self.fail_all_sends(Error::closed());
        if let Some(ctl) = self.ctl.take() {
            let _ = ctl.send(Ctl::Stop);
        }
        self.client = None;
        self.net_rx = None;
        self.emit_status(ConnectionStatus::Disconnected, reason);
        self.link = Link::Closed;
    }

    fn emit_status(&mut self, status: ConnectionStatus, reason: StatusReason) {
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).status = status;
        self.emit(Event::ConnectionStatus { status, reason });
    }

    fn emit(&self, ev: Event) {
        let _ = self.events.send(ev);
    }
}

fn reason_for_error(e: &Error) -> StatusReason {
    match e.kind {
        ErrorKind::Authentication => StatusReason::BadCredential,
        ErrorKind::Tls | ErrorKind::Workload | ErrorKind::Configuration => {
            StatusReason::CommunicationError
        }
        _ => StatusReason::NoNetwork,
    }
}

/// A method payload as JSON: empty means `null`; text that is not JSON becomes a JSON string.
pub(crate) fn json_or_text(body: &[u8]) -> serde_json::Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Validate and encode an output message for the wire.
pub(crate) fn output_publish(
    device: &str,
    module: &str,
    output: Option<&str>,
    msg: &crate::Message,
) -> Result<(String, Bytes)> {
    if let Some(o) = output {
        if o.is_empty() {
            return Err(Error::invalid("the output name is empty"));
        }
    }
    let bag = property_bag::encode(&message::to_bag(msg, output));
    let topic = topics::events_topic(device, module, &bag);
    let size = msg.body.len() + bag.len();
    if size > message::MAX_MESSAGE_SIZE {
        return Err(Error::new(
            ErrorKind::MessageTooLarge,
            format!(
                "the message is {size} bytes (body and properties); the hub accepts at most {}",
                message::MAX_MESSAGE_SIZE
            ),
        ));
    }
    Ok((topic, Bytes::from(msg.body.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_payloads_become_json() {
        assert_eq!(json_or_text(b""), serde_json::Value::Null);
        assert_eq!(json_or_text(b" "), serde_json::Value::Null);
        assert_eq!(json_or_text(b"{\"a\":1}"), serde_json::json!({"a":1}));
        assert_eq!(json_or_text(b"hello"), serde_json::json!("hello"));
    }

    #[test]
    fn oversize_messages_are_refused_before_sending() {
        let big = crate::Message::new(vec![0u8; message::MAX_MESSAGE_SIZE + 1]);
        let e = output_publish("d", "m", Some("o"), &big).unwrap_err();
        assert_eq!(e.kind, ErrorKind::MessageTooLarge);
        let ok = crate::Message::new(vec![0u8; 1000]);
        let (topic, body) = output_publish("d", "m", Some("o"), &ok).unwrap();
        assert_eq!(topic, "devices/d/modules/m/messages/events/%24.on=o");
        assert_eq!(body.len(), 1000);
        assert_eq!(
            output_publish("d", "m", Some(""), &ok).unwrap_err().kind,
            ErrorKind::InvalidArgument
        );
    }
}
