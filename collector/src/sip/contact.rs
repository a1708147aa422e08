//! Contact bodies (RFC 3261 §20.10): `*`, or a list of contacts of which every one must parse,
//! with the acceptance rules of Kamailio's `contact/contact.c:parse_contacts`; the first URI is
//! the `contact_user` / `contact_ip` / `contact_port` source.

use super::name_addr::{BadNameAddr, is_crlf, is_ws, next_flagged};
use super::scan::ByteSet;

/// Bytes that can end a URI in a Contact body (`skip_uri`'s state changes).
static CONTACT_URI_SPECIAL: ByteSet = ByteSet::any_of(b",;\"<>\\");
/// Bytes that end `<uri>` in a Contact on the fast path (`skip_uri` inside brackets).
static CONTACT_ENCLOSED_STOP: ByteSet = ByteSet::any_of(b"<>\"");
/// Contact parameters the fast path hands to the general path (quotes, next contact).
static CONTACT_PARAM_STOP: ByteSet = ByteSet::any_of(b"\",");

/// The first URI of a Contact body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstContact<'a> {
    /// `Contact: *`.
    Star,
    /// The first contact's URI (brackets removed) and its offset in the body.
    Uri(&'a [u8], usize),
}

fn trim_all(s: &[u8], mut a: usize, mut b: usize) -> (usize, usize) {
    while a < b && s.get(a).copied().is_some_and(|c| is_ws(c) || is_crlf(c)) {
        a += 1;
    }
    while b > a
        && s.get(b - 1)
            .copied()
            .is_some_and(|c| is_ws(c) || is_crlf(c))
    {
        b -= 1;
    }
    (a, b)
}

/// `skip_name`: where the URI of the contact starting at `p` begins.
fn contact_uri_start(body: &[u8], p: usize) -> Result<usize, BadNameAddr> {
    let mut last_wsp = None;
    let mut quoted = false;
    let mut i = p;
    while let Some(&c) = body.get(i) {
        if quoted {
            if c == b'"' && body.get(i.wrapping_sub(1)) != Some(&b'\\') {
                quoted = false;
            }
        } else if is_ws(c) {
            last_wsp = Some(i);
        } else if c == b'<' {
            return Ok(i);
        } else if c == b':' || c == b';' {
            return Ok(last_wsp.unwrap_or(p));
        } else if c == b'"' {
            quoted = true;
        }
        i += 1;
    }
    Err(BadNameAddr)
}

/// `skip_uri`: where the URI that starts at `p` ends (`,` or `;` outside `<>` and quotes).
fn contact_uri_end(body: &[u8], p: usize) -> Result<usize, BadNameAddr> {
    #[derive(PartialEq, Eq, Clone, Copy)]
    enum S {
        Plain,
        Quoted,
        Bracket,
        BracketQuoted,
        QuotedEsc,
        BracketQuotedEsc,
    }
    let mut st = S::Plain;
    let mut i = p;
    loop {
        // Other bytes keep the state.
        i = next_flagged(body, i, &CONTACT_URI_SPECIAL);
        let Some(&c) = body.get(i) else { break };
        st = match (c, st) {
            (b',' | b';', S::Plain) => return Ok(i),
            (b'"', S::Plain) => S::Quoted,
            (b'"', S::Quoted) => S::Plain,
            (b'"', S::Bracket) => S::BracketQuoted,
            (b'"', S::BracketQuoted) => S::Bracket,
            (b'"', S::QuotedEsc) => S::Quoted,
            (b'"', S::BracketQuotedEsc) => S::BracketQuoted,
            (b'<', S::Plain) => S::Bracket,
            (b'<', S::Bracket) => return Err(BadNameAddr),
            (b'<', S::QuotedEsc) => S::Quoted,
            (b'<', S::BracketQuotedEsc) => S::BracketQuoted,
            (b'>', S::Plain) => return Err(BadNameAddr),
            (b'>', S::Bracket) => S::Plain,
            (b'>', S::QuotedEsc) => S::Quoted,
            (b'>', S::BracketQuotedEsc) => S::BracketQuoted,
            (b'\\', S::Quoted) => S::QuotedEsc,
            (b'\\', S::BracketQuoted) => S::BracketQuotedEsc,
            (b'\\', S::QuotedEsc) => S::Quoted,
            (b'\\', S::BracketQuotedEsc) => S::BracketQuoted,
            (_, s) => s,
        };
        i += 1;
    }
    if st == S::Plain {
        Ok(i)
    } else {
        Err(BadNameAddr)
    }
}

/// Contact parameters after `;`: skipped up to the next top-level comma. Quoted values may
/// contain commas; an unterminated quote or an empty parameter list is an error.
fn skip_contact_params(body: &[u8], mut i: usize) -> Result<usize, BadNameAddr> {
    let start = i;
    let mut quoted = false;
    while let Some(&c) = body.get(i) {
        if quoted {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                quoted = false;
            }
        } else if c == b'"' {
            quoted = true;
        } else if c == b',' {
            break;
        }
        i += 1;
    }
    if quoted
        || body
            .get(start..i)
            .is_none_or(|p| p.iter().all(|&c| is_ws(c) || is_crlf(c)))
    {
        return Err(BadNameAddr);
    }
    Ok(i.min(body.len()))
}

/// Parses a Contact body (`parse_contact`): `*`, or a list of contacts of which every one must
/// parse; returns the first.
#[inline]
pub(crate) fn parse_contact(body: &[u8]) -> Result<FirstContact<'_>, BadNameAddr> {
    match parse_contact_fast(body) {
        Some(first) => Ok(first),
        None => parse_contact_general(body),
    }
}

/// Fast path for a single `<uri>` contact, optionally followed by `;params` without quotes or
/// commas (so no second contact). `None` means "use [`parse_contact_general`]"; where it
/// answers, the answer is the general path's (tests below compare them).
#[inline]
fn parse_contact_fast(body: &[u8]) -> Option<FirstContact<'_>> {
    if body.first()? != &b'<' {
        return None;
    }
    let gt = next_flagged(body, 1, &CONTACT_ENCLOSED_STOP);
    if body.get(gt)? != &b'>' {
        return None;
    }
    let uri = body.get(1..gt)?;
    let edge_is_space = |c: Option<&u8>| c.is_none_or(|&c| is_ws(c) || is_crlf(c));
    // At least three bytes and no white space to trim (`1 | 2 => Err`, `*` handling).
    if uri.len() < 3 || edge_is_space(uri.first()) || edge_is_space(uri.last()) {
        return None;
    }
    match body.get(gt + 1) {
        None => {}
        Some(b';') => {
            let params = gt + 2;
            if edge_is_space(body.get(params))
                || next_flagged(body, params, &CONTACT_PARAM_STOP) != body.len()
            {
                return None;
            }
        }
        Some(_) => return None,
    }
    Some(FirstContact::Uri(uri, 1))
}

/// `parse_contact` for every form: lists, display names, quoted parts, `*`.
fn parse_contact_general(body: &[u8]) -> Result<FirstContact<'_>, BadNameAddr> {
    /// Kamailio `KSR_MAX_CONTACTS`.
    const MAX_CONTACTS: usize = 256;
    let (mut p, end) = trim_all(body, 0, body.len());
    if p >= end {
        return Err(BadNameAddr);
    }
    if body.get(p) == Some(&b'*') {
        return Ok(FirstContact::Star);
    }
    let mut first = None;
    let mut star_seen = false;
    let mut n = 0;
    loop {
        let uri_s = contact_uri_start(body, p)?;
        let uri_e = contact_uri_end(body, uri_s)?;
        let (mut a, mut b) = trim_all(body, uri_s, uri_e);
        if b >= a + 2 && body.get(a) == Some(&b'<') && body.get(b - 1) == Some(&b'>') {
            a += 1;
            b -= 1;
        }
        let (a, b) = trim_all(body, a, b);
        let uri = body.get(a..b).unwrap_or_default();
        match uri.len() {
            0 => return Err(BadNameAddr),
            1 if uri == b"*" && !star_seen => star_seen = true,
            1 | 2 => return Err(BadNameAddr),
            _ => {}
        }
        if first.is_none() {
            first = Some(FirstContact::Uri(uri, a));
        }
        let mut q = uri_e;
        if q >= body.len() {
            break;
        }
        if body.get(q) == Some(&b';') {
            q = skip_contact_params(body, q + 1)?;
            if q >= body.len() {
                break;
            }
        }
        // A comma: the next contact follows.
        q += 1;
        while body.get(q).copied().is_some_and(|c| is_ws(c) || is_crlf(c)) {
            q += 1;
        }
        n += 1;
        if n > MAX_CONTACTS || q >= body.len() {
            return Err(BadNameAddr);
        }
        p = q;
    }
    first.ok_or(BadNameAddr)
}

/// Panics when the Contact fast path disagrees with its general path on `body`.
pub(crate) fn assert_fast_path_agrees(body: &[u8]) {
    if let Some(fast) = parse_contact_fast(body) {
        assert_eq!(Ok(fast), parse_contact_general(body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTACT_EDGE_CASES: &[&str] = &[
        "<sip:alice@192.0.2.101:5062;transport=udp>;expires=3600",
        "<sip:alice@h>",
        "<sip:alice@h>;",
        "<sip:alice@h>; expires=1",
        "<sip:alice@h>;expires=\"1\"",
        "<sip:alice@h>;expires=1, <sip:b@h>",
        "<sip:alice@h>, <sip:b@h>",
        "<sip:alice@h> ;expires=1",
        "<sip:alice@h>x",
        "< sip:alice@h>",
        "<sip:alice@h >",
        "<ab>",
        "<*>",
        "<a\"b>",
        "<a<b>",
        "<sip:a@h",
        "*",
        "\"A\" <sip:a@h>",
        "sip:a@h;expires=1",
    ];

    #[test]
    fn contact_fast_path_equals_general_path() {
        for c in CONTACT_EDGE_CASES {
            if let Some(fast) = parse_contact_fast(c.as_bytes()) {
                assert_eq!(Ok(fast), parse_contact_general(c.as_bytes()), "{c}");
            }
        }
        assert!(parse_contact_fast(CONTACT_EDGE_CASES[0].as_bytes()).is_some());
    }

    proptest::proptest! {
        #[test]
        fn contact_fast_path_equals_general_path_on_noise(
            uri in "[a-z:@;,=<>* \\\\\"\r\n]{0,12}",
            close in ">?",
            params in "[ ;a-z=,\"\\\\\r\n]{0,12}",
        ) {
            let c = format!("<{uri}{close}{params}");
            if let Some(fast) = parse_contact_fast(c.as_bytes()) {
                proptest::prop_assert_eq!(Ok(fast), parse_contact_general(c.as_bytes()), "{:?}", c);
            }
        }
    }

    #[test]
    fn contacts() {
        let c = |s: &str| match parse_contact(s.as_bytes()) {
            Ok(FirstContact::Uri(u, _)) => String::from_utf8_lossy(u).into_owned(),
            Ok(FirstContact::Star) => "*".into(),
            Err(_) => "ERR".into(),
        };
        assert_eq!(
            c("<sip:alice@192.0.2.4:5060>;expires=3600"),
            "sip:alice@192.0.2.4:5060"
        );
        assert_eq!(
            c(
                "\"Mr. Watson\" <sip:watson@worcester.bell-telephone.com>;q=0.7; expires=3600, \"Mr. Watson\" <mailto:watson@bell-telephone.com> ;q=0.1"
            ),
            "sip:watson@worcester.bell-telephone.com"
        );
        assert_eq!(c("sip:bob@192.0.2.4;expires=60"), "sip:bob@192.0.2.4");
        assert_eq!(c("sip:a@b, sip:c@d"), "sip:a@b");
        assert_eq!(c("*"), "*");
        assert_eq!(c("  *"), "*");
        assert_eq!(c("<sip:a@b>;+sip.instance=\"<urn:uuid:0001>\""), "sip:a@b");
        assert_eq!(c(""), "ERR");
        assert_eq!(c("<sip:a@b"), "ERR");
        assert_eq!(c("sip:a@b,"), "ERR");
        assert_eq!(c("<sip:a@b>;"), "ERR");
        assert_eq!(c("x"), "ERR");
        assert_eq!(c("<s:>"), "ERR");
    }
}
