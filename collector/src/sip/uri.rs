//! SIP/SIPS/TEL/URN URI splitting with the results of Kamailio's `parse_uri.c:parse_uri`.
//!
//! What the columns see (checked against the Kamailio state machine):
//! * schemes `sip:`, `sips:`, `tel:`, `urn:` (letter case ignored); anything else is an error;
//! * the user part runs to the first `@` (it may contain `;`, `?` and visual separators), the
//!   password after the first `:` in it is not part of the user;
//! * the host keeps the brackets of an IPv6 reference (`[2001:db8::1]`); other hosts are
//!   `[A-Za-z0-9.-]` starting with a letter or digit;
//! * the port is 0–65535, at most 5 digits; the port text may be empty (`sip:h:`);
//! * `tel:`: the number becomes the user, the host is empty;
//! * `sip:…;user=phone` (core `phone2tel=1`, the default): the user is cut at its first `;`
//!   (`sip:+1234;npdi@h;user=phone` → user `+1234`).

/// The parts of a URI the `sip_capture` columns use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Uri<'a> {
    /// User part (`ruri_user`, `from_user`, …); for `tel:` the number.
    pub user: &'a [u8],
    /// Host part, brackets kept for IPv6; empty for `tel:`.
    pub host: &'a [u8],
    /// Port text (digits only, may be empty).
    pub port: &'a [u8],
    /// Port value (0 when absent).
    pub port_no: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Sip,
    Tel,
    Urn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Init,
    User,
    Password,
    PasswordAlpha,
    Host,
    HostP,
    Host6P,
    Host6End,
    Port,
    Param,
    Headers,
}

/// Marker error: the URI does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadUri;

type Span = Option<(usize, usize)>;

struct Parser<'a> {
    buf: &'a [u8],
    scheme: Scheme,
    st: St,
    s: usize,
    found_user: bool,
    pass: Option<usize>,
    error_headers: bool,
    user: Span,
    host: Span,
    port: Span,
    port_no: u32,
    param_start: usize,
    user_param_is_phone: bool,
}

const MAX_PORT: u32 = 65535;

impl<'a> Parser<'a> {
    /// `still_at_user`: an `@` after what looked like host/params: all of it was the user.
    fn still_at_user(&mut self, p: usize) -> Result<(), BadUri> {
        if self.found_user {
            return Err(BadUri);
        }
        let start = self.host.map_or(self.s, |(s, _)| s);
        let end = self.pass.unwrap_or(p);
        self.user = Some((start, end));
        self.host = None;
        self.port = None;
        self.port_no = 0;
        self.user_param_is_phone = false;
        self.s = p + 1;
        self.found_user = true;
        self.error_headers = false;
        self.st = St::Host;
        Ok(())
    }

    /// Looks at the parameter that just ended at `p` for `user=phone`.
    fn end_param(&mut self, p: usize) {
        let param = self.buf.get(self.param_start..p).unwrap_or_default();
        if let Some(name) = param.get(..5)
            && name.eq_ignore_ascii_case(b"user=")
        {
            self.user_param_is_phone = param.get(5..) == Some(&b"phone"[..]);
        }
    }

    /// `colon_case`: a `:` before any user was found may start a password.
    fn colon_before_user(&mut self, p: usize) {
        if self.pass.is_some() {
            self.found_user = true;
            self.pass = None;
        } else {
            self.pass = Some(p);
        }
    }

    fn port_digit(&mut self, c: u8) -> Result<(), BadUri> {
        self.port_no = self.port_no * 10 + u32::from(c - b'0');
        if self.port_no > MAX_PORT {
            Err(BadUri)
        } else {
            Ok(())
        }
    }

    fn host_end(&mut self, c: u8, p: usize) -> Result<bool, BadUri> {
        match c {
            b':' if self.scheme != Scheme::Urn => {
                self.host = Some((self.s, p));
                self.st = St::Port;
                self.s = p + 1;
            }
            b':' => {}
            b';' => {
                self.host = Some((self.s, p));
                self.st = St::Param;
                self.s = p + 1;
                self.param_start = p + 1;
            }
            b'?' => {
                self.host = Some((self.s, p));
                self.st = St::Headers;
                self.s = p + 1;
            }
            b'@' if self.scheme != Scheme::Urn => return Err(BadUri),
            b'@' => {}
            b'&' => return Err(BadUri),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn step(&mut self, c: u8, p: usize) -> Result<(), BadUri> {
        match self.st {
            St::Init => match c {
                b'[' => {
                    self.st = St::Host6P;
                    self.s = p;
                }
                b']' | b':' => return Err(BadUri),
                _ => {
                    self.st = if self.scheme == Scheme::Urn {
                        St::Host
                    } else {
                        St::User
                    }
                }
            },
            St::User => match c {
                b'@' => {
                    if p == self.s {
                        return Err(BadUri);
                    }
                    self.user = Some((self.s, p));
                    self.st = St::Host;
                    self.found_user = true;
                    self.s = p + 1;
                }
                b':' => {
                    self.user = Some((self.s, p));
                    self.st = St::Password;
                    self.s = p + 1;
                }
                b';' => {
                    self.host = Some((self.s, p));
                    self.st = St::Param;
                    self.s = p + 1;
                    self.param_start = p + 1;
                }
                b'?' => {
                    self.host = Some((self.s, p));
                    self.st = St::Headers;
                    self.s = p + 1;
                }
                b'[' | b']' => return Err(BadUri),
                _ => {}
            },
            St::Password => match c {
                b'@' => {
                    self.port_no = 0;
                    self.st = St::Host;
                    self.found_user = true;
                    self.s = p + 1;
                }
                b';' | b'?' => {
                    // It was `host:port` all along.
                    self.port = Some((self.s, p));
                    self.host = self.user.take();
                    self.found_user = true;
                    self.s = p + 1;
                    if c == b';' {
                        self.st = St::Param;
                        self.param_start = p + 1;
                    } else {
                        self.st = St::Headers;
                    }
                }
                b'0'..=b'9' => self.port_digit(c)?,
                b'[' | b']' | b':' => return Err(BadUri),
                _ => {
                    self.port_no = 0;
                    self.st = St::PasswordAlpha;
                }
            },
            St::PasswordAlpha => match c {
                b'@' => {
                    self.st = St::Host;
                    self.found_user = true;
                    self.s = p + 1;
                }
                b';' | b'?' | b'[' | b']' | b':' => return Err(BadUri),
                _ => {}
            },
            St::Host => {
                if c == b'[' {
                    self.st = St::Host6P;
                } else if c.is_ascii_alphanumeric() {
                    self.st = St::HostP;
                } else {
                    return Err(BadUri);
                }
            }
            St::HostP => {
                let host_char = c.is_ascii_alphanumeric() || c == b'.' || c == b'-';
                if !(self.host_end(c, p)? || host_char) {
                    return Err(BadUri);
                }
            }
            St::Host6End => {
                if !self.host_end(c, p)? {
                    return Err(BadUri);
                }
            }
            St::Host6P => match c {
                b']' => self.st = St::Host6End,
                b'[' | b'&' | b'@' | b';' | b'?' => return Err(BadUri),
                _ => {}
            },
            St::Port => match c {
                b';' | b'?' => {
                    self.port = Some((self.s, p));
                    self.s = p + 1;
                    if c == b';' {
                        self.st = St::Param;
                        self.param_start = p + 1;
                    } else {
                        self.st = St::Headers;
                    }
                }
                b'0'..=b'9' => self.port_digit(c)?,
                _ => return Err(BadUri),
            },
            St::Param => match c {
                b'@' => self.still_at_user(p)?,
                b';' => {
                    self.end_param(p);
                    if self.pass.is_some() {
                        self.found_user = true;
                        self.pass = None;
                    }
                    self.param_start = p + 1;
                }
                b'?' => {
                    self.end_param(p);
                    self.st = St::Headers;
                    self.s = p + 1;
                    if self.pass.is_some() {
                        self.found_user = true;
                        self.pass = None;
                    }
                }
                b':' if !self.found_user => self.colon_before_user(p),
                _ => {}
            },
            St::Headers => match c {
                b'@' => self.still_at_user(p)?,
                b';' => {
                    if self.found_user || self.pass.is_some() {
                        return Err(BadUri);
                    }
                    self.error_headers = true;
                }
                b':' if !self.found_user => self.colon_before_user(p),
                b'?' if self.pass.is_some() => {
                    self.found_user = true;
                    self.pass = None;
                }
                _ => {}
            },
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BadUri> {
        let end = self.buf.len();
        match self.st {
            St::Init | St::Host | St::Host6P => return Err(BadUri),
            St::User => {
                if self.found_user {
                    return Err(BadUri);
                }
                self.host = Some((self.s, end));
            }
            St::Password => {
                if self.found_user {
                    return Err(BadUri);
                }
                self.port = Some((self.s, end));
                self.host = self.user.take();
            }
            St::PasswordAlpha => {
                if self.scheme != Scheme::Urn {
                    return Err(BadUri);
                }
                self.host = Some((self.s, end));
            }
            St::HostP | St::Host6End => self.host = Some((self.s, end)),
            St::Port => self.port = Some((self.s, end)),
            St::Param => self.end_param(end),
            St::Headers => {
                if self.error_headers {
                    return Err(BadUri);
                }
            }
        }
        Ok(())
    }
}

use super::scan::ByteSet;

/// Where the runs of the URI scanners end.
///
/// The user part (state `User`).
static USER_SPECIAL: ByteSet = ByteSet::any_of(b"@:;?[]");
/// A host name or IPv4 address (`HostP`): the first byte outside `[A-Za-z0-9.-]`.
static NOT_HOST_CHAR: ByteSet = ByteSet::any_of(b".-").or_alphanumeric().complement();
/// Parameters and headers (`Param`, `Headers`).
static PARAM_SPECIAL: ByteSet = ByteSet::any_of(b"@:;?");
/// What sends parameters after a known user part to the state machine (`:` no longer
/// matters there, and `;` only starts the next parameter).
static AT_OR_QUESTION: ByteSet = ByteSet::any_of(b"@?");

/// Scheme detection as Kamailio does it: the first four bytes OR 0x20 compared as a word.
fn scheme_of(buf: &[u8]) -> Option<(Scheme, usize)> {
    let head: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    match &head.map(|b| b | 0x20) {
        b"sip:" => Some((Scheme::Sip, 4)),
        b"sips" => (buf.get(4) == Some(&b':')).then_some((Scheme::Sip, 5)),
        b"tel:" => Some((Scheme::Tel, 4)),
        b"urn:" => Some((Scheme::Urn, 4)),
        _ => None,
    }
}

/// The end of the run of bytes at `i` that are not in `stop`.
#[inline]
fn run_end(buf: &[u8], i: usize, stop: &ByteSet) -> usize {
    super::scan::find(buf, i, stop)
}

/// Fast path for the common `sip:user@host[:port][;params]` form (also `sips:`): a straight
/// scan instead of the state machine. `None` means "not this simple form, use [`parse_general`]"
/// — never a parse error. For every input where it answers, it gives exactly what
/// [`parse_general`] gives (unit and property tests below compare them).
///
/// What it accepts, and why the state machine agrees:
/// * the user is a non-empty run without `@ : ; ? [ ]` ended by `@` (state `User` → `Host`,
///   `found_user`); its first byte is not special, so the `Init` state's "consume the first
///   byte" rule and the empty-user check do not matter;
/// * the host starts with a letter or digit and is a run of `[A-Za-z0-9.-]` (`HostP`);
/// * an optional port of 1–5 digits up to 65535 (`Port`);
/// * parameters after `;` without `@` or `?` (`Param` with `found_user` set ignores `:`); the
///   phone rule (`user=phone` cuts the user at `;`) has nothing to cut in a user without `;`.
#[inline]
fn parse_fast(buf: &[u8]) -> Option<Uri<'_>> {
    let (Scheme::Sip, start) = scheme_of(buf)? else {
        return None;
    };
    let at = run_end(buf, start, &USER_SPECIAL);
    if at == start || buf.get(at) != Some(&b'@') {
        return None;
    }
    let host_start = at + 1;
    if !buf.get(host_start)?.is_ascii_alphanumeric() {
        return None;
    }
    let host_end = run_end(buf, host_start + 1, &NOT_HOST_CHAR);
    let mut i = host_end;
    let mut port: &[u8] = b"";
    let mut port_no: u32 = 0;
    if buf.get(i) == Some(&b':') {
        let digits_start = i + 1;
        i = digits_start;
        while let Some(&c) = buf.get(i).filter(|c| c.is_ascii_digit()) {
            port_no = port_no * 10 + u32::from(c - b'0');
            i += 1;
            if i - digits_start > 5 {
                return None;
            }
        }
        if i == digits_start || port_no > MAX_PORT {
            return None;
        }
        port = buf.get(digits_start..i)?;
    }
    match buf.get(i) {
        None => {}
        // `;params` to the end. Only `@` or `?` among them matter (they send the URI to the state
        // machine). `user=phone` changes nothing here: it cuts the user at its first `;`, and the
        // user scan above stops at `;`, so this user holds none.
        Some(b';') if run_end(buf, i + 1, &AT_OR_QUESTION) == buf.len() => {}
        Some(_) => return None,
    }
    let user = buf.get(start..at)?;
    Some(Uri {
        user,
        host: buf.get(host_start..host_end)?,
        port,
        port_no: u16::try_from(port_no).ok()?,
    })
}

/// Panics when the fast path disagrees with the general path on `buf`.
pub(crate) fn assert_fast_path_agrees(buf: &[u8]) {
    if let Some(fast) = parse_fast(buf) {
        assert_eq!(Ok(fast), parse_general(buf));
    }
}

/// Parses a URI (`parse_uri`). Errors exactly where Kamailio would refuse it.
#[inline]
pub(crate) fn parse(buf: &[u8]) -> Result<Uri<'_>, BadUri> {
    parse_kamailio(buf).or_else(|e| unbracketed_ipv6(buf).ok_or(e))
}

/// A `sip:`/`sips:` URI whose host is an IPv6 address written without brackets
/// (`sip:4321@fec0:0:0:0:216:d3ff:fe0d:22c:5060`), as some phones send it. RFC 3261 requires
/// the brackets and Kamailio rejects the URI; we accept it (docs/COMPATIBILITY.md). The host
/// is the address as written; a last `:digits` group that does not fit the address is the
/// port. Only tried when the Kamailio parse fails.
fn unbracketed_ipv6(buf: &[u8]) -> Option<Uri<'_>> {
    let (scheme, start) = scheme_of(buf)?;
    if scheme != Scheme::Sip {
        return None;
    }
    let rest = buf.get(start..)?;
    let end = rest
        .iter()
        .position(|c| matches!(c, b';' | b'?'))
        .unwrap_or(rest.len());
    let before_params = rest.get(..end)?;
    let (user, hostport) = match before_params.iter().position(|&c| c == b'@') {
        Some(at) => {
            let userinfo = before_params.get(..at)?;
            let user_end = userinfo
                .iter()
                .position(|&c| c == b':')
                .unwrap_or(userinfo.len());
            (userinfo.get(..user_end)?, before_params.get(at + 1..)?)
        }
        None => (&b""[..], before_params),
    };
    let text = std::str::from_utf8(hostport).ok()?;
    if text.matches(':').count() < 2 {
        return None;
    }
    if text.parse::<std::net::Ipv6Addr>().is_ok() {
        return Some(Uri {
            user,
            host: hostport,
            port: b"",
            port_no: 0,
        });
    }
    let (host, port) = text.rsplit_once(':')?;
    host.parse::<std::net::Ipv6Addr>().ok()?;
    let port_no = (!port.is_empty() && port.len() <= 5)
        .then(|| port.parse::<u16>().ok())
        .flatten()?;
    Some(Uri {
        user,
        host: hostport.get(..host.len())?,
        port: hostport.get(host.len() + 1..)?,
        port_no,
    })
}

/// Kamailio's `parse_uri`: the fast path for the plain `sip:` form, else the state machine.
/// One out-of-line copy for the five URIs of a message (inlined into the extraction it only
/// makes the header loop's register allocation worse).
#[inline(never)]
fn parse_kamailio(buf: &[u8]) -> Result<Uri<'_>, BadUri> {
    match parse_fast(buf) {
        Some(uri) => Ok(uri),
        None => parse_general(buf),
    }
}

/// The whole `parse_uri` state machine, for every URI form.
fn parse_general(buf: &[u8]) -> Result<Uri<'_>, BadUri> {
    if buf.len() < 5 {
        return Err(BadUri);
    }
    let (scheme, start) = scheme_of(buf).ok_or(BadUri)?;
    let mut p = Parser {
        buf,
        scheme,
        st: St::Init,
        s: start,
        found_user: false,
        pass: None,
        error_headers: false,
        user: None,
        host: None,
        port: None,
        port_no: 0,
        param_start: start,
        user_param_is_phone: false,
    };
    let mut i = start;
    loop {
        // Fast path: skip the run of bytes that change nothing in the current state.
        i = match p.st {
            St::User => run_end(buf, i, &USER_SPECIAL),
            St::HostP => run_end(buf, i, &NOT_HOST_CHAR),
            St::Param | St::Headers => run_end(buf, i, &PARAM_SPECIAL),
            _ => i,
        };
        let Some(&c) = buf.get(i) else { break };
        p.step(c, i)?;
        i += 1;
    }
    p.finish()?;

    let slice = |span: Span| span.and_then(|(s, e)| buf.get(s..e)).unwrap_or_default();
    let mut user = slice(p.user);
    let mut host = slice(p.host);
    let port = slice(p.port);
    match scheme {
        Scheme::Sip if p.user_param_is_phone => {
            if let Some(semi) = user.iter().position(|&b| b == b';') {
                user = user.get(..semi).unwrap_or_default();
            }
        }
        Scheme::Tel => {
            user = host;
            host = b"";
        }
        Scheme::Sip | Scheme::Urn => {}
    }
    if port.len() > 5 {
        return Err(BadUri);
    }
    // "@" right before the host with no user part.
    if let Some((hs, _)) = p.host
        && !host.is_empty()
        && user.is_empty()
        && (buf.get(hs.wrapping_sub(1)) == Some(&b'@') || buf.get(hs) == Some(&b'@'))
    {
        return Err(BadUri);
    }
    let port_no = u16::try_from(p.port_no).unwrap_or(0);
    Ok(Uri {
        user,
        host,
        port,
        port_no,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, String, String, u16) {
        let u = parse(s.as_bytes()).unwrap_or_else(|_| panic!("{s} should parse"));
        let t = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (t(u.user), t(u.host), t(u.port), u.port_no)
    }

    fn uh(s: &str) -> (String, String) {
        let (u, h, _, _) = ok(s);
        (u, h)
    }

    #[test]
    fn sip_forms() {
        assert_eq!(
            uh("sip:bob@biloxi.com"),
            ("bob".into(), "biloxi.com".into())
        );
        assert_eq!(
            uh("SIP:bob@biloxi.com"),
            ("bob".into(), "biloxi.com".into())
        );
        assert_eq!(
            uh("sips:bob@biloxi.com"),
            ("bob".into(), "biloxi.com".into())
        );
        assert_eq!(uh("sip:biloxi.com"), ("".into(), "biloxi.com".into()));
        assert_eq!(
            ok("sip:alice:secret@atlanta.com:5061;transport=tls"),
            ("alice".into(), "atlanta.com".into(), "5061".into(), 5061)
        );
        assert_eq!(
            ok("sip:atlanta.com:5070"),
            ("".into(), "atlanta.com".into(), "5070".into(), 5070)
        );
        assert_eq!(
            ok("sip:h.example:5060;lr"),
            ("".into(), "h.example".into(), "5060".into(), 5060)
        );
        assert_eq!(
            uh("sip:alice@atlanta.com?subject=project"),
            ("alice".into(), "atlanta.com".into())
        );
        assert_eq!(uh("sip:a;b=c@host"), ("a;b=c".into(), "host".into()));
    }

    #[test]
    fn unbracketed_ipv6_hosts_are_accepted() {
        assert_eq!(
            ok("sip:4321@fec0:0:0:0:216:d3ff:fe0d:22c:5060"),
            (
                "4321".into(),
                "fec0:0:0:0:216:d3ff:fe0d:22c".into(),
                "5060".into(),
                5060
            )
        );
        assert_eq!(
            ok("sip:9876@fe80:0:0:0:21a:a0ff:fe07:32e0;transport=udp"),
            (
                "9876".into(),
                "fe80:0:0:0:21a:a0ff:fe07:32e0".into(),
                String::new(),
                0
            )
        );
        assert_eq!(parse(b"sip:u@a:b:c:5060"), Err(BadUri));
        assert_eq!(parse(b"tel:fe80:0:0:0:1:2:3:4:5"), Err(BadUri));
    }

    #[test]
    fn ipv6_host_keeps_brackets() {
        assert_eq!(
            ok("sip:alice@[2001:db8::10]:5070;transport=udp"),
            ("alice".into(), "[2001:db8::10]".into(), "5070".into(), 5070)
        );
        assert_eq!(uh("sip:[::1]"), ("".into(), "[::1]".into()));
        assert!(parse(b"sip:alice@[2001:db8::10").is_err());
        assert!(parse(b"sip:alice@[::1]x").is_err());
    }

    #[test]
    fn tel_moves_number_to_user() {
        assert_eq!(
            uh("tel:+1-201-555-0123"),
            ("+1-201-555-0123".into(), "".into())
        );
        assert_eq!(
            uh("tel:7042;phone-context=example.com"),
            ("7042".into(), "".into())
        );
    }

    #[test]
    fn user_phone_cuts_user_params() {
        assert_eq!(
            uh("sip:+1234;npdi;rn=+4567@gw.example;user=phone"),
            ("+1234".into(), "gw.example".into())
        );
        assert_eq!(
            uh("sip:+1234;npdi@gw.example"),
            ("+1234;npdi".into(), "gw.example".into())
        );
    }

    #[test]
    fn urn() {
        assert_eq!(uh("urn:service:sos"), ("".into(), "service:sos".into()));
    }

    /// URIs around the fast path's edges: every one must give the same answer both ways.
    const EDGE_CASES: &[&str] = &[
        "sip:bob@biloxi.com",
        "SIPS:bob@biloxi.com:5061",
        "sip:alice@192.0.2.101:5062;transport=udp",
        "sip:+1555@gw.example;user=phone",
        "sip:+1555;npdi@gw.example;USER=phone",
        "sip:+1555;npdi@gw.example;user=phone;user=ip",
        "sip:+1555;npdi@gw.example;user=Phone",
        "sip:a@h:",
        "sip:a@h:0",
        "sip:a@h:65535",
        "sip:a@h:65536",
        "sip:a@h:000001",
        "sip:a@h:5x",
        "sip:a@h;",
        "sip:a@h;;",
        "sip:a@h;x:y",
        "sip:a@h;x@y",
        "sip:a@h;x?y",
        "sip:a@h?x",
        "sip:a@-h",
        "sip:a@h_",
        "sip:a@h.",
        "sip:@h",
        "sip:;@h",
        "sip:a:b@h",
        "sip:a@[::1]",
        "sip:a@b@c",
        "sip:h",
        "sip:a@h:5060;lr;user=phone",
        "tel:+1555",
        "sip:a@",
        "sip:",
    ];

    #[test]
    fn fast_path_equals_general_path_on_edge_cases() {
        for u in EDGE_CASES {
            if let Some(fast) = parse_fast(u.as_bytes()) {
                assert_eq!(Ok(fast), parse_general(u.as_bytes()), "{u}");
            }
        }
        assert!(parse_fast(b"sip:bob@biloxi.com").is_some());
        assert!(parse_fast(b"sip:a@h:5060;transport=udp;user=phone").is_some());
    }

    proptest::proptest! {
        #[test]
        fn fast_path_equals_general_path(
            scheme in "(sip|SIPS|sIp|tel):",
            user in "[a-z0-9+;:@?.\\[\\]-]{0,8}",
            at in "@?",
            host in "[a-zA-Z0-9._@:;?\\[\\]-]{0,10}",
            port in "(:[0-9]{0,7})?",
            params in "(;[a-zA-Z=:@?;]{0,12})?",
        ) {
            let uri = format!("{scheme}{user}{at}{host}{port}{params}");
            if let Some(fast) = parse_fast(uri.as_bytes()) {
                proptest::prop_assert_eq!(Ok(fast), parse_general(uri.as_bytes()), "{}", uri);
            }
        }

        #[test]
        fn fast_path_equals_general_path_on_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            let mut uri = b"sip:".to_vec();
            uri.extend_from_slice(&bytes);
            if let Some(fast) = parse_fast(&uri) {
                proptest::prop_assert_eq!(Ok(fast), parse_general(&uri));
            }
        }
    }

    #[test]
    fn errors() {
        for bad in [
            "sip:",
            "http://example.com",
            "mailto:a@b",
            "sip:@host.com",
            "sip:alice@",
            "sip:alice@ho_st",
            "sip:alice@host:99999",
            "sip:alice@host:50a",
            "sip:alice@-host",
            "sip:a@b@c",
            "sips;bob@host",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad} should fail");
        }
    }
}
