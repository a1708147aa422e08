//! Framing SIP messages on a byte stream (RFC 3261 §18.3): a message is its header block up to
//! the empty line, then exactly Content-Length body bytes. On a stream Content-Length is
//! mandatory; a message without it has an empty body (what Kamailio's TCP reader assumes).
//!
//! Also used to find where SIP starts again in a stream picked up mid-way or after a gap.

use crate::decode::error::PacketError;

/// The result of looking at the start of a stream buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipFrame {
    /// A whole message of this many bytes is at the start of the buffer.
    Complete(usize),
    /// The buffer holds the beginning of a message: read more.
    Incomplete,
    /// The buffer does not start with a SIP start line.
    NotSip,
}

/// Longest start line we wait for before deciding a stream is not SIP.
const MAX_START_LINE: usize = 8 * 1024;

/// Frames the SIP message at the start of `buf`. `max_header` bounds the header block,
/// `max_body` the Content-Length; beyond them the stream is [`PacketError::StreamFraming`].
pub fn sip_message_len(
    buf: &[u8],
    max_header: usize,
    max_body: usize,
) -> Result<SipFrame, PacketError> {
    let Some(line_end) = memchr::memchr(b'\n', buf) else {
        if buf.len() > MAX_START_LINE || !plausible_prefix(buf) {
            return Ok(SipFrame::NotSip);
        }
        return Ok(SipFrame::Incomplete);
    };
    if !is_start_line(buf.get(..line_end).unwrap_or_default()) {
        return Ok(SipFrame::NotSip);
    }
    let Some((header_end, headers)) = header_block(buf) else {
        if buf.len() > max_header {
            return Err(PacketError::StreamFraming {
                what: "header too large",
            });
        }
        return Ok(SipFrame::Incomplete);
    };
    if header_end > max_header {
        return Err(PacketError::StreamFraming {
            what: "header too large",
        });
    }
    let body = content_length(headers)?.unwrap_or(0);
    if body > max_body {
        return Err(PacketError::StreamFraming {
            what: "body too large",
        });
    }
    let total = header_end + body;
    Ok(if buf.len() >= total {
        SipFrame::Complete(total)
    } else {
        SipFrame::Incomplete
    })
}

/// Offset of the next line in `buf` (after `from`) that is a SIP start line, if any.
pub fn find_start_line(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let rest = buf.get(at..)?;
        let nl = memchr::memchr(b'\n', rest)?;
        let line_start = at + nl + 1;
        let line = buf.get(line_start..)?;
        let end = memchr::memchr(b'\n', line)?;
        if is_start_line(line.get(..end).unwrap_or_default()) {
            return Some(line_start);
        }
        at = line_start;
    }
}

/// Whether `line` (without its `\n`) is a SIP request line (`METHOD SP URI SP SIP/2.0`) or
/// status line (`SIP/2.0 SP 3DIGIT SP reason`).
pub fn is_start_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(rest) = line.strip_prefix(b"SIP/2.0 ") {
        return rest.len() >= 3 && rest.iter().take(3).all(u8::is_ascii_digit);
    }
    let Some(method_end) = line.iter().position(|b| *b == b' ') else {
        return false;
    };
    let method = line.get(..method_end).unwrap_or_default();
    !method.is_empty()
        && method
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(b))
        && line.len() > method_end + 1 + 8
        && line.ends_with(b" SIP/2.0")
}

/// Whether a partial first line could still become a SIP start line.
fn plausible_prefix(buf: &[u8]) -> bool {
    buf.iter()
        .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\r')
}

/// The end of the header block (after the empty line) and the header bytes, if complete.
fn header_block(buf: &[u8]) -> Option<(usize, &[u8])> {
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n").map(|i| (i + 4, i));
    let lf = memchr::memmem::find(buf, b"\n\n").map(|i| (i + 2, i));
    let (end, headers_end) = match (crlf, lf) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (a, b) => a.or(b)?,
    };
    Some((end, buf.get(..headers_end)?))
}

/// The Content-Length (or compact `l`) value of a header block.
fn content_length(headers: &[u8]) -> Result<Option<usize>, PacketError> {
    for line in headers.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default().trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = line.get(colon + 1..).unwrap_or_default().trim_ascii();
        let text = std::str::from_utf8(value).ok();
        return match text.and_then(|t| t.parse::<usize>().ok()) {
            Some(n) => Ok(Some(n)),
            None => Err(PacketError::StreamFraming {
                what: "bad content-length",
            }),
        };
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: a\r\nl: 4\r\n\r\nv=0\n";

    #[test]
    fn frames_and_prefixes() {
        let r = |b: &[u8]| sip_message_len(b, 4096, 4096).unwrap();
        assert_eq!(r(MSG), SipFrame::Complete(MSG.len()));
        let mut two = MSG.to_vec();
        two.extend_from_slice(b"SIP/2.0 200 OK\r\ncontent-length : 0\r\n\r\n");
        assert_eq!(r(&two), SipFrame::Complete(MSG.len()));
        assert_eq!(
            r(&two[MSG.len()..]),
            SipFrame::Complete(two.len() - MSG.len())
        );
        for cut in 0..MSG.len() {
            assert_eq!(r(&MSG[..cut]), SipFrame::Incomplete, "cut {cut}");
        }
        assert_eq!(r(b"GET / HTTP/1.1\r\n\r\n"), SipFrame::NotSip);
        assert_eq!(r(&[0x80, 0x00]), SipFrame::NotSip);
        assert_eq!(
            sip_message_len(
                b"OPTIONS sip:a SIP/2.0\r\nContent-Length: x\r\n\r\n",
                99,
                99
            ),
            Err(PacketError::StreamFraming {
                what: "bad content-length"
            })
        );
        assert_eq!(
            sip_message_len(MSG, 10, 4096),
            Err(PacketError::StreamFraming {
                what: "header too large"
            })
        );
    }

    #[test]
    fn resync_finds_the_next_start_line() {
        let mut b = b"o=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n".to_vec();
        let at = b.len();
        b.extend_from_slice(MSG);
        assert_eq!(find_start_line(&b, 0), Some(at));
        assert_eq!(find_start_line(b"abc\r\ndef\r\n", 0), None);
    }
}
