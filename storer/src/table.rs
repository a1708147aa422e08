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
}

impl TableNameError {
    /// Low-cardinality reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            TableNameError::Empty => "empty_table",
            TableNameError::BadStrftime(_) => "bad_table_pattern",
            TableNameError::UnsafeName(_) => "unsafe_table_name",
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

/// The record's capture time as UTC.
pub fn capture_time(record: &CaptureRecord) -> chrono::DateTime<Utc> {
    let micros = i64::try_from(record.capture_time_us).unwrap_or(i64::MAX);
    chrono::DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or(chrono::DateTime::<Utc>::UNIX_EPOCH)
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
    /// BLOB / bytea: no limit.
    Blob,
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

use ColumnKind::{BigInt, Blob, DateTime, Int, Str};

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

/// The columns of a family.
pub fn columns(family: TableFamily) -> &'static [Column] {
    match family {
        TableFamily::Sip => &SIP_COLUMNS,
        TableFamily::Report => &REPORT_COLUMNS,
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
    fn patterns_without_a_full_date_are_refused() {
        assert!(DatedPattern::parse("sip_capture").is_err());
        assert!(DatedPattern::parse("monthly_%Y%m").is_err());
        assert!(DatedPattern::parse("bad-%Y%m%d").is_err());
    }
}
