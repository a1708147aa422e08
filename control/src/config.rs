//! Control's typed config, validated at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sipcapture_runtime::config::ConfigError;

/// Control configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// This control instance's id.
    pub control_id: String,
    /// gRPC listen address (ControlService, health, reflection).
    pub grpc_listen: SocketAddr,
    /// Member URLs (collectors and storers serving StatusService), e.g. `http://10.0.0.5:9062`.
    pub member: Vec<String>,
    /// DNS names (`host:port`, e.g. a Kubernetes headless Service) re-resolved every
    /// `member_dns_refresh` seconds; every address becomes a member.
    pub member_dns: Vec<String>,
    /// Seconds between re-resolutions of `member_dns`.
    pub member_dns_refresh: u64,
    /// File keeping the desired status across restarts (JSON). Empty: kept in memory only.
    pub state_file: Option<PathBuf>,
    /// Bearer token required on SetStatus (also sent to members). Unset: no token needed.
    pub auth_token: Option<String>,
    /// Per-member call deadline for SetStatus / Check fan-out, milliseconds.
    pub member_timeout_ms: u64,
    /// Desired capture state at start-up.
    #[serde(deserialize_with = "sipcapture_runtime::config::de::flag")]
    pub capture_on: bool,
    /// Maximum concurrent gRPC calls.
    pub max_grpc_calls: usize,
    /// TLS of the gRPC listener (`[grpc_tls]`: `cert`, `key`, `client_ca` for mTLS,
    /// `reload_interval`, `handshake_timeout`); docs/SECURITY.md.
    pub grpc_tls: sipcapture_runtime::tls::GrpcServerTls,
    /// TLS of outgoing gRPC links to `https://` URLs (`[grpc_client_tls]`: `ca`, `cert`, `key`,
    /// `server_name`); docs/SECURITY.md.
    pub grpc_client_tls: sipcapture_runtime::tls::GrpcClientTls,
    /// gRPC listener limits (`[grpc_limits]`: message sizes, streams per connection,
    /// connections); docs/SECURITY.md.
    pub grpc_limits: sipcapture_runtime::server::GrpcLimits,
    /// Client certificate identities (subject CN or a SAN) allowed to change the fleet status
    /// (and register as members) without the bearer token (needs `grpc_tls.client_ca`).
    pub grpc_admin_identities: Vec<String>,
    /// Prometheus scrape endpoint (`GET /metrics`, text format), e.g. `0.0.0.0:9090`. Off when
    /// unset (the default). Metrics are listed in docs/METRICS.md.
    pub metrics_listen: Option<SocketAddr>,
    /// Log line format: `text` (default) or `json` (one object per line).
    pub log_format: sipcapture_runtime::telemetry::LogFormat,
    /// Log filter in `RUST_LOG` syntax (`info`, `warn,sipcapture_storer=debug`); the `RUST_LOG`
    /// env wins when set.
    pub log_level: String,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            control_id: format!("control-{}", sipcapture_runtime::config::host_name()),
            grpc_listen: SocketAddr::from(([0, 0, 0, 0], 9061)),
            member: Vec::new(),
            member_dns: Vec::new(),
            member_dns_refresh: 30,
            state_file: Some(PathBuf::from("sipcapture-control-state.json")),
            auth_token: None,
            member_timeout_ms: 2000,
            capture_on: true,
            max_grpc_calls: 1024,
            grpc_tls: sipcapture_runtime::tls::GrpcServerTls::default(),
            grpc_client_tls: sipcapture_runtime::tls::GrpcClientTls::default(),
            grpc_limits: sipcapture_runtime::server::GrpcLimits::default(),
            grpc_admin_identities: Vec::new(),
            metrics_listen: None,
            log_format: sipcapture_runtime::telemetry::LogFormat::Text,
            log_level: sipcapture_runtime::telemetry::DEFAULT_FILTER.to_owned(),
        }
    }
}

impl ControlConfig {
    /// Checks values; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        sipcapture_runtime::tls::validate_grpc(
            &self.grpc_tls,
            &self.grpc_client_tls,
            &self.grpc_limits,
        )?;
        sipcapture_runtime::telemetry::validate_log_level(&self.log_level)?;
        for url in &self.member {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    "member",
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        for name in &self.member_dns {
            let port_ok = name
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(ConfigError::invalid(
                    "member_dns",
                    format!("{name:?} is not host:port"),
                ));
            }
        }
        if self.member_dns_refresh == 0 {
            return Err(ConfigError::invalid(
                "member_dns_refresh",
                "must be at least 1",
            ));
        }
        if self.member_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "member_timeout_ms",
                "must be at least 1",
            ));
        }
        if self.max_grpc_calls == 0 {
            return Err(ConfigError::invalid("max_grpc_calls", "must be at least 1"));
        }
        Ok(())
    }
}
