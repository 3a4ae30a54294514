//! Who the module is and how it proves it: the identity read from the IoT Edge environment or a
//! connection string, and SAS tokens signed with the key or by the Workload API (PROTOCOL §1, §3).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;

use crate::error::{Error, Result};
use crate::protocol::connection_string::ConnectionString;
use crate::protocol::sas;
use crate::workload::{WorkloadClient, DEFAULT_API_VERSION};

/// The module's identity and where its hub is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// IoT Hub host name: used in the SAS resource and the MQTT username.
    pub hub_host: String,
    /// Host we connect to (the edge gateway), `hub_host` when there is none.
    pub gateway_host: String,
    /// Port given with the gateway host (`GatewayHostName=host:port`).
    pub gateway_port: Option<u16>,
    pub device_id: String,
    pub module_id: String,
}

/// How tokens are signed.
#[derive(Clone)]
pub enum Signer {
    /// Local HMAC with the module key (connection string).
    Key(Vec<u8>),
    /// The Workload API signs with a key we never see.
    Workload(WorkloadClient),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signer::Key(_) => f.write_str("Signer::Key(***)"),
            Signer::Workload(w) => write!(f, "Signer::Workload({w:?})"),
        }
    }
}

/// Where the TLS roots come from.
#[derive(Clone, Debug)]
pub enum TrustSource {
    Pem(String),
    Workload,
}

/// Everything needed to connect: identity, signer and trust.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub identity: Identity,
    pub signer: Signer,
    pub trust: TrustSource,
}

/// A SAS token and when it expires.
#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub expiry: u64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(expiry {})", self.expiry)
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Credentials {
    /// From a connection string (`HostName`, `DeviceId`, `ModuleId`, `SharedAccessKey`, optional
    /// `GatewayHostName[:port]`). `ca_pem` is the only TLS root.
    pub fn from_connection_string(cs: &str, ca_pem: Option<String>) -> Result<Credentials> {
        let parsed: ConnectionString = cs.parse()?;
        let module_id = parsed
            .module_id
            .clone()
            .ok_or_else(|| Error::config("connection string: ModuleId is missing"))?;
        let key_b64 = parsed
            .shared_access_key
            .as_deref()
            .ok_or_else(|| Error::config("connection string: SharedAccessKey is missing"))?;
        let key = sas::decode_key(key_b64)
            .map_err(|_| Error::config("connection string: SharedAccessKey is not valid base64"))?;
        let trust = ca_pem.map(TrustSource::Pem).ok_or_else(|| {
            Error::config(
                "no trust anchor for the gateway's TLS certificate: set ClientOptions.trust_bundle_pem \
                 or EdgeModuleCACertificateFile",
            )
        })?;
        check_mqtt_id("DeviceId", &parsed.device_id)?;
        check_mqtt_id("ModuleId", &module_id)?;
        Ok(Credentials {
            identity: Identity {
                gateway_host: parsed
                    .gateway_host_name
                    .clone()
                    .unwrap_or_else(|| parsed.host_name.clone()),
                gateway_port: parsed.gateway_port,
                hub_host: parsed.host_name,
                device_id: parsed.device_id,
                module_id,
            },
            signer: Signer::Key(key),
            trust,
        })
    }

    /// From the IoT Edge environment, like the official SDKs: the IOTEDGE_* variables and the
    /// Workload API when they are all present, else `EdgeHubConnectionString` plus
    /// `EdgeModuleCACertificateFile`. Errors name the missing or bad variable.
    pub fn from_environment(
        get: impl Fn(&str) -> Option<String>,
        ca_override: Option<String>,
    ) -> Result<Credentials> {
        const REQUIRED: [&str; 6] = [
            "IOTEDGE_IOTHUBHOSTNAME",
            "IOTEDGE_DEVICEID",
            "IOTEDGE_MODULEID",
            "IOTEDGE_MODULEGENERATIONID",
            "IOTEDGE_WORKLOADURI",
            "IOTEDGE_GATEWAYHOSTNAME",
        ];
        let values: Vec<Option<String>> = REQUIRED
            .iter()
            .map(|k| get(k).filter(|v| !v.trim().is_empty()))
            .collect();
        let first_missing = REQUIRED
            .iter()
            .zip(&values)
            .find(|(_, v)| v.is_none())
            .map(|(k, _)| *k);
        let Some(missing) = first_missing else {
            let v: Vec<String> = values.into_iter().map(Option::unwrap_or_default).collect();
            if let Some(scheme) = get("IOTEDGE_AUTHSCHEME") {
                if !scheme.eq_ignore_ascii_case("sasToken") {
                    return Err(Error::config(format!(
                        "IOTEDGE_AUTHSCHEME must be sasToken, got {scheme:?}"
                    )));
                }
            }
            let api_version = get("IOTEDGE_APIVERSION")
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_API_VERSION.to_string());
            check_mqtt_id("IOTEDGE_DEVICEID", &v[1])?;
            check_mqtt_id("IOTEDGE_MODULEID", &v[2])?;
            let workload = WorkloadClient::new(&v[4], &api_version, &v[2], &v[3])?;
            let (gateway_host, gateway_port) = split_host_port(&v[5], "IOTEDGE_GATEWAYHOSTNAME")?;
            return Ok(Credentials {
                identity: Identity {
                    hub_host: v[0].clone(),
                    gateway_host,
                    gateway_port,
                    device_id: v[1].clone(),
                    module_id: v[2].clone(),
                },
                signer: Signer::Workload(workload),
                trust: ca_override
                    .map(TrustSource::Pem)
                    .unwrap_or(TrustSource::Workload),
            });
        };
        let Some(cs) = get("EdgeHubConnectionString").filter(|v| !v.trim().is_empty()) else {
            return Err(Error::config(format!(
                "{missing} is not set (and there is no EdgeHubConnectionString to fall back on)"
            )));
        };
        let ca = match ca_override {
            Some(pem) => pem,
            None => {
                let path = get("EdgeModuleCACertificateFile").ok_or_else(|| {
                    Error::config("EdgeModuleCACertificateFile is not set (needed with EdgeHubConnectionString)")
                })?;
                std::fs::read_to_string(&path).map_err(|e| {
                    Error::config(format!("EdgeModuleCACertificateFile {path:?}: {e}"))
                })?
            }
        };
        Credentials::from_connection_string(&cs, Some(ca))
            .map_err(|e| Error::config(format!("EdgeHubConnectionString: {}", e.message)))
    }

    /// Resource URI (unencoded) for this module's tokens.
    pub fn resource_uri(&self) -> String {
        sas::module_resource_uri(
            &self.identity.hub_host,
            &self.identity.device_id,
            &self.identity.module_id,
        )
    }

    /// A fresh SAS token valid for `ttl`.
    pub async fn token(&self, ttl: Duration) -> Result<Token> {
        let expiry = unix_now() + ttl.as_secs().max(1);
        let sr = sas::encode_resource_uri(&self.resource_uri());
        let to_sign = sas::string_to_sign(&sr, expiry);
        let signature = match &self.signer {
            Signer::Key(key) => sas::sign(key, to_sign.as_bytes()),
            Signer::Workload(w) => w.sign(to_sign.as_bytes()).await?,
        };
        Ok(Token {
            value: sas::token(&sr, &signature, expiry),
            expiry,
        })
    }

    /// The PEM roots to trust for the gateway.
    pub async fn trust_bundle(&self) -> Result<String> {
        match (&self.trust, &self.signer) {
            (TrustSource::Pem(p), _) => Ok(p.clone()),
            (TrustSource::Workload, Signer::Workload(w)) => w.trust_bundle().await,
            (TrustSource::Workload, Signer::Key(_)) => {
                Err(Error::config("no trust bundle: no Workload API configured"))
            }
        }
    }
}

/// Ids end up in MQTT topics (`#` and `+` are wildcards there, `/` a level separator) and in the
/// username, where `/?` starts the properties: such ids cannot work over MQTT with any SDK.
fn check_mqtt_id(name: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.contains(['/', '#', '+', '?']) || id.chars().any(char::is_control) {
        return Err(Error::config(format!(
            "{name} {id:?} cannot be used over MQTT (empty, or holds one of / # + ? or a control character)"
        )));
    }
    Ok(())
}

fn split_host_port(value: &str, name: &str) -> Result<(String, Option<u16>)> {
    match value.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = port
                .parse::<u16>()
                .map_err(|_| Error::config(format!("{name}: bad port in {value:?}")))?;
            Ok((host.to_string(), Some(port)))
        }
        _ => Ok((value.to_string(), None)),
    }
}

/// Decode a base64 key for local signing (used by tests and tools).
pub fn key_from_base64(key: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| Error::config("SharedAccessKey is not valid base64"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleTEyMzQ=";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    // Windows builds accept only http:// Workload URIs (see workload::parse_uri).
    #[cfg(unix)]
    const WORKLOAD_URI: &str = "unix:///var/run/iotedge/workload.sock";
    #[cfg(not(unix))]
    const WORKLOAD_URI: &str = "http://127.0.0.1:15580";

    fn edge_env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("IOTEDGE_IOTHUBHOSTNAME", "myhub.azure-devices.net"),
            ("IOTEDGE_DEVICEID", "edge1"),
            ("IOTEDGE_MODULEID", "filter"),
            ("IOTEDGE_MODULEGENERATIONID", "gen1"),
            ("IOTEDGE_WORKLOADURI", WORKLOAD_URI),
            ("IOTEDGE_GATEWAYHOSTNAME", "edgehost"),
            ("IOTEDGE_AUTHSCHEME", "sasToken"),
        ]
    }

    #[test]
    fn edge_environment_gives_workload_credentials() {
        let c = Credentials::from_environment(env(&edge_env()), None).unwrap();
        assert_eq!(c.identity.hub_host, "myhub.azure-devices.net");
        assert_eq!(c.identity.gateway_host, "edgehost");
        assert_eq!(c.identity.module_id, "filter");
        assert!(matches!(c.signer, Signer::Workload(_)));
        assert!(matches!(c.trust, TrustSource::Workload));
        assert_eq!(
            c.resource_uri(),
            "myhub.azure-devices.net/devices/edge1/modules/filter"
        );
    }

    #[test]
    fn each_missing_variable_is_named() {
        for skip in 0..6 {
            let mut vars = edge_env();
            let (name, _) = vars.remove(skip);
            let e = Credentials::from_environment(env(&vars), None).unwrap_err();
            assert!(e.message.contains(name), "{name}: {}", e.message);
        }
    }

    #[test]
    fn bad_auth_scheme_and_workload_uri_are_named() {
        let mut vars = edge_env();
        vars[6] = ("IOTEDGE_AUTHSCHEME", "x509");
        let e = Credentials::from_environment(env(&vars), None).unwrap_err();
        assert!(e.message.contains("IOTEDGE_AUTHSCHEME"), "{}", e.message);
        let mut vars = edge_env();
        vars[4] = ("IOTEDGE_WORKLOADURI", "ftp://x");
        let e = Credentials::from_environment(env(&vars), None).unwrap_err();
        assert!(e.message.contains("IOTEDGE_WORKLOADURI"), "{}", e.message);
    }

    #[test]
    fn falls_back_to_connection_string_and_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "PEM").unwrap();
        let cs = format!(
            "HostName=myhub.azure-devices.net;DeviceId=edge1;ModuleId=filter;SharedAccessKey={KEY};GatewayHostName=localhost:18883"
        );
        let c = Credentials::from_environment(
            env(&[
                ("EdgeHubConnectionString", &cs),
                ("EdgeModuleCACertificateFile", ca.to_str().unwrap()),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(c.identity.gateway_host, "localhost");
        assert_eq!(c.identity.gateway_port, Some(18883));
        assert!(matches!(c.signer, Signer::Key(_)));
        let e = Credentials::from_environment(env(&[("EdgeHubConnectionString", &cs)]), None)
            .unwrap_err();
        assert!(
            e.message.contains("EdgeModuleCACertificateFile"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn key_tokens_match_the_python_sdk_vector_shape() {
        let cs = format!(
            "HostName=myhub.azure-devices.net;DeviceId=edge1;ModuleId=filter;SharedAccessKey={KEY}"
        );
        let c = Credentials::from_connection_string(&cs, Some("PEM".into())).unwrap();
        let t = c.token(Duration::from_secs(3600)).await.unwrap();
        assert!(t.value.starts_with(
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fedge1%2Fmodules%2Ffilter&sig="
        ));
        let parsed = sas::parse_token(&t.value).unwrap();
        let key = key_from_base64(KEY).unwrap();
        sas::verify(&parsed, &[&key], unix_now(), 300).unwrap();
        assert!(!format!("{c:?}").contains(KEY));
    }

    #[test]
    fn ids_unusable_over_mqtt_are_refused_by_name() {
        for bad in ["a/b", "a#", "a+b", "what?"] {
            let cs = format!("HostName=h;DeviceId=d;ModuleId={bad};SharedAccessKey={KEY}");
            let e = Credentials::from_connection_string(&cs, Some("PEM".into())).unwrap_err();
            assert!(e.message.contains("ModuleId"), "{}", e.message);
        }
        let mut vars = edge_env();
        vars[1] = ("IOTEDGE_DEVICEID", "dev+1");
        let e = Credentials::from_environment(env(&vars), None).unwrap_err();
        assert!(e.message.contains("IOTEDGE_DEVICEID"), "{}", e.message);
    }

    #[test]
    fn connection_string_errors_never_echo_the_key() {
        let cs = "HostName=h;DeviceId=d;SharedAccessKey=c2VjcmV0";
        let e = Credentials::from_connection_string(cs, Some("PEM".into())).unwrap_err();
        assert!(e.message.contains("ModuleId"), "{}", e.message);
        assert!(!e.message.contains("c2VjcmV0"));
        let cs = "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=c2VjcmV0";
        let e = Credentials::from_connection_string(cs, None).unwrap_err();
        assert!(e.message.contains("trust"), "{}", e.message);
    }
}
