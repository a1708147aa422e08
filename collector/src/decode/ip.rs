//! Network layer: IPv4 (RFC 791, header length from IHL) and IPv6 (RFC 8200, fixed header plus
//! the Hop-by-Hop, Routing, Destination Options and AH extension headers).
//!
//! Kamailio's raw modes read IPv4 only and mis-handle fragments (behaviour doc §5). Here a
//! fragment is reported as [`PacketError::Fragment`], a typed skip: reassembly is a later step.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::{PacketError, be16, need};

/// IPv4 header without options.
pub const IPV4_MIN_HEADER_LEN: usize = 20;
/// IPv6 fixed header.
pub const IPV6_HEADER_LEN: usize = 40;

/// IPv6 next-header values we walk over (IANA "IPv6 Extension Header Types").
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;

/// The IPv4 "more fragments" flag and fragment offset bits of the flags/offset word.
const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
const IPV4_FRAGMENT_OFFSET: u16 = 0x1fff;

/// A decoded IP header: addresses, the transport protocol and its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPacket<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The transport protocol (IPv4 protocol, or IPv6 next header after the extensions).
    pub protocol: u8,
    /// Bytes from the buffer start to the transport header (options and extensions included).
    pub header_len: usize,
    /// The transport bytes, cut at the length the IP header declares (Ethernet padding
    /// removed).
    pub payload: &'a [u8],
}

/// Where a fragment sits in its datagram (RFC 791 §3.2, RFC 8200 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentInfo {
    /// The identification (16 bits in IPv4, 32 in IPv6).
    pub id: u32,
    /// Offset of this fragment's bytes in the datagram's payload, in bytes.
    pub offset: usize,
    /// The "more fragments" flag: false on the last fragment.
    pub more: bool,
    /// Offset of the header that carries the fragment fields (IPv4 header or IPv6 Fragment
    /// header), for error messages.
    pub header_at: usize,
}

/// A decoded IP header that may be a fragment: what [`from_ipv4`] and [`from_ipv6`] return,
/// plus the fragment fields. For a fragment, `protocol` is the protocol of the whole datagram
/// (IPv6: the Fragment header's next header) and `payload` is this fragment's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpHeader<'a> {
    /// The header as for a whole datagram.
    pub packet: IpPacket<'a>,
    /// Present when the packet is a fragment (not for an IPv6 atomic fragment: offset 0 and
    /// no more fragments is a whole datagram, RFC 6946).
    pub fragment: Option<FragmentInfo>,
}

/// Decodes an IPv4 header and returns the transport bytes. Fragments are
/// [`PacketError::Fragment`].
pub fn from_ipv4(buf: &[u8]) -> Result<IpPacket<'_>, PacketError> {
    let header = ipv4_header(buf)?;
    if header.fragment.is_some() {
        return Err(PacketError::Fragment { offset: 0 });
    }
    Ok(header.packet)
}

/// Decodes an IPv4 header, fragments included.
pub fn ipv4_header(buf: &[u8]) -> Result<IpHeader<'_>, PacketError> {
    let fixed = need(buf, "ipv4", 0, IPV4_MIN_HEADER_LEN)?;
    let version = fixed.first().map_or(0, |b| b >> 4);
    if version != 4 {
        return Err(PacketError::BadIpVersion {
            offset: 0,
            version,
            expected: 4,
        });
    }
    let ihl = fixed.first().map_or(0, |b| b & 0x0f);
    let header_len = usize::from(ihl) * 4;
    let total_length = be16(fixed, 2);
    if header_len < IPV4_MIN_HEADER_LEN || usize::from(total_length) < header_len {
        return Err(PacketError::BadIpv4Length {
            offset: 0,
            ihl,
            total_length,
        });
    }
    let packet = need(buf, "ipv4", 0, usize::from(total_length))?;
    let flags_offset = be16(fixed, 6);
    let fragment =
        (flags_offset & (IPV4_MORE_FRAGMENTS | IPV4_FRAGMENT_OFFSET) != 0).then(|| FragmentInfo {
            id: u32::from(be16(fixed, 4)),
            offset: usize::from(flags_offset & IPV4_FRAGMENT_OFFSET) * 8,
            more: flags_offset & IPV4_MORE_FRAGMENTS != 0,
            header_at: 0,
        });
    let addr = |at: usize| match fixed.get(at..at + 4) {
        Some(&[a, b, c, d]) => Ipv4Addr::new(a, b, c, d),
        _ => Ipv4Addr::UNSPECIFIED,
    };
    Ok(IpHeader {
        packet: IpPacket {
            src: IpAddr::V4(addr(12)),
            dst: IpAddr::V4(addr(16)),
            protocol: fixed.get(9).copied().unwrap_or(0),
            header_len,
            payload: packet.get(header_len..).unwrap_or_default(),
        },
        fragment,
    })
}

/// Decodes an IPv6 header, walks the extension headers up to the transport and returns its
/// bytes. A Fragment header is [`PacketError::Fragment`] (even an atomic fragment).
pub fn from_ipv6(buf: &[u8]) -> Result<IpPacket<'_>, PacketError> {
    let header = ipv6_walk(buf, true)?;
    Ok(header.packet)
}

/// Decodes an IPv6 header, fragments included: the walk stops at a Fragment header (the
/// headers after it belong to the fragmentable part, RFC 8200 §4.5); an atomic fragment is
/// walked through as a whole datagram.
pub fn ipv6_header(buf: &[u8]) -> Result<IpHeader<'_>, PacketError> {
    ipv6_walk(buf, false)
}

/// Walks extension headers starting with `next_header` at the start of `buf` (a reassembled
/// IPv6 fragmentable part): returns the transport protocol and the offset of its header.
pub fn ipv6_extensions(buf: &[u8], next_header: u8) -> Result<(u8, usize), PacketError> {
    let mut next_header = next_header;
    let mut offset = 0;
    loop {
        let Some(ext_len) = extension_len(buf, next_header, offset)? else {
            return Ok((next_header, offset));
        };
        if next_header == IPV6_FRAGMENT {
            // A fragment inside a reassembled datagram: nested fragmentation is not valid.
            return Err(PacketError::Fragment { offset });
        }
        let ext = need(buf, "ipv6_extension", offset, ext_len)?;
        next_header = ext.first().copied().unwrap_or(0);
        offset += ext_len;
    }
}

/// The length of the extension header `next_header` at `offset`, or `None` when it is not an
/// extension header (the transport starts there).
fn extension_len(buf: &[u8], next_header: u8, offset: usize) -> Result<Option<usize>, PacketError> {
    Ok(Some(match next_header {
        IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
            // Hdr Ext Len: 8-octet units, not counting the first 8 (RFC 8200 §4.3).
            let ext = need(buf, "ipv6_extension", offset, 8)?;
            8 + usize::from(ext.get(1).copied().unwrap_or(0)) * 8
        }
        IPV6_AUTH => {
            // AH Payload Len: 4-octet units, minus 2 (RFC 4302 §2.2).
            let ext = need(buf, "ipv6_extension", offset, 8)?;
            (usize::from(ext.get(1).copied().unwrap_or(0)) + 2) * 4
        }
        IPV6_FRAGMENT => 8,
        _ => return Ok(None),
    }))
}

fn ipv6_walk(buf: &[u8], strict: bool) -> Result<IpHeader<'_>, PacketError> {
    let fixed = need(buf, "ipv6", 0, IPV6_HEADER_LEN)?;
    let version = fixed.first().map_or(0, |b| b >> 4);
    if version != 6 {
        return Err(PacketError::BadIpVersion {
            offset: 0,
            version,
            expected: 6,
        });
    }
    let payload_length = usize::from(be16(fixed, 4));
    // A zero payload length means a jumbogram (RFC 2675) or a GSO super-packet seen on the
    // sending host: no length to trust, so the frame is treated as cut.
    let packet = need(buf, "ipv6", 0, IPV6_HEADER_LEN + payload_length)?;
    let addr = |at: usize| {
        let bytes: [u8; 16] = fixed
            .get(at..at + 16)
            .and_then(|s| s.try_into().ok())
            .unwrap_or_default();
        Ipv6Addr::from(bytes)
    };
    let mut next_header = fixed.get(6).copied().unwrap_or(0);
    let mut offset = IPV6_HEADER_LEN;
    let mut fragment = None;
    while let Some(ext_len) = extension_len(packet, next_header, offset)? {
        if strict && next_header == IPV6_FRAGMENT {
            return Err(PacketError::Fragment { offset });
        }
        let ext = need(packet, "ipv6_extension", offset, ext_len)?;
        if next_header == IPV6_FRAGMENT {
            // Next header, reserved, offset (13 bits) | res | M, identification.
            let offset_flags = be16(ext, 2);
            let info = FragmentInfo {
                id: super::error::be32(ext, 4),
                offset: usize::from(offset_flags >> 3) * 8,
                more: offset_flags & 1 != 0,
                header_at: offset,
            };
            next_header = ext.first().copied().unwrap_or(0);
            offset += ext_len;
            if info.offset != 0 || info.more {
                fragment = Some(info);
                break;
            }
            continue;
        }
        next_header = ext.first().copied().unwrap_or(0);
        offset += ext_len;
    }
    Ok(IpHeader {
        packet: IpPacket {
            src: IpAddr::V6(addr(8)),
            dst: IpAddr::V6(addr(24)),
            protocol: next_header,
            header_len: offset,
            payload: packet.get(offset..).unwrap_or_default(),
        },
        fragment,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn ipv4(ihl: u8, flags_offset: u16, payload: &[u8]) -> Vec<u8> {
        let header_len = usize::from(ihl) * 4;
        let total = u16::try_from(header_len + payload.len()).unwrap();
        let mut h = vec![0u8; header_len.max(20)];
        h[0] = 0x40 | ihl;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        h[8] = 64;
        h[9] = 17;
        h[12..16].copy_from_slice(&[10, 0, 0, 1]);
        h[16..20].copy_from_slice(&[10, 0, 0, 2]);
        h.extend_from_slice(payload);
        h
    }

    fn ipv6(next: u8, rest: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&u16::try_from(rest.len()).unwrap().to_be_bytes());
        h[6] = next;
        h[8..24].copy_from_slice(&"2001:db8::10".parse::<Ipv6Addr>().unwrap().octets());
        h[24..40].copy_from_slice(&"2001:db8::20".parse::<Ipv6Addr>().unwrap().octets());
        h.extend_from_slice(rest);
        h
    }

    #[test]
    fn ipv4_with_options_and_padding() {
        let mut p = ipv4(6, 0x4000, b"udp!");
        p.extend_from_slice(&[0; 6]); // Ethernet padding beyond the total length.
        let ip = from_ipv4(&p).unwrap();
        assert_eq!(ip.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(ip.dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            (ip.protocol, ip.header_len, ip.payload),
            (17, 24, &b"udp!"[..])
        );
    }

    #[test]
    fn ipv4_errors() {
        assert_eq!(
            from_ipv4(&ipv4(5, 0, b"x")[..19]),
            Err(PacketError::Truncated {
                layer: "ipv4",
                offset: 0,
                required: 20,
                actual: 19
            })
        );
        let p = ipv4(5, 0, b"abcd");
        assert_eq!(
            from_ipv4(&p[..22]),
            Err(PacketError::Truncated {
                layer: "ipv4",
                offset: 0,
                required: 24,
                actual: 22
            })
        );
        let mut bad = ipv4(5, 0, b"");
        bad[0] = 0x44;
        assert_eq!(
            from_ipv4(&bad),
            Err(PacketError::BadIpv4Length {
                offset: 0,
                ihl: 4,
                total_length: 20
            })
        );
        bad[0] = 0x65;
        assert_eq!(
            from_ipv4(&bad),
            Err(PacketError::BadIpVersion {
                offset: 0,
                version: 6,
                expected: 4
            })
        );
        // First fragment (MF) and a later one (offset) are both fragments.
        for flags in [0x2000, 0x00b9] {
            assert_eq!(
                from_ipv4(&ipv4(5, flags, b"x")),
                Err(PacketError::Fragment { offset: 0 })
            );
        }
    }

    #[test]
    fn ipv6_walks_extension_headers() {
        // Hop-by-Hop (8 bytes) → Destination Options (16 bytes) → UDP.
        let mut rest = vec![IPV6_DEST_OPTS, 0, 1, 4, 0, 0, 0, 0];
        rest.extend_from_slice(&[17, 1, 1, 12]);
        rest.extend_from_slice(&[0; 12]);
        rest.extend_from_slice(b"udp!");
        let p = ipv6(IPV6_HOP_BY_HOP, &rest);
        let ip = from_ipv6(&p).unwrap();
        assert_eq!(
            (ip.protocol, ip.header_len, ip.payload),
            (17, 64, &b"udp!"[..])
        );
        assert_eq!(ip.src, "2001:db8::10".parse::<IpAddr>().unwrap());

        let frag = ipv6(
            IPV6_ROUTING,
            &[IPV6_FRAGMENT, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 1],
        );
        assert_eq!(from_ipv6(&frag), Err(PacketError::Fragment { offset: 48 }));
        let cut = ipv6(IPV6_DEST_OPTS, &[17, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            from_ipv6(&cut),
            Err(PacketError::Truncated {
                layer: "ipv6_extension",
                offset: 40,
                required: 24,
                actual: 8
            })
        );
    }
}
