//! What every service (collector, storer, control) shares: the keys of its gRPC side, its
//! security, its logs and metrics ([`ServiceConfig`], validated once here), and the start-up
//! sequence around them ([`main`] for a binary, [`Listener`] for its gRPC server).
//!
//! In Rust the shared keys are one nested section (`service`); in the TOML file, the
//! environment and `--set` they are accepted flat at the level of the service's own keys, as
//! they always were (`grpc_listen = ...`, `SIPCAPTURE_LOG_LEVEL`), or as a `[service]` table.
//! [`crate::config`] moves the flat ones into the section before serde sees them, because
//! serde's `flatten` does not combine with `deny_unknown_fields`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

use crate::auth::{Authorizer, Role};
use crate::config::ConfigError;
use crate::counters::Counters;
use crate::metrics::MetricsError;
use crate::server::{GrpcLimits, ServeError, ServeOptions};
use crate::telemetry::{LogFormat, LogSettings, TelemetryError};
use crate::tls::{GrpcClientTls, GrpcServerTls};

/// The keys every service has (`[service]`, or flat next to the service's own keys).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// gRPC listen address (the service's gRPC services, health, reflection).
    pub grpc_listen: SocketAddr,
    /// Bearer token required on the calls that change the capture status (collectors and
    /// storers: StatusService.SetStatus; control: SetStatus), and sent to control / members.
    /// Unset: no token needed. Every role's token when its own (`collector_token`,
    /// `member_token`, `admin_token`) is unset.
    pub auth_token: Option<String>,
    /// Bearer token of the collector role: required on StorerService.Deliver (storer) and
    /// sent there (collector). Unset: `auth_token`.
    pub collector_token: Option<String>,
    /// Bearer token of the member role: required on ControlService.Watch (control) and sent
    /// there (collectors, storers). Unset: `auth_token`.
    pub member_token: Option<String>,
    /// Bearer token of the admin role: required on SetStatus (control and members) and sent
    /// by control to members. Unset: `auth_token`.
    pub admin_token: Option<String>,
    /// Accept mutating calls (Deliver, Watch, SetStatus) of a role with neither token nor
    /// identity list from any peer. Off by default: such calls are then accepted from
    /// loopback peers and verified client certificates only.
    pub allow_insecure: bool,
    /// Kamailio `capture_on`: initial capture state (control: the desired state at start-up).
    #[serde(deserialize_with = "crate::config::de::flag")]
    pub capture_on: bool,
    /// Maximum concurrent gRPC calls (streams included).
    pub max_grpc_calls: usize,
    /// TLS of the gRPC listener (`[grpc_tls]`: `cert`, `key`, `client_ca` for mTLS,
    /// `reload_interval`, `handshake_timeout`); docs/SECURITY.md.
    pub grpc_tls: GrpcServerTls,
    /// TLS of outgoing gRPC links to `https://` URLs (`[grpc_client_tls]`: `ca`, `cert`, `key`,
    /// `server_name`); docs/SECURITY.md.
    pub grpc_client_tls: GrpcClientTls,
    /// gRPC listener limits (`[grpc_limits]`: message sizes, streams per connection,
    /// connections); docs/SECURITY.md.
    pub grpc_limits: GrpcLimits,
    /// Client certificate identities (subject CN or a SAN) allowed to change the status without
    /// the bearer token (needs `grpc_tls.client_ca`).
    pub grpc_admin_identities: Vec<String>,
    /// Client certificate identities allowed to deliver (collector role). Empty: any
    /// certificate the listener's `grpc_tls.client_ca` verified.
    pub grpc_collector_identities: Vec<String>,
    /// Client certificate identities allowed to register through Watch (member role). Empty:
    /// any certificate the listener's `grpc_tls.client_ca` verified.
    pub grpc_member_identities: Vec<String>,
    /// Prometheus scrape endpoint (`GET /metrics`, text format), e.g. `0.0.0.0:9090`. Off when
    /// unset (the default). Metrics are listed in docs/METRICS.md.
    pub metrics_listen: Option<SocketAddr>,
    /// Log line format: `text` (default) or `json` (one object per line).
    pub log_format: LogFormat,
    /// Log filter in `RUST_LOG` syntax (`info`, `warn,sipcapture_storer=debug`); the `RUST_LOG`
    /// env wins when set.
    pub log_level: String,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig::listening_on(SocketAddr::from(([0, 0, 0, 0], 9061)))
    }
}

impl ServiceConfig {
    /// The defaults, with the service's own default gRPC address.
    pub fn listening_on(grpc_listen: SocketAddr) -> Self {
        ServiceConfig {
            grpc_listen,
            auth_token: None,
            collector_token: None,
            member_token: None,
            admin_token: None,
            allow_insecure: false,
            capture_on: true,
            max_grpc_calls: 1024,
            grpc_tls: GrpcServerTls::default(),
            grpc_client_tls: GrpcClientTls::default(),
            grpc_limits: GrpcLimits::default(),
            grpc_admin_identities: Vec::new(),
            grpc_collector_identities: Vec::new(),
            grpc_member_identities: Vec::new(),
            metrics_listen: None,
            log_format: LogFormat::Text,
            log_level: crate::telemetry::DEFAULT_FILTER.to_owned(),
        }
    }

    /// Checks the shared keys: TLS material is loaded once (a missing file or bad PEM names its
    /// key), limits and the log filter are checked. Keys are named flat, as users write them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.grpc_tls.validate("grpc_tls")?;
        self.grpc_client_tls.validate("grpc_client_tls")?;
        self.grpc_limits.validate("grpc_limits")?;
        crate::telemetry::validate_log_level(&self.log_level)?;
        if self.max_grpc_calls == 0 {
            return Err(ConfigError::invalid("max_grpc_calls", "must be at least 1"));
        }
        Ok(())
    }

    /// The log settings of the binary.
    pub fn log_settings(&self) -> LogSettings {
        LogSettings::new(self.log_format, &self.log_level)
    }

    /// The bearer token of `role`: its own key, else `auth_token` (empty values ignored).
    pub fn token_for(&self, role: Role) -> Option<String> {
        let own = match role {
            Role::Collector => &self.collector_token,
            Role::Member => &self.member_token,
            Role::Admin => &self.admin_token,
        };
        own.as_ref()
            .or(self.auth_token.as_ref())
            .filter(|t| !t.is_empty())
            .cloned()
    }

    /// The client identities allowed in `role`.
    pub fn identities_for(&self, role: Role) -> &[String] {
        match role {
            Role::Collector => &self.grpc_collector_identities,
            Role::Member => &self.grpc_member_identities,
            Role::Admin => &self.grpc_admin_identities,
        }
    }

    /// Who may make the calls of `role`: its token or an allowed client certificate; with
    /// neither, loopback peers only unless `allow_insecure`.
    pub fn authorizer(&self, role: Role) -> Authorizer {
        Authorizer::for_role(
            role,
            self.token_for(role),
            self.identities_for(role).to_vec(),
            self.allow_insecure,
        )
    }

    /// Logs a loud warning when the gRPC listener is reachable from other hosts with neither
    /// TLS nor a token (or when `allow_insecure` opens it), naming the keys to set.
    pub fn warn_if_exposed(&self, addr: SocketAddr, tls: bool) {
        if crate::auth::is_loopback(&addr) {
            return;
        }
        let tokens = [Role::Collector, Role::Member, Role::Admin]
            .iter()
            .any(|r| self.token_for(*r).is_some());
        if self.allow_insecure {
            tracing::warn!(%addr, "allow_insecure = true: any host that reaches this gRPC listener may deliver records, register and switch capture for every role without a token or identity; set auth_token (or collector_token / member_token / admin_token) or grpc_tls.client_ca instead");
        } else if !tls && !tokens {
            tracing::warn!(%addr, "the gRPC listener is not on loopback and has neither TLS (grpc_tls.cert, grpc_tls.key, grpc_tls.client_ca) nor a token (auth_token): Deliver, Watch and SetStatus are accepted from loopback peers only; set auth_token or grpc_tls.* to allow other hosts, or allow_insecure = true to accept anyone (unsafe)");
        }
    }

    /// The URL scheme of links this service opens to its peers (`https` with client TLS).
    pub fn peer_scheme(&self) -> &'static str {
        if self.grpc_client_tls.ca.is_some() || self.grpc_client_tls.cert.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// A member (collector or storer) follows control's capture status: it registers through
/// `ControlService/Watch` at `control` (when set) and applies every status change to `switch`;
/// waits up to 3 s for the first status so the member starts in the fleet's state.
pub async fn follow_control(
    config: &ServiceConfig,
    control: Option<String>,
    advertise_url: Option<String>,
    member_id: &str,
    kind: sipcapture_proto::v1::MemberKind,
    switch: Arc<crate::status::CaptureSwitch>,
    shutdown: &CancellationToken,
) {
    let registration = sipcapture_proto::v1::WatchRequest {
        member_id: member_id.to_owned(),
        kind: kind as i32,
        status_url: advertise_url.unwrap_or_default(),
        status_port: u32::from(config.grpc_listen.port()),
        status_tls: config.grpc_tls.enabled(),
    };
    if let Some(url) = &control {
        config.grpc_client_tls.warn_if_plaintext("control", url);
    }
    let link = crate::watch::ControlLink {
        tls: config.grpc_client_tls.clone(),
        token: config.token_for(Role::Member),
    };
    crate::watch::start(
        control,
        link,
        registration,
        switch,
        shutdown.clone(),
        std::time::Duration::from_secs(3),
    )
    .await;
}

/// Why a service could not start its gRPC side.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// TLS material or another shared key is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The gRPC listener.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The `/metrics` endpoint.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// The gRPC side of a service, bound and ready: the listener, its options (limits, TLS with
/// reloading) and the `/metrics` endpoint already serving. Every service starts the same way:
/// [`Listener::bind`], add its services to a [`RoutesBuilder`] (with [`Listener::limits`]),
/// [`Listener::serve`].
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    addr: SocketAddr,
    options: ServeOptions<'static>,
}

impl Listener {
    /// Binds `config.grpc_listen`, loads its TLS (counting handshakes in `tls_counters`),
    /// and serves `/metrics` for `metrics` on `config.metrics_listen` until `shutdown`.
    pub async fn bind(
        config: &ServiceConfig,
        service_names: &'static [&'static str],
        tls_counters: Arc<Counters>,
        metrics: Vec<Arc<Counters>>,
        shutdown: &CancellationToken,
    ) -> Result<Self, StartError> {
        let listener = crate::server::bind(config.grpc_listen).await?;
        let addr = listener.local_addr().map_err(|error| ServeError::Bind {
            addr: config.grpc_listen,
            error,
        })?;
        crate::metrics::serve_if(config.metrics_listen, metrics, shutdown).await?;
        let options = ServeOptions::new(service_names, config.max_grpc_calls)
            .with_grpc_tls(&config.grpc_tls, config.grpc_limits, tls_counters, shutdown)
            .map_err(crate::tls::TlsError::into_config)?;
        config.warn_if_exposed(addr, options.tls.is_some());
        Ok(Listener {
            listener,
            addr,
            options,
        })
    }

    /// The bound address (port 0 picks a free one).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// True when the listener serves TLS.
    pub fn tls(&self) -> bool {
        self.options.tls.is_some()
    }

    /// True when the listener requires client certificates (mTLS).
    pub fn mtls(&self) -> bool {
        self.options
            .tls
            .as_ref()
            .is_some_and(|t| t.requires_client_cert())
    }

    /// Makes health follow `readiness` (the overall entry and its services).
    pub fn with_readiness(mut self, readiness: crate::health::Readiness) -> Self {
        self.options.readiness = Some(readiness);
        self
    }

    /// The message size limits services added to the routes must apply.
    pub fn limits(&self) -> GrpcLimits {
        self.options.limits
    }

    /// Serves `routes` (plus health and reflection) until `shutdown` is cancelled.
    pub async fn serve(
        self,
        routes: RoutesBuilder,
        shutdown: CancellationToken,
    ) -> Result<(), ServeError> {
        crate::server::serve_with(self.listener, routes, &self.options, shutdown).await
    }
}

/// Why a service binary stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum MainError<E: std::error::Error + 'static> {
    /// Logging or OpenTelemetry could not start.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// The service failed.
    #[error(transparent)]
    Service(E),
}

/// The body of every service binary after its config is loaded and validated: starts logging
/// and OpenTelemetry as `binary`, cancels the token on SIGINT/SIGTERM, runs `service` and
/// flushes telemetry whatever the outcome.
pub async fn main<E, F, Fut>(
    binary: &'static str,
    log: &LogSettings,
    service: F,
) -> Result<(), MainError<E>>
where
    E: std::error::Error + 'static,
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let telemetry = crate::telemetry::init(binary, log)?;
    let shutdown = crate::server::shutdown_on_signal();
    let result = service(shutdown).await;
    telemetry.shutdown();
    result.map_err(MainError::Service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loader_knows_every_shared_key() {
        let Ok(figment::value::Value::Dict(_, dict)) =
            figment::value::Value::serialize(ServiceConfig::default())
        else {
            panic!("ServiceConfig serialises to a table");
        };
        let keys: Vec<&str> = dict.keys().map(String::as_str).collect();
        let mut expected = crate::config::SHARED_KEYS.to_vec();
        let mut keys = keys;
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn validation_names_flat_keys() {
        let mut config = ServiceConfig::default();
        assert!(config.validate().is_ok());
        config.max_grpc_calls = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("`max_grpc_calls`"), "{err}");
        let mut config = ServiceConfig::default();
        config.grpc_limits.max_connections = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("`grpc_limits.max_connections`"), "{err}");
        let config = ServiceConfig {
            log_level: "info,=[".into(),
            ..ServiceConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[tokio::test]
    async fn binds_and_serves_until_cancelled() {
        let config = ServiceConfig::listening_on("127.0.0.1:0".parse().unwrap());
        let stop = CancellationToken::new();
        let counters = Arc::new(Counters::new(&crate::counters::Catalog {
            service: "test",
            metrics: &[],
        }));
        let listener = Listener::bind(&config, &["x.Y"], counters, Vec::new(), &stop)
            .await
            .unwrap();
        assert_ne!(listener.local_addr().port(), 0);
        assert!(!listener.tls());
        let serving = tokio::spawn(listener.serve(RoutesBuilder::default(), stop.clone()));
        stop.cancel();
        serving.await.unwrap().unwrap();
    }
}
