//! HEP v3: control header and chunk walk (HEP3 spec rev 37; Kamailio `hep.c:parsing_hepv3_message`,
//! `hepv3_message_parse`; reference section 1.3).
//!
//! ```text
//! control header (6): "HEP3" or "EEP1", u16 total length (BE, includes these 6 bytes)
//! chunks:             u16 vendor, u16 type, u16 length (BE, includes the 6-byte header), value
//! ```
//!
//! Rules, as in Kamailio HEAD: the declared length must be >= 6 and <= the received length;
//! bytes beyond it are ignored; a chunk whose header does not fit, whose length is < 6 or which
//! runs past the declared end rejects the packet; vendor != 0 chunks are skipped (kept in
//! `extra_chunks()`); generic type 0 rejects the packet; a repeated chunk overwrites the
//! earlier one. Unknown generic types are kept, not fatal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::chunk::{GENERIC_VENDOR, read_chunk};
use super::{HepError, HepPacket, HepPayload, be_u16};

/// Size of the control header: 4-byte magic + u16 total length.
pub const CONTROL_HEADER_LEN: usize = 6;

/// Generic chunk type ids (HEP3 spec) that have a typed field in [`HepPacket`].
pub mod chunk_type {
    /// IP protocol family, u8.
    pub const IP_FAMILY: u16 = 0x0001;
    /// IP protocol id, u8.
    pub const IP_PROTOCOL: u16 = 0x0002;
    /// IPv4 source address, 4 bytes.
    pub const IPV4_SRC: u16 = 0x0003;
    /// IPv4 destination address, 4 bytes.
    pub const IPV4_DST: u16 = 0x0004;
    /// IPv6 source address, 16 bytes.
    pub const IPV6_SRC: u16 = 0x0005;
    /// IPv6 destination address, 16 bytes.
    pub const IPV6_DST: u16 = 0x0006;
    /// Source port, u16.
    pub const SRC_PORT: u16 = 0x0007;
    /// Destination port, u16.
    pub const DST_PORT: u16 = 0x0008;
    /// Timestamp seconds, u32.
    pub const TS_SEC: u16 = 0x0009;
    /// Timestamp microseconds, u32.
    pub const TS_USEC: u16 = 0x000a;
    /// Protocol type (1 = SIP, ...), u8.
    pub const PROTO_TYPE: u16 = 0x000b;
    /// Capture agent id, u32.
    pub const CAPTURE_ID: u16 = 0x000c;
    /// Keep-alive timer, u16.
    pub const KEEP_ALIVE: u16 = 0x000d;
    /// Authentication key, bytes.
    pub const AUTH_KEY: u16 = 0x000e;
    /// Payload, bytes.
    pub const PAYLOAD: u16 = 0x000f;
    /// Compressed payload, bytes.
    pub const COMPRESSED_PAYLOAD: u16 = 0x0010;
    /// Internal correlation id, bytes.
    pub const CORRELATION_ID: u16 = 0x0011;
    /// VLAN id, u16.
    pub const VLAN_ID: u16 = 0x0012;
    /// Capture node name, bytes.
    pub const NODE_NAME: u16 = 0x0013;
}

use chunk_type as ct;

/// Decodes a HEP3/EEP1 packet. `buf` must start with the magic (checked again here).
pub fn decode(buf: &[u8]) -> Result<HepPacket<'_>, HepError> {
    let actual = buf.len();
    let (Some(magic), Some(declared)) = (buf.get(..4), be_u16(buf, 4)) else {
        return Err(HepError::Truncated {
            layer: "hep_v3_header",
            offset: 0,
            required: CONTROL_HEADER_LEN,
            actual,
        });
    };
    if magic != super::HEP3_MAGIC && magic != super::EEP1_MAGIC {
        return Err(HepError::BadMagic);
    }
    let declared = usize::from(declared);
    if declared < CONTROL_HEADER_LEN {
        return Err(HepError::BadTotalLength { declared });
    }
    // Kamailio `hepv3_total_length`: the declared length must have been received; trailing
    // bytes beyond it are ignored.
    let Some(chunk_area) = buf.get(CONTROL_HEADER_LEN..declared) else {
        return Err(HepError::Truncated {
            layer: "hep_v3",
            offset: 0,
            required: declared,
            actual,
        });
    };

    let mut packet = HepPacket {
        version: 3,
        ip_family: None,
        ip_protocol: None,
        src_ip: None,
        dst_ip: None,
        src_port: None,
        dst_port: None,
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
        core_chunks: 0,
        chunk_area,
    };

    let mut offset = 0;
    while offset < chunk_area.len() {
        let (chunk, next) = read_chunk(chunk_area, offset, CONTROL_HEADER_LEN)?;
        let chunk_offset = CONTROL_HEADER_LEN.saturating_add(offset);
        offset = next;
        if chunk.vendor_id != GENERIC_VENDOR {
            continue;
        }
        apply_generic_chunk(&mut packet, chunk.type_id, chunk.value, chunk_offset)?;
    }
    Ok(packet)
}

/// Fills the typed field for one generic chunk; repeated chunks overwrite (last wins).
fn apply_generic_chunk<'a>(
    packet: &mut HepPacket<'a>,
    type_id: u16,
    value: &'a [u8],
    offset: usize,
) -> Result<(), HepError> {
    let bad_value = || HepError::BadChunkValue {
        type_id,
        length: value.len(),
    };
    let u8_value = || match value {
        [byte] => Ok(*byte),
        _ => Err(bad_value()),
    };
    let u16_value = || match value {
        [a, b] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(bad_value()),
    };
    let u32_value = || match value {
        [a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(bad_value()),
    };
    let ipv4 = || u32_value().map(|bits| IpAddr::V4(Ipv4Addr::from(bits)));
    let ipv6 = || {
        <[u8; 16]>::try_from(value)
            .map(|octets| IpAddr::V6(Ipv6Addr::from(octets)))
            .map_err(|_| bad_value())
    };

    match type_id {
        0 => return Err(HepError::ChunkTypeZero { offset }),
        ct::IP_FAMILY => packet.ip_family = Some(u8_value()?),
        ct::IP_PROTOCOL => packet.ip_protocol = Some(u8_value()?),
        ct::IPV4_SRC => packet.src_ip = Some(ipv4()?),
        ct::IPV4_DST => packet.dst_ip = Some(ipv4()?),
        ct::IPV6_SRC => packet.src_ip = Some(ipv6()?),
        ct::IPV6_DST => packet.dst_ip = Some(ipv6()?),
        ct::SRC_PORT => packet.src_port = Some(u16_value()?),
        ct::DST_PORT => packet.dst_port = Some(u16_value()?),
        ct::TS_SEC => packet.ts_sec = Some(u32_value()?),
        ct::TS_USEC => packet.ts_usec = Some(u32_value()?),
        ct::PROTO_TYPE => packet.proto_type = Some(u8_value()?),
        ct::CAPTURE_ID => packet.capture_id = Some(u32_value()?),
        ct::KEEP_ALIVE => packet.keep_alive = Some(u16_value()?),
        ct::AUTH_KEY => packet.auth_key = Some(value),
        ct::PAYLOAD => packet.payload = Some(HepPayload::Raw(value)),
        ct::COMPRESSED_PAYLOAD => packet.payload = Some(HepPayload::Compressed(value)),
        ct::CORRELATION_ID => packet.correlation_id = Some(value),
        ct::VLAN_ID => packet.vlan_id = Some(u16_value()?),
        ct::NODE_NAME => packet.node_name = Some(value),
        // 0x0014 and above (MACs, ethertype, TCP flags, MOS, ...) and unknown types: kept in
        // chunk_area for extra_chunks(); Kamailio ignores them.
        _ => {}
    }
    // Kamailio's `totelem`: each chunk of types 1..=12 and 15 counts, repeats included.
    if (ct::IP_FAMILY..=ct::CAPTURE_ID).contains(&type_id) || type_id == ct::PAYLOAD {
        packet.core_chunks = packet.core_chunks.saturating_add(1);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::decode::hep::HepChunk;

    fn chunk(vendor: u16, type_id: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&vendor.to_be_bytes());
        out.extend_from_slice(&type_id.to_be_bytes());
        out.extend_from_slice(&u16::try_from(value.len() + 6).unwrap().to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    fn packet(magic: &[u8; 4], chunks: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = chunks.concat();
        let mut out = magic.to_vec();
        out.extend_from_slice(&u16::try_from(body.len() + 6).unwrap().to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn repeated_chunk_last_wins_and_counts_twice() {
        let buf = packet(
            b"EEP1",
            &[
                chunk(0, 7, &[0, 1]),
                chunk(0, 7, &[0, 2]),
                chunk(0, 0x0f, b"x"),
            ],
        );
        let p = decode(&buf).unwrap();
        assert_eq!(p.version, 3);
        assert_eq!(p.src_port, Some(2));
        assert_eq!(p.core_chunks, 3);
        assert_eq!(p.payload, Some(HepPayload::Raw(b"x")));
    }

    #[test]
    fn vendor_and_unknown_chunks_are_extra() {
        let buf = packet(
            b"HEP3",
            &[
                chunk(0x0002, 0x0003, &[1, 2]), // vendor chunk, even with a "typed" type id
                chunk(0, 0x0020, &[0, 42]),     // MOS (hep-js)
                chunk(0, 0x0b, &[1]),
                chunk(0, 0x7fff, b"?"),
            ],
        );
        let p = decode(&buf).unwrap();
        assert_eq!(p.src_ip, None);
        assert_eq!(p.proto_type, Some(1));
        assert_eq!(p.core_chunks, 1);
        let extra: Vec<_> = p.extra_chunks().collect();
        assert_eq!(
            extra,
            vec![
                HepChunk {
                    vendor_id: 2,
                    type_id: 3,
                    value: &[1, 2]
                },
                HepChunk {
                    vendor_id: 0,
                    type_id: 0x20,
                    value: &[0, 42]
                },
                HepChunk {
                    vendor_id: 0,
                    type_id: 0x7fff,
                    value: b"?"
                },
            ]
        );
        assert_eq!(p.chunks().count(), 4);
    }

    #[test]
    fn structural_errors() {
        assert_eq!(
            decode(&packet(b"HEP3", &[chunk(0, 0, &[])])),
            Err(HepError::ChunkTypeZero { offset: 6 })
        );
        // Vendor chunks of type 0 are skipped before the type-0 check, as in Kamailio.
        assert!(decode(&packet(b"HEP3", &[chunk(5, 0, &[])])).is_ok());
        assert_eq!(
            decode(&packet(b"HEP3", &[chunk(0, 3, &[1, 2, 3])])),
            Err(HepError::BadChunkValue {
                type_id: 3,
                length: 3
            })
        );
        assert_eq!(
            decode(&packet(b"HEP3", &[chunk(0, 5, &[0; 4])])),
            Err(HepError::BadChunkValue {
                type_id: 5,
                length: 4
            })
        );
        assert_eq!(
            decode(b"HEP3\x00\x05"),
            Err(HepError::BadTotalLength { declared: 5 })
        );
        assert_eq!(
            decode(b"HEP3\x00\x09\x00\x00\x00"),
            Err(HepError::ChunkHeaderOverrun {
                offset: 6,
                remaining: 3
            })
        );
        assert_eq!(
            decode(b"HEP3\x00\x0c\x00\x00\x00\x01\x00\x07"),
            Err(HepError::BadChunkLength {
                offset: 6,
                length: 7
            })
        );
        // Declared 13 bytes, 12 received.
        assert_eq!(
            decode(b"HEP3\x00\x0d\x00\x00\x00\x01\x00\x07"),
            Err(HepError::Truncated {
                layer: "hep_v3",
                offset: 0,
                required: 13,
                actual: 12
            })
        );
        // Trailing bytes beyond the declared length are ignored.
        let p = decode(b"HEP3\x00\x0d\x00\x00\x00\x01\x00\x07\x0a\xff\xff").unwrap();
        assert_eq!(p.ip_family, Some(10));
        assert_eq!(p.chunk_area.len(), 7);
    }
}
