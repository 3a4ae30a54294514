//! Store-and-forward: one in-memory queue per target module (holding every input endpoint's
//! messages in arrival order, so order per endpoint is kept), persisted as an append-only
//! JSON-lines log (`queue.log`: add and delete records) that is compacted on start and when
//! mostly dead. Writes go to an in-memory buffer under the state lock and reach the file on
//! `flush` (before PUBACKing the sender) — no fsync: devhub survives a process crash, not a
//! power cut, which is enough for a development hub.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub(crate) type Bag = Vec<(String, Option<String>)>;

/// A message waiting for one endpoint `(module, input)`.
#[derive(Debug, Clone)]
pub(crate) struct QueuedMsg {
    pub seq: u64,
    pub input: String,
    pub body: Bytes,
    /// The bag exactly as delivered on the input topic ($.on removed, $.cdid/$.cmid added).
    pub bag: Arc<Bag>,
    pub enqueued_ms: u64,
    /// Absolute expiry in Unix milliseconds; None = never.
    pub expires_ms: Option<u64>,
    /// Packet id and send time while awaiting PUBACK on the current connection.
    pub inflight: Option<(u16, Instant)>,
    /// Sent at least once (a resend carries DUP).
    pub sent_before: bool,
    /// Bytes charged against the store limit: body plus property bag (see [`msg_size`]).
    pub size: u64,
}

/// What a message costs in the store: body plus the key and value lengths of its bag (the
/// same accounting as the 256 KB message limit).
pub(crate) fn msg_size(body: &[u8], bag: &[(String, Option<String>)]) -> u64 {
    let props: usize = bag
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len))
        .sum();
    (body.len() + props) as u64
}

#[derive(Debug, Default)]
pub(crate) struct ModuleQueue {
    pub msgs: VecDeque<QueuedMsg>,
    pub inflight: usize,
    pub by_pkid: HashMap<u16, u64>,
}

impl ModuleQueue {
    /// Forget what was in flight on a connection that is gone: everything is resent.
    pub fn reset_inflight(&mut self) {
        for m in self.msgs.iter_mut().filter(|m| m.inflight.is_some()) {
            m.inflight = None;
        }
        self.inflight = 0;
        self.by_pkid.clear();
    }

    fn position(&self, seq: u64) -> Option<usize> {
        // seqs increase along the deque: acks usually hit the front.
        self.msgs.binary_search_by_key(&seq, |m| m.seq).ok()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AddRec<'a> {
    a: u64,
    m: std::borrow::Cow<'a, str>,
    i: std::borrow::Cow<'a, str>,
    b: String,
    p: std::borrow::Cow<'a, Bag>,
    t: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<u64>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Rec {
    Add(AddRec<'static>),
    Del { d: u64 },
}

/// All queues plus the pending log bytes.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub queues: HashMap<String, ModuleQueue>,
    next_seq: u64,
    pending_log: Vec<u8>,
    dead_records: u64,
    live: u64,
    /// Sum of `size` over every stored message (kept O(1) per push/remove).
    bytes: u64,
    /// `storeAndForwardConfiguration.storeLimits.maxSizeBytes`; None = unlimited.
    max_bytes: Option<u64>,
    /// Messages dropped to honour `max_bytes` since start, and not yet logged.
    dropped_limit: u64,
    dropped_limit_unlogged: u64,
    /// Messages dropped because their TTL passed, since start.
    dropped_ttl: u64,
}

impl Store {
    /// Load `queue.log` from `dir` (tolerating a torn last line) and return the store; the
    /// caller compacts right away.
    pub fn load(dir: &Path) -> std::io::Result<Store> {
        let mut store = Store {
            next_seq: 1,
            ..Default::default()
        };
        let path = log_path(dir);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(store),
            Err(e) => return Err(e),
        };
        let mut adds: std::collections::BTreeMap<u64, (String, QueuedMsg)> = Default::default();
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Rec>(&line) {
                Ok(Rec::Add(r)) => {
                    let Ok(body) = B64.decode(r.b.as_bytes()) else {
                        tracing::warn!(line = n + 1, "store: bad body encoding, record skipped");
                        continue;
                    };
                    let bag = r.p.into_owned();
                    let msg = QueuedMsg {
                        seq: r.a,
                        input: r.i.into_owned(),
                        size: msg_size(&body, &bag),
                        body: Bytes::from(body),
                        bag: Arc::new(bag),
                        enqueued_ms: r.t,
                        expires_ms: r.x,
                        inflight: None,
                        sent_before: false,
                    };
                    adds.insert(r.a, (r.m.into_owned(), msg));
                }
                Ok(Rec::Del { d }) => {
                    adds.remove(&d);
                }
                Err(e) => tracing::warn!(line = n + 1, "store: unreadable record skipped: {e}"),
            }
        }
        for (seq, (module, msg)) in adds {
            store.next_seq = store.next_seq.max(seq + 1);
            store.live += 1;
            store.bytes += msg.size;
            store.queues.entry(module).or_default().msgs.push_back(msg);
        }
        Ok(store)
    }

    /// Append a message for `module`; returns its seq. With a store limit, the oldest messages
    /// (possibly this one) are dropped until the stored bytes fit again.
    pub fn push(
        &mut self,
        module: &str,
        input: &str,
        body: Bytes,
        bag: Arc<Bag>,
        enqueued_ms: u64,
        expires_ms: Option<u64>,
    ) -> u64 {
        let seq = self.next_seq.max(1);
        self.next_seq = seq + 1;
        let msg = QueuedMsg {
            seq,
            input: input.to_owned(),
            size: msg_size(&body, &bag),
            body,
            bag,
            enqueued_ms,
            expires_ms,
            inflight: None,
            sent_before: false,
        };
        write_add(&mut self.pending_log, module, &msg);
        self.live += 1;
        self.bytes += msg.size;
        // Look the queue up without allocating the key: the common case has it already.
        match self.queues.get_mut(module) {
            Some(q) => q.msgs.push_back(msg),
            None => {
                self.queues
                    .entry(module.to_owned())
                    .or_default()
                    .msgs
                    .push_back(msg);
            }
        }
        if self.max_bytes.is_some_and(|max| self.bytes > max) {
            self.enforce_limit();
        }
        seq
    }

    /// Sets `storeLimits.maxSizeBytes` and applies it at once (a restart with a smaller
    /// limit); returns how many messages were dropped.
    pub fn set_max_bytes(&mut self, max: Option<u64>) -> u64 {
        self.max_bytes = max;
        self.enforce_limit()
    }

    /// Drops the oldest messages not awaiting a PUBACK until the stored bytes fit the limit
    /// (edgeHub drops on limit; in-flight messages are already on their way). Returns how
    /// many were dropped. Finding the oldest looks at the front of each module queue (past
    /// at most the in-flight window), so the cost does not grow with the number stored.
    fn enforce_limit(&mut self) -> u64 {
        let Some(max) = self.max_bytes else { return 0 };
        let mut dropped = 0;
        while self.bytes > max {
            let oldest = self
                .queues
                .iter()
                .filter_map(|(module, q)| {
                    q.msgs
                        .iter()
                        .find(|m| m.inflight.is_none())
                        .map(|m| (m.seq, module))
                })
                .min_by_key(|(seq, _)| *seq)
                .map(|(seq, module)| (seq, module.clone()));
            let Some((seq, module)) = oldest else { break };
            self.remove(&module, seq);
            dropped += 1;
        }
        self.dropped_limit += dropped;
        self.dropped_limit_unlogged += dropped;
        dropped
    }

    /// Messages dropped by the store limit since the last call (for one log warning).
    pub fn take_unlogged_limit_drops(&mut self) -> u64 {
        std::mem::take(&mut self.dropped_limit_unlogged)
    }

    /// `(messages, bytes, max bytes, dropped by the limit, dropped by TTL)`.
    pub fn stats(&self) -> (u64, u64, Option<u64>, u64, u64) {
        (
            self.live,
            self.bytes,
            self.max_bytes,
            self.dropped_limit,
            self.dropped_ttl,
        )
    }

    /// Remove a message by seq (acked or expired).
    pub fn remove(&mut self, module: &str, seq: u64) -> Option<QueuedMsg> {
        let q = self.queues.get_mut(module)?;
        let pos = q.position(seq)?;
        let msg = q.msgs.remove(pos)?;
        if let Some((pkid, _)) = msg.inflight {
            q.inflight -= 1;
            q.by_pkid.remove(&pkid);
        }
        self.pending_log.extend_from_slice(b"{\"d\":");
        self.pending_log
            .extend_from_slice(msg.seq.to_string().as_bytes());
        self.pending_log.extend_from_slice(b"}\n");
        self.live -= 1;
        self.bytes -= msg.size;
        self.dead_records += 2;
        Some(msg)
    }

    /// Handle a PUBACK from `module`'s connection.
    pub fn ack(&mut self, module: &str, pkid: u16) -> bool {
        let Some(seq) = self
            .queues
            .get_mut(module)
            .and_then(|q| q.by_pkid.get(&pkid).copied())
        else {
            return false;
        };
        self.remove(module, seq).is_some()
    }

    /// Drop every message whose TTL passed and that is not awaiting an ack; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut gone = Vec::new();
        for (module, q) in &self.queues {
            for m in &q.msgs {
                if m.inflight.is_none() && m.expires_ms.is_some_and(|x| x <= now_ms) {
                    gone.push((module.clone(), m.seq));
                }
            }
        }
        for (module, seq) in &gone {
            self.remove(module, *seq);
        }
        self.dropped_ttl += gone.len() as u64;
        gone.len()
    }

    /// Depth per (module, input).
    pub fn depths(&self) -> Vec<(String, String, usize)> {
        let mut out: std::collections::BTreeMap<(String, String), usize> = Default::default();
        for (module, q) in &self.queues {
            for m in &q.msgs {
                *out.entry((module.clone(), m.input.clone())).or_default() += 1;
            }
        }
        out.into_iter().map(|((m, i), n)| (m, i, n)).collect()
    }

    pub fn take_pending_log(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending_log)
    }

    pub fn has_pending_log(&self) -> bool {
        !self.pending_log.is_empty()
    }

    /// Whether the log holds so many dead records that rewriting it pays off.
    pub fn wants_compaction(&self) -> bool {
        self.dead_records > 20_000 && self.dead_records > 2 * self.live
    }

    /// The whole live content as log records; resets the dead count and the pending buffer
    /// (a snapshot supersedes them).
    pub fn snapshot(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut modules: Vec<&String> = self.queues.keys().collect();
        modules.sort();
        for module in modules {
            for m in &self.queues[module].msgs {
                write_add(&mut out, module, m);
            }
        }
        self.pending_log.clear();
        self.dead_records = 0;
        out
    }
}

fn write_add(out: &mut Vec<u8>, module: &str, m: &QueuedMsg) {
    let rec = AddRec {
        a: m.seq,
        m: module.into(),
        i: m.input.as_str().into(),
        b: B64.encode(&m.body),
        p: std::borrow::Cow::Borrowed(&m.bag),
        t: m.enqueued_ms,
        x: m.expires_ms,
    };
    // Serialising plain strings/numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &rec);
    out.push(b'\n');
}

pub(crate) fn log_path(dir: &Path) -> PathBuf {
    dir.join("queue.log")
}

/// The open log file; lock it before the state lock whenever both are needed, so records
/// reach the file in the order they were produced.
pub(crate) struct LogFile {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl LogFile {
    pub fn new(dir: &Path) -> LogFile {
        LogFile {
            path: log_path(dir),
            file: None,
        }
    }

    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            self.file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        self.file.as_mut().map_or(Ok(()), |f| f.write_all(bytes))
    }

    /// Replace the whole log with `content` (tmp file + rename).
    pub fn rewrite(&mut self, content: &[u8]) -> std::io::Result<()> {
        self.file = None;
        write_atomic(&self.path, content)
    }
}

/// Write a file through a temporary sibling and a rename, so readers never see half a file.
pub(crate) fn write_atomic(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bag(pairs: &[(&str, Option<&str>)]) -> Arc<Bag> {
        Arc::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect(),
        )
    }

    #[test]
    fn persistence_round_trip_keeps_order_and_drops_acked() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::load(dir.path()).unwrap();
        let mut f = LogFile::new(dir.path());
        let b = bag(&[("a", Some("1")), ("$.cdid", Some("dev")), ("n", None)]);
        let s1 = s.push("m", "in1", Bytes::from_static(b"one"), b.clone(), 10, None);
        let s2 = s.push(
            "m",
            "in2",
            Bytes::from_static(b"\x00two"),
            b.clone(),
            11,
            Some(99),
        );
        let s3 = s.push(
            "m",
            "in1",
            Bytes::from_static(b"three"),
            b.clone(),
            12,
            None,
        );
        assert_eq!((s1, s2, s3), (1, 2, 3));
        assert!(s.remove("m", s1).is_some());
        f.append(&s.take_pending_log()).unwrap();

        let mut s = Store::load(dir.path()).unwrap();
        let q = &s.queues["m"];
        let got: Vec<_> = q
            .msgs
            .iter()
            .map(|m| (m.seq, m.input.as_str(), &m.body[..], m.expires_ms))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, "in2", &b"\x00two"[..], Some(99)),
                (3, "in1", &b"three"[..], None)
            ]
        );
        assert_eq!(*q.msgs[0].bag, *b);
        // New seqs continue after the highest seen.
        assert_eq!(s.push("m", "x", Bytes::new(), b, 0, None), 4);
        // Compaction writes only live records.
        let snap = s.snapshot();
        f.rewrite(&snap).unwrap();
        let s = Store::load(dir.path()).unwrap();
        assert_eq!(s.queues["m"].msgs.len(), 3);
        assert_eq!(
            s.depths(),
            vec![
                ("m".into(), "in1".into(), 1),
                ("m".into(), "in2".into(), 1),
                ("m".into(), "x".into(), 1)
            ]
        );
    }

    #[test]
    fn store_limit_drops_the_oldest_across_modules_and_skips_inflight() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::load(dir.path()).unwrap();
        assert_eq!(s.set_max_bytes(Some(30)), 0);
        let b = bag(&[("k", Some("v"))]); // 2 bytes of properties
        let ten = |s: &mut Store, m: &str| {
            s.push(m, "i", Bytes::from_static(b"12345678"), b.clone(), 0, None)
        };
        let s1 = ten(&mut s, "m");
        let s2 = ten(&mut s, "n");
        let s3 = ten(&mut s, "m");
        assert_eq!(s.stats(), (3, 30, Some(30), 0, 0));
        // s1 (module m) is in flight: the oldest droppable one is s2 (module n).
        {
            let q = s.queues.get_mut("m").unwrap();
            q.msgs[0].inflight = Some((1, Instant::now()));
            q.inflight = 1;
            q.by_pkid.insert(1, s1);
        }
        let s4 = ten(&mut s, "n");
        assert_eq!(s.stats(), (3, 30, Some(30), 1, 0));
        assert!(s.queues["n"].msgs.iter().all(|m| m.seq != s2));
        // Acked messages free their bytes; the next push fits without dropping.
        assert!(s.ack("m", 1));
        assert_eq!(s.stats().1, 20);
        ten(&mut s, "m");
        assert_eq!(s.stats(), (3, 30, Some(30), 1, 0));
        // A message larger than the whole limit cannot be kept: everything older goes, then it.
        s.push("n", "i", Bytes::from(vec![0u8; 40]), b.clone(), 0, None);
        assert_eq!(s.stats(), (0, 0, Some(30), 5, 0));
        assert_eq!(s.take_unlogged_limit_drops(), 5);
        assert_eq!(s.take_unlogged_limit_drops(), 0);
        // Deletions reach the log: a reload sees only what is left.
        let _ = (s3, s4);
        ten(&mut s, "m");
        std::fs::write(log_path(dir.path()), s.take_pending_log()).unwrap();
        let mut s = Store::load(dir.path()).unwrap();
        assert_eq!(s.stats(), (1, 10, None, 0, 0));
        // A restart with a smaller limit trims the loaded queue at once.
        assert_eq!(s.set_max_bytes(Some(5)), 1);
        assert_eq!(s.stats(), (0, 0, Some(5), 1, 0));
    }

    #[test]
    fn torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::load(dir.path()).unwrap();
        s.push("m", "i", Bytes::from_static(b"x"), bag(&[]), 1, None);
        let mut log = s.take_pending_log();
        log.extend_from_slice(b"{\"a\":7,\"m\":\"m\",\"i\":");
        std::fs::write(log_path(dir.path()), log).unwrap();
        let s = Store::load(dir.path()).unwrap();
        assert_eq!(s.queues["m"].msgs.len(), 1);
    }

    #[test]
    fn ttl_expiry_skips_inflight() {
        let mut s = Store::load(Path::new("/nonexistent-devhub-dir")).unwrap();
        let b = bag(&[]);
        s.push("m", "i", Bytes::new(), b.clone(), 0, Some(100));
        let s2 = s.push("m", "i", Bytes::new(), b.clone(), 0, Some(100));
        s.push("m", "i", Bytes::new(), b.clone(), 0, Some(500));
        s.push("m", "i", Bytes::new(), b, 0, None);
        {
            let q = s.queues.get_mut("m").unwrap();
            q.msgs[1].inflight = Some((7, Instant::now()));
            q.inflight = 1;
            q.by_pkid.insert(7, s2);
        }
        assert_eq!(s.expire(100), 1);
        assert_eq!(s.queues["m"].msgs.len(), 3);
        assert!(s.ack("m", 7));
        assert!(!s.ack("m", 7));
        assert_eq!(s.expire(1000), 1);
        assert_eq!(s.queues["m"].msgs.len(), 1);
        assert_eq!(s.queues["m"].msgs[0].expires_ms, None);
    }
}
