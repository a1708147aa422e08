//! The HEP packet of any version ([`HepPacket`], borrowing from the received buffer) and its
//! payload ([`HepPayload`], with inflation of a compressed one).

use std::borrow::Cow;
use std::io::Read;
use std::net::IpAddr;

use super::chunk::{HepChunk, HepChunks};
use super::error::HepError;

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

/// Reads a big-endian u16 at `offset`, if the bytes are there.
pub(super) fn be_u16(buf: &[u8], offset: usize) -> Option<u16> {
    let bytes = buf.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_be_bytes(bytes.try_into().ok()?))
}
