//! Loading a rustls server configuration from PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

use crate::ServeError;

/// A TLS acceptor for the certificate chain in `cert` and the private key in
/// `key` (PEM; PKCS#8, PKCS#1 or SEC1). Speaks HTTP/1.1 only.
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    let bad = |what: &str, p: &Path, e: &dyn std::fmt::Display| {
        ServeError::Config(format!("--tls-{what} {}: {e}", p.display()))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("cert", cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("cert", cert, &e))?;
    if certs.is_empty() {
        return Err(bad("cert", cert, &"no certificate found"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, &e))?;
    // ring is the provider the workspace builds (reqwest and lettre use it too).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Config(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad("key", key, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
