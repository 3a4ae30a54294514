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
}
