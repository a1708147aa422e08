//! `sipcapture up`: collector + storer + control in one process, one gRPC listener serving all
//! their services, SQLite by default. The collector delivers to the in-process storer over
//! loopback gRPC, the same path as a distributed deployment.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use figment::value::Value;
use serde::{Deserialize, Serialize};
use sipcapture_collector::Collector;
use sipcapture_collector::config::CollectorConfig;
use sipcapture_proto::v1::MemberKind;
use sipcapture_proto::v1::control_service_server::ControlServiceServer;
use sipcapture_runtime::auth::Role;
use sipcapture_runtime::config::{ConfigError, Sources, key_paths};
use sipcapture_runtime::server::{GrpcLimits, ServeOptions};
use sipcapture_runtime::status::{CaptureSwitch, StatusServer};
use sipcapture_runtime::tls::GrpcServerTls;
use sipcapture_storer::Storer;
use sipcapture_storer::config::StorerConfig;
use tokio_util::sync::CancellationToken;

use sipcapture_control::config::ControlConfig;
use sipcapture_control::grpc::ControlServer;
use sipcapture_control::members::{MemberLink, Origin};

/// gRPC service names the all-in-one serves.
pub const SERVICE_NAMES: &[&str] = &[
    "sipcapture.v1.StorerService",
    "sipcapture.v1.StatusService",
    "sipcapture.v1.ControlService",
];

/// The all-in-one config: one section per part. Flat keys given with `--set` (Kamailio names such
/// as `capture_node`, `db_url`, `insert_retries`) go to every section that has them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpConfig {
    /// The one gRPC listener (storer, status, control, health, reflection).
    pub grpc_listen: SocketAddr,
    /// TLS of the one gRPC listener (`[grpc_tls]`; the sections' own `grpc_tls` must stay
    /// unset). The internal collector link then uses `https://` with
    /// `collector.grpc_client_tls` (its `ca` defaults to this certificate file).
    pub grpc_tls: GrpcServerTls,
    /// Limits of the one gRPC listener (`[grpc_limits]`).
    pub grpc_limits: GrpcLimits,
    /// Collector settings (its `storer` list is replaced by the in-process storer).
    pub collector: CollectorConfig,
    /// Storer settings.
    pub storer: StorerConfig,
    /// Control settings (extra members may be listed; the local member is always included).
    pub control: ControlConfig,
    /// Prometheus scrape endpoint (`GET /metrics`) of the whole process (collector, storer and
    /// control metrics), e.g. `0.0.0.0:9090`. Off when unset (the default). The sections'
    /// own `metrics_listen`, `log_format` and `log_level` are not used by `up`.
    pub metrics_listen: Option<SocketAddr>,
    /// Log line format: `text` (default) or `json`.
    pub log_format: sipcapture_runtime::telemetry::LogFormat,
    /// Log filter in `RUST_LOG` syntax; the `RUST_LOG` env wins when set.
    pub log_level: String,
}

impl Default for UpConfig {
    fn default() -> Self {
        UpConfig {
            grpc_listen: SocketAddr::from(([0, 0, 0, 0], 9061)),
            grpc_tls: GrpcServerTls::default(),
            grpc_limits: GrpcLimits::default(),
            collector: CollectorConfig::default(),
            storer: StorerConfig::default(),
            control: ControlConfig::default(),
            metrics_listen: None,
            log_format: sipcapture_runtime::telemetry::LogFormat::Text,
            log_level: sipcapture_runtime::telemetry::DEFAULT_FILTER.to_owned(),
        }
    }
}

/// Dedicated flags of `sipcapture up`.
#[derive(Debug, Default, Clone)]
pub struct UpFlags {
    /// `--hep-listen`.
    pub hep_listen: Option<SocketAddr>,
    /// `--db-url`.
    pub db_url: Option<String>,
    /// `--capture-node`.
    pub capture_node: Option<String>,
    /// `--grpc-listen`.
    pub grpc_listen: Option<SocketAddr>,
}

/// Maps a `--set` key to the config paths it sets: dotted keys as given; a flat key to the top
/// level and to every section that has it.
pub fn resolve_key(key: &str) -> Vec<String> {
    if key.contains('.') {
        return vec![key.to_owned()];
    }
    let known = key_paths(&UpConfig::default());
    let mut paths = Vec::new();
    if known.iter().any(|k| k == key) {
        paths.push(key.to_owned());
    }
    for section in ["collector", "storer", "control"] {
        let path = format!("{section}.{key}");
        if known.contains(&path) {
            paths.push(path);
        }
    }
    paths
}

/// Loads and validates the all-in-one config.
pub fn load(mut sources: Sources, flags: &UpFlags) -> Result<UpConfig, ConfigError> {
    sources
        .flag(
            "collector.hep_listen",
            flags.hep_listen.map(|a| a.to_string()),
        )
        .flag("storer.db_url", flags.db_url.clone())
        .flag("collector.capture_node", flags.capture_node.clone())
        .flag("storer.capture_node", flags.capture_node.clone())
        .flag(
            "grpc_listen",
            flags.grpc_listen.map(|a| Value::from(a.to_string())),
        );
    let config: UpConfig =
        sipcapture_runtime::config::figment::<UpConfig>(&sources, resolve_key)?.extract()?;
    config.validate()?;
    Ok(config)
}

impl UpConfig {
    /// The in-process collector delivers to the in-process storer: it sends the storer's
    /// collector-role token (`collector_token`, else `auth_token`) when it has none of its
    /// own, so `--set storer.auth_token=…` alone guards Deliver without cutting the internal
    /// link.
    pub fn share_storer_token(&mut self) {
        if self.collector.service.token_for(Role::Collector).is_none() {
            self.collector.service.collector_token = self.storer.service.token_for(Role::Collector);
        }
    }

    /// Validates every section, naming keys with their section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let prefix = |section: &str, e: ConfigError| match e {
            ConfigError::Invalid { key, message } => ConfigError::Invalid {
                key: format!("{section}.{key}"),
                message,
            },
            other => other,
        };
        self.collector
            .validate()
            .map_err(|e| prefix("collector", e))?;
        self.storer.validate().map_err(|e| prefix("storer", e))?;
        self.control.validate().map_err(|e| prefix("control", e))?;
        self.grpc_tls.validate("grpc_tls")?;
        self.grpc_limits.validate("grpc_limits")?;
        let sections = [
            (
                "collector",
                &self.collector.service.grpc_tls,
                &self.collector.service.grpc_limits,
            ),
            (
                "storer",
                &self.storer.service.grpc_tls,
                &self.storer.service.grpc_limits,
            ),
            (
                "control",
                &self.control.service.grpc_tls,
                &self.control.service.grpc_limits,
            ),
        ];
        for (section, tls, limits) in sections {
            if *tls != GrpcServerTls::default() {
                return Err(ConfigError::invalid(
                    format!("{section}.grpc_tls"),
                    "sipcapture up has one listener: use the top-level [grpc_tls]",
                ));
            }
            if *limits != GrpcLimits::default() {
                return Err(ConfigError::invalid(
                    format!("{section}.grpc_limits"),
                    "sipcapture up has one listener: use the top-level [grpc_limits]",
                ));
            }
        }
        if self.grpc_tls.client_ca.is_some()
            && !self.collector.service.grpc_client_tls.has_identity()
        {
            return Err(ConfigError::invalid(
                "collector.grpc_client_tls.cert",
                "grpc_tls.client_ca requires client certificates, so the internal collector \
                 link needs one (collector.grpc_client_tls.cert and .key)",
            ));
        }
        sipcapture_runtime::telemetry::validate_log_level(&self.log_level)?;
        Ok(())
    }
}

/// Where the in-process collector reaches the listener: loopback for a wildcard address.
pub fn loopback_url(listen: SocketAddr) -> String {
    loopback_url_with(listen, "http")
}

/// Delivery lanes of the all-in-one when `collector.storer_lanes` is not set (0): a database
/// server takes batches of several lanes at once (one connection each; measured on 2 cores:
/// PostgreSQL 28.9k → 38.8k rows/s, HOMER 7 15.9k → 29.2k, docs/BENCHMARKS.md), so one lane
/// per core, 2 to 4; SQLite has one writer, so one lane.
pub fn default_lanes(configured: usize, db_url: &str, cores: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    let server = ["postgres:", "postgresql:", "mysql:", "mariadb:"]
        .iter()
        .any(|scheme| db_url.to_ascii_lowercase().starts_with(scheme));
    if server { cores.clamp(2, 4) } else { 1 }
}

fn loopback_ip(listen: SocketAddr) -> IpAddr {
    match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

fn loopback_url_with(listen: SocketAddr, scheme: &str) -> String {
    format!(
        "{scheme}://{}",
        SocketAddr::new(loopback_ip(listen), listen.port())
    )
}

/// Start-up failures of the all-in-one.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// Bad config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Storer start-up.
    #[error(transparent)]
    Storer(#[from] sipcapture_storer::StorerError),
    /// Collector start-up: HEP listeners, the spool.
    #[error(transparent)]
    Collector(#[from] sipcapture_collector::CollectorError),
    /// gRPC.
    #[error(transparent)]
    Serve(#[from] sipcapture_runtime::server::ServeError),
    /// The `/metrics` endpoint.
    #[error(transparent)]
    Metrics(#[from] sipcapture_runtime::metrics::MetricsError),
}

/// What a started all-in-one exposes (tests read the bound addresses).
#[derive(Debug, Clone, Copy)]
pub struct UpAddrs {
    /// gRPC.
    pub grpc: SocketAddr,
    /// HEP UDP.
    pub hep_udp: Option<SocketAddr>,
    /// HEP TCP.
    pub hep_tcp: Option<SocketAddr>,
}

/// Runs the all-in-one until `shutdown` is cancelled; `ready` receives the bound addresses.
pub async fn run(
    mut config: UpConfig,
    shutdown: CancellationToken,
    ready: Option<tokio::sync::oneshot::Sender<UpAddrs>>,
) -> Result<(), UpError> {
    config.validate()?;
    let listener = sipcapture_runtime::server::bind(config.grpc_listen).await?;
    let grpc_addr =
        listener
            .local_addr()
            .map_err(|error| sipcapture_runtime::server::ServeError::Bind {
                addr: config.grpc_listen,
                error,
            })?;
    if config.grpc_tls.enabled() {
        // The internal link goes through the same TLS listener; by default it trusts the
        // listener's own certificate chain.
        config.collector.storer = vec![loopback_url_with(grpc_addr, "https")];
        if config.collector.service.grpc_client_tls.ca.is_none() {
            config.collector.service.grpc_client_tls.ca = config.grpc_tls.cert.clone();
        }
        if let Some(cert) = &config.grpc_tls.cert {
            sipcapture_runtime::tls::check_trust(
                &config.collector.service.grpc_client_tls,
                "collector.grpc_client_tls",
                cert,
                &loopback_ip(grpc_addr).to_string(),
            )
            .map_err(|e| UpError::Config(e.into_config()))?;
        }
    } else {
        config.collector.storer = vec![loopback_url(grpc_addr)];
    }
    config.collector.storer_lanes = default_lanes(
        config.collector.storer_lanes,
        &config.storer.db_url,
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
    );
    config.share_storer_token();
    config.collector.service.capture_on =
        config.collector.service.capture_on && config.storer.service.capture_on;

    // One member: collector and storer obey the same switch.
    let switch = Arc::new(CaptureSwitch::new(config.collector.service.capture_on));
    let server_stop = CancellationToken::new();
    let server_stop_serving = server_stop.clone();
    let storer = Storer::build(&config.storer, switch.clone(), server_stop.clone()).await?;
    let collector = Collector::build(&config.collector, switch.clone())?;
    let collector_counters = collector.counters.clone();
    let status = StatusServer::new(
        format!("allinone-{}", sipcapture_runtime::config::host_name()),
        MemberKind::AllInOne,
        switch.clone(),
        vec![collector_counters.clone(), storer.counters.clone()],
    );
    config.control.service.capture_on = config.collector.service.capture_on;
    let control = sipcapture_control::build(&config.control, &server_stop);
    sipcapture_runtime::metrics::serve_if(
        config.metrics_listen,
        vec![
            collector_counters.clone(),
            storer.counters.clone(),
            control.counters.clone(),
        ],
        &server_stop,
    )
    .await?;
    sipcapture_storer::serve_web(&config.storer, &server_stop).await?;
    control
        .registry
        .add(MemberLink::Local(status.clone()), Origin::Local);
    // A saved desired status (control state file) wins over the config at start-up.
    switch.apply_desired(&control.desired.desired_for(status.member_id(), "local"));
    let status = status.with_auth(config.control.service.authorizer(Role::Admin));
    config
        .storer
        .service
        .warn_if_exposed(grpc_addr, config.grpc_tls.enabled());
    let options = ServeOptions::new(SERVICE_NAMES, config.storer.service.max_grpc_calls)
        .with_grpc_tls(
            &config.grpc_tls,
            config.grpc_limits,
            storer.counters.clone(),
            &server_stop,
        )
        .map_err(|e| UpError::Config(e.into_config()))?;
    let options = ServeOptions {
        readiness: Some(storer.readiness.clone()),
        ..options
    };

    let limits = config.grpc_limits;
    let mut routes = tonic::service::RoutesBuilder::default();
    storer.add_services(&mut routes, Some(status), &limits);
    routes.add_service(
        ControlServiceServer::new(ControlServer::new(control))
            .max_decoding_message_size(limits.max_decoding_message_size)
            .max_encoding_message_size(limits.max_encoding_message_size),
    );
    // The HEP inputs are bound before the server answers health checks: a caller that waits
    // for SERVING can send HEP at once (the collector's storer link waits in the listener's
    // backlog until the server runs).
    let pipeline = collector.start()?;
    let mut server = tokio::spawn(async move {
        sipcapture_runtime::server::serve_with(listener, routes, &options, server_stop_serving)
            .await
    });

    tracing::info!(
        grpc = %grpc_addr,
        hep_udp = ?pipeline.bound.udp,
        hep_tcp = ?pipeline.bound.tcp,
        db = %sipcapture_storer::redact(&config.storer.db_url),
        "sipcapture up: capturing"
    );
    if let Some(ready) = ready {
        let _receiver_gone = ready.send(UpAddrs {
            grpc: grpc_addr,
            hep_udp: pipeline.bound.udp,
            hep_tcp: pipeline.bound.tcp,
        });
    }

    // Wait for the shutdown signal, or for the server to stop on its own (then report why
    // after stopping the inputs).
    let early = tokio::select! {
        () = shutdown.cancelled() => None,
        joined = &mut server => Some(joined),
    };
    // Order: inputs stop and the exporter delivers what it holds to the (still serving)
    // storer; then the server and the storer streams close.
    pipeline.shutdown().await;
    server_stop.cancel();
    let joined = match early {
        Some(joined) => {
            tracing::error!("grpc server stopped unexpectedly");
            joined
        }
        None => server.await,
    };
    match joined {
        Ok(result) => result?,
        Err(e) => tracing::error!(error = %e, "grpc server task failed"),
    }
    tracing::info!("sipcapture up: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_databases_get_a_lane_per_core() {
        assert_eq!(default_lanes(0, "sqlite://sipcapture.db", 8), 1);
        assert_eq!(default_lanes(0, "postgres://u@h/db", 1), 2);
        assert_eq!(default_lanes(0, "postgres://u@h/db", 2), 2);
        assert_eq!(default_lanes(0, "MariaDB://u@h/db", 16), 4);
        assert_eq!(
            default_lanes(3, "sqlite://x.db", 2),
            3,
            "a configured count wins"
        );
    }

    #[test]
    fn flat_keys_reach_every_section() {
        assert_eq!(
            resolve_key("capture_node"),
            vec!["collector.capture_node", "storer.capture_node"]
        );
        assert_eq!(resolve_key("insert_retries"), vec!["storer.insert_retries"]);
        assert_eq!(
            resolve_key("grpc_listen"),
            vec![
                "grpc_listen",
                "collector.grpc_listen",
                "storer.grpc_listen",
                "control.grpc_listen"
            ]
        );
        assert!(resolve_key("no_such_key").is_empty());
        assert_eq!(resolve_key("storer.db_url"), vec!["storer.db_url"]);
    }

    #[test]
    fn load_applies_sets_and_flags() {
        let sources = Sources {
            file: None,
            sets: vec![
                "capture_node=sbc7".into(),
                "insert_retries=3".into(),
                "mt_mode=hash".into(),
            ],
            flags: vec![],
            env: false,
        };
        let flags = UpFlags {
            db_url: Some("sqlite://x.db".into()),
            ..Default::default()
        };
        let cfg = load(sources, &flags).unwrap();
        assert_eq!(cfg.collector.capture_node, "sbc7");
        assert_eq!(cfg.storer.capture_node, "sbc7");
        assert_eq!(cfg.storer.insert_retries, 3);
        assert_eq!(cfg.storer.db_url, "sqlite://x.db");
    }

    #[test]
    fn kamailio_flat_names_work_in_the_file_like_in_set() {
        let dir = std::env::temp_dir().join(format!("sipcapture-up-flat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("up.toml");
        std::fs::write(
            &file,
            "insert_retries = 3\ncapture_node = \"sbc9\"\nmt_mode = \"hash\"\n\
             [storer]\ncapture_node = \"storer-own\"\n",
        )
        .unwrap();
        let sources = Sources {
            file: Some(file),
            sets: vec![],
            flags: vec![],
            env: false,
        };
        let cfg = load(sources, &UpFlags::default()).unwrap();
        assert_eq!(cfg.storer.insert_retries, 3);
        assert_eq!(cfg.collector.capture_node, "sbc9");
        // The section's own value is more specific and wins over the flat one.
        assert_eq!(cfg.storer.capture_node, "storer-own");
        std::fs::write(dir.join("up.toml"), "insert_retriez = 3\n").unwrap();
        let sources = Sources {
            file: Some(dir.join("up.toml")),
            ..Sources::default()
        };
        let err = load(sources, &UpFlags::default()).unwrap_err().to_string();
        assert!(
            err.contains("insert_retriez") && err.contains("up.toml"),
            "{err}"
        );
        assert!(!err.contains(".rs:"), "no source-code locations: {err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_values_name_the_key() {
        let sources = Sources {
            file: None,
            sets: vec!["insert_retries=501".into()],
            flags: vec![],
            env: false,
        };
        let err = load(sources, &UpFlags::default()).unwrap_err().to_string();
        assert!(err.contains("storer.insert_retries"), "{err}");
        let sources = Sources {
            file: None,
            sets: vec!["mt_mode=random".into()],
            flags: vec![],
            env: false,
        };
        let err = load(sources, &UpFlags::default()).unwrap_err().to_string();
        assert!(err.contains("mt_mode"), "{err}");
    }

    #[test]
    fn loopback_for_wildcards() {
        assert_eq!(
            loopback_url("0.0.0.0:9061".parse().unwrap()),
            "http://127.0.0.1:9061"
        );
        assert_eq!(
            loopback_url("[::]:9061".parse().unwrap()),
            "http://[::1]:9061"
        );
        assert_eq!(
            loopback_url("10.1.2.3:9061".parse().unwrap()),
            "http://10.1.2.3:9061"
        );
    }
}
