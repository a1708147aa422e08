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
    Cell, Column, ColumnKind, REPORT_COLUMNS, SIP_COLUMNS, TableFamily, capture_time, payload_type,
};

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

/// Appends the 44 cells of a `sip_capture` row to `out`, `msg` as the stored message (the
/// payload, or its first `max_msg_size` bytes); true when a value was cut.
pub fn sip_row<'a>(record: &'a CaptureRecord, msg: &'a [u8], out: &mut Vec<Cell<'a>>) -> bool {
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
    b.push(Cell::Blob(msg));
    b.text(&sip.custom_field1);
    b.text(&sip.custom_field2);
    b.text(&sip.custom_field3);
    b.truncated
}

/// Appends the 12 cells of a report row to `out` (`msg` as for [`sip_row`]); true when a value
/// was cut.
pub fn report_row<'a>(record: &'a CaptureRecord, msg: &'a [u8], out: &mut Vec<Cell<'a>>) -> bool {
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
    b.push(Cell::Blob(msg));
    b.truncated
}

/// The `data_header` keys of a SIP row in a HOMER 7 table, in heplify-server's default order
/// (its `SIPHeader` setting).
pub const HEP_SIP_KEYS: [&str; 10] = [
    "ruri_user",
    "ruri_domain",
    "from_user",
    "from_tag",
    "to_user",
    "to_tag",
    "callid",
    "cseq",
    "method",
    "user_agent",
];

/// Appends `s` to `out` as the inside of a JSON string: quotes, backslashes and control
/// characters escaped; NUL removed (PostgreSQL's `jsonb` refuses `\u0000`).
fn json_text(out: &mut String, s: &str) {
    // Most values need no escape: copied whole.
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => {}
            c if u32::from(c) < 0x20 => {
                // Writing into a String cannot fail.
                let _infallible =
                    std::fmt::Write::write_fmt(out, format_args!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
}

/// Appends `,"key":"value"` (without the comma for the first member).
fn json_member(out: &mut String, key: &str, value: &str) {
    if !out.ends_with('{') {
        out.push(',');
    }
    out.push('"');
    json_text(out, key);
    out.push_str("\":\"");
    json_text(out, value);
    out.push('"');
}

/// Appends `,"key":"address"` (canonical text, empty when unknown), written in place.
fn json_ip(out: &mut String, key: &str, bytes: &[u8]) {
    json_member(out, key, "");
    out.pop();
    if let Some(ip) = ip_from_bytes(bytes) {
        // Writing into a String cannot fail; an address needs no escape.
        let _infallible = std::fmt::Write::write_fmt(out, format_args!("{ip}"));
    }
    out.push('"');
}

/// Appends `,"key":number`.
fn json_number(out: &mut String, key: &str, value: u64) {
    if !out.ends_with('{') {
        out.push(',');
    }
    // Writing into a String cannot fail.
    let _infallible = std::fmt::Write::write_fmt(out, format_args!("\"{key}\":{value}"));
}

/// Text of a byte string up to its first NUL, invalid UTF-8 replaced.
fn lossy_to_nul(bytes: &[u8]) -> Cow<'_, str> {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(bytes.get(..end).unwrap_or_default())
}

/// heplify-server's `ProtoString` of a HEP payload type.
pub fn hep_proto_name(payload_type: u32) -> Cow<'static, str> {
    match payload_type {
        1 => "sip".into(),
        5 => "rtcp".into(),
        34 => "rtpagent".into(),
        35 => "rtcpxr".into(),
        38 => "horaclifix".into(),
        53 => "dns".into(),
        100 => "log".into(),
        n => n.to_string().into(),
    }
}

/// `captureId`: the node name chunk, else the capture id in decimal, else (not HEP) the
/// record's node.
fn capture_id(record: &CaptureRecord) -> Cow<'_, str> {
    match &record.hep {
        Some(h) if !h.node_name.is_empty() => Cow::Borrowed(h.node_name.as_str()),
        Some(h) if h.has_capture_id => Cow::Owned(h.capture_id.to_string()),
        _ => Cow::Borrowed(record.node.as_str()),
    }
}

/// The correlation id of a record: HEP chunk 0x0011, else (SIP) the A-leg Call-ID header the
/// collector was told to read, else the Call-ID.
pub fn hep_correlation_id(record: &CaptureRecord) -> Cow<'_, str> {
    let chunk = record
        .hep
        .as_ref()
        .map_or(&[][..], |h| &h.correlation_id[..]);
    let chunk = lossy_to_nul(chunk);
    if !chunk.is_empty() {
        return chunk;
    }
    match &record.sip {
        Some(sip) if !sip.callid_aleg.is_empty() => Cow::Borrowed(sip.callid_aleg.as_str()),
        Some(sip) => Cow::Borrowed(sip.callid.as_str()),
        None => chunk,
    }
}

/// The message as heplify-server stores it in `raw`: NUL bytes and invalid UTF-8 removed.
fn raw_text(payload: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(payload) {
        Ok(s) if !s.contains('\0') => Cow::Borrowed(s),
        _ => {
            let mut out = String::with_capacity(payload.len());
            for chunk in payload.utf8_chunks() {
                out.extend(chunk.valid().chars().filter(|c| *c != '\0'));
            }
            Cow::Owned(out)
        }
    }
}

/// heplify-server's `protocol_header` of a record (without `capturePass`: a password does not
/// belong in a table).
pub fn protocol_header(record: &CaptureRecord) -> String {
    let mut out = String::with_capacity(320);
    out.push('{');
    let src = ip_from_bytes(&record.src_ip);
    let family = match record.family {
        0 if matches!(src, Some(std::net::IpAddr::V6(_))) => 10,
        0 => 2,
        n => n,
    };
    json_number(&mut out, "protocolFamily", u64::from(family));
    json_number(&mut out, "protocol", u64::from(record.ip_protocol));
    json_ip(&mut out, "srcIp", &record.src_ip);
    json_ip(&mut out, "dstIp", &record.dst_ip);
    json_number(&mut out, "srcPort", u64::from(record.src_port));
    json_number(&mut out, "dstPort", u64::from(record.dst_port));
    json_number(&mut out, "timeSeconds", record.capture_time_us / 1_000_000);
    json_number(&mut out, "timeUseconds", record.capture_time_us % 1_000_000);
    json_number(&mut out, "payloadType", u64::from(payload_type(record)));
    json_member(&mut out, "captureId", &capture_id(record));
    json_member(&mut out, "correlation_id", &hep_correlation_id(record));
    out.push('}');
    out
}

/// heplify-server's `data_header` of a SIP row: [`HEP_SIP_KEYS`], then the configured custom
/// fields that have a value.
pub fn sip_data_header(sip: &SipFields, custom_keys: &[String]) -> String {
    let mut out = String::with_capacity(256);
    out.push('{');
    for (key, value) in HEP_SIP_KEYS.iter().zip([
        &sip.ruri_user,
        &sip.ruri_domain,
        &sip.from_user,
        &sip.from_tag,
        &sip.to_user,
        &sip.to_tag,
        &sip.callid,
        &sip.cseq,
        &sip.method,
        &sip.user_agent,
    ]) {
        json_member(&mut out, key, value);
    }
    for (key, value) in
        custom_keys
            .iter()
            .zip([&sip.custom_field1, &sip.custom_field2, &sip.custom_field3])
    {
        if !key.is_empty() && !value.is_empty() {
            json_member(&mut out, key, value);
        }
    }
    out.push('}');
    out
}

/// heplify-server's `data_header` of a non-SIP row: `{"node": captureId, "proto": name}`.
pub fn report_data_header(record: &CaptureRecord) -> String {
    let mut out = String::with_capacity(64);
    out.push('{');
    json_member(&mut out, "node", &capture_id(record));
    json_member(&mut out, "proto", &hep_proto_name(payload_type(record)));
    out.push('}');
    out
}

/// Appends the 5 cells of a HOMER 7 row (`sid`, `create_date`, `protocol_header`,
/// `data_header`, `raw`) to `out` (`msg` as for [`sip_row`]). SIP rows are keyed by Call-ID,
/// others by correlation id.
pub fn hep_row<'a>(
    record: &'a CaptureRecord,
    msg: &'a [u8],
    family: TableFamily,
    custom_keys: &[String],
    out: &mut Vec<Cell<'a>>,
) {
    out.reserve(5);
    let sip = record.sip.as_ref().filter(|_| family.is_sip());
    let sid = match sip {
        Some(sip) => Cow::Borrowed(sip.callid.as_str()),
        None => hep_correlation_id(record),
    };
    out.push(Cell::Text(sid));
    out.push(Cell::DateTime(capture_time(record).naive_utc()));
    out.push(Cell::Json(protocol_header(record)));
    out.push(Cell::Json(match sip {
        Some(sip) => sip_data_header(sip, custom_keys),
        None => report_data_header(record),
    }));
    out.push(Cell::Text(raw_text(msg)));
}

/// How a row is cut to the storage limits.
#[derive(Debug, Clone, Copy)]
pub struct Cut<'k> {
    /// HOMER 7: the `data_header` keys of the custom fields.
    pub custom_keys: &'k [String],
    /// Most bytes of the message stored (`max_msg_size`).
    pub max_msg_size: usize,
}

/// What [`row`] cut.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Built {
    /// A value was cut to its column width.
    pub value_cut: bool,
    /// The message was cut to `max_msg_size`.
    pub msg_cut: bool,
}

/// Appends the row of a record for its table family to `out`, the message cut to
/// `cut.max_msg_size` bytes (a HOMER user still sees the start line and the headers; the row is
/// never lost for its size).
pub fn row<'a>(
    record: &'a CaptureRecord,
    family: TableFamily,
    cut: &Cut<'_>,
    out: &mut Vec<Cell<'a>>,
) -> Built {
    let payload = record.payload.as_slice();
    let msg = payload.get(..cut.max_msg_size).unwrap_or(payload);
    let msg_cut = msg.len() < payload.len();
    let value_cut = match family {
        TableFamily::Sip => sip_row(record, msg, out),
        TableFamily::Report => report_row(record, msg, out),
        TableFamily::HepSip | TableFamily::HepReport => {
            hep_row(record, msg, family, cut.custom_keys, out);
            false
        }
    };
    Built { value_cut, msg_cut }
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
        assert!(!sip_row(&rec, &rec.payload, &mut cells));
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
        sip_row(&rec, &rec.payload, &mut cells);
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
        assert!(sip_row(&rec, &rec.payload, &mut cells));
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
        sip_row(&rec, &rec.payload, &mut cells);
        assert_eq!(cells[17], text(&"é".repeat(25)));
    }

    #[test]
    fn the_message_is_cut_to_max_msg_size_in_every_family() {
        let rec = CaptureRecord {
            payload: b"INVITE sip:a@b SIP/2.0\r\n\r\nbody".to_vec(),
            ..Default::default()
        };
        let cut = Cut {
            custom_keys: &[],
            max_msg_size: 6,
        };
        for (family, at) in [
            (TableFamily::Sip, 40),
            (TableFamily::Report, 11),
            (TableFamily::HepSip, 4),
        ] {
            let mut cells = Vec::new();
            let built = row(&rec, family, &cut, &mut cells);
            assert!(built.msg_cut, "{family:?}");
            let stored = match &cells[at] {
                Cell::Blob(b) => b.to_vec(),
                Cell::Text(t) => t.as_bytes().to_vec(),
                other => panic!("{other:?}"),
            };
            assert_eq!(stored, b"INVITE", "{family:?}");
        }
        let whole = Cut {
            custom_keys: &[],
            max_msg_size: rec.payload.len(),
        };
        let mut cells = Vec::new();
        assert!(!row(&rec, TableFamily::Sip, &whole, &mut cells).msg_cut);
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
        assert!(!report_row(&rec, &rec.payload, &mut cells));
        assert_eq!(cells.len(), 12);
        assert_eq!(cells[2], Cell::Text(Cow::Owned("cid\u{fffd}".into())));
        assert_eq!(cells[3], Cell::Ip(None));
    }

    #[test]
    fn homer7_headers_are_heplify_json() {
        let rec = CaptureRecord {
            capture_time_us: 1_700_000_000_123_456,
            family: 2,
            ip_protocol: 17,
            src_ip: vec![10, 0, 0, 1],
            src_port: 5060,
            dst_ip: vec![10, 0, 0, 2],
            dst_port: 5080,
            node: "homer01".into(),
            hep: Some(sipcapture_proto::v1::HepMeta {
                version: 3,
                has_capture_id: true,
                capture_id: 2001,
                payload_type: 1,
                ..Default::default()
            }),
            payload: b"INVITE sip:bob@b SIP/2.0\r\n\0\xffx".to_vec(),
            sip: Some(SipFields {
                msg_type: 1,
                method: "INVITE".into(),
                ruri_user: "bob".into(),
                ruri_domain: "b".into(),
                from_user: "al\"ice\\".into(),
                callid: "c1@h".into(),
                cseq: "1 INVITE".into(),
                user_agent: "ua\u{1}\0".into(),
                custom_field1: "00:11".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            protocol_header(&rec),
            r#"{"protocolFamily":2,"protocol":17,"srcIp":"10.0.0.1","dstIp":"10.0.0.2","srcPort":5060,"dstPort":5080,"timeSeconds":1700000000,"timeUseconds":123456,"payloadType":1,"captureId":"2001","correlation_id":"c1@h"}"#
        );
        let keys = vec!["mac".to_owned(), "ip".to_owned()];
        assert_eq!(
            sip_data_header(rec.sip.as_ref().unwrap(), &keys),
            r#"{"ruri_user":"bob","ruri_domain":"b","from_user":"al\"ice\\","from_tag":"","to_user":"","to_tag":"","callid":"c1@h","cseq":"1 INVITE","method":"INVITE","user_agent":"ua\u0001","mac":"00:11"}"#
        );
        let mut cells = Vec::new();
        let cut = Cut {
            custom_keys: &keys,
            max_msg_size: 65_536,
        };
        assert_eq!(
            row(&rec, TableFamily::HepSip, &cut, &mut cells),
            Built::default()
        );
        assert_eq!(cells.len(), 5);
        assert_eq!(cells[0], text("c1@h"));
        assert_eq!(
            cells[4],
            Cell::Text(Cow::Owned("INVITE sip:bob@b SIP/2.0\r\nx".into()))
        );
        // a node name chunk is the captureId; the correlation chunk wins over the Call-ID
        let mut named = rec.clone();
        let hep = named.hep.as_mut().unwrap();
        hep.node_name = "sbc-1".into();
        hep.correlation_id = b"corr".to_vec();
        assert!(
            protocol_header(&named).ends_with(r#""captureId":"sbc-1","correlation_id":"corr"}"#)
        );
        // a report: sid is the correlation id, data_header names node and proto
        let report = CaptureRecord {
            hep: Some(sipcapture_proto::v1::HepMeta {
                payload_type: 5,
                correlation_id: b"c1@h".to_vec(),
                node_name: "sbc-1".into(),
                ..Default::default()
            }),
            payload: br#"{"type":200}"#.to_vec(),
            ..Default::default()
        };
        cells.clear();
        row(&report, TableFamily::HepReport, &cut, &mut cells);
        assert_eq!(cells[0], text("c1@h"));
        assert_eq!(
            cells[3],
            Cell::Json(r#"{"node":"sbc-1","proto":"rtcp"}"#.into())
        );
        assert_eq!(hep_proto_name(99), "99");
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
