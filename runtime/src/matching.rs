//! Record matching shared by the storer's routing rules (`[[route]]`) and the collector's
//! forward rules (`[[forward]]`): method, CSeq method, reply code, payload type, addresses
//! (CIDR), ports, node and SIP column values. One config shape, one compiled [`Matcher`].

use std::net::IpAddr;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize};

use crate::config::ConfigError;
use sipcapture_proto::ip_from_bytes;
use sipcapture_proto::v1::{CaptureRecord, RecordKind, SipFields};

/// The conditions of a routing rule. Each takes one value or a list.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchConfig {
    /// The `method` column: a request's method, a reply's status code text.
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub method: Vec<String>,
    /// The CSeq method (requests and replies).
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cseq_method: Vec<String>,
    /// Reply status codes: `486`, `"400-499"` or `"4xx"` (never matches a request).
    #[serde(deserialize_with = "codes", skip_serializing_if = "Vec::is_empty")]
    pub reply_code: Vec<String>,
    /// HEP payload type (1 SIP, 5 RTCP, 100 logs, ...).
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub payload_type: Vec<u32>,
    /// Source address or CIDR block (`10.0.0.0/8`, `2001:db8::/32`).
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub src_ip: Vec<String>,
    /// Destination address or CIDR block.
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dst_ip: Vec<String>,
    /// Source port.
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub src_port: Vec<u32>,
    /// Destination port.
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dst_port: Vec<u32>,
    /// The `node` column value (exact).
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub node: Vec<String>,
    /// Header values (`{ name = "user_agent", prefix = "friendly-scanner" }`); all must hold.
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub header: Vec<HeaderMatchConfig>,
}

/// A condition on one extracted header value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatchConfig {
    /// The field: a `sip_capture` column taken from the SIP message (`from_user`, `to_user`,
    /// `ruri_user`, `user_agent`, `callid`, `from_domain`, `custom_field1`, ...).
    pub name: String,
    /// The value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The value matches this regular expression (`regex` crate syntax, unanchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(v) => vec![v],
    })
}

fn codes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Code {
        Int(u32),
        Text(String),
    }
    let list: Vec<Code> = one_or_many(d)?;
    Ok(list
        .into_iter()
        .map(|c| match c {
            Code::Int(n) => n.to_string(),
            Code::Text(s) => s,
        })
        .collect())
}

/// Compiled conditions of one rule: every given condition must hold (a list holds when any of
/// its entries matches). Built by [`Matcher::compile`] from a [`MatchConfig`].
#[derive(Debug, Default)]
pub struct Matcher {
    method: Vec<String>,
    cseq_method: Vec<String>,
    reply_code: Vec<(u32, u32)>,
    payload_type: Vec<u32>,
    src_ip: Vec<Cidr>,
    dst_ip: Vec<Cidr>,
    src_port: Vec<u32>,
    dst_port: Vec<u32>,
    node: Vec<String>,
    header: Vec<HeaderCondition>,
}

#[derive(Debug)]
struct HeaderCondition {
    field: fn(&SipFields) -> &str,
    test: TextTest,
}

#[derive(Debug)]
enum TextTest {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

/// An address block: `addr/prefix` (a plain address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `2001:db8::/32` or a plain address.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside the block (an IPv4 block never holds an IPv6 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Parses `486`, `400-499` or `4xx` into an inclusive range.
fn parse_code_range(s: &str) -> Result<(u32, u32), String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a reply code, a range `400-499` or a class `4xx`");
    if let Some(class) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
        let c: u32 = class.parse().map_err(|_| bad())?;
        if !(1..=6).contains(&c) {
            return Err(bad());
        }
        return Ok((c * 100, c * 100 + 99));
    }
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (lo.trim(), hi.trim()),
        None => (s, s),
    };
    let lo: u32 = lo.parse().map_err(|_| bad())?;
    let hi: u32 = hi.parse().map_err(|_| bad())?;
    if lo > hi || hi > 999 {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// The SIP-derived value a header condition reads, by column name.
fn header_field(name: &str) -> Option<fn(&SipFields) -> &str> {
    let f: fn(&SipFields) -> &str = match name {
        "method" => |s| &s.method,
        "reply_reason" => |s| &s.reply_reason,
        "ruri" => |s| &s.ruri,
        "ruri_user" => |s| &s.ruri_user,
        "ruri_domain" => |s| &s.ruri_domain,
        "from_user" => |s| &s.from_user,
        "from_domain" => |s| &s.from_domain,
        "from_tag" => |s| &s.from_tag,
        "to_user" => |s| &s.to_user,
        "to_domain" => |s| &s.to_domain,
        "to_tag" => |s| &s.to_tag,
        "pid_user" => |s| &s.pid_user,
        "contact_user" => |s| &s.contact_user,
        "contact_ip" => |s| &s.contact_ip,
        "auth_user" => |s| &s.auth_user,
        "callid" | "call_id" => |s| &s.callid,
        "callid_aleg" => |s| &s.callid_aleg,
        "via_1" => |s| &s.via_1,
        "via_1_branch" => |s| &s.via_1_branch,
        "cseq" => |s| &s.cseq,
        "reason" => |s| &s.reason,
        "content_type" => |s| &s.content_type,
        "user_agent" => |s| &s.user_agent,
        "originator_ip" => |s| &s.originator_ip,
        "rtp_stat" => |s| &s.rtp_stat,
        "diversion" => |s| &s.diversion,
        "correlation_id" => |s| &s.correlation_id,
        "custom_field1" => |s| &s.custom_field1,
        "custom_field2" => |s| &s.custom_field2,
        "custom_field3" => |s| &s.custom_field3,
        _ => return None,
    };
    Some(f)
}

fn compile_header(h: &HeaderMatchConfig, key: &str) -> Result<HeaderCondition, ConfigError> {
    let field = header_field(&h.name).ok_or_else(|| {
        ConfigError::invalid(
            format!("{key}.name"),
            format!(
                "{:?} is not a SIP column (from_user, to_user, ruri_user, user_agent, callid, ...)",
                h.name
            ),
        )
    })?;
    let test = match (&h.exact, &h.prefix, &h.regex) {
        (Some(v), None, None) => TextTest::Exact(v.clone()),
        (None, Some(v), None) => TextTest::Prefix(v.clone()),
        (None, None, Some(v)) => TextTest::Regex(
            Regex::new(v)
                .map_err(|e| ConfigError::invalid(format!("{key}.regex"), e.to_string()))?,
        ),
        _ => {
            return Err(ConfigError::invalid(
                key,
                "give exactly one of exact, prefix or regex",
            ));
        }
    };
    Ok(HeaderCondition { field, test })
}

impl Matcher {
    /// Compiles `m`; errors name the key under `key` (`route[2].match.reply_code`).
    pub fn compile(m: &MatchConfig, key: &str) -> Result<Self, ConfigError> {
        let cidrs = |list: &[String], field: &str| {
            list.iter()
                .map(|s| {
                    Cidr::parse(s).map_err(|e| ConfigError::invalid(format!("{key}.{field}"), e))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let ports = |list: &[u32], field: &str| {
            if list.iter().any(|p| *p > 65535) {
                return Err(ConfigError::invalid(
                    format!("{key}.{field}"),
                    "ports are 0..=65535",
                ));
            }
            Ok(list.to_vec())
        };
        Ok(Matcher {
            method: m.method.clone(),
            cseq_method: m.cseq_method.clone(),
            reply_code: m
                .reply_code
                .iter()
                .map(|s| {
                    parse_code_range(s)
                        .map_err(|e| ConfigError::invalid(format!("{key}.reply_code"), e))
                })
                .collect::<Result<_, _>>()?,
            payload_type: m.payload_type.clone(),
            src_ip: cidrs(&m.src_ip, "src_ip")?,
            dst_ip: cidrs(&m.dst_ip, "dst_ip")?,
            src_port: ports(&m.src_port, "src_port")?,
            dst_port: ports(&m.dst_port, "dst_port")?,
            node: m.node.clone(),
            header: m
                .header
                .iter()
                .enumerate()
                .map(|(i, h)| compile_header(h, &format!("{key}.header[{i}]")))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether every condition holds for `record`.
    pub fn holds(&self, record: &CaptureRecord) -> bool {
        let empty = SipFields::default();
        let sip = record.sip.as_ref().unwrap_or(&empty);
        let any_text =
            |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        let any_num = |list: &[u32], value: u32| list.is_empty() || list.contains(&value);
        let any_ip = |list: &[Cidr], bytes: &[u8]| {
            list.is_empty()
                || ip_from_bytes(bytes).is_some_and(|ip| list.iter().any(|c| c.contains(ip)))
        };
        let payload_type = match &record.hep {
            Some(hep) => hep.payload_type,
            None if record.kind() == RecordKind::Sip => 1,
            None => 0,
        };
        let reply_code_ok = self.reply_code.is_empty()
            || (sip.msg_type == 2
                && sip.method.parse::<u32>().is_ok_and(|code| {
                    self.reply_code
                        .iter()
                        .any(|(lo, hi)| (*lo..=*hi).contains(&code))
                }));
        any_text(&self.method, &sip.method)
            && any_text(&self.cseq_method, &sip.cseq_method)
            && reply_code_ok
            && any_num(&self.payload_type, payload_type)
            && any_ip(&self.src_ip, &record.src_ip)
            && any_ip(&self.dst_ip, &record.dst_ip)
            && any_num(&self.src_port, record.src_port)
            && any_num(&self.dst_port, record.dst_port)
            && any_text(&self.node, &record.node)
            && self.header.iter().all(|h| {
                let value = (h.field)(sip);
                match &h.test {
                    TextTest::Exact(v) => value == v,
                    TextTest::Prefix(v) => value.starts_with(v.as_str()),
                    TextTest::Regex(re) => re.is_match(value),
                }
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.255.1.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(
            Cidr::parse("192.0.2.7")
                .unwrap()
                .contains("192.0.2.7".parse().unwrap())
        );
    }
}
