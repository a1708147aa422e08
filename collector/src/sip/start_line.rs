//! The SIP start line, as Kamailio's `parse_fline.c:parse_first_line` splits it.
//!
//! Grammar (RFC 3261 §7.1/§7.2): `Method SP Request-URI SP SIP-Version CRLF` or
//! `SIP-Version SP Status-Code SP Reason-Phrase CRLF`. Kamailio is stricter and laxer in places we
//! reproduce: the status code must be exactly three digits followed by white space (so a reply
//! without a reason phrase is rejected), and the message must continue after the first line.

use super::SipError;

/// Kamailio drops messages of 16 bytes or less (after leading white space).
const MIN_MESSAGE_LEN: usize = 17;

/// The parsed first line; all slices borrow from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartLine<'a> {
    /// `METHOD SP uri SP SIP/2.0`.
    Request {
        /// The method token.
        method: &'a [u8],
        /// The raw Request-URI.
        uri: &'a [u8],
        /// Offset of the Request-URI in the message (for errors).
        uri_offset: usize,
    },
    /// `SIP/2.0 SP code SP reason`.
    Reply {
        /// The three-digit status code text.
        status: &'a [u8],
        /// The reason phrase (everything up to the line end, may be empty).
        reason: &'a [u8],
    },
}

/// `parse_msg` skips these before the first line.
fn is_leading_junk(b: u8) -> bool {
    matches!(b, b'\n' | b'\r' | 0 | b'\t' | b' ')
}

/// Bytes that end a token on the start line.
static TOKEN_END: super::scan::ByteSet = super::scan::ByteSet::any_of(b" \t\n\r");

/// `eat_token_end`: stops at SP, HT, CR or LF.
fn token_end(msg: &[u8], p: usize) -> usize {
    super::scan::find(msg, p, &TOKEN_END)
}

/// `eat_space_end`: skips SP and HT.
fn space_end(msg: &[u8], mut p: usize) -> usize {
    while matches!(msg.get(p), Some(b' ' | b'\t')) {
        p += 1;
    }
    p
}

/// Kamailio `eat_line`: the position after the first LF (and after a CR that follows it), or
/// `None` when the line is the last thing in the buffer.
fn next_line(msg: &[u8], p: usize) -> Option<usize> {
    let rest = msg.get(p..)?;
    let lf = p + rest.iter().position(|&b| b == b'\n')?;
    let mut nl = lf;
    if nl + 1 < msg.len() {
        nl += 1;
    }
    if nl + 1 < msg.len() && msg.get(nl) == Some(&b'\r') {
        nl += 1;
    }
    (nl < msg.len()).then_some(nl)
}

/// True for `SIP/2.0` in any letter case (Kamailio compares case-insensitively).
fn is_sip_version(v: &[u8]) -> bool {
    // One word compare: the case bit is ORed into the three letters only.
    const SIP_2_0: u64 = u64::from_le_bytes(*b"sip/2.0\0");
    const LETTERS: u64 = u64::from_le_bytes([0x20, 0x20, 0x20, 0, 0, 0, 0, 0]);
    const SEVEN_BYTES: u64 = 0x00ff_ffff_ffff_ffff;
    let Some(head) = v.first_chunk::<7>() else {
        return false;
    };
    let mut word = [0u8; 8];
    word[..7].copy_from_slice(head);
    (u64::from_le_bytes(word) & SEVEN_BYTES) | LETTERS == SIP_2_0
}

/// Parses the first line. Returns it and the offset of the first header line.
#[inline(always)]
pub(crate) fn parse(msg: &[u8]) -> Result<(StartLine<'_>, usize), SipError> {
    let start = msg
        .iter()
        .position(|&b| !is_leading_junk(b))
        .unwrap_or(msg.len());
    let len = msg.len() - start;
    if len < MIN_MESSAGE_LEN {
        return Err(SipError::TooShort { len });
    }
    let bad = SipError::BadStartLine { offset: start };
    let is_reply =
        msg.get(start..start + 7).is_some_and(is_sip_version) && msg.get(start + 7) == Some(&b' ');

    let second = if is_reply {
        start + 8
    } else {
        let method_end = token_end(msg, start);
        if method_end == start || msg.get(method_end) != Some(&b' ') {
            return Err(bad);
        }
        method_end + 1
    };
    let second_end = token_end(msg, second);
    if second_end >= msg.len() {
        return Err(bad);
    }
    let third = space_end(msg, second_end);
    if third == second_end {
        return Err(bad);
    }
    let second_tok = msg.get(second..second_end).unwrap_or_default();

    if is_reply {
        if second_tok.len() != 3 || !second_tok.iter().all(u8::is_ascii_digit) {
            return Err(bad);
        }
        let mut reason_end = third;
        while let Some(&b) = msg.get(reason_end) {
            if b == b'\r' || b == b'\n' {
                break;
            }
            reason_end += 1;
        }
        if reason_end >= msg.len() {
            return Err(bad);
        }
        let next = next_line(msg, reason_end).ok_or(bad)?;
        let reason = msg.get(third..reason_end).unwrap_or_default();
        return Ok((
            StartLine::Reply {
                status: second_tok,
                reason,
            },
            next,
        ));
    }

    let version_end = token_end(msg, third);
    if version_end == third || version_end >= msg.len() {
        return Err(bad);
    }
    let after = space_end(msg, version_end);
    if !matches!(msg.get(after), Some(b'\r' | b'\n')) {
        return Err(bad);
    }
    let next = next_line(msg, version_end).ok_or(bad)?;
    let version = msg.get(third..version_end).unwrap_or_default();
    if !is_sip_version(version) {
        return Err(SipError::NotSip { offset: third });
    }
    let method = msg.get(start..second - 1).unwrap_or_default();
    Ok((
        StartLine::Request {
            method,
            uri: second_tok,
            uri_offset: second,
        },
        next,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line() {
        let m = b"INVITE sip:bob@biloxi.com SIP/2.0\r\nVia: x\r\n";
        let (sl, next) = parse(m).unwrap();
        assert_eq!(
            sl,
            StartLine::Request {
                method: b"INVITE",
                uri: b"sip:bob@biloxi.com",
                uri_offset: 7
            }
        );
        assert_eq!(&m[next..next + 3], b"Via");
    }

    #[test]
    fn reply_line_keeps_reason_with_spaces() {
        let m = b"SIP/2.0 486 Busy Here\r\nVia: x\r\n";
        let (sl, _) = parse(m).unwrap();
        assert_eq!(
            sl,
            StartLine::Reply {
                status: b"486",
                reason: b"Busy Here"
            }
        );
    }

    #[test]
    fn lowercase_version_is_a_reply() {
        let (sl, _) = parse(b"sip/2.0 200 OK\r\nVia: x\r\n").unwrap();
        assert!(matches!(sl, StartLine::Reply { status: b"200", .. }));
    }

    #[test]
    fn reply_without_reason_phrase_is_rejected() {
        assert_eq!(
            parse(b"SIP/2.0 200\r\nVia: SIP/2.0/UDP x\r\n"),
            Err(SipError::BadStartLine { offset: 0 })
        );
    }

    #[test]
    fn leading_crlf_is_skipped() {
        let (sl, _) = parse(b"\r\n\r\nBYE sip:a@b SIP/2.0\r\nVia: x\r\n").unwrap();
        assert!(matches!(sl, StartLine::Request { method: b"BYE", .. }));
    }

    #[test]
    fn status_must_be_three_digits() {
        assert!(parse(b"SIP/2.0 20 OK\r\nVia: x\r\n").is_err());
        assert!(parse(b"SIP/2.0 2x0 OK\r\nVia: x\r\n").is_err());
    }

    #[test]
    fn http_request_is_not_sip() {
        assert_eq!(
            parse(b"GET /index.html HTTP/1.1\r\nHost: x\r\n"),
            Err(SipError::NotSip { offset: 16 })
        );
    }

    #[test]
    fn sip_version_ignores_letter_case_only() {
        for (v, ok) in [
            (&b"SIP/2.0"[..], true),
            (b"sip/2.0", true),
            (b"sIp/2.0 x", true),
            (b"SIP/2.1", false),
            (b"SIP\x0f2.0", false),
            (b"SIP/2\x0e0", false),
            (b"\x13IP/2.0", false),
            (b"SIP/2.", false),
        ] {
            assert_eq!(is_sip_version(v), ok, "{}", String::from_utf8_lossy(v));
            assert_eq!(
                is_sip_version(v),
                v.get(..7)
                    .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/2.0"))
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn sip_version_equals_eq_ignore_ascii_case(v in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..9)) {
            proptest::prop_assert_eq!(
                is_sip_version(&v),
                v.get(..7).is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/2.0"))
            );
        }
    }

    #[test]
    fn too_short_and_single_line() {
        assert_eq!(
            parse(b"BYE sip:a SIP/2"),
            Err(SipError::TooShort { len: 15 })
        );
        // Kamailio's eat_line stops on a final LF, so a lone first line still parses.
        assert!(parse(b"BYE sip:a@b SIP/2.0\r\n").is_ok());
        assert!(parse(b"BYE sip:a@b SIP/2.0").is_err());
    }
}
