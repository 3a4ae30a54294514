//! The devhub CA and the certificates it issues (server leaf, Workload API server certs).
//!
//! rustls refuses a self-signed certificate used directly as a server certificate
//! (`CaUsedAsEndEntity`), so devhub keeps a CA (the trust bundle clients get) and issues a
//! leaf with `CA:FALSE`, `serverAuth` and the SANs clients connect to.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use edgemodule::{Error, ErrorKind, Result};
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const SERVER_CERT_FILE: &str = "server.pem";
pub const SERVER_KEY_FILE: &str = "server-key.pem";
const SERVER_META_FILE: &str = "server.json";

const DAY: u64 = 24 * 3600;
const CA_DAYS: u64 = 3650;
const LEAF_DAYS: u64 = 365;
/// A stored server certificate this close to expiry is reissued at start.
const RENEW_BEFORE_DAYS: u64 = 30;

fn cert_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Tls, format!("{what}: {e}"))
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{}: {e}", path.display()))
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// (year, month, day) of a Unix day number (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

/// RFC 3339 UTC text of a Unix time (whole seconds).
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / DAY) as i64;
    let rem = unix % DAY;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Midnight UTC of the day holding `unix` (rcgen takes dates; the caller goes one day back to
/// absorb clock skew).
macro_rules! day_start {
    ($unix:expr) => {{
        let (y, m, d) = civil_from_days(($unix / DAY) as i64);
        rcgen::date_time_ymd(y, m, d)
    }};
}

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[0] &= 0x7f; // positive INTEGER
    b[0] |= 0x01; // no leading zero byte to strip
    SerialNumber::from_slice(&b)
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, text.as_bytes(), true)
}

/// Writes through a temporary file and a rename, so a crash never leaves half a file.
pub(crate) fn write_atomic(path: &Path, data: &[u8], private: bool) -> Result<()> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut f = opts.open(&tmp).map_err(|e| io_err(&tmp, e))?;
        std::io::Write::write_all(&mut f, data).map_err(|e| io_err(&tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

/// A PEM certificate (or chain) with its PKCS#8 private key.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// Leaf first, then the CA.
    pub chain_pem: String,
    pub key_pem: String,
    pub not_after_unix: u64,
}

/// The devhub CA, loaded from or created in the state directory.
pub struct CertAuthority {
    cert_pem: String,
    cert_path: PathBuf,
    key: KeyPair,
    /// The CA rebuilt from its stored key: rcgen signs with the issuer's DN and key only, so a
    /// re-signed copy with the same name and key issues certificates that chain to the stored
    /// CA certificate.
    issuer: rcgen::Certificate,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

/// The CA's name depends on its key, so two state dirs never produce two different CAs with
/// the same subject (which confuses chain building when both are trusted).
fn ca_params(key: &KeyPair) -> Result<CertificateParams> {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key_raw());
    let tag: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(|e| cert_err("CA", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("devhub local CA {tag}"));
    dn.push(DnType::OrganizationName, "edgemodule devhub");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = now_unix();
    p.not_before = day_start!(now - DAY);
    p.not_after = day_start!(now + CA_DAYS * DAY);
    p.serial_number = Some(random_serial());
    Ok(p)
}

impl CertAuthority {
    /// Loads `{dir}/ca.pem` + `{dir}/ca-key.pem`, or creates both.
    pub fn load_or_create(dir: &Path) -> Result<CertAuthority> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if cert_path.exists() && key_path.exists() {
            let cert_pem = fs::read_to_string(&cert_path).map_err(|e| io_err(&cert_path, e))?;
            let key_pem = fs::read_to_string(&key_path).map_err(|e| io_err(&key_path, e))?;
            let key = KeyPair::from_pem(&key_pem).map_err(|e| cert_err("CA key", e))?;
            let issuer = ca_params(&key)?
                .self_signed(&key)
                .map_err(|e| cert_err("CA", e))?;
            return Ok(CertAuthority {
                cert_pem,
                cert_path,
                key,
                issuer,
            });
        }
        let key = KeyPair::generate().map_err(|e| cert_err("CA key", e))?;
        let issuer = ca_params(&key)?
            .self_signed(&key)
            .map_err(|e| cert_err("CA", e))?;
        let cert_pem = issuer.pem();
        write_private(&key_path, &key.serialize_pem())?;
        write_atomic(&cert_path, cert_pem.as_bytes(), false)?;
        Ok(CertAuthority {
            cert_pem,
            cert_path,
            key,
            issuer,
        })
    }

    /// The CA certificate (PEM): the trust bundle.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Issues a server certificate (`CA:FALSE`, `serverAuth`) for `sans` (DNS names or IPs),
    /// with a fresh P-256 key.
    pub fn issue_server(
        &self,
        common_name: &str,
        sans: &[String],
        days: u64,
    ) -> Result<IssuedCert> {
        let mut p =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| cert_err("cert", e))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        p.distinguished_name = dn;
        for s in sans {
            let san = match s.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    s.clone()
                        .try_into()
                        .map_err(|e| cert_err(&format!("SAN {s:?}"), e))?,
                ),
            };
            if !p.subject_alt_names.contains(&san) {
                p.subject_alt_names.push(san);
            }
        }
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        let now = now_unix();
        let not_after_unix = (now + days * DAY) / DAY * DAY;
        p.not_before = day_start!(now - DAY);
        p.not_after = day_start!(now + days * DAY);
        p.serial_number = Some(random_serial());
        let key = KeyPair::generate().map_err(|e| cert_err("server key", e))?;
        let cert = p
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(|e| cert_err("server certificate", e))?;
        let mut chain_pem = cert.pem();
        if !chain_pem.ends_with('\n') {
            chain_pem.push('\n');
        }
        chain_pem.push_str(&self.cert_pem);
        Ok(IssuedCert {
            chain_pem,
            key_pem: key.serialize_pem(),
            not_after_unix,
        })
    }
}

#[derive(Serialize, Deserialize, PartialEq)]
struct ServerMeta {
    sans: Vec<String>,
    not_after_unix: u64,
    ca_cert_sha256: String,
}

fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The SANs devhub's own server certificate carries.
pub fn server_sans(hub_host_name: &str, gateway_hosts: &[String]) -> Vec<String> {
    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for h in std::iter::once(hub_host_name).chain(gateway_hosts.iter().map(String::as_str)) {
        if !h.is_empty() && !sans.iter().any(|s| s.eq_ignore_ascii_case(h)) {
            sans.push(h.to_owned());
        }
    }
    sans
}

/// Loads devhub's server certificate, reissuing it when the SANs changed, the CA changed or it
/// is about to expire.
pub fn ensure_server_cert(dir: &Path, ca: &CertAuthority, sans: &[String]) -> Result<IssuedCert> {
    let cert_path = dir.join(SERVER_CERT_FILE);
    let key_path = dir.join(SERVER_KEY_FILE);
    let meta_path = dir.join(SERVER_META_FILE);
    let ca_hash = sha256_hex(ca.cert_pem());
    let stored_meta = fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<ServerMeta>(&b).ok());
    if let Some(meta) = stored_meta {
        let fresh = meta.sans == sans
            && meta.ca_cert_sha256 == ca_hash
            && meta.not_after_unix > now_unix() + RENEW_BEFORE_DAYS * DAY;
        if fresh {
            if let (Ok(chain_pem), Ok(key_pem)) = (
                fs::read_to_string(&cert_path),
                fs::read_to_string(&key_path),
            ) {
                return Ok(IssuedCert {
                    chain_pem,
                    key_pem,
                    not_after_unix: meta.not_after_unix,
                });
            }
        }
    }
    let issued = ca.issue_server("devhub", sans, LEAF_DAYS)?;
    write_private(&key_path, &issued.key_pem)?;
    write_atomic(&cert_path, issued.chain_pem.as_bytes(), false)?;
    let meta = ServerMeta {
        sans: sans.to_vec(),
        not_after_unix: issued.not_after_unix,
        ca_cert_sha256: ca_hash,
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| cert_err("server.json", e))?;
    write_atomic(&meta_path, &json, false)?;
    Ok(issued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_164_800 + 3661), "2024-02-29T01:01:01Z");
    }

    #[test]
    fn sans_dedup() {
        assert_eq!(
            server_sans("devhub.local", &["LOCALHOST".into(), "myhost".into()]),
            vec!["localhost", "127.0.0.1", "::1", "devhub.local", "myhost"]
        );
    }

    #[test]
    fn ca_is_reused_and_leaf_reissued_on_san_change() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertAuthority::load_or_create(dir.path()).unwrap();
        let ca2 = CertAuthority::load_or_create(dir.path()).unwrap();
        assert_eq!(ca.cert_pem(), ca2.cert_pem());
        let sans = server_sans("h", &[]);
        let a = ensure_server_cert(dir.path(), &ca, &sans).unwrap();
        let b = ensure_server_cert(dir.path(), &ca2, &sans).unwrap();
        assert_eq!(a.chain_pem, b.chain_pem);
        assert!(a.chain_pem.ends_with(ca.cert_pem()));
        let c = ensure_server_cert(dir.path(), &ca2, &server_sans("other", &[])).unwrap();
        assert_ne!(a.chain_pem, c.chain_pem);
        assert_ne!(a.key_pem, c.key_pem);
    }
}
