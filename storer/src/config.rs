//! The storer's one typed config (TOML file + `SIPCAPTURE_*` env + `--set` + flags), validated at
//! start-up with errors that name the key. Kamailio's modparam names are used where they mean the
//! same thing.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use sipcapture_proto::config::{ConfigError, de};

use crate::pipeline::mode::{HashSource, MtMode};

/// Kamailio's `insert_retries` range.
pub const MAX_INSERT_RETRIES: u32 = 500;
/// Kamailio's `insert_retry_timeout` range, seconds.
pub const MAX_INSERT_RETRY_TIMEOUT: u64 = 300;

/// Storer configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorerConfig {
    /// This storer's id, reported to collectors and control. Default: `storer-<hostname>`.
    pub storer_id: String,
    /// gRPC listen address (StorerService, StatusService, health, reflection).
    pub grpc_listen: SocketAddr,
    /// Control service URL to register with (optional).
    pub control: Option<String>,
    /// Database URL of the default capture mode (Kamailio `db_url`): `sqlite://FILE`,
    /// `postgres://user@host/db`, `mysql://user@host/db`.
    pub db_url: String,
    /// Table name list of the default mode (Kamailio `table_name`, `a|b|c`, strftime allowed).
    /// Used for SIP records that no routing rule sends to a table.
    pub table_name: String,
    /// Table choice among `table_name` entries (Kamailio `mt_mode`): rand, round_robin, hash.
    pub mt_mode: MtMode,
    /// Hash input for `mt_mode = hash` (Kamailio `hash_source`): call_id, from_user, to_user.
    pub hash_source: HashSource,
    /// Initial capture state (Kamailio `capture_on`). Kamailio defaults to 0; we default to on
    /// (docs/COMPATIBILITY.md).
    #[serde(deserialize_with = "de::flag")]
    pub capture_on: bool,
    /// Kamailio `capture_node`: only used for rows a storer builds itself (none today); the
    /// collector fills the `node` column.
    pub capture_node: String,
    /// Kamailio `insert_retries` (0..=500): retries of a failed insert after the first attempt.
    pub insert_retries: u32,
    /// Kamailio `insert_retry_timeout` (0..=300 s): wall-clock cap on the retries of one batch.
    pub insert_retry_timeout: u64,
    /// Kamailio `db_insert_mode` (0, 1, 2). All three insert in one multi-row transaction per
    /// batch here; see docs/COMPATIBILITY.md.
    pub db_insert_mode: u8,
    /// Maximum database connections of the default mode (SQLite always uses 1 writer).
    pub db_max_connections: u32,
    /// Kamailio's HOMER 5 split: use the default routing rules (call / registration / rest tables
    /// and report tables). When false, every SIP record goes to the default mode's `table_name`.
    #[serde(deserialize_with = "de::flag")]
    pub homer5_split: bool,
    /// Table for RTCP JSON reports (HEP type 5).
    pub rtcp_table: String,
    /// Table for HEP types 32, 99 and every non-SIP type without a table of its own.
    pub report_table: String,
    /// Table for logs (HEP type 100).
    pub logs_table: String,
    /// Maximum concurrent gRPC calls (streams included).
    pub max_grpc_calls: usize,
}

impl Default for StorerConfig {
    fn default() -> Self {
        StorerConfig {
            storer_id: format!("storer-{}", sipcapture_proto::config::host_name()),
            grpc_listen: SocketAddr::from(([0, 0, 0, 0], 9063)),
            control: None,
            db_url: "sqlite://sipcapture.db".to_owned(),
            table_name: "sip_capture".to_owned(),
            mt_mode: MtMode::Rand,
            hash_source: HashSource::CallId,
            capture_on: true,
            capture_node: "homer01".to_owned(),
            insert_retries: 0,
            insert_retry_timeout: 60,
            db_insert_mode: 0,
            db_max_connections: 8,
            homer5_split: true,
            rtcp_table: "rtcp_capture".to_owned(),
            report_table: "report_capture".to_owned(),
            logs_table: "logs_capture".to_owned(),
            max_grpc_calls: 1024,
        }
    }
}

impl StorerConfig {
    /// Checks ranges and patterns; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.insert_retries > MAX_INSERT_RETRIES {
            return Err(ConfigError::invalid(
                "insert_retries",
                format!(
                    "{} is out of range 0..={MAX_INSERT_RETRIES}",
                    self.insert_retries
                ),
            ));
        }
        if self.insert_retry_timeout > MAX_INSERT_RETRY_TIMEOUT {
            return Err(ConfigError::invalid(
                "insert_retry_timeout",
                format!(
                    "{} is out of range 0..={MAX_INSERT_RETRY_TIMEOUT} seconds",
                    self.insert_retry_timeout
                ),
            ));
        }
        if self.db_insert_mode > 2 {
            return Err(ConfigError::invalid(
                "db_insert_mode",
                format!("{} is not 0, 1 or 2", self.db_insert_mode),
            ));
        }
        crate::db::backend_of(&self.db_url)
            .map_err(|e| ConfigError::invalid("db_url", e.to_string()))?;
        if self.db_max_connections == 0 {
            return Err(ConfigError::invalid(
                "db_max_connections",
                "must be at least 1",
            ));
        }
        crate::pipeline::route::TablePattern::parse_list(&self.table_name)
            .map_err(|e| ConfigError::invalid("table_name", e.to_string()))?;
        for (key, table) in [
            ("rtcp_table", &self.rtcp_table),
            ("report_table", &self.report_table),
            ("logs_table", &self.logs_table),
        ] {
            crate::pipeline::route::TablePattern::parse(table)
                .map_err(|e| ConfigError::invalid(key, e.to_string()))?;
        }
        Ok(())
    }
}
