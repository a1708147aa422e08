//! Control's typed config, validated at start-up.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use sipcapture_proto::config::ConfigError;

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
    /// Per-member call deadline for SetStatus / Check fan-out, milliseconds.
    pub member_timeout_ms: u64,
    /// Desired capture state at start-up.
    #[serde(deserialize_with = "sipcapture_proto::config::de::flag")]
    pub capture_on: bool,
    /// Maximum concurrent gRPC calls.
    pub max_grpc_calls: usize,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            control_id: format!("control-{}", sipcapture_proto::config::host_name()),
            grpc_listen: SocketAddr::from(([0, 0, 0, 0], 9061)),
            member: Vec::new(),
            member_timeout_ms: 2000,
            capture_on: true,
            max_grpc_calls: 1024,
        }
    }
}

impl ControlConfig {
    /// Checks values; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for url in &self.member {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    "member",
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
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
