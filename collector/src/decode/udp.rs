//! Transport layer: the UDP header (RFC 768). The checksum is not verified: a mirror port or a
//! capture on the sending host often sees checksums the NIC has not filled in yet.

use super::error::{PacketError, be16, need};

/// The UDP header.
pub const UDP_HEADER_LEN: usize = 8;

/// A UDP datagram borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The payload, cut at the UDP length field.
    pub payload: &'a [u8],
}

/// Decodes a UDP header. The datagram must be complete: a length field beyond the buffer is
/// [`PacketError::Truncated`] (Kamailio drops any datagram whose length does not match the read).
pub fn from_slice(buf: &[u8]) -> Result<UdpDatagram<'_>, PacketError> {
    let header = need(buf, "udp", 0, UDP_HEADER_LEN)?;
    let length = be16(header, 4);
    if usize::from(length) < UDP_HEADER_LEN {
        return Err(PacketError::BadUdpLength { offset: 0, length });
    }
    let datagram = need(buf, "udp", 0, usize::from(length))?;
    Ok(UdpDatagram {
        src_port: be16(header, 0),
        dst_port: be16(header, 2),
        payload: datagram.get(UDP_HEADER_LEN..).unwrap_or_default(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn udp(length: u16, payload: &[u8]) -> Vec<u8> {
        let mut d = vec![0x13, 0xc4, 0x13, 0xe2];
        d.extend_from_slice(&length.to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(payload);
        d
    }

    #[test]
    fn datagram_cut_at_its_length() {
        let d = udp(11, b"abcdef");
        let u = from_slice(&d).unwrap();
        assert_eq!(
            (u.src_port, u.dst_port, u.payload),
            (5060, 5090, &b"abc"[..])
        );
    }

    #[test]
    fn truncation_at_every_length_is_truncated() {
        let d = udp(14, b"abcdef");
        for cut in 0..d.len() {
            let err = from_slice(&d[..cut]).unwrap_err();
            assert!(
                matches!(err, PacketError::Truncated { layer: "udp", offset: 0, actual, .. } if actual == cut),
                "{cut}: {err:?}"
            );
        }
        assert_eq!(
            from_slice(&udp(7, b"")),
            Err(PacketError::BadUdpLength {
                offset: 0,
                length: 7
            })
        );
    }
}
