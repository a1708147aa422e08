//! The one place a table is chosen for a record: routing hint or default rules (the HOMER 5
//! split), then the capture mode's table list and mt_mode, then strftime with the packet's UTC
//! time (behaviour doc §3).

use sipcapture_proto::v1::{CaptureRecord, RecordKind};

use crate::pipeline::mode::{Chooser, HashSource, ModeSpec, MtMode, StorageSchema};
use crate::pipeline::rules::{Action, RouteRuleConfig, Rules};
use crate::table::{Partitioning, TableFamily, TableNameError, TablePattern, capture_time};

/// Why a table could not be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The table pattern or its expansion is not a usable table name.
    #[error(transparent)]
    Table(#[from] TableNameError),
    /// The record names a capture mode this storer does not have.
    #[error("no capture mode named {0:?}")]
    UnknownMode(String),
}

impl RouteError {
    /// Low-cardinality reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            RouteError::Table(e) => e.reason(),
            RouteError::UnknownMode(_) => "unknown_capture_mode",
        }
    }
}

/// Where one record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The capture mode (index into the mode list; 0 is the default mode).
    pub mode: usize,
    /// The expanded table name.
    pub table: String,
    /// Its schema.
    pub family: TableFamily,
    /// mt_mode hash had an empty source: stored in the first table and flagged.
    pub hash_source_empty: bool,
    /// HOMER 7 tables: the partition length of the table.
    pub partitioning: Option<Partitioning>,
}

/// What happens to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Store it there.
    Store(Route),
    /// A routing rule says `drop`: acknowledged, counted as discarded.
    Drop,
}

/// Methods the HOMER 5 config sends to `sip_capture_call_%Y%m%d` (requests by method, replies by
/// CSeq method).
const CALL_METHODS: &[&str] = &["INVITE", "ACK", "BYE", "CANCEL", "UPDATE", "PRACK", "REFER"];

/// Methods heplify-server sends to `hep_proto_1_call` (by CSeq method, requests and replies).
const HEP_CALL_METHODS: &[&str] = &[
    "INVITE", "ACK", "BYE", "CANCEL", "UPDATE", "PRACK", "REFER", "INFO", "NOTIFY",
];

/// HOMER 7 partition lengths per table kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Homer7Partitions {
    /// `hep_proto_1_*`.
    pub sip: Partitioning,
    /// RTCP, reports, DNS, ISUP.
    pub qos: Partitioning,
    /// `hep_proto_100_default`.
    pub log: Partitioning,
}

impl Default for Homer7Partitions {
    fn default() -> Self {
        let of = |m| Partitioning::minutes(m).unwrap_or(Partitioning::DAY);
        Homer7Partitions {
            sip: of(120),
            qos: of(360),
            log: of(120),
        }
    }
}

/// One capture mode's table list and choice state.
#[derive(Debug)]
struct ModeTables {
    name: String,
    schema: StorageSchema,
    tables: Vec<TablePattern>,
    mt_mode: MtMode,
    hash_source: HashSource,
    chooser: Chooser,
}

/// Table-choice rules of a storer.
#[derive(Debug)]
pub struct Router {
    modes: Vec<ModeTables>,
    rules: Rules,
    homer5_split: bool,
    call: TablePattern,
    registration: TablePattern,
    rest: TablePattern,
    rtcp: TablePattern,
    report: TablePattern,
    logs: TablePattern,
    partitions: Homer7Partitions,
}

/// What a [`Router`] is built from.
#[derive(Debug, Clone)]
pub struct RouterConfig<'a> {
    /// Every capture mode, the default one first (see `StorerConfig::modes`).
    pub modes: &'a [ModeSpec],
    /// Routing rules as configured.
    pub rules: &'a [RouteRuleConfig],
    /// HOMER 5 call / registration / rest split on.
    pub homer5_split: bool,
    /// RTCP table.
    pub rtcp_table: &'a str,
    /// Report table.
    pub report_table: &'a str,
    /// Logs table.
    pub logs_table: &'a str,
    /// HOMER 7 partition lengths.
    pub partitions: Homer7Partitions,
}

/// Why a router could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RouterBuildError {
    /// A table pattern is invalid.
    #[error("{key}: {source}")]
    Pattern {
        /// The config key.
        key: String,
        /// The problem.
        source: TableNameError,
    },
    /// A routing rule is invalid.
    #[error(transparent)]
    Rules(#[from] sipcapture_runtime::config::ConfigError),
}

impl Router {
    /// Builds a router; patterns and rules are validated.
    pub fn new(cfg: &RouterConfig<'_>) -> Result<Self, RouterBuildError> {
        let pattern = |key: &str, raw: &str| {
            TablePattern::parse(raw).map_err(|source| RouterBuildError::Pattern {
                key: key.to_owned(),
                source,
            })
        };
        let mut modes = Vec::with_capacity(cfg.modes.len());
        for spec in cfg.modes {
            let tables = TablePattern::parse_list(&spec.table_name).map_err(|source| {
                RouterBuildError::Pattern {
                    key: format!("capture_mode.{}.table_name", spec.name),
                    source,
                }
            })?;
            modes.push(ModeTables {
                name: spec.name.clone(),
                schema: spec.schema,
                tables,
                mt_mode: spec.mt_mode,
                hash_source: spec.hash_source,
                chooser: Chooser::default(),
            });
        }
        if modes.is_empty() {
            return Err(RouterBuildError::Pattern {
                key: "table_name".to_owned(),
                source: TableNameError::Empty,
            });
        }
        Ok(Router {
            modes,
            rules: Rules::compile(cfg.rules, cfg.modes)?,
            homer5_split: cfg.homer5_split,
            call: pattern("route", "sip_capture_call_%Y%m%d")?,
            registration: pattern("route", "sip_capture_registration_%Y%m%d")?,
            rest: pattern("route", "sip_capture_rest_%Y%m%d")?,
            rtcp: pattern("rtcp_table", cfg.rtcp_table)?,
            report: pattern("report_table", cfg.report_table)?,
            logs: pattern("logs_table", cfg.logs_table)?,
            partitions: cfg.partitions,
        })
    }

    /// Every dated table pattern this router can produce (for retention).
    pub fn dated_patterns(&self) -> Vec<&TablePattern> {
        let mut out: Vec<&TablePattern> = self
            .modes
            .iter()
            .flat_map(|m| m.tables.iter())
            .chain(self.rules.tables())
            .chain([
                &self.call,
                &self.registration,
                &self.rest,
                &self.rtcp,
                &self.report,
                &self.logs,
            ])
            .filter(|p| p.is_dated())
            .collect();
        out.dedup_by(|a, b| a == b);
        out
    }

    /// Decides what happens to one record: the collector's routing hint (Kamailio's
    /// `sip_capture(table, mode)`) wins, then the first matching routing rule, then the defaults
    /// (report tables by payload type; the HOMER 5 split or the default mode's table list).
    pub fn route(&self, record: &CaptureRecord) -> Result<Decision, RouteError> {
        let hint = record
            .routing
            .as_ref()
            .filter(|r| !r.table.is_empty() || !r.capture_mode.is_empty());
        let (table, mode) = if let Some(hint) = hint {
            let mode = if hint.capture_mode.is_empty() {
                0
            } else {
                self.modes
                    .iter()
                    .position(|m| m.name == hint.capture_mode)
                    .ok_or_else(|| RouteError::UnknownMode(hint.capture_mode.clone()))?
            };
            let table = if hint.table.is_empty() {
                None
            } else {
                Some(TablePattern::parse(&hint.table)?)
            };
            (table.map(std::borrow::Cow::Owned), mode)
        } else {
            match self.rules.decide(record) {
                Some(Action::Drop) => return Ok(Decision::Drop),
                Some(Action::Store { table, mode }) => (
                    table.as_ref().map(std::borrow::Cow::Borrowed),
                    mode.unwrap_or(0),
                ),
                None => (None, 0),
            }
        };
        let time = capture_time(record);
        let report = record.kind() == RecordKind::Report;
        let schema = self
            .modes
            .get(mode)
            .map_or(StorageSchema::Homer5, |m| m.schema);
        if schema == StorageSchema::Homer7 {
            return self.homer7_route(record, mode, table.as_deref(), report, time);
        }
        let family = if report {
            TableFamily::Report
        } else {
            TableFamily::Sip
        };
        let store = |pattern: &TablePattern, hash_source_empty: bool| {
            Ok(Decision::Store(Route {
                mode,
                table: pattern.render(time)?,
                family,
                hash_source_empty,
                partitioning: None,
            }))
        };
        // An explicit table (Kamailio's sip_capture(table)) wins; mt_mode is then ignored.
        if let Some(table) = table {
            return store(&table, false);
        }
        if family == TableFamily::Report {
            let payload_type = record.hep.as_ref().map_or(0, |h| h.payload_type);
            let pattern = match payload_type {
                5 => &self.rtcp,
                100 => &self.logs,
                _ => &self.report,
            };
            return store(pattern, false);
        }
        if mode == 0 && self.homer5_split {
            return store(self.homer5_table(record), false);
        }
        let spec = self
            .modes
            .get(mode)
            .ok_or(RouteError::Table(TableNameError::Empty))?;
        let sip = record.sip.as_ref();
        let hash_value = sip.map_or("", |sip| match spec.hash_source {
            HashSource::CallId => sip.callid.as_str(),
            HashSource::FromUser => sip.from_user.as_str(),
            HashSource::ToUser => sip.to_user.as_str(),
        });
        let choice = spec.chooser.choose(
            spec.mt_mode,
            spec.hash_source,
            hash_value,
            spec.tables.len(),
        );
        let pattern = spec
            .tables
            .get(choice.index)
            .ok_or(RouteError::Table(TableNameError::Empty))?;
        store(pattern, choice.hash_source_empty)
    }

    /// heplify-server's HOMER 7 tables with their family and partition length (created and
    /// pre-partitioned at start-up, kept by retention).
    pub fn homer7_tables(&self) -> Vec<(String, TableFamily, Partitioning)> {
        let p = self.partitions;
        [
            ("hep_proto_1_call", TableFamily::HepSip, p.sip),
            ("hep_proto_1_registration", TableFamily::HepSip, p.sip),
            ("hep_proto_1_default", TableFamily::HepSip, p.sip),
            ("hep_proto_5_default", TableFamily::HepReport, p.qos),
            ("hep_proto_35_default", TableFamily::HepReport, p.qos),
            ("hep_proto_53_default", TableFamily::HepReport, p.qos),
            ("hep_proto_54_default", TableFamily::HepReport, p.qos),
            ("hep_proto_100_default", TableFamily::HepReport, p.log),
        ]
        .into_iter()
        .map(|(name, family, length)| (name.to_owned(), family, length))
        .collect()
    }

    /// A HOMER 7 mode's table: an explicit one (rule or hint), else heplify-server's split —
    /// SIP by CSeq method into `hep_proto_1_call` / `_registration` / `_default`, other payload
    /// types into `hep_proto_<type>_default` (5 RTCP, 53 DNS, 54 ISUP, 100 logs; every other
    /// report type into `hep_proto_35_default`).
    fn homer7_route(
        &self,
        record: &CaptureRecord,
        mode: usize,
        table: Option<&TablePattern>,
        report: bool,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Result<Decision, RouteError> {
        let payload_type = crate::table::payload_type(record);
        let (family, partitioning) = if report {
            let length = if payload_type == 100 {
                self.partitions.log
            } else {
                self.partitions.qos
            };
            (TableFamily::HepReport, length)
        } else {
            (TableFamily::HepSip, self.partitions.sip)
        };
        let table = match table {
            Some(pattern) => pattern.render(time)?,
            None if report => match payload_type {
                5 => "hep_proto_5_default",
                53 => "hep_proto_53_default",
                54 => "hep_proto_54_default",
                100 => "hep_proto_100_default",
                _ => "hep_proto_35_default",
            }
            .to_owned(),
            None => {
                let method = record
                    .sip
                    .as_ref()
                    .map_or("", |sip| sip.cseq_method.as_str());
                if method == "REGISTER" {
                    "hep_proto_1_registration"
                } else if HEP_CALL_METHODS.contains(&method) {
                    "hep_proto_1_call"
                } else {
                    "hep_proto_1_default"
                }
                .to_owned()
            }
        };
        // The partition's name must be a valid identifier too.
        if table.len() + 14 > crate::table::MAX_TABLE_NAME {
            return Err(RouteError::Table(TableNameError::UnsafeName(format!(
                "{table}_YYYYMMDD_HHMM"
            ))));
        }
        Ok(Decision::Store(Route {
            mode,
            table,
            family,
            hash_source_empty: false,
            partitioning: Some(partitioning),
        }))
    }

    fn homer5_table(&self, record: &CaptureRecord) -> &TablePattern {
        let Some(sip) = &record.sip else {
            return &self.rest;
        };
        // Kamailio's $rm is the request method for requests and the CSeq method for replies.
        let method = if sip.msg_type == 1 {
            sip.method.as_str()
        } else {
            sip.cseq_method.as_str()
        };
        if method == "REGISTER" {
            &self.registration
        } else if CALL_METHODS.contains(&method) {
            &self.call
        } else {
            &self.rest
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcapture_proto::v1::{HepMeta, Routing, SipFields};

    fn spec(name: &str, tables: &str, mt: MtMode, hs: HashSource) -> ModeSpec {
        ModeSpec {
            name: name.into(),
            db_url: "sqlite::memory:".into(),
            table_name: tables.into(),
            mt_mode: mt,
            hash_source: hs,
            db_max_connections: 1,
            schema: StorageSchema::Homer5,
        }
    }

    fn router_with(split: bool, modes: &[ModeSpec], rules: &[RouteRuleConfig]) -> Router {
        Router::new(&RouterConfig {
            modes,
            rules,
            homer5_split: split,
            rtcp_table: "rtcp_capture",
            report_table: "report_capture",
            logs_table: "logs_capture",
            partitions: Homer7Partitions::default(),
        })
        .unwrap()
    }

    fn router(split: bool, tables: &str, mt: MtMode, hs: HashSource) -> Router {
        router_with(split, &[spec("default", tables, mt, hs)], &[])
    }

    fn stored(d: Result<Decision, RouteError>) -> Route {
        match d {
            Ok(Decision::Store(route)) => route,
            other => panic!("not stored: {other:?}"),
        }
    }

    fn sip(method: &str, msg_type: u32, cseq_method: &str) -> CaptureRecord {
        CaptureRecord {
            // 2026-11-26T05:00:00Z
            capture_time_us: 1_795_410_000_000_000,
            kind: RecordKind::Sip as i32,
            sip: Some(SipFields {
                msg_type,
                method: method.into(),
                cseq_method: cseq_method.into(),
                callid: "a84b4c76e66710@pc33.atlanta.com".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn homer5_split_by_method_and_cseq() {
        let r = router(true, "sip_capture", MtMode::Rand, HashSource::CallId);
        let day = capture_time(&sip("INVITE", 1, "INVITE"))
            .format("%Y%m%d")
            .to_string();
        assert_eq!(
            stored(r.route(&sip("INVITE", 1, "INVITE"))).table,
            format!("sip_capture_call_{day}")
        );
        assert_eq!(
            stored(r.route(&sip("200", 2, "BYE"))).table,
            format!("sip_capture_call_{day}")
        );
        assert_eq!(
            stored(r.route(&sip("REGISTER", 1, "REGISTER"))).table,
            format!("sip_capture_registration_{day}")
        );
        assert_eq!(
            stored(r.route(&sip("401", 2, "REGISTER"))).table,
            format!("sip_capture_registration_{day}")
        );
        assert_eq!(
            stored(r.route(&sip("OPTIONS", 1, "OPTIONS"))).table,
            format!("sip_capture_rest_{day}")
        );
    }

    #[test]
    fn reports_by_payload_type() {
        let r = router(true, "sip_capture", MtMode::Rand, HashSource::CallId);
        for (ptype, table) in [
            (5, "rtcp_capture"),
            (32, "report_capture"),
            (99, "report_capture"),
            (100, "logs_capture"),
            (34, "report_capture"),
        ] {
            let rec = CaptureRecord {
                kind: RecordKind::Report as i32,
                hep: Some(HepMeta {
                    payload_type: ptype,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let route = stored(r.route(&rec));
            assert_eq!(route.table, table);
            assert_eq!(route.family, TableFamily::Report);
        }
    }

    #[test]
    fn hash_mode_is_deterministic() {
        let r = router(false, "t_a|t_b|t_c", MtMode::Hash, HashSource::CallId);
        // crc32 % 3 == 0 for this Call-ID (behaviour doc §3).
        assert_eq!(stored(r.route(&sip("INVITE", 1, "INVITE"))).table, "t_a");
    }

    #[test]
    fn explicit_table_wins_and_is_validated() {
        let r = router(true, "sip_capture", MtMode::Rand, HashSource::CallId);
        let mut rec = sip("INVITE", 1, "INVITE");
        rec.routing = Some(Routing {
            table: "custom_%Y".into(),
            capture_mode: String::new(),
        });
        assert!(stored(r.route(&rec)).table.starts_with("custom_20"));
        rec.routing = Some(Routing {
            table: "x; DROP TABLE y".into(),
            capture_mode: String::new(),
        });
        assert!(matches!(
            r.route(&rec),
            Err(RouteError::Table(TableNameError::UnsafeName(_)))
        ));
    }

    fn record_with(source: HashSource, value: &str) -> CaptureRecord {
        let mut rec = sip("OPTIONS", 1, "OPTIONS");
        let fields = rec.sip.as_mut().unwrap();
        fields.callid = "other-call-id".into();
        fields.from_user = "other-from".into();
        fields.to_user = "other-to".into();
        match source {
            HashSource::CallId => fields.callid = value.into(),
            HashSource::FromUser => fields.from_user = value.into(),
            HashSource::ToUser => fields.to_user = value.into(),
        }
        rec
    }

    /// Every mode placement (default mode, a named mode chosen by the record's hint, a named
    /// mode chosen by a routing rule) × mt_mode × hash_source × table count: hash follows the
    /// zlib golden list, round_robin cycles, rand stays in range and reaches every table.
    #[test]
    fn every_mode_mt_mode_and_hash_source_combination() {
        let golden = crate::pipeline::mode::tests::golden();
        let rule = RouteRuleConfig {
            matches: crate::pipeline::rules::MatchConfig {
                node: vec!["by-rule".into()],
                ..Default::default()
            },
            capture_mode: Some("cap1".into()),
            ..Default::default()
        };
        for mt in [MtMode::Rand, MtMode::RoundRobin, MtMode::Hash] {
            for hs in [HashSource::CallId, HashSource::FromUser, HashSource::ToUser] {
                for n in [1usize, 2, 3, 5] {
                    let tables: Vec<String> = (0..n).map(|i| format!("t{i}_%Y%m%d")).collect();
                    let list = tables.join("|");
                    for placement in ["default", "hint", "rule"] {
                        let modes = match placement {
                            "default" => vec![spec("default", &list, mt, hs)],
                            _ => vec![
                                spec("default", "d_only", MtMode::Rand, HashSource::CallId),
                                spec("cap1", &list, mt, hs),
                            ],
                        };
                        let rules = if placement == "default" {
                            Vec::new()
                        } else {
                            vec![rule.clone()]
                        };
                        let r = router_with(false, &modes, &rules);
                        let want_mode = usize::from(placement != "default");
                        let mut seen = vec![false; n];
                        for (i, g) in golden.iter().filter(|g| g.source == hs).enumerate() {
                            let mut rec = record_with(hs, &g.value);
                            match placement {
                                "hint" => {
                                    rec.routing = Some(Routing {
                                        table: String::new(),
                                        capture_mode: "cap1".into(),
                                    })
                                }
                                "rule" => rec.node = "by-rule".into(),
                                _ => {}
                            }
                            let route = stored(r.route(&rec));
                            let what = format!("{mt:?}/{hs:?}/{n}/{placement}/{:?}", g.value);
                            assert_eq!(route.mode, want_mode, "{what}");
                            assert!(!route.hash_source_empty, "{what}");
                            let index = tables
                                .iter()
                                .position(|t| route.table == t.replace("%Y%m%d", "20261123"))
                                .unwrap_or_else(|| panic!("{what}: {}", route.table));
                            seen[index] = true;
                            let expected = match (mt, n) {
                                (_, 1) => Some(0),
                                (MtMode::Hash, n) => {
                                    g.index.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
                                }
                                (MtMode::RoundRobin, n) => Some(i % n),
                                (MtMode::Rand, _) => None,
                            };
                            if let Some(expected) = expected {
                                assert_eq!(index, expected, "{what}");
                            }
                        }
                        assert!(
                            seen.iter().all(|s| *s),
                            "{mt:?}/{hs:?}/{n}/{placement}: {seen:?}"
                        );
                        // An empty hash source: first table, flagged (Kamailio drops the row).
                        if mt == MtMode::Hash && n > 1 {
                            let mut rec = record_with(hs, "");
                            if placement == "rule" {
                                rec.node = "by-rule".into();
                            } else if placement == "hint" {
                                rec.routing = Some(Routing {
                                    table: String::new(),
                                    capture_mode: "cap1".into(),
                                });
                            }
                            let route = stored(r.route(&rec));
                            assert!(route.hash_source_empty);
                            assert_eq!(route.table, "t0_20261123");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn unknown_mode_is_an_error_not_a_panic() {
        let r = router(true, "sip_capture", MtMode::Rand, HashSource::CallId);
        let mut rec = sip("INVITE", 1, "INVITE");
        rec.routing = Some(Routing {
            table: String::new(),
            capture_mode: "nope".into(),
        });
        let err = r.route(&rec).unwrap_err();
        assert_eq!(err.reason(), "unknown_capture_mode");
    }

    #[test]
    fn rules_drop_and_default_split_stays_for_the_rest() {
        let rules = vec![RouteRuleConfig {
            matches: crate::pipeline::rules::MatchConfig {
                method: vec!["OPTIONS".into()],
                ..Default::default()
            },
            drop: true,
            ..Default::default()
        }];
        let r = router_with(
            true,
            &[spec(
                "default",
                "sip_capture",
                MtMode::Rand,
                HashSource::CallId,
            )],
            &rules,
        );
        assert_eq!(
            r.route(&sip("OPTIONS", 1, "OPTIONS")).unwrap(),
            Decision::Drop
        );
        assert_eq!(
            stored(r.route(&sip("INVITE", 1, "INVITE"))).table,
            "sip_capture_call_20261123"
        );
        let dated: Vec<&str> = r.dated_patterns().iter().map(|p| p.as_str()).collect();
        assert!(dated.contains(&"sip_capture_call_%Y%m%d"), "{dated:?}");
    }
}
