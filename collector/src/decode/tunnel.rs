//! Encapsulations a mirror port or a tap delivers around the IP packet: PPPoE sessions
//! (RFC 2516), GRE (RFC 2784/2890) with transparent Ethernet bridging (0x6558) and ERSPAN
//! type I/II/III (draft-foschiano-erspan), and VXLAN (RFC 7348).
//!
//! Each decoder returns what the header carries next (an ethertype-like protocol) and where
//! the inner bytes start, so the dissector walks on.

use super::error::{PacketError, be16, be32, need};

/// PPPoE session stage (RFC 2516 §4).
pub const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
/// GRE payload: transparent Ethernet bridging (a whole Ethernet frame follows).
pub const GRE_PROTO_TEB: u16 = 0x6558;
/// GRE payload: ERSPAN type I/II (type II has the sequence number bit set).
pub const GRE_PROTO_ERSPAN_II: u16 = 0x88be;
/// GRE payload: ERSPAN type III.
pub const GRE_PROTO_ERSPAN_III: u16 = 0x22eb;
/// The IANA VXLAN UDP port.
pub const VXLAN_PORT: u16 = 4789;

/// PPP protocol numbers (RFC 1332, RFC 5072).
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;
const PPPOE_HEADER_LEN: usize = 6;
const PPP_PROTOCOL_LEN: usize = 2;

/// What comes after an encapsulation header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inner {
    /// An IPv4 packet.
    Ipv4,
    /// An IPv6 packet.
    Ipv6,
    /// An Ethernet frame (GRE TEB, ERSPAN, VXLAN).
    Ethernet,
}

/// A decoded encapsulation header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encapsulated<'a> {
    /// What the inner bytes are.
    pub inner: Inner,
    /// Bytes from the buffer start to the inner bytes.
    pub header_len: usize,
    /// The inner bytes.
    pub payload: &'a [u8],
}

fn encapsulated(buf: &[u8], inner: Inner, header_len: usize) -> Encapsulated<'_> {
    Encapsulated {
        inner,
        header_len,
        payload: buf.get(header_len..).unwrap_or_default(),
    }
}

/// Decodes a PPPoE session header and the PPP protocol field. Only IPv4 and IPv6 are followed;
/// LCP, IPCP and the rest are [`PacketError::UnsupportedEncapsulation`]. The inner bytes are
/// cut at the PPPoE length (Ethernet padding removed).
pub fn pppoe_session(buf: &[u8]) -> Result<Encapsulated<'_>, PacketError> {
    let header = need(buf, "pppoe", 0, PPPOE_HEADER_LEN + PPP_PROTOCOL_LEN)?;
    // ver = 1, type = 1 (RFC 2516 §4), code 0x00 for session data.
    let ver_type = header.first().copied().unwrap_or(0);
    let code = header.get(1).copied().unwrap_or(0);
    if ver_type != 0x11 || code != 0 {
        return Err(PacketError::UnsupportedEncapsulation {
            layer: "pppoe",
            offset: 0,
            value: u32::from(ver_type) << 8 | u32::from(code),
        });
    }
    // The length covers the PPP payload, protocol field included.
    let length = usize::from(be16(header, 4));
    let session = need(buf, "pppoe", 0, PPPOE_HEADER_LEN + length)?;
    let protocol = be16(header, PPPOE_HEADER_LEN);
    let inner = match protocol {
        PPP_IPV4 => Inner::Ipv4,
        PPP_IPV6 => Inner::Ipv6,
        other => {
            return Err(PacketError::UnsupportedEncapsulation {
                layer: "ppp",
                offset: PPPOE_HEADER_LEN,
                value: u32::from(other),
            });
        }
    };
    Ok(encapsulated(
        session,
        inner,
        PPPOE_HEADER_LEN + PPP_PROTOCOL_LEN,
    ))
}

/// GRE flag bits (RFC 2784 §2.1, RFC 2890 §2).
const GRE_CHECKSUM: u16 = 0x8000;
const GRE_ROUTING: u16 = 0x4000;
const GRE_KEY: u16 = 0x2000;
const GRE_SEQUENCE: u16 = 0x1000;
const GRE_VERSION: u16 = 0x0007;

/// ERSPAN header sizes.
const ERSPAN_II_LEN: usize = 8;
const ERSPAN_III_LEN: usize = 12;
const ERSPAN_III_PLATFORM_LEN: usize = 8;

/// Decodes a GRE header (version 0) and, for ERSPAN, the ERSPAN header after it.
///
/// * protocol 0x0800 / 0x86dd: an IP packet follows (GRE tunnels);
/// * 0x6558: an Ethernet frame (transparent Ethernet bridging);
/// * 0x88be: ERSPAN type II when the sequence bit is set (an 8-byte ERSPAN header, version 1,
///   then the mirrored frame), type I without it (the frame follows the GRE header at once);
/// * 0x22eb: ERSPAN type III (12 bytes, version 2, plus the 8-byte platform subheader when the
///   O bit is set); only frame type 0 (Ethernet) is followed.
///
/// GRE version 1 (PPTP), the deprecated routing field and other protocols are
/// [`PacketError::UnsupportedEncapsulation`].
pub fn gre(buf: &[u8]) -> Result<Encapsulated<'_>, PacketError> {
    let header = need(buf, "gre", 0, 4)?;
    let flags = be16(header, 0);
    if flags & (GRE_ROUTING | GRE_VERSION) != 0 {
        return Err(PacketError::UnsupportedEncapsulation {
            layer: "gre",
            offset: 0,
            value: u32::from(flags),
        });
    }
    let protocol = be16(header, 2);
    let mut len = 4;
    for bit in [GRE_CHECKSUM, GRE_KEY, GRE_SEQUENCE] {
        if flags & bit != 0 {
            len += 4;
        }
    }
    need(buf, "gre", 0, len)?;
    match protocol {
        super::ethernet::ETHERTYPE_IPV4 => Ok(encapsulated(buf, Inner::Ipv4, len)),
        super::ethernet::ETHERTYPE_IPV6 => Ok(encapsulated(buf, Inner::Ipv6, len)),
        GRE_PROTO_TEB => Ok(encapsulated(buf, Inner::Ethernet, len)),
        GRE_PROTO_ERSPAN_II if flags & GRE_SEQUENCE == 0 => {
            // Type I: no ERSPAN header.
            Ok(encapsulated(buf, Inner::Ethernet, len))
        }
        GRE_PROTO_ERSPAN_II => {
            let erspan = need(buf, "erspan", len, ERSPAN_II_LEN)?;
            let version = erspan.first().map_or(0, |b| b >> 4);
            if version != 1 {
                return Err(PacketError::UnsupportedEncapsulation {
                    layer: "erspan",
                    offset: len,
                    value: u32::from(version),
                });
            }
            Ok(encapsulated(buf, Inner::Ethernet, len + ERSPAN_II_LEN))
        }
        GRE_PROTO_ERSPAN_III => {
            let erspan = need(buf, "erspan", len, ERSPAN_III_LEN)?;
            let version = erspan.first().map_or(0, |b| b >> 4);
            // Word 3: SGT (16), P (1), FT (5), HW ID (6), D (1), Gra (2), O (1).
            let word3 = be32(erspan, 8);
            let frame_type = (word3 >> 10) & 0x1f;
            if version != 2 || frame_type != 0 {
                return Err(PacketError::UnsupportedEncapsulation {
                    layer: "erspan",
                    offset: len,
                    value: if version != 2 {
                        u32::from(version)
                    } else {
                        frame_type
                    },
                });
            }
            let mut erspan_len = ERSPAN_III_LEN;
            if word3 & 1 != 0 {
                need(buf, "erspan", len + erspan_len, ERSPAN_III_PLATFORM_LEN)?;
                erspan_len += ERSPAN_III_PLATFORM_LEN;
            }
            Ok(encapsulated(buf, Inner::Ethernet, len + erspan_len))
        }
        other => Err(PacketError::UnsupportedEncapsulation {
            layer: "gre",
            offset: 2,
            value: u32::from(other),
        }),
    }
}

/// VXLAN header length.
pub const VXLAN_HEADER_LEN: usize = 8;
/// The "VNI valid" flag (RFC 7348 §5).
const VXLAN_FLAG_I: u8 = 0x08;

/// Decodes a VXLAN header (the payload of a UDP datagram to port 4789): flags with the I bit,
/// 24-bit VNI, then an Ethernet frame. A header without the I bit is
/// [`PacketError::UnsupportedEncapsulation`] (then it is not VXLAN, and the caller may treat the
/// datagram as plain UDP).
pub fn vxlan(buf: &[u8]) -> Result<Encapsulated<'_>, PacketError> {
    let header = need(buf, "vxlan", 0, VXLAN_HEADER_LEN)?;
    let flags = header.first().copied().unwrap_or(0);
    if flags & VXLAN_FLAG_I == 0 {
        return Err(PacketError::UnsupportedEncapsulation {
            layer: "vxlan",
            offset: 0,
            value: u32::from(flags),
        });
    }
    Ok(encapsulated(buf, Inner::Ethernet, VXLAN_HEADER_LEN))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn pppoe_ipv4_and_padding() {
        let mut b = vec![
            0x11, 0x00, 0x12, 0x34, 0x00, 0x05, 0x00, 0x21, 0x45, 0x00, 0x01,
        ];
        b.extend_from_slice(&[0; 4]); // Ethernet padding
        let e = pppoe_session(&b).unwrap();
        assert_eq!(e.inner, Inner::Ipv4);
        assert_eq!(e.header_len, 8);
        assert_eq!(e.payload, &[0x45, 0x00, 0x01]);
        // LCP.
        let lcp = [0x11, 0x00, 0, 1, 0, 2, 0xc0, 0x21];
        assert_eq!(
            pppoe_session(&lcp),
            Err(PacketError::UnsupportedEncapsulation {
                layer: "ppp",
                offset: 6,
                value: 0xc021
            })
        );
        for cut in 0..b.len() - 4 {
            let err = pppoe_session(&b[..cut]).unwrap_err();
            assert_eq!(err.reason(), "truncated", "{cut}");
        }
    }

    #[test]
    fn gre_variants() {
        // Plain GRE carrying IPv4.
        let e = gre(&[0, 0, 0x08, 0x00, 0x45]).unwrap();
        assert_eq!((e.inner, e.header_len), (Inner::Ipv4, 4));
        // Key + sequence, TEB.
        let e = gre(&[0x30, 0, 0x65, 0x58, 0, 0, 0, 1, 0, 0, 0, 2, 0xaa]).unwrap();
        assert_eq!(
            (e.inner, e.header_len, e.payload),
            (Inner::Ethernet, 12, &[0xaa][..])
        );
        // ERSPAN II: sequence bit, 8-byte header version 1.
        let mut ii = vec![0x10, 0, 0x88, 0xbe, 0, 0, 0, 7];
        ii.extend_from_slice(&[0x10, 0x64, 0, 1, 0, 0, 0, 0, 0xbb]);
        let e = gre(&ii).unwrap();
        assert_eq!(
            (e.inner, e.header_len, e.payload),
            (Inner::Ethernet, 16, &[0xbb][..])
        );
        // ERSPAN I: no sequence bit, no ERSPAN header.
        let e = gre(&[0, 0, 0x88, 0xbe, 0xcc]).unwrap();
        assert_eq!((e.inner, e.header_len), (Inner::Ethernet, 4));
        // ERSPAN III with the platform subheader (O bit).
        let mut iii = vec![0x10, 0, 0x22, 0xeb, 0, 0, 0, 7];
        iii.extend_from_slice(&[0x20, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
        iii.extend_from_slice(&[0; 8]);
        iii.push(0xdd);
        let e = gre(&iii).unwrap();
        assert_eq!(
            (e.inner, e.header_len, e.payload),
            (Inner::Ethernet, 28, &[0xdd][..])
        );
        // PPTP (version 1) and unknown protocols are not ours.
        assert!(
            gre(&[0x30, 0x01, 0x88, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0])
                .unwrap_err()
                .is_skip()
        );
        assert!(gre(&[0, 0, 0x12, 0x34]).unwrap_err().is_skip());
        for cut in 0..iii.len() - 1 {
            assert_eq!(gre(&iii[..cut]).unwrap_err().reason(), "truncated", "{cut}");
        }
    }

    #[test]
    fn vxlan_header() {
        let b = [0x08, 0, 0, 0, 0, 0x01, 0x02, 0, 0xee];
        let e = vxlan(&b).unwrap();
        assert_eq!(
            (e.inner, e.header_len, e.payload),
            (Inner::Ethernet, 8, &[0xee][..])
        );
        assert!(vxlan(&[0u8; 9]).unwrap_err().is_skip());
        assert_eq!(vxlan(&b[..7]).unwrap_err().reason(), "truncated");
    }
}
