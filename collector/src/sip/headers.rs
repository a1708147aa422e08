//! Header-line splitting, as Kamailio's `msg_parser.c:get_hdr_field` and
//! `parse_hname2.c:parse_sip_header_name` do it.
//!
//! * A name is one character of `[0-9A-Za-z-._+~]` followed by more of them; only SP/HT may
//!   separate it from the colon (RFC 3261 §7.3.1 allows LWS there).
//! * The body starts after LWS, including a fold (`CRLF` + SP/HT) right after the colon.
//! * The body runs to the LF that is not followed by SP/HT (folded lines stay in the body, raw,
//!   as Kamailio keeps them); then trailing CR/LF/NUL are cut (`trim_r`). Trailing spaces stay.
//! * An empty line (a line starting with CR or LF) ends the header block. Reaching the end of the
//!   buffer also ends it without error; a header line without any LF is an error.

/// The headers whose first occurrence the extraction needs, recognised by full or compact name
/// (case-insensitive), plus the ones the core parses eagerly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HdrKind {
    /// `Via` / `v`.
    Via,
    /// `CSeq`.
    CSeq,
    /// `From` / `f`.
    From,
    /// `To` / `t`.
    To,
    /// `Call-ID` / `i`.
    CallId,
    /// `Contact` / `m`.
    Contact,
    /// `Content-Type` / `c`.
    ContentType,
    /// `Content-Length` / `l`.
    ContentLength,
    /// `User-Agent`.
    UserAgent,
    /// `Diversion`.
    Diversion,
    /// `Proxy-Authorization`.
    ProxyAuth,
    /// `Authorization`.
    Authorization,
    /// `P-Asserted-Identity`.
    Pai,
    /// `P-Preferred-Identity`.
    Ppi,
    /// `Remote-Party-ID`.
    Rpid,
    /// `Max-Forwards`.
    MaxForwards,
    /// `Retry-After`.
    RetryAfter,
    /// Any other header (including the compact forms of headers we do not need).
    Other,
}

impl HdrKind {
    /// Classifies a header name like Kamailio's `_ksr_hdr_map` (case-insensitive, exact length):
    /// [`compact`] or [`candidate`] picks the one name it can be, which is then compared.
    pub(crate) fn of(name: &[u8]) -> Self {
        let Some(&first) = name.first() else {
            return Self::Other;
        };
        let first = first | CASE_BIT;
        if name.len() == 1 {
            return compact(first).unwrap_or(Self::Other);
        }
        let second = name.get(1).map_or(0, |&b| b | CASE_BIT);
        candidate(name.len(), first, second)
            .filter(|known| eq_folded(name, known.name))
            .map_or(Self::Other, |known| known.kind)
    }
}

/// The bit that separates ASCII upper- and lower-case letters.
const CASE_BIT: u8 = 0x20;

use super::lines::{COLON, LF, NAME_CHARS};

/// One header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    /// The name as written.
    pub name: &'a [u8],
    /// What the name means.
    pub kind: HdrKind,
    /// The body: leading LWS skipped, trailing CR/LF cut, folds kept.
    pub body: &'a [u8],
    /// Offset of the name in the message.
    pub offset: usize,
    /// Offset of the body in the message.
    pub body_offset: usize,
}

/// Why a header line was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderFault {
    /// Bad name characters, or no colon after the name.
    BadName,
    /// Nothing at all after the colon (end of buffer).
    Empty,
    /// No LF ends the line: the message is cut.
    NoEol,
}

/// The outcome of reading at one position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next<'a> {
    /// A header and the position of the next line.
    Header(Header<'a>, usize),
    /// The empty line (or the end of the buffer): no more headers.
    End,
}

fn is_name_char(b: u8) -> bool {
    NAME_CHARS.contains(b)
}

fn is_sp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `eat_lws_end`: SP/HT, and line folds (`LF SP` / `CR LF SP`).
pub(crate) fn skip_lws(msg: &[u8], mut p: usize) -> usize {
    loop {
        match msg.get(p) {
            Some(&b) if is_sp(b) => p += 1,
            Some(b'\n') if msg.get(p + 1).copied().is_some_and(is_sp) => p += 2,
            Some(b'\r')
                if msg.get(p + 1) == Some(&b'\n') && msg.get(p + 2).copied().is_some_and(is_sp) =>
            {
                p += 3
            }
            _ => return p,
        }
    }
}

/// `trim_r`: cuts trailing CR, LF and NUL (not spaces).
pub(crate) fn trim_r(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n' | 0] = s {
        s = rest;
    }
    s
}

/// The first LF at or after `p`.
#[inline(always)]
fn find_lf(msg: &[u8], p: usize) -> Option<usize> {
    let i = super::scan::find(msg, p, &LF);
    (i < msg.len()).then_some(i)
}

/// The LF bits of the first 64 bytes of `line` (`None` when it is shorter): one 16-byte compare
/// per quarter, two of them on the bytes the name fast path has loaded already; most header
/// lines end inside them and need no search.
#[inline(always)]
fn head_lf_mask(line: &[u8]) -> Option<u64> {
    Some(LF.mask64(line.first_chunk::<64>()?))
}

/// Position after the LF that ends the (possibly folded) line whose first LF is at `lf`.
#[inline(always)]
fn line_end(line: &[u8], mut lf: usize) -> Option<usize> {
    loop {
        let next = lf + 1;
        if !line.get(next).copied().is_some_and(is_sp) {
            return Some(next);
        }
        lf = find_lf(line, next)?;
    }
}

/// Parses the header name at the start of `line`; returns its length and the position after the
/// colon (`parse_sip_header_name`: name characters, then only SP/HT before the colon).
pub(crate) fn parse_name(line: &[u8]) -> Option<(usize, usize)> {
    let name_len = line
        .iter()
        .position(|&b| !is_name_char(b))
        .unwrap_or(line.len());
    if name_len == 0 {
        return None;
    }
    let after_name = line.get(name_len..)?;
    let spaces = after_name.iter().take_while(|&&b| is_sp(b)).count();
    match after_name.get(spaces)? {
        b':' => Some((name_len, name_len + spaces + 1)),
        _ => None,
    }
}

/// A known header name followed by its colon (`"via:"`), lower case, packed into little-endian
/// words for [`KnownName::matches`].
struct KnownName {
    kind: HdrKind,
    /// The name without the colon, lower case.
    name: &'static [u8],
    /// The pattern bytes (name + `:`), zero-padded.
    words: [u64; 3],
    /// `0xff` for the pattern bytes, `0` for the padding.
    masks: [u64; 3],
    /// The case bit (0x20) in the letter positions of the pattern.
    case: [u64; 3],
}

impl KnownName {
    /// The pattern is made of lower-case letters, `-` and `:`, at most 24 bytes.
    const fn new(lower_with_colon: &'static [u8], kind: HdrKind) -> Self {
        let mut words = [0u64; 3];
        let mut masks = [0u64; 3];
        let mut case = [0u64; 3];
        let mut i = 0;
        while i < lower_with_colon.len() {
            let b = lower_with_colon[i];
            let shift = 8 * (i % 8);
            words[i / 8] |= (b as u64) << shift;
            masks[i / 8] |= 0xff << shift;
            if b.is_ascii_lowercase() {
                case[i / 8] |= 0x20 << shift;
            }
            i += 1;
        }
        let name = match lower_with_colon.split_last() {
            Some((_, name)) => name,
            None => lower_with_colon,
        };
        Self {
            kind,
            name,
            words,
            masks,
            case,
        }
    }

    /// True when `head` starts with this name (ASCII case ignored) and its colon, with no white
    /// space between them.
    ///
    /// OR-ing the case bit into the letter positions only makes the comparison
    /// case-insensitive for letters and exact for `-` and `:` (a plain OR of 0x20 everywhere
    /// would let CR pass for `-`). Three words, no loop and no branch: the padding has a zero
    /// mask.
    #[inline(always)]
    fn matches(&self, head: &[u8; 32]) -> bool {
        let (words, _) = head.as_chunks::<8>();
        let mut diff = 0;
        for (k, word) in words.iter().take(3).enumerate() {
            let input = u64::from_le_bytes(*word) & self.masks[k];
            diff |= (input | self.case[k]) ^ self.words[k];
        }
        diff == 0
    }
}

/// The known names (name + colon, lower case), one per `(length, first letter)` of
/// [`HdrKind::of`] (two share a key and are told apart by their second letter).
static CALL_ID: KnownName = KnownName::new(b"call-id:", HdrKind::CallId);
static CSEQ: KnownName = KnownName::new(b"cseq:", HdrKind::CSeq);
static CONTACT: KnownName = KnownName::new(b"contact:", HdrKind::Contact);
static CONTENT_TYPE: KnownName = KnownName::new(b"content-type:", HdrKind::ContentType);
static CONTENT_LENGTH: KnownName = KnownName::new(b"content-length:", HdrKind::ContentLength);
static VIA: KnownName = KnownName::new(b"via:", HdrKind::Via);
static TO: KnownName = KnownName::new(b"to:", HdrKind::To);
static FROM: KnownName = KnownName::new(b"from:", HdrKind::From);
static MAX_FORWARDS: KnownName = KnownName::new(b"max-forwards:", HdrKind::MaxForwards);
static DIVERSION: KnownName = KnownName::new(b"diversion:", HdrKind::Diversion);
static USER_AGENT: KnownName = KnownName::new(b"user-agent:", HdrKind::UserAgent);
static AUTHORIZATION: KnownName = KnownName::new(b"authorization:", HdrKind::Authorization);
static RETRY_AFTER: KnownName = KnownName::new(b"retry-after:", HdrKind::RetryAfter);
static REMOTE_PARTY_ID: KnownName = KnownName::new(b"remote-party-id:", HdrKind::Rpid);
static PROXY_AUTHORIZATION: KnownName = KnownName::new(b"proxy-authorization:", HdrKind::ProxyAuth);
static P_ASSERTED_IDENTITY: KnownName = KnownName::new(b"p-asserted-identity:", HdrKind::Pai);
static P_PREFERRED_IDENTITY: KnownName = KnownName::new(b"p-preferred-identity:", HdrKind::Ppi);

/// The header a one-letter (compact) name stands for; `first` is lower-cased.
#[inline(always)]
fn compact(first: u8) -> Option<HdrKind> {
    Some(match first {
        b'v' => HdrKind::Via,
        b'f' => HdrKind::From,
        b't' => HdrKind::To,
        b'i' => HdrKind::CallId,
        b'm' => HdrKind::Contact,
        b'c' => HdrKind::ContentType,
        b'l' => HdrKind::ContentLength,
        _ => return None,
    })
}

/// The one known name of `len` bytes that starts with `first` (and `second`, where two share
/// the length and first letter), both lower-cased; the caller still compares the whole name.
#[inline(always)]
fn candidate(len: usize, first: u8, second: u8) -> Option<&'static KnownName> {
    Some(match (len, first) {
        (2, b't') => &TO,
        (3, b'v') => &VIA,
        (4, b'c') => &CSEQ,
        (4, b'f') => &FROM,
        (7, b'c') if second == b'a' => &CALL_ID,
        (7, b'c') => &CONTACT,
        (9, b'd') => &DIVERSION,
        (10, b'u') => &USER_AGENT,
        (11, b'r') => &RETRY_AFTER,
        (12, b'c') => &CONTENT_TYPE,
        (12, b'm') => &MAX_FORWARDS,
        (13, b'a') => &AUTHORIZATION,
        (14, b'c') => &CONTENT_LENGTH,
        (15, b'r') => &REMOTE_PARTY_ID,
        (19, b'p') if second == b'r' => &PROXY_AUTHORIZATION,
        (19, b'p') => &P_ASSERTED_IDENTITY,
        (20, b'p') => &P_PREFERRED_IDENTITY,
        _ => return None,
    })
}

/// Fast path of [`parse_name`] + [`HdrKind::of`] for a name written the usual way (`Name:`,
/// no space before the colon, at most 31 bytes, with 32 bytes of the message left): the colon
/// is found with one byte-mask compare, `(length, first letter)` picks the one candidate name,
/// and a name that is none of them is checked for valid characters with a byte mask. Returns
/// the kind and the name length; `None` means "use the general path" (unusual spelling, bad
/// name, end of the buffer) — never a different answer.
#[inline(always)]
fn known_name(line: &[u8]) -> Option<(HdrKind, usize)> {
    let head = line.first_chunk::<32>()?;
    let (low, high) = head.split_at(16);
    let low: &[u8; 16] = low.try_into().ok()?;
    let high: &[u8; 16] = high.try_into().ok()?;
    let mut colons = COLON.mask16(low);
    if colons == 0 {
        colons = COLON.mask16(high) << 16;
    }
    let len = colons.trailing_zeros() as usize;
    if len == 0 || len == 32 {
        return None;
    }
    let first = head[0] | CASE_BIT;
    if len == 1 {
        // The compact letters are letters: the case bit maps only their two cases onto them.
        if let Some(kind) = compact(first) {
            return Some((kind, 1));
        }
    }
    if let Some(known) = candidate(len, first, head[1] | CASE_BIT)
        && known.matches(head)
    {
        return Some((known.kind, len));
    }
    // Any other name: `HdrKind::of` has no candidate for it, so it is `Other` when every byte
    // before the colon is a name character.
    all_name_chars(head, len).then_some((HdrKind::Other, len))
}

/// True when the first `len` (1..=31) bytes of `head` are header-name characters.
///
/// Out of line: only names that are none of the known ones get here, and inlined, the
/// constants of the name-character mask were kept in registers across the header loop and
/// reloaded after every call in it (measured: commit eeaa94a).
#[inline(never)]
fn all_name_chars(head: &[u8; 32], len: usize) -> bool {
    let (chunks, _) = head.as_chunks::<16>();
    let [low, high] = chunks else {
        return false;
    };
    let mut valid = NAME_CHARS.mask16(low);
    if len > 16 {
        valid |= NAME_CHARS.mask16(high) << 16;
    }
    let wanted = (1u32 << len) - 1;
    valid & wanted == wanted
}

/// Reads the header line of `msg` at `p`.
#[inline(always)]
pub(crate) fn next(msg: &[u8], p: usize) -> Result<Next<'_>, HeaderFault> {
    let line = msg.get(p..).unwrap_or_default();
    match line.first() {
        None | Some(b'\r' | b'\n') => return Ok(Next::End),
        Some(_) => {}
    }
    let (kind, name_len, after_colon) = match known_name(line) {
        Some((kind, len)) => (kind, len, len + 1),
        None => {
            let (len, after_colon) = parse_name(line).ok_or(HeaderFault::BadName)?;
            (
                HdrKind::of(line.get(..len).unwrap_or_default()),
                len,
                after_colon,
            )
        }
    };
    // Usually exactly one space precedes the body.
    let body_start = match line.get(after_colon..after_colon + 2) {
        Some([b' ', b]) if !matches!(b, b' ' | b'\t' | b'\r' | b'\n') => after_colon + 1,
        _ => skip_lws(line, after_colon),
    };
    if body_start >= line.len() {
        return Err(HeaderFault::Empty);
    }
    // Positions from here on are relative to `line`.
    let first_lf = match head_lf_mask(line) {
        Some(head) if body_start < 64 => match head >> body_start {
            0 => find_lf(line, 64),
            m => Some(body_start + m.trailing_zeros() as usize),
        },
        _ => find_lf(line, body_start),
    };
    let Some(end) = first_lf.and_then(|lf| line_end(line, lf)) else {
        return Err(HeaderFault::NoEol);
    };
    // `end` is just past the LF (so `end - 1 >= body_start`); usually only "\r\n" is to
    // cut, so try that before `trim_r`. Failed `get`s cannot happen (the positions come from
    // `line`); they branch to an error instead of a panic.
    let (Some(name), Some(mut body)) = (line.get(..name_len), line.get(body_start..end - 1)) else {
        return Err(HeaderFault::NoEol);
    };
    if let [rest @ .., b'\r'] = body {
        body = rest;
    }
    if let [.., b'\r' | b'\n' | 0] = body {
        body = trim_r(body);
    }
    let header = Header {
        name,
        kind,
        body,
        offset: p,
        body_offset: p + body_start,
    };
    Ok(Next::Header(header, p + end))
}

/// The general path of [`next`]'s name handling, for the checks comparing it with the fast one.
fn name_general(line: &[u8]) -> Option<(HdrKind, usize, usize)> {
    let (len, after_colon) = parse_name(line)?;
    Some((HdrKind::of(line.get(..len)?), len, after_colon))
}

/// Panics when the known-name fast path disagrees with the general path on `line`, or the
/// header reader (name fast path, line ends from the 64-byte head mask) with
/// [`next_reference`] at the start of `line` or after its first LF.
pub(crate) fn assert_fast_path_agrees(line: &[u8]) {
    if let Some((kind, len)) = known_name(line) {
        assert_eq!(Some((kind, len, len + 1)), name_general(line));
    }
    let after_first_lf = line.iter().position(|&c| c == b'\n').map_or(0, |i| i + 1);
    for p in [0, after_first_lf] {
        assert_eq!(next(line, p), next_reference(line, p));
    }
}

/// [`next`] by the definition: the general name parser, then the line end found byte by
/// byte (an LF not followed by SP/HT), then the trims.
fn next_reference(msg: &[u8], p: usize) -> Result<Next<'_>, HeaderFault> {
    let line = msg.get(p..).unwrap_or_default();
    if matches!(line.first(), None | Some(b'\r' | b'\n')) {
        return Ok(Next::End);
    }
    let (kind, name_len, after_colon) = name_general(line).ok_or(HeaderFault::BadName)?;
    let body_start = skip_lws(line, after_colon);
    if body_start >= line.len() {
        return Err(HeaderFault::Empty);
    }
    let mut end = None;
    for (i, &b) in line.iter().enumerate().skip(body_start) {
        if b == b'\n' && !line.get(i + 1).copied().is_some_and(is_sp) {
            end = Some(i + 1);
            break;
        }
    }
    let end = end.ok_or(HeaderFault::NoEol)?;
    Ok(Next::Header(
        Header {
            name: line.get(..name_len).ok_or(HeaderFault::NoEol)?,
            kind,
            body: trim_r(line.get(body_start..end).ok_or(HeaderFault::NoEol)?),
            offset: p,
            body_offset: p + body_start,
        },
        p + end,
    ))
}

/// Kamailio `get_hdr_by_name` matching: same length, the first character compared exactly, the
/// rest case-insensitively. So `x-cid` is not found when the configured name is `X-CID`.
#[cfg(test)]
pub(crate) fn name_matches(hdr_name: &[u8], wanted: &[u8]) -> bool {
    hdr_name.len() == wanted.len()
        && hdr_name.first() == wanted.first()
        && hdr_name.eq_ignore_ascii_case(wanted)
}

/// A header name looked up with `get_hdr_by_name` matching, prepared once (with the
/// configuration) so that a header costs a length compare and a few word compares.
#[derive(Debug, Clone, Default)]
pub(crate) struct WantedName {
    /// Every byte with the case bit set ([`eq_folded`]); empty when no header name can match.
    folded: Vec<u8>,
    /// The first byte, compared exactly.
    first: u8,
}

impl WantedName {
    /// A name made of anything but header-name characters (or an empty one) matches nothing:
    /// Kamailio's parser never produces such a header name.
    pub(crate) fn new(name: &[u8]) -> Self {
        match name.first() {
            Some(&first) if name.iter().all(|&b| is_name_char(b)) => Self {
                folded: name.iter().map(|b| b | CASE_BIT).collect(),
                first,
            },
            _ => Self::default(),
        }
    }

    /// Whether the header name `hdr_name` (made of name characters, as the header reader
    /// guarantees) is this name with `get_hdr_by_name` matching.
    #[inline(always)]
    pub(crate) fn matches(&self, hdr_name: &[u8]) -> bool {
        hdr_name.first() == Some(&self.first) && eq_folded(hdr_name, &self.folded)
    }

    /// The first byte and the length, for the configuration's name filter (`None` for a name
    /// that matches nothing).
    pub(crate) fn first_and_len(&self) -> Option<(u8, usize)> {
        (!self.folded.is_empty()).then_some((self.first, self.folded.len()))
    }
}

/// True when the header `name` equals `folded` (a name whose every byte has the case bit set,
/// such as a lower-case name of letters, digits and `-`) ignoring ASCII case, by setting the case
/// bit in `name`'s bytes too. Two overlapping word loads for the usual lengths, no byte loop.
///
/// Setting the case bit is exact for header names: among the characters Kamailio accepts in a
/// name (`[0-9A-Za-z-._+~]`) only an upper-case letter turns into a name character it was not
/// already; the bytes that also would (`\r` → `-`, `0x10..=0x19` → digits, `^` → `~`, DEL ←
/// `_`) are never name characters.
#[inline(always)]
pub(crate) fn eq_folded(name: &[u8], folded: &[u8]) -> bool {
    const CASE4: u32 = 0x2020_2020;
    const CASE8: u64 = 0x2020_2020_2020_2020;
    if name.len() != folded.len() {
        return false;
    }
    let w4 = |c: Option<&[u8; 4]>| c.map_or(0, |c| u32::from_le_bytes(*c));
    let w8 = |c: Option<&[u8; 8]>| c.map_or(0, |c| u64::from_le_bytes(*c));
    match name.len() {
        0..4 => name.iter().zip(folded).all(|(&n, &f)| n | CASE_BIT == f),
        4..=8 => {
            w4(name.first_chunk()) | CASE4 == w4(folded.first_chunk())
                && w4(name.last_chunk()) | CASE4 == w4(folded.last_chunk())
        }
        _ => {
            name.chunks_exact(8)
                .zip(folded.chunks_exact(8))
                .all(|(n, f)| w8(n.first_chunk()) | CASE8 == w8(f.first_chunk()))
                && w8(name.last_chunk()) | CASE8 == w8(folded.last_chunk())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(msg: &[u8]) -> (Header<'_>, usize) {
        match next(msg, 0) {
            Ok(Next::Header(h, n)) => (h, n),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn kinds_full_and_compact() {
        for (n, k) in [
            (&b"v"[..], HdrKind::Via),
            (b"VIA", HdrKind::Via),
            (b"i", HdrKind::CallId),
            (b"call-id", HdrKind::CallId),
            (b"m", HdrKind::Contact),
            (b"c", HdrKind::ContentType),
            (b"l", HdrKind::ContentLength),
            (b"f", HdrKind::From),
            (b"T", HdrKind::To),
            (b"p-asserted-identity", HdrKind::Pai),
            (b"Proxy-Authorization", HdrKind::ProxyAuth),
            (b"k", HdrKind::Other),
            (b"X-CID", HdrKind::Other),
        ] {
            assert_eq!(HdrKind::of(n), k, "{}", String::from_utf8_lossy(n));
        }
    }

    #[test]
    fn body_is_trimmed_of_leading_lws_and_crlf() {
        let (h, n) = header(b"Call-ID :  abc@host \r\nNext: x\r\n");
        assert_eq!(h.name, b"Call-ID");
        assert_eq!(h.body, b"abc@host ");
        assert_eq!(n, 22);
    }

    #[test]
    fn folded_body_is_kept_raw() {
        let m = b"Subject:\r\n  first\r\n\tsecond\r\nX: y\r\n";
        let (h, _) = header(m);
        assert_eq!(h.body, b"first\r\n\tsecond");
    }

    #[test]
    fn empty_body_and_end() {
        let (h, _) = header(b"Subject:\r\n\r\n");
        assert_eq!(h.body, b"");
        assert_eq!(next(b"\r\nbody", 0), Ok(Next::End));
        assert_eq!(next(b"", 0), Ok(Next::End));
    }

    #[test]
    fn faults() {
        assert_eq!(next(b"Bad Name: x\r\n", 0), Err(HeaderFault::BadName));
        assert_eq!(next(b"NoColon\r\n", 0), Err(HeaderFault::BadName));
        assert_eq!(next(b"@x: y\r\n", 0), Err(HeaderFault::BadName));
        assert_eq!(next(b"X:   ", 0), Err(HeaderFault::Empty));
        assert_eq!(next(b"X: cut", 0), Err(HeaderFault::NoEol));
    }

    /// Every known name, each compact form, and near misses, in several spellings.
    fn name_samples() -> Vec<Vec<u8>> {
        let names = [
            "via",
            "v",
            "to",
            "t",
            "from",
            "f",
            "call-id",
            "i",
            "cseq",
            "contact",
            "m",
            "content-type",
            "c",
            "content-length",
            "l",
            "max-forwards",
            "diversion",
            "user-agent",
            "authorization",
            "retry-after",
            "remote-party-id",
            "proxy-authorization",
            "p-asserted-identity",
            "p-preferred-identity",
            "x-cid",
            "allow",
            "vias",
            "fro",
            "call\rid",
            "call-i",
            "contact-x",
            "k",
            "p",
            "call_id",
            "cseq ",
            "to\t",
        ];
        let mut out = Vec::new();
        for n in names {
            for spelled in [n.to_owned(), n.to_uppercase(), {
                let mut c = n.as_bytes().to_vec();
                if let Some(b) = c.first_mut() {
                    *b = b.to_ascii_uppercase();
                }
                String::from_utf8_lossy(&c).into_owned()
            }] {
                for tail in [":", " :", ":x", "\t: y", ";", ""] {
                    out.push(
                        format!("{spelled}{tail} SIP/2.0/UDP host;branch=z\r\n\r\n").into_bytes(),
                    );
                }
            }
        }
        out
    }

    #[test]
    fn known_name_fast_path_equals_general_path() {
        for line in name_samples() {
            if let Some((kind, len)) = known_name(&line) {
                assert_eq!(
                    Some((kind, len, len + 1)),
                    name_general(&line),
                    "{}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
        // The fast path does see the usual spellings, known or not, short or long.
        for (n, kind) in [
            (&b"Via: x\r\n\r\n......................"[..], HdrKind::Via),
            (b"CALL-ID: x\r\n\r\n..................", HdrKind::CallId),
            (b"Contact: x\r\n\r\n..................", HdrKind::Contact),
            (b"p-preferred-identity: <sip:x@y>\r\n", HdrKind::Ppi),
            (b"Proxy-Authorization: Digest x=y\r\n", HdrKind::ProxyAuth),
            (b"X-Some_thing.else+1~: x\r\n.........", HdrKind::Other),
            (b"Supported: timer\r\n................", HdrKind::Other),
        ] {
            assert_eq!(
                known_name(n).map(|(k, _)| k),
                Some(kind),
                "{}",
                String::from_utf8_lossy(n)
            );
        }
        // Not the fast path: a space before the colon, a bad name, a colon too far away.
        for n in [
            &b"Via : x\r\n\r\n......................"[..],
            b"Vi@a: x\r\n\r\n......................",
            b"X-A-Very-Long-Header-Name-Indeed-: x\r\n",
        ] {
            assert_eq!(known_name(n), None, "{}", String::from_utf8_lossy(n));
        }
    }

    proptest::proptest! {
        #[test]
        fn known_name_fast_path_equals_general_on_noise(
            name in "[A-Za-z0-9._+~@\u{e9}-]{1,34}",
            sep in "[:\t ;\r-]{0,2}",
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..60),
        ) {
            let mut line = format!("{name}{sep}").into_bytes();
            line.extend_from_slice(&tail);
            if let Some((kind, len)) = known_name(&line) {
                proptest::prop_assert_eq!(Some((kind, len, len + 1)), name_general(&line));
            }
        }

        #[test]
        fn next_equals_the_reference(
            lines in proptest::collection::vec(
                ("(Via|v|To|Call-ID|X-[a-z]{0,40}|[a-z ]{1,3})", "[ \t]{0,2}:[ \t]{0,2}", "[a-z; \t\r\n]{0,90}"),
                1..6,
            ),
            end in "(\r\n)?[a-z\r\n]{0,70}",
            start in 0usize..3,
        ) {
            let mut msg = Vec::new();
            for (name, colon, body) in &lines {
                msg.extend_from_slice(name.as_bytes());
                msg.extend_from_slice(colon.as_bytes());
                msg.extend_from_slice(body.as_bytes());
                msg.extend_from_slice(b"\r\n");
            }
            msg.extend_from_slice(end.as_bytes());
            let mut p = start.min(msg.len());
            loop {
                let got = next(&msg, p);
                proptest::prop_assert_eq!(&got, &next_reference(&msg, p));
                match got {
                    Ok(Next::Header(_, n)) => p = n,
                    _ => break,
                }
            }
        }

        #[test]
        fn next_never_disagrees_with_itself_on_offsets(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            if let Ok(Next::Header(h, n)) = next(&bytes, 0) {
                proptest::prop_assert!(n <= bytes.len());
                proptest::prop_assert_eq!(h.kind, HdrKind::of(h.name));
            }
        }
    }

    /// Header lines whose LF (and folds) fall before, on and after the 64-byte head the reader
    /// masks, with and without more message after them.
    #[test]
    fn line_ends_at_every_length_match_the_reference() {
        for name in [
            "Via",
            "v",
            "X-Some-Long-Header-Name-Here-0123456789",
            "Subject",
        ] {
            for body_len in 0..150 {
                for fold_at in [
                    None,
                    Some(0),
                    Some(1),
                    Some(30),
                    Some(60),
                    Some(61),
                    Some(62),
                ] {
                    let mut line = format!("{name}: ").into_bytes();
                    for i in 0..body_len {
                        if Some(i) == fold_at {
                            line.extend_from_slice(b"\r\n ");
                        }
                        line.push(b'a' + (i % 26) as u8);
                    }
                    line.extend_from_slice(b"\r\n");
                    for tail in [&b""[..], b"\r\n", b"Max-Forwards: 70\r\n\r\n", &[b'x'; 70]] {
                        let msg = [&line[..], tail].concat();
                        for p in [0, 1] {
                            let msg = [&b"\n"[..p], &msg[..]].concat();
                            assert_eq!(
                                next(&msg, p),
                                next_reference(&msg, p),
                                "{:?}",
                                String::from_utf8_lossy(&msg)
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn get_hdr_by_name_first_char_is_case_sensitive() {
        let x_cid = WantedName::new(b"X-CID");
        for (name, found) in [
            (&b"X-CID"[..], true),
            (b"X-cid", true),
            (b"x-CID", false),
            (b"X-CIDS", false),
            (b"X-CI", false),
        ] {
            assert_eq!(name_matches(name, b"X-CID"), found);
            assert_eq!(x_cid.matches(name), found, "{name:?}");
        }
        // A configured name with bytes no header name has never matches.
        assert!(!WantedName::new(b"X CID").matches(b"X-CID"));
        assert!(!WantedName::new(b"").matches(b"X"));
        assert!(!WantedName::new(b"A^B").matches(b"A~B"));
    }

    proptest::proptest! {
        /// The prepared matcher is `get_hdr_by_name` matching for every pair of names made of
        /// header-name characters and their near misses (case and the case bit flipped).
        #[test]
        fn wanted_name_is_get_hdr_by_name(
            wanted in "[-._+~^A-Za-z0-9\\x7f]{0,24}",
            flips in proptest::collection::vec(proptest::prelude::any::<bool>(), 24),
            cut in 0usize..3,
        ) {
            let wanted = wanted.as_bytes();
            let mut hdr: Vec<u8> = wanted
                .iter()
                .zip(&flips)
                .map(|(&b, &f)| if f { b ^ CASE_BIT } else { b })
                .collect();
            hdr.truncate(hdr.len().saturating_sub(cut));
            if !hdr.is_empty() && hdr.iter().all(|&b| is_name_char(b)) {
                let kamailio = name_matches(&hdr, wanted)
                    && wanted.iter().all(|&b| is_name_char(b));
                proptest::prop_assert_eq!(WantedName::new(wanted).matches(&hdr), kamailio);
            }
        }
    }
}
