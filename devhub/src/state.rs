//! Identities kept in the state directory: module keys and the service policy key
//! (`{state}/keys.json`), stable across restarts.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use edgemodule::{Error, ErrorKind, Result};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::certs::write_atomic;

pub const KEYS_FILE: &str = "keys.json";
/// The service policy name devhub accepts for service SAS tokens (like IoT Hub's default).
pub const SERVICE_POLICY: &str = "iothubowner";

/// Contents of `keys.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Keys {
    /// module id -> base64 primary key (32 random bytes).
    #[serde(default)]
    pub modules: BTreeMap<String, String>,
    /// policy name -> base64 key, for service SAS tokens (§12).
    #[serde(default)]
    pub service: BTreeMap<String, String>,
}

pub fn random_key() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub fn keys_path(state_dir: &Path) -> PathBuf {
    state_dir.join(KEYS_FILE)
}

impl Keys {
    /// Reads `keys.json`; a missing file is empty.
    pub fn load(state_dir: &Path) -> Result<Keys> {
        let path = keys_path(state_dir);
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::config(format!("{}: not a devhub keys file: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Keys::default()),
            Err(e) => Err(Error::new(
                ErrorKind::Io,
                format!("{}: {e}", path.display()),
            )),
        }
    }

    /// Adds a key for each module (and the service policy) that has none; returns whether
    /// anything was added.
    pub fn ensure<'a>(&mut self, modules: impl IntoIterator<Item = &'a str>) -> bool {
        let mut changed = false;
        for m in modules {
            if !self.modules.contains_key(m) {
                self.modules.insert(m.to_owned(), random_key());
                changed = true;
            }
        }
        if !self.service.contains_key(SERVICE_POLICY) {
            self.service.insert(SERVICE_POLICY.to_owned(), random_key());
            changed = true;
        }
        changed
    }

    pub fn save(&self, state_dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        write_atomic(&keys_path(state_dir), &json, true)
    }

    /// Loads, adds keys for `modules`, saves if anything changed.
    pub fn load_and_ensure(state_dir: &Path, modules: &[String]) -> Result<Keys> {
        let mut keys = Keys::load(state_dir)?;
        if keys.ensure(modules.iter().map(String::as_str)) {
            keys.save(state_dir)?;
        }
        Ok(keys)
    }

    pub fn service_key(&self) -> Option<&str> {
        self.service.get(SERVICE_POLICY).map(String::as_str)
    }
}

/// `HostName=..;DeviceId=..;ModuleId=..;SharedAccessKey=..;GatewayHostName=localhost`: what a
/// module needs to connect to devhub (the port comes from the client's options).
pub fn connection_string(hub_host: &str, device: &str, module: &str, key: &str) -> String {
    edgemodule::protocol::connection_string::ConnectionString {
        host_name: hub_host.to_owned(),
        device_id: device.to_owned(),
        module_id: Some(module.to_owned()),
        shared_access_key: Some(key.to_owned()),
        shared_access_key_name: None,
        gateway_host_name: Some("localhost".to_owned()),
        gateway_port: None,
    }
    .to_string()
}

/// Settings a `devhub run` used, kept in `{state}/devhub.json` so that `devhub env` and
/// `devhub connection-string` give matching values while devhub is stopped.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Identity {
    pub hub_host_name: String,
    pub device_id: String,
    pub workload_socket: PathBuf,
}

pub const IDENTITY_FILE: &str = "devhub.json";

impl Identity {
    pub fn load(state_dir: &Path) -> Option<Identity> {
        let b = fs::read(state_dir.join(IDENTITY_FILE)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    pub fn save(&self, state_dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        write_atomic(&state_dir.join(IDENTITY_FILE), &json, false)
    }
}

/// Creates the state directory (private on unix: it holds keys).
pub fn create_state_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)
        .map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_new_modules_get_new_keys() {
        let dir = tempfile::tempdir().unwrap();
        let a = Keys::load_and_ensure(dir.path(), &["m1".into()]).unwrap();
        let k1 = a.modules["m1"].clone();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&k1)
                .unwrap()
                .len(),
            32
        );
        let b = Keys::load_and_ensure(dir.path(), &["m1".into(), "m2".into()]).unwrap();
        assert_eq!(b.modules["m1"], k1);
        assert_ne!(b.modules["m2"], k1);
        assert_eq!(b.service_key(), a.service_key());
        assert!(a.service_key().is_some());
        assert_eq!(Keys::load(dir.path()).unwrap(), b);
    }

    #[test]
    fn connection_string_format() {
        assert_eq!(
            connection_string("h.local", "d", "m", "a2V5"),
            "HostName=h.local;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5;GatewayHostName=localhost"
        );
    }
}
