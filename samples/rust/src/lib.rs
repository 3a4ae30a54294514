//! Shared plumbing of the sample modules: numeric settings from the environment, shutdown
//! signals, and the reading format both samples agree on.

use edgemodule::{Error, Result};

/// An optional numeric environment variable; unset or empty gives `None`.
pub fn env_number(name: &str) -> Result<Option<u64>> {
    match std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
            Error::config(format!("{name} must be a non-negative integer, got {v:?}"))
        }),
    }
}

/// Resolves on Ctrl-C or SIGTERM (what `kill` and container runtimes send).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `machine.temperature` of a sensor reading, if the body is one.
pub fn machine_temperature(body: &[u8]) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("machine")?.get("temperature")?.as_f64()
}

/// The `TemperatureThreshold` member of a desired section or patch, if it is a number.
pub fn threshold_in(desired: &serde_json::Value) -> Option<f64> {
    desired.get("TemperatureThreshold")?.as_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_and_thresholds_are_read() {
        let body = br#"{"machine":{"temperature":31.5,"pressure":2.0},"ambient":{}}"#;
        assert_eq!(machine_temperature(body), Some(31.5));
        assert_eq!(machine_temperature(b"not json"), None);
        assert_eq!(machine_temperature(br#"{"machine":{}}"#), None);
        assert_eq!(
            threshold_in(&serde_json::json!({"TemperatureThreshold": 30, "$version": 2})),
            Some(30.0)
        );
        assert_eq!(
            threshold_in(&serde_json::json!({"TemperatureThreshold": "x"})),
            None
        );
    }
}
