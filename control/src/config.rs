//! Control's typed config, validated at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sipcapture_runtime::config::ConfigError;
use sipcapture_runtime::service::ServiceConfig;

/// Control configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// This control instance's id.
    pub control_id: String,
    /// Member URLs (collectors and storers serving StatusService), e.g. `http://10.0.0.5:9062`.
    pub member: Vec<String>,
    /// DNS names (`host:port`, e.g. a Kubernetes headless Service) re-resolved every
    /// `member_dns_refresh` seconds; every address becomes a member.
    pub member_dns: Vec<String>,
    /// Seconds between re-resolutions of `member_dns`.
    pub member_dns_refresh: u64,
    /// File keeping the desired status across restarts (JSON). Empty: kept in memory only.
    pub state_file: Option<PathBuf>,
    /// The keys every service shares (gRPC listener, TLS, auth, logs, metrics; flat in the
    /// file as before, or `[service]`). Control's `auth_token` is required on SetStatus and sent
    /// to members; its `capture_on` is the desired state at start-up.
    pub service: ServiceConfig,
    /// Per-member call deadline for SetStatus / Check fan-out, milliseconds.
    pub member_timeout_ms: u64,
    /// Members registered through Watch kept at most (configured and DNS members do not
    /// count); a registration beyond it is refused (RESOURCE_EXHAUSTED) and counted in
    /// `sipcapture_control_registrations_refused_total{reason="full"}`.
    pub max_registered_members: usize,
    /// Seconds a registered member whose Watch stream ended is still reported (unreachable,
    /// never dialled) before it leaves the registry; 0 removes it at once. A departed member
    /// also makes room for a new registration when the registry is full.
    pub registered_member_linger_secs: u64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            control_id: format!("control-{}", sipcapture_runtime::config::host_name()),
            member: Vec::new(),
            member_dns: Vec::new(),
            member_dns_refresh: 30,
            service: ServiceConfig::listening_on(SocketAddr::from(([0, 0, 0, 0], 9061))),
            state_file: Some(PathBuf::from("sipcapture-control-state.json")),
            member_timeout_ms: 2000,
            max_registered_members: 256,
            registered_member_linger_secs: 60,
        }
    }
}

impl ControlConfig {
    /// Checks values; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.service.validate()?;
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
        if self.max_registered_members == 0 {
            return Err(ConfigError::invalid(
                "max_registered_members",
                "must be at least 1",
            ));
        }
        if self.member_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "member_timeout_ms",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
