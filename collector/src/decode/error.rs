//! Why a captured frame yields no UDP datagram: one error type shared by the link, IP and UDP
//! decoders ([`super::ethernet`], [`super::ip`], [`super::udp`]) and the frame walk
//! ([`super::frame`]). Errors are data: tests assert the exact variant, offsets and lengths.

/// Most stacked VLAN tags the link decoder ([`super::ethernet`]) walks (QinQ has two); one
/// more is [`PacketError::TooManyVlanTags`].
pub const MAX_VLAN_TAGS: usize = 2;

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
    /// More stacked VLAN tags than [`MAX_VLAN_TAGS`].
    #[error("more than {max} vlan tags at offset {offset}", max = MAX_VLAN_TAGS)]
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
    /// An IP protocol the dissector does not follow (ICMP, OSPF, ESP, ...): not ours.
    #[error("ip protocol {protocol} at offset {offset} is not followed")]
    UnsupportedIpProtocol {
        /// Offset of the transport header.
        offset: usize,
        /// The IP protocol / IPv6 next header.
        protocol: u8,
    },
    /// A tunnel or link header variant we do not decode (GRE version 1 / routing, an ERSPAN
    /// frame type other than Ethernet, a PPP protocol other than IP, ...): not ours.
    #[error("{layer}: unsupported value {value:#x} at offset {offset}")]
    UnsupportedEncapsulation {
        /// The header (`"gre"`, `"erspan"`, `"pppoe"`, `"vxlan"`).
        layer: &'static str,
        /// Offset of the header.
        offset: usize,
        /// The value that is not decoded.
        value: u32,
    },
    /// More nested encapsulations (tunnels inside tunnels) than the dissector follows.
    #[error("more than {max} nested encapsulations at offset {offset}")]
    TooManyEncapsulations {
        /// Offset of the header that would be one too many.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// A TCP data offset below 5 words (RFC 9293 §3.1).
    #[error("tcp header at offset {offset}: data offset {data_offset} words")]
    BadTcpHeader {
        /// Offset of the TCP header.
        offset: usize,
        /// The data offset field (32-bit words).
        data_offset: u8,
    },
    /// An SCTP chunk whose length is below its 4-byte header (RFC 9260 §3.2).
    #[error("sctp chunk at offset {offset}: length {length}")]
    BadSctpChunk {
        /// Offset of the chunk.
        offset: usize,
        /// The chunk length field.
        length: u16,
    },
    /// An IP fragment that contradicts the others of its datagram (beyond the end the last
    /// fragment declared, a second different last fragment, a non-last fragment whose length
    /// is not a multiple of 8, a datagram above 65535 bytes): the datagram is discarded.
    #[error("inconsistent ip fragment at offset {offset} (fragment offset {fragment_offset})")]
    BadFragment {
        /// Offset of the IP header (or IPv6 Fragment header) in the frame.
        offset: usize,
        /// The fragment offset in bytes.
        fragment_offset: usize,
    },
    /// A fragment overlapping another one of the same datagram with different bytes: the whole
    /// datagram is discarded (RFC 5722 for IPv6; applied to IPv4 too, see COMPATIBILITY.md).
    #[error("overlapping ip fragment at offset {offset} (fragment offset {fragment_offset})")]
    FragmentOverlap {
        /// Offset of the IP header (or IPv6 Fragment header) in the frame.
        offset: usize,
        /// The fragment offset in bytes.
        fragment_offset: usize,
    },
    /// A datagram whose fragments did not all arrive within the fragment timeout.
    #[error("ip datagram incomplete after the fragment timeout ({received} bytes received)")]
    FragmentTimeout {
        /// Bytes of the datagram that had arrived.
        received: usize,
    },
    /// A reassembly buffer limit was hit (fragments, TCP stream, WebSocket message, SCTP
    /// message): the state is discarded.
    #[error("{layer}: reassembly limit of {limit} bytes reached")]
    ReassemblyOverflow {
        /// What was being reassembled (`"ip_fragments"`, `"tcp"`, `"websocket"`, `"sctp"`).
        layer: &'static str,
        /// The limit that was hit.
        limit: usize,
    },
    /// Bytes of a TCP stream never arrived (the capture missed a segment): the partial message
    /// before the gap is discarded and the stream resynchronises on the next SIP start line.
    #[error("tcp stream gap of {missing} bytes; {discarded} buffered bytes discarded")]
    TcpGap {
        /// Bytes missing in the sequence space.
        missing: u32,
        /// Buffered bytes of the cut message that were discarded.
        discarded: usize,
    },
    /// A TCP stream ended (FIN, RST, idle timeout) with an incomplete message buffered.
    #[error("tcp stream ended ({how}) with {bytes} bytes of an incomplete message")]
    TcpIncomplete {
        /// `"fin"`, `"rst"`, `"timeout"` or `"syn"` (the port pair was reused).
        how: &'static str,
        /// Buffered bytes discarded.
        bytes: usize,
    },
    /// A SIP message on a stream whose header is bigger than the limit, or whose Content-Length
    /// is not a number or exceeds the limit, or a HEP frame on a stream with a bad length: the
    /// stream cannot be framed from here.
    #[error("stream framing: {what}")]
    StreamFraming {
        /// What was wrong (`"header too large"`, `"bad content-length"`, `"body too large"`).
        what: &'static str,
    },
    /// A WebSocket frame we refuse (reserved opcode, control frame above 125 bytes, a
    /// continuation without a start, a 64-bit length with the top bit set).
    #[error("websocket frame: {what}")]
    BadWebSocketFrame {
        /// What was wrong.
        what: &'static str,
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
            PacketError::UnsupportedIpProtocol { .. } => "unsupported_ip_protocol",
            PacketError::UnsupportedEncapsulation { .. } => "unsupported_encapsulation",
            PacketError::TooManyEncapsulations { .. } => "too_many_encapsulations",
            PacketError::BadTcpHeader { .. } => "bad_tcp_header",
            PacketError::BadSctpChunk { .. } => "bad_sctp_chunk",
            PacketError::BadFragment { .. } => "bad_fragment",
            PacketError::FragmentOverlap { .. } => "fragment_overlap",
            PacketError::FragmentTimeout { .. } => "fragment_timeout",
            PacketError::ReassemblyOverflow { .. } => "reassembly_overflow",
            PacketError::TcpGap { .. } => "tcp_gap",
            PacketError::TcpIncomplete { .. } => "tcp_incomplete",
            PacketError::StreamFraming { .. } => "stream_framing",
            PacketError::BadWebSocketFrame { .. } => "bad_websocket_frame",
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
                | PacketError::UnsupportedIpProtocol { .. }
                | PacketError::UnsupportedEncapsulation { .. }
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
            PacketError::UnsupportedIpProtocol { offset, protocol } => {
                PacketError::UnsupportedIpProtocol {
                    offset: shift(offset),
                    protocol,
                }
            }
            PacketError::UnsupportedEncapsulation {
                layer,
                offset,
                value,
            } => PacketError::UnsupportedEncapsulation {
                layer,
                offset: shift(offset),
                value,
            },
            PacketError::TooManyEncapsulations { offset, max } => {
                PacketError::TooManyEncapsulations {
                    offset: shift(offset),
                    max,
                }
            }
            PacketError::BadTcpHeader {
                offset,
                data_offset,
            } => PacketError::BadTcpHeader {
                offset: shift(offset),
                data_offset,
            },
            PacketError::BadSctpChunk { offset, length } => PacketError::BadSctpChunk {
                offset: shift(offset),
                length,
            },
            PacketError::BadFragment {
                offset,
                fragment_offset,
            } => PacketError::BadFragment {
                offset: shift(offset),
                fragment_offset,
            },
            PacketError::FragmentOverlap {
                offset,
                fragment_offset,
            } => PacketError::FragmentOverlap {
                offset: shift(offset),
                fragment_offset,
            },
            // Not tied to a place in one frame.
            other @ (PacketError::FragmentTimeout { .. }
            | PacketError::ReassemblyOverflow { .. }
            | PacketError::TcpGap { .. }
            | PacketError::TcpIncomplete { .. }
            | PacketError::StreamFraming { .. }
            | PacketError::BadWebSocketFrame { .. }) => other,
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

/// Big-endian u32 at `offset` (the caller has checked the bytes are there; 0 otherwise).
pub(crate) fn be32(buf: &[u8], offset: usize) -> u32 {
    match buf.get(offset..offset.saturating_add(4)) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}
