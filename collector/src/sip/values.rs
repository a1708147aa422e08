//! Bodies the core parses eagerly (Via, CSeq, Content-Length) and the digest credentials, with
//! the acceptance rules of Kamailio's `parse_via.c`, `parse_cseq.c`, `parse_content.c` and
//! `digest/digest_parser.c`. Every function works on a trimmed header body, where CR/LF can only
//! come from line folding and therefore counts as white space.

use super::scan::ByteSet;

/// Where the runs of the Via scanner end: the first byte outside the run's class.
///
/// Linear white space (SP, HT, CR, LF).
static LWS: ByteSet = ByteSet::any_of(b" \t\r\n");
static LWS_END: ByteSet = LWS.complement();
/// A parameter name or token value: anything but LWS and `; , = " ( )`.
static PARAM_END: ByteSet = ByteSet::any_of(b" \t\r\n;,=\"()");
/// [`PARAM_END`] for the fast path: every control byte ends the run too (one compare for SP,
/// HT, CR and LF); the fast path then sees a byte it does not expect and hands the body to the
/// general path.
static PARAM_END_FAST: ByteSet = ByteSet::any_of(b";,=\"()").or_space_and_controls();
/// A host name or IPv4 address: `[A-Za-z0-9._-]`.
static HOST_END: ByteSet = ByteSet::any_of(b"._-").or_alphanumeric().complement();
/// A word of the sent-protocol: anything but LWS and `/ ; ,`.
static WORD_END: ByteSet = ByteSet::any_of(b" \t\r\n/;,");
/// [`WORD_END`] for the fast path (control bytes too, as [`PARAM_END_FAST`]).
static WORD_END_FAST: ByteSet = ByteSet::any_of(b"/;,").or_space_and_controls();
/// A port.
static DIGIT_END: ByteSet = ByteSet::any_of(b"").or_digits().complement();

fn is_lws(b: u8) -> bool {
    LWS.contains(b)
}

/// The end of the run that starts at `i` (the first byte at or after `i` in `end`): the scans
/// here are the hot loops of the Via check.
#[inline]
fn run_end(s: &[u8], i: usize, end: &ByteSet) -> usize {
    super::scan::find(s, i, end)
}

fn skip_lws(s: &[u8], i: usize) -> usize {
    run_end(s, i, &LWS_END)
}

/// Marker error: the body does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bad;

/// `sent-protocol`, RFC 3261 §20.42: `SIP / 2.0 / transport` (Kamailio insists on SIP/2.0).
fn sent_protocol(s: &[u8], mut i: usize) -> Result<usize, Bad> {
    let word = |i: usize| {
        let e = run_end(s, i, &WORD_END);
        (s.get(i..e).unwrap_or_default(), e)
    };
    let (name, e) = word(i);
    if !name.eq_ignore_ascii_case(b"SIP") {
        return Err(Bad);
    }
    i = skip_lws(s, e);
    if s.get(i) != Some(&b'/') {
        return Err(Bad);
    }
    let (ver, e) = word(skip_lws(s, i + 1));
    if ver != b"2.0" {
        return Err(Bad);
    }
    i = skip_lws(s, e);
    if s.get(i) != Some(&b'/') {
        return Err(Bad);
    }
    let (transport, e) = word(skip_lws(s, i + 1));
    if transport.is_empty() {
        return Err(Bad);
    }
    Ok(e)
}

/// `sent-by`: host (name, IPv4, or bracketed IPv6) and an optional port.
fn sent_by(s: &[u8], mut i: usize) -> Result<usize, Bad> {
    let start = i;
    if let Some(end) = unbracketed_ipv6(s, i) {
        return Ok(end);
    }
    if s.get(i) == Some(&b'[') {
        let close = s
            .get(i..)
            .and_then(|r| r.iter().position(|&c| c == b']'))
            .ok_or(Bad)?;
        i += close + 1;
    } else {
        i = run_end(s, i, &HOST_END);
    }
    if i == start {
        return Err(Bad);
    }
    let j = skip_lws(s, i);
    if s.get(j) == Some(&b':') {
        let d = skip_lws(s, j + 1);
        let digits = s.get(d..).unwrap_or_default();
        let e = d + digits.iter().take_while(|c| c.is_ascii_digit()).count();
        if e == d || e - d > 5 {
            return Err(Bad);
        }
        return Ok(e);
    }
    Ok(i)
}

/// An IPv6 address written without brackets in a Via sent-by (`fe80::1:5060`, as some phones
/// send it), optionally followed by `:port`: returns where it ends. RFC 3261 requires the
/// brackets and Kamailio rejects the message (bad Via); we accept it (docs/COMPATIBILITY.md).
/// When the last group could be a port or an address group, the longest valid address wins.
fn unbracketed_ipv6(s: &[u8], i: usize) -> Option<usize> {
    let rest = s.get(i..)?;
    let len = rest
        .iter()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.'))
        .count();
    let run = std::str::from_utf8(rest.get(..len)?).ok()?;
    if run.matches(':').count() < 2 {
        return None;
    }
    if run.parse::<std::net::Ipv6Addr>().is_ok() {
        return Some(i + len);
    }
    let (host, port) = run.rsplit_once(':')?;
    let port_ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|c| c.is_ascii_digit());
    (port_ok && host.parse::<std::net::Ipv6Addr>().is_ok()).then_some(i + len)
}

/// A quoted string starting at the `"` at `i`; returns the position after the closing quote.
fn quoted_end(s: &[u8], mut i: usize) -> Result<usize, Bad> {
    i += 1;
    while let Some(&c) = s.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(Bad)
}

/// Validates a whole Via body (every via-parm) and returns the `branch` of the first one.
/// Out of line: inlined into the header loop it costs the loop more registers than the call
/// costs (measured: commit 7fcd9b2).
#[inline(never)]
pub(crate) fn via_branch(s: &[u8]) -> Result<&[u8], Bad> {
    match via_branch_fast(s) {
        Some(branch) => Ok(branch),
        None => via_branch_general(s),
    }
}

/// Fast path for the usual single via-parm written without optional white space:
/// `SIP/2.0/transport SP host[:port](;name[=value])*` with a plain (not bracketed) host and
/// token values. `None` means "use [`via_branch_general`]" — never a parse error; where it
/// answers it gives what the general path gives (tests below compare them).
#[inline]
fn via_branch_fast(s: &[u8]) -> Option<&[u8]> {
    // "SIP/2.0/" is eight bytes: one word compare, the case bit ORed into the three letters.
    const SIP_2_0: u64 = u64::from_le_bytes(*b"sip/2.0/");
    const LETTERS: u64 = u64::from_le_bytes([0x20, 0x20, 0x20, 0, 0, 0, 0, 0]);
    let head = u64::from_le_bytes(s.get(..8)?.try_into().ok()?);
    if head | LETTERS != SIP_2_0 {
        return None;
    }
    let transport_end = run_end(s, 8, &WORD_END_FAST);
    if transport_end == 8 || s.get(transport_end) != Some(&b' ') {
        return None;
    }
    let host_start = transport_end + 1;
    let mut i = run_end(s, host_start, &HOST_END);
    if i == host_start {
        return None;
    }
    if s.get(i) == Some(&b':') {
        let digits = i + 1;
        i = run_end(s, digits, &DIGIT_END);
        if i == digits || i - digits > 5 {
            return None;
        }
    }
    let mut branch: &[u8] = b"";
    while let Some(&c) = s.get(i) {
        if c != b';' {
            return None;
        }
        let name_start = i + 1;
        i = run_end(s, name_start, &PARAM_END_FAST);
        if i == name_start {
            return None;
        }
        let name = s.get(name_start..i)?;
        let mut value: &[u8] = b"";
        if s.get(i) == Some(&b'=') {
            let value_start = i + 1;
            i = run_end(s, value_start, &PARAM_END_FAST);
            if i == value_start {
                return None;
            }
            value = s.get(value_start..i)?;
        }
        if is_branch(name) {
            branch = value;
        }
    }
    Some(branch)
}

/// `name.eq_ignore_ascii_case(b"branch")` as one word compare: OR-ing the case bit (0x20) into
/// a byte gives a lower-case letter only for that letter's two cases, so for an all-letter word
/// it is exact.
#[inline]
fn is_branch(name: &[u8]) -> bool {
    const BRANCH: u64 = u64::from_le_bytes(*b"branch\0\0");
    const CASE: u64 = u64::from_le_bytes(*b"      \0\0");
    let Ok(&[a, b, c, d, e, f]) = <&[u8; 6]>::try_from(name) else {
        return false;
    };
    u64::from_le_bytes([a, b, c, d, e, f, 0, 0]) | CASE == BRANCH
}

/// Panics when the Via fast path disagrees with the general path on `s`.
pub(crate) fn assert_fast_path_agrees(s: &[u8]) {
    if let Some(fast) = via_branch_fast(s) {
        assert_eq!(Ok(fast), via_branch_general(s));
    }
}

/// The whole Via grammar of `parse_via`: white space anywhere it may be, several via-parms,
/// IPv6 references, quoted values and comments.
fn via_branch_general(s: &[u8]) -> Result<&[u8], Bad> {
    let mut branch: &[u8] = b"";
    let mut first = true;
    let mut i = skip_lws(s, 0);
    loop {
        i = sent_protocol(s, i)?;
        let before_host = i;
        i = skip_lws(s, i);
        if i == before_host {
            return Err(Bad);
        }
        i = sent_by(s, i)?;
        i = skip_lws(s, i);
        while s.get(i) == Some(&b';') {
            i = skip_lws(s, i + 1);
            let ns = i;
            i = run_end(s, i, &PARAM_END);
            if i == ns {
                return Err(Bad);
            }
            let name = s.get(ns..i).unwrap_or_default();
            i = skip_lws(s, i);
            let mut value: &[u8] = b"";
            if s.get(i) == Some(&b'=') {
                i = skip_lws(s, i + 1);
                let vs = i;
                if s.get(i) == Some(&b'"') {
                    i = quoted_end(s, i)?;
                    value = s.get(vs + 1..i - 1).unwrap_or_default();
                } else {
                    i = run_end(s, i, &PARAM_END);
                    if i == vs {
                        return Err(Bad);
                    }
                    value = s.get(vs..i).unwrap_or_default();
                }
                i = skip_lws(s, i);
            }
            if first && is_branch(name) {
                branch = value;
            }
        }
        if s.get(i) == Some(&b'(') {
            let close = s
                .get(i..)
                .and_then(|r| r.iter().position(|&c| c == b')'))
                .ok_or(Bad)?;
            i = skip_lws(s, i + close + 1);
        }
        match s.get(i) {
            None => return Ok(branch),
            Some(b',') => {
                i = skip_lws(s, i + 1);
                first = false;
            }
            Some(_) => return Err(Bad),
        }
    }
}

/// CSeq (`parse_cseq`): `number SP method` and nothing but LWS after; returns the method.
/// Kamailio does not check that the number is numeric.
pub(crate) fn cseq_method(s: &[u8]) -> Result<&[u8], Bad> {
    let token_end = |i: usize| run_end(s, i, &LWS);
    let num_end = token_end(0);
    let mut m = num_end;
    while matches!(s.get(m), Some(b' ' | b'\t')) {
        m += 1;
    }
    let m_end = token_end(m);
    if m_end == m || num_end == 0 {
        return Err(Bad);
    }
    if skip_lws(s, m_end) != s.len() {
        return Err(Bad);
    }
    s.get(m..m_end).ok_or(Bad)
}

/// Content-Length (`parse_content_length`) and the leading number of Retry-After: digits, then
/// only SP/HT for Content-Length. Values of `INT_MAX / 10` digits and more are rejected.
pub(crate) fn check_number(s: &[u8], trailing_allowed: bool) -> Result<(), Bad> {
    let d = skip_lws(s, 0);
    let mut e = d;
    let mut value: u64 = 0;
    while let Some(&c) = s.get(e).filter(|c| c.is_ascii_digit()) {
        if value >= u64::from(i32::MAX.unsigned_abs()) / 10 {
            return Err(Bad);
        }
        value = value * 10 + u64::from(c - b'0');
        e += 1;
    }
    if e == d {
        return Err(Bad);
    }
    let rest = s.get(e..).unwrap_or_default();
    if trailing_allowed || rest.iter().all(|&c| c == b' ' || c == b'\t') {
        Ok(())
    } else {
        Err(Bad)
    }
}

/// The user part of the digest `username` (`parse_digest_cred` + `parse_username`), or `None`
/// when the credentials do not parse or are not Digest. `username="sip:alice@example.com"`
/// gives `alice`; a username of 2 characters or fewer is kept whole.
pub(crate) fn digest_user(body: &[u8]) -> Option<&[u8]> {
    let i = skip_lws(body, 0);
    let scheme = body.get(i..i + 6)?;
    if !scheme.eq_ignore_ascii_case(b"digest")
        || !matches!(body.get(i + 6), Some(b' ' | b'\t' | b'\r' | b'\n' | b','))
    {
        return None;
    }
    let mut i = skip_lws(body, i + 7);
    let mut username: Option<&[u8]> = None;
    loop {
        // name up to '='
        let eq = i + body.get(i..)?.iter().position(|&c| c == b'=')?;
        let mut name_end = eq;
        while name_end > i && body.get(name_end - 1).copied().is_some_and(is_lws) {
            name_end -= 1;
        }
        let name = body.get(i..name_end)?;
        let mut v = skip_lws(body, eq + 1);
        if v >= body.len() {
            return None;
        }
        let value;
        if body.get(v) == Some(&b'"') {
            v += 1;
            let close = v + body.get(v..)?.iter().position(|&c| c == b'"')?;
            value = body.get(v..close)?;
            i = close + 1;
        } else {
            let mut e = v;
            while body.get(e).is_some_and(|&c| !is_lws(c) && c != b',') {
                e += 1;
            }
            if e == v {
                return None;
            }
            value = body.get(v..e)?;
            i = e;
        }
        if name.eq_ignore_ascii_case(b"username") {
            username = Some(value);
        }
        match body.get(i..)?.iter().position(|&c| c == b',') {
            Some(comma) => i = skip_lws(body, i + comma + 1),
            None => break,
        }
    }
    let whole = username?;
    if whole.len() <= 2 {
        return Some(whole);
    }
    let mut user = whole;
    if let Some(at) = user.iter().position(|&c| c == b'@') {
        user = user.get(..at)?;
    }
    if let Some(colon) = user.iter().position(|&c| c == b':') {
        user = user.get(colon + 1..)?;
    }
    Some(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_branch_is_eq_ignore_ascii_case() {
        for word in [&b"branch"[..], b"BRANCH", b"BrAnCh"] {
            assert!(is_branch(word));
            for k in 0..word.len() {
                for c in 0..=255u8 {
                    let mut w = word.to_vec();
                    w[k] = c;
                    assert_eq!(is_branch(&w), w.eq_ignore_ascii_case(b"branch"), "{w:?}");
                }
            }
        }
        for word in [&b""[..], b"branc", b"branchx", b"xbranch", b"branch\0"] {
            assert!(!is_branch(word));
        }
    }

    #[test]
    fn via_with_unbracketed_ipv6() {
        assert_eq!(
            via_branch(b"SIP/2.0/UDP fe80:0:0:0:21a:a0ff:fe07:32e0:5060;branch=z9hG4bKk"),
            Ok(&b"z9hG4bKk"[..])
        );
        assert_eq!(
            via_branch(b"SIP/2.0/UDP 2001:db8::1;branch=z9"),
            Ok(&b"z9"[..])
        );
        // Not an address: still rejected.
        assert_eq!(via_branch(b"SIP/2.0/UDP a:b:c:5060;branch=z9"), Err(Bad));
    }

    #[test]
    fn via() {
        assert_eq!(
            via_branch(b"SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds"),
            Ok(&b"z9hG4bK776asdhds"[..])
        );
        assert_eq!(
            via_branch(
                b"SIP/2.0/TCP 10.0.0.1:5060;rport;branch=z9hG4bKa, SIP/2.0/UDP h2;branch=z9hG4bKb"
            ),
            Ok(&b"z9hG4bKa"[..])
        );
        assert_eq!(
            via_branch(b"sip / 2.0 / udp [2001:db8::1]:5060 ; BRANCH = z9 ; received=1.2.3.4"),
            Ok(&b"z9"[..])
        );
        assert_eq!(
            via_branch(b"SIP/2.0/WSS abc.invalid;branch=x (comment)"),
            Ok(&b"x"[..])
        );
        assert_eq!(via_branch(b"SIP/2.0/UDP h\r\n ;branch=f"), Ok(&b"f"[..]));
        assert_eq!(via_branch(b"SIP/2.0/UDP h"), Ok(&b""[..]));
        for bad in [
            &b""[..],
            b"SIP/2.0/UDP",
            b"SIP/3.0/UDP h",
            b"HTTP/2.0/UDP h",
            b"SIP/2.0/UDP h:x",
            b"SIP/2.0/UDP h;",
            b"SIP/2.0/UDP h junk",
            b"SIP/2.0/UDP h,",
            b"SIP/2.0/UDP [::1",
        ] {
            assert!(via_branch(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    const VIA_EDGE_CASES: &[&[u8]] = &[
        b"SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds",
        b"sip/2.0/udp h:5060;rport;branch=z9;received=1.2.3.4",
        b"SIP/2.0/UDP h;BRANCH=x;branch=y",
        b"SIP/2.0/UDP h;branch",
        b"SIP/2.0/UDP h;branch=",
        b"SIP/2.0/UDP h;",
        b"SIP/2.0/UDP h:",
        b"SIP/2.0/UDP h:123456",
        b"SIP/2.0/UDP h:5060x",
        b"SIP/2.0/UDP  h",
        b"SIP/2.0/ h",
        b"SIP/2.0/UDP h ;branch=x",
        b"SIP/2.0/UDP h;branch=x, SIP/2.0/TCP g;branch=y",
        b"SIP/2.0/UDP h;branch=\"q\"",
        b"SIP/2.0/UDP [::1]:5060;branch=x",
        b"SIP/2.0/UDP h_x;branch=x",
        b"SIP/2.0/UDP h;branch=x (c)",
        b"SIP/2.0/UDP h;a=b=c",
        b"SIP/2.1/UDP h",
        b"SIP\r2.0/UDP h",
        b"SIQ/2.0/UDP h",
        b"SIP/2.0/UDP h\r\n ;branch=f",
        b"SIP/2.0/UDP h;branch=x\r",
    ];

    #[test]
    fn via_fast_path_equals_general_path() {
        for v in VIA_EDGE_CASES {
            if let Some(fast) = via_branch_fast(v) {
                assert_eq!(
                    Ok(fast),
                    via_branch_general(v),
                    "{}",
                    String::from_utf8_lossy(v)
                );
            }
        }
        assert!(via_branch_fast(VIA_EDGE_CASES[0]).is_some());
        assert!(via_branch_fast(VIA_EDGE_CASES[1]).is_some());
    }

    proptest::proptest! {
        #[test]
        fn via_fast_path_equals_general_path_on_noise(
            proto in "(SIP|sip|SIp|SIQ)/(2.0|2.1)/[A-Za-z /;]{0,4}",
            sp in "[ \t]{0,2}",
            host in "[a-z0-9.:\\[\\]_-]{0,10}",
            params in "[a-zA-Z0-9;=\" ,()]{0,20}",
        ) {
            let via = format!("{proto}{sp}{host}{params}");
            if let Some(fast) = via_branch_fast(via.as_bytes()) {
                proptest::prop_assert_eq!(Ok(fast), via_branch_general(via.as_bytes()), "{}", via);
            }
        }

        #[test]
        fn via_fast_path_equals_general_path_on_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            let mut via = b"SIP/2.0/UDP ".to_vec();
            via.extend_from_slice(&bytes);
            if let Some(fast) = via_branch_fast(&via) {
                proptest::prop_assert_eq!(Ok(fast), via_branch_general(&via));
            }
        }
    }

    #[test]
    fn cseq() {
        assert_eq!(cseq_method(b"314159 INVITE"), Ok(&b"INVITE"[..]));
        assert_eq!(cseq_method(b"1  BYE  "), Ok(&b"BYE"[..]));
        assert!(cseq_method(b"1").is_err());
        assert!(cseq_method(b"1 INVITE x").is_err());
        assert!(cseq_method(b"").is_err());
    }

    #[test]
    fn numbers() {
        assert!(check_number(b"349", false).is_ok());
        assert!(check_number(b"0  ", false).is_ok());
        assert!(check_number(b"", false).is_err());
        assert!(check_number(b"12a", false).is_err());
        assert!(check_number(b"99999999999", false).is_err());
        assert!(check_number(b"120 (lunch);duration=60", true).is_ok());
    }

    #[test]
    fn digest() {
        let b = br#"Digest username="alice", realm="atlanta.com", nonce="84a4cc6f3082121f32b42a2187831a9e", uri="sip:bob@biloxi.com", response="7587245234b3434cc3412213e5f113a5432""#;
        assert_eq!(digest_user(b), Some(&b"alice"[..]));
        assert_eq!(
            digest_user(br#"Digest realm="r", username="bob@example.com""#),
            Some(&b"bob"[..])
        );
        assert_eq!(
            digest_user(br#"Digest username="sip:carol@example.com""#),
            Some(&b"carol"[..])
        );
        assert_eq!(
            digest_user(br#"digest username=dave,realm=x"#),
            Some(&b"dave"[..])
        );
        assert_eq!(digest_user(br#"Digest username="ab""#), Some(&b"ab"[..]));
        assert_eq!(digest_user(br#"Digest realm="x""#), None);
        assert_eq!(digest_user(br#"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="#), None);
        assert_eq!(digest_user(br#"Digest username="unterminated"#), None);
    }
}
