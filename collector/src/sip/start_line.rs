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

/// Space and the control bytes: the start-line fast path finds every token end among them
/// with one compare per 16 bytes and then insists that each is exactly the byte it expects.
static SPACE_AND_CONTROLS: super::scan::ByteSet =
    super::scan::ByteSet::any_of(b"").or_space_and_controls();

/// Parses the first line. Returns it and the offset of the first header line.
#[inline(always)]
pub(crate) fn parse(msg: &[u8]) -> Result<(StartLine<'_>, usize), SipError> {
    match request_fast(msg) {
        Some(parsed) => Ok(parsed),
        None => parse_general(msg),
    }
}

/// Fast path of [`parse`] for a request line written the usual way within the first 64 bytes:
/// `Method SP Request-URI SP SIP/2.0 CRLF` at the very start of the message, followed by a
/// header line. The token ends come from one mask of the space and control bytes of those 64
/// bytes; each must be the one byte the usual form has there. `None` means "use
/// [`parse_general`]" (leading junk, a reply, white space runs, another version, a long
/// Request-URI, a short message) — never a different answer (tests below compare them).
///
/// Out of line: inlined, its 64-byte mask made the compiler allocate the header loop that
/// follows worse (measured: commit 7fcd9b2).
#[inline(never)]
fn request_fast(msg: &[u8]) -> Option<(StartLine<'_>, usize)> {
    const SIP_2_0_CR: u64 = u64::from_le_bytes(*b"sip/2.0\r");
    const LETTERS: u64 = u64::from_le_bytes([0x20, 0x20, 0x20, 0, 0, 0, 0, 0]);
    let head = msg.first_chunk::<64>()?;
    let ends = SPACE_AND_CONTROLS.mask64(head);
    // Leading junk (all of it is white space or NUL) gives 0; "SIP/2.0 " starts a reply.
    let method_end = ends.trailing_zeros() as usize;
    if method_end == 0 || method_end > 48 || head.get(method_end) != Some(&b' ') {
        return None;
    }
    if is_sip_version(head) {
        return None;
    }
    let uri_start = method_end + 1;
    let uri_end = uri_start + (ends >> uri_start).trailing_zeros() as usize;
    // The version and its CRLF, and the byte after them, are in the 64 bytes.
    let version = uri_end + 1;
    if uri_end == uri_start || version + 10 > 64 || head.get(uri_end) != Some(&b' ') {
        return None;
    }
    let word = u64::from_le_bytes(*head.get(version..)?.first_chunk::<8>()?);
    // `eat_line` would also step over a CR right after the LF (an empty header block).
    if word | LETTERS != SIP_2_0_CR
        || head.get(version + 8) != Some(&b'\n')
        || head.get(version + 9) == Some(&b'\r')
    {
        return None;
    }
    Some((
        StartLine::Request {
            method: head.get(..method_end)?,
            uri: head.get(uri_start..uri_end)?,
            uri_offset: uri_start,
        },
        version + 9,
    ))
}

/// Panics when the request-line fast path disagrees with the general path on `msg`.
pub(crate) fn assert_fast_path_agrees(msg: &[u8]) {
    if let Some(fast) = request_fast(msg) {
        assert_eq!(Ok(fast), parse_general(msg));
    }
}

/// The whole of `parse_first_line`: leading junk, requests and replies, white space runs,
/// any version text (rejected as not SIP), lines of any length.
fn parse_general(msg: &[u8]) -> Result<(StartLine<'_>, usize), SipError> {
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

    /// Request lines around every rule of the fast path, padded to 64 bytes and more with a
    /// header line.
    #[test]
    fn request_fast_path_agrees_with_the_general_path() {
        let long_uri = format!("sip:{}@example.com", "u".repeat(40));
        let lines = [
            "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n",
            "INVITE sip:bob@biloxi.example.com sip/2.0\r\n",
            "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\r\n",
            "INVITE sip:bob@biloxi.example.com SIP/2.0\n",
            "INVITE sip:bob@biloxi.example.com SIP/2.1\r\n",
            "INVITE sip:bob@biloxi.example.com SIP/2.0 \r\n",
            "INVITE  sip:bob@biloxi.example.com SIP/2.0\r\n",
            "INVITE sip:bob@biloxi.example.com  SIP/2.0\r\n",
            "INVITE\tsip:bob@biloxi.example.com SIP/2.0\r\n",
            "INV\x01TE sip:bob@b\x02 SIP/2.0\r\n",
            " INVITE sip:bob@biloxi.example.com SIP/2.0\r\n",
            "\0INVITE sip:b@b SIP/2.0\r\n",
            "SIP/2.0 sip:bob@biloxi.example.com SIP/2.0\r\n",
            "SIP/2.0 200 OK\r\n",
            "SIP/2.0x sip:b@b SIP/2.0\r\n",
            "I sip:b SIP/2.0\r\n",
            &format!("INVITE {long_uri} SIP/2.0\r\n"),
        ];
        let mut checked = 0;
        for line in lines {
            for pad in [0, 1, 8, 40] {
                let msg = format!("{line}Via: SIP/2.0/UDP h{}\r\n", "x".repeat(pad));
                let msg = msg.as_bytes();
                assert_fast_path_agrees(msg);
                // Every cut of the message too (the fast path needs 64 bytes).
                for cut in 0..msg.len() {
                    assert_fast_path_agrees(&msg[..cut]);
                }
                checked += usize::from(request_fast(msg).is_some());
            }
        }
        // The usual forms do take the fast path.
        assert_eq!(checked, 7);
        let (fast, next) = request_fast(
            b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/UDP host.example.com\r\n",
        )
        .unwrap();
        assert!(matches!(
            fast,
            StartLine::Request {
                method: b"INVITE",
                uri: b"sip:bob@biloxi.example.com",
                uri_offset: 7
            }
        ));
        assert_eq!(next, 43);
    }

    proptest::proptest! {
        #[test]
        fn request_fast_path_never_disagrees(
            method in "[A-Z]{1,9}|SIP/2\\.0|[ \\t]?[A-Z\\x00-\\x20]{1,4}",
            sep1 in "[ \\t]{1,2}",
            uri in "[!-~]{0,50}",
            sep2 in "[ \\t\\r\\n]{1,2}",
            version in "(SIP|sip|SIp)/2\\.[01]|[!-~]{0,9}",
            eol in "\\r\\n|\\n|\\r|\\r\\n\\r\\n| \\r\\n",
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            let msg = [format!("{method}{sep1}{uri}{sep2}{version}{eol}").as_bytes(), &tail].concat();
            assert_fast_path_agrees(&msg);
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
