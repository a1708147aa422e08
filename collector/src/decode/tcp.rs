//! The TCP header (RFC 9293 §3.1). Checksums are not verified (see [`super::udp`]). Stream
//! reassembly lives in `flow/stream.rs`.

use super::error::{PacketError, be16, be32, need};

/// The TCP header without options.
pub const TCP_MIN_HEADER_LEN: usize = 20;

/// Control bits.
pub const FIN: u8 = 0x01;
/// Synchronize.
pub const SYN: u8 = 0x02;
/// Reset.
pub const RST: u8 = 0x04;

/// A TCP segment borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number of the first payload byte (of the SYN when SYN is set).
    pub seq: u32,
    /// Control bits (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
    pub flags: u8,
    /// The segment's data (to the end of the IP payload).
    pub payload: &'a [u8],
}

impl TcpSegment<'_> {
    /// Whether a control bit is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Decodes a TCP header; the payload is the rest of the IP payload.
pub fn from_slice(buf: &[u8]) -> Result<TcpSegment<'_>, PacketError> {
    let header = need(buf, "tcp", 0, TCP_MIN_HEADER_LEN)?;
    let data_offset = header.get(12).map_or(0, |b| b >> 4);
    let header_len = usize::from(data_offset) * 4;
    if header_len < TCP_MIN_HEADER_LEN {
        return Err(PacketError::BadTcpHeader {
            offset: 0,
            data_offset,
        });
    }
    need(buf, "tcp", 0, header_len)?;
    Ok(TcpSegment {
        src_port: be16(header, 0),
        dst_port: be16(header, 2),
        seq: be32(header, 4),
        flags: header.get(13).copied().unwrap_or(0),
        payload: buf.get(header_len..).unwrap_or_default(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn header_with_options() {
        let mut s = vec![
            0x13, 0xc4, 0xc3, 0x50, 0, 0, 1, 0, 0, 0, 0, 0, 0x60, 0x18, 0, 0,
        ];
        s.extend_from_slice(&[0; 8]);
        s.extend_from_slice(b"INVITE");
        let t = from_slice(&s).unwrap();
        assert_eq!((t.src_port, t.dst_port, t.seq), (5060, 50000, 256));
        assert_eq!(t.payload, b"INVITE");
        assert!(!t.has(SYN) && !t.has(FIN));
        for cut in 0..24 {
            assert_eq!(from_slice(&s[..cut]).unwrap_err().reason(), "truncated");
        }
        s[12] = 0x40;
        assert_eq!(
            from_slice(&s),
            Err(PacketError::BadTcpHeader {
                offset: 0,
                data_offset: 4
            })
        );
    }
}
