//! Shared plumbing of the sample modules: client options from the environment, shutdown
//! signals, and the reading format both samples agree on.

use edgemodule::{ClientOptions, Error, Result};

/// `ClientOptions::default()` plus the port overrides a local devhub with ephemeral ports
/// needs: `EDGEMODULE_MQTT_PORT` and `EDGEMODULE_HTTPS_PORT` (on a real device both are
/// unset and the defaults, 8883 and 443, apply).
pub fn options_from_env() -> Result<ClientOptions> {
    options_from(|k| std::env::var(k).ok())
}

fn options_from(get: impl Fn(&str) -> Option<String>) -> Result<ClientOptions> {
    Ok(ClientOptions {
        mqtt_port: port(&get, "EDGEMODULE_MQTT_PORT")?,
        https_port: port(&get, "EDGEMODULE_HTTPS_PORT")?,
        ..ClientOptions::default()
    })
}

fn port(get: &impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<u16>> {
    match get(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<u16>() {
            Ok(p) if p != 0 => Ok(Some(p)),
            _ => Err(Error::config(format!(
                "{name} must be a port number 1-65535, got {v:?}"
            ))),
        },
    }
}

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
    use edgemodule::ErrorKind;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn ports_come_from_the_environment() {
        let o = options_from(env(&[
            ("EDGEMODULE_MQTT_PORT", "18883"),
            ("EDGEMODULE_HTTPS_PORT", " 18443 "),
        ]))
        .unwrap();
        assert_eq!(o.mqtt_port, Some(18883));
        assert_eq!(o.https_port, Some(18443));
        let o = options_from(env(&[("EDGEMODULE_MQTT_PORT", "")])).unwrap();
        assert_eq!((o.mqtt_port, o.https_port), (None, None));
    }

    #[test]
    fn bad_ports_are_named() {
        for bad in ["0", "70000", "x"] {
            let e = options_from(env(&[("EDGEMODULE_HTTPS_PORT", bad)])).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Configuration);
            assert!(e.message.contains("EDGEMODULE_HTTPS_PORT"), "{}", e.message);
        }
    }

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
