//! The frame walk of raw capture: link header → VLAN tags → IPv4/IPv6 → UDP, with every error
//! offset counted from the start of the captured frame.

use std::net::{IpAddr, SocketAddr};

use super::error::PacketError;
use super::ethernet::{self, ETHERTYPE_IPV4, VlanTags};
use super::{ip, udp};

/// IANA protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// The link-layer header a frame starts with (pcap `LINKTYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II (`LINKTYPE_ETHERNET` = 1): packet sockets on Ethernet-like interfaces, `lo`
    /// included (with zero MAC addresses).
    Ethernet,
    /// Linux cooked v1 (`LINKTYPE_LINUX_SLL` = 113).
    LinuxSll,
    /// Linux cooked v2 (`LINKTYPE_LINUX_SLL2` = 276).
    LinuxSll2,
    /// Raw IP: the frame starts at an IPv4 or IPv6 header, told apart by the version nibble
    /// (`LINKTYPE_RAW` = 101, DLT 12 and 14 of some BSDs, `LINKTYPE_IPV4` = 228,
    /// `LINKTYPE_IPV6` = 229). The IPIP raw socket delivers this (outer IPv4 header first).
    RawIp,
}

impl LinkType {
    /// The link type of a pcap link-type number, if we decode it.
    pub fn from_pcap(link_type: u32) -> Option<Self> {
        match link_type {
            1 => Some(LinkType::Ethernet),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            101 | 12 | 14 | 228 | 229 => Some(LinkType::RawIp),
            _ => None,
        }
    }
}

/// A UDP datagram found in a frame, with its addressing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpInFrame<'a> {
    /// VLAN ids the frame carried in its bytes.
    pub vlan: VlanTags,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// The UDP payload.
    pub payload: &'a [u8],
}

impl UdpInFrame<'_> {
    /// The IP family.
    pub fn is_ipv6(&self) -> bool {
        matches!(self.src.ip(), IpAddr::V6(_))
    }
}

/// Decodes `frame` down to its UDP payload. Strict: a cut frame is [`PacketError::Truncated`].
pub fn udp_in_frame(frame: &[u8], link: LinkType) -> Result<UdpInFrame<'_>, PacketError> {
    let l2 = match link {
        LinkType::Ethernet => ethernet::from_ethernet(frame),
        LinkType::LinuxSll => ethernet::from_linux_sll(frame),
        LinkType::LinuxSll2 => ethernet::from_linux_sll2(frame),
        LinkType::RawIp => {
            let ethertype = match frame.first().map(|b| b >> 4) {
                Some(6) => ethernet::ETHERTYPE_IPV6,
                _ => ETHERTYPE_IPV4,
            };
            Ok(ethernet::LinkFrame {
                ethertype,
                vlan: VlanTags::default(),
                header_len: 0,
                payload: frame,
            })
        }
    }?;
    let ip_at = l2.header_len;
    let ip = if l2.ethertype == ETHERTYPE_IPV4 {
        ip::from_ipv4(l2.payload)
    } else {
        ip::from_ipv6(l2.payload)
    }
    .map_err(|e| e.at(ip_at))?;
    let udp_at = ip_at + ip.header_len;
    if ip.protocol != IPPROTO_UDP {
        return Err(PacketError::NotUdp {
            offset: udp_at,
            protocol: ip.protocol,
        });
    }
    let datagram = udp::from_slice(ip.payload).map_err(|e| e.at(udp_at))?;
    Ok(UdpInFrame {
        vlan: l2.vlan,
        src: SocketAddr::new(ip.src, datagram.src_port),
        dst: SocketAddr::new(ip.dst, datagram.dst_port),
        payload: datagram.payload,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::super::test_support::pcap_frames;
    use super::*;

    const VLAN100: &[u8] = include_bytes!("../../testdata/raw/gen_sip_udp_vlan100.pcap");
    const QINQ: &[u8] = include_bytes!("../../testdata/raw/gen_sip_udp_qinq.pcap");
    const IPV6: &[u8] = include_bytes!("../../testdata/raw/gen_sip_udp_ipv6.pcap");
    const LO: &[u8] = include_bytes!("../../testdata/raw/gen_sip_udp_lo.pcap");
    const IPV4_FRAG: &[u8] = include_bytes!("../../testdata/raw/gen_sip_udp_ipv4_fragmented.pcap");
    const IPV6_FRAG: &[u8] = include_bytes!("../../testdata/raw/gen_sip_udp_ipv6_fragmented.pcap");

    fn decode_all(file: &[u8]) -> Vec<Result<UdpInFrame<'_>, PacketError>> {
        let (link, frames) = pcap_frames(file);
        let link = LinkType::from_pcap(link).unwrap();
        frames.into_iter().map(|f| udp_in_frame(f, link)).collect()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn assert_18_sip(file: &[u8], caller: &str, callee: &str, vlan: VlanTags) {
        let all = decode_all(file);
        assert_eq!(all.len(), 18);
        for (i, d) in all.iter().enumerate() {
            let d = d.as_ref().unwrap();
            assert_eq!(d.vlan, vlan, "frame {i}");
            let first_line = d.payload.split(|b| *b == b'\n').next().unwrap();
            assert!(
                first_line.starts_with(b"SIP/2.0 ") || first_line.ends_with(b" SIP/2.0\r"),
                "frame {i} payload is SIP"
            );
            assert!(
                (d.src == addr(caller) && d.dst == addr(callee))
                    || (d.src == addr(callee) && d.dst == addr(caller)),
                "frame {i}: {} -> {}",
                d.src,
                d.dst
            );
        }
        // The first frame is the INVITE, caller → callee.
        let first = all[0].as_ref().unwrap();
        assert!(first.payload.starts_with(b"INVITE sip:"));
        assert_eq!((first.src, first.dst), (addr(caller), addr(callee)));
    }

    #[test]
    fn corpus_vlan100_gives_18_sip_datagrams() {
        let vlan = VlanTags {
            outer: Some(100),
            inner: None,
        };
        assert_18_sip(VLAN100, "192.0.2.10:5090", "192.0.2.20:5091", vlan);
    }

    #[test]
    fn corpus_qinq_gives_18_sip_datagrams() {
        let vlan = VlanTags {
            outer: Some(200),
            inner: Some(100),
        };
        assert_18_sip(QINQ, "192.0.2.10:5090", "192.0.2.20:5091", vlan);
    }

    #[test]
    fn corpus_ipv6_gives_18_sip_datagrams() {
        assert_18_sip(
            IPV6,
            "[2001:db8::10]:5090",
            "[2001:db8::20]:5091",
            VlanTags::default(),
        );
        assert!(decode_all(IPV6).iter().all(|d| d.unwrap().is_ipv6()));
    }

    #[test]
    fn corpus_loopback_gives_18_sip_datagrams() {
        assert_18_sip(LO, "127.0.0.1:5090", "127.0.0.1:5091", VlanTags::default());
    }

    #[test]
    fn corpus_fragments_are_typed_skips() {
        // 3 INVITEs in 3 fragments each (v4) / 3 Fragment headers each (v6), 15 whole datagrams.
        for (file, ip_header_at) in [(IPV4_FRAG, 14), (IPV6_FRAG, 14 + 40)] {
            let all = decode_all(file);
            assert_eq!(all.len(), 24);
            let fragments = all
                .iter()
                .filter(|d| {
                    **d == Err(PacketError::Fragment {
                        offset: ip_header_at,
                    })
                })
                .count();
            assert_eq!(fragments, 9);
            assert_eq!(all.iter().filter(|d| d.is_ok()).count(), 15);
            assert!(all.iter().all(|d| d.is_ok() || d.unwrap_err().is_skip()));
        }
    }

    #[test]
    fn truncating_a_real_frame_at_every_length_is_truncated() {
        let (_, frames) = pcap_frames(VLAN100);
        let frame = frames[0];
        for cut in 0..frame.len() {
            let err = udp_in_frame(&frame[..cut], LinkType::Ethernet).unwrap_err();
            assert_eq!(err.reason(), "truncated", "cut at {cut}: {err:?}");
            assert!(!err.is_skip());
        }
    }

    #[test]
    fn offsets_count_from_the_frame_start() {
        let (_, frames) = pcap_frames(QINQ);
        let mut frame = frames[0].to_vec();
        // IPv4 protocol byte → TCP: the transport starts after 14 + 8 (tags) + 20 bytes.
        frame[22 + 9] = 6;
        assert_eq!(
            udp_in_frame(&frame, LinkType::Ethernet),
            Err(PacketError::NotUdp {
                offset: 42,
                protocol: 6
            })
        );
        // UDP length below 8.
        frame[22 + 9] = 17;
        frame[42 + 4..42 + 6].copy_from_slice(&3u16.to_be_bytes());
        assert_eq!(
            udp_in_frame(&frame, LinkType::Ethernet),
            Err(PacketError::BadUdpLength {
                offset: 42,
                length: 3
            })
        );
    }
}
