//! HEP v1 and v2: fixed C-struct layouts (Kamailio `hep.h`, `hep.c:hepv2_received`,
//! `hepv2_message_parse`; reference sections 1.2 and 7).
//!
//! ```text
//! hep_hdr    (8):  u8 hp_v, u8 hp_l, u8 hp_f, u8 hp_p, u16 hp_sport (BE), u16 hp_dport (BE)
//! hep_iphdr  (8):  IPv4 src, dst               | hep_ip6hdr (32): IPv6 src, dst
//! hep_timehdr(12): v2 only: u32 tv_sec (LE), u32 tv_usec (LE), u16 captid (LE), u16 pad
//! payload:         the rest of the datagram (there is no length field)
//! ```
//!
//! `hp_l` is ignored on receive, as in Kamailio. Unlike Kamailio before PR #4890, a v2 packet
//! too short for its time header is rejected ([`HepError::Truncated`]) instead of underflowing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{HepError, HepPacket, HepPayload};

/// Size of `struct hep_hdr`.
pub const HEADER_LEN: usize = 8;
/// Size of `struct hep_iphdr` (two IPv4 addresses).
pub const IPV4_ADDRS_LEN: usize = 8;
/// Size of `struct hep_ip6hdr` (two IPv6 addresses).
pub const IPV6_ADDRS_LEN: usize = 32;
/// Size of `struct hep_timehdr` in v2: 4 + 4 + 2 and 2 bytes of C struct padding.
pub const TIME_HEADER_LEN: usize = 12;
/// Linux `AF_INET`, the only IPv4 `hp_f` Kamailio accepts.
pub const AF_INET: u8 = 2;
/// Linux `AF_INET6`, the only IPv6 `hp_f` Kamailio accepts.
pub const AF_INET6: u8 = 10;

/// `core_chunks` reported for v1: family, protocol, two addresses, two ports, payload.
pub const V1_CORE_CHUNKS: u8 = 7;
/// `core_chunks` reported for v2: v1's plus seconds, microseconds and capture id.
pub const V2_CORE_CHUNKS: u8 = 10;

fn truncated(layer: &'static str, offset: usize, required: usize, actual: usize) -> HepError {
    HepError::Truncated {
        layer,
        offset,
        required,
        actual,
    }
}

/// Decodes a HEP v1 or v2 packet (first byte 1 or 2).
pub fn decode(buf: &[u8]) -> Result<HepPacket<'_>, HepError> {
    let actual = buf.len();
    let Some(&[version, _hp_l, family, protocol, s0, s1, d0, d1]) = buf.get(..HEADER_LEN) else {
        return Err(truncated("hep_v1v2_header", 0, HEADER_LEN, actual));
    };
    if version != 1 && version != 2 {
        return Err(HepError::BadMagic);
    }
    let (src_ip, dst_ip, addrs_end): (IpAddr, IpAddr, usize) = match family {
        AF_INET => {
            let end = HEADER_LEN + IPV4_ADDRS_LEN;
            let Some(&[a0, a1, a2, a3, b0, b1, b2, b3]) = buf.get(HEADER_LEN..end) else {
                return Err(truncated("hep_v1v2_ipv4", HEADER_LEN, end, actual));
            };
            (
                Ipv4Addr::new(a0, a1, a2, a3).into(),
                Ipv4Addr::new(b0, b1, b2, b3).into(),
                end,
            )
        }
        AF_INET6 => {
            let end = HEADER_LEN + IPV6_ADDRS_LEN;
            let addr = |from: usize| -> Option<IpAddr> {
                let bytes: [u8; 16] = buf.get(from..from + 16)?.try_into().ok()?;
                Some(Ipv6Addr::from(bytes).into())
            };
            let (Some(src), Some(dst)) = (addr(HEADER_LEN), addr(HEADER_LEN + 16)) else {
                return Err(truncated("hep_v1v2_ipv6", HEADER_LEN, end, actual));
            };
            (src, dst, end)
        }
        other => return Err(HepError::UnsupportedFamily(other)),
    };

    let mut packet = HepPacket {
        version,
        ip_family: Some(family),
        // Unknown hp_p values are kept: Kamailio logs "unknown protocol" and still processes.
        ip_protocol: Some(protocol),
        src_ip: Some(src_ip),
        dst_ip: Some(dst_ip),
        src_port: Some(u16::from_be_bytes([s0, s1])),
        dst_port: Some(u16::from_be_bytes([d0, d1])),
        ts_sec: None,
        ts_usec: None,
        proto_type: None,
        capture_id: None,
        keep_alive: None,
        auth_key: None,
        payload: None,
        correlation_id: None,
        vlan_id: None,
        node_name: None,
        core_chunks: V1_CORE_CHUNKS,
        chunk_area: &[],
    };

    let payload_start = if version == 2 {
        let end = addrs_end + TIME_HEADER_LEN;
        let Some(time) = buf.get(addrs_end..end) else {
            return Err(truncated("hep_v2_time_header", addrs_end, end, actual));
        };
        // tv_sec / tv_usec go through Kamailio's to_le(): little-endian on the wire. captid is
        // a host-order u16 copied raw, i.e. little-endian from x86 senders.
        let le_u32 = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(time.get(at..at + 4)?.try_into().ok()?))
        };
        packet.ts_sec = le_u32(0);
        packet.ts_usec = le_u32(4);
        packet.capture_id = time
            .get(8..10)
            .and_then(|id| id.try_into().ok())
            .map(|id| u32::from(u16::from_le_bytes(id)));
        packet.core_chunks = V2_CORE_CHUNKS;
        end
    } else {
        addrs_end
    };
    packet.payload = Some(HepPayload::Raw(
        buf.get(payload_start..).unwrap_or_default(),
    ));
    Ok(packet)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn homer_220_capture_bytes() {
        // homer issue #220: 02 10 02 16 13c4 c948 | a939a1fe | 006cd9ae | 8ff3e458 a7ff0100 0100 0000
        let mut buf = vec![
            0x02, 0x10, 0x02, 0x16, 0x13, 0xc4, 0xc9, 0x48, 0xa9, 0x39, 0xa1, 0xfe, 0x00, 0x6c,
            0xd9, 0xae, 0x8f, 0xf3, 0xe4, 0x58, 0xa7, 0xff, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00,
        ];
        buf.extend_from_slice(b"INVITE");
        let p = decode(&buf).unwrap();
        assert_eq!(p.ip_protocol, Some(22));
        assert_eq!(p.src_port, Some(5060));
        assert_eq!(p.dst_port, Some(51528));
        assert_eq!(p.src_ip, Some("169.57.161.254".parse().unwrap()));
        // The corrupted destination of that siptrace bug is reported as-is, not "fixed up".
        assert_eq!(p.dst_ip, Some("0.108.217.174".parse().unwrap()));
        assert_eq!(p.ts_sec, Some(0x58e4_f38f));
        assert_eq!(p.ts_usec, Some(0x0001_ffa7));
        assert_eq!(p.capture_id, Some(1));
        assert_eq!(p.payload, Some(HepPayload::Raw(b"INVITE")));
        assert_eq!(p.core_chunks, V2_CORE_CHUNKS);
    }

    #[test]
    fn rejects_unknown_family_and_short_v2() {
        let mut buf = vec![1, 16, 3, 17, 0, 1, 0, 2];
        buf.extend_from_slice(&[0; 8]);
        assert_eq!(decode(&buf), Err(HepError::UnsupportedFamily(3)));
        // v2 with addresses but only 4 of the 12 time-header bytes: Kamailio underflowed here.
        let buf = [2, 16, 2, 17, 0, 1, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0];
        assert_eq!(
            decode(&buf),
            Err(HepError::Truncated {
                layer: "hep_v2_time_header",
                offset: 16,
                required: 28,
                actual: 20
            })
        );
    }

    #[test]
    fn v1_ipv6_with_empty_payload() {
        let mut buf = vec![1, 40, 10, 6, 0x13, 0xc4, 0x13, 0xc5];
        buf.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        buf.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        let p = decode(&buf).unwrap();
        assert_eq!(p.version, 1);
        assert_eq!(p.src_ip, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(p.dst_ip, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(p.payload, Some(HepPayload::Raw(&[])));
        assert_eq!(p.ts_sec, None);
        assert_eq!(p.capture_id, None);
        assert_eq!(p.core_chunks, V1_CORE_CHUNKS);
    }
}
