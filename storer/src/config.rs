//! The storer's one typed config (TOML file + `SIPCAPTURE_*` env + `--set` + flags), validated at
//! start-up with errors that name the key. Kamailio's modparam names are used where they mean the
//! same thing.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sipcapture_runtime::config::{ConfigError, de};
use sipcapture_runtime::service::ServiceConfig;

pub use crate::pipeline::rules::{HeaderMatchConfig, MatchConfig, RouteRuleConfig};

use crate::pipeline::mode::{DEFAULT_MODE, HashSource, ModeSpec, MtMode, StorageSchema};
use crate::pipeline::route::Homer7Partitions;
use crate::pipeline::rules::Rules;
use crate::table::{DatedPattern, Partitioning, TablePattern};

/// Kamailio's `insert_retries` range.
pub const MAX_INSERT_RETRIES: u32 = 500;
/// Kamailio's `insert_retry_timeout` range, seconds.
pub const MAX_INSERT_RETRY_TIMEOUT: u64 = 300;
/// Kamailio's default `table_name`.
pub const DEFAULT_TABLE_NAME: &str = "sip_capture";
/// Smallest `max_msg_size` (a SIP message with its headers must fit).
pub const MIN_MSG_SIZE: usize = 1024;
/// Largest `max_msg_size` (MySQL's `raw` is a MEDIUMTEXT: 16 MiB).
pub const MAX_MSG_SIZE: usize = 8 * 1024 * 1024;

/// Storer configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorerConfig {
    /// This storer's id, reported to collectors and control. Default: `storer-<hostname>`.
    pub storer_id: String,
    /// The keys every service shares (gRPC listener, TLS, auth token, capture_on, logs,
    /// metrics; flat in the file as before, or `[service]`). The storer's `auth_token` is required on StatusService.SetStatus and sent to control.
    pub service: ServiceConfig,
    /// Control service URL to register with (optional): the storer keeps a Watch stream open and
    /// applies the fleet's capture status.
    pub control: Option<String>,
    /// URL control uses to reach this storer's StatusService (default: the address control sees
    /// the storer connect from, with the `grpc_listen` port).
    pub advertise_url: Option<String>,
    /// Database URL of the default capture mode (Kamailio `db_url`): `sqlite://FILE`,
    /// `postgres://user@host/db`, `mysql://user@host/db`.
    pub db_url: String,
    /// Table name list of the default mode (Kamailio `table_name`, `a|b|c`, strftime allowed;
    /// default `sip_capture`). Used for SIP records that no routing rule sends to a table when
    /// the HOMER 5 split is off — which it is when `table_name` is set and `homer5_split` is not.
    pub table_name: Option<String>,
    /// Table choice among `table_name` entries (Kamailio `mt_mode`): rand, round_robin, hash.
    pub mt_mode: MtMode,
    /// Hash input for `mt_mode = hash` (Kamailio `hash_source`): call_id, from_user, to_user.
    pub hash_source: HashSource,
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
    /// Kamailio's HOMER 5 split: SIP records no rule routes go to the call / registration / rest
    /// tables (`sip_capture_{call,registration,rest}_%Y%m%d`). When false, they go to the
    /// default mode's `table_name`. Unset: on, unless `table_name` is set (an explicit table
    /// list is used, as in Kamailio); see [`StorerConfig::homer5_split_in_effect`].
    #[serde(default, deserialize_with = "de::opt_flag")]
    pub homer5_split: Option<bool>,
    /// Table for RTCP JSON reports (HEP type 5).
    pub rtcp_table: String,
    /// Table for HEP types 32, 99 and every non-SIP type without a table of its own.
    pub report_table: String,
    /// Table for logs (HEP type 100).
    pub logs_table: String,
    /// Named capture modes (Kamailio `capture_mode`): either TOML tables
    /// (`[capture_mode.cap1]` with `db_url`, `table_name`, `mt_mode`, `hash_source`,
    /// `db_max_connections`) or a list of Kamailio one-line definitions
    /// (`"cap1=>db_url=...;table_name=a|b;mt_mode=hash;hash_source=call_id"`). A record's
    /// `routing.capture_mode` or a routing rule picks one; `default` is the top-level keys.
    pub capture_mode: CaptureModes,
    /// Routing rules, tried in order; the first that matches decides (`[[route]]` with a `match`
    /// table and `table`, `capture_mode` or `drop`). Records no rule matches get the default:
    /// the HOMER 5 split (`homer5_split`) or the default mode's `table_name`.
    pub route: Vec<RouteRuleConfig>,
    /// Drop dated tables older than this many days (0: never). Checked at start-up and every
    /// `retention_interval` seconds on every capture mode's database.
    pub retention_days: u32,
    /// Dated table patterns retention applies to, in addition to every dated pattern of the
    /// capture modes' `table_name` lists and routing rules. Each must hold a full date
    /// (`%Y%m%d`, `%F`, ...).
    pub retention_tables: Vec<String>,
    /// Seconds between retention sweeps.
    pub retention_interval: u64,
    /// Table layout of the default capture mode: `homer5` (Kamailio's `sip_capture_*` tables)
    /// or `homer7` (heplify-server's `hep_proto_*` tables with JSON headers, read by
    /// homer-app). A named mode may set its own.
    pub schema: StorageSchema,
    /// HOMER 7: minutes per partition of the SIP tables (`hep_proto_1_*`; heplify's `DBPartSip`).
    pub partition_sip_minutes: u32,
    /// HOMER 7: minutes per partition of RTCP, report, DNS and ISUP tables (`DBPartQos`).
    pub partition_qos_minutes: u32,
    /// HOMER 7: minutes per partition of the log table (`hep_proto_100_default`, `DBPartLog`).
    pub partition_log_minutes: u32,
    /// HOMER 7: days of partitions created ahead (after today's), so no DDL waits at the
    /// turn of a partition; rows of any other time get their partition when they arrive.
    pub partition_ahead_days: u32,
    /// HOMER 7 on PostgreSQL: most partitions a storer creates or keeps per capture mode
    /// (packet times come from the senders; each new time span is a table with its indexes).
    /// Rows whose partition would exceed it are refused and counted
    /// (`partitions_refused`, `dropped{reason="row_rejected"}`); retention frees room. Default
    /// 20 000: the 8 tables for about 10 months at the default partition lengths.
    pub max_partitions: usize,
    /// Most new tables a minute that records dated outside the current days may cause
    /// (token bucket: at most 10 at once, refilled at this many a minute; 0: no limit). Records of
    /// today and yesterday (UTC) and records of `sipcapture import` are exempt; a record over
    /// the budget is dropped and counted (`dropped{reason="table_budget"}`). Each dated table
    /// is a table with its indexes, and packet times come from the senders. Default 60.
    pub max_new_tables_per_minute: u32,
    /// Seconds after now beyond which a live record's capture time is refused
    /// (`dropped{reason="future_date"}`): it would create a table no retention reaches.
    /// `sipcapture import` records are exempt. 0: no limit. Default 86400 (1 day).
    pub future_horizon: u64,
    /// Most bytes of a message stored in `msg` (HOMER 5) or `raw` (HOMER 7); a longer one is
    /// cut to it and counted (`msg_truncated`), the row kept. Default 65536 (Kamailio's
    /// receive buffer: it never stores a longer message).
    pub max_msg_size: usize,
    /// HOMER 7: the `data_header` keys of `custom_field1`..`custom_field3` (the values of the
    /// collector's `custom_field*_header` headers); an empty or missing entry leaves the field
    /// out, as heplify-server does for headers it was not told to keep.
    pub homer7_custom_fields: Vec<String>,
    /// Drop a SIP message whose exact bytes were already stored from another capture point
    /// within `dedup_window` (the same packet captured twice; heplify-server's `Dedup`).
    /// Retransmissions seen at the same capture point are kept. Counted as
    /// `records_discarded_total{reason="duplicate"}`.
    #[serde(deserialize_with = "de::flag")]
    pub dedup: bool,
    /// Seconds (fractions allowed) within which a second copy counts as a duplicate.
    pub dedup_window: f64,
    /// Most messages remembered for `dedup` (older ones are forgotten first; a full memory is
    /// counted in `dedup_evicted_total`).
    pub dedup_max_entries: usize,
    /// Serve the read-only web page (search, call list, ladder) on this address; off when
    /// unset. It takes `auth_token` like gRPC (HTTP Basic password or Bearer). Off by default.
    pub web_listen: Option<std::net::SocketAddr>,
    /// Allow `web_listen` on a non-loopback address without an `auth_token` (captured SIP is
    /// personal data: refused unless this says so).
    #[serde(deserialize_with = "de::flag")]
    pub web_allow_anonymous: bool,
}

/// Named capture modes, in either accepted shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CaptureModes {
    /// `[capture_mode.NAME]` tables.
    Table(BTreeMap<String, ModeConfig>),
    /// Kamailio's one-line syntax, one string per mode.
    Kamailio(Vec<String>),
}

impl Default for CaptureModes {
    fn default() -> Self {
        CaptureModes::Table(BTreeMap::new())
    }
}

impl<'de> Deserialize<'de> for CaptureModes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ModesVisitor;
        impl<'de> Visitor<'de> for ModesVisitor {
            type Value = CaptureModes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a table of modes ([capture_mode.NAME]) or a list of Kamailio \
                     \"name=>db_url=...;table_name=...\" strings",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CaptureModes, A::Error> {
                BTreeMap::deserialize(MapAccessDeserializer::new(map)).map(CaptureModes::Table)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<CaptureModes, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(CaptureModes::Kamailio)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CaptureModes, E> {
                Ok(CaptureModes::Kamailio(vec![v.to_owned()]))
            }
        }
        d.deserialize_any(ModesVisitor)
    }
}

/// One named capture mode as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeConfig {
    /// The mode's database (`sqlite://`, `postgres://`, `mysql://`).
    pub db_url: String,
    /// Its table list (`a|b|c`, strftime allowed; optional for a `homer7` mode).
    #[serde(default)]
    pub table_name: String,
    /// `rand`, `round_robin` or `hash` (case-sensitive, as Kamailio).
    #[serde(default = "default_mt_mode")]
    pub mt_mode: String,
    /// `call_id`, `from_user` or `to_user` (case-insensitive, as Kamailio).
    #[serde(default = "default_hash_source")]
    pub hash_source: String,
    /// Pool size of this mode (default: the top-level `db_max_connections`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_max_connections: Option<u32>,
    /// `homer5` or `homer7` (default: the top-level `schema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
}

fn default_mt_mode() -> String {
    "rand".to_owned()
}

fn default_hash_source() -> String {
    "call_id".to_owned()
}

/// Parses Kamailio's one-line mode definition `name=>key=value;key=value[;]` (behaviour doc §3).
/// Unlike Kamailio, a trailing `;` is accepted and unknown keys are refused (named in the error).
pub fn parse_mode_line(line: &str, key: &str) -> Result<(String, ModeConfig), ConfigError> {
    let Some((name, params)) = line.split_once("=>") else {
        return Err(ConfigError::invalid(
            key,
            format!("{line:?} is not `name=>db_url=...;table_name=...`"),
        ));
    };
    let name = name.trim().to_owned();
    let mut mode = ModeConfig {
        db_url: String::new(),
        table_name: String::new(),
        mt_mode: default_mt_mode(),
        hash_source: default_hash_source(),
        db_max_connections: None,
        schema: None,
    };
    for param in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = param.split_once('=') else {
            return Err(ConfigError::invalid(
                format!("capture_mode.{name}"),
                format!("parameter {param:?} is not key=value"),
            ));
        };
        let v = v.trim().trim_matches('"').to_owned();
        match k.trim() {
            "db_url" => mode.db_url = v,
            "table_name" => mode.table_name = v,
            "mt_mode" => mode.mt_mode = v,
            "hash_source" => mode.hash_source = v,
            "schema" => mode.schema = Some(v),
            other => {
                return Err(ConfigError::invalid(
                    format!("capture_mode.{name}.{other}"),
                    "unknown parameter (db_url, table_name, mt_mode, hash_source, schema)",
                ));
            }
        }
    }
    let schema = match mode.schema.as_deref() {
        None => None,
        Some(raw) => Some(StorageSchema::parse(raw).ok_or_else(|| {
            ConfigError::invalid(
                format!("capture_mode.{name}.schema"),
                format!("{raw:?} is not homer5 or homer7"),
            )
        })?),
    };
    let homer7 = schema == Some(StorageSchema::Homer7);
    for (field, value) in [("db_url", &mode.db_url), ("table_name", &mode.table_name)] {
        // A HOMER 7 mode's tables are heplify-server's: its table list is not needed.
        if value.is_empty() && !(homer7 && field == "table_name") {
            return Err(ConfigError::invalid(
                format!("capture_mode.{name}.{field}"),
                "is required",
            ));
        }
    }
    Ok((name, mode))
}

impl Default for StorerConfig {
    fn default() -> Self {
        StorerConfig {
            storer_id: format!("storer-{}", sipcapture_runtime::config::host_name()),
            service: ServiceConfig::listening_on(SocketAddr::from(([0, 0, 0, 0], 9063))),
            control: None,
            advertise_url: None,
            db_url: "sqlite://sipcapture.db".to_owned(),
            table_name: None,
            mt_mode: MtMode::Rand,
            hash_source: HashSource::CallId,
            capture_node: "homer01".to_owned(),
            insert_retries: 0,
            insert_retry_timeout: 60,
            db_insert_mode: 0,
            db_max_connections: 8,
            homer5_split: None,
            rtcp_table: "rtcp_capture".to_owned(),
            report_table: "report_capture".to_owned(),
            logs_table: "logs_capture".to_owned(),
            capture_mode: CaptureModes::default(),
            route: Vec::new(),
            retention_days: 0,
            retention_tables: vec![
                "sip_capture_call_%Y%m%d".to_owned(),
                "sip_capture_registration_%Y%m%d".to_owned(),
                "sip_capture_rest_%Y%m%d".to_owned(),
            ],
            retention_interval: 3600,
            schema: StorageSchema::Homer5,
            partition_sip_minutes: 120,
            partition_qos_minutes: 360,
            partition_log_minutes: 120,
            partition_ahead_days: 1,
            max_partitions: 20_000,
            max_new_tables_per_minute: 60,
            future_horizon: 86_400,
            max_msg_size: 65_536,
            homer7_custom_fields: Vec::new(),
            dedup: false,
            dedup_window: 2.0,
            dedup_max_entries: 1_000_000,
            web_listen: None,
            web_allow_anonymous: false,
        }
    }
}

impl StorerConfig {
    /// The default mode's table list: `table_name`, or Kamailio's default `sip_capture`.
    pub fn default_table_name(&self) -> &str {
        self.table_name.as_deref().unwrap_or(DEFAULT_TABLE_NAME)
    }

    /// Whether SIP records no rule routes take the HOMER 5 split: `homer5_split` when set,
    /// else on unless `table_name` is set (an explicit table list is not silently ignored).
    pub fn homer5_split_in_effect(&self) -> bool {
        self.homer5_split.unwrap_or(self.table_name.is_none())
    }

    /// The table choice for SIP records no rule routes, for the start-up log.
    pub fn default_table_choice(&self) -> String {
        let why = match (self.homer5_split, &self.table_name) {
            (Some(_), _) => "homer5_split is set",
            (None, Some(_)) => "table_name is set and homer5_split is not",
            (None, None) => "default: neither table_name nor homer5_split is set",
        };
        if self.homer5_split_in_effect() {
            format!("HOMER 5 split (sip_capture_call/registration/rest_%Y%m%d) because {why}")
        } else {
            let mt_mode = match self.mt_mode {
                MtMode::Rand => "rand",
                MtMode::RoundRobin => "round_robin",
                MtMode::Hash => "hash",
            };
            format!(
                "table_name {:?} (mt_mode {mt_mode}) because {why}",
                self.default_table_name()
            )
        }
    }

    /// Checks ranges and patterns; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.service.validate()?;
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
        TablePattern::parse_list(self.default_table_name())
            .map_err(|e| ConfigError::invalid("table_name", e.to_string()))?;
        for (key, table) in [
            ("rtcp_table", &self.rtcp_table),
            ("report_table", &self.report_table),
            ("logs_table", &self.logs_table),
        ] {
            TablePattern::parse(table).map_err(|e| ConfigError::invalid(key, e.to_string()))?;
        }
        let modes = self.modes()?;
        Rules::compile(&self.route, &modes)?;
        for (i, pattern) in self.retention_tables.iter().enumerate() {
            DatedPattern::parse(pattern)
                .map_err(|e| ConfigError::invalid(format!("retention_tables[{i}]"), e))?;
        }
        if self.retention_interval == 0 {
            return Err(ConfigError::invalid(
                "retention_interval",
                "must be at least 1 second",
            ));
        }
        self.homer7_partitions()?;
        if self.partition_ahead_days > 31 {
            return Err(ConfigError::invalid(
                "partition_ahead_days",
                format!("{} is out of range 0..=31", self.partition_ahead_days),
            ));
        }
        if self.max_partitions == 0 {
            return Err(ConfigError::invalid("max_partitions", "must be at least 1"));
        }
        if !(MIN_MSG_SIZE..=MAX_MSG_SIZE).contains(&self.max_msg_size) {
            return Err(ConfigError::invalid(
                "max_msg_size",
                format!(
                    "{} is out of range {MIN_MSG_SIZE}..={MAX_MSG_SIZE} bytes",
                    self.max_msg_size
                ),
            ));
        }
        if self.homer7_custom_fields.len() > 3 {
            return Err(ConfigError::invalid(
                "homer7_custom_fields",
                "at most 3 names (custom_field1, custom_field2, custom_field3)",
            ));
        }
        for (i, name) in self.homer7_custom_fields.iter().enumerate() {
            let reserved = crate::pipeline::rows::HEP_SIP_KEYS.contains(&name.as_str());
            if reserved
                || name.len() > 64
                || name
                    .chars()
                    .any(|c| c.is_control() || c == '"' || c == '\\')
            {
                return Err(ConfigError::invalid(
                    format!("homer7_custom_fields[{i}]"),
                    format!(
                        "{name:?} is not usable as a data_header key (a standard key, a quote, a backslash, a control character or over 64 bytes)"
                    ),
                ));
            }
        }
        if !(self.dedup_window.is_finite() && (0.0..=3600.0).contains(&self.dedup_window)) {
            return Err(ConfigError::invalid(
                "dedup_window",
                format!("{} is out of range 0..=3600 seconds", self.dedup_window),
            ));
        }
        if let Some(web) = self.web_listen
            && !web.ip().is_loopback()
            && self.service.auth_token.is_none()
            && !self.web_allow_anonymous
        {
            return Err(ConfigError::invalid(
                "web_listen",
                format!(
                    "{web} is not a loopback address and no auth_token is set: the page shows \
                     captured SIP (personal data). Set auth_token, listen on 127.0.0.1, or set \
                     web_allow_anonymous = true"
                ),
            ));
        }
        if self.dedup && self.dedup_max_entries == 0 {
            return Err(ConfigError::invalid(
                "dedup_max_entries",
                "must be at least 1 when dedup is on",
            ));
        }
        Ok(())
    }

    /// The HOMER 7 partition lengths; the error names the key.
    pub fn homer7_partitions(&self) -> Result<Homer7Partitions, ConfigError> {
        let of = |key: &str, minutes: u32| {
            Partitioning::minutes(minutes).map_err(|e| ConfigError::invalid(key, e))
        };
        Ok(Homer7Partitions {
            sip: of("partition_sip_minutes", self.partition_sip_minutes)?,
            qos: of("partition_qos_minutes", self.partition_qos_minutes)?,
            log: of("partition_log_minutes", self.partition_log_minutes)?,
        })
    }

    /// Every capture mode, validated: `default` (the top-level keys) first, then the named ones
    /// sorted by name. Errors name the key (`capture_mode.NAME.mt_mode`).
    pub fn modes(&self) -> Result<Vec<ModeSpec>, ConfigError> {
        let mut modes = vec![ModeSpec {
            name: DEFAULT_MODE.to_owned(),
            db_url: self.db_url.clone(),
            table_name: self.default_table_name().to_owned(),
            mt_mode: self.mt_mode,
            hash_source: self.hash_source,
            db_max_connections: self.db_max_connections,
            schema: self.schema,
        }];
        let named: Vec<(String, ModeConfig)> = match &self.capture_mode {
            CaptureModes::Table(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            CaptureModes::Kamailio(lines) => lines
                .iter()
                .enumerate()
                .map(|(i, line)| parse_mode_line(line, &format!("capture_mode[{i}]")))
                .collect::<Result<_, _>>()?,
        };
        for (name, mode) in named {
            let key = |field: &str| format!("capture_mode.{name}.{field}");
            let name_ok = !name.is_empty()
                && name.len() <= 40
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !name_ok {
                return Err(ConfigError::invalid(
                    format!("capture_mode.{name}"),
                    "a mode name has 1 to 40 characters of [A-Za-z0-9_-]",
                ));
            }
            if name == DEFAULT_MODE || modes.iter().any(|m| m.name == name) {
                return Err(ConfigError::invalid(
                    format!("capture_mode.{name}"),
                    "defined twice (`default` is the mode of the top-level keys)",
                ));
            }
            crate::db::backend_of(&mode.db_url)
                .map_err(|e| ConfigError::invalid(key("db_url"), e.to_string()))?;
            let schema = match &mode.schema {
                None => self.schema,
                Some(raw) => StorageSchema::parse(raw).ok_or_else(|| {
                    ConfigError::invalid(key("schema"), format!("{raw:?} is not homer5 or homer7"))
                })?,
            };
            // A HOMER 7 mode writes heplify-server's tables; a table list is optional.
            let table_name = if mode.table_name.trim().is_empty() && schema == StorageSchema::Homer7
            {
                "hep_proto_1_default".to_owned()
            } else {
                mode.table_name
            };
            TablePattern::parse_list(&table_name)
                .map_err(|e| ConfigError::invalid(key("table_name"), e.to_string()))?;
            let mt_mode = MtMode::parse(&mode.mt_mode).ok_or_else(|| {
                ConfigError::invalid(
                    key("mt_mode"),
                    format!("{:?} is not rand, round_robin or hash", mode.mt_mode),
                )
            })?;
            let hash_source = HashSource::parse(&mode.hash_source).ok_or_else(|| {
                ConfigError::invalid(
                    key("hash_source"),
                    format!(
                        "{:?} is not call_id, from_user or to_user",
                        mode.hash_source
                    ),
                )
            })?;
            let db_max_connections = mode.db_max_connections.unwrap_or(self.db_max_connections);
            if db_max_connections == 0 {
                return Err(ConfigError::invalid(
                    key("db_max_connections"),
                    "must be at least 1",
                ));
            }
            modes.push(ModeSpec {
                name,
                db_url: mode.db_url,
                table_name,
                mt_mode,
                hash_source,
                db_max_connections,
                schema,
            });
        }
        Ok(modes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> StorerConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn an_explicit_table_name_turns_the_homer5_split_off_unless_it_is_set() {
        let default = StorerConfig::default();
        assert!(default.homer5_split_in_effect());
        assert_eq!(default.default_table_name(), "sip_capture");
        assert!(default.default_table_choice().starts_with("HOMER 5 split"));

        let shards = parse("table_name = \"shard_a|shard_b|shard_c\"\nmt_mode = \"hash\"\n");
        assert!(!shards.homer5_split_in_effect());
        assert_eq!(shards.default_table_name(), "shard_a|shard_b|shard_c");
        let choice = shards.default_table_choice();
        assert!(choice.contains("\"shard_a|shard_b|shard_c\""), "{choice}");
        assert!(choice.contains("table_name is set"), "{choice}");
        assert_eq!(
            shards.modes().unwrap()[0].table_name,
            "shard_a|shard_b|shard_c"
        );

        // Explicit homer5_split wins either way, in Kamailio's flag spellings too.
        let split = parse("table_name = \"shard_a|shard_b\"\nhomer5_split = 1\n");
        assert_eq!(split.homer5_split, Some(true));
        assert!(split.homer5_split_in_effect());
        let off = parse("homer5_split = \"off\"\n");
        assert!(!off.homer5_split_in_effect());
        assert_eq!(off.default_table_name(), "sip_capture");
        assert!(toml::from_str::<StorerConfig>("homer5_split = 2\n").is_err());
    }
}
