//! Client options: every knob has a default a careful user would pick for an edge device.

use std::time::Duration;

use crate::backoff::BackoffPolicy;

/// How the client reaches the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TransportKind {
    /// MQTT 3.1.1 over TLS, port 8883.
    Mqtt,
    /// MQTT 3.1.1 over secure WebSockets, port 443, path `/$iothub/websocket`.
    MqttWebSocket,
}

/// Options for [`crate::ModuleClient`]. `Default` gives the documented defaults.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ClientOptions {
    pub transport: TransportKind,
    /// MQTT keepalive sent in CONNECT (the hub drops us after 1.5x without traffic).
    pub keep_alive: Duration,
    /// Lifetime of each SAS token; a new one is made (and the connection re-established with it)
    /// when 80 % of this has passed.
    pub sas_ttl: Duration,
    /// Reconnect policy (exponential backoff with jitter).
    pub backoff: BackoffPolicy,
    /// Most messages that may wait while offline; one more is refused with `QueueFull`.
    pub offline_queue_limit: usize,
    /// Oldest a queued message may get before it fails with `Timeout`.
    pub offline_queue_max_age: Duration,
    /// Time allowed for an acknowledged operation (PUBACK, twin response) once transmitted.
    pub operation_timeout: Duration,
    /// Time allowed for one connection attempt (TCP + TLS + CONNACK).
    pub connect_timeout: Duration,
    /// Most QoS 1 publishes awaiting PUBACK at once.
    pub inflight: u16,
    /// MQTT api-version in the username.
    pub api_version: String,
    /// Appended to our `DeviceClientType` (user agent).
    pub product_info: Option<String>,
    /// Digital-twin model id (`model-id` in the username).
    pub model_id: Option<String>,
    /// Port of the MQTT (or MQTT/WS) endpoint; default 8883 (443 for WebSockets).
    pub mqtt_port: Option<u16>,
    /// Port of the gateway's HTTPS API (module-to-module methods); default 443.
    pub https_port: Option<u16>,
    /// PEM roots to trust instead of the Workload API trust bundle or the CA file.
    pub trust_bundle_pem: Option<String>,
    /// Subscribe to input messages on connect.
    pub enable_inputs: bool,
    /// Subscribe to desired-property patches on connect.
    pub enable_twin_patches: bool,
    /// Subscribe to direct-method requests on connect.
    pub enable_methods: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            transport: TransportKind::Mqtt,
            keep_alive: Duration::from_secs(60),
            sas_ttl: Duration::from_secs(3600),
            backoff: BackoffPolicy::default(),
            offline_queue_limit: 10_000,
            offline_queue_max_age: Duration::from_secs(600),
            operation_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            inflight: 100,
            api_version: "2020-09-30".to_string(),
            product_info: None,
            model_id: None,
            mqtt_port: None,
            https_port: None,
            trust_bundle_pem: None,
            enable_inputs: true,
            enable_twin_patches: true,
            enable_methods: true,
        }
    }
}

/// Variables that override the default ports when the options leave them unset: a local hub
/// (devhub) on ephemeral ports. On a real device both are unset and 8883/443 apply.
pub const MQTT_PORT_VAR: &str = "EDGEMODULE_MQTT_PORT";
pub const HTTPS_PORT_VAR: &str = "EDGEMODULE_HTTPS_PORT";

impl ClientOptions {
    /// Fill `mqtt_port` / `https_port` from `EDGEMODULE_MQTT_PORT` / `EDGEMODULE_HTTPS_PORT`
    /// when they are unset; a malformed value is an error that names the variable.
    pub fn with_port_overrides(
        mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> crate::Result<ClientOptions> {
        if self.mqtt_port.is_none() {
            self.mqtt_port = port_var(&get, MQTT_PORT_VAR)?;
        }
        if self.https_port.is_none() {
            self.https_port = port_var(&get, HTTPS_PORT_VAR)?;
        }
        Ok(self)
    }
}

fn port_var(get: &impl Fn(&str) -> Option<String>, name: &str) -> crate::Result<Option<u16>> {
    match get(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<u16>() {
            Ok(p) if p != 0 => Ok(Some(p)),
            _ => Err(crate::Error::config(format!(
                "{name} must be a port number 1-65535, got {v:?}"
            ))),
        },
    }
}

/// Options for a plain MQTT broker connection (broker mode against any MQTT 3.1.1 broker).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct BrokerOptions {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Use TLS with these PEM roots; `None` means plain TCP.
    pub tls_ca_pem: Option<String>,
}

/// The user agent we announce in the MQTT username.
pub fn client_type(product_info: Option<&str>) -> String {
    let base = format!(
        "edgemodule-rust/{} ({}; {})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    match product_info {
        Some(p) if !p.is_empty() => format!("{base} {p}"),
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn ports_come_from_the_environment_when_unset() {
        let o = ClientOptions::default()
            .with_port_overrides(env(&[
                ("EDGEMODULE_MQTT_PORT", "18883"),
                ("EDGEMODULE_HTTPS_PORT", " 18443 "),
            ]))
            .unwrap();
        assert_eq!(o.mqtt_port, Some(18883));
        assert_eq!(o.https_port, Some(18443));
        let o = ClientOptions::default()
            .with_port_overrides(env(&[("EDGEMODULE_MQTT_PORT", "")]))
            .unwrap();
        assert_eq!((o.mqtt_port, o.https_port), (None, None));
        // Explicit options win.
        let o = ClientOptions {
            mqtt_port: Some(1),
            ..Default::default()
        }
        .with_port_overrides(env(&[("EDGEMODULE_MQTT_PORT", "2")]))
        .unwrap();
        assert_eq!(o.mqtt_port, Some(1));
    }

    #[test]
    fn bad_ports_are_named() {
        for bad in ["0", "70000", "x"] {
            let e = ClientOptions::default()
                .with_port_overrides(env(&[("EDGEMODULE_HTTPS_PORT", bad)]))
                .unwrap_err();
            assert_eq!(e.kind, crate::ErrorKind::Configuration);
            assert!(e.message.contains("EDGEMODULE_HTTPS_PORT"), "{}", e.message);
        }
    }
}
