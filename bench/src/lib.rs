//! Pieces of the end-to-end benchmark (`e2e` binary): a throw-away mosquitto, a raw MQTT
//! publisher/subscriber pair, and the results table.

pub mod mosquitto;
pub mod raw;
pub mod results;

/// Errors of the benchmark harness (not of the code under test).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type BenchResult<T> = std::result::Result<T, BoxError>;

/// Messages per second, for `n` messages in `secs`.
pub fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// A payload of `size` bytes that is recognisably ours in a packet capture.
pub fn payload(size: usize) -> Vec<u8> {
    b"edgemodule-bench "
        .iter()
        .copied()
        .cycle()
        .take(size)
        .collect()
}

/// Digits of the sequence number at the start of every payload.
pub const SEQ_DIGITS: usize = 10;

/// `template` with message number `seq` written over its first [`SEQ_DIGITS`] bytes (zero-padded
/// decimal), so the receiver can tell every message apart.
pub fn numbered(template: &[u8], seq: usize) -> Vec<u8> {
    let mut p = template.to_vec();
    let digits = format!("{seq:0width$}", width = SEQ_DIGITS);
    let n = digits.len().min(p.len());
    p[..n].copy_from_slice(&digits.as_bytes()[..n]);
    p
}

/// The sequence number [`numbered`] wrote, if the payload carries one.
pub fn sequence(payload: &[u8]) -> Option<usize> {
    std::str::from_utf8(payload.get(..SEQ_DIGITS)?)
        .ok()?
        .parse()
        .ok()
}

/// Which of `n` numbered messages arrived: duplicates (QoS 1 redeliveries) and strangers are
/// counted apart, so "all arrived" means every number once.
#[derive(Debug)]
pub struct Tally {
    seen: Vec<bool>,
    pub distinct: usize,
    pub duplicates: usize,
    pub strangers: usize,
}

impl Tally {
    pub fn new(n: usize) -> Tally {
        Tally {
            seen: vec![false; n],
            distinct: 0,
            duplicates: 0,
            strangers: 0,
        }
    }

    /// Records one payload; true when it completed the set.
    pub fn record(&mut self, payload: &[u8]) -> bool {
        match sequence(payload).filter(|s| *s < self.seen.len()) {
            Some(s) if self.seen[s] => self.duplicates += 1,
            Some(s) => {
                self.seen[s] = true;
                self.distinct += 1;
                return self.distinct == self.seen.len();
            }
            None => self.strangers += 1,
        }
        false
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; fine for a short-lived local broker).
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_payloads() {
        assert_eq!(rate(1000, 0.5), 2000.0);
        assert_eq!(rate(1000, 0.0), 0.0);
        let p = payload(256);
        assert_eq!(p.len(), 256);
        assert_eq!(&p[..17], b"edgemodule-bench ");
        assert_ne!(free_port().unwrap(), 0);
    }

    #[test]
    fn numbered_payloads_are_tallied_once_each() {
        let t = payload(256);
        let p = numbered(&t, 42);
        assert_eq!(p.len(), 256);
        assert_eq!(&p[..12], b"0000000042-b");
        assert_eq!(sequence(&p), Some(42));
        assert_eq!(sequence(b"short"), None);
        let mut tally = Tally::new(2);
        assert!(!tally.record(&numbered(&t, 1)));
        assert!(!tally.record(&numbered(&t, 1)));
        assert!(!tally.record(&numbered(&t, 7)));
        assert!(!tally.record(b"edgemodule-bench"));
        assert!(tally.record(&numbered(&t, 0)));
        assert_eq!(
            (tally.distinct, tally.duplicates, tally.strangers),
            (2, 1, 2)
        );
    }
}
