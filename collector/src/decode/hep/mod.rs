//! HEP (Homer Encapsulation Protocol) v1, v2 and v3: decoder, encoder and TCP framing.
//!
//! Wire formats follow the Kamailio `sipcapture` behaviour (`hep.h`, `hep.c`; our
//! reference document sections 1.2, 1.3 and 7) and the HEP3 specification (rev 37):
//!
//! * [`v1v2`]: the fixed C-struct layout of HEP v1/v2 (`hep_hdr` + addresses + optional
//!   12-byte time header), payload to the end of the datagram;
//! * [`v3`]: the `"HEP3"`/`"EEP1"` control header and the chunk walk;
//! * [`chunk`]: the 6-byte chunk header and a non-allocating chunk iterator;
//! * [`framing`]: HEP3 framing on a TCP byte stream ([`tcp_frame_len`]);
//! * [`encode`]: the inverse of the decoders, for tests, load generation and forwarding.
//!
//! Decoding is pure, synchronous and zero-copy: a [`HepPacket`] borrows from the input buffer
//! and nothing is allocated. The decoder only *reports* what is on the wire; acceptance rules
//! (Kamailio's `totelem >= 9`, both IPs present, ...) are decided by the caller.
#![deny(clippy::indexing_slicing)]

pub mod chunk;
pub mod encode;
pub mod framing;
pub mod v1v2;
pub mod v3;

use std::borrow::Cow;
use std::io::Read;
use std::net::IpAddr;

pub use chunk::{HepChunk, HepChunks};
pub use encode::{encode_v1v2, encode_v3, try_encode_v3};
pub use framing::tcp_frame_len;

/// `"HEP3"`: the HEP version 3 control-header magic (HEP3 spec, Kamailio `hep.c`).
pub const HEP3_MAGIC: &[u8; 4] = b"HEP3";
/// `"EEP1"`: the older name of HEP3, accepted by Kamailio's path B (`nosip_hep_msg`) and `$hep`.
pub const EEP1_MAGIC: &[u8; 4] = b"EEP1";

/// One decoded HEP packet (any version), borrowing from the received buffer.
///
/// Every field is what the wire carried; `None` means "not present" (a v3 chunk that was not
/// sent, or a field the v1/v2 layout does not have).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HepPacket<'a> {
    /// HEP version: 1, 2 or 3 (`"EEP1"` is reported as 3).
    pub version: u8,
    /// IP family, raw value (2 = AF_INET, 10 = AF_INET6): v1/v2 `hp_f`, v3 chunk 0x0001.
    pub ip_family: Option<u8>,
    /// IP protocol number (17 UDP, 6 TCP, 22 "fake" TLS/WS, 132 SCTP): v1/v2 `hp_p`, v3 chunk 0x0002.
    pub ip_protocol: Option<u8>,
    /// Source address: v1/v2 address header, v3 chunk 0x0003 (IPv4) or 0x0005 (IPv6).
    pub src_ip: Option<IpAddr>,
    /// Destination address: v1/v2 address header, v3 chunk 0x0004 (IPv4) or 0x0006 (IPv6).
    pub dst_ip: Option<IpAddr>,
    /// Source port: v1/v2 `hp_sport`, v3 chunk 0x0007.
    pub src_port: Option<u16>,
    /// Destination port: v1/v2 `hp_dport`, v3 chunk 0x0008.
    pub dst_port: Option<u16>,
    /// Capture time, seconds: v2 time header (little-endian on the wire), v3 chunk 0x0009.
    pub ts_sec: Option<u32>,
    /// Capture time, microseconds: v2 time header (little-endian on the wire), v3 chunk 0x000a.
    pub ts_usec: Option<u32>,
    /// HEP protocol type of the payload (1 = SIP, 5 = RTCP JSON, 100 = LOG, ...): v3 chunk 0x000b.
    /// v1/v2 have no such field (Kamailio treats their payload as SIP).
    pub proto_type: Option<u8>,
    /// Capture agent id: v2 `captid` (u16, little-endian), v3 chunk 0x000c (u32).
    pub capture_id: Option<u32>,
    /// Keep-alive timer: v3 chunk 0x000d.
    pub keep_alive: Option<u16>,
    /// Authentication key: v3 chunk 0x000e (Kamailio never checks it).
    pub auth_key: Option<&'a [u8]>,
    /// Payload: v3 chunk 0x000f (raw) or 0x0010 (compressed); v1/v2: the rest of the datagram.
    pub payload: Option<HepPayload<'a>>,
    /// Internal correlation id: v3 chunk 0x0011, the exact chunk bytes (not NUL-terminated).
    pub correlation_id: Option<&'a [u8]>,
    /// VLAN id: v3 chunk 0x0012.
    pub vlan_id: Option<u16>,
    /// Capture node name: v3 chunk 0x0013.
    pub node_name: Option<&'a [u8]>,
    /// Kamailio's `totelem`: v3 counts every generic chunk of types 0x0001..=0x000c and 0x000f
    /// (each occurrence, as Kamailio does). v1/v2 report what the fixed header provides:
    /// 7 for v1 (family, protocol, two addresses, two ports, payload) and 10 for v2 (plus
    /// seconds, microseconds and capture id).
    pub core_chunks: u8,
    /// v3: the chunk bytes, from offset 6 to the declared total length. Empty for v1/v2.
    pub chunk_area: &'a [u8],
}

/// A HEP payload, as carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HepPayload<'a> {
    /// Uncompressed payload (v3 chunk 0x000f, or the v1/v2 datagram tail).
    Raw(&'a [u8]),
    /// Compressed payload (v3 chunk 0x0010: gzip or deflate per the HEP3 spec). Kamailio ignores it.
    Compressed(&'a [u8]),
}

impl<'a> HepPayload<'a> {
    /// The bytes as carried on the wire, compressed or not.
    pub fn wire_bytes(&self) -> &'a [u8] {
        match *self {
            HepPayload::Raw(bytes) | HepPayload::Compressed(bytes) => bytes,
        }
    }

    /// Raw bytes as-is (borrowed, even when longer than `max_len`), or the inflated bytes of a
    /// compressed payload: gzip (magic `1f 8b`), zlib (RFC 1950 header check) or raw deflate
    /// (RFC 1951) otherwise. Inflating more than `max_len` bytes fails with
    /// [`HepError::PayloadTooLarge`], so a zip bomb cannot exhaust memory.
    pub fn inflate(&self, max_len: usize) -> Result<Cow<'a, [u8]>, HepError> {
        let compressed = match *self {
            HepPayload::Raw(bytes) => return Ok(Cow::Borrowed(bytes)),
            HepPayload::Compressed(bytes) => bytes,
        };
        // Read one byte past the cap to tell "exactly max_len" from "too large".
        let limit = u64::try_from(max_len).unwrap_or(u64::MAX).saturating_add(1);
        let mut out = Vec::new();
        let read = match compressed {
            [0x1f, 0x8b, ..] => flate2::read::GzDecoder::new(compressed)
                .take(limit)
                .read_to_end(&mut out),
            [cmf, flg, ..] if is_zlib_header(*cmf, *flg) => {
                flate2::read::ZlibDecoder::new(compressed)
                    .take(limit)
                    .read_to_end(&mut out)
            }
            _ => flate2::read::DeflateDecoder::new(compressed)
                .take(limit)
                .read_to_end(&mut out),
        };
        if read.is_err() {
            return Err(HepError::BadCompressedPayload);
        }
        if out.len() > max_len {
            return Err(HepError::PayloadTooLarge { limit: max_len });
        }
        Ok(Cow::Owned(out))
    }
}

/// RFC 1950 section 2.2: CM = 8 (deflate), CINFO <= 7, and `(CMF * 256 + FLG) % 31 == 0`.
fn is_zlib_header(cmf: u8, flg: u8) -> bool {
    cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

impl<'a> HepPacket<'a> {
    /// Every chunk that has no typed field in [`HepPacket`] (vendor chunks, generic types
    /// 0x0014 and above, unknown types), in wire order. Re-walks `chunk_area`; no allocation.
    pub fn extra_chunks(&self) -> impl Iterator<Item = HepChunk<'a>> + use<'a> {
        self.chunks().filter(|chunk| !chunk.is_typed())
    }

    /// Every chunk of `chunk_area`, in wire order (nothing for v1/v2). Stops at the first
    /// malformed chunk header, which a decoded packet never has.
    pub fn chunks(&self) -> impl Iterator<Item = HepChunk<'a>> + use<'a> {
        HepChunks::new(self.chunk_area)
    }
}

/// Why a buffer is not a (complete) HEP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HepError {
    /// The buffer ends before a structure that must be there: `required` bytes were needed
    /// from the packet start, the buffer has `actual`.
    #[error("{layer}: truncated at offset {offset}: need {required} bytes, have {actual}")]
    Truncated {
        /// Which structure was cut (`"hep"`, `"hep_v1v2_header"`, `"hep_v3_header"`, ...).
        layer: &'static str,
        /// Offset of that structure from the packet start.
        offset: usize,
        /// Bytes needed from the packet start.
        required: usize,
        /// Bytes available.
        actual: usize,
    },
    /// The first bytes are not `0x01`, `0x02`, `"HEP3"` or `"EEP1"`.
    #[error("not a HEP packet (bad magic/version)")]
    BadMagic,
    /// v1/v2 `hp_f` is neither AF_INET (2) nor AF_INET6 (10) (Kamailio: "unsupported family").
    #[error("unsupported HEP v1/v2 address family {0}")]
    UnsupportedFamily(u8),
    /// v3 declared total length is below the 6-byte control header.
    #[error("HEP3 declared total length {declared} is below 6")]
    BadTotalLength {
        /// The length in the control header.
        declared: usize,
    },
    /// A v3 chunk length is below 6 or runs past the declared total length.
    #[error("HEP3 chunk at offset {offset} has bad length {length}")]
    BadChunkLength {
        /// Chunk offset from the packet start.
        offset: usize,
        /// The chunk's declared length (header included).
        length: usize,
    },
    /// Fewer than 6 bytes remain before the declared total length, so a chunk header does not
    /// fit (Kamailio HEAD rejects the packet).
    #[error("HEP3 chunk header at offset {offset} does not fit in the {remaining} remaining bytes")]
    ChunkHeaderOverrun {
        /// Offset of the would-be chunk header from the packet start.
        offset: usize,
        /// Bytes left before the declared end.
        remaining: usize,
    },
    /// Generic (vendor 0) chunk type 0: Kamailio rejects the whole packet.
    #[error("HEP3 generic chunk type 0 at offset {offset}")]
    ChunkTypeZero {
        /// Chunk offset from the packet start.
        offset: usize,
    },
    /// A fixed-size generic chunk has the wrong value size (e.g. IPv4 not 4 bytes).
    #[error("HEP3 chunk type {type_id:#06x} has a {length}-byte value of the wrong size")]
    BadChunkValue {
        /// The chunk type.
        type_id: u16,
        /// The value length (chunk length minus 6).
        length: usize,
    },
    /// Inflating a compressed payload would exceed the cap.
    #[error("inflated payload exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The cap given to [`HepPayload::inflate`].
        limit: usize,
    },
    /// The compressed payload is not valid gzip/zlib/deflate.
    #[error("compressed payload does not inflate")]
    BadCompressedPayload,
    /// TCP framing: the declared HEP3 frame length exceeds the configured maximum.
    #[error("HEP3 frame of {declared} bytes exceeds the {limit}-byte limit")]
    FrameTooLarge {
        /// The length in the control header.
        declared: usize,
        /// The configured maximum frame size.
        limit: usize,
    },
    /// The encoder cannot represent this packet in the requested wire format.
    #[error("cannot encode HEP packet: {0}")]
    Unencodable(&'static str),
}

impl HepError {
    /// A low-cardinality label for drop-reason metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            HepError::Truncated { .. } => "truncated",
            HepError::BadMagic => "bad_magic",
            HepError::UnsupportedFamily(_) => "unsupported_family",
            HepError::BadTotalLength { .. } => "bad_total_length",
            HepError::BadChunkLength { .. } => "bad_chunk_length",
            HepError::ChunkHeaderOverrun { .. } => "chunk_header_overrun",
            HepError::ChunkTypeZero { .. } => "chunk_type_zero",
            HepError::BadChunkValue { .. } => "bad_chunk_value",
            HepError::PayloadTooLarge { .. } => "payload_too_large",
            HepError::BadCompressedPayload => "bad_compressed_payload",
            HepError::FrameTooLarge { .. } => "frame_too_large",
            HepError::Unencodable(_) => "unencodable",
        }
    }
}

/// Decodes one HEP packet of any version.
///
/// Dispatch follows Kamailio (`hep_msg_received`, `nosip_hep_msg`): first byte 1 or 2 → v1/v2;
/// `"HEP3"` or `"EEP1"` → v3 (we accept `"EEP1"` on every path, like Kamailio's path B);
/// anything else → [`HepError::BadMagic`]. A buffer too short to tell (empty, or a proper
/// prefix of a v3 magic) is [`HepError::Truncated`].
pub fn decode(buf: &[u8]) -> Result<HepPacket<'_>, HepError> {
    match buf {
        [] => Err(HepError::Truncated {
            layer: "hep",
            offset: 0,
            required: 1,
            actual: 0,
        }),
        [1 | 2, ..] => v1v2::decode(buf),
        [a, b, c, d, ..] if [*a, *b, *c, *d] == *HEP3_MAGIC || [*a, *b, *c, *d] == *EEP1_MAGIC => {
            v3::decode(buf)
        }
        short
            if short.len() < 4
                && (HEP3_MAGIC.starts_with(short) || EEP1_MAGIC.starts_with(short)) =>
        {
            Err(HepError::Truncated {
                layer: "hep_v3_header",
                offset: 0,
                required: v3::CONTROL_HEADER_LEN,
                actual: short.len(),
            })
        }
        _ => Err(HepError::BadMagic),
    }
}

/// Reads a big-endian u16 at `offset`, if the bytes are there.
fn be_u16(buf: &[u8], offset: usize) -> Option<u16> {
    let bytes = buf.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use std::io::Write;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    const HEP1_INVITE: &[u8] = include_bytes!("../../../testdata/hep/hep1_kamailio_invite.bin");
    const HEP2_INVITE: &[u8] = include_bytes!("../../../testdata/hep/hep2_kamailio_invite.bin");
    const HEP3_INVITE: &[u8] = include_bytes!("../../../testdata/hep/hep3_kamailio_invite.bin");
    const BROKEN_HEP2: &[u8] =
        include_bytes!("../../../testdata/hep/broken_hep2_truncated_time_header.bin");
    const BROKEN_HEP3: &[u8] =
        include_bytes!("../../../testdata/hep/broken_hep3_chunk_length_3.bin");

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn raw_payload<'a>(p: &HepPacket<'a>) -> &'a [u8] {
        match p.payload {
            Some(HepPayload::Raw(bytes)) => bytes,
            other => panic!("expected a raw payload, got {other:?}"),
        }
    }

    fn assert_kamailio_addressing(p: &HepPacket<'_>) {
        assert_eq!(p.ip_family, Some(2));
        assert_eq!(p.ip_protocol, Some(17));
        assert_eq!(p.src_ip, Some(LOCALHOST));
        assert_eq!(p.dst_ip, Some(LOCALHOST));
        assert_eq!(p.src_port, Some(5070));
        assert_eq!(p.dst_port, Some(5060));
        assert!(raw_payload(p).starts_with(b"INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n"));
    }

    #[test]
    fn golden_kamailio_hep1() {
        let p = decode(HEP1_INVITE).unwrap();
        assert_eq!(p.version, 1);
        assert_kamailio_addressing(&p);
        assert_eq!((p.ts_sec, p.ts_usec, p.capture_id), (None, None, None));
        assert_eq!(raw_payload(&p).len(), HEP1_INVITE.len() - 16);
        assert_eq!(p.core_chunks, 7);
        let mut out = Vec::new();
        encode_v1v2(&p, &mut out).unwrap();
        assert_eq!(out, HEP1_INVITE);
    }

    #[test]
    fn golden_kamailio_hep2() {
        let p = decode(HEP2_INVITE).unwrap();
        assert_eq!(p.version, 2);
        assert_kamailio_addressing(&p);
        assert_eq!(p.ts_sec, Some(1_795_669_665));
        assert_eq!(p.ts_usec, Some(106_488));
        assert_eq!(p.capture_id, Some(2001));
        assert_eq!(raw_payload(&p).len(), HEP2_INVITE.len() - 28);
        assert_eq!(p.core_chunks, 10);
        let mut out = Vec::new();
        encode_v1v2(&p, &mut out).unwrap();
        assert_eq!(out, HEP2_INVITE);
    }

    #[test]
    fn golden_kamailio_hep3() {
        let p = decode(HEP3_INVITE).unwrap();
        assert_eq!(p.version, 3);
        assert_kamailio_addressing(&p);
        assert_eq!(p.ts_sec, Some(1_795_669_610));
        assert_eq!(p.ts_usec, Some(987_066));
        assert_eq!(p.capture_id, Some(2001));
        assert_eq!(p.proto_type, Some(1));
        assert_eq!(p.core_chunks, 11);
        assert_eq!(raw_payload(&p).len(), 509);
        assert_eq!(p.chunk_area.len(), HEP3_INVITE.len() - 6);
        assert_eq!(p.extra_chunks().count(), 0);
        let types: Vec<u16> = p.chunks().map(|c| c.type_id).collect();
        assert_eq!(types, [1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 15]);
        // Our encoder's chunk order extends siptrace's, so Kamailio's bytes re-encode exactly.
        let mut out = Vec::new();
        encode_v3(&p, &mut out);
        assert_eq!(out, HEP3_INVITE);
    }

    #[test]
    fn golden_broken_packets() {
        assert_eq!(
            decode(BROKEN_HEP2),
            Err(HepError::Truncated {
                layer: "hep_v2_time_header",
                offset: 16,
                required: 28,
                actual: 20
            })
        );
        assert_eq!(
            decode(BROKEN_HEP3),
            Err(HepError::BadChunkLength {
                offset: 6,
                length: 3
            })
        );
        assert_eq!(BROKEN_HEP3.get(..6), HEP3_INVITE.get(..6));
    }

    /// UDP payloads of an Ethernet/IPv4 pcap (the generated Kamailio captures).
    fn pcap_udp_payloads(bytes: &[u8]) -> Vec<&[u8]> {
        assert_eq!(
            bytes[..4],
            [0xd4, 0xc3, 0xb2, 0xa1],
            "little-endian usec pcap"
        );
        assert_eq!(
            u32::from_le_bytes(bytes[20..24].try_into().unwrap()),
            1,
            "Ethernet"
        );
        let mut payloads = Vec::new();
        let mut offset = 24;
        while offset + 16 <= bytes.len() {
            let incl = u32::from_le_bytes(bytes[offset + 8..offset + 12].try_into().unwrap());
            let frame = &bytes[offset + 16..offset + 16 + usize::try_from(incl).unwrap()];
            offset += 16 + frame.len();
            assert_eq!(frame[12..14], [0x08, 0x00], "IPv4 ethertype");
            let ip = &frame[14..];
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            assert_eq!(ip[9], 17, "UDP");
            payloads.push(&ip[ihl + 8..total]);
        }
        payloads
    }

    #[test]
    fn every_packet_of_the_kamailio_captures() {
        for version in [1u8, 2, 3] {
            let path = format!("/work/shared/corpus/gen_hep{version}_kamailio_siptrace.pcap");
            let Ok(bytes) = std::fs::read(&path) else {
                eprintln!("skipping: {path} not present");
                return;
            };
            let payloads = pcap_udp_payloads(&bytes);
            assert_eq!(payloads.len(), 120);
            for udp in payloads {
                let p = decode(udp).unwrap();
                assert_eq!(p.version, version);
                assert_eq!((p.src_ip, p.dst_ip), (Some(LOCALHOST), Some(LOCALHOST)));
                assert_eq!(p.ip_protocol, Some(17));
                let expected_capture_id = if version == 1 { None } else { Some(2001) };
                assert_eq!(p.capture_id, expected_capture_id);
                let sip = raw_payload(&p);
                assert!(sip.ends_with(b"\r\n"), "whole SIP message");
                assert!(sip.starts_with(b"SIP/2.0 ") || sip.windows(8).any(|w| w == b"SIP/2.0\r"));
                if version == 3 {
                    assert_eq!(p.core_chunks, 11);
                    let mut out = Vec::new();
                    encode_v3(&p, &mut out);
                    assert_eq!(out, udp);
                } else {
                    let mut out = Vec::new();
                    encode_v1v2(&p, &mut out).unwrap();
                    assert_eq!(out, udp);
                }
            }
        }
    }

    #[test]
    fn dispatch() {
        let truncated = |layer, required, actual| {
            Err(HepError::Truncated {
                layer,
                offset: 0,
                required,
                actual,
            })
        };
        assert_eq!(decode(b""), truncated("hep", 1, 0));
        assert_eq!(decode(b"HE"), truncated("hep_v3_header", 6, 2));
        assert_eq!(decode(b"EEP"), truncated("hep_v3_header", 6, 3));
        assert_eq!(decode(b"HEP3\x00"), truncated("hep_v3_header", 6, 5));
        assert_eq!(decode(b"\x02"), truncated("hep_v1v2_header", 8, 1));
        assert_eq!(decode(b"HEX"), Err(HepError::BadMagic));
        assert_eq!(decode(b"INVITE sip:a@b SIP/2.0"), Err(HepError::BadMagic));
        assert_eq!(decode(b"\x03\x10\x02\x11"), Err(HepError::BadMagic));
        let eep1 = decode(b"EEP1\x00\x06").unwrap();
        assert_eq!((eep1.version, eep1.core_chunks), (3, 0));
    }

    #[test]
    fn reasons_are_labels() {
        assert_eq!(HepError::BadMagic.reason(), "bad_magic");
        assert_eq!(decode(BROKEN_HEP2).unwrap_err().reason(), "truncated");
        assert_eq!(
            decode(BROKEN_HEP3).unwrap_err().reason(),
            "bad_chunk_length"
        );
    }

    #[test]
    fn inflate_gzip_zlib_deflate() {
        let sip = b"INVITE sip:bob@example.com SIP/2.0\r\n\r\n".repeat(10);
        let level = flate2::Compression::default();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), level);
        gz.write_all(&sip).unwrap();
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), level);
        zlib.write_all(&sip).unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), level);
        raw.write_all(&sip).unwrap();
        for compressed in [
            gz.finish().unwrap(),
            zlib.finish().unwrap(),
            raw.finish().unwrap(),
        ] {
            let payload = HepPayload::Compressed(&compressed);
            assert_eq!(payload.inflate(sip.len()).unwrap().as_ref(), sip.as_slice());
            assert_eq!(
                payload.inflate(sip.len() - 1),
                Err(HepError::PayloadTooLarge {
                    limit: sip.len() - 1
                })
            );
        }
        assert_eq!(
            HepPayload::Compressed(b"\x1f\x8b not gzip").inflate(1000),
            Err(HepError::BadCompressedPayload)
        );
        let raw_payload = HepPayload::Raw(b"abc");
        assert!(matches!(raw_payload.inflate(1), Ok(Cow::Borrowed(b"abc"))));
    }

    #[test]
    fn encoder_rejects_what_v1v2_cannot_carry() {
        let mut p = decode(HEP2_INVITE).unwrap();
        let mut out = Vec::new();
        p.dst_ip = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(
            encode_v1v2(&p, &mut out),
            Err(HepError::Unencodable(
                "HEP v1/v2 addresses of different families"
            ))
        );
        p.dst_ip = None;
        assert!(encode_v1v2(&p, &mut out).is_err());
        p.dst_ip = Some(LOCALHOST);
        p.ip_family = Some(7);
        assert_eq!(
            encode_v1v2(&p, &mut out),
            Err(HepError::UnsupportedFamily(7))
        );
        p.ip_family = None;
        p.version = 3;
        assert!(encode_v1v2(&p, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn encoder_refuses_oversize_hep3() {
        let big = vec![0u8; 70_000];
        let mut p = decode(HEP3_INVITE).unwrap();
        p.payload = Some(HepPayload::Raw(&big));
        let mut out = vec![9];
        assert!(try_encode_v3(&p, &mut out).is_err());
        encode_v3(&p, &mut out);
        assert_eq!(out, [9]);
    }

    // ---- proptest: round trips and truncation ------------------------------------------

    /// An owned HEP packet that proptest can generate; `view()` borrows it as a [`HepPacket`].
    #[derive(Debug, Clone)]
    struct Owned {
        version: u8,
        ip_family: Option<u8>,
        ip_protocol: Option<u8>,
        src_ip: Option<IpAddr>,
        dst_ip: Option<IpAddr>,
        src_port: Option<u16>,
        dst_port: Option<u16>,
        ts_sec: Option<u32>,
        ts_usec: Option<u32>,
        proto_type: Option<u8>,
        capture_id: Option<u32>,
        keep_alive: Option<u16>,
        auth_key: Option<Vec<u8>>,
        payload: Option<(bool, Vec<u8>)>,
        correlation_id: Option<Vec<u8>>,
        vlan_id: Option<u16>,
        node_name: Option<Vec<u8>>,
        core_chunks: u8,
        /// Encoded extra chunks (vendor chunks and generic types >= 0x0014).
        extra_area: Vec<u8>,
    }

    impl Owned {
        fn view(&self) -> HepPacket<'_> {
            HepPacket {
                version: self.version,
                ip_family: self.ip_family,
                ip_protocol: self.ip_protocol,
                src_ip: self.src_ip,
                dst_ip: self.dst_ip,
                src_port: self.src_port,
                dst_port: self.dst_port,
                ts_sec: self.ts_sec,
                ts_usec: self.ts_usec,
                proto_type: self.proto_type,
                capture_id: self.capture_id,
                keep_alive: self.keep_alive,
                auth_key: self.auth_key.as_deref(),
                payload: self.payload.as_ref().map(|(compressed, bytes)| {
                    if *compressed {
                        HepPayload::Compressed(bytes)
                    } else {
                        HepPayload::Raw(bytes)
                    }
                }),
                correlation_id: self.correlation_id.as_deref(),
                vlan_id: self.vlan_id,
                node_name: self.node_name.as_deref(),
                core_chunks: self.core_chunks,
                chunk_area: &self.extra_area,
            }
        }
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..max)
    }

    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
            any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        ]
    }

    fn extra_chunk() -> impl Strategy<Value = (u16, u16, Vec<u8>)> {
        prop_oneof![
            (1..=u16::MAX, any::<u16>(), bytes(20)),
            (Just(0u16), 0x0014..=u16::MAX, bytes(20)),
        ]
    }

    prop_compose! {
        fn v3_packet()(
            ip_family in any::<Option<u8>>(),
            ip_protocol in any::<Option<u8>>(),
            src_ip in prop::option::of(ip()),
            dst_ip in prop::option::of(ip()),
            src_port in any::<Option<u16>>(),
            dst_port in any::<Option<u16>>(),
            ts_sec in any::<Option<u32>>(),
            ts_usec in any::<Option<u32>>(),
            proto_type in any::<Option<u8>>(),
            capture_id in any::<Option<u32>>(),
            keep_alive in any::<Option<u16>>(),
            auth_key in prop::option::of(bytes(40)),
            payload in prop::option::of((any::<bool>(), bytes(300))),
            correlation_id in prop::option::of(bytes(40)),
            vlan_id in any::<Option<u16>>(),
            node_name in prop::option::of(bytes(20)),
            extras in prop::collection::vec(extra_chunk(), 0..4),
        ) -> Owned {
            let mut extra_area = Vec::new();
            for (vendor, type_id, value) in &extras {
                encode::tests_support::put(&mut extra_area, *vendor, *type_id, value);
            }
            let core_chunks = [
                ip_family.is_some(), ip_protocol.is_some(), src_ip.is_some(), dst_ip.is_some(),
                src_port.is_some(), dst_port.is_some(), ts_sec.is_some(), ts_usec.is_some(),
                proto_type.is_some(), capture_id.is_some(),
                matches!(payload, Some((false, _))),
            ]
            .into_iter()
            .filter(|present| *present)
            .count();
            Owned {
                version: 3, ip_family, ip_protocol, src_ip, dst_ip, src_port, dst_port, ts_sec,
                ts_usec, proto_type, capture_id, keep_alive, auth_key, payload, correlation_id,
                vlan_id, node_name, core_chunks: u8::try_from(core_chunks).unwrap(), extra_area,
            }
        }
    }

    prop_compose! {
        fn v1v2_packet()(
            version in 1u8..=2,
            v6 in any::<bool>(),
            src in any::<[u8; 16]>(),
            dst in any::<[u8; 16]>(),
            ip_protocol in any::<u8>(),
            src_port in any::<u16>(),
            dst_port in any::<u16>(),
            ts_sec in any::<u32>(),
            ts_usec in any::<u32>(),
            capture_id in any::<u16>(),
            payload in bytes(300),
        ) -> Owned {
            let addr = |o: [u8; 16]| if v6 {
                IpAddr::V6(Ipv6Addr::from(o))
            } else {
                IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3]))
            };
            let v2 = version == 2;
            Owned {
                version,
                ip_family: Some(if v6 { 10 } else { 2 }),
                ip_protocol: Some(ip_protocol),
                src_ip: Some(addr(src)),
                dst_ip: Some(addr(dst)),
                src_port: Some(src_port),
                dst_port: Some(dst_port),
                ts_sec: v2.then_some(ts_sec),
                ts_usec: v2.then_some(ts_usec),
                proto_type: None,
                capture_id: v2.then_some(u32::from(capture_id)),
                keep_alive: None,
                auth_key: None,
                payload: Some((false, payload)),
                correlation_id: None,
                vlan_id: None,
                node_name: None,
                core_chunks: if v2 { 10 } else { 7 },
                extra_area: Vec::new(),
            }
        }
    }

    proptest! {
        #[test]
        fn v3_round_trip(owned in v3_packet()) {
            let original = owned.view();
            let mut wire = Vec::new();
            try_encode_v3(&original, &mut wire).unwrap();
            let decoded = decode(&wire).unwrap();
            // Everything but chunk_area (which now also holds the typed chunks) is equal.
            let expected = HepPacket { chunk_area: decoded.chunk_area, ..original.clone() };
            prop_assert_eq!(&decoded, &expected);
            prop_assert!(decoded.extra_chunks().eq(original.extra_chunks()));
            prop_assert_eq!(decoded.chunk_area.len() + 6, wire.len());
            // Stable order: re-encoding the decoded packet gives the same bytes.
            let mut again = Vec::new();
            encode_v3(&decoded, &mut again);
            prop_assert_eq!(again, wire);
        }

        #[test]
        fn v3_every_truncation_is_truncated(owned in v3_packet()) {
            let mut wire = Vec::new();
            encode_v3(&owned.view(), &mut wire);
            for len in 0..wire.len() {
                let result = decode(&wire[..len]);
                prop_assert!(
                    matches!(result, Err(HepError::Truncated { .. })),
                    "len {}: {:?}", len, result
                );
            }
            // And framing waits for exactly the whole packet.
            for len in 0..wire.len() {
                prop_assert_eq!(tcp_frame_len(&wire[..len], 65_535), Ok(None));
            }
            prop_assert_eq!(tcp_frame_len(&wire, 65_535), Ok(Some(wire.len())));
        }

        #[test]
        fn v1v2_round_trip(owned in v1v2_packet()) {
            let original = owned.view();
            let mut wire = Vec::new();
            encode_v1v2(&original, &mut wire).unwrap();
            prop_assert_eq!(decode(&wire).unwrap(), original);
        }

        #[test]
        fn v1v2_every_truncation_is_truncated_or_a_shorter_payload(owned in v1v2_packet()) {
            let original = owned.view();
            let mut wire = Vec::new();
            encode_v1v2(&original, &mut wire).unwrap();
            let header_len = wire.len() - owned.payload.as_ref().map_or(0, |(_, p)| p.len());
            for len in 0..wire.len() {
                let result = decode(&wire[..len]);
                if len < header_len {
                    prop_assert!(
                        matches!(result, Err(HepError::Truncated { .. })),
                        "len {}: {:?}", len, result
                    );
                } else {
                    // No length field: a cut payload is still a valid, shorter packet.
                    let p = result.unwrap();
                    prop_assert_eq!(p.payload, Some(HepPayload::Raw(&wire[header_len..len])));
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(buf in bytes(200)) {
            let _ = decode(&buf);
            let _ = tcp_frame_len(&buf, 100);
            let mut hep3 = b"HEP3".to_vec();
            hep3.extend_from_slice(&u16::try_from(buf.len() + 6).unwrap().to_be_bytes());
            hep3.extend_from_slice(&buf);
            if let Ok(p) = decode(&hep3) {
                // Decoded packets always walk cleanly to the end of the chunk area.
                let walked: usize = p.chunks().map(|c| c.wire_len()).sum();
                prop_assert_eq!(walked, p.chunk_area.len());
            }
        }
    }
}
