//! Why a captured frame yields no UDP datagram: one error type shared by the link, IP and UDP
//! decoders ([`super::ethernet`], [`super::ip`], [`super::udp`]) and the frame walk
//! ([`super::frame`]). Errors are data: tests assert the exact variant, offsets and lengths.

/// Why a frame was not decoded down to a UDP payload.
///
/// Offsets count from the start of the buffer the failing decoder was given; the frame walk
/// ([`super::frame::udp_in_frame`]) shifts them with [`PacketError::at`] so they count from the
/// start of the captured frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The buffer ends before a header (or the length a header declares): `required` bytes are
    /// needed from `offset`, only `actual` are there. A snaplen-cut frame ends up here.
    #[error("{layer}: truncated at offset {offset}: need {required} bytes, have {actual}")]
    Truncated {
        /// The structure that was cut (`"ethernet"`, `"vlan"`, `"ipv4"`, `"udp"`, ...).
        layer: &'static str,
        /// Offset of that structure.
        offset: usize,
        /// Bytes the structure needs from `offset`.
        required: usize,
        /// Bytes available from `offset`.
        actual: usize,
    },
    /// An ethertype other than IPv4, IPv6 or a VLAN tag (ARP, LLDP, MPLS, ...): not ours.
    #[error("unsupported ethertype {ethertype:#06x} at offset {offset}")]
    UnsupportedEtherType {
        /// Offset of the ethertype field.
        offset: usize,
        /// The value.
        ethertype: u16,
    },
    /// More stacked VLAN tags than [`super::ethernet::MAX_VLAN_TAGS`].
    #[error("more than {max} vlan tags at offset {offset}", max = super::ethernet::MAX_VLAN_TAGS)]
    TooManyVlanTags {
        /// Offset of the first tag beyond the limit.
        offset: usize,
    },
    /// The IP version nibble does not match the ethertype.
    #[error("ip version {version} at offset {offset}, expected {expected}")]
    BadIpVersion {
        /// Offset of the IP header.
        offset: usize,
        /// The version nibble found.
        version: u8,
        /// The version the ethertype announced.
        expected: u8,
    },
    /// IPv4 IHL below 5, or a total length shorter than the header (RFC 791 §3.1).
    #[error("ipv4 header at offset {offset}: ihl {ihl}, total length {total_length}")]
    BadIpv4Length {
        /// Offset of the IPv4 header.
        offset: usize,
        /// Header length in 32-bit words.
        ihl: u8,
        /// The total length field.
        total_length: u16,
    },
    /// An IPv4 or IPv6 fragment. Not malformed: we do not reassemble (yet), so it is skipped
    /// with its own reason, as Kamailio's raw modes do implicitly.
    #[error("ip fragment at offset {offset}")]
    Fragment {
        /// Offset of the IPv4 header or of the IPv6 Fragment extension header.
        offset: usize,
    },
    /// The transport is not UDP (TCP, ICMP, an IPv6 "no next header", ...).
    #[error("ip protocol {protocol} at offset {offset} is not udp")]
    NotUdp {
        /// Offset of the transport header.
        offset: usize,
        /// The IP protocol / IPv6 next header.
        protocol: u8,
    },
    /// The UDP length field is below 8 (RFC 768) or zero (an IPv6 jumbogram, RFC 2675).
    #[error("udp length {length} at offset {offset}")]
    BadUdpLength {
        /// Offset of the UDP header.
        offset: usize,
        /// The length field.
        length: u16,
    },
}

impl PacketError {
    /// A low-cardinality label for drop-reason metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            PacketError::Truncated { .. } => "truncated",
            PacketError::UnsupportedEtherType { .. } => "unsupported_ethertype",
            PacketError::TooManyVlanTags { .. } => "too_many_vlan_tags",
            PacketError::BadIpVersion { .. } => "bad_ip_version",
            PacketError::BadIpv4Length { .. } => "bad_ipv4_length",
            PacketError::Fragment { .. } => "fragment",
            PacketError::NotUdp { .. } => "not_udp",
            PacketError::BadUdpLength { .. } => "bad_udp_length",
        }
    }

    /// Whether this is ordinary traffic we do not handle (another ethertype or transport, a
    /// fragment) rather than a broken or cut frame. Callers count both, but only log the latter.
    pub fn is_skip(&self) -> bool {
        matches!(
            self,
            PacketError::UnsupportedEtherType { .. }
                | PacketError::Fragment { .. }
                | PacketError::NotUdp { .. }
        )
    }

    /// The same error with its offset moved by `base` (the position of the decoder's input in
    /// the frame).
    #[must_use]
    pub fn at(self, base: usize) -> Self {
        let shift = |offset: usize| offset.saturating_add(base);
        match self {
            PacketError::Truncated {
                layer,
                offset,
                required,
                actual,
            } => PacketError::Truncated {
                layer,
                offset: shift(offset),
                required,
                actual,
            },
            PacketError::UnsupportedEtherType { offset, ethertype } => {
                PacketError::UnsupportedEtherType {
                    offset: shift(offset),
                    ethertype,
                }
            }
            PacketError::TooManyVlanTags { offset } => PacketError::TooManyVlanTags {
                offset: shift(offset),
            },
            PacketError::BadIpVersion {
                offset,
                version,
                expected,
            } => PacketError::BadIpVersion {
                offset: shift(offset),
                version,
                expected,
            },
            PacketError::BadIpv4Length {
                offset,
                ihl,
                total_length,
            } => PacketError::BadIpv4Length {
                offset: shift(offset),
                ihl,
                total_length,
            },
            PacketError::Fragment { offset } => PacketError::Fragment {
                offset: shift(offset),
            },
            PacketError::NotUdp { offset, protocol } => PacketError::NotUdp {
                offset: shift(offset),
                protocol,
            },
            PacketError::BadUdpLength { offset, length } => PacketError::BadUdpLength {
                offset: shift(offset),
                length,
            },
        }
    }
}

/// `buf[offset..offset + len]`, or the [`PacketError::Truncated`] that says what was missing.
pub(crate) fn need<'a>(
    buf: &'a [u8],
    layer: &'static str,
    offset: usize,
    len: usize,
) -> Result<&'a [u8], PacketError> {
    offset
        .checked_add(len)
        .and_then(|end| buf.get(offset..end))
        .ok_or(PacketError::Truncated {
            layer,
            offset,
            required: len,
            actual: buf.len().saturating_sub(offset),
        })
}

/// Big-endian u16 at `offset` (the caller has checked the bytes are there; 0 otherwise).
pub(crate) fn be16(buf: &[u8], offset: usize) -> u16 {
    match buf.get(offset..offset.saturating_add(2)) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}
