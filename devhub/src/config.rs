//! What `devhub::start` needs to know, and the addresses it bound.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Default state directory (relative to the working directory).
pub const DEFAULT_STATE_DIR: &str = "./.devhub";
/// Default IoT Hub host name: what SAS `sr` and MQTT usernames carry.
pub const DEFAULT_HUB_HOST_NAME: &str = "devhub.local";
/// Default edge device id.
pub const DEFAULT_DEVICE_ID: &str = "devhub-device";
/// Default MQTT-over-TLS port (PROTOCOL §4).
pub const DEFAULT_MQTT_TLS_PORT: u16 = 8883;
/// Default HTTPS port: WebSockets, method invoke, service and admin APIs (PROTOCOL §4, §9, §12).
pub const DEFAULT_HTTPS_PORT: u16 = 443;

/// Configuration of one devhub instance.
#[derive(Clone, Debug)]
pub struct Config {
    /// Generated CA, server certificate, keys, twins and queues live here.
    pub state_dir: PathBuf,
    /// A deployment manifest (modules, routes, TTL, desired properties, broker settings).
    pub manifest: Option<PathBuf>,
    /// Extra module identities besides the manifest's.
    pub modules: Vec<String>,
    pub hub_host_name: String,
    pub device_id: String,
    /// Extra DNS names (or IPs) the server certificate must carry (e.g. the machine's host name).
    pub gateway_hosts: Vec<String>,
    pub bind: IpAddr,
    /// 0 = ephemeral.
    pub mqtt_tls_port: u16,
    /// 0 = ephemeral.
    pub https_port: u16,
    /// Plain TCP MQTT (tests only); `None` = disabled, `Some(0)` = ephemeral.
    pub mqtt_plain_port: Option<u16>,
    /// Workload API unix socket; `None` = `{state_dir}/workload.sock`.
    pub workload_socket: Option<PathBuf>,
    /// How long a module-bound message waits for PUBACK before redelivery.
    pub ack_timeout: Duration,
    /// Tolerance on SAS expiry.
    pub max_clock_skew: Duration,
    /// Also write the ready file here (`{state_dir}/ready.json` is always written).
    pub ready_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            manifest: None,
            modules: Vec::new(),
            hub_host_name: DEFAULT_HUB_HOST_NAME.to_owned(),
            device_id: DEFAULT_DEVICE_ID.to_owned(),
            gateway_hosts: Vec::new(),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            mqtt_tls_port: DEFAULT_MQTT_TLS_PORT,
            https_port: DEFAULT_HTTPS_PORT,
            mqtt_plain_port: None,
            workload_socket: None,
            ack_timeout: Duration::from_secs(30),
            max_clock_skew: Duration::from_secs(300),
            ready_file: None,
        }
    }
}

impl Config {
    /// Test configuration: every port ephemeral, plain MQTT enabled, state in `state_dir`.
    pub fn ephemeral(state_dir: impl Into<PathBuf>) -> Config {
        Config {
            state_dir: state_dir.into(),
            mqtt_tls_port: 0,
            https_port: 0,
            mqtt_plain_port: Some(0),
            ..Config::default()
        }
    }

    /// The Workload API socket path this config resolves to.
    pub fn workload_socket_path(&self) -> PathBuf {
        self.workload_socket
            .clone()
            .unwrap_or_else(|| self.state_dir.join("workload.sock"))
    }
}

/// Where a started devhub listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addresses {
    pub mqtt_tls: SocketAddr,
    pub https: SocketAddr,
    pub mqtt_plain: Option<SocketAddr>,
    pub workload_socket: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.state_dir, PathBuf::from("./.devhub"));
        assert_eq!(c.hub_host_name, "devhub.local");
        assert_eq!(c.device_id, "devhub-device");
        assert_eq!(c.mqtt_tls_port, 8883);
        assert_eq!(c.https_port, 443);
        assert_eq!(c.mqtt_plain_port, None);
        assert_eq!(c.bind, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(c.ack_timeout, Duration::from_secs(30));
        assert_eq!(c.max_clock_skew, Duration::from_secs(300));
        assert_eq!(
            c.workload_socket_path(),
            PathBuf::from("./.devhub/workload.sock")
        );
    }

    #[test]
    fn ephemeral_ports() {
        let c = Config::ephemeral("/tmp/x");
        assert_eq!((c.mqtt_tls_port, c.https_port), (0, 0));
        assert_eq!(c.mqtt_plain_port, Some(0));
        assert_eq!(
            c.workload_socket_path(),
            PathBuf::from("/tmp/x/workload.sock")
        );
    }
}
