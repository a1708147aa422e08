//! Column values of one row, in Kamailio's column order ([`crate::table::columns`]), cut to the
//! schema's widths.
//!
//! Kamailio does no truncation: an over-long value fails the insert on strict databases and the
//! row is lost (homer #174, #262, #296). We cut the value to its column width, flag the record and
//! count it, so a row never disappears for its size (docs/COMPATIBILITY.md).

use chrono::NaiveDateTime;
use sea_orm::Value;
use sipcapture_proto::ip_from_bytes;
use sipcapture_proto::v1::{CaptureRecord, SipFields};

use crate::table::{Column, ColumnKind, REPORT_COLUMNS, SIP_COLUMNS, TableFamily, capture_time};

/// One row's values plus what building it found.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Values in the family's column order.
    pub values: Vec<Value>,
    /// Some value was cut to its column width.
    pub truncated: bool,
}

/// Formats an address the way Kamailio's `ip_addr2a` does for the common cases (dotted IPv4,
/// IPv6 without brackets); empty when unknown.
pub fn format_ip(bytes: &[u8]) -> String {
    ip_from_bytes(bytes)
        .map(|ip| ip.to_string())
        .unwrap_or_default()
}

struct Builder {
    values: Vec<Value>,
    truncated: bool,
    columns: &'static [Column],
}

impl Builder {
    fn new(columns: &'static [Column]) -> Self {
        Builder {
            values: Vec::with_capacity(columns.len()),
            truncated: false,
            columns,
        }
    }

    fn width(&self) -> usize {
        match self.columns.get(self.values.len()).map(|c| c.kind) {
            Some(ColumnKind::Str(n)) => n,
            _ => usize::MAX,
        }
    }

    fn text(&mut self, s: &str) {
        let width = self.width();
        let value = match s.char_indices().nth(width) {
            Some((cut, _)) => {
                self.truncated = true;
                s.get(..cut).unwrap_or_default().to_owned()
            }
            None => s.to_owned(),
        };
        self.values.push(Value::from(value));
    }

    fn int(&mut self, n: u32) {
        self.values
            .push(Value::from(i32::try_from(n).unwrap_or(i32::MAX)));
    }

    fn push(&mut self, v: Value) {
        self.values.push(v);
    }

    fn finish(self) -> Row {
        Row {
            values: self.values,
            truncated: self.truncated,
        }
    }
}

fn date_value(record: &CaptureRecord) -> Value {
    let dt: NaiveDateTime = capture_time(record).naive_utc();
    // Whole seconds, as Kamailio's `date` column (micro_ts holds the microseconds).
    let secs = dt.and_utc().timestamp();
    let whole = chrono::DateTime::from_timestamp(secs, 0).map_or(dt, |d| d.naive_utc());
    Value::from(whole)
}

fn micro_ts(record: &CaptureRecord) -> Value {
    Value::from(i64::try_from(record.capture_time_us).unwrap_or(i64::MAX))
}

/// Builds the 44 values of a `sip_capture` row.
pub fn sip_row(record: &CaptureRecord) -> Row {
    let no_sip = SipFields::default();
    let sip = record.sip.as_ref().unwrap_or(&no_sip);
    let mut b = Builder::new(&SIP_COLUMNS);
    b.push(date_value(record));
    b.push(micro_ts(record));
    b.text(&sip.method);
    b.text(&sip.reply_reason);
    b.text(&sip.ruri);
    b.text(&sip.ruri_user);
    b.text(&sip.from_user);
    b.text(&sip.from_tag);
    b.text(&sip.to_user);
    b.text(&sip.to_tag);
    b.text(&sip.pid_user);
    b.text(&sip.contact_user);
    b.text(&sip.auth_user);
    b.text(&sip.callid);
    b.text(&sip.callid_aleg);
    b.text(&sip.via_1);
    b.text(&sip.via_1_branch);
    b.text(&sip.cseq);
    b.text(&sip.reason);
    b.text(&sip.content_type);
    b.text(&sip.auth);
    b.text(&sip.user_agent);
    b.text(&format_ip(&record.src_ip));
    b.int(record.src_port);
    b.text(&format_ip(&record.dst_ip));
    b.int(record.dst_port);
    b.text(&sip.contact_ip);
    b.int(sip.contact_port);
    b.text(&sip.originator_ip);
    b.int(sip.originator_port);
    b.int(record.transport);
    b.int(record.family);
    b.text(&sip.rtp_stat);
    b.int(sip.msg_type);
    b.text(&record.node);
    b.text(&sip.correlation_id);
    b.text(&sip.from_domain);
    b.text(&sip.to_domain);
    b.text(&sip.ruri_domain);
    b.text(&sip.diversion);
    b.push(Value::from(record.payload.clone()));
    b.text(&sip.custom_field1);
    b.text(&sip.custom_field2);
    b.text(&sip.custom_field3);
    b.finish()
}

/// Builds the 12 values of a report row.
pub fn report_row(record: &CaptureRecord) -> Row {
    let correlation_id = record
        .hep
        .as_ref()
        .map_or(&[][..], |h| &h.correlation_id[..]);
    let report_type = record.report.as_ref().map_or(0, |r| r.report_type);
    let mut b = Builder::new(&REPORT_COLUMNS);
    b.push(date_value(record));
    b.push(micro_ts(record));
    b.text(&String::from_utf8_lossy(correlation_id));
    b.text(&format_ip(&record.src_ip));
    b.int(record.src_port);
    b.text(&format_ip(&record.dst_ip));
    b.int(record.dst_port);
    b.int(record.transport);
    b.int(record.family);
    b.int(report_type);
    b.text(&record.node);
    b.push(Value::from(record.payload.clone()));
    b.finish()
}

/// Builds the row of a record for its table family.
pub fn row(record: &CaptureRecord, family: TableFamily) -> Row {
    match family {
        TableFamily::Sip => sip_row(record),
        TableFamily::Report => report_row(record),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcapture_proto::v1::SipFields;

    #[test]
    fn sip_row_has_44_values_in_order() {
        let rec = CaptureRecord {
            capture_time_us: 1_700_000_000_123_456,
            src_ip: vec![10, 0, 0, 1],
            src_port: 5060,
            dst_ip: vec![10, 0, 0, 2],
            dst_port: 5061,
            transport: 1,
            family: 2,
            node: "homer01:2001".into(),
            payload: b"INVITE sip:a@b SIP/2.0\r\n\r\n".to_vec(),
            sip: Some(SipFields {
                method: "INVITE".into(),
                msg_type: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let row = sip_row(&rec);
        assert_eq!(row.values.len(), 44);
        assert_eq!(row.values[1], Value::from(1_700_000_000_123_456_i64));
        assert_eq!(row.values[2], Value::from("INVITE".to_owned()));
        assert_eq!(row.values[22], Value::from("10.0.0.1".to_owned()));
        assert_eq!(row.values[25], Value::from(5061));
        assert_eq!(row.values[34], Value::from("homer01:2001".to_owned()));
        assert!(!row.truncated);
    }

    #[test]
    fn long_values_are_cut_and_flagged() {
        let rec = CaptureRecord {
            sip: Some(SipFields {
                cseq: "1".repeat(40),
                ..Default::default()
            }),
            ..Default::default()
        };
        let row = sip_row(&rec);
        assert!(row.truncated);
        assert_eq!(row.values[17], Value::from("1".repeat(25)));
    }

    #[test]
    fn cut_respects_utf8_boundaries() {
        let rec = CaptureRecord {
            sip: Some(SipFields {
                cseq: "é".repeat(30),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(sip_row(&rec).values[17], Value::from("é".repeat(25)));
    }

    #[test]
    fn report_row_has_12_values() {
        assert_eq!(report_row(&CaptureRecord::default()).values.len(), 12);
    }
}
