//! SIP start line and header extraction into the `sip_capture` column values.
//!
//! Pure, sync and zero-copy: [`extract`] borrows every column value from the message bytes and
//! reproduces what Kamailio 5.6 `sipcapture.c:sip_capture` stores (behaviour doc §2.1).

mod contact;
#[cfg(test)]
mod corpus_tests;
mod error;
mod extract;
mod headers;
mod lines;
mod name_addr;
mod scan;
mod start_line;
mod topoh;
mod uri;
mod values;

pub use error::SipError;
pub use extract::extract;
pub use topoh::{TopohCodec, TopohConfig, topoh_unmask};

/// Runs every fast path of the parsers on `input` (as a header line, URI, Via body, name-addr
/// and Contact body, bare and behind the prefix that leads into each fast path) and panics when
/// one disagrees with its general path. For the `sip_parse` fuzz target and the property tests;
/// the fast paths exist only for speed, so any difference is a bug.
#[doc(hidden)]
#[allow(dead_code)]
pub(crate) fn assert_fast_paths_agree(input: &[u8]) {
    let prefixed = |prefix: &[u8]| [prefix, input].concat();
    headers::assert_fast_path_agrees(input);
    start_line::assert_fast_path_agrees(input);
    uri::assert_fast_path_agrees(input);
    uri::assert_fast_path_agrees(&prefixed(b"sip:"));
    values::assert_fast_path_agrees(input);
    values::assert_fast_path_agrees(&prefixed(b"SIP/2.0/UDP "));
    name_addr::assert_fast_paths_agree(input);
    name_addr::assert_fast_paths_agree(&prefixed(b"<sip:"));
    name_addr::assert_fast_paths_agree(&prefixed(b"\"A\" <sip:a@"));
    contact::assert_fast_path_agrees(input);
    contact::assert_fast_path_agrees(&prefixed(b"<sip:"));
    contact::assert_fast_path_agrees(&prefixed(b"\"A\" <sip:a@"));
}

/// Kamailio `MAX_HEADERS`: how many `callid_aleg_header` names count.
const MAX_ALEG_HEADERS: usize = 16;

/// What the extraction needs from the service configuration.
///
/// The configured header names are private: they are kept prepared for matching, together
/// with the quick filter built from them ([`ExtractConfig::new`]), so a message pays nothing
/// for building either.
#[derive(Debug, Clone, Default)]
pub struct ExtractConfig {
    /// Kamailio `callid_aleg_header`, already split on `;` (at most 16 names), in priority
    /// order.
    callid_aleg_names: Vec<headers::WantedName>,
    /// Header names for `custom_field1..3`; empty = column empty.
    custom_field_names: [headers::WantedName; 3],
    /// (length, first byte) filter over the names above and the fixed names `sip_capture`
    /// looks up (Reason, X-OIP, the rtp_stat names).
    name_filter: extract::NameFilter,
    /// Kamailio `capture_bad_msgs`: keep rows whose From/To/Contact or header block is broken.
    pub capture_bad_msgs: bool,
    /// Kamailio `topoh_unmask=1`: the topoh key and Call-ID prefix (applied by the caller).
    pub topoh: Option<TopohConfig>,
}

impl ExtractConfig {
    /// The Kamailio module defaults: `callid_aleg_header="X-CID"`, custom fields `Mac`/`IP`/`Port`,
    /// `capture_bad_msgs=0`, `topoh_unmask=0`.
    pub fn kamailio_defaults() -> Self {
        Self::new(
            vec!["X-CID".to_owned()],
            ["Mac".to_owned(), "IP".to_owned(), "Port".to_owned()],
        )
    }

    /// The `callid_aleg_header` names (see [`Self::parse_aleg_list`]; only the first 16 count,
    /// as Kamailio's `MAX_HEADERS`) and the `custom_field1..3_header` names, with
    /// `capture_bad_msgs=0` and `topoh_unmask=0`.
    pub fn new(callid_aleg_headers: Vec<String>, custom_field_headers: [String; 3]) -> Self {
        let wanted = |name: &String| headers::WantedName::new(name.as_bytes());
        let callid_aleg_names: Vec<_> = callid_aleg_headers
            .iter()
            .take(MAX_ALEG_HEADERS)
            .map(wanted)
            .collect();
        let custom_field_names = custom_field_headers.each_ref().map(wanted);
        let name_filter =
            extract::NameFilter::new(custom_field_names.iter().chain(&callid_aleg_names));
        Self {
            callid_aleg_names,
            custom_field_names,
            name_filter,
            capture_bad_msgs: false,
            topoh: None,
        }
    }

    /// Splits a `callid_aleg_header` value like Kamailio's `parse_aleg_callid_headers` (§4):
    /// split on `;`, skip empty items, keep a trailing item, at most 16 names.
    pub fn parse_aleg_list(s: &str) -> Vec<String> {
        s.split(';')
            .filter(|item| !item.is_empty())
            .take(MAX_ALEG_HEADERS)
            .map(str::to_owned)
            .collect()
    }
}

/// All SIP-derived column values, borrowed from the message (bytes, since SIP need not be UTF-8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SipColumns<'a> {
    /// `type`: 1 request, 2 reply.
    pub msg_type: u8,
    /// `method`: the request method, or the reply status code text.
    pub method: &'a [u8],
    /// `reply_reason`: reply reason phrase (empty for requests).
    pub reply_reason: &'a [u8],
    /// `ruri`: the raw Request-URI (empty for replies).
    pub ruri: &'a [u8],
    /// `ruri_user`: user part of the parsed Request-URI.
    pub ruri_user: &'a [u8],
    /// `ruri_domain`: host of the parsed Request-URI.
    pub ruri_domain: &'a [u8],
    /// `from_user`: user of the From URI.
    pub from_user: &'a [u8],
    /// `from_domain`: host of the From URI.
    pub from_domain: &'a [u8],
    /// `from_tag`: the From `tag` parameter.
    pub from_tag: &'a [u8],
    /// `to_user`: user of the To URI.
    pub to_user: &'a [u8],
    /// `to_domain`: host of the To URI.
    pub to_domain: &'a [u8],
    /// `to_tag`: the To `tag` parameter.
    pub to_tag: &'a [u8],
    /// `pid_user`: user of the first P-Asserted-Identity, else P-Preferred-Identity, else
    /// Remote-Party-ID URI.
    pub pid_user: &'a [u8],
    /// `contact_user`: user of the first Contact URI (`*` for `Contact: *`).
    pub contact_user: &'a [u8],
    /// `auth_user`: user part of the digest `username` (Proxy-Authorization, else Authorization).
    pub auth_user: &'a [u8],
    /// `callid`: the Call-ID body (before any topoh unmask, which the caller applies).
    pub callid: &'a [u8],
    /// `callid_aleg`: body of the first present `callid_aleg_header`.
    pub callid_aleg: &'a [u8],
    /// `via_1`: the whole body of the first Via header line.
    pub via_1: &'a [u8],
    /// `via_1_branch`: `branch` of the first via-param.
    pub via_1_branch: &'a [u8],
    /// `cseq`: the whole CSeq body.
    pub cseq: &'a [u8],
    /// The CSeq method token (not a column; used for table routing).
    pub cseq_method: &'a [u8],
    /// `reason`: body of the first Reason header.
    pub reason: &'a [u8],
    /// `content_type`: Content-Type body.
    pub content_type: &'a [u8],
    /// `user_agent`: User-Agent body.
    pub user_agent: &'a [u8],
    /// `contact_ip`: host of the first Contact URI.
    pub contact_ip: &'a [u8],
    /// `contact_port`: port of the first Contact URI, 0 when absent.
    pub contact_port: u16,
    /// `originator_ip`: `X-OIP` body up to the first `:`.
    pub originator_ip: &'a [u8],
    /// `originator_port`: `X-OIP` port after the first `:`, 0 when absent.
    pub originator_port: u16,
    /// `rtp_stat`: body of the first present RTP statistics header (priority list).
    pub rtp_stat: &'a [u8],
    /// `diversion`: body of the first Diversion header.
    pub diversion: &'a [u8],
    /// `custom_field1`: body of the header named by `custom_field1_header`.
    pub custom_field1: &'a [u8],
    /// `custom_field2`: body of the header named by `custom_field2_header`.
    pub custom_field2: &'a [u8],
    /// `custom_field3`: body of the header named by `custom_field3_header`.
    pub custom_field3: &'a [u8],
    /// True when `capture_bad_msgs` let a partially parsed message through.
    pub bad: bool,
}
