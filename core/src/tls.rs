//! TLS client configuration: the trust bundle (or CA file) is the only root, hostname
//! verification always on, TLS 1.2 and 1.3, rustls on the ring provider.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::error::{Error, ErrorKind, Result};

/// Parse every certificate in a PEM bundle.
pub fn parse_pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let mut reader = std::io::BufReader::new(pem.as_bytes());
    let certs: Vec<_> = rustls_pemfile::certs(&mut reader)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::new(ErrorKind::Tls, format!("malformed PEM trust bundle: {e}")))?;
    if certs.is_empty() {
        return Err(Error::new(
            ErrorKind::Tls,
            "the trust bundle holds no certificate",
        ));
    }
    Ok(certs)
}

/// A rustls client config that trusts exactly the certificates in `ca_pem`.
pub fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in parse_pem_certs(ca_pem)? {
        roots
            .add(cert)
            .map_err(|e| Error::new(ErrorKind::Tls, format!("unusable trust anchor: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::new(ErrorKind::Tls, e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_and_garbage_bundles() {
        assert_eq!(client_config("", &[]).unwrap_err().kind, ErrorKind::Tls);
        let garbage = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert_eq!(
            client_config(garbage, &[]).unwrap_err().kind,
            ErrorKind::Tls
        );
    }
}
