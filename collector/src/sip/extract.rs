//! One pass over a SIP message that yields every SIP-derived `sip_capture` column the way
//! Kamailio 5.6 `sipcapture.c:sip_capture` fills them (behaviour doc §2.1).
//!
//! Order of checks, as in Kamailio: start line (`parse_msg`), all header lines
//! (`parse_headers(HDR_CALLID_F|HDR_EOH_F)` with the core's eager Via/CSeq/From/To/
//! Content-Length parsing and strict duplicate checks), the core's required headers
//! (`receive_msg`: Via, Call-ID, CSeq, From, To), the Request-URI, the From URI, the To URI, and
//! the first Contact.
//!
//! With `capture_bad_msgs` only the start line and the Request-URI still drop the message: a bad
//! header ends the header block there (later headers are unseen, as in Kamailio's partial
//! `msg->headers`), bad From/To/Contact values leave their columns empty, and a missing Call-ID
//! is searched as text (`force_capture_callid`). In Kamailio those partially parsed messages
//! reach `sip_capture()` through `event_route[core:receive-parse-error]`, where the core's
//! required-header check has not run; we model that route, so the lax mode does not require
//! Via/From/To/Call-ID/CSeq.

use super::contact::{self, FirstContact};
use super::headers::{self, HdrKind, Header, HeaderFault, Next, WantedName};
use super::name_addr;
use super::start_line::{self, StartLine};
use super::{ExtractConfig, SipColumns, SipError, uri, values};

/// `rtp_stat` sources, highest priority first: the first byte (compared exactly) and the name
/// with the case bit set in every byte ([`headers::eq_folded`]).
const RTP_STAT_HEADERS: [(u8, &[u8]); 7] = [
    (b'X', b"x-rtp-stat-add"),
    (b'X', b"x-rtp-stat-t38"),
    (b'X', b"x-rtp-stat"),
    (b'P', b"p-rtp-stat"),
    (b'X', b"x-siemens-rtp-stats"),
    (b'X', b"x-ng-rtp-stats"),
    (b'R', b"rtp-rxstat"),
];

/// The fixed names `sip_capture` looks up with `get_hdr_by_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fixed {
    /// `Reason`.
    Reason,
    /// `X-OIP`.
    XOip,
    /// One of [`RTP_STAT_HEADERS`], by priority (0 = highest).
    RtpStat(usize),
}

impl Fixed {
    /// Which fixed name `name` is, with `get_hdr_by_name` matching (the first byte exact, the
    /// rest case-insensitive): a `match` on length and first byte leaves at most three
    /// candidates.
    fn of(name: &[u8]) -> Option<Self> {
        let first = *name.first()?;
        let rtp = |candidates: &[usize]| {
            candidates
                .iter()
                .copied()
                .find(|&i| {
                    RTP_STAT_HEADERS
                        .get(i)
                        .is_some_and(|&(f, w)| f == first && headers::eq_folded(name, w))
                })
                .map(Self::RtpStat)
        };
        match (name.len(), first) {
            (6, b'R') => headers::eq_folded(name, b"reason").then_some(Self::Reason),
            (5, b'X') => headers::eq_folded(name, b"x-oip").then_some(Self::XOip),
            (10, b'X' | b'P' | b'R') => rtp(&[2, 3, 6]),
            (14, b'X') => rtp(&[0, 1, 5]),
            (19, b'X') => rtp(&[4]),
            _ => None,
        }
    }
}

/// A quick filter over every name [`Named`] looks for (the fixed ones and the configured
/// `callid_aleg_header` / `custom_field1..3_header` names), built with the configuration: a
/// header whose (length, first byte) pair no such name has is rejected with one table lookup,
/// so [`Named::observe`] runs for about one header line in a message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameFilter {
    /// For each name length (lengths ≥ 31 share the last entry), a set of first bytes (bit
    /// `first & 31`).
    by_len: [u32; 32],
}

impl NameFilter {
    pub(crate) fn new<'n>(configured: impl Iterator<Item = &'n WantedName>) -> Self {
        let configured = configured.filter_map(WantedName::first_and_len);
        let fixed = [(b'R', b"Reason".len()), (b'X', b"X-OIP".len())]
            .into_iter()
            .chain(
                RTP_STAT_HEADERS
                    .iter()
                    .map(|&(first, folded)| (first, folded.len())),
            );
        let mut filter = Self { by_len: [0; 32] };
        for (first, len) in configured.chain(fixed) {
            filter.by_len[len.min(31)] |= 1 << (first & 31);
        }
        filter
    }

    /// False when no wanted name can be `name`.
    #[inline(always)]
    fn may_match(&self, name: &[u8]) -> bool {
        let Some(&first) = name.first() else {
            return false;
        };
        self.by_len[name.len().min(31)] & 1 << (first & 31) != 0
    }
}

impl Default for NameFilter {
    fn default() -> Self {
        Self::new(std::iter::empty())
    }
}

/// Headers looked up with `get_hdr_by_name` semantics; the first occurrence of each is kept.
///
/// The configuration's [`NameFilter`] lets through only headers that may be one of them.
struct Named<'a, 'c> {
    cfg: &'c ExtractConfig,
    reason: Option<&'a [u8]>,
    xoip: Option<&'a [u8]>,
    /// The best `rtp_stat` source so far: (priority, body).
    rtp_stat: Option<(usize, &'a [u8])>,
    custom: [Option<&'a [u8]>; 3],
    /// The best `callid_aleg` source so far: (position in the configured list, body).
    aleg: Option<(usize, &'a [u8])>,
}

/// Keeps `(rank, body)` in `best` when no better-ranked (lower) or equal-ranked (earlier) header
/// was seen: the list order decides, and within one name the first occurrence.
fn keep_best<'a>(best: &mut Option<(usize, &'a [u8])>, rank: usize, body: &'a [u8]) {
    if best.is_none_or(|(r, _)| rank < r) {
        *best = Some((rank, body));
    }
}

impl<'a, 'c> Named<'a, 'c> {
    fn new(cfg: &'c ExtractConfig) -> Self {
        Self {
            cfg,
            reason: None,
            xoip: None,
            rtp_stat: None,
            custom: [None; 3],
            aleg: None,
        }
    }

    /// Records `h` if it is one of the wanted names. Only called for the headers the
    /// configuration's [`NameFilter`] lets through, so it is kept out of the header loop.
    #[inline(never)]
    fn observe(&mut self, kind: HdrKind, name: &'a [u8], body: &'a [u8]) {
        // The fixed names are none of the headers the core knows.
        if kind == HdrKind::Other {
            match Fixed::of(name) {
                Some(Fixed::Reason) => {
                    self.reason.get_or_insert(body);
                }
                Some(Fixed::XOip) => {
                    self.xoip.get_or_insert(body);
                }
                Some(Fixed::RtpStat(rank)) => keep_best(&mut self.rtp_stat, rank, body),
                None => {}
            }
        }
        for (wanted, found) in self.cfg.custom_field_names.iter().zip(&mut self.custom) {
            if found.is_none() && wanted.matches(name) {
                *found = Some(body);
            }
        }
        if let Some(rank) = self
            .cfg
            .callid_aleg_names
            .iter()
            .position(|wanted| wanted.matches(name))
        {
            keep_best(&mut self.aleg, rank, body);
        }
    }
}

/// The first occurrence of each header kind the columns need, plus parse results.
#[derive(Default)]
struct Seen<'a> {
    via: Option<(&'a [u8], &'a [u8])>,
    cseq: Option<(&'a [u8], &'a [u8])>,
    /// The parsed From / To value and the offset of its body (for errors).
    from: Option<(usize, name_addr::NameAddr<'a>)>,
    to: Option<(usize, name_addr::NameAddr<'a>)>,
    callid: Option<&'a [u8]>,
    content_length: bool,
    max_forwards: bool,
    /// The first Contact: body, body offset, header offset.
    contact: Option<(&'a [u8], usize, usize)>,
    content_type: Option<&'a [u8]>,
    user_agent: Option<&'a [u8]>,
    diversion: Option<&'a [u8]>,
    proxy_auth: Option<&'a [u8]>,
    authorization: Option<&'a [u8]>,
    /// First P-Asserted-Identity URI, and whether every PAI header parsed.
    pai: Option<(&'a [u8], bool)>,
    /// First P-Preferred-Identity URI, whether the first two PPI headers parsed, and how many
    /// were seen.
    ppi: Option<(&'a [u8], bool, u8)>,
    rpid: Option<Result<&'a [u8], ()>>,
}

fn duplicate(name: &'static str, h: &Header<'_>) -> SipError {
    SipError::DuplicateHeader {
        name,
        offset: h.offset,
    }
}

impl<'a> Seen<'a> {
    /// The core's per-header work in `get_hdr_field` / `parse_headers`: eager parsing of Via,
    /// CSeq, From, To, Content-Length, Retry-After and the strict duplicate checks.
    fn add(&mut self, h: &Header<'a>) -> Result<(), SipError> {
        let offset = h.offset;
        match h.kind {
            HdrKind::Via => {
                let branch = values::via_branch(h.body).map_err(|_| SipError::BadVia { offset })?;
                self.via.get_or_insert((h.body, branch));
            }
            HdrKind::CSeq => {
                let method =
                    values::cseq_method(h.body).map_err(|_| SipError::BadCSeq { offset })?;
                if self.cseq.is_some() {
                    return Err(duplicate("CSeq", h));
                }
                self.cseq = Some((h.body, method));
            }
            HdrKind::From | HdrKind::To => {
                let is_from = h.kind == HdrKind::From;
                let (na, _) = name_addr::parse(h.body, false).map_err(|_| {
                    if is_from {
                        SipError::BadFrom { offset }
                    } else {
                        SipError::BadTo { offset }
                    }
                })?;
                let slot = if is_from {
                    &mut self.from
                } else {
                    &mut self.to
                };
                if slot.is_some() {
                    return Err(duplicate(if is_from { "From" } else { "To" }, h));
                }
                *slot = Some((h.body_offset, na));
            }
            HdrKind::CallId => {
                if self.callid.is_some() {
                    return Err(duplicate("Call-ID", h));
                }
                self.callid = Some(h.body);
            }
            HdrKind::ContentLength => {
                values::check_number(h.body, false).map_err(|_| SipError::BadNumber { offset })?;
                if self.content_length {
                    return Err(duplicate("Content-Length", h));
                }
                self.content_length = true;
            }
            HdrKind::RetryAfter => {
                values::check_number(h.body, true).map_err(|_| SipError::BadNumber { offset })?;
            }
            HdrKind::MaxForwards => {
                if self.max_forwards {
                    return Err(duplicate("Max-Forwards", h));
                }
                self.max_forwards = true;
            }
            HdrKind::Contact => {
                self.contact
                    .get_or_insert((h.body, h.body_offset, h.offset));
            }
            HdrKind::ContentType => {
                self.content_type.get_or_insert(h.body);
            }
            HdrKind::UserAgent => {
                self.user_agent.get_or_insert(h.body);
            }
            HdrKind::Diversion => {
                self.diversion.get_or_insert(h.body);
            }
            HdrKind::ProxyAuth => {
                self.proxy_auth.get_or_insert(h.body);
            }
            HdrKind::Authorization => {
                self.authorization.get_or_insert(h.body);
            }
            HdrKind::Pai => {
                // parse_pai_header parses every PAI header; one bad body disqualifies PAI.
                let parsed = name_addr::parse_list_first(h.body);
                match &mut self.pai {
                    None => {
                        self.pai = Some((parsed.map(|n| n.uri).unwrap_or_default(), parsed.is_ok()))
                    }
                    Some((_, ok)) => *ok &= parsed.is_ok(),
                }
            }
            HdrKind::Ppi => {
                // parse_ppi_header parses the first two PPI headers only.
                match &mut self.ppi {
                    None => {
                        let parsed = name_addr::parse_list_first(h.body);
                        self.ppi =
                            Some((parsed.map(|n| n.uri).unwrap_or_default(), parsed.is_ok(), 1));
                    }
                    Some((_, ok, seen @ 1)) => {
                        *ok &= name_addr::parse_list_first(h.body).is_ok();
                        *seen = 2;
                    }
                    Some(_) => {}
                }
            }
            HdrKind::Rpid => {
                if self.rpid.is_none() {
                    self.rpid = Some(
                        name_addr::parse(h.body, false)
                            .map(|(n, _)| n.uri)
                            .map_err(|_| ()),
                    );
                }
            }
            HdrKind::Other => {}
        }
        Ok(())
    }
}

fn fault_error(fault: HeaderFault, offset: usize) -> SipError {
    match fault {
        HeaderFault::BadName | HeaderFault::Empty => SipError::BadHeader { offset },
        HeaderFault::NoEol => SipError::NoHeaderEnd { offset },
    }
}

/// Kamailio `force_capture_callid`: search the text `Call-ID` (case-sensitive, long form only)
/// from where header parsing stopped, and take that header's body if it parses as a Call-ID.
fn force_capture_callid(msg: &[u8], from: usize) -> &[u8] {
    const NEEDLE: &[u8] = b"Call-ID";
    let Some(hay) = msg.get(from..) else {
        return b"";
    };
    let Some(at) = hay.windows(NEEDLE.len()).position(|w| w == NEEDLE) else {
        return b"";
    };
    match headers::next(msg, from + at) {
        Ok(Next::Header(h, _)) if h.kind == HdrKind::CallId => h.body,
        _ => b"",
    }
}

/// `strtol(p, NULL, 10)` as a port: leading white space, optional sign, digits. Values outside
/// 0..=65535 give 0 (Kamailio would store the raw int).
fn strtol_port(s: &[u8]) -> u16 {
    let mut i = 0;
    while s
        .get(i)
        .is_some_and(|&c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
    {
        i += 1;
    }
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut value: u32 = 0;
    while let Some(&c) = s.get(i).filter(|c| c.is_ascii_digit()) {
        value = value.saturating_mul(10).saturating_add(u32::from(c - b'0'));
        i += 1;
    }
    if negative && value != 0 {
        return 0;
    }
    u16::try_from(value).unwrap_or(0)
}

/// URI of a P-Asserted-Identity / P-Preferred-Identity / Remote-Party-ID → its user part
/// (empty when the URI does not parse).
fn uri_user(u: &[u8]) -> &[u8] {
    uri::parse(u).map(|u| u.user).unwrap_or_default()
}

/// Extracts every SIP-derived column. `Err` means Kamailio would not store a row; the error is
/// the drop reason.
pub fn extract<'a>(msg: &'a [u8], cfg: &ExtractConfig) -> Result<SipColumns<'a>, SipError> {
    let strict = !cfg.capture_bad_msgs;
    let (start, mut pos) = start_line::parse(msg)?;
    // Every column is a local until the one struct literal at the end, so the result is
    // written once, in place (a `SipColumns::default()` filled field by field and then moved
    // out cost ~150 instructions of stores and copies per message).
    let mut bad = false;
    let (msg_type, method, reply_reason, ruri) = match start {
        StartLine::Request {
            method,
            uri,
            uri_offset,
        } => (1, method, &b""[..], Some((uri, uri_offset))),
        StartLine::Reply { status, reason } => (2, status, reason, None),
    };

    // The single pass over the header block.
    let mut seen = Seen::default();
    // `named` is only written by the out-of-line `observe`, so it stays in memory instead of
    // adding a dozen loop-carried registers to the header loop.
    let mut named = Named::new(cfg);
    loop {
        match headers::next(msg, pos) {
            Ok(Next::End) => break,
            Ok(Next::Header(h, next)) => {
                if let Err(e) = seen.add(&h) {
                    if strict {
                        return Err(e);
                    }
                    bad = true;
                    break;
                }
                if cfg.name_filter.may_match(h.name) {
                    named.observe(h.kind, h.name, h.body);
                }
                pos = next;
            }
            Err(fault) => {
                if strict {
                    return Err(fault_error(fault, pos));
                }
                bad = true;
                break;
            }
        }
    }

    if strict {
        // receive_msg's sanity checks run before the script ever calls sip_capture().
        let missing = if seen.via.is_none() {
            Some("Via")
        } else if seen.callid.is_none() {
            Some("Call-ID")
        } else if seen.cseq.is_none() {
            Some("CSeq")
        } else if seen.from.is_none() {
            Some("From")
        } else if seen.to.is_none() {
            Some("To")
        } else {
            None
        };
        if let Some(name) = missing {
            return Err(SipError::MissingHeader { name });
        }
    }

    let (ruri_text, ruri_user, ruri_domain) = match ruri {
        Some((text, offset)) => {
            let parsed = uri::parse(text).map_err(|_| SipError::BadRequestUri { offset })?;
            (text, parsed.user, parsed.host)
        }
        None => (&b""[..], &b""[..], &b""[..]),
    };

    let (mut from_user, mut from_domain, mut from_tag) = (&b""[..], &b""[..], &b""[..]);
    if let Some((body_offset, na)) = seen.from {
        match uri::parse(na.uri) {
            Ok(u) => (from_user, from_domain) = (u.user, u.host),
            Err(_) if strict => {
                return Err(SipError::BadFromUri {
                    offset: body_offset + na.uri_offset,
                });
            }
            Err(_) => bad = true,
        }
        from_tag = na.tag;
    }
    let (mut to_user, mut to_domain, mut to_tag) = (&b""[..], &b""[..], &b""[..]);
    if let Some((body_offset, na)) = seen.to {
        match uri::parse(na.uri) {
            Ok(u) => (to_user, to_domain) = (u.user, u.host),
            Err(_) if strict => {
                return Err(SipError::BadToUri {
                    offset: body_offset + na.uri_offset,
                });
            }
            Err(_) => bad = true,
        }
        to_tag = na.tag;
    }

    let callid = match seen.callid {
        Some(body) => body,
        None if !strict => force_capture_callid(msg, pos),
        None => b"",
    };

    let pid_user = match (seen.pai, seen.ppi, seen.rpid) {
        (Some((u, true)), _, _) => uri_user(u),
        (_, Some((u, true, _)), _) => uri_user(u),
        (_, _, Some(Ok(u))) => uri_user(u),
        _ => b"",
    };

    let auth_user = match seen.proxy_auth.or(seen.authorization) {
        Some(body) => values::digest_user(body).unwrap_or_default(),
        None => b"",
    };

    let (mut contact_user, mut contact_ip, mut contact_port) = (&b""[..], &b""[..], 0);
    if let Some((body, body_offset, offset)) = seen.contact {
        match contact::parse_contact(body) {
            Ok(FirstContact::Star) => contact_user = b"*",
            Ok(FirstContact::Uri(text, at)) => match uri::parse(text) {
                Ok(u) => (contact_user, contact_ip, contact_port) = (u.user, u.host, u.port_no),
                Err(_) if strict => {
                    return Err(SipError::BadContactUri {
                        offset: body_offset + at,
                    });
                }
                Err(_) => bad = true,
            },
            Err(_) if strict => return Err(SipError::BadContact { offset }),
            Err(_) => bad = true,
        }
    }

    let (via_1, via_1_branch) = seen.via.unwrap_or_default();
    let (cseq, cseq_method) = seen.cseq.unwrap_or_default();

    // X-OIP: "ip[:port]". Kamailio's strchr runs past the body (§8.6); we split at the first ':'
    // inside the body.
    let xoip = named.xoip.unwrap_or_default();
    let (originator_ip, originator_port) = match xoip.iter().position(|&c| c == b':') {
        Some(colon) => (
            xoip.get(..colon).unwrap_or_default(),
            strtol_port(xoip.get(colon + 1..).unwrap_or_default()),
        ),
        None => (xoip, 0),
    };

    let [custom_field1, custom_field2, custom_field3] = named.custom.map(Option::unwrap_or_default);
    Ok(SipColumns {
        msg_type,
        method,
        reply_reason,
        ruri: ruri_text,
        ruri_user,
        ruri_domain,
        from_user,
        from_domain,
        from_tag,
        to_user,
        to_domain,
        to_tag,
        pid_user,
        contact_user,
        auth_user,
        callid,
        callid_aleg: named.aleg.map(|(_, body)| body).unwrap_or_default(),
        via_1,
        via_1_branch,
        cseq,
        cseq_method,
        reason: named.reason.unwrap_or_default(),
        content_type: seen.content_type.unwrap_or_default(),
        user_agent: seen.user_agent.unwrap_or_default(),
        contact_ip,
        contact_port,
        originator_ip,
        originator_port,
        rtp_stat: named.rtp_stat.map(|(_, body)| body).unwrap_or_default(),
        diversion: seen.diversion.unwrap_or_default(),
        custom_field1,
        custom_field2,
        custom_field3,
        bad,
    })
}
