//! Why a SIP message yields no `sip_capture` row. Every variant carries the byte offset (from the
//! start of the message) where the problem was found, so tests assert exact errors.

/// A SIP message that Kamailio would not store. The variant is the drop reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipError {
    /// Fewer than 17 bytes after leading whitespace (`parse_first_line`: "message too short").
    #[error("message too short: {len} bytes")]
    TooShort {
        /// Length after the leading whitespace.
        len: usize,
    },
    /// The first line is neither `SIP/2.0 NNN reason` nor `METHOD SP uri SP version`.
    #[error("bad start line at offset {offset}")]
    BadStartLine {
        /// Offset of the first byte of the start line.
        offset: usize,
    },
    /// A request line whose version is not `SIP/2.0` (HTTP and the like): not routed as SIP.
    #[error("not a SIP message (version at offset {offset})")]
    NotSip {
        /// Offset of the version token.
        offset: usize,
    },
    /// The Request-URI does not parse (`parse_sip_msg_uri`); dropped even with `capture_bad_msgs`.
    #[error("bad request uri at offset {offset}")]
    BadRequestUri {
        /// Offset of the Request-URI.
        offset: usize,
    },
    /// A header line that is not `name: value` (bad name characters, nothing after the colon).
    #[error("bad header at offset {offset}")]
    BadHeader {
        /// Offset of the header name.
        offset: usize,
    },
    /// A header line without a line end: the message was cut inside the header block.
    #[error("header without line end at offset {offset}")]
    NoHeaderEnd {
        /// Offset of the header name.
        offset: usize,
    },
    /// A Via header the core cannot parse.
    #[error("bad via at offset {offset}")]
    BadVia {
        /// Offset of the header name.
        offset: usize,
    },
    /// A CSeq header the core cannot parse.
    #[error("bad cseq at offset {offset}")]
    BadCSeq {
        /// Offset of the header name.
        offset: usize,
    },
    /// A Content-Length (or Retry-After) header that is not a number.
    #[error("bad numeric header at offset {offset}")]
    BadNumber {
        /// Offset of the header name.
        offset: usize,
    },
    /// A From header whose body does not parse (name-addr / addr-spec / params).
    #[error("bad from header at offset {offset}")]
    BadFrom {
        /// Offset of the header name.
        offset: usize,
    },
    /// A To header whose body does not parse.
    #[error("bad to header at offset {offset}")]
    BadTo {
        /// Offset of the header name.
        offset: usize,
    },
    /// A From header whose URI does not parse.
    #[error("bad from uri at offset {offset}")]
    BadFromUri {
        /// Offset of the URI.
        offset: usize,
    },
    /// A To header whose URI does not parse.
    #[error("bad to uri at offset {offset}")]
    BadToUri {
        /// Offset of the URI.
        offset: usize,
    },
    /// The first Contact header does not parse.
    #[error("bad contact header at offset {offset}")]
    BadContact {
        /// Offset of the header name.
        offset: usize,
    },
    /// The first Contact URI does not parse.
    #[error("bad contact uri at offset {offset}")]
    BadContactUri {
        /// Offset of the URI.
        offset: usize,
    },
    /// A second Call-ID, From, To, CSeq, Content-Length or Max-Forwards (strict core parser).
    #[error("duplicate {name} header at offset {offset}")]
    DuplicateHeader {
        /// Canonical header name.
        name: &'static str,
        /// Offset of the duplicate header's name.
        offset: usize,
    },
    /// Via, From, To, Call-ID or CSeq is absent (core `receive_msg` sanity check).
    #[error("required header {name} missing")]
    MissingHeader {
        /// Canonical header name.
        name: &'static str,
    },
}

impl SipError {
    /// A low-cardinality label for the drop-reason metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "too_short",
            Self::BadStartLine { .. } => "bad_start_line",
            Self::NotSip { .. } => "not_sip",
            Self::BadRequestUri { .. } => "bad_request_uri",
            Self::BadHeader { .. } => "bad_header",
            Self::NoHeaderEnd { .. } => "no_header_end",
            Self::BadVia { .. } => "bad_via",
            Self::BadCSeq { .. } => "bad_cseq",
            Self::BadNumber { .. } => "bad_number",
            Self::BadFrom { .. } => "bad_from",
            Self::BadTo { .. } => "bad_to",
            Self::BadFromUri { .. } => "bad_from_uri",
            Self::BadToUri { .. } => "bad_to_uri",
            Self::BadContact { .. } => "bad_contact",
            Self::BadContactUri { .. } => "bad_contact_uri",
            Self::DuplicateHeader { .. } => "duplicate_header",
            Self::MissingHeader { .. } => "missing_header",
        }
    }
}
