//! The TLS client of TLS destinations (`;transport=tls`, `sips:`): rustls with the ring
//! provider, verifying the peer against the CA certificates of `forward_tls_ca`.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsConnector;

/// A TLS client trusting the PEM CA certificates in `ca` (errors name the file).
pub(super) fn tls_connector(ca: &Path) -> Result<TlsConnector, String> {
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};
    let certs =
        sipcapture_runtime::tls::load_certs("forward_tls_ca", ca).map_err(|e| e.to_string())?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
