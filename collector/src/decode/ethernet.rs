//! Link layer: Ethernet II (IEEE 802.3 with an ethertype), 802.1Q VLAN tags and 802.1ad (QinQ)
//! service tags, and the Linux "cooked" headers (SLL v1, link type 113; SLL2, link type 276)
//! that `tcpdump -i any` writes.
//!
//! Kamailio's mirror mode only sees untagged IPv4 frames (behaviour doc §5: an `ETH_P_IP` packet
//! socket, a fixed 14-byte skip); we walk up to [`MAX_VLAN_TAGS`] tags and hand over IPv4 and
//! IPv6. Note that a Linux packet socket normally receives frames with the VLAN tag already
//! removed by the kernel (it is in the packet's metadata, `PACKET_AUXDATA`); tags appear in the
//! bytes in pcap files, on SPAN ports whose NIC does not strip them, and inside ERSPAN.

use super::error::{PacketError, be16, need};

/// IPv4 (RFC 894).
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// IPv6 (RFC 2464).
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// IEEE 802.1Q customer VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// IEEE 802.1ad service tag (the outer tag of QinQ).
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// The pre-standard QinQ outer tag some switches still send.
pub const ETHERTYPE_QINQ_LEGACY: u16 = 0x9100;

/// Most stacked tags we walk (QinQ has two); defined beside the error that names it.
pub use super::error::MAX_VLAN_TAGS;

/// Ethernet II header: two MAC addresses and the ethertype.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// Linux cooked capture v1 header (`LINKTYPE_LINUX_SLL`).
pub const SLL_HEADER_LEN: usize = 16;
/// Linux cooked capture v2 header (`LINKTYPE_LINUX_SLL2`).
pub const SLL2_HEADER_LEN: usize = 20;
/// One VLAN tag: TCI + the next ethertype.
const VLAN_TAG_LEN: usize = 4;

/// VLAN ids found in the frame, outermost first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VlanTags {
    /// The outer tag's VLAN id (the only one for plain 802.1Q).
    pub outer: Option<u16>,
    /// The inner tag's VLAN id (QinQ).
    pub inner: Option<u16>,
}

/// A link-layer frame: what it carries and where that starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkFrame<'a> {
    /// The ethertype after the VLAN tags.
    pub ethertype: u16,
    /// The VLAN ids walked over.
    pub vlan: VlanTags,
    /// Bytes from the buffer start to the payload.
    pub header_len: usize,
    /// The network-layer bytes (to the end of the buffer: Ethernet padding is trimmed by the IP
    /// decoder, which knows the real length).
    pub payload: &'a [u8],
}

/// Decodes an Ethernet II frame (no FCS, as packet sockets and pcap deliver it) carrying IPv4
/// or IPv6; any other ethertype is [`PacketError::UnsupportedEtherType`].
pub fn from_ethernet(buf: &[u8]) -> Result<LinkFrame<'_>, PacketError> {
    ip_only(from_ethernet_any(buf)?)
}

/// Decodes an Ethernet II header and its VLAN tags, whatever the ethertype (the dissector
/// follows PPPoE and others from there).
pub fn from_ethernet_any(buf: &[u8]) -> Result<LinkFrame<'_>, PacketError> {
    need(buf, "ethernet", 0, ETHERNET_HEADER_LEN)?;
    walk_tags(buf, ETHERNET_HEADER_LEN - 2)
}

/// Decodes a Linux cooked v1 header: packet type, ARPHRD type, address length, 8 address bytes,
/// then the protocol (an ethertype for the link types we care about).
pub fn from_linux_sll(buf: &[u8]) -> Result<LinkFrame<'_>, PacketError> {
    ip_only(from_linux_sll_any(buf)?)
}

/// [`from_linux_sll`] without the IPv4/IPv6 check.
pub fn from_linux_sll_any(buf: &[u8]) -> Result<LinkFrame<'_>, PacketError> {
    need(buf, "linux_sll", 0, SLL_HEADER_LEN)?;
    walk_tags(buf, SLL_HEADER_LEN - 2)
}

/// Decodes a Linux cooked v2 header: the protocol comes first, then reserved bytes, interface
/// index, ARPHRD type, packet type, address length and 8 address bytes.
pub fn from_linux_sll2(buf: &[u8]) -> Result<LinkFrame<'_>, PacketError> {
    ip_only(from_linux_sll2_any(buf)?)
}

/// [`from_linux_sll2`] without the IPv4/IPv6 check.
pub fn from_linux_sll2_any(buf: &[u8]) -> Result<LinkFrame<'_>, PacketError> {
    need(buf, "linux_sll2", 0, SLL2_HEADER_LEN)?;
    let ethertype = be16(buf, 0);
    Ok(LinkFrame {
        ethertype,
        vlan: VlanTags::default(),
        header_len: SLL2_HEADER_LEN,
        payload: buf.get(SLL2_HEADER_LEN..).unwrap_or_default(),
    })
}

/// Reads the ethertype at `type_offset`, then any VLAN tags after it.
fn walk_tags(buf: &[u8], type_offset: usize) -> Result<LinkFrame<'_>, PacketError> {
    let mut ethertype = be16(buf, type_offset);
    let mut next = type_offset + 2;
    let mut vlan = VlanTags::default();
    let mut tags = 0;
    while matches!(
        ethertype,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_LEGACY
    ) {
        if tags == MAX_VLAN_TAGS {
            return Err(PacketError::TooManyVlanTags { offset: next });
        }
        let tag = need(buf, "vlan", next, VLAN_TAG_LEN)?;
        // TCI: 3 bits priority, 1 bit DEI, 12 bits VLAN id (IEEE 802.1Q §9.6).
        let id = be16(tag, 0) & 0x0fff;
        if tags == 0 {
            vlan.outer = Some(id);
        } else {
            vlan.inner = Some(id);
        }
        ethertype = be16(tag, 2);
        next += VLAN_TAG_LEN;
        tags += 1;
    }
    Ok(LinkFrame {
        ethertype,
        vlan,
        header_len: next,
        payload: buf.get(next..).unwrap_or_default(),
    })
}

/// Keeps IPv4 and IPv6 frames; anything else is [`PacketError::UnsupportedEtherType`].
fn ip_only(frame: LinkFrame<'_>) -> Result<LinkFrame<'_>, PacketError> {
    if !matches!(frame.ethertype, ETHERTYPE_IPV4 | ETHERTYPE_IPV6) {
        return Err(PacketError::UnsupportedEtherType {
            offset: frame.header_len - 2,
            ethertype: frame.ethertype,
        });
    }
    Ok(frame)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn eth(ethertype: u16, rest: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(rest);
        f
    }

    #[test]
    fn plain_ipv4() {
        let f = eth(ETHERTYPE_IPV4, &[0x45, 0]);
        let l = from_ethernet(&f).unwrap();
        assert_eq!(l.ethertype, ETHERTYPE_IPV4);
        assert_eq!(l.vlan, VlanTags::default());
        assert_eq!(l.header_len, 14);
        assert_eq!(l.payload, &[0x45, 0]);
    }

    #[test]
    fn one_and_two_tags() {
        // 802.1Q, priority 5, VLAN 100.
        let f = eth(ETHERTYPE_VLAN, &[0xa0, 100, 0x86, 0xdd, 0x60]);
        let l = from_ethernet(&f).unwrap();
        assert_eq!((l.ethertype, l.header_len), (ETHERTYPE_IPV6, 18));
        assert_eq!(l.vlan.outer, Some(100));
        assert_eq!(l.vlan.inner, None);

        let f = eth(
            ETHERTYPE_QINQ,
            &[0, 200, 0x81, 0x00, 0x0f, 0xff, 0x08, 0x00],
        );
        let l = from_ethernet(&f).unwrap();
        assert_eq!((l.ethertype, l.header_len), (ETHERTYPE_IPV4, 22));
        assert_eq!(
            l.vlan,
            VlanTags {
                outer: Some(200),
                inner: Some(4095)
            }
        );
    }

    #[test]
    fn errors_name_layer_and_offset() {
        assert_eq!(
            from_ethernet(&[0; 13]),
            Err(PacketError::Truncated {
                layer: "ethernet",
                offset: 0,
                required: 14,
                actual: 13
            })
        );
        assert_eq!(
            from_ethernet(&eth(ETHERTYPE_VLAN, &[0, 1, 0x08])),
            Err(PacketError::Truncated {
                layer: "vlan",
                offset: 14,
                required: 4,
                actual: 3
            })
        );
        assert_eq!(
            from_ethernet(&eth(0x0806, &[0; 28])),
            Err(PacketError::UnsupportedEtherType {
                offset: 12,
                ethertype: 0x0806
            })
        );
        let triple = eth(
            ETHERTYPE_QINQ,
            &[0, 1, 0x81, 0, 0, 2, 0x81, 0, 0, 3, 0x08, 0],
        );
        assert_eq!(
            from_ethernet(&triple),
            Err(PacketError::TooManyVlanTags { offset: 22 })
        );
    }

    #[test]
    fn linux_cooked() {
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        sll.push(0x45);
        let l = from_linux_sll(&sll).unwrap();
        assert_eq!(
            (l.ethertype, l.header_len, l.payload),
            (ETHERTYPE_IPV4, 16, &[0x45][..])
        );

        let mut sll2 = ETHERTYPE_IPV6.to_be_bytes().to_vec();
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.push(0x60);
        let l = from_linux_sll2(&sll2).unwrap();
        assert_eq!(
            (l.ethertype, l.header_len, l.payload),
            (ETHERTYPE_IPV6, 20, &[0x60][..])
        );
        assert!(matches!(
            from_linux_sll2(&sll2[..19]),
            Err(PacketError::Truncated {
                layer: "linux_sll2",
                ..
            })
        ));
    }
}
