//! The TLS client of TLS destinations (`;transport=tls`, `sips:`): the runtime's rustls client
//! (ring provider), verifying the peer against the CA certificates of `forward_tls_ca`.

use std::path::Path;

use tokio_rustls::TlsConnector;

/// A TLS client trusting the PEM CA certificates in `ca` (errors name the key and the file).
pub(super) fn tls_connector(ca: &Path) -> Result<TlsConnector, String> {
    sipcapture_runtime::tls::client_connector("forward_tls_ca", ca).map_err(|e| e.to_string())
}
