//! Module connection strings (`EdgeHubConnectionString`, PROTOCOL §1):
//! `HostName=..;DeviceId=..;ModuleId=..;SharedAccessKey=..;GatewayHostName=..`.
//!
//! Keys are matched case-insensitively (the SDKs differ; a case typo should not silently drop a
//! field). The shared access key never appears in errors or `Debug` output.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::protocol::sas;

#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    pub host_name: String,
    pub device_id: String,
    pub module_id: Option<String>,
    pub shared_access_key: Option<String>,
    pub shared_access_key_name: Option<String>,
    pub gateway_host_name: Option<String>,
    /// From `GatewayHostName=host:port`.
    pub gateway_port: Option<u16>,
}

const FIELDS: [&str; 6] = [
    "HostName",
    "DeviceId",
    "ModuleId",
    "SharedAccessKey",
    "SharedAccessKeyName",
    "GatewayHostName",
];

impl FromStr for ConnectionString {
    type Err = Error;

    /// `;`-separated `Key=Value` pairs (the value is everything after the first `=`, so base64
    /// padding survives); empty segments are skipped, unknown keys ignored, repeated keys rejected.
    /// `HostName` and `DeviceId` are required; every present field must be non-empty.
    fn from_str(s: &str) -> Result<Self> {
        let mut values: [Option<&str>; 6] = [None; 6];
        for (i, seg) in s.split(';').enumerate() {
            let seg = seg.trim();
            if seg.is_empty() {
                continue;
            }
            // Never echo the segment: it may be (part of) the key.
            let (k, v) = seg.split_once('=').ok_or_else(|| {
                Error::config(format!(
                    "connection string segment {} is not Key=Value",
                    i + 1
                ))
            })?;
            let k = k.trim();
            let Some(idx) = FIELDS.iter().position(|f| f.eq_ignore_ascii_case(k)) else {
                continue;
            };
            let name = FIELDS[idx];
            if values[idx].replace(v.trim()).is_some() {
                return Err(Error::config(format!(
                    "connection string has {name} more than once"
                )));
            }
            if v.trim().is_empty() {
                return Err(Error::config(format!(
                    "connection string has an empty {name}"
                )));
            }
        }
        let required = |idx: usize| {
            values[idx].map(str::to_owned).ok_or_else(|| {
                Error::config(format!("connection string is missing {}", FIELDS[idx]))
            })
        };
        let host_name = required(0)?;
        let device_id = required(1)?;
        let opt = |idx: usize| values[idx].map(str::to_owned);
        let shared_access_key = opt(3);
        if let Some(k) = &shared_access_key {
            sas::decode_key(k).map_err(|_| {
                Error::config("connection string SharedAccessKey is not valid base64")
            })?;
        }
        let (gateway_host_name, gateway_port) = match values[5] {
            Some(g) => {
                let (h, p) = split_host_port(g)?;
                (Some(h), p)
            }
            None => (None, None),
        };
        Ok(ConnectionString {
            host_name,
            device_id,
            module_id: opt(2),
            shared_access_key,
            shared_access_key_name: opt(4),
            gateway_host_name,
            gateway_port,
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; a bare IPv6 address (several `:`) is a host.
fn split_host_port(g: &str) -> Result<(String, Option<u16>)> {
    let bad = || {
        Error::config(format!(
            "connection string GatewayHostName {g:?} is malformed"
        ))
    };
    let parse_port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad);
    if let Some(rest) = g.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        if h.is_empty() {
            return Err(bad());
        }
        return match after {
            "" => Ok((h.to_owned(), None)),
            _ => Ok((
                h.to_owned(),
                Some(parse_port(after.strip_prefix(':').ok_or_else(bad)?)?),
            )),
        };
    }
    match g.split_once(':') {
        Some((h, p)) if !p.contains(':') => {
            if h.is_empty() {
                return Err(bad());
            }
            Ok((h.to_owned(), Some(parse_port(p)?)))
        }
        _ => Ok((g.to_owned(), None)),
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host_name", &self.host_name)
            .field("device_id", &self.device_id)
            .field("module_id", &self.module_id)
            .field(
                "shared_access_key",
                &self.shared_access_key.as_ref().map(|_| "***"),
            )
            .field("shared_access_key_name", &self.shared_access_key_name)
            .field("gateway_host_name", &self.gateway_host_name)
            .field("gateway_port", &self.gateway_port)
            .finish()
    }
}

/// The canonical form (includes the key: this is what devhub prints for a module).
impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostName={};DeviceId={}", self.host_name, self.device_id)?;
        if let Some(m) = &self.module_id {
            write!(f, ";ModuleId={m}")?;
        }
        if let Some(n) = &self.shared_access_key_name {
            write!(f, ";SharedAccessKeyName={n}")?;
        }
        if let Some(k) = &self.shared_access_key {
            write!(f, ";SharedAccessKey={k}")?;
        }
        if let Some(g) = &self.gateway_host_name {
            let bracket = g.contains(':');
            match (bracket, self.gateway_port) {
                (true, Some(p)) => write!(f, ";GatewayHostName=[{g}]:{p}")?,
                (false, Some(p)) => write!(f, ";GatewayHostName={g}:{p}")?,
                (_, None) => write!(f, ";GatewayHostName={g}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    const KEY: &str = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleTEyMzQ=";

    fn parse(s: &str) -> Result<ConnectionString> {
        s.parse()
    }

    #[test]
    fn parses_a_module_string() {
        let s = format!(
            "HostName=hub.azure-devices.net;DeviceId=edge1;ModuleId=filter;SharedAccessKey={KEY};GatewayHostName=localhost"
        );
        let c = parse(&s).unwrap();
        assert_eq!(
            c,
            ConnectionString {
                host_name: "hub.azure-devices.net".into(),
                device_id: "edge1".into(),
                module_id: Some("filter".into()),
                shared_access_key: Some(KEY.into()),
                shared_access_key_name: None,
                gateway_host_name: Some("localhost".into()),
                gateway_port: None,
            }
        );
        assert_eq!(c.to_string(), s);
        assert_eq!(parse(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn order_case_unknown_keys_whitespace_trailing_semicolon() {
        let s = format!(
            " gatewayhostname=gw:8884 ; sharedaccesskey={KEY};X509=true;moduleid=$edgeAgent;deviceid=d;hostname=h;;"
        );
        let c = parse(&s).unwrap();
        assert_eq!(c.host_name, "h");
        assert_eq!(c.device_id, "d");
        assert_eq!(c.module_id.as_deref(), Some("$edgeAgent"));
        assert_eq!(c.shared_access_key.as_deref(), Some(KEY));
        assert_eq!(c.gateway_host_name.as_deref(), Some("gw"));
        assert_eq!(c.gateway_port, Some(8884));
        assert_eq!(
            c.to_string(),
            format!("HostName=h;DeviceId=d;ModuleId=$edgeAgent;SharedAccessKey={KEY};GatewayHostName=gw:8884")
        );
    }

    #[test]
    fn optional_fields_and_key_name() {
        let c = parse("HostName=h;DeviceId=d").unwrap();
        assert_eq!(c.module_id, None);
        assert_eq!(c.shared_access_key, None);
        assert_eq!(c.gateway_host_name, None);
        assert_eq!(c.to_string(), "HostName=h;DeviceId=d");
        let c = parse(&format!(
            "HostName=h;DeviceId=d;SharedAccessKeyName=p;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert_eq!(c.shared_access_key_name.as_deref(), Some("p"));
        assert_eq!(
            c.to_string(),
            format!("HostName=h;DeviceId=d;SharedAccessKeyName=p;SharedAccessKey={KEY}")
        );
    }

    #[test]
    fn gateway_host_port_forms() {
        for (g, host, port, shown) in [
            ("gw", "gw", None, "gw"),
            ("gw:1", "gw", Some(1), "gw:1"),
            ("10.0.0.1:8883", "10.0.0.1", Some(8883), "10.0.0.1:8883"),
            ("[::1]:8883", "::1", Some(8883), "[::1]:8883"),
            ("[::1]", "::1", None, "::1"),
            ("::1", "::1", None, "::1"),
        ] {
            let c = parse(&format!("HostName=h;DeviceId=d;GatewayHostName={g}")).unwrap();
            assert_eq!(c.gateway_host_name.as_deref(), Some(host), "{g}");
            assert_eq!(c.gateway_port, port, "{g}");
            assert_eq!(
                c.to_string(),
                format!("HostName=h;DeviceId=d;GatewayHostName={shown}")
            );
            assert_eq!(parse(&c.to_string()).unwrap(), c, "{g}");
        }
        for g in [
            "gw:", "gw:x", "gw:0", "gw:70000", ":1", "[::1", "[::1]x", "[]:1", "[::1]:",
        ] {
            let e = parse(&format!("HostName=h;DeviceId=d;GatewayHostName={g}")).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Configuration, "{g}");
            assert!(e.message.contains("GatewayHostName"), "{e}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        for (s, field) in [
            ("DeviceId=d", "missing HostName"),
            ("HostName=h", "missing DeviceId"),
            ("", "missing HostName"),
            ("HostName=;DeviceId=d", "empty HostName"),
            ("HostName=h;DeviceId=d;ModuleId=", "empty ModuleId"),
            (
                "HostName=h;DeviceId=d;DeviceId=e",
                "DeviceId more than once",
            ),
            (
                "HostName=h;DeviceId=d;deviceid=e",
                "DeviceId more than once",
            ),
            (
                "HostName=h;DeviceId=d;SharedAccessKey=",
                "empty SharedAccessKey",
            ),
            ("HostName=h;DeviceId=d;oops", "segment 3 is not Key=Value"),
        ] {
            let e = parse(s).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Configuration, "{s}");
            assert!(e.message.contains(field), "{s}: {e}");
        }
    }

    #[test]
    fn key_never_in_errors_or_debug() {
        let bad_key = "not-base64!SECRET";
        let e = parse(&format!("HostName=h;DeviceId=d;SharedAccessKey={bad_key}")).unwrap_err();
        assert!(e.message.contains("SharedAccessKey"), "{e}");
        assert!(!e.to_string().contains("SECRET"), "{e}");
        // a stray key fragment without '=' is not echoed
        let e = parse("HostName=h;DeviceId=d;SECRETKEYFRAGMENT").unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let e = parse(&format!(
            "HostName=h;DeviceId=d;SharedAccessKey={KEY};SharedAccessKey={KEY}"
        ))
        .unwrap_err();
        assert!(!e.to_string().contains(KEY), "{e}");

        let c = parse(&format!("HostName=h;DeviceId=d;SharedAccessKey={KEY}")).unwrap();
        let d = format!("{c:?} {c:#?}");
        assert!(!d.contains(KEY) && !d.contains("dGVzdGtl"), "{d}");
        assert!(d.contains("***"), "{d}");
    }
}
