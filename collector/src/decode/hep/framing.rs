//! HEP3 framing on a TCP byte stream (Kamailio `tcp_read.c:tcp_read_hep3`, reference 1.1 C).
//!
//! A frame is a whole HEP3 packet: `"HEP3"`, then a u16 big-endian total length that includes
//! the 6-byte control header. HEP v1/v2 have no length field, so they cannot be framed on TCP.

use super::{HEP3_MAGIC, HepError, be_u16, v3::CONTROL_HEADER_LEN};

/// Length of the HEP3 frame at the start of `buf`.
///
/// * `Ok(Some(n))`: a whole frame of `n` bytes is at the start of `buf`.
/// * `Ok(None)`: need more bytes (not malformed; keep buffering).
/// * `Err(_)`: this stream is broken and should be closed: the magic is not `"HEP3"` (Kamailio's
///   TCP reader accepts only `"HEP3"`, not `"EEP1"`) → [`HepError::BadMagic`]; the declared
///   length is below 6 → [`HepError::BadTotalLength`]; or it exceeds `max_frame` →
///   [`HepError::FrameTooLarge`] (Kamailio: "len >= read buffer size").
///
/// A wrong magic is reported as soon as the bytes received so far differ from `"HEP3"`.
pub fn tcp_frame_len(buf: &[u8], max_frame: usize) -> Result<Option<usize>, HepError> {
    let magic_seen = buf.get(..HEP3_MAGIC.len()).unwrap_or(buf);
    if !HEP3_MAGIC.starts_with(magic_seen) {
        return Err(HepError::BadMagic);
    }
    let Some(declared) = be_u16(buf, HEP3_MAGIC.len()) else {
        return Ok(None);
    };
    let declared = usize::from(declared);
    if declared < CONTROL_HEADER_LEN {
        return Err(HepError::BadTotalLength { declared });
    }
    if declared > max_frame {
        return Err(HepError::FrameTooLarge {
            declared,
            limit: max_frame,
        });
    }
    if buf.len() < declared {
        return Ok(None);
    }
    Ok(Some(declared))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(tcp_frame_len(b"", 100), Ok(None));
        assert_eq!(tcp_frame_len(b"HE", 100), Ok(None));
        assert_eq!(tcp_frame_len(b"HEP3\x00", 100), Ok(None));
        assert_eq!(tcp_frame_len(b"HEP3\x00\x08\x00", 100), Ok(None));
        assert_eq!(tcp_frame_len(b"HEP3\x00\x08\x00\x00HEP3", 100), Ok(Some(8)));
        assert_eq!(tcp_frame_len(b"HEP3\x00\x06", 100), Ok(Some(6)));
    }

    #[test]
    fn broken_streams() {
        assert_eq!(tcp_frame_len(b"X", 100), Err(HepError::BadMagic));
        assert_eq!(tcp_frame_len(b"HEX", 100), Err(HepError::BadMagic));
        assert_eq!(tcp_frame_len(b"EEP1\x00\x08", 100), Err(HepError::BadMagic));
        assert_eq!(
            tcp_frame_len(b"HEP3\x00\x05", 100),
            Err(HepError::BadTotalLength { declared: 5 })
        );
        assert_eq!(
            tcp_frame_len(b"HEP3\x01\x00", 100),
            Err(HepError::FrameTooLarge {
                declared: 256,
                limit: 100
            })
        );
    }
}
