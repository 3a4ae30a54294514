//! The ready file: JSON telling harnesses (in any language) and the CLI where a running devhub
//! listens. Written once every listener is up, through a temporary file and a rename, so a
//! reader never sees half of it.

use std::path::{Path, PathBuf};

use edgemodule::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use crate::certs::write_atomic;

/// The ready file every `start` writes into the state directory.
pub const READY_FILE: &str = "ready.json";

/// Contents of the ready file. Addresses are `ip:port` strings; the `*_port` fields repeat the
/// ports as numbers for harnesses that only need those.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReadyInfo {
    pub mqtt_tls: String,
    pub https: String,
    pub mqtt_plain: Option<String>,
    pub mqtt_tls_port: u16,
    pub https_port: u16,
    pub mqtt_plain_port: Option<u16>,
    pub workload_socket: PathBuf,
    pub ca_file: PathBuf,
    pub hub_host_name: String,
    pub device_id: String,
    pub state_dir: PathBuf,
    pub pid: u32,
}

pub fn ready_path(state_dir: &Path) -> PathBuf {
    state_dir.join(READY_FILE)
}

pub fn write(path: &Path, info: &ReadyInfo) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(info)
        .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
    json.push(b'\n');
    write_atomic(path, &json, false)
}

/// Reads the ready file of the devhub whose state is in `state_dir`.
pub fn read(state_dir: &Path) -> Result<ReadyInfo> {
    let path = ready_path(state_dir);
    let bytes = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::new(
                ErrorKind::Connection,
                format!("devhub is not running: no {}", path.display()),
            )
        } else {
            Error::new(ErrorKind::Io, format!("{}: {e}", path.display()))
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::config(format!("{}: not a devhub ready file: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let e = read(dir.path()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Connection);
        assert!(e.message.starts_with("devhub is not running: no "), "{e}");
        let info = ReadyInfo {
            mqtt_tls: "127.0.0.1:1".into(),
            https: "127.0.0.1:2".into(),
            mqtt_plain: None,
            mqtt_tls_port: 1,
            https_port: 2,
            mqtt_plain_port: None,
            workload_socket: "/w.sock".into(),
            ca_file: "/ca.pem".into(),
            hub_host_name: "h".into(),
            device_id: "d".into(),
            state_dir: dir.path().into(),
            pid: 7,
        };
        write(&ready_path(dir.path()), &info).unwrap();
        assert_eq!(read(dir.path()).unwrap(), info);
    }
}
