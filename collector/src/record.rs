//! The ONLY place a [`CaptureRecord`] is built: from a decoded HEP packet
//! ([`RecordBuilder::from_hep`]) or a captured UDP datagram ([`RecordBuilder::from_raw`]),
//! applying Kamailio's rules for time, node, transport, correlation id and the acceptance of
//! incomplete packets.

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use sipcapture_proto::ip_to_bytes;
use sipcapture_proto::v1::{
    CaptureRecord, HepChunk as WireChunk, HepMeta, InputKind, Origin, RecordFlags, RecordKind,
    ReportFields, Routing, SipFields,
};

use crate::decode::hep::{HepPacket, HepPayload};
use crate::sip::{self, ExtractConfig, SipColumns};

/// Kamailio builds `node` in a 100-byte buffer: at most 99 characters.
const MAX_NODE_LEN: usize = 99;
/// Kamailio's minimum of counted core chunks (`totelem`) for a HEP3 packet.
const KAMAILIO_MIN_CORE_CHUNKS: u8 = 9;
/// Kamailio's `MIN_UDP_PACKET`: shorter raw-captured payloads are skipped (behaviour doc §5).
const KAMAILIO_MIN_UDP_PACKET: usize = 32;

/// Why a packet produced no record (each is a counted drop reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The HEP packet has no payload chunk.
    #[error("HEP packet without payload")]
    NoPayload,
    /// The compressed payload could not be inflated.
    #[error("payload: {0}")]
    Payload(crate::decode::hep::HepError),
    /// The SIP message is one Kamailio would not store.
    #[error("SIP: {0}")]
    Sip(sip::SipError),
    /// A raw-captured payload that is not SIP (RTP, STUN, keep-alives, another protocol on a
    /// SIP port): not a record.
    #[error("raw payload is not SIP")]
    NotSip,
}

impl RecordError {
    /// Low-cardinality drop reason.
    pub fn reason(&self) -> &'static str {
        match self {
            RecordError::NoPayload => "no_payload",
            RecordError::Payload(e) => e.reason(),
            RecordError::Sip(e) => e.reason(),
            RecordError::NotSip => "not_sip",
        }
    }
}

/// Settings the builder applies to every record.
#[derive(Debug, Clone)]
pub struct RecordBuilder {
    /// Kamailio `capture_node`.
    pub capture_node: String,
    /// The collector's id.
    pub collector_id: String,
    /// SIP extraction settings.
    pub sip: ExtractConfig,
    /// Inflate cap for compressed payloads.
    pub max_inflated_payload: usize,
}

/// Where and when a packet was received.
#[derive(Debug, Clone, Copy)]
pub struct Reception {
    /// The input it came from.
    pub input: InputKind,
    /// The peer that sent it.
    pub peer: Option<std::net::SocketAddr>,
    /// When it was received.
    pub at: SystemTime,
}

/// Kamailio's transport `proto` from the IP protocol number carried by HEP (behaviour doc §1.2):
/// 17 → UDP(1), 6 → TCP(2), 22 (the "fake" TLS/WS value) → TLS(3), 132 → SCTP(4), else none(0).
pub fn kamailio_proto(ip_protocol: u8) -> u32 {
    match ip_protocol {
        17 => 1,
        6 => 2,
        22 => 3,
        132 => 4,
        _ => 0,
    }
}

/// Kamailio's report `type` for a HEP payload type (§2.3); other types keep their own number.
pub fn report_type(payload_type: u32) -> u32 {
    match payload_type {
        5 => 3,
        32 => 2,
        99 => 4,
        100 => 5,
        other => other,
    }
}

/// The `node` column: `capture_node:captid` when the packet carried a (non-zero) time, else
/// `capture_node`; cut at 99 characters as Kamailio does.
pub fn node_column(capture_node: &str, time_from_packet: bool, capture_id: u32) -> String {
    let mut node = if time_from_packet {
        format!("{capture_node}:{capture_id}")
    } else {
        capture_node.to_owned()
    };
    if node.len() > MAX_NODE_LEN {
        let mut cut = MAX_NODE_LEN;
        while !node.is_char_boundary(cut) {
            cut -= 1;
        }
        node.truncate(cut);
    }
    node
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn family_of(ip: Option<IpAddr>, carried: Option<u8>) -> u32 {
    match ip {
        Some(IpAddr::V4(_)) => 2,
        Some(IpAddr::V6(_)) => 10,
        None => u32::from(carried.unwrap_or(0)),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl RecordBuilder {
    /// Builds the record of one decoded HEP packet.
    pub fn from_hep(
        &self,
        pkt: &HepPacket<'_>,
        rx: Reception,
    ) -> Result<CaptureRecord, RecordError> {
        let payload = pkt.payload.ok_or(RecordError::NoPayload)?;
        let compressed = matches!(payload, HepPayload::Compressed(_));
        let bytes = payload
            .inflate(self.max_inflated_payload)
            .map_err(RecordError::Payload)?;
        if bytes.is_empty() {
            return Err(RecordError::NoPayload);
        }

        // v1/v2 carry no payload type: Kamailio treats their payload as SIP.
        let payload_type = u32::from(pkt.proto_type.unwrap_or(1));
        let incomplete = pkt.version == 3
            && (pkt.core_chunks < KAMAILIO_MIN_CORE_CHUNKS
                || pkt.src_ip.is_none()
                || pkt.dst_ip.is_none()
                || pkt.proto_type.is_none());

        let mut record = self.hep_envelope(pkt, rx);
        record.hep = Some(hep_meta(pkt, payload_type, compressed));
        record.flags = Some(RecordFlags {
            incomplete_hep: incomplete,
            ..Default::default()
        });

        if payload_type == 1 {
            let columns = sip::extract(&bytes, &self.sip).map_err(RecordError::Sip)?;
            let (fields, unmasked) = self.sip_fields(&columns, pkt.correlation_id);
            if let Some(flags) = record.flags.as_mut() {
                flags.bad_message = columns.bad;
                flags.unmasked_callid = unmasked;
            }
            record.sip = Some(fields);
        } else {
            record.kind = RecordKind::Report as i32;
            record.report = Some(ReportFields {
                report_type: report_type(payload_type),
            });
        }
        record.payload = bytes.into_owned();
        Ok(record)
    }

    /// Builds the report row of a script's `report_capture(table, cid, data)` (behaviour doc
    /// §2.3, script path) for the packet the hook ran on: the table as-is (no strftime), the
    /// correlation id `cid` (else the packet's chunk 0x0011, else empty), the message `data`
    /// (else the packet's payload), time and node as for the packet's own record. Addresses,
    /// ports, transport and family are the packet's (what Kamailio's `request_route` sees after
    /// the HEP re-parse); `type` is 1/2 for a SIP request/reply payload, else the report type
    /// of the payload type (docs/COMPATIBILITY.md).
    pub fn script_report(
        &self,
        pkt: &HepPacket<'_>,
        rx: Reception,
        table: &str,
        cid: &[u8],
        data: &[u8],
    ) -> CaptureRecord {
        let payload_type = u32::from(pkt.proto_type.unwrap_or(1));
        let inner = pkt
            .payload
            .and_then(|p| p.inflate(self.max_inflated_payload).ok())
            .unwrap_or_default();
        let report_type = if payload_type == 1 {
            match sip::extract(&inner, &self.sip) {
                Ok(columns) => u32::from(columns.msg_type),
                Err(_) => 0,
            }
        } else {
            report_type(payload_type)
        };
        let correlation_id = if cid.is_empty() {
            let id = pkt.correlation_id.unwrap_or_default();
            let end = id.iter().position(|b| *b == 0).unwrap_or(id.len());
            id.get(..end).unwrap_or_default().to_vec()
        } else {
            cid.to_vec()
        };
        let mut meta = hep_meta(
            pkt,
            payload_type,
            matches!(pkt.payload, Some(HepPayload::Compressed(_))),
        );
        meta.has_correlation_id = !correlation_id.is_empty();
        meta.correlation_id = correlation_id;
        let payload = if data.is_empty() {
            inner.into_owned()
        } else {
            data.to_vec()
        };
        CaptureRecord {
            kind: RecordKind::Report as i32,
            hep: Some(meta),
            payload,
            report: Some(ReportFields { report_type }),
            routing: Some(Routing {
                table: table.to_owned(),
                capture_mode: String::new(),
            }),
            ..self.hep_envelope(pkt, rx)
        }
    }

    /// The envelope of a HEP packet's record (a SIP record without HEP meta, payload or SIP
    /// fields): time, family, transport, addresses, node and origin. Kamailio takes the HEP time
    /// when its seconds are non-zero, else "now"; the node gets the capture id only in the
    /// first case.
    fn hep_envelope(&self, pkt: &HepPacket<'_>, rx: Reception) -> CaptureRecord {
        let (capture_time_us, time_from_packet) = match pkt.ts_sec {
            Some(sec) if sec != 0 => (
                u64::from(sec) * 1_000_000 + u64::from(pkt.ts_usec.unwrap_or(0)),
                true,
            ),
            _ => (micros(rx.at), false),
        };
        CaptureRecord {
            capture_time_us,
            time_from_packet,
            family: family_of(pkt.src_ip.or(pkt.dst_ip), pkt.ip_family),
            ip_protocol: u32::from(pkt.ip_protocol.unwrap_or(0)),
            transport: kamailio_proto(pkt.ip_protocol.unwrap_or(0)),
            src_ip: pkt.src_ip.map(ip_to_bytes).unwrap_or_default(),
            src_port: u32::from(pkt.src_port.unwrap_or(0)),
            dst_ip: pkt.dst_ip.map(ip_to_bytes).unwrap_or_default(),
            dst_port: u32::from(pkt.dst_port.unwrap_or(0)),
            node: node_column(
                &self.capture_node,
                time_from_packet,
                pkt.capture_id.unwrap_or(0),
            ),
            kind: RecordKind::Sip as i32,
            hep: None,
            payload: Vec::new(),
            sip: None,
            report: None,
            flags: None,
            routing: None,
            origin: Some(Origin {
                collector_id: self.collector_id.clone(),
                input: rx.input as i32,
                peer: rx.peer.map(|p| p.to_string()).unwrap_or_default(),
            }),
        }
    }

    /// Builds the record of one SIP message captured raw (mirror port, IPIP, pcap file), as
    /// Kamailio's raw modes do (behaviour doc §5): the IP protocol gives the transport, the node
    /// is the plain `capture_node`, the family follows the addresses, and the capture time is
    /// the packet's timestamp when the source has one (pcap), else the receipt time (Kamailio
    /// always uses "now"). Payloads Kamailio's raw path would not hand to the SIP parser (under
    /// 32 bytes, or not starting with an alphanumeric byte: HEP, STUN, RTP, keep-alives) and
    /// payloads without a SIP start line are [`RecordError::NotSip`].
    pub fn from_raw(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
        ip_protocol: u8,
        payload: &[u8],
        rx: Reception,
        packet_time: Option<SystemTime>,
    ) -> Result<CaptureRecord, RecordError> {
        let transport = kamailio_proto(ip_protocol);
        self.from_raw_transport(src, dst, ip_protocol, transport, payload, rx, packet_time)
    }

    /// [`RecordBuilder::from_raw`] with the Kamailio transport `proto` given by the caller
    /// (the dissector knows WebSocket, 5, which the IP protocol alone cannot tell).
    #[allow(clippy::too_many_arguments)]
    pub fn from_raw_transport(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
        ip_protocol: u8,
        transport: u32,
        payload: &[u8],
        rx: Reception,
        packet_time: Option<SystemTime>,
    ) -> Result<CaptureRecord, RecordError> {
        let looks_like_text = payload.first().is_some_and(u8::is_ascii_alphanumeric);
        if payload.len() < KAMAILIO_MIN_UDP_PACKET || !looks_like_text {
            return Err(RecordError::NotSip);
        }
        let columns = sip::extract(payload, &self.sip).map_err(|e| match e {
            sip::SipError::TooShort { .. }
            | sip::SipError::BadStartLine { .. }
            | sip::SipError::NotSip { .. } => RecordError::NotSip,
            other => RecordError::Sip(other),
        })?;
        let (fields, unmasked) = self.sip_fields(&columns, None);
        Ok(CaptureRecord {
            capture_time_us: micros(packet_time.unwrap_or(rx.at)),
            time_from_packet: packet_time.is_some(),
            family: family_of(Some(src.ip()), None),
            ip_protocol: u32::from(ip_protocol),
            transport,
            src_ip: ip_to_bytes(src.ip()),
            src_port: u32::from(src.port()),
            dst_ip: ip_to_bytes(dst.ip()),
            dst_port: u32::from(dst.port()),
            // Plain `capture_node`, even with a packet time: raw captures carry no capture id.
            node: node_column(&self.capture_node, false, 0),
            kind: RecordKind::Sip as i32,
            hep: None,
            payload: payload.to_vec(),
            sip: Some(fields),
            report: None,
            flags: Some(RecordFlags {
                bad_message: columns.bad,
                unmasked_callid: unmasked,
                ..Default::default()
            }),
            routing: None,
            origin: Some(Origin {
                collector_id: self.collector_id.clone(),
                input: rx.input as i32,
                peer: rx.peer.map(|p| p.to_string()).unwrap_or_default(),
            }),
        })
    }

    /// Owned column values; `correlation_id` is the HEP correlation id when present, else the
    /// (unmasked) Call-ID. Returns whether the Call-ID was unmasked.
    fn sip_fields(&self, c: &SipColumns<'_>, hep_correlation: Option<&[u8]>) -> (SipFields, bool) {
        let unmasked = self
            .sip
            .topoh
            .as_ref()
            .and_then(|t| sip::topoh_unmask(c.callid, t));
        let callid = match &unmasked {
            Some(u) => text(u),
            None => text(c.callid),
        };
        // Kamailio reads chunk 0x0011 with strlen(); we take the exact chunk bytes up to the
        // first NUL (docs/COMPATIBILITY.md).
        let correlation_id = match hep_correlation {
            Some(id) if !id.is_empty() => {
                let end = id.iter().position(|b| *b == 0).unwrap_or(id.len());
                text(id.get(..end).unwrap_or(id))
            }
            _ => callid.clone(),
        };
        let fields = SipFields {
            msg_type: u32::from(c.msg_type),
            method: text(c.method),
            reply_reason: text(c.reply_reason),
            ruri: text(c.ruri),
            ruri_user: text(c.ruri_user),
            ruri_domain: text(c.ruri_domain),
            from_user: text(c.from_user),
            from_domain: text(c.from_domain),
            from_tag: text(c.from_tag),
            to_user: text(c.to_user),
            to_domain: text(c.to_domain),
            to_tag: text(c.to_tag),
            pid_user: text(c.pid_user),
            contact_user: text(c.contact_user),
            auth_user: text(c.auth_user),
            callid,
            callid_aleg: text(c.callid_aleg),
            via_1: text(c.via_1),
            via_1_branch: text(c.via_1_branch),
            cseq: text(c.cseq),
            reason: text(c.reason),
            content_type: text(c.content_type),
            auth: String::new(),
            user_agent: text(c.user_agent),
            contact_ip: text(c.contact_ip),
            contact_port: u32::from(c.contact_port),
            originator_ip: text(c.originator_ip),
            originator_port: u32::from(c.originator_port),
            rtp_stat: text(c.rtp_stat),
            diversion: text(c.diversion),
            correlation_id,
            custom_field1: text(c.custom_field1),
            custom_field2: text(c.custom_field2),
            custom_field3: text(c.custom_field3),
            cseq_method: text(c.cseq_method),
        };
        (fields, unmasked.is_some())
    }
}

fn hep_meta(pkt: &HepPacket<'_>, payload_type: u32, compressed: bool) -> HepMeta {
    HepMeta {
        version: u32::from(pkt.version),
        has_capture_id: pkt.capture_id.is_some(),
        capture_id: pkt.capture_id.unwrap_or(0),
        payload_type,
        has_correlation_id: pkt.correlation_id.is_some(),
        correlation_id: pkt.correlation_id.map(<[u8]>::to_vec).unwrap_or_default(),
        has_vlan_id: pkt.vlan_id.is_some(),
        vlan_id: u32::from(pkt.vlan_id.unwrap_or(0)),
        node_name: pkt.node_name.map(text).unwrap_or_default(),
        has_keep_alive: pkt.keep_alive.is_some(),
        keep_alive: u32::from(pkt.keep_alive.unwrap_or(0)),
        has_auth_key: pkt.auth_key.is_some(),
        payload_was_compressed: compressed,
        extra_chunks: pkt
            .extra_chunks()
            .map(|c| WireChunk {
                vendor_id: u32::from(c.vendor_id),
                type_id: u32::from(c.type_id),
                value: c.value.to_vec(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_rule() {
        assert_eq!(node_column("homer01", true, 2001), "homer01:2001");
        assert_eq!(node_column("homer01", false, 2001), "homer01");
        assert_eq!(node_column("homer01", true, u32::MAX), "homer01:4294967295");
        assert_eq!(node_column(&"n".repeat(150), false, 0).len(), 99);
    }

    #[test]
    fn proto_and_report_type_maps() {
        assert_eq!(kamailio_proto(17), 1);
        assert_eq!(kamailio_proto(6), 2);
        assert_eq!(kamailio_proto(22), 3);
        assert_eq!(kamailio_proto(132), 4);
        assert_eq!(kamailio_proto(99), 0);
        assert_eq!(report_type(5), 3);
        assert_eq!(report_type(32), 2);
        assert_eq!(report_type(99), 4);
        assert_eq!(report_type(100), 5);
        assert_eq!(report_type(34), 34);
    }

    const OPTIONS: &[u8] = b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
        From: <sip:alice@example.com>;tag=1\r\n\
        To: <sip:bob@example.com>\r\n\
        Call-ID: raw-1@10.0.0.1\r\n\
        CSeq: 1 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";

    fn builder() -> RecordBuilder {
        RecordBuilder {
            capture_node: "homer01".to_owned(),
            collector_id: "c1".to_owned(),
            sip: ExtractConfig::kamailio_defaults(),
            max_inflated_payload: 1024,
        }
    }

    fn mirror_rx(at: SystemTime) -> Reception {
        Reception {
            input: InputKind::Mirror,
            peer: None,
            at,
        }
    }

    #[test]
    fn raw_record_follows_kamailio_raw_mode() {
        let now = UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        let src: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let dst: SocketAddr = "[fd77::2]:5090".parse().unwrap();
        let r = builder()
            .from_raw(src, dst, 17, OPTIONS, mirror_rx(now), None)
            .unwrap();
        assert_eq!(r.capture_time_us, 1_700_000_000_123_456);
        assert!(!r.time_from_packet);
        assert_eq!((r.family, r.ip_protocol, r.transport), (2, 17, 1));
        assert_eq!((r.src_ip, r.src_port), (vec![10, 0, 0, 1], 5060));
        assert_eq!(r.dst_ip.len(), 16);
        assert_eq!(r.dst_port, 5090);
        assert_eq!(r.node, "homer01");
        assert_eq!(r.kind, RecordKind::Sip as i32);
        assert!(r.hep.is_none());
        assert_eq!(r.payload, OPTIONS);
        let sip = r.sip.unwrap();
        assert_eq!(
            (sip.method.as_str(), sip.callid.as_str()),
            ("OPTIONS", "raw-1@10.0.0.1")
        );
        assert_eq!(sip.correlation_id, "raw-1@10.0.0.1");
        assert_eq!(r.origin.unwrap().input, InputKind::Mirror as i32);

        // A packet timestamp (pcap) wins over the receipt time, and the node stays plain.
        let v6: SocketAddr = "[fd77::1]:5060".parse().unwrap();
        let packet_time = UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        let r = builder()
            .from_raw(v6, dst, 17, OPTIONS, mirror_rx(now), Some(packet_time))
            .unwrap();
        assert_eq!(r.capture_time_us, 1_600_000_000_000_000);
        assert!(r.time_from_packet);
        assert_eq!((r.family, r.node.as_str()), (10, "homer01"));
    }

    #[test]
    fn raw_non_sip_payloads_are_not_records() {
        let src: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let rx = mirror_rx(SystemTime::now());
        let b = builder();
        let mut rtp = vec![0x80, 0x00];
        rtp.extend_from_slice(&[0u8; 170]);
        let cases: [&[u8]; 5] = [
            b"",
            b"OPTIONS sip:a SIP/2.0\r\n", // under 32 bytes
            &rtp,                         // first byte not alphanumeric
            b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n", // not SIP/2.0
            b"hello hello hello hello hello hello hello\r\n", // no start line
        ];
        for payload in cases {
            let err = b.from_raw(src, src, 17, payload, rx, None).unwrap_err();
            assert_eq!(
                err,
                RecordError::NotSip,
                "{:?}",
                String::from_utf8_lossy(payload)
            );
            assert_eq!(err.reason(), "not_sip");
        }
        // SIP that Kamailio would refuse keeps its precise reason.
        let no_callid = String::from_utf8_lossy(OPTIONS).replace("Call-ID: raw-1@10.0.0.1\r\n", "");
        let err = b
            .from_raw(src, src, 17, no_callid.as_bytes(), rx, None)
            .unwrap_err();
        assert_eq!(err.reason(), "missing_header");
    }
}
