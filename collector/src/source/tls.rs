//! TLS for HEP over TCP: a rustls server (ring provider) built from a PEM certificate chain and
//! a PEM private key. The HEP3 framing inside the TLS stream is the plain TCP one
//! ([`super::hep_listener`] reads both through the same loop).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sipcapture_runtime::counters::Counters;
use sipcapture_runtime::tls::{DEFAULT_RELOAD_INTERVAL, ReloadingTls, TlsSource};
pub use sipcapture_runtime::tls::{TlsError, load_certs, load_key};
use tokio_util::sync::CancellationToken;

/// The TLS server config of HEP over TCP (TLS 1.2 and 1.3, no client authentication), reloaded
/// when `hep_tls_cert` / `hep_tls_key` change (checked every 10 s) or on SIGHUP, until
/// `shutdown`; new connections get the new certificate.
pub fn acceptor(
    cert: &Path,
    key: &Path,
    counters: Option<Arc<Counters>>,
    shutdown: &CancellationToken,
) -> Result<Arc<ReloadingTls>, TlsError> {
    let tls = ReloadingTls::new(
        TlsSource {
            prefix: "hep_tls_".to_owned(),
            cert: cert.to_owned(),
            key: key.to_owned(),
            client_ca: None,
            client_crl: None,
            alpn: Vec::new(),
        },
        counters,
    )?;
    tls.spawn_reloader(
        Duration::from_secs(DEFAULT_RELOAD_INTERVAL),
        shutdown.clone(),
    );
    Ok(tls)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_and_empty_files_name_the_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = load_certs("hep_tls_cert", &missing)
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("hep_tls_cert "), "{err}");
        assert!(err.contains("missing.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        let err = load_certs("hep_tls_cert", &empty)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");

        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert_file = dir.path().join("cert.pem");
        std::fs::write(&cert_file, cert.cert.pem()).unwrap();
        let err = acceptor(&cert_file, &empty, None, &CancellationToken::new())
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("hep_tls_key "), "{err}");
    }

    #[tokio::test]
    async fn key_of_another_certificate_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.example".to_owned()]).unwrap();
        let cert_file = dir.path().join("a.pem");
        let key_file = dir.path().join("b.key");
        std::fs::write(&cert_file, a.cert.pem()).unwrap();
        std::fs::write(&key_file, b.signing_key.serialize_pem()).unwrap();
        let stop = CancellationToken::new();
        assert!(matches!(
            acceptor(&cert_file, &key_file, None, &stop),
            Err(TlsError::Rejected { .. })
        ));
        std::fs::write(&key_file, a.signing_key.serialize_pem()).unwrap();
        assert!(acceptor(&cert_file, &key_file, None, &stop).is_ok());
        stop.cancel();
    }
}
