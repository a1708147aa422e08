//! Column values of one row, in Kamailio's column order ([`crate::table::columns`]), cut to the
//! schema's widths.
//!
//! Kamailio does no truncation: an over-long value fails the insert on strict databases and the
//! row is lost (homer #174, #262, #296). We cut the value to its column width, flag the record and
//! count it, so a row never disappears for its size (docs/COMPATIBILITY.md).

use std::borrow::Cow;
use std::sync::LazyLock;

use sipcapture_proto::ip_from_bytes;
use sipcapture_proto::v1::{CaptureRecord, SipFields};

use crate::table::{
    Cell, Column, ColumnKind, REPORT_COLUMNS, SIP_COLUMNS, TableFamily, capture_time,
};

/// Formats an address the way Kamailio's `ip_addr2a` does for the common cases (dotted IPv4,
/// IPv6 without brackets); empty when unknown.
pub fn format_ip(bytes: &[u8]) -> String {
    ip_from_bytes(bytes)
        .map(|ip| ip.to_string())
        .unwrap_or_default()
}

/// Appends one row's cells to a table's flat cell list (no allocation per column: text is
/// borrowed from the record, cut in place).
struct Builder<'a, 'o> {
    out: &'o mut Vec<Cell<'a>>,
    next: usize,
    truncated: bool,
    columns: &'static [Column],
}

impl<'a, 'o> Builder<'a, 'o> {
    fn new(columns: &'static [Column], out: &'o mut Vec<Cell<'a>>) -> Self {
        out.reserve(columns.len());
        Builder {
            out,
            next: 0,
            truncated: false,
            columns,
        }
    }

    fn push(&mut self, cell: Cell<'a>) {
        self.out.push(cell);
        self.next += 1;
    }

    /// The byte length of `s` cut to the next column's width (flagging a cut).
    fn keep(&mut self, s: &str) -> usize {
        let width = match self.columns.get(self.next).map(|c| c.kind) {
            Some(ColumnKind::Str(n)) => n,
            _ => usize::MAX,
        };
        match s.char_indices().nth(width) {
            Some((cut, _)) => {
                self.truncated = true;
                cut
            }
            None => s.len(),
        }
    }

    fn text(&mut self, s: &'a str) {
        let keep = self.keep(s);
        self.push(Cell::Text(Cow::Borrowed(s.get(..keep).unwrap_or_default())));
    }

    fn owned_text(&mut self, s: Cow<'a, str>) {
        match s {
            Cow::Borrowed(b) => self.text(b),
            Cow::Owned(mut o) => {
                let keep = self.keep(&o);
                o.truncate(keep);
                self.push(Cell::Text(Cow::Owned(o)));
            }
        }
    }

    fn ip(&mut self, bytes: &[u8]) {
        // The widest address text (45 characters) fits every address column (60).
        self.push(Cell::Ip(ip_from_bytes(bytes)));
    }

    fn int(&mut self, n: u32) {
        self.push(Cell::Int(i32::try_from(n).unwrap_or(i32::MAX)));
    }

    fn dates(&mut self, record: &CaptureRecord) {
        let time = capture_time(record);
        // Whole seconds, as Kamailio's `date` column (micro_ts holds the microseconds).
        let whole = chrono::DateTime::from_timestamp(time.timestamp(), 0).unwrap_or(time);
        self.push(Cell::DateTime(whole.naive_utc()));
        self.push(Cell::BigInt(
            i64::try_from(record.capture_time_us).unwrap_or(i64::MAX),
        ));
    }
}

/// Appends the 44 cells of a `sip_capture` row to `out`; true when a value was cut.
pub fn sip_row<'a>(record: &'a CaptureRecord, out: &mut Vec<Cell<'a>>) -> bool {
    static NO_SIP: LazyLock<SipFields> = LazyLock::new(SipFields::default);
    let sip = record.sip.as_ref().unwrap_or(&NO_SIP);
    let mut b = Builder::new(&SIP_COLUMNS, out);
    b.dates(record);
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
    b.ip(&record.src_ip);
    b.int(record.src_port);
    b.ip(&record.dst_ip);
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
    b.push(Cell::Blob(&record.payload));
    b.text(&sip.custom_field1);
    b.text(&sip.custom_field2);
    b.text(&sip.custom_field3);
    b.truncated
}

/// Appends the 12 cells of a report row to `out`; true when a value was cut.
pub fn report_row<'a>(record: &'a CaptureRecord, out: &mut Vec<Cell<'a>>) -> bool {
    let correlation_id = record
        .hep
        .as_ref()
        .map_or(&[][..], |h| &h.correlation_id[..]);
    let report_type = record.report.as_ref().map_or(0, |r| r.report_type);
    let mut b = Builder::new(&REPORT_COLUMNS, out);
    b.dates(record);
    b.owned_text(String::from_utf8_lossy(correlation_id));
    b.ip(&record.src_ip);
    b.int(record.src_port);
    b.ip(&record.dst_ip);
    b.int(record.dst_port);
    b.int(record.transport);
    b.int(record.family);
    b.int(report_type);
    b.text(&record.node);
    b.push(Cell::Blob(&record.payload));
    b.truncated
}

/// Appends the row of a record for its table family to `out`; true when a value was cut.
pub fn row<'a>(record: &'a CaptureRecord, family: TableFamily, out: &mut Vec<Cell<'a>>) -> bool {
    match family {
        TableFamily::Sip => sip_row(record, out),
        TableFamily::Report => report_row(record, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn text(s: &str) -> Cell<'_> {
        Cell::Text(Cow::Borrowed(s))
    }

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
        let mut cells = Vec::new();
        assert!(!sip_row(&rec, &mut cells));
        assert_eq!(cells.len(), 44);
        assert_eq!(
            cells[0],
            Cell::DateTime(
                chrono::DateTime::from_timestamp(1_700_000_000, 0)
                    .unwrap()
                    .naive_utc()
            )
        );
        assert_eq!(cells[1], Cell::BigInt(1_700_000_000_123_456));
        assert_eq!(cells[2], text("INVITE"));
        assert_eq!(
            cells[22],
            Cell::Ip(Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))))
        );
        assert_eq!(cells[25], Cell::Int(5061));
        assert_eq!(cells[34], text("homer01:2001"));
        assert_eq!(cells[40], Cell::Blob(&rec.payload));
        // a second row follows the first in the same list
        sip_row(&rec, &mut cells);
        assert_eq!(cells.len(), 88);
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
        let mut cells = Vec::new();
        assert!(sip_row(&rec, &mut cells));
        assert_eq!(cells[17], text(&"1".repeat(25)));
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
        let mut cells = Vec::new();
        sip_row(&rec, &mut cells);
        assert_eq!(cells[17], text(&"é".repeat(25)));
    }

    #[test]
    fn report_row_has_12_values() {
        let rec = CaptureRecord {
            hep: Some(sipcapture_proto::v1::HepMeta {
                correlation_id: b"cid\xff".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut cells = Vec::new();
        assert!(!report_row(&rec, &mut cells));
        assert_eq!(cells.len(), 12);
        assert_eq!(cells[2], Cell::Text(Cow::Owned("cid\u{fffd}".into())));
        assert_eq!(cells[3], Cell::Ip(None));
    }

    #[test]
    fn address_columns_hold_any_address() {
        let widest = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".len();
        for c in SIP_COLUMNS.iter().chain(&REPORT_COLUMNS) {
            if c.name.ends_with("_ip") {
                assert!(
                    matches!(c.kind, ColumnKind::Str(n) if n >= widest),
                    "{}",
                    c.name
                );
            }
        }
    }
}
