//! Fault injection for reliability tests of module clients.

use super::sessions::Out;
use super::Hub;
use std::sync::Weak;
use std::time::{Duration, Instant};

pub struct Faults {
    hub: Weak<Hub>,
}

impl Faults {
    pub(super) fn new(hub: Weak<Hub>) -> Faults {
        Faults { hub }
    }

    fn with_hub(&self, f: impl FnOnce(&Hub)) {
        if let Some(h) = self.hub.upgrade() {
            f(&h);
        }
    }

    /// Abort every connection at once (no clean close of the MQTT session, pending writes lost).
    pub fn drop_connections(&self) {
        self.with_hub(|h| {
            let st = h.lock();
            for c in st.sessions.values().filter_map(|s| s.conn.as_ref()) {
                c.cancel.cancel();
            }
            tracing::info!("fault: dropped every connection");
        });
    }

    /// Close every connection cleanly (queued packets are written first).
    pub fn disconnect_gracefully(&self) {
        self.with_hub(|h| {
            let st = h.lock();
            for c in st.sessions.values().filter_map(|s| s.conn.as_ref()) {
                let _ = c.tx.send(Out::Close);
            }
            tracing::info!("fault: closing every connection");
        });
    }

    /// Answer CONNECT with CONNACK 3 (server unavailable) for `d`.
    pub fn refuse_connections_for(&self, d: Duration) {
        self.with_hub(|h| {
            h.lock().refuse_until = Some(Instant::now() + d);
            tracing::info!(secs = d.as_secs_f64(), "fault: refusing connections");
        });
    }

    /// Answer the next `count` twin GET/PATCH requests with `status`.
    pub fn fail_twin_requests(&self, status: u16, count: u32) {
        self.with_hub(|h| {
            h.lock().twin_fail = (count > 0).then_some((status, count));
            tracing::info!(status, count, "fault: failing twin requests");
        });
    }

    /// Treat every token in use as expired: those tokens are refused from now on and every
    /// connection is dropped, so clients must reconnect with a fresh token.
    pub fn expire_tokens(&self) {
        self.with_hub(|h| {
            let mut st = h.lock();
            let sigs: Vec<String> = st
                .sessions
                .values()
                .filter_map(|s| s.conn.as_ref())
                .map(|c| c.token_sig.clone())
                .collect();
            st.revoked_sigs.extend(sigs);
            for c in st.sessions.values().filter_map(|s| s.conn.as_ref()) {
                c.cancel.cancel();
            }
            tracing::info!("fault: tokens expired, connections dropped");
        });
    }
}
