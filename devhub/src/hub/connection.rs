//! One MQTT connection: CONNECT/authentication, the reader loop (keepalive, packet handling,
//! batched PUBACKs after the store is flushed) and the writer task (batched socket writes).

use super::auth::{self, FilterVerdict, PublishKind, SubKind};
use super::sessions::{Conn, Out, Sub};
use super::{now_ms, rfc3339, Hub, Transport, MAX_PACKET};
use bytes::{Bytes, BytesMut};
use edgemodule::protocol::topics;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, Publish, SubAck, Subscribe,
    SubscribeReasonCode, UnsubAck, Unsubscribe,
};
use rumqttc::mqttbytes::{Error as CodecError, Protocol, QoS};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// edgeHub's ConnectArrivalTimeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest keepalive honoured (PY's maximum); larger values are clamped, not refused.
const MAX_KEEPALIVE_SECS: u64 = 1740;
/// Flush the socket after about this many bytes of queued packets.
const WRITE_BATCH: usize = 64 * 1024;

/// What the reader knows about its own connection.
struct Ctx {
    module: String,
    conn_id: u64,
    tx: mpsc::UnboundedSender<Out>,
}

impl Ctx {
    fn send(&self, bytes: Bytes) {
        let _ = self.tx.send(Out::Bytes(bytes));
    }
}

enum Flow {
    Continue,
    /// The client sent DISCONNECT.
    Disconnect,
}

fn encode(p: Packet) -> Bytes {
    let mut buf = BytesMut::new();
    let _ = p.write(&mut buf, usize::MAX);
    buf.freeze()
}

async fn read_packet<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
) -> Result<Packet, String> {
    loop {
        match Packet::read(buf, MAX_PACKET) {
            Ok(p) => return Ok(p),
            Err(CodecError::InsufficientBytes(n)) => {
                buf.reserve(n.max(4096));
                match rd.read_buf(buf).await {
                    Ok(0) => return Err("connection closed".into()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("read error: {e}")),
                }
            }
            Err(e) => return Err(format!("malformed packet: {e}")),
        }
    }
}

async fn refuse<W: AsyncWrite + Unpin>(wr: &mut W, code: ConnectReturnCode) {
    let bytes = encode(Packet::ConnAck(ConnAck::new(code, false)));
    let _ = wr.write_all(&bytes).await;
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

pub(super) async fn serve<S>(hub: Arc<Hub>, stream: S, peer: String, transport: Transport)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let first = match tokio::time::timeout(CONNECT_TIMEOUT, read_packet(&mut rd, &mut buf)).await {
        Err(_) => {
            tracing::info!(%peer, "no CONNECT within 60 s; closing");
            return;
        }
        Ok(Err(e)) => {
            if e.contains("protocol") {
                refuse(&mut wr, ConnectReturnCode::RefusedProtocolVersion).await;
            }
            tracing::info!(%peer, "closing before CONNECT: {e}");
            return;
        }
        Ok(Ok(p)) => p,
    };
    let Packet::Connect(connect) = first else {
        tracing::info!(%peer, "first packet is not CONNECT; closing");
        return;
    };
    if connect.protocol != Protocol::V4 {
        refuse(&mut wr, ConnectReturnCode::RefusedProtocolVersion).await;
        return;
    }
    let authed = match hub.check_connect(&connect) {
        Ok(a) => a,
        Err(code) => {
            refuse(&mut wr, code).await;
            return;
        }
    };
    let module = authed.module.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    let cancel = hub.stop.child_token();
    let conn_id = hub.register(
        &connect,
        authed,
        tx.clone(),
        cancel.clone(),
        transport,
        &peer,
    );
    tracing::info!(%peer, module = %module, transport = transport.name(), "module connected");
    tokio::spawn(writer(wr, rx, cancel.clone()));
    let keepalive = match connect.keep_alive as u64 {
        0 => None,
        // 1.5 x keepalive, as IoT Hub and MQTT 3.1.1 §3.1.2.10 do.
        k => Some(Duration::from_millis(k.min(MAX_KEEPALIVE_SECS) * 1500)),
    };
    let ctx = Ctx {
        module: module.clone(),
        conn_id,
        tx,
    };
    let result = hub
        .read_loop(&ctx, &mut rd, &mut buf, &cancel, keepalive)
        .await;
    match &result {
        Ok(()) => tracing::info!(%peer, module = %module, "module disconnected"),
        Err(reason) => tracing::info!(%peer, module = %module, "closing connection: {reason}"),
    }
    // A protocol violation or a dropped socket ends everything at once; after a DISCONNECT
    // there is nothing left worth writing either.
    cancel.cancel();
    hub.unregister(&module, conn_id);
}

/// Writes everything queued for one connection, batching packets into few socket writes.
async fn writer<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Out>,
    cancel: CancellationToken,
) {
    let mut buf = BytesMut::with_capacity(WRITE_BATCH);
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => break,
            m = rx.recv() => m,
        };
        let Some(mut item) = first else { break };
        buf.clear();
        let mut close = false;
        loop {
            match item {
                Out::Bytes(b) => buf.extend_from_slice(&b),
                Out::Close => {
                    close = true;
                    break;
                }
            }
            if buf.len() >= WRITE_BATCH {
                break;
            }
            match rx.try_recv() {
                Ok(next) => item = next,
                Err(_) => break,
            }
        }
        if !buf.is_empty() {
            let write = async {
                wr.write_all(&buf).await?;
                wr.flush().await
            };
            let ok = tokio::select! {
                _ = cancel.cancelled() => false,
                r = write => r.is_ok(),
            };
            if !ok {
                cancel.cancel();
                break;
            }
        }
        if close {
            let _ = wr.shutdown().await;
            cancel.cancel();
            break;
        }
    }
}

impl Hub {
    /// Authenticate a CONNECT; `Err` is the CONNACK code to refuse with.
    fn check_connect(&self, c: &Connect) -> Result<auth::Authenticated, ConnectReturnCode> {
        let revoked = {
            let st = self.lock();
            if st.closed
                || st
                    .refuse_until
                    .is_some_and(|t| std::time::Instant::now() < t)
            {
                tracing::info!(client_id = %c.client_id, "refusing connection (server unavailable)");
                return Err(ConnectReturnCode::ServiceUnavailable);
            }
            st.revoked_sigs.clone()
        };
        let key_of = |m: &str| self.cfg.keys.get(m).cloned();
        let is_revoked = |s: &str| revoked.contains(s);
        let ctx = self.auth_context(&key_of, &is_revoked);
        let (user, pass) = match &c.login {
            Some(l) => (Some(l.username.as_str()), Some(l.password.as_str())),
            None => (None, None),
        };
        auth::authenticate(&ctx, &c.client_id, user, pass).map_err(|r| {
            tracing::info!(client_id = %c.client_id, "CONNECT refused: {}", r.reason);
            r.code
        })
    }

    /// Install the new connection (dropping an older one of the same identity), send CONNACK
    /// and start delivering queued messages.
    fn register(
        &self,
        c: &Connect,
        a: auth::Authenticated,
        tx: mpsc::UnboundedSender<Out>,
        cancel: CancellationToken,
        transport: Transport,
        peer: &str,
    ) -> u64 {
        let device = self.cfg.device_id.as_str();
        let module = a.module.as_str();
        let mut st = self.lock();
        st.next_conn_id += 1;
        let id = st.next_conn_id;
        let mut dirty = false;
        let sess = st.sessions.entry(module.to_owned()).or_default();
        if let Some(old) = sess.conn.take() {
            tracing::info!(
                module,
                "a new connection of the same identity drops the previous one"
            );
            old.cancel.cancel();
        }
        let present = !c.clean_session && sess.persistent;
        if c.clean_session && !sess.subs.is_empty() {
            sess.subs.clear();
            dirty = true;
        }
        if sess.persistent == c.clean_session {
            dirty = true;
        }
        sess.persistent = !c.clean_session;
        let _ = tx.send(Out::Bytes(encode(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            present,
        )))));
        sess.conn = Some(Conn::new(
            id,
            tx,
            cancel,
            transport,
            peer.to_owned(),
            rfc3339(now_ms()),
            a.token_sig,
            a.token_expiry,
        ));
        if let Some(q) = st.store.queues.get_mut(module) {
            q.reset_inflight();
        }
        st.sessions_dirty |= dirty;
        st.pump(device, module);
        drop(st);
        self.changed.notify_waiters();
        id
    }

    fn unregister(&self, module: &str, conn_id: u64) {
        {
            let mut st = self.lock();
            let Some(sess) = st.sessions.get_mut(module) else {
                return;
            };
            if !matches!(&sess.conn, Some(c) if c.id == conn_id) {
                return; // already replaced by a newer connection
            }
            sess.conn = None;
            if !sess.persistent {
                sess.subs.clear();
            }
            if let Some(q) = st.store.queues.get_mut(module) {
                q.reset_inflight();
            }
        }
        self.changed.notify_waiters();
    }

    async fn read_loop<R: AsyncRead + Unpin>(
        &self,
        ctx: &Ctx,
        rd: &mut R,
        buf: &mut BytesMut,
        cancel: &CancellationToken,
        keepalive: Option<Duration>,
    ) -> Result<(), String> {
        loop {
            let mut acks = BytesMut::new();
            loop {
                match Packet::read(buf, MAX_PACKET) {
                    Ok(p) => match self.handle(ctx, p, &mut acks)? {
                        Flow::Continue => {}
                        Flow::Disconnect => return Ok(()),
                    },
                    Err(CodecError::InsufficientBytes(_)) => break,
                    Err(e) => return Err(format!("malformed packet: {e}")),
                }
            }
            if !acks.is_empty() {
                // Senders are acknowledged only once their messages are in the store log.
                self.flush_store();
                ctx.send(acks.freeze());
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(16 * 1024);
            }
            let read = rd.read_buf(buf);
            let n = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                r = async {
                    match keepalive {
                        Some(d) => tokio::time::timeout(d, read)
                            .await
                            .map_err(|_| "keepalive expired".to_string())?
                            .map_err(|e| format!("read error: {e}")),
                        None => read.await.map_err(|e| format!("read error: {e}")),
                    }
                } => r?,
            };
            if n == 0 {
                return Err("connection closed by the peer".into());
            }
        }
    }

    fn handle(&self, ctx: &Ctx, p: Packet, acks: &mut BytesMut) -> Result<Flow, String> {
        match p {
            Packet::Publish(p) => {
                self.on_publish(ctx, &p)?;
                if p.qos == QoS::AtLeastOnce {
                    let _ = PubAck::new(p.pkid).write(acks);
                }
            }
            Packet::PubAck(a) => self.on_puback(ctx, a.pkid),
            Packet::Subscribe(s) => self.on_subscribe(ctx, s),
            Packet::Unsubscribe(u) => self.on_unsubscribe(ctx, u),
            Packet::PingReq => ctx.send(encode(Packet::PingResp)),
            Packet::Disconnect => return Ok(Flow::Disconnect),
            Packet::Connect(_) => return Err("second CONNECT on a connection".into()),
            other => return Err(format!("unexpected packet {:?}", packet_name(&other))),
        }
        Ok(Flow::Continue)
    }

    fn on_publish(&self, ctx: &Ctx, p: &Publish) -> Result<(), String> {
        if p.qos == QoS::ExactlyOnce {
            return Err("QoS 2 PUBLISH is not supported".into());
        }
        let module = ctx.module.as_str();
        match auth::classify_publish(&self.cfg.device_id, module, &p.topic) {
            PublishKind::Events(t) => self.route_events(module, t.properties, p.payload.clone())?,
            PublishKind::TwinGet { rid } => self.twin_get(module, &rid),
            PublishKind::TwinPatchReported { rid } => self.twin_patch(module, &rid, &p.payload),
            PublishKind::MethodResponse { status, rid } => {
                self.method_response(module, status, &rid, p.payload.clone())
            }
            PublishKind::User => {
                self.broker_publish(module, &p.topic, p.payload.clone(), qos_u8(p.qos))
            }
            PublishKind::Forbidden(reason) => return Err(reason),
            // edgeHub logs and drops what it cannot convert (including a malformed property
            // bag); the sender still gets its PUBACK so it does not retry forever.
            PublishKind::Drop(reason) => tracing::info!(module, "message dropped: {reason}"),
        }
        Ok(())
    }

    fn twin_fault(st: &mut super::State) -> Option<u16> {
        let (status, n) = st.twin_fail?;
        st.twin_fail = (n > 1).then(|| (status, n - 1));
        Some(status)
    }

    fn twin_get(&self, module: &str, rid: &str) {
        let mut st = self.lock();
        let (status, body) = match Self::twin_fault(&mut st) {
            Some(s) => (s, Bytes::new()),
            None => match st.twins.twins.get(module) {
                Some(doc) => (
                    200,
                    Bytes::from(serde_json::to_vec(&doc.device_view()).unwrap_or_default()),
                ),
                None => (404, Bytes::new()),
            },
        };
        // edgeHub answers a GET without `$version` on the topic.
        let topic = topics::twin_response_topic(status, rid, None);
        if !st.publish_kind(module, SubKind::TwinResponses, &topic, body) {
            tracing::info!(
                module,
                "twin GET answer dropped: not subscribed to $iothub/twin/res/#"
            );
        }
    }

    fn twin_patch(&self, module: &str, rid: &str, body: &Bytes) {
        let mut changed = false;
        let answered = {
            let mut st = self.lock();
            let result = match Self::twin_fault(&mut st) {
                Some(s) => Err((s, String::from("fault injection"))),
                None => match st.twins.twins.get_mut(module) {
                    Some(doc) => doc.patch_reported(body),
                    None => Err((404, String::from("no twin"))),
                },
            };
            // Real edgeHub acknowledges a reported patch with 204 and no `&$version`; we add
            // the new reported version (as IoT Hub does) so clients can test version handling.
            let (topic, payload) = match result {
                Ok(v) => {
                    st.twins_dirty = true;
                    changed = true;
                    (topics::twin_response_topic(204, rid, Some(v)), Bytes::new())
                }
                Err((status, reason)) => {
                    tracing::info!(module, status, "reported patch refused: {reason}");
                    let body = serde_json::json!({ "message": reason }).to_string();
                    (
                        topics::twin_response_topic(status, rid, None),
                        Bytes::from(body),
                    )
                }
            };
            st.publish_kind(module, SubKind::TwinResponses, &topic, payload)
        };
        if !answered {
            tracing::info!(
                module,
                "twin PATCH answer dropped: not subscribed to $iothub/twin/res/#"
            );
        }
        if changed {
            self.route_twin_change(module, body.clone());
        }
        self.save_meta();
    }

    fn method_response(&self, module: &str, status: i32, rid: &str, payload: Bytes) {
        let waiter = self.lock().methods.remove(&rid.to_lowercase());
        match waiter {
            Some(w) => {
                let _ = w.send((status, payload));
            }
            None => tracing::info!(
                module,
                rid,
                "method response for an unknown or expired request"
            ),
        }
    }

    fn on_puback(&self, ctx: &Ctx, pkid: u16) {
        let device = self.cfg.device_id.as_str();
        let module = ctx.module.as_str();
        let mut st = self.lock();
        let st = &mut *st;
        let Some(conn) = st.sessions.get_mut(module).and_then(|s| s.conn.as_mut()) else {
            return;
        };
        if conn.id != ctx.conn_id {
            return; // a superseded connection's ids mean nothing any more
        }
        if conn.other_inflight.remove(&pkid).is_some() {
            return;
        }
        if st.store.ack(module, pkid) {
            st.pump(device, module);
        }
    }

    fn on_subscribe(&self, ctx: &Ctx, s: Subscribe) {
        let device = self.cfg.device_id.as_str();
        let module = ctx.module.as_str();
        let broker = self.cfg.broker.is_some();
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut granted = Vec::new();
        for f in &s.filters {
            // QoS 2 is granted as 1, as IoT Hub does.
            let qos = qos_u8(f.qos).min(1);
            match auth::classify_filter(device, module, &f.path, broker) {
                FilterVerdict::Allow(SubKind::User)
                    if !self.broker_allows(module, "mqtt:subscribe", &f.path) =>
                {
                    tracing::info!(module, filter = %f.path, "subscription denied by the broker policy");
                    codes.push(SubscribeReasonCode::Failure);
                }
                FilterVerdict::Allow(kind) => {
                    if kind == SubKind::Ignored {
                        tracing::info!(module, filter = %f.path, "Ignoring unknown subscription");
                    }
                    granted.push((f.path.clone(), Sub { kind, qos }));
                    codes.push(SubscribeReasonCode::Success(if qos == 1 {
                        QoS::AtLeastOnce
                    } else {
                        QoS::AtMostOnce
                    }));
                }
                FilterVerdict::Deny => {
                    tracing::warn!(module, filter = %f.path, "subscription to another identity's topics refused");
                    codes.push(SubscribeReasonCode::Failure);
                }
                FilterVerdict::Invalid => {
                    tracing::info!(module, filter = %f.path, "invalid subscription filter refused");
                    codes.push(SubscribeReasonCode::Failure);
                }
            }
        }
        let inputs = granted.iter().any(|(_, s)| s.kind == SubKind::Inputs);
        {
            let mut st = self.lock();
            let sess = st.session_mut(module);
            let persistent = sess.persistent;
            for (filter, sub) in granted {
                sess.subs.insert(filter, sub);
            }
            st.sessions_dirty |= persistent;
            // SUBACK first, then whatever the new subscription makes deliverable.
            ctx.send(encode(Packet::SubAck(SubAck::new(s.pkid, codes))));
            if inputs {
                st.pump(device, module);
            }
        }
        self.changed.notify_waiters();
    }

    fn on_unsubscribe(&self, ctx: &Ctx, u: Unsubscribe) {
        let mut st = self.lock();
        let sess = st.session_mut(&ctx.module);
        for t in &u.topics {
            sess.subs.remove(t);
        }
        let persistent = sess.persistent;
        st.sessions_dirty |= persistent;
        ctx.send(encode(Packet::UnsubAck(UnsubAck::new(u.pkid))));
    }
}

fn qos_u8(q: QoS) -> u8 {
    match q {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

fn packet_name(p: &Packet) -> &'static str {
    match p {
        Packet::ConnAck(_) => "CONNACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::SubAck(_) => "SUBACK",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingResp => "PINGRESP",
        _ => "packet",
    }
}
