//! A `CaptureRecord` encoded as HEP3: the collector as a HEP agent, forwarding what it captured
//! raw (a mirror port) to another HOMER. The inverse of `RecordBuilder::from_hep`, as far as
//! HEP can carry it.

use sipcapture_proto::ip_from_bytes;
use sipcapture_proto::v1::CaptureRecord;

use super::{HepError, HepPacket, HepPayload, try_encode_v3};

/// Encodes a record as HEP3 (the collector as a HEP agent): family, IP protocol, addresses,
/// ports, capture time, payload type, capture id (`capture_id`, or the record's own when it came
/// from HEP), correlation id, VLAN, node name and the payload.
pub fn encode_record(
    record: &CaptureRecord,
    capture_id: u32,
    out: &mut Vec<u8>,
) -> Result<(), HepError> {
    let hep_meta = record.hep.as_ref();
    let ip_protocol = u8::try_from(record.ip_protocol).unwrap_or(0);
    let family = u8::try_from(record.family).unwrap_or(0);
    let ts_sec = u32::try_from(record.capture_time_us / 1_000_000).unwrap_or(u32::MAX);
    let ts_usec = u32::try_from(record.capture_time_us % 1_000_000).unwrap_or(0);
    let payload_type = hep_meta.map_or(1, |h| h.payload_type);
    let packet = HepPacket {
        version: 3,
        ip_family: Some(family),
        ip_protocol: Some(ip_protocol),
        src_ip: ip_from_bytes(&record.src_ip),
        dst_ip: ip_from_bytes(&record.dst_ip),
        src_port: u16::try_from(record.src_port).ok(),
        dst_port: u16::try_from(record.dst_port).ok(),
        ts_sec: Some(ts_sec),
        ts_usec: Some(ts_usec),
        proto_type: Some(u8::try_from(payload_type).unwrap_or(1)),
        capture_id: Some(
            hep_meta
                .filter(|h| h.has_capture_id)
                .map_or(capture_id, |h| h.capture_id),
        ),
        keep_alive: None,
        auth_key: None,
        payload: Some(HepPayload::Raw(&record.payload)),
        correlation_id: hep_meta
            .filter(|h| h.has_correlation_id)
            .map(|h| h.correlation_id.as_slice()),
        vlan_id: hep_meta
            .filter(|h| h.has_vlan_id)
            .and_then(|h| u16::try_from(h.vlan_id).ok()),
        node_name: hep_meta
            .map(|h| h.node_name.as_bytes())
            .filter(|n| !n.is_empty()),
        core_chunks: 0,
        chunk_area: &[],
    };
    try_encode_v3(&packet, out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use sipcapture_proto::v1::{HepMeta, RecordKind};

    use super::*;
    use crate::decode::hep;

    #[test]
    fn raw_records_encode_as_hep3_that_decodes_back() {
        let record = CaptureRecord {
            capture_time_us: 1_700_000_000_123_456,
            family: 2,
            ip_protocol: 17,
            src_ip: vec![10, 0, 0, 1],
            src_port: 5060,
            dst_ip: vec![10, 0, 0, 2],
            dst_port: 5080,
            kind: RecordKind::Sip as i32,
            payload: b"OPTIONS sip:a@b SIP/2.0\r\n\r\n".to_vec(),
            ..Default::default()
        };
        let mut out = Vec::new();
        encode_record(&record, 2001, &mut out).unwrap();
        let p = hep::decode(&out).unwrap();
        assert_eq!(p.version, 3);
        assert_eq!(p.src_ip, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(p.dst_port, Some(5080));
        assert_eq!((p.ts_sec, p.ts_usec), (Some(1_700_000_000), Some(123_456)));
        assert_eq!(p.capture_id, Some(2001));
        assert_eq!(p.proto_type, Some(1));
        assert_eq!(p.core_chunks, 11);
        assert_eq!(p.payload, Some(HepPayload::Raw(&record.payload[..])));

        // A record that came from HEP keeps its own capture id, correlation id and type.
        let mut from_hep = record.clone();
        from_hep.hep = Some(HepMeta {
            version: 3,
            has_capture_id: true,
            capture_id: 7,
            payload_type: 100,
            has_correlation_id: true,
            correlation_id: b"cid-1".to_vec(),
            ..Default::default()
        });
        let mut out = Vec::new();
        encode_record(&from_hep, 2001, &mut out).unwrap();
        let p = hep::decode(&out).unwrap();
        assert_eq!(p.capture_id, Some(7));
        assert_eq!(p.proto_type, Some(100));
        assert_eq!(p.correlation_id, Some(&b"cid-1"[..]));
    }
}
