//! `name-addr` / `addr-spec` bodies (From, To, P-Asserted-Identity, P-Preferred-Identity,
//! Remote-Party-ID), with the acceptance rules of Kamailio's `parse_addr_spec.c:parse_addr_spec`
//! (Contact bodies: [`super::contact`]).
//!
//! RFC 3261 §20.10/§25.1: `[display-name] <uri>` or a bare URI; in the bare form the URI ends at
//! the first `;` (header parameters follow) or white space. Kamailio details kept here:
//! * a quoted display name may contain `\`-escapes, `<`, `>`, `;` and `,`;
//! * a token display name needs the `<uri>` after it (`Bob Smith` alone is an error);
//! * after `>` only white space, `;params` (or `,` in lists) may follow;
//! * parameters: `name`, `name=token` or `name="quoted"`; a backslash anywhere in the
//!   parameters is an error, `tag` (any case) gives the tag, the last `tag` wins;
//! * in a From/To (no lists) a comma is only allowed inside a quoted value or a `tag` value.

/// The parts of a name-addr body the columns use (slices of the body).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NameAddr<'a> {
    /// The URI without the angle brackets.
    pub uri: &'a [u8],
    /// Offset of the URI in the parsed body.
    pub uri_offset: usize,
    /// The `tag` parameter value (empty if absent).
    pub tag: &'a [u8],
}

/// Marker error: the body does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadNameAddr;

use super::scan::ByteSet;

/// Bytes with a meaning somewhere in a name-addr.
static SPECIAL: ByteSet = ByteSet::any_of(b" \t\r\n\\<>\";,=");

fn is_special(c: u8) -> bool {
    SPECIAL.contains(c)
}

/// The first position at or after `i` whose byte is flagged in `stop` (or `s.len()`): skips a
/// run of bytes that change nothing.
#[inline]
pub(super) fn next_flagged(s: &[u8], i: usize, stop: &ByteSet) -> usize {
    super::scan::find(s, i, stop)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum A {
    Start,
    DisplayQuoted,
    EDisplayQuoted,
    DisplayToken,
    DisplayTokenSp,
    SUriEnclosed,
    UriEnclosed,
    EUriEnclosed,
    UriOrToken,
    MaybeUriEnd,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum P {
    SName,
    Name,
    SEqual,
    SValue,
    ValueToken,
    ValueQuoted,
    EValue,
}

pub(super) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t')
}

pub(super) fn is_crlf(b: u8) -> bool {
    matches!(b, b'\r' | b'\n')
}

/// Bytes that end a quoted display name on the fast path (`"`, or an escape / fold that the
/// state machine handles).
static QUOTED_STOP: ByteSet = ByteSet::any_of(b"\"\\\r\n");

/// Bytes that end `<uri>` on the fast path: `>`, or what the state machine must judge (white
/// space, escapes, quotes, a second `<`). `;`, `,` and `=` are ordinary inside the brackets.
/// All control bytes stop it too (one compare for SP, HT, CR and LF): the state machine takes
/// the rare URI that holds one.
static ENCLOSED_STOP: ByteSet = ByteSet::any_of(b"\\<>\"").or_space_and_controls();

/// Parses one name-addr at the start of `body`. With `allow_comma` (lists) it stops at a
/// top-level comma and returns its position; otherwise it returns `body.len()`.
#[inline]
pub(crate) fn parse(body: &[u8], allow_comma: bool) -> Result<(NameAddr<'_>, usize), BadNameAddr> {
    match parse_fast(body, allow_comma) {
        Some(parsed) => parsed,
        None => parse_general(body, allow_comma),
    }
}

/// Fast path for `"Display" <uri>…` and `<uri>…` without escapes or folds: the display name and
/// the URI are found with table scans, the parameters go to [`parse_params`] as in the general
/// path. `None` means "use [`parse_general`]"; where it answers, the answer (success or error)
/// is the general path's (tests below compare them).
#[inline]
fn parse_fast(
    body: &[u8],
    allow_comma: bool,
) -> Option<Result<(NameAddr<'_>, usize), BadNameAddr>> {
    let mut i = 0;
    if body.first()? == &b'"' {
        // DisplayQuoted: everything but `"`, `\`, CR and LF is ordinary.
        let close = next_flagged(body, 1, &QUOTED_STOP);
        if body.get(close)? != &b'"' {
            return None;
        }
        i = close + 1;
        while body.get(i).copied().is_some_and(is_ws) {
            i += 1;
        }
    }
    if body.get(i)? != &b'<' {
        return None;
    }
    let uri_start = i + 1;
    if is_special(*body.get(uri_start)?) {
        return None;
    }
    let uri_end = next_flagged(body, uri_start + 1, &ENCLOSED_STOP);
    if body.get(uri_end)? != &b'>' {
        return None;
    }
    i = uri_end + 1;
    while body.get(i).copied().is_some_and(is_ws) {
        i += 1;
    }
    let (tag, stop) = match body.get(i) {
        None => (&b""[..], body.len()),
        Some(b';') => match parse_params(body, i, allow_comma) {
            Ok(parsed) => parsed,
            Err(e) => return Some(Err(e)),
        },
        Some(b',') if allow_comma => (&b""[..], i),
        Some(_) => return None,
    };
    let uri = body.get(uri_start..uri_end)?;
    Some(Ok((
        NameAddr {
            uri,
            uri_offset: uri_start,
            tag,
        },
        stop,
    )))
}

/// Panics when a name-addr or parameter fast path disagrees with its general path on `body`.
pub(crate) fn assert_fast_paths_agree(body: &[u8]) {
    for allow_comma in [false, true] {
        if let Some(fast) = parse_fast(body, allow_comma) {
            assert_eq!(fast, parse_general(body, allow_comma));
        }
    }
    for (at, _) in body.iter().enumerate().filter(|&(_, &c)| c == b';') {
        for allow_comma in [false, true] {
            if let Some(fast) = parse_params_fast(body, at, allow_comma) {
                assert_eq!(Ok(fast), parse_params_general(body, at, allow_comma));
            }
        }
    }
}

/// The `parse_addr_spec` state machine, for every name-addr / addr-spec form.
fn parse_general(body: &[u8], allow_comma: bool) -> Result<(NameAddr<'_>, usize), BadNameAddr> {
    let mut st = A::Start;
    let mut uri_start = 0;
    let mut uri_end = 0;
    let mut token_end = 0;
    let mut i = 0;
    let mut params_at = None;
    let mut stop = body.len();
    while let Some(&c) = body.get(i) {
        // Fast path: ordinary bytes inside a URI or display name change nothing.
        if !is_special(c)
            && matches!(
                st,
                A::UriEnclosed | A::UriOrToken | A::DisplayToken | A::DisplayQuoted
            )
        {
            i += 1;
            continue;
        }
        if is_crlf(c) {
            // Only folding can put CR/LF inside a trimmed body; it is white space in the
            // states where Kamailio accepts it, an error elsewhere.
            if matches!(
                st,
                A::Start | A::DisplayQuoted | A::SUriEnclosed | A::UriEnclosed | A::EUriEnclosed
            ) {
                return Err(BadNameAddr);
            }
        }
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => match st {
                A::UriEnclosed => {
                    uri_end = i;
                    st = A::EUriEnclosed;
                }
                A::UriOrToken => {
                    token_end = i;
                    st = A::MaybeUriEnd;
                }
                A::DisplayToken => {
                    token_end = i;
                    st = A::DisplayTokenSp;
                }
                _ => {}
            },
            b'\\' => {
                if st != A::DisplayQuoted {
                    return Err(BadNameAddr);
                }
                i += 1;
            }
            b'<' => match st {
                A::Start
                | A::EDisplayQuoted
                | A::UriOrToken
                | A::DisplayToken
                | A::DisplayTokenSp
                | A::MaybeUriEnd => st = A::SUriEnclosed,
                A::DisplayQuoted => {}
                _ => return Err(BadNameAddr),
            },
            b'>' => match st {
                A::DisplayQuoted => {}
                A::UriEnclosed => {
                    uri_end = i;
                    st = A::End;
                }
                A::EUriEnclosed => st = A::End,
                _ => return Err(BadNameAddr),
            },
            b'"' => match st {
                A::Start => st = A::DisplayQuoted,
                A::DisplayQuoted => st = A::EDisplayQuoted,
                _ => return Err(BadNameAddr),
            },
            b';' => match st {
                A::DisplayQuoted | A::UriEnclosed => {}
                A::UriOrToken | A::MaybeUriEnd | A::End => {
                    if st == A::UriOrToken {
                        uri_end = i;
                    } else if st == A::MaybeUriEnd {
                        uri_end = token_end;
                    }
                    st = A::End;
                    params_at = Some(i);
                    break;
                }
                _ => return Err(BadNameAddr),
            },
            b',' if allow_comma => match st {
                A::DisplayQuoted | A::UriEnclosed => {}
                A::UriOrToken | A::MaybeUriEnd | A::End => {
                    if st == A::UriOrToken {
                        uri_end = i;
                    } else if st == A::MaybeUriEnd {
                        uri_end = token_end;
                    }
                    st = A::End;
                    stop = i;
                    break;
                }
                _ => return Err(BadNameAddr),
            },
            _ => match st {
                A::Start => {
                    uri_start = i;
                    st = A::UriOrToken;
                }
                A::SUriEnclosed => {
                    uri_start = i;
                    st = A::UriEnclosed;
                }
                A::MaybeUriEnd | A::DisplayTokenSp => st = A::DisplayToken,
                A::DisplayQuoted | A::DisplayToken | A::UriEnclosed | A::UriOrToken => {}
                A::EDisplayQuoted | A::EUriEnclosed | A::End => return Err(BadNameAddr),
            },
        }
        i += 1;
    }
    match st {
        A::UriOrToken => uri_end = body.len().min(i),
        A::MaybeUriEnd => uri_end = token_end,
        A::End => {}
        _ => return Err(BadNameAddr),
    }
    let mut tag: &[u8] = b"";
    if let Some(at) = params_at {
        let (t, s) = parse_params(body, at, allow_comma)?;
        tag = t;
        stop = s;
    }
    let uri = body.get(uri_start..uri_end).ok_or(BadNameAddr)?;
    Ok((
        NameAddr {
            uri,
            uri_offset: uri_start,
            tag,
        },
        stop,
    ))
}

/// `parse_to_param` from the `;` at `at`: returns the tag value and where parsing stopped.
#[inline]
fn parse_params(body: &[u8], at: usize, allow_comma: bool) -> Result<(&[u8], usize), BadNameAddr> {
    match parse_params_fast(body, at, allow_comma) {
        Some(parsed) => Ok(parsed),
        None => parse_params_general(body, at, allow_comma),
    }
}

/// Fast path of [`parse_params`] for `;name=token` and `;name` parameters without white space,
/// quotes or escapes: each name and value is one scan to the next special byte instead of the
/// per-byte state machine. `None` means "use [`parse_params_general`]" (an empty name or value,
/// any other byte after a name or value); where it answers, the answer is the state machine's:
/// every parameter ends at `;`, at a list comma (`allow_comma`) or at the end of the body, and
/// in each of those cases the state machine sets the tag to the value of a `tag` parameter
/// (empty without `=`), so the last `tag` wins.
#[inline]
fn parse_params_fast(body: &[u8], at: usize, allow_comma: bool) -> Option<(&[u8], usize)> {
    let mut tag: &[u8] = b"";
    let mut i = at + 1;
    loop {
        let name_end = next_flagged(body, i, &SPECIAL);
        let name = body.get(i..name_end)?;
        if name.is_empty() {
            return None;
        }
        let mut end = name_end;
        let mut value: &[u8] = b"";
        if body.get(name_end) == Some(&b'=') {
            let value_start = name_end + 1;
            end = next_flagged(body, value_start, &SPECIAL);
            value = body.get(value_start..end)?;
            if value.is_empty() {
                return None;
            }
        }
        if name.eq_ignore_ascii_case(b"tag") {
            tag = value;
        }
        match body.get(end) {
            None => return Some((tag, body.len())),
            Some(b';') => i = end + 1,
            Some(b',') if allow_comma => return Some((tag, end)),
            Some(_) => return None,
        }
    }
}

/// The whole `parse_to_param` state machine.
fn parse_params_general(
    body: &[u8],
    at: usize,
    allow_comma: bool,
) -> Result<(&[u8], usize), BadNameAddr> {
    let mut st = P::SName;
    let (mut name_s, mut name_e, mut val_s) = (at + 1, at + 1, at + 1);
    let mut tag: &[u8] = b"";
    let mut stop = body.len();
    let name_is_tag = |s: usize, e: usize| {
        body.get(s..e)
            .is_some_and(|n| n.eq_ignore_ascii_case(b"tag"))
    };
    let mut i = at + 1;
    while let Some(&c) = body.get(i) {
        if !is_special(c) && matches!(st, P::Name | P::ValueToken | P::ValueQuoted) {
            i += 1;
            continue;
        }
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => match st {
                P::Name => {
                    name_e = i;
                    st = P::SEqual;
                }
                P::ValueToken => {
                    if name_is_tag(name_s, name_e) {
                        tag = body.get(val_s..i).unwrap_or_default();
                    }
                    st = P::EValue;
                }
                P::ValueQuoted if is_crlf(c) => return Err(BadNameAddr),
                _ => {}
            },
            b'\\' => return Err(BadNameAddr),
            b'"' => match st {
                P::SValue => {
                    if i + 1 >= body.len() {
                        return Err(BadNameAddr);
                    }
                    val_s = i + 1;
                    st = P::ValueQuoted;
                }
                P::ValueQuoted => {
                    if name_is_tag(name_s, name_e) {
                        tag = body.get(val_s..i).unwrap_or_default();
                    }
                    st = P::EValue;
                }
                _ => return Err(BadNameAddr),
            },
            b';' => match st {
                P::ValueQuoted => {}
                P::SName => return Err(BadNameAddr),
                _ => {
                    if st == P::Name {
                        name_e = i;
                    }
                    if name_is_tag(name_s, name_e) {
                        match st {
                            P::Name | P::SEqual | P::SValue => tag = b"",
                            P::ValueToken => tag = body.get(val_s..i).unwrap_or_default(),
                            _ => {}
                        }
                    }
                    st = P::SName;
                }
            },
            b'=' => match st {
                P::ValueQuoted => {}
                P::Name | P::SEqual => {
                    if st == P::Name {
                        name_e = i;
                    }
                    st = P::SValue;
                }
                _ => return Err(BadNameAddr),
            },
            b',' if st == P::ValueQuoted => {}
            b',' if allow_comma => match st {
                P::SName => return Err(BadNameAddr),
                _ => {
                    if st == P::Name {
                        name_e = i;
                    }
                    if name_is_tag(name_s, name_e) {
                        match st {
                            P::Name | P::SEqual | P::SValue => tag = b"",
                            P::ValueToken => tag = body.get(val_s..i).unwrap_or_default(),
                            _ => {}
                        }
                    }
                    st = P::EValue;
                    stop = i;
                    break;
                }
            },
            b',' => {
                // Not a list: a comma may only continue a tag value (some UAs send them).
                let in_tag_value =
                    matches!(st, P::SValue | P::ValueToken) && name_is_tag(name_s, name_e);
                if !in_tag_value {
                    return Err(BadNameAddr);
                }
            }
            _ => match st {
                P::Name | P::ValueToken | P::ValueQuoted => {}
                P::SName => {
                    name_s = i;
                    st = P::Name;
                }
                P::SValue => {
                    val_s = i;
                    st = P::ValueToken;
                }
                P::SEqual | P::EValue => return Err(BadNameAddr),
            },
        }
        i += 1;
    }
    if stop == body.len() {
        match st {
            P::SName | P::ValueQuoted => return Err(BadNameAddr),
            P::Name | P::SEqual | P::SValue => {
                if st == P::Name {
                    name_e = body.len();
                }
                if name_is_tag(name_s, name_e) {
                    tag = b"";
                }
            }
            P::ValueToken => {
                if name_is_tag(name_s, name_e) {
                    tag = body.get(val_s..).unwrap_or_default();
                }
            }
            P::EValue => {}
        }
    }
    Ok((tag, stop))
}

/// The first `name-addr` of a comma-separated list (P-Asserted-Identity / P-Preferred-Identity),
/// after checking that every entry parses (`parse_pai_ppi_body`, at most 10 entries read).
pub(crate) fn parse_list_first(body: &[u8]) -> Result<NameAddr<'_>, BadNameAddr> {
    /// Kamailio `NUM_PAI_BODIES`.
    const MAX_BODIES: usize = 10;
    let (first, mut stop) = parse(body, true)?;
    let mut count = 1;
    while body.get(stop) == Some(&b',') && count < MAX_BODIES {
        let mut p = stop + 1;
        while body.get(p).copied().is_some_and(is_ws) {
            p += 1;
        }
        if p >= body.len() {
            return Err(BadNameAddr);
        }
        // A fold right after the comma must be followed by white space.
        if body.get(p) == Some(&b'\n')
            || (body.get(p) == Some(&b'\r') && body.get(p + 1) == Some(&b'\n'))
        {
            p += if body.get(p) == Some(&b'\n') { 1 } else { 2 };
            if !body.get(p).copied().is_some_and(is_ws) {
                return Err(BadNameAddr);
            }
            p += 1;
        }
        let rest = body.get(p..).ok_or(BadNameAddr)?;
        let (_, s) = parse(rest, true)?;
        stop = p + s;
        count += 1;
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn na(s: &str) -> (String, String) {
        let (n, _) = parse(s.as_bytes(), false).unwrap_or_else(|_| panic!("{s} should parse"));
        (
            String::from_utf8_lossy(n.uri).into_owned(),
            String::from_utf8_lossy(n.tag).into_owned(),
        )
    }

    const NAME_ADDR_EDGE_CASES: &[&str] = &[
        "\"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774",
        "<sip:bob@biloxi.com>",
        "<sip:bob@biloxi.com> ;tag=x",
        "<sip:bob@biloxi.com>;tag=x,y",
        "<sip:bob@biloxi.com>;tag=x, <sip:c@d>",
        "<sip:bob@biloxi.com>, <sip:c@d>",
        "<sip:bob@biloxi.com>x",
        "<sip:bob@biloxi.com>;",
        "<sip:bob@biloxi.com>;tag",
        "<sip:bob@biloxi.com>;tag=\"q\"",
        "<sip:bob@biloxi.com>;tag=a\\b",
        "<sip:a;b=c,d@h>",
        "< sip:bob@biloxi.com>",
        "<sip:bob@biloxi.com >",
        "<sip:bob@biloxi.com",
        "<>",
        "<=x>",
        "<sip:a<b>",
        "\"A\\\"B\" <sip:a@b>",
        "\"A, B; C <x>\" <sip:a@b>",
        "\"A\"<sip:a@b>",
        "\"A\"  \t <sip:a@b>",
        "\"A\" x <sip:a@b>",
        "\"A\"",
        "\"A",
        "\"A\r\n B\" <sip:a@b>",
        "<sip:a@b>\r\n ;tag=1",
        "sip:bob@biloxi.com;tag=1",
    ];

    #[test]
    fn name_addr_fast_path_equals_general_path() {
        for na in NAME_ADDR_EDGE_CASES {
            for allow_comma in [false, true] {
                if let Some(fast) = parse_fast(na.as_bytes(), allow_comma) {
                    assert_eq!(fast, parse_general(na.as_bytes(), allow_comma), "{na}");
                }
            }
        }
        assert!(parse_fast(NAME_ADDR_EDGE_CASES[0].as_bytes(), false).is_some());
    }

    #[test]
    fn params_fast_path_answers_the_usual_forms_like_the_general_path() {
        /// Body, `allow_comma`, the fast path's answer (tag, stop).
        type Case = (&'static str, bool, Option<(&'static str, usize)>);
        let cases: [Case; 9] = [
            (";tag=1928301774", false, Some(("1928301774", 15))),
            (";lr;TAG=a;tag=b", false, Some(("b", 15))),
            (";tag=a;tag", false, Some(("", 10))),
            (";x=1,<sip:b@h>", true, Some(("", 4))),
            (";tag=a,", true, Some(("a", 6))),
            (";tag=a,b", false, None),
            (";tag=", false, None),
            (";;tag=a", false, None),
            ("; tag=a", false, None),
        ];
        for (body, allow_comma, expected) in cases {
            let fast = parse_params_fast(body.as_bytes(), 0, allow_comma);
            assert_eq!(
                fast,
                expected.map(|(tag, stop)| (tag.as_bytes(), stop)),
                "{body}"
            );
            if let Some(fast) = fast {
                assert_eq!(
                    Ok(fast),
                    parse_params_general(body.as_bytes(), 0, allow_comma),
                    "{body}"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn name_addr_fast_path_equals_general_path_on_noise(
            display in "(\"[a-zA-Z ,;<>\\\\\r\n]{0,6}\")?[ \t]{0,2}",
            uri in "[a-z:@;,=<> \\\\\"]{0,12}",
            close in ">?",
            params in "[ ;a-z=,\"\\\\\r\n]{0,12}",
            allow_comma in proptest::bool::ANY,
        ) {
            let na = format!("{display}<{uri}{close}{params}");
            if let Some(fast) = parse_fast(na.as_bytes(), allow_comma) {
                proptest::prop_assert_eq!(fast, parse_general(na.as_bytes(), allow_comma), "{:?}", na);
            }
        }

        #[test]
        fn params_fast_path_equals_general_path(
            params in proptest::prop_oneof![
                // noise: white space, quotes, escapes, folds, empty names and values
                "(;[ a-zA-Z=,\"\\\\\r\n]{0,8}){1,4}",
                // the forms the fast path takes, with `tag` in several spellings
                "(;(tag|TaG|t|tags|lr|[a-z]{1,3})(=[a-z0-9.\\-]{0,4})?){1,4}(,.{0,3})?",
            ],
            allow_comma in proptest::bool::ANY,
        ) {
            let body = params.as_bytes();
            if let Some(fast) = parse_params_fast(body, 0, allow_comma) {
                proptest::prop_assert_eq!(
                    Ok(fast),
                    parse_params_general(body, 0, allow_comma),
                    "{:?}",
                    params
                );
            }
        }
    }

    #[test]
    fn forms() {
        assert_eq!(
            na("Bob <sip:bob@biloxi.com>;tag=a6c85cf"),
            ("sip:bob@biloxi.com".into(), "a6c85cf".into())
        );
        assert_eq!(
            na("<sip:bob@biloxi.com>"),
            ("sip:bob@biloxi.com".into(), "".into())
        );
        assert_eq!(
            na("sip:bob@biloxi.com;tag=1928301774"),
            ("sip:bob@biloxi.com".into(), "1928301774".into())
        );
        assert_eq!(
            na("sip:bob@biloxi.com"),
            ("sip:bob@biloxi.com".into(), "".into())
        );
        assert_eq!(
            na("sip:bob@biloxi.com ;tag=x"),
            ("sip:bob@biloxi.com".into(), "x".into())
        );
        assert_eq!(
            na("\"Bob \\\"B\\\" <x>\" <sip:bob@b.com>;TAG=9"),
            ("sip:bob@b.com".into(), "9".into())
        );
        assert_eq!(
            na("Big Bob Smith <sip:bob@b.com;transport=tcp>;x=1;tag=t"),
            ("sip:bob@b.com;transport=tcp".into(), "t".into())
        );
        assert_eq!(
            na("\"Zoë Ünïcode\" <sip:zoe@example.org>;tag=u"),
            ("sip:zoe@example.org".into(), "u".into())
        );
        assert_eq!(
            na("< sip:bob@b.com >;tag=x"),
            ("sip:bob@b.com".into(), "x".into())
        );
        assert_eq!(na("<sip:a@b>;tag=x,y"), ("sip:a@b".into(), "x,y".into()));
        assert_eq!(
            na("<sip:a@b>;tag=\"q;v\""),
            ("sip:a@b".into(), "q;v".into())
        );
        assert_eq!(na("<sip:a@b>;tag="), ("sip:a@b".into(), "".into()));
        assert_eq!(
            na("<sip:a@b>;lr;tag=1;tag=2"),
            ("sip:a@b".into(), "2".into())
        );
        assert_eq!(na("<sip:a@b>\r\n ;tag=f"), ("sip:a@b".into(), "f".into()));
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "Bob Smith",
            "\"Bob <sip:a@b>",
            "<sip:a@b",
            "<sip:a@b> junk",
            "<sip:a@b>;",
            "<sip:a@b>;x=1,y",
            "<sip:a@b>;tag=\"x",
            "<sip:a@b>;x=\\y",
            "<>",
            "<sip:a@b<c>",
        ] {
            assert!(parse(bad.as_bytes(), false).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn lists() {
        let first = parse_list_first(b"\"A\" <sip:a@x>, <tel:+123>").unwrap();
        assert_eq!(first.uri, b"sip:a@x");
        let first = parse_list_first(b"tel:+1555, sip:b@y").unwrap();
        assert_eq!(first.uri, b"tel:+1555");
        assert!(parse_list_first(b"<sip:a@x>, ").is_err());
        assert!(parse_list_first(b"<sip:a@x>, Bad Name").is_err());
    }
}
