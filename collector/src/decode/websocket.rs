//! WebSocket framing (RFC 6455 §5.2) for SIP over WebSocket (RFC 7118): the HTTP Upgrade
//! handshake that starts it, and data frames (masked from the client), possibly fragmented
//! into continuation frames.

use super::error::PacketError;

/// Frame opcodes.
pub const OP_CONTINUATION: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close.
pub const OP_CLOSE: u8 = 0x8;

/// One frame header, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The FIN bit: the last frame of a message.
    pub fin: bool,
    /// The opcode.
    pub opcode: u8,
    /// The masking key, when the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Bytes of the header (2 to 14).
    pub header_len: usize,
    /// Payload length.
    pub payload_len: usize,
}

/// Parses the frame header at the start of `buf`: `Ok(None)` when more bytes are needed.
pub fn frame_header(buf: &[u8], max_payload: usize) -> Result<Option<FrameHeader>, PacketError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    let opcode = b0 & 0x0f;
    let fin = b0 & 0x80 != 0;
    if matches!(opcode, 0x3..=0x7 | 0xb..=0xf) {
        return Err(PacketError::BadWebSocketFrame {
            what: "reserved opcode",
        });
    }
    let len7 = b1 & 0x7f;
    let masked = b1 & 0x80 != 0;
    let (payload_len, mut header_len) = match len7 {
        126 => {
            let Some(&[a, b]) = buf.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([a, b])), 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut be = [0u8; 8];
            be.copy_from_slice(bytes);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(PacketError::BadWebSocketFrame {
                    what: "64-bit length with the top bit set",
                });
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode >= OP_CLOSE && (payload_len > 125 || !fin) {
        return Err(PacketError::BadWebSocketFrame {
            what: "control frame too long or fragmented",
        });
    }
    let payload_len = usize::try_from(payload_len).unwrap_or(usize::MAX);
    if payload_len > max_payload {
        return Err(PacketError::ReassemblyOverflow {
            layer: "websocket",
            limit: max_payload,
        });
    }
    let mask = if masked {
        let Some(&[a, b, c, d]) = buf.get(header_len..header_len + 4) else {
            return Ok(None);
        };
        header_len += 4;
        Some([a, b, c, d])
    } else {
        None
    };
    Ok(Some(FrameHeader {
        fin,
        opcode,
        mask,
        header_len,
        payload_len,
    }))
}

/// Appends `payload` to `out`, unmasked with `mask` when there is one (RFC 6455 §5.3).
pub fn unmask_into(payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    match mask {
        None => out.extend_from_slice(payload),
        Some(key) => out.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k)),
    }
}

/// Whether an HTTP header block (request or response) upgrades the connection to WebSocket:
/// an `Upgrade: websocket` header (RFC 6455 §4.1, §4.2.2), case-insensitive.
pub fn is_websocket_upgrade(headers: &[u8]) -> bool {
    headers.split(|b| *b == b'\n').any(|line| {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            return false;
        };
        let name = line.get(..colon).unwrap_or_default().trim_ascii();
        let value = line.get(colon + 1..).unwrap_or_default().trim_ascii();
        name.eq_ignore_ascii_case(b"upgrade") && value.eq_ignore_ascii_case(b"websocket")
    })
}

/// Whether a stream starts like an HTTP request or response (the handshake before WebSocket).
pub fn looks_like_http(buf: &[u8]) -> bool {
    const STARTS: [&[u8]; 2] = [b"GET ", b"HTTP/1."];
    STARTS.iter().any(|s| {
        let n = s.len().min(buf.len());
        buf.get(..n) == s.get(..n) && !buf.is_empty()
    })
}

/// Encodes one frame (tests, fuzzing and benches build traffic with it).
pub fn encode_frame(fin: bool, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | (opcode & 0x0f)];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(m | u8::try_from(n).unwrap_or(0)),
        n @ 126..=0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&u16::try_from(n).unwrap_or(0).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    unmask_into(payload, mask, &mut out);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn upgrade_detection() {
        assert!(is_websocket_upgrade(
            b"GET / HTTP/1.1\r\nHost: x\r\nupgrade:  WebSocket\r\nSec-WebSocket-Protocol: sip\r\n"
        ));
        assert!(!is_websocket_upgrade(b"GET / HTTP/1.1\r\nHost: x\r\n"));
        assert!(looks_like_http(b"GE"));
        assert!(looks_like_http(b"HTTP/1.1 101 Switching"));
        assert!(!looks_like_http(b"INVITE sip:x SIP/2.0"));
    }

    #[test]
    fn reserved_and_bad_control_frames() {
        assert!(frame_header(&[0x83, 0], 100).is_err());
        assert!(frame_header(&[0x89, 126, 0, 200], 1000).is_err());
        assert!(frame_header(&[0x08, 0], 100).is_err()); // fragmented close
        assert_eq!(
            frame_header(&[0x81, 126, 0x10, 0], 100),
            Err(PacketError::ReassemblyOverflow {
                layer: "websocket",
                limit: 100
            })
        );
    }

    proptest! {
        #[test]
        fn encode_then_parse_round_trips(
            fin in any::<bool>(),
            opcode in prop::sample::select(vec![0u8, 1, 2]),
            mask in proptest::option::of(any::<[u8; 4]>()),
            payload in proptest::collection::vec(any::<u8>(), 0..70_000),
        ) {
            let frame = encode_frame(fin, opcode, mask, &payload);
            let h = frame_header(&frame, 1 << 20).unwrap().unwrap();
            prop_assert_eq!((h.fin, h.opcode, h.mask, h.payload_len), (fin, opcode, mask, payload.len()));
            prop_assert_eq!(h.header_len + h.payload_len, frame.len());
            let mut out = Vec::new();
            unmask_into(&frame[h.header_len..], h.mask, &mut out);
            prop_assert_eq!(&out, &payload);
            // Every cut inside the header asks for more bytes.
            for cut in 0..h.header_len {
                prop_assert_eq!(frame_header(&frame[..cut], 1 << 20).unwrap(), None);
            }
        }
    }
}
