//! rustls configurations (ring provider only; TLS 1.2 and 1.3).

use std::sync::Arc;

use edgemodule::{Error, ErrorKind, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn tls_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Tls, format!("{what}: {e}"))
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_err("certificate PEM", e))?;
    if certs.is_empty() {
        return Err(tls_err("certificate PEM", "no certificate found"));
    }
    Ok(certs)
}

fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| tls_err("private key PEM", e))?
        .ok_or_else(|| tls_err("private key PEM", "no private key found"))
}

/// Server config for the MQTT and HTTPS listeners. No ALPN: a client offering one we do not
/// list would otherwise be refused (MQTT clients sometimes offer `mqtt`).
pub fn server_config(chain_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>> {
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| tls_err("TLS versions", e))?
        .with_no_client_auth()
        .with_single_cert(parse_certs(chain_pem)?, parse_key(key_pem)?)
        .map_err(|e| tls_err("server certificate", e))?;
    Ok(Arc::new(cfg))
}

/// Client config trusting only `ca_pem` (the CLI and tests use it).
pub fn client_config(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in parse_certs(ca_pem)? {
        roots.add(c).map_err(|e| tls_err("CA certificate", e))?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| tls_err("TLS versions", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// [`client_config`] with TLS 1.2 and 1.3.
pub fn default_client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>> {
    client_config(ca_pem, &[&rustls::version::TLS12, &rustls::version::TLS13])
}
