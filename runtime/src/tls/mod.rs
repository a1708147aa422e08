//! TLS for gRPC between the services (and the PEM plumbing the HEP TLS listener shares).
//!
//! - Server side: [`GrpcServerTls`] (the `grpc_tls` config table: certificate chain, key,
//!   optional client CA that makes client certificates mandatory) becomes a [`ReloadingTls`]:
//!   a rustls `ServerConfig` (ring provider, ALPN `h2`) held behind a lock and rebuilt when the
//!   files change (polled) or on SIGHUP. Each new connection takes the current config, so a
//!   rotated certificate is served to new connections without a restart; a bad new file is
//!   logged and counted and the previous config stays in force.
//! - Client side: [`GrpcClientTls`] (the `grpc_client_tls` table: CA to trust, optional client
//!   certificate and key, server name override) turns an `https://` URL into a tonic
//!   `Endpoint` (`client.rs`, with [`client_connector`] for other TLS links). Files are read
//!   each time an endpoint is built, so a reconnect picks up rotated files.
//! - Identity: [`peer_names`] reads the names of a verified client certificate (subject CN, then
//!   DNS, URI and e-mail SANs); the first is the peer's identity ([`peer_identity`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;
use crate::counters::Counters;

mod client;

pub use client::{GrpcClientTls, check_trust, client_connector};

/// Default seconds between checks of the certificate files for changes.
pub const DEFAULT_RELOAD_INTERVAL: u64 = 10;
/// Default seconds a client has to complete the TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: u64 = 10;

/// TLS of a service's gRPC listener (`[grpc_tls]`). Off when `cert` is unset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcServerTls {
    /// PEM file with the certificate chain (server certificate first). Setting it turns TLS on;
    /// clients then connect with `https://`.
    pub cert: Option<PathBuf>,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// PEM file with the CA certificate(s) client certificates must chain to. When set, every
    /// client must present a valid certificate (mTLS); connections without one are refused in
    /// the handshake. The certificate's name becomes the caller's identity (the records'
    /// origin on a storer, the `grpc_admin_identities` match on control and status).
    pub client_ca: Option<PathBuf>,
    /// PEM file with certificate revocation lists (X509 CRL blocks) of the client CA(s):
    /// client certificates listed there are refused. Only the client's own certificate is
    /// checked, and a certificate whose CA has no CRL in the file is accepted. Needs
    /// `client_ca`; reloaded with the other files.
    pub client_crl: Option<PathBuf>,
    /// Seconds between checks of the files for changes (0: reload on SIGHUP only).
    pub reload_interval: u64,
    /// Seconds a client has to complete the TLS handshake before the connection is closed.
    pub handshake_timeout: u64,
}

impl Default for GrpcServerTls {
    fn default() -> Self {
        GrpcServerTls {
            cert: None,
            key: None,
            client_ca: None,
            client_crl: None,
            reload_interval: DEFAULT_RELOAD_INTERVAL,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl GrpcServerTls {
    /// Whether TLS is on.
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }

    /// Checks the keys and loads the files once, so a missing file or bad PEM stops start-up
    /// with the key's name (`<prefix>.cert`, ...).
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let named = |field: &str| format!("{prefix}.{field}");
        if self.client_crl.is_some() && self.client_ca.is_none() {
            return Err(ConfigError::invalid(
                named("client_crl"),
                format!("needs {}", named("client_ca")),
            ));
        }
        match (&self.cert, &self.key) {
            (None, None) => {
                if self.client_ca.is_some() {
                    return Err(ConfigError::invalid(
                        named("client_ca"),
                        format!("needs {} and {}", named("cert"), named("key")),
                    ));
                }
                return Ok(());
            }
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    named("key"),
                    format!("{} needs it", named("cert")),
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    named("cert"),
                    format!("{} needs it", named("key")),
                ));
            }
            (Some(_), Some(_)) => {}
        }
        if self.handshake_timeout == 0 {
            return Err(ConfigError::invalid(
                named("handshake_timeout"),
                "must be at least 1",
            ));
        }
        build_server_config(self, prefix)
            .map(|_| ())
            .map_err(TlsError::into_config)
    }
}

/// Why TLS material could not be used; every variant names the config key and file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is unreadable, not PEM, or lacks what the key needs.
    #[error("{key} {path}: {reason}")]
    File {
        /// The config key (`grpc_tls.cert`, `hep_tls_key`, ...).
        key: String,
        /// The configured path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the material (key does not match the certificate, bad CA, ...).
    #[error("{key}: rejected by rustls: {reason}")]
    Rejected {
        /// The config key (prefix) of the material.
        key: String,
        /// rustls' reason.
        reason: String,
    },
    /// A URL tonic cannot use.
    #[error("bad gRPC URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

impl TlsError {
    /// As a config error naming the key.
    pub fn into_config(self) -> ConfigError {
        match self {
            TlsError::File { key, path, reason } => {
                ConfigError::invalid(key, format!("{}: {reason}", path.display()))
            }
            TlsError::Rejected { key, reason } => ConfigError::invalid(key, reason),
            TlsError::Url { url, reason } => {
                ConfigError::invalid("url", format!("{url}: {reason}"))
            }
        }
    }
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        key: key.to_owned(),
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads every certificate of a PEM file, in order; `key` names the config key in errors.
pub fn load_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::File {
        key: key.to_owned(),
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("no CERTIFICATE block found".to_owned()));
    }
    Ok(certs)
}

/// Reads every CRL of a PEM file.
pub fn load_crls(
    key: &str,
    path: &Path,
) -> Result<Vec<rustls_pki_types::CertificateRevocationListDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::File {
        key: key.to_owned(),
        path: path.to_owned(),
        reason,
    };
    let crls = rustls_pki_types::CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if crls.is_empty() {
        return Err(error("no X509 CRL block found".to_owned()));
    }
    Ok(crls)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        key: key.to_owned(),
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// A rustls server config (ring provider) from certificate and key files, optionally requiring
/// client certificates that chain to `client_ca`; `alpn` lists the protocols offered.
pub fn server_config(
    prefix: &str,
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    client_crl: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<ServerConfig, TlsError> {
    let certs = load_certs(&format!("{prefix}cert"), cert)?;
    let private_key = load_key(&format!("{prefix}key"), key)?;
    let rejected = |field: &str, e: tokio_rustls::rustls::Error| TlsError::Rejected {
        key: format!("{prefix}{field}"),
        reason: e.to_string(),
    };
    // Name the provider: another crate could enable a second rustls backend, and then the
    // process-wide default would be ambiguous.
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| rejected("cert", e))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let ca_key = format!("{prefix}client_ca");
            let mut roots = RootCertStore::empty();
            for ca_cert in load_certs(&ca_key, ca)? {
                roots.add(ca_cert).map_err(|e| rejected("client_ca", e))?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if let Some(crl) = client_crl {
                verifier = verifier
                    .with_crls(load_crls(&format!("{prefix}client_crl"), crl)?)
                    .only_check_end_entity_revocation()
                    .allow_unknown_revocation_status();
            }
            let verifier = verifier.build().map_err(|e| TlsError::Rejected {
                key: ca_key,
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, private_key)
        .map_err(|e| rejected("key", e))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

fn build_server_config(tls: &GrpcServerTls, prefix: &str) -> Result<ServerConfig, TlsError> {
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        return Err(TlsError::Rejected {
            key: format!("{prefix}.cert"),
            reason: "cert and key are needed".to_owned(),
        });
    };
    server_config(
        &format!("{prefix}."),
        cert,
        key,
        tls.client_ca.as_deref(),
        tls.client_crl.as_deref(),
        &[b"h2"],
    )
}

/// Files a reloadable server config is built from, and how.
pub struct TlsSource {
    /// Config key prefix for errors (`grpc_tls.`, `hep_tls_`).
    pub prefix: String,
    /// Certificate chain file.
    pub cert: PathBuf,
    /// Key file.
    pub key: PathBuf,
    /// Client CA file (mTLS) or none.
    pub client_ca: Option<PathBuf>,
    /// Client CRL file or none.
    pub client_crl: Option<PathBuf>,
    /// ALPN protocols offered.
    pub alpn: Vec<Vec<u8>>,
}

impl TlsSource {
    fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.cert.as_path(), self.key.as_path()];
        files.extend(self.client_ca.as_deref());
        files.extend(self.client_crl.as_deref());
        files
    }

    fn snapshot(&self) -> Vec<Option<Vec<u8>>> {
        self.files()
            .into_iter()
            .map(|f| std::fs::read(f).ok())
            .collect()
    }

    fn build(&self) -> Result<ServerConfig, TlsError> {
        let alpn: Vec<&[u8]> = self.alpn.iter().map(Vec::as_slice).collect();
        server_config(
            &self.prefix,
            &self.cert,
            &self.key,
            self.client_ca.as_deref(),
            self.client_crl.as_deref(),
            &alpn,
        )
    }
}

/// A TLS server config rebuilt from its files when they change or on SIGHUP; every new
/// connection takes the current one (connections already open keep theirs).
pub struct ReloadingTls {
    source: TlsSource,
    current: RwLock<Arc<ServerConfig>>,
    seen: std::sync::Mutex<Vec<Option<Vec<u8>>>>,
    counters: Option<Arc<Counters>>,
}

impl std::fmt::Debug for ReloadingTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingTls")
            .field("cert", &self.source.cert)
            .field("client_ca", &self.source.client_ca)
            .finish()
    }
}

impl ReloadingTls {
    /// Loads the files; fails (naming the key) when they are unusable.
    pub fn new(source: TlsSource, counters: Option<Arc<Counters>>) -> Result<Arc<Self>, TlsError> {
        let seen = source.snapshot();
        let config = source.build()?;
        Ok(Arc::new(ReloadingTls {
            source,
            current: RwLock::new(Arc::new(config)),
            seen: std::sync::Mutex::new(seen),
            counters,
        }))
    }

    /// The gRPC listener's TLS from its config table (`prefix` = `grpc_tls`); `None` when off.
    pub fn for_grpc(
        tls: &GrpcServerTls,
        prefix: &str,
        counters: Option<Arc<Counters>>,
    ) -> Result<Option<Arc<Self>>, TlsError> {
        let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
            return Ok(None);
        };
        let source = TlsSource {
            prefix: format!("{prefix}."),
            cert: cert.clone(),
            key: key.clone(),
            client_ca: tls.client_ca.clone(),
            client_crl: tls.client_crl.clone(),
            alpn: vec![b"h2".to_vec()],
        };
        ReloadingTls::new(source, counters).map(Some)
    }

    /// Whether client certificates are required.
    pub fn requires_client_cert(&self) -> bool {
        self.source.client_ca.is_some()
    }

    /// An acceptor with the current config.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self
            .current
            .read()
            .map(|c| Arc::clone(&c))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()));
        TlsAcceptor::from(config)
    }

    /// Rebuilds the config when any file changed (or always with `force`). Returns whether a
    /// new config is in force; a bad file keeps the old config and is reported as an error.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let now = self.source.snapshot();
        let changed = self.seen.lock().map(|seen| *seen != now).unwrap_or(true);
        if !changed && !force {
            return Ok(false);
        }
        if let Ok(mut seen) = self.seen.lock() {
            // Remember the failed contents too: the error is reported once per change.
            *seen = now;
        }
        match self.source.build() {
            Ok(config) => {
                if let Ok(mut current) = self.current.write() {
                    *current = Arc::new(config);
                }
                if let Some(c) = &self.counters {
                    c.add("tls_reloaded", 1);
                }
                tracing::info!(cert = %self.source.cert.display(), "tls certificates reloaded");
                Ok(true)
            }
            Err(e) => {
                if let Some(c) = &self.counters {
                    c.add("tls_reload_failed", 1);
                }
                Err(e)
            }
        }
    }

    /// Reloads on SIGHUP and, with a non-zero `every`, when the files change, until `shutdown`.
    pub fn spawn_reloader(self: &Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let tls = Arc::clone(self);
        tokio::spawn(async move {
            let mut hangup = hangup_signal();
            let poll = !every.is_zero();
            let mut ticker = tokio::time::interval(if poll {
                every
            } else {
                Duration::from_secs(3600)
            });
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                let forced = tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = next_hangup(&mut hangup) => true,
                    _ = ticker.tick() => false,
                };
                if !forced && !poll {
                    continue;
                }
                if let Err(e) = tls.reload(forced) {
                    tracing::error!(error = %e, "tls reload failed; keeping the previous certificates");
                }
            }
        });
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) {
    match hangup {
        Some(signal) => {
            if signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}
#[cfg(not(unix))]
async fn next_hangup(_hangup: &mut Hangup) {
    std::future::pending::<()>().await;
}

/// The names of a certificate, in identity order: subject CN, then DNS, URI and e-mail SANs.
pub fn cert_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            let text = match name {
                GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s) => {
                    (*s).to_owned()
                }
                _ => continue,
            };
            if !names.contains(&text) {
                names.push(text);
            }
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// The names of the verified client certificate of a request (empty without mTLS).
pub fn peer_names<T>(request: &tonic::Request<T>) -> Vec<String> {
    request
        .peer_certs()
        .and_then(|certs| certs.first().map(|c| cert_names(c.as_ref())))
        .unwrap_or_default()
}

/// The identity of a request's verified client certificate: its first name.
pub fn peer_identity<T>(request: &tonic::Request<T>) -> Option<String> {
    peer_names(request).into_iter().next()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_urls_are_flagged_only_with_client_tls() {
        let none = GrpcClientTls::default();
        assert!(!none.warn_if_plaintext("storer", "http://s:9000"));
        let tls = GrpcClientTls {
            ca: Some("/ca.pem".into()),
            ..GrpcClientTls::default()
        };
        assert!(tls.warn_if_plaintext("storer", "http://s:9000"));
        assert!(tls.warn_if_plaintext("control", "HTTP://c:9000"));
        assert!(!tls.warn_if_plaintext("storer", "https://s:9000"));
    }

    #[test]
    fn names_come_from_cn_then_sans() {
        let mut params =
            rcgen::CertificateParams::new(vec!["c1.example".to_owned(), "c1b".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "collector-1");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            cert_names(cert.der()),
            vec!["collector-1", "c1.example", "c1b"]
        );
        assert!(cert_names(b"garbage").is_empty());
    }

    #[test]
    fn validation_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let tls = GrpcServerTls {
            cert: Some(missing.clone()),
            key: Some(missing.clone()),
            ..Default::default()
        };
        let err = tls.validate("grpc_tls").unwrap_err().to_string();
        assert!(err.contains("`grpc_tls.cert`"), "{err}");
        let tls = GrpcServerTls {
            cert: Some(missing.clone()),
            ..Default::default()
        };
        let err = tls.validate("grpc_tls").unwrap_err().to_string();
        assert!(err.contains("`grpc_tls.key`"), "{err}");

        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not pem").unwrap();
        let client = GrpcClientTls {
            ca: Some(bad),
            ..Default::default()
        };
        let err = client.validate("grpc_client_tls").unwrap_err().to_string();
        assert!(err.contains("`grpc_client_tls.ca`"), "{err}");
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }

    #[test]
    fn reload_swaps_only_on_change_and_keeps_old_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str| {
            let c = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
            std::fs::write(dir.path().join("c.pem"), c.cert.pem()).unwrap();
            std::fs::write(dir.path().join("k.pem"), c.signing_key.serialize_pem()).unwrap();
        };
        write("one.example");
        let tls = ReloadingTls::new(
            TlsSource {
                prefix: "grpc_tls.".to_owned(),
                cert: dir.path().join("c.pem"),
                key: dir.path().join("k.pem"),
                client_ca: None,
                client_crl: None,
                alpn: vec![b"h2".to_vec()],
            },
            Some(Arc::new(Counters::new(&crate::counters::Catalog {
                service: "test",
                metrics: &[],
            }))),
        )
        .unwrap();
        assert!(!tls.reload(false).unwrap());
        write("two.example");
        assert!(tls.reload(false).unwrap());
        std::fs::write(dir.path().join("k.pem"), "broken").unwrap();
        let err = tls.reload(false).unwrap_err().to_string();
        assert!(err.contains("grpc_tls.key"), "{err}");
        // The previous config is still served.
        let _ = tls.acceptor();
        assert_eq!(tls.counters.as_ref().unwrap().get("tls_reloaded"), 1);
        assert_eq!(tls.counters.as_ref().unwrap().get("tls_reload_failed"), 1);
    }
}
