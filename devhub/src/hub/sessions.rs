//! Per-identity sessions (subscriptions kept across connections when CleanSession=0), the live
//! connection handle, and delivery of queued input messages within an in-flight window.

use super::auth::SubKind;
use super::store::{ModuleQueue, Store};

use super::twins::Twins;
use super::{Transport, UpstreamMessage, INFLIGHT_WINDOW};
use bytes::{Bytes, BytesMut};
use edgemodule::protocol::{property_bag, topics};
use rumqttc::mqttbytes::v4::Publish;
use rumqttc::mqttbytes::QoS;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// What a connection's writer task receives.
#[derive(Debug)]
pub(crate) enum Out {
    /// Encoded packet(s).
    Bytes(Bytes),
    /// Flush what is queued, then close the connection.
    Close,
}

/// The live connection of a session.
#[derive(Debug)]
pub(crate) struct Conn {
    pub id: u64,
    pub tx: mpsc::UnboundedSender<Out>,
    /// Cancelling aborts the connection at once (reader and writer).
    pub cancel: CancellationToken,
    pub transport: Transport,
    pub peer: String,
    pub since: String,
    /// Decoded signature of the CONNECT token (for `Faults::expire_tokens`).
    pub token_sig: String,
    /// Unix seconds the CONNECT token expires.
    pub token_expiry: u64,
    next_pkid: u16,
    /// QoS 1 publishes not tracked by the store (twin responses, methods, desired patches,
    /// broker messages): their packet ids stay reserved until PUBACK (or a long timeout).
    pub other_inflight: HashMap<u16, Instant>,
}

impl Conn {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        tx: mpsc::UnboundedSender<Out>,
        cancel: CancellationToken,
        transport: Transport,
        peer: String,
        since: String,
        token_sig: String,
        token_expiry: u64,
    ) -> Conn {
        Conn {
            id,
            tx,
            cancel,
            transport,
            peer,
            since,
            token_sig,
            token_expiry,
            next_pkid: 1,
            other_inflight: HashMap::new(),
        }
    }

    pub fn send(&self, bytes: Bytes) {
        let _ = self.tx.send(Out::Bytes(bytes));
    }

    /// A packet id free both here and in the module's input queue.
    fn alloc_pkid(&mut self, queue: Option<&HashMap<u16, u64>>) -> u16 {
        for _ in 0..=u16::MAX {
            let id = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if id == 0 {
                continue;
            }
            let busy =
                self.other_inflight.contains_key(&id) || queue.is_some_and(|q| q.contains_key(&id));
            if !busy {
                return id;
            }
        }
        // 65535 ids in flight cannot happen with a window of 100; reuse rather than fail.
        self.next_pkid
    }

    /// Publish an untracked message at `qos` (0 or 1).
    pub fn publish_untracked(
        &mut self,
        topic: &str,
        payload: Bytes,
        qos: u8,
        queue: Option<&HashMap<u16, u64>>,
    ) {
        let mut p = Publish::from_bytes(topic, QoS::AtMostOnce, payload);
        if qos >= 1 {
            let pkid = self.alloc_pkid(queue);
            self.other_inflight.insert(pkid, Instant::now());
            p.qos = QoS::AtLeastOnce;
            p.pkid = pkid;
        }
        self.send(encode_publish(&p));
    }
}

pub(crate) fn encode_publish(p: &Publish) -> Bytes {
    let mut buf = BytesMut::with_capacity(p.topic.len() + p.payload.len() + 8);
    // Encoding only fails on a zero packet id, which alloc_pkid never returns.
    let _ = p.write(&mut buf);
    buf.freeze()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Sub {
    pub kind: SubKind,
    pub qos: u8,
}

#[derive(Debug, Default)]
pub(crate) struct Session {
    pub subs: BTreeMap<String, Sub>,
    /// The last CONNECT had CleanSession=0: keep subscriptions after disconnect.
    pub persistent: bool,
    pub conn: Option<Conn>,
}

impl Session {
    /// Highest granted QoS among subscriptions of `kind`, if any.
    pub fn qos_for(&self, kind: SubKind) -> Option<u8> {
        self.subs
            .values()
            .filter(|s| s.kind == kind)
            .map(|s| s.qos)
            .max()
    }
}

/// Everything behind the hub lock.
#[derive(Default)]
pub(crate) struct State {
    pub sessions: HashMap<String, Session>,
    pub store: Store,
    pub twins: Twins,
    pub twins_dirty: bool,
    pub sessions_dirty: bool,
    /// Pending method calls by lower-cased request id.
    pub methods: HashMap<String, oneshot::Sender<(i32, Bytes)>>,
    pub upstream: VecDeque<UpstreamMessage>,
    pub upstream_total: u64,
    pub next_conn_id: u64,
    pub refuse_until: Option<Instant>,
    pub revoked_sigs: HashSet<String>,
    /// Fault: answer the next `n` twin requests with this status.
    pub twin_fail: Option<(u16, u32)>,
    pub closed: bool,
}

impl State {
    pub fn session_mut(&mut self, module: &str) -> &mut Session {
        self.sessions.entry(module.to_owned()).or_default()
    }

    /// Publish (untracked) to `module`'s connection if it is subscribed to `kind`, at the
    /// granted QoS (max 1); returns whether it was sent.
    pub fn publish_kind(
        &mut self,
        module: &str,
        kind: SubKind,
        topic: &str,
        payload: Bytes,
    ) -> bool {
        let Some(qos) = self.sessions.get(module).and_then(|s| s.qos_for(kind)) else {
            return false;
        };
        self.publish_at(module, topic, payload, qos)
    }

    /// Publish (untracked) to `module`'s connection at `qos` (max 1); false if not connected.
    pub fn publish_at(&mut self, module: &str, topic: &str, payload: Bytes, qos: u8) -> bool {
        let Some(conn) = self.sessions.get_mut(module).and_then(|s| s.conn.as_mut()) else {
            return false;
        };
        let ids = self.store.queues.get(module).map(|q| &q.by_pkid);
        conn.publish_untracked(topic, payload, qos.min(1), ids);
        true
    }

    /// Send queued input messages of `module` while its connection is subscribed and the
    /// in-flight window has room.
    pub fn pump(&mut self, device: &str, module: &str) {
        let Some(sess) = self.sessions.get_mut(module) else {
            return;
        };
        let Some(qos) = sess.qos_for(SubKind::Inputs) else {
            return;
        };
        let Some(conn) = sess.conn.as_mut() else {
            return;
        };
        let Some(q) = self.store.queues.get_mut(module) else {
            return;
        };
        if q.inflight >= INFLIGHT_WINDOW {
            return;
        }
        let now = Instant::now();
        let now_ms = super::now_ms();
        let mut done = Vec::new();
        let ModuleQueue {
            msgs,
            inflight,
            by_pkid,
        } = q;
        let mut batch = BytesMut::new();
        for m in msgs.iter_mut() {
            if *inflight >= INFLIGHT_WINDOW {
                break;
            }
            if m.inflight.is_some() {
                continue;
            }
            if m.expires_ms.is_some_and(|x| x <= now_ms) {
                done.push(m.seq);
                continue;
            }
            let topic =
                topics::input_topic(device, module, &m.input, &property_bag::encode(&m.bag));
            let mut p = Publish::from_bytes(topic, QoS::AtMostOnce, m.body.clone());
            p.dup = m.sent_before && qos >= 1;
            if qos >= 1 {
                let pkid = conn.alloc_pkid(Some(by_pkid));
                p.qos = QoS::AtLeastOnce;
                p.pkid = pkid;
                m.inflight = Some((pkid, now));
                by_pkid.insert(pkid, m.seq);
                *inflight += 1;
            } else {
                // QoS 0 subscription: fire and forget, so the message is done once sent.
                done.push(m.seq);
            }
            m.sent_before = true;
            let _ = p.write(&mut batch);
        }
        if !batch.is_empty() {
            conn.send(batch.freeze());
        }
        for seq in done {
            self.store.remove(module, seq);
        }
    }

    /// Resend (DUP) messages whose PUBACK is overdue, then top up the window.
    pub fn redeliver(&mut self, device: &str, module: &str, now: Instant, ack_timeout: Duration) {
        let Some(conn) = self.sessions.get(module).and_then(|s| s.conn.as_ref()) else {
            return;
        };
        if let Some(q) = self.store.queues.get_mut(module) {
            let mut batch = BytesMut::new();
            for m in q.msgs.iter_mut() {
                let Some((pkid, sent)) = m.inflight else {
                    continue;
                };
                if now.duration_since(sent) < ack_timeout {
                    continue;
                }
                let topic =
                    topics::input_topic(device, module, &m.input, &property_bag::encode(&m.bag));
                let mut p = Publish::from_bytes(topic, QoS::AtLeastOnce, m.body.clone());
                p.pkid = pkid;
                p.dup = true;
                let _ = p.write(&mut batch);
                m.inflight = Some((pkid, now));
            }
            if !batch.is_empty() {
                conn.send(batch.freeze());
            }
        }
        self.pump(device, module);
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedSession {
    filters: BTreeMap<String, Sub>,
}

/// sessions.json: subscriptions of persistent sessions, so CleanSession=0 clients (Python does
/// not resubscribe) keep receiving after a devhub restart.
pub(crate) fn sessions_bytes(sessions: &HashMap<String, Session>) -> Vec<u8> {
    let saved: BTreeMap<&String, SavedSession> = sessions
        .iter()
        .filter(|(_, s)| s.persistent)
        .map(|(m, s)| {
            (
                m,
                SavedSession {
                    filters: s.subs.clone(),
                },
            )
        })
        .collect();
    serde_json::to_vec_pretty(&saved).unwrap_or_default()
}

pub(crate) fn load_sessions(path: &std::path::Path) -> HashMap<String, Session> {
    let Ok(bytes) = std::fs::read(path) else {
        return HashMap::new();
    };
    match serde_json::from_slice::<BTreeMap<String, SavedSession>>(&bytes) {
        Ok(saved) => saved
            .into_iter()
            .map(|(m, s)| {
                (
                    m,
                    Session {
                        subs: s.filters,
                        persistent: true,
                        conn: None,
                    },
                )
            })
            .collect(),
        Err(e) => {
            tracing::warn!("ignoring unreadable {}: {e}", path.display());
            HashMap::new()
        }
    }
}
