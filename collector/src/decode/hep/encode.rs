//! HEP encoders: the inverse of [`super::decode`], for tests, load generation and forwarding.

use std::net::IpAddr;

use super::chunk::{CHUNK_HEADER_LEN, GENERIC_VENDOR};
use super::v1v2::{AF_INET, AF_INET6};
use super::v3::{CONTROL_HEADER_LEN, chunk_type as ct};
use super::{HEP3_MAGIC, HepError, HepPacket, HepPayload};

/// Encodes `p` as one HEP3 packet appended to `out`; see [`try_encode_v3`] for the layout.
///
/// A packet that HEP3 cannot represent (a chunk or the whole packet over 65535 bytes) appends
/// nothing; call [`try_encode_v3`] to learn why.
pub fn encode_v3(p: &HepPacket<'_>, out: &mut Vec<u8>) {
    // On error `try_encode_v3` has already restored `out`; the signature has no error channel.
    let _ = try_encode_v3(p, out);
}

/// Encodes `p` as one HEP3 packet appended to `out`, or fails without touching `out`.
///
/// The magic is always `"HEP3"` and the header length is the total packet length. Chunks, all
/// present typed fields, in a stable order that extends Kamailio siptrace's
/// (`trace_send_hep3_duplicate`): 0x0001 family, 0x0002 protocol, source address (0x0003 IPv4
/// or 0x0005 IPv6), destination address (0x0004 / 0x0006), 0x0007, 0x0008 ports, 0x0009,
/// 0x000a time, 0x000b proto type, 0x000c capture id, 0x000d keep-alive, 0x0011 correlation
/// id, 0x000e auth key, 0x0012 VLAN, 0x0013 node name, then `p.extra_chunks()` in their
/// order, then the payload (0x000f raw or 0x0010 compressed) last. `core_chunks`,
/// `chunk_area`'s typed chunks and `version` are not written (they are derived on decode).
pub fn try_encode_v3(p: &HepPacket<'_>, out: &mut Vec<u8>) -> Result<(), HepError> {
    let start = out.len();
    let result = write_v3(p, out, start);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn write_v3(p: &HepPacket<'_>, out: &mut Vec<u8>, start: usize) -> Result<(), HepError> {
    out.extend_from_slice(HEP3_MAGIC);
    out.extend_from_slice(&[0, 0]); // total length, patched below

    let generic = |out: &mut Vec<u8>, type_id: u16, value: &[u8]| {
        put_chunk(out, GENERIC_VENDOR, type_id, value)
    };
    if let Some(family) = p.ip_family {
        generic(out, ct::IP_FAMILY, &[family])?;
    }
    if let Some(protocol) = p.ip_protocol {
        generic(out, ct::IP_PROTOCOL, &[protocol])?;
    }
    for (addr, v4_type, v6_type) in [
        (p.src_ip, ct::IPV4_SRC, ct::IPV6_SRC),
        (p.dst_ip, ct::IPV4_DST, ct::IPV6_DST),
    ] {
        match addr {
            Some(IpAddr::V4(v4)) => generic(out, v4_type, &v4.octets())?,
            Some(IpAddr::V6(v6)) => generic(out, v6_type, &v6.octets())?,
            None => {}
        }
    }
    if let Some(port) = p.src_port {
        generic(out, ct::SRC_PORT, &port.to_be_bytes())?;
    }
    if let Some(port) = p.dst_port {
        generic(out, ct::DST_PORT, &port.to_be_bytes())?;
    }
    if let Some(sec) = p.ts_sec {
        generic(out, ct::TS_SEC, &sec.to_be_bytes())?;
    }
    if let Some(usec) = p.ts_usec {
        generic(out, ct::TS_USEC, &usec.to_be_bytes())?;
    }
    if let Some(proto_type) = p.proto_type {
        generic(out, ct::PROTO_TYPE, &[proto_type])?;
    }
    if let Some(id) = p.capture_id {
        generic(out, ct::CAPTURE_ID, &id.to_be_bytes())?;
    }
    if let Some(keep_alive) = p.keep_alive {
        generic(out, ct::KEEP_ALIVE, &keep_alive.to_be_bytes())?;
    }
    if let Some(correlation_id) = p.correlation_id {
        generic(out, ct::CORRELATION_ID, correlation_id)?;
    }
    if let Some(auth_key) = p.auth_key {
        generic(out, ct::AUTH_KEY, auth_key)?;
    }
    if let Some(vlan) = p.vlan_id {
        generic(out, ct::VLAN_ID, &vlan.to_be_bytes())?;
    }
    if let Some(node_name) = p.node_name {
        generic(out, ct::NODE_NAME, node_name)?;
    }
    for extra in p.extra_chunks() {
        put_chunk(out, extra.vendor_id, extra.type_id, extra.value)?;
    }
    match p.payload {
        Some(HepPayload::Raw(bytes)) => generic(out, ct::PAYLOAD, bytes)?,
        Some(HepPayload::Compressed(bytes)) => generic(out, ct::COMPRESSED_PAYLOAD, bytes)?,
        None => {}
    }

    let total = out.len().saturating_sub(start);
    let total = u16::try_from(total)
        .map_err(|_| HepError::Unencodable("HEP3 packet longer than 65535 bytes"))?;
    let length_field = start.saturating_add(4)..start.saturating_add(CONTROL_HEADER_LEN);
    if let Some(field) = out.get_mut(length_field) {
        field.copy_from_slice(&total.to_be_bytes());
    }
    Ok(())
}

fn put_chunk(
    out: &mut Vec<u8>,
    vendor_id: u16,
    type_id: u16,
    value: &[u8],
) -> Result<(), HepError> {
    let length = u16::try_from(value.len().saturating_add(CHUNK_HEADER_LEN))
        .map_err(|_| HepError::Unencodable("HEP3 chunk longer than 65535 bytes"))?;
    out.extend_from_slice(&vendor_id.to_be_bytes());
    out.extend_from_slice(&type_id.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

/// Encodes `p` as a HEP v1 or v2 packet (per `p.version`) appended to `out`, in the layout
/// Kamailio siptrace sends (`trace_send_hep2_duplicate`, reference sections 1.2 and 7):
///
/// * `hep_hdr`: `hp_v` = version, `hp_l` = 16 (IPv4) or 40 (IPv6), `hp_f` = 2 or 10,
///   `hp_p` = `ip_protocol` (0 if absent), ports big-endian (0 if absent);
/// * the two addresses (8 or 32 bytes);
/// * v2 only: `tv_sec`, `tv_usec` little-endian (0 if absent), `captid` = `capture_id`
///   truncated to 16 bits (as siptrace does) little-endian, 2 zero pad bytes;
/// * the raw payload (empty if absent).
///
/// Fields v1/v2 cannot carry (proto type, auth key, correlation id, extra chunks, ...) are
/// dropped. Errors, with `out` untouched: version not 1/2, a missing address, source and
/// destination of different families, an `ip_family` that contradicts the addresses
/// ([`HepError::UnsupportedFamily`] for a value other than 2/10), a compressed payload.
pub fn encode_v1v2(p: &HepPacket<'_>, out: &mut Vec<u8>) -> Result<(), HepError> {
    if p.version != 1 && p.version != 2 {
        return Err(HepError::Unencodable(
            "HEP v1/v2 encoding needs version 1 or 2",
        ));
    }
    let (family, hp_l) = match (p.src_ip, p.dst_ip) {
        (Some(IpAddr::V4(_)), Some(IpAddr::V4(_))) => (AF_INET, 16u8),
        (Some(IpAddr::V6(_)), Some(IpAddr::V6(_))) => (AF_INET6, 40u8),
        (Some(_), Some(_)) => {
            // siptrace: "interworking detected ?", nothing is sent.
            return Err(HepError::Unencodable(
                "HEP v1/v2 addresses of different families",
            ));
        }
        _ => return Err(HepError::Unencodable("HEP v1/v2 needs both addresses")),
    };
    match p.ip_family {
        None => {}
        Some(f) if f == family => {}
        Some(f) if f == AF_INET || f == AF_INET6 => {
            return Err(HepError::Unencodable(
                "ip_family does not match the addresses",
            ));
        }
        Some(f) => return Err(HepError::UnsupportedFamily(f)),
    }
    let payload = match p.payload {
        None => &[][..],
        Some(HepPayload::Raw(bytes)) => bytes,
        Some(HepPayload::Compressed(_)) => {
            return Err(HepError::Unencodable(
                "HEP v1/v2 cannot carry a compressed payload",
            ));
        }
    };

    out.extend_from_slice(&[p.version, hp_l, family, p.ip_protocol.unwrap_or(0)]);
    out.extend_from_slice(&p.src_port.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&p.dst_port.unwrap_or(0).to_be_bytes());
    for addr in [p.src_ip, p.dst_ip].into_iter().flatten() {
        match addr {
            IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
        }
    }
    if p.version == 2 {
        let captid = u16::try_from(p.capture_id.unwrap_or(0) & 0xffff).unwrap_or(u16::MAX);
        out.extend_from_slice(&p.ts_sec.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&p.ts_usec.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&captid.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    out.extend_from_slice(payload);
    Ok(())
}

/// Chunk writing for tests elsewhere in `hep` (proptest generators build extra-chunk areas).
#[cfg(test)]
pub(crate) mod tests_support {
    /// Appends one chunk; panics only in tests, on a value over 65529 bytes.
    #[allow(clippy::unwrap_used)]
    pub(crate) fn put(out: &mut Vec<u8>, vendor_id: u16, type_id: u16, value: &[u8]) {
        super::put_chunk(out, vendor_id, type_id, value).unwrap();
    }
}
