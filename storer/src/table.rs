//! Ground: how tables are named and shaped, shared by every layer above. A [`TablePattern`] is a
//! validated table name with strftime sequences (Kamailio's `table_name`, expanded with the
//! packet's UTC [`capture_time`]); a [`DatedPattern`] is one with a full date, which retention
//! can read back out of a table name; a [`TableFamily`] is the schema a table gets, and
//! [`columns`] is its column list in Kamailio's insert order. This module imports nothing else
//! from the crate.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{NaiveDate, NaiveDateTime, Utc};
use sipcapture_proto::v1::CaptureRecord;

/// Longest table name we create (PostgreSQL's identifier limit is 63 bytes, MySQL's 64).
pub const MAX_TABLE_NAME: usize = 63;

/// Why a table name or pattern is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableNameError {
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
    /// The name starts with a prefix the databases or this program keep for themselves
    /// ([`RESERVED_PREFIXES`]): SQLite refuses to create `sqlite_*`, PostgreSQL keeps `pg_*`
    /// for its catalogs, and `sipcapture_*` holds our own state.
    #[error("table name {0:?} starts with a reserved prefix (sqlite_, pg_, sipcapture_)")]
    Reserved(String),
}

/// Table name prefixes no capture table may use (compared without case): SQLite's internal
/// tables, PostgreSQL's system catalogs, and our own state tables (`sipcapture_stream_state`).
pub const RESERVED_PREFIXES: [&str; 3] = ["sqlite_", "pg_", "sipcapture_"];

/// Whether `name` starts with one of the [`RESERVED_PREFIXES`].
pub fn is_reserved(name: &str) -> bool {
    RESERVED_PREFIXES.iter().any(|prefix| {
        name.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    })
}

impl TableNameError {
    /// Low-cardinality reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            TableNameError::Empty => "empty_table",
            TableNameError::BadStrftime(_) => "bad_table_pattern",
            TableNameError::UnsafeName(_) => "unsafe_table_name",
            TableNameError::Reserved(_) => "reserved_table_name",
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
    pub fn parse(raw: &str) -> Result<Self, TableNameError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(TableNameError::Empty);
        }
        let mut dated = false;
        for item in StrftimeItems::new(raw) {
            match item {
                Item::Error => return Err(TableNameError::BadStrftime(raw.to_owned())),
                Item::Literal(s) | Item::Space(s) => {
                    if !s.bytes().all(is_ident_byte) {
                        return Err(TableNameError::UnsafeName(raw.to_owned()));
                    }
                }
                Item::OwnedLiteral(_) | Item::OwnedSpace(_) => {
                    return Err(TableNameError::UnsafeName(raw.to_owned()));
                }
                Item::Numeric(..) | Item::Fixed(_) => dated = true,
            }
        }
        let pattern = TablePattern {
            raw: raw.to_owned(),
            dated,
        };
        pattern.render(chrono::DateTime::<Utc>::UNIX_EPOCH)?;
        Ok(pattern)
    }

    /// Parses Kamailio's `a|b|c` list (empty entries skipped, surrounding blanks trimmed).
    pub fn parse_list(raw: &str) -> Result<Vec<Self>, TableNameError> {
        let list = raw
            .split('|')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(TablePattern::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(TableNameError::Empty);
        }
        Ok(list)
    }

    /// The pattern as configured.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether the pattern holds strftime sequences.
    pub fn is_dated(&self) -> bool {
        self.dated
    }

    /// Expands the pattern with `time` (UTC, the packet's capture time) and checks the result.
    pub fn render(&self, time: chrono::DateTime<Utc>) -> Result<String, TableNameError> {
        if !self.dated {
            if is_reserved(&self.raw) {
                return Err(TableNameError::Reserved(self.raw.clone()));
            }
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
            return Err(TableNameError::BadStrftime(self.raw.clone()));
        }
        if name.is_empty() || name.len() > MAX_TABLE_NAME || !name.bytes().all(is_ident_byte) {
            return Err(TableNameError::UnsafeName(name));
        }
        if is_reserved(&name) {
            return Err(TableNameError::Reserved(name));
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
    /// HOMER 5 `sip_capture.sql`: 44 columns.
    Sip,
    /// HOMER 5 `report_capture.sql`: 12 columns.
    Report,
    /// HOMER 7 `hep_proto_1_*` (`hep_proto_sip.sql`): the [`HEP_COLUMNS`] with the SIP
    /// indexes (ruri, users, callid, method).
    HepSip,
    /// HOMER 7 `hep_proto_<type>_default` (`hep_proto_report.sql`): the [`HEP_COLUMNS`] with
    /// the address and correlation indexes.
    HepReport,
}

impl TableFamily {
    /// Whether the family is a HOMER 7 one (`hep_proto_*`).
    pub fn is_hep(self) -> bool {
        matches!(self, TableFamily::HepSip | TableFamily::HepReport)
    }

    /// Whether its rows are SIP messages.
    pub fn is_sip(self) -> bool {
        matches!(self, TableFamily::Sip | TableFamily::HepSip)
    }
}

/// The record's capture time as UTC.
pub fn capture_time(record: &CaptureRecord) -> chrono::DateTime<Utc> {
    let micros = i64::try_from(record.capture_time_us).unwrap_or(i64::MAX);
    chrono::DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or(chrono::DateTime::<Utc>::UNIX_EPOCH)
}

/// HOMER 7 partitions: a `hep_proto_*` parent table is split by `create_date` into partitions
/// of a fixed number of minutes, aligned on midnight UTC and named `<parent>_YYYYMMDD_HHMM` after
/// their first minute (heplify-server's names, so its rotator and ours read the same tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitioning {
    minutes: u32,
}

/// One partition of a parent table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// `<parent>_YYYYMMDD_HHMM`.
    pub name: String,
    /// First instant it holds.
    pub from: chrono::DateTime<Utc>,
    /// First instant it no longer holds.
    pub to: chrono::DateTime<Utc>,
}

impl Partitioning {
    /// One partition a day.
    pub const DAY: Partitioning = Partitioning { minutes: 1440 };

    /// A partition length in minutes: it must divide a day (5, 10, 15, 30, 60, 120, 360, 1440,
    /// ...), so partitions never straddle midnight.
    pub fn minutes(minutes: u32) -> Result<Self, String> {
        if (5..=1440).contains(&minutes) && 1440 % minutes == 0 {
            Ok(Partitioning { minutes })
        } else {
            Err(format!(
                "{minutes} minutes does not divide a day into partitions (5 to 1440 minutes: 5, 10, 15, 30, 60, 120, 360, 720, 1440, ...)"
            ))
        }
    }

    /// Its length in minutes.
    pub fn length(self) -> u32 {
        self.minutes
    }

    /// The partition of `parent` holding `time`.
    pub fn partition(self, parent: &str, time: chrono::DateTime<Utc>) -> Partition {
        let day = time.date_naive();
        let midnight = day.and_time(chrono::NaiveTime::MIN).and_utc();
        let since = (time - midnight).num_minutes();
        let step = i64::from(self.minutes);
        let from = midnight + chrono::Duration::minutes(since - since.rem_euclid(step));
        let to = from + chrono::Duration::minutes(step);
        Partition {
            name: format!("{parent}_{}", from.format("%Y%m%d_%H%M")),
            from,
            to,
        }
    }

    /// The partitions of `parent` covering `from` up to and including `to`.
    pub fn covering(
        self,
        parent: &str,
        from: chrono::DateTime<Utc>,
        to: chrono::DateTime<Utc>,
    ) -> Vec<Partition> {
        let mut out = Vec::new();
        let mut at = from;
        while at <= to {
            let p = self.partition(parent, at);
            at = p.to;
            out.push(p);
        }
        out
    }
}

/// The first instant of a partition of `parent`, read back from its name
/// (`<parent>_YYYYMMDD_HHMM`); `None` for any other table.
pub fn partition_start(parent: &str, table: &str) -> Option<chrono::DateTime<Utc>> {
    let rest = table.strip_prefix(parent)?.strip_prefix('_')?;
    if rest.len() != 13
        || !rest.bytes().enumerate().all(|(i, b)| {
            if i == 8 {
                b == b'_'
            } else {
                b.is_ascii_digit()
            }
        })
    {
        return None;
    }
    NaiveDateTime::parse_from_str(rest, "%Y%m%d_%H%M")
        .ok()
        .map(|t| t.and_utc())
}

/// The HEP payload type of a record (SIP captured without HEP is type 1).
pub fn payload_type(record: &CaptureRecord) -> u32 {
    match &record.hep {
        Some(h) if h.payload_type != 0 => h.payload_type,
        _ if record.sip.is_some() => 1,
        _ => 0,
    }
}

/// A dated table pattern usable for retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatedPattern {
    raw: String,
}

impl DatedPattern {
    /// Accepts a valid table pattern whose strftime sequences give a full date (year, month and
    /// day, or year and day of year).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let pattern = TablePattern::parse(raw).map_err(|e| e.to_string())?;
        let candidate = DatedPattern {
            raw: pattern.as_str().to_owned(),
        };
        let sample = NaiveDate::from_ymd_opt(2026, 11, 26)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc())
            .ok_or("bad sample date")?;
        let name = pattern.render(sample).map_err(|e| e.to_string())?;
        if candidate.date_of(&name) != sample.date_naive().into() {
            return Err(format!(
                "{raw:?} does not hold a full date (%Y%m%d, %F or %Y%j)"
            ));
        }
        Ok(candidate)
    }

    /// The pattern as configured.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The date in a table name, when the name is exactly what the pattern produces.
    pub fn date_of(&self, table: &str) -> Option<NaiveDate> {
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, table, StrftimeItems::new(&self.raw)).ok()?;
        parsed.to_naive_date().ok()
    }
}

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// `varchar(n)`: cut to n characters.
    Str(usize),
    /// INT.
    Int,
    /// BIGINT.
    BigInt,
    /// DATETIME / TIMESTAMP.
    DateTime,
    /// `timestamptz` on PostgreSQL (`DATETIME(6)` on MySQL, text on SQLite), UTC.
    DateTimeTz,
    /// BLOB / bytea: no limit.
    Blob,
    /// Unlimited text (`varchar` without a width on PostgreSQL, `LONGTEXT` on MySQL).
    Text,
    /// A JSON object (`jsonb` on PostgreSQL, `JSON` on MySQL, text on SQLite).
    Json,
}

/// One value of a row, borrowed from its record wherever it can be: building a row allocates
/// nothing per column, and the write path encodes each value once, straight into what the
/// database driver sends (PostgreSQL `COPY` binary, MySQL's argument buffer, SQLite's binds).
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    /// A `varchar` value, already cut to its column width.
    Text(Cow<'a, str>),
    /// An address, written as Kamailio's `ip_addr2a` does (dotted IPv4, IPv6 without
    /// brackets); empty when unknown.
    Ip(Option<IpAddr>),
    /// INT.
    Int(i32),
    /// BIGINT.
    BigInt(i64),
    /// DATETIME / TIMESTAMP (UTC, whole seconds for `date`).
    DateTime(NaiveDateTime),
    /// BLOB / bytea.
    Blob(&'a [u8]),
    /// A JSON object, serialised.
    Json(String),
}

/// One column of a table family.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Kamailio's column name.
    pub name: &'static str,
    /// Its type.
    pub kind: ColumnKind,
}

const fn col(name: &'static str, kind: ColumnKind) -> Column {
    Column { name, kind }
}

use ColumnKind::{BigInt, Blob, DateTime, DateTimeTz, Int, Json, Str, Text};

/// Kamailio's 44 `sip_capture` columns in its insert order (behaviour doc §2.1), with the HOMER 5
/// schema widths.
pub const SIP_COLUMNS: [Column; 44] = [
    col("date", DateTime),
    col("micro_ts", BigInt),
    col("method", Str(50)),
    col("reply_reason", Str(100)),
    col("ruri", Str(200)),
    col("ruri_user", Str(100)),
    col("from_user", Str(100)),
    col("from_tag", Str(64)),
    col("to_user", Str(100)),
    col("to_tag", Str(64)),
    col("pid_user", Str(100)),
    col("contact_user", Str(120)),
    col("auth_user", Str(120)),
    col("callid", Str(120)),
    col("callid_aleg", Str(120)),
    col("via_1", Str(256)),
    col("via_1_branch", Str(80)),
    col("cseq", Str(25)),
    col("reason", Str(200)),
    col("content_type", Str(256)),
    col("auth", Str(256)),
    col("user_agent", Str(256)),
    col("source_ip", Str(60)),
    col("source_port", Int),
    col("destination_ip", Str(60)),
    col("destination_port", Int),
    col("contact_ip", Str(60)),
    col("contact_port", Int),
    col("originator_ip", Str(60)),
    col("originator_port", Int),
    col("proto", Int),
    col("family", Int),
    col("rtp_stat", Str(256)),
    col("type", Int),
    col("node", Str(125)),
    col("correlation_id", Str(256)),
    col("from_domain", Str(150)),
    col("to_domain", Str(150)),
    col("ruri_domain", Str(150)),
    col("diversion", Str(256)),
    col("msg", Blob),
    col("custom_field1", Str(120)),
    col("custom_field2", Str(120)),
    col("custom_field3", Str(120)),
];

/// Kamailio's 12 report columns (`rtcp_capture`, `report_capture`, `logs_capture`), §2.3.
pub const REPORT_COLUMNS: [Column; 12] = [
    col("date", DateTime),
    col("micro_ts", BigInt),
    col("correlation_id", Str(256)),
    col("source_ip", Str(60)),
    col("source_port", Int),
    col("destination_ip", Str(60)),
    col("destination_port", Int),
    col("proto", Int),
    col("family", Int),
    col("type", Int),
    col("node", Str(125)),
    col("msg", Blob),
];

/// The columns heplify-server writes into HOMER 7 `hep_proto_*` tables (the `id` column is the
/// database's own sequence).
pub const HEP_COLUMNS: [Column; 5] = [
    col("sid", Text),
    col("create_date", DateTimeTz),
    col("protocol_header", Json),
    col("data_header", Json),
    col("raw", Text),
];

/// The columns of a family.
pub fn columns(family: TableFamily) -> &'static [Column] {
    match family {
        TableFamily::Sip => &SIP_COLUMNS,
        TableFamily::Report => &REPORT_COLUMNS,
        TableFamily::HepSip | TableFamily::HepReport => &HEP_COLUMNS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn patterns_are_validated() {
        assert!(TablePattern::parse("sip_capture_%Y%m%d").is_ok());
        assert!(matches!(
            TablePattern::parse("bad-name"),
            Err(TableNameError::UnsafeName(_))
        ));
        assert!(matches!(
            TablePattern::parse("t_%Q"),
            Err(TableNameError::BadStrftime(_))
        ));
        assert!(matches!(
            TablePattern::parse(""),
            Err(TableNameError::Empty)
        ));
        assert_eq!(TablePattern::parse_list(" a | b||c ").unwrap().len(), 3);
    }

    #[test]
    fn reserved_prefixes_are_refused_plain_or_dated() {
        for name in [
            "sqlite_x",
            "SQLite_master",
            "pg_class",
            "sipcapture_stream_state",
        ] {
            assert_eq!(
                TablePattern::parse(name),
                Err(TableNameError::Reserved(name.to_owned())),
                "{name}"
            );
        }
        assert!(matches!(
            TablePattern::parse("pg_%Y%m%d"),
            Err(TableNameError::Reserved(_))
        ));
        assert_eq!(
            TableNameError::Reserved(String::new()).reason(),
            "reserved_table_name"
        );
        // Only the prefix counts.
        for name in ["my_sqlite_x", "pgx", "sip_capture_call_%Y%m%d"] {
            assert!(TablePattern::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn names_match_their_pattern_only() {
        let p = DatedPattern::parse("sip_capture_call_%Y%m%d").unwrap();
        assert_eq!(
            p.date_of("sip_capture_call_20260304"),
            Some(day(2026, 3, 4))
        );
        assert_eq!(p.date_of("sip_capture_call_20260304_old"), None);
        assert_eq!(p.date_of("sip_capture_call_2026030"), None);
        assert_eq!(p.date_of("sip_capture_call_20261304"), None, "month 13");
        assert_eq!(p.date_of("sip_capture_rest_20260304"), None);
        assert_eq!(p.date_of("sip_capture_call"), None);
        let dashed = DatedPattern::parse("t_%Y_%m_%d_x").unwrap();
        assert_eq!(dashed.date_of("t_2026_03_04_x"), Some(day(2026, 3, 4)));
        let hourly = DatedPattern::parse("h_%Y%m%d%H").unwrap();
        assert_eq!(hourly.date_of("h_2026030423"), Some(day(2026, 3, 4)));
    }

    #[test]
    fn partitions_are_aligned_on_midnight() {
        let p = Partitioning::minutes(120).unwrap();
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-05T13:59:59.999Z")
            .unwrap()
            .to_utc();
        let part = p.partition("hep_proto_1_call", t);
        assert_eq!(part.name, "hep_proto_1_call_20261205_1200");
        assert_eq!(part.from.to_rfc3339(), "2026-12-05T12:00:00+00:00");
        assert_eq!(part.to.to_rfc3339(), "2026-12-05T14:00:00+00:00");
        assert_eq!(
            partition_start("hep_proto_1_call", &part.name),
            Some(part.from)
        );
        assert_eq!(partition_start("hep_proto_1", &part.name), None);
        assert_eq!(
            partition_start("hep_proto_1_call", "hep_proto_1_call_2026120_1200"),
            None
        );
        let day = Partitioning::minutes(1440).unwrap();
        assert_eq!(
            day.partition("x", t).name,
            "x_20261205_0000",
            "one partition a day"
        );
        let before_1970 = chrono::DateTime::from_timestamp(-1, 0).unwrap();
        assert_eq!(p.partition("x", before_1970).name, "x_19691231_2200");
        assert_eq!(p.covering("x", part.from, part.to).len(), 2);
        assert!(Partitioning::minutes(7).is_err());
        assert!(Partitioning::minutes(0).is_err());
        assert!(Partitioning::minutes(2880).is_err());
    }

    #[test]
    fn patterns_without_a_full_date_are_refused() {
        assert!(DatedPattern::parse("sip_capture").is_err());
        assert!(DatedPattern::parse("monthly_%Y%m").is_err());
        assert!(DatedPattern::parse("bad-%Y%m%d").is_err());
    }
}
