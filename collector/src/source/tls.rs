//! TLS for HEP over TCP: a rustls server (ring provider) built from a PEM certificate chain and
//! a PEM private key. The HEP3 framing inside the TLS stream is the plain TCP one
//! ([`super::hep_listener`] reads both through the same loop).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;

/// Why the TLS listener could not be set up; every variant names the file or the reason.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is unreadable, not PEM, or holds no certificate.
    #[error("hep_tls_cert {path}: {reason}")]
    Cert {
        /// The configured path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The key file is unreadable, not PEM, or holds no private key.
    #[error("hep_tls_key {path}: {reason}")]
    Key {
        /// The configured path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the pair (key does not match the certificate, unsupported key type, ...).
    #[error("hep_tls_cert/hep_tls_key rejected by rustls: {0}")]
    Config(#[from] tokio_rustls::rustls::Error),
}

/// Reads every certificate of a PEM file, in order (server certificate first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let cert_error = |reason: String| TlsError::Cert {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_error("no CERTIFICATE block found".to_owned()));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// A TLS acceptor for HEP over TCP: TLS 1.2 and 1.3, no client authentication.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    // Name the provider: another crate in the build could enable a second rustls backend, and
    // then the process-wide default would be ambiguous.
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_name_the_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = acceptor(&missing, &missing).err().unwrap().to_string();
        assert!(err.starts_with("hep_tls_cert "), "{err}");
        assert!(err.contains("missing.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        let err = load_certs(&empty).err().unwrap().to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");

        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert_file = dir.path().join("cert.pem");
        std::fs::write(&cert_file, cert.cert.pem()).unwrap();
        let err = acceptor(&cert_file, &empty).err().unwrap().to_string();
        assert!(err.starts_with("hep_tls_key "), "{err}");
    }

    #[test]
    fn key_of_another_certificate_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.example".to_owned()]).unwrap();
        let cert_file = dir.path().join("a.pem");
        let key_file = dir.path().join("b.key");
        std::fs::write(&cert_file, a.cert.pem()).unwrap();
        std::fs::write(&key_file, b.signing_key.serialize_pem()).unwrap();
        assert!(matches!(
            acceptor(&cert_file, &key_file),
            Err(TlsError::Config(_))
        ));
        std::fs::write(&key_file, a.signing_key.serialize_pem()).unwrap();
        assert!(acceptor(&cert_file, &key_file).is_ok());
    }
}
