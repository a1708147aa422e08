//! The one place a table is chosen for a record: routing hint or default rules (the HOMER 5
//! split), then the capture mode's table list and mt_mode, then strftime with the packet's UTC
//! time (behaviour doc §3).

use std::fmt::Write as _;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};
use sipcapture_proto::v1::{CaptureRecord, RecordKind};

use crate::pipeline::mode::{Chooser, HashSource, MtMode};

/// Longest table name we create (PostgreSQL's identifier limit is 63 bytes, MySQL's 64).
pub const MAX_TABLE_NAME: usize = 63;

/// Why a table could not be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The pattern is empty.
    #[error("empty table name")]
    Empty,
    /// The pattern has a `%` sequence chrono's strftime does not know.
    #[error("table pattern {0:?} has an invalid strftime sequence")]
    BadStrftime(String),
    /// The expanded name holds characters other than `[A-Za-z0-9_]` or is too long; we never
    /// build SQL identifiers from anything else.
    #[error("table name {0:?} is not a safe identifier ([A-Za-z0-9_], at most 63 characters)")]
    UnsafeName(String),
}

impl RouteError {
    /// Low-cardinality reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            RouteError::Empty => "empty_table",
            RouteError::BadStrftime(_) => "bad_table_pattern",
            RouteError::UnsafeName(_) => "unsafe_table_name",
        }
    }
}

/// A validated table name pattern (strftime sequences allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    raw: String,
    dated: bool,
}

impl TablePattern {
    /// Validates a pattern: strftime sequences must be known, literal characters must be
    /// `[A-Za-z0-9_]`, and the expansion for a sample date must be a safe identifier.
    pub fn parse(raw: &str) -> Result<Self, RouteError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(RouteError::Empty);
        }
        let mut dated = false;
        for item in StrftimeItems::new(raw) {
            match item {
                Item::Error => return Err(RouteError::BadStrftime(raw.to_owned())),
                Item::Literal(s) | Item::Space(s) => {
                    if !s.bytes().all(is_ident_byte) {
                        return Err(RouteError::UnsafeName(raw.to_owned()));
                    }
                }
                Item::OwnedLiteral(_) | Item::OwnedSpace(_) => {
                    return Err(RouteError::UnsafeName(raw.to_owned()));
                }
                Item::Numeric(..) | Item::Fixed(_) => dated = true,
            }
        }
        let pattern = TablePattern {
            raw: raw.to_owned(),
            dated,
        };
        pattern.render(DateTime::<Utc>::UNIX_EPOCH)?;
        Ok(pattern)
    }

    /// Parses Kamailio's `a|b|c` list (empty entries skipped, surrounding blanks trimmed).
    pub fn parse_list(raw: &str) -> Result<Vec<Self>, RouteError> {
        let list = raw
            .split('|')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(TablePattern::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(RouteError::Empty);
        }
        Ok(list)
    }

    /// The pattern as configured.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Expands the pattern with `time` (UTC, the packet's capture time) and checks the result.
    pub fn render(&self, time: DateTime<Utc>) -> Result<String, RouteError> {
        if !self.dated {
            return Ok(self.raw.clone());
        }
        let mut name = String::with_capacity(self.raw.len() + 8);
        if write!(
            name,
            "{}",
            time.format_with_items(StrftimeItems::new(&self.raw))
        )
        .is_err()
        {
            return Err(RouteError::BadStrftime(self.raw.clone()));
        }
        if name.is_empty() || name.len() > MAX_TABLE_NAME || !name.bytes().all(is_ident_byte) {
            return Err(RouteError::UnsafeName(name));
        }
        Ok(name)
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Which schema a table gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableFamily {
    /// `sip_capture.sql`: 44 columns.
    Sip,
    /// `report_capture.sql`: 12 columns.
    Report,
}

/// Where one record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The expanded table name.
    pub table: String,
    /// Its schema.
    pub family: TableFamily,
    /// mt_mode hash had an empty source: stored in the first table and flagged.
    pub hash_source_empty: bool,
}

/// Methods the HOMER 5 config sends to `sip_capture_call_%Y%m%d` (requests by method, replies by
/// CSeq method).
const CALL_METHODS: &[&str] = &["INVITE", "ACK", "BYE", "CANCEL", "UPDATE", "PRACK", "REFER"];

/// Table-choice rules of a storer.
#[derive(Debug)]
pub struct Router {
    tables: Vec<TablePattern>,
    mt_mode: MtMode,
    hash_source: HashSource,
    chooser: Chooser,
    homer5_split: bool,
    call: TablePattern,
    registration: TablePattern,
    rest: TablePattern,
    rtcp: TablePattern,
    report: TablePattern,
    logs: TablePattern,
}

/// What a [`Router`] is built from.
#[derive(Debug, Clone)]
pub struct RouterConfig<'a> {
    /// Default mode table list (`a|b|c`).
    pub table_name: &'a str,
    /// Default mode mt_mode.
    pub mt_mode: MtMode,
    /// Default mode hash source.
    pub hash_source: HashSource,
    /// HOMER 5 call / registration / rest split on.
    pub homer5_split: bool,
    /// RTCP table.
    pub rtcp_table: &'a str,
    /// Report table.
    pub report_table: &'a str,
    /// Logs table.
    pub logs_table: &'a str,
}

impl Router {
    /// Builds a router; patterns are validated.
    pub fn new(cfg: &RouterConfig<'_>) -> Result<Self, RouteError> {
        Ok(Router {
            tables: TablePattern::parse_list(cfg.table_name)?,
            mt_mode: cfg.mt_mode,
            hash_source: cfg.hash_source,
            chooser: Chooser::default(),
            homer5_split: cfg.homer5_split,
            call: TablePattern::parse("sip_capture_call_%Y%m%d")?,
            registration: TablePattern::parse("sip_capture_registration_%Y%m%d")?,
            rest: TablePattern::parse("sip_capture_rest_%Y%m%d")?,
            rtcp: TablePattern::parse(cfg.rtcp_table)?,
            report: TablePattern::parse(cfg.report_table)?,
            logs: TablePattern::parse(cfg.logs_table)?,
        })
    }

    /// Chooses the table of one record.
    pub fn route(&self, record: &CaptureRecord) -> Result<Route, RouteError> {
        let time = capture_time(record);
        if record.kind() == RecordKind::Report {
            let payload_type = record.hep.as_ref().map_or(0, |h| h.payload_type);
            let pattern = match payload_type {
                5 => &self.rtcp,
                100 => &self.logs,
                _ => &self.report,
            };
            return Ok(Route {
                table: pattern.render(time)?,
                family: TableFamily::Report,
                hash_source_empty: false,
            });
        }
        // An explicit table (Kamailio's sip_capture(table)) wins; mt_mode is then ignored.
        if let Some(routing) = &record.routing
            && !routing.table.is_empty()
        {
            let pattern = TablePattern::parse(&routing.table)?;
            return Ok(Route {
                table: pattern.render(time)?,
                family: TableFamily::Sip,
                hash_source_empty: false,
            });
        }
        if self.homer5_split {
            let pattern = self.homer5_table(record);
            return Ok(Route {
                table: pattern.render(time)?,
                family: TableFamily::Sip,
                hash_source_empty: false,
            });
        }
        let sip = record.sip.clone().unwrap_or_default();
        let hash_value = match self.hash_source {
            HashSource::CallId => sip.callid.as_str(),
            HashSource::FromUser => sip.from_user.as_str(),
            HashSource::ToUser => sip.to_user.as_str(),
        };
        let choice = self.chooser.choose(
            self.mt_mode,
            self.hash_source,
            hash_value,
            self.tables.len(),
        );
        let pattern = self.tables.get(choice.index).ok_or(RouteError::Empty)?;
        Ok(Route {
            table: pattern.render(time)?,
            family: TableFamily::Sip,
            hash_source_empty: choice.hash_source_empty,
        })
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

/// The record's capture time as UTC.
pub fn capture_time(record: &CaptureRecord) -> DateTime<Utc> {
    let micros = i64::try_from(record.capture_time_us).unwrap_or(i64::MAX);
    DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcapture_proto::v1::{HepMeta, Routing, SipFields};

    fn router(split: bool, tables: &str, mt: MtMode, hs: HashSource) -> Router {
        Router::new(&RouterConfig {
            table_name: tables,
            mt_mode: mt,
            hash_source: hs,
            homer5_split: split,
            rtcp_table: "rtcp_capture",
            report_table: "report_capture",
            logs_table: "logs_capture",
        })
        .unwrap()
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
            r.route(&sip("INVITE", 1, "INVITE")).unwrap().table,
            format!("sip_capture_call_{day}")
        );
        assert_eq!(
            r.route(&sip("200", 2, "BYE")).unwrap().table,
            format!("sip_capture_call_{day}")
        );
        assert_eq!(
            r.route(&sip("REGISTER", 1, "REGISTER")).unwrap().table,
            format!("sip_capture_registration_{day}")
        );
        assert_eq!(
            r.route(&sip("401", 2, "REGISTER")).unwrap().table,
            format!("sip_capture_registration_{day}")
        );
        assert_eq!(
            r.route(&sip("OPTIONS", 1, "OPTIONS")).unwrap().table,
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
            let route = r.route(&rec).unwrap();
            assert_eq!(route.table, table);
            assert_eq!(route.family, TableFamily::Report);
        }
    }

    #[test]
    fn hash_mode_is_deterministic() {
        let r = router(false, "t_a|t_b|t_c", MtMode::Hash, HashSource::CallId);
        // crc32 % 3 == 0 for this Call-ID (behaviour doc §3).
        assert_eq!(r.route(&sip("INVITE", 1, "INVITE")).unwrap().table, "t_a");
    }

    #[test]
    fn explicit_table_wins_and_is_validated() {
        let r = router(true, "sip_capture", MtMode::Rand, HashSource::CallId);
        let mut rec = sip("INVITE", 1, "INVITE");
        rec.routing = Some(Routing {
            table: "custom_%Y".into(),
            capture_mode: String::new(),
        });
        assert!(r.route(&rec).unwrap().table.starts_with("custom_20"));
        rec.routing = Some(Routing {
            table: "x; DROP TABLE y".into(),
            capture_mode: String::new(),
        });
        assert!(matches!(r.route(&rec), Err(RouteError::UnsafeName(_))));
    }

    #[test]
    fn patterns_are_validated() {
        assert!(TablePattern::parse("sip_capture_%Y%m%d").is_ok());
        assert!(matches!(
            TablePattern::parse("bad-name"),
            Err(RouteError::UnsafeName(_))
        ));
        assert!(matches!(
            TablePattern::parse("t_%Q"),
            Err(RouteError::BadStrftime(_))
        ));
        assert!(matches!(TablePattern::parse(""), Err(RouteError::Empty)));
        assert_eq!(TablePattern::parse_list(" a | b||c ").unwrap().len(), 3);
    }
}
