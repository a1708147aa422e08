//! The client side of TLS: [`GrpcClientTls`] (the `grpc_client_tls` table) turns an
//! `https://` URL into a tonic [`Endpoint`]; [`check_trust`] checks at start-up that such a
//! client accepts a server certificate; [`client_connector`] is a plain rustls client for other
//! TLS links (the collector's HEP forwarding to `;transport=tls` destinations).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::{TlsError, load_certs, load_key, read};
use crate::config::ConfigError;

/// TLS of a service's gRPC client links (`[grpc_client_tls]`): used for every `https://` URL it
/// connects to (storers, control, members).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcClientTls {
    /// PEM file with the CA certificate(s) to trust for servers. Unset: the system's roots.
    pub ca: Option<PathBuf>,
    /// PEM file with this client's certificate chain, presented to servers that require mTLS.
    pub cert: Option<PathBuf>,
    /// PEM file with the client certificate's private key.
    pub key: Option<PathBuf>,
    /// Name to verify the server certificate against (and send as SNI) instead of the URL's
    /// host, e.g. when connecting to an IP address with a certificate issued for a DNS name.
    pub server_name: Option<String>,
}

impl GrpcClientTls {
    /// Checks the keys and reads the files once; the error names the key (`<prefix>.ca`, ...).
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let named = |field: &str| format!("{prefix}.{field}");
        match (&self.cert, &self.key) {
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
            _ => {}
        }
        if self.server_name.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::invalid(
                named("server_name"),
                "must not be empty",
            ));
        }
        self.tonic_config(prefix)
            .map(|_| ())
            .map_err(TlsError::into_config)
    }

    /// Whether a client certificate is configured.
    pub fn has_identity(&self) -> bool {
        self.cert.is_some()
    }

    /// tonic's client TLS settings from the files as they are now.
    fn tonic_config(&self, prefix: &str) -> Result<ClientTlsConfig, TlsError> {
        let mut config = ClientTlsConfig::new();
        match &self.ca {
            Some(ca) => {
                // Parse first so a bad file is named here, not in an opaque handshake error.
                load_certs(&format!("{prefix}.ca"), ca)?;
                config = config
                    .ca_certificate(Certificate::from_pem(read(&format!("{prefix}.ca"), ca)?));
            }
            None => config = config.with_native_roots(),
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            let cert_pem = read(&format!("{prefix}.cert"), cert)?;
            let key_pem = read(&format!("{prefix}.key"), key)?;
            load_certs(&format!("{prefix}.cert"), cert)?;
            load_key(&format!("{prefix}.key"), key)?;
            config = config.identity(Identity::from_pem(cert_pem, key_pem));
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        Ok(config)
    }

    /// Whether client TLS is configured (a CA or a client certificate).
    pub fn configured(&self) -> bool {
        self.ca.is_some() || self.cert.is_some()
    }

    /// Warns (once, at start-up) when client TLS is configured but `url`, from config key
    /// `key`, is `http://`: that link is plaintext — no TLS, no client certificate — which is
    /// rarely what a deployment that configured `grpc_client_tls` meant. We warn rather than
    /// refuse: a loopback or sidecar-terminated link may be plaintext on purpose. Returns
    /// whether it warned.
    pub fn warn_if_plaintext(&self, key: &str, url: &str) -> bool {
        let plaintext = self.configured()
            && url
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
        if plaintext {
            tracing::warn!(
                key,
                url,
                "grpc_client_tls is configured but this url is http://: the link is plaintext \
                 (no tls, no client certificate); write https:// to use tls"
            );
        }
        plaintext
    }

    /// A tonic endpoint for `url`: `https://` URLs get TLS from these settings (files read
    /// now), `http://` ones stay plain.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, TlsError> {
        let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| TlsError::Url {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        if !url.starts_with("https://") {
            return Ok(endpoint);
        }
        endpoint
            .tls_config(self.tonic_config("grpc_client_tls")?)
            .map_err(|e| TlsError::Url {
                url: url.to_owned(),
                reason: e.to_string(),
            })
    }
}

/// Checks at start-up that a client with `client` settings would accept the server
/// certificate in `server_cert` under `server_name` (the all-in-one's internal link to its own
/// TLS listener), so a CA mismatch is a clear start-up error rather than a retry loop.
pub fn check_trust(
    client: &GrpcClientTls,
    client_prefix: &str,
    server_cert: &Path,
    server_name: &str,
) -> Result<(), TlsError> {
    use tokio_rustls::rustls::client::WebPkiServerVerifier;
    use tokio_rustls::rustls::client::danger::ServerCertVerifier;
    let rejected = |reason: String| TlsError::Rejected {
        key: format!("{client_prefix}.ca"),
        reason,
    };
    let Some(ca) = &client.ca else {
        return Ok(());
    };
    let mut roots = RootCertStore::empty();
    for cert in load_certs(&format!("{client_prefix}.ca"), ca)? {
        roots.add(cert).map_err(|e| rejected(e.to_string()))?;
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(ring::default_provider()),
    )
    .build()
    .map_err(|e| rejected(e.to_string()))?;
    let chain = load_certs("grpc_tls.cert", server_cert)?;
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Ok(());
    };
    let name_text = client
        .server_name
        .clone()
        .unwrap_or_else(|| server_name.to_owned());
    let name = rustls_pki_types::ServerName::try_from(name_text.clone())
        .map_err(|e| rejected(e.to_string()))?;
    verifier
        .verify_server_cert(
            leaf,
            intermediates,
            &name,
            &[],
            rustls_pki_types::UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| {
            rejected(format!(
                "does not verify grpc_tls.cert for {name_text:?}: {e} (set the CA that issued it, \
                 or {client_prefix}.server_name)"
            ))
        })
}

/// A rustls client (ring provider, safe default protocol versions) trusting the PEM CA
/// certificates in `ca`; errors name the config `key` and the file.
pub fn client_connector(key: &str, ca: &Path) -> Result<TlsConnector, TlsError> {
    let rejected = |reason: String| TlsError::Rejected {
        key: key.to_owned(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in load_certs(key, ca)? {
        roots.add(cert).map_err(|e| rejected(e.to_string()))?;
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| rejected(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
