//! Routing rules: the declarative replacement of Kamailio's routing script around
//! `sip_capture(table, mode)`. Rules are tried in order; the first whose conditions all hold
//! decides: store (a table pattern and/or a capture mode) or drop. This file only matches;
//! [`crate::pipeline::route`] turns the decision into a table.

use std::net::IpAddr;

use regex::Regex;
use sipcapture_proto::config::ConfigError;
use sipcapture_proto::ip_from_bytes;
use sipcapture_proto::v1::{CaptureRecord, RecordKind, SipFields};

use crate::config::{HeaderMatchConfig, MatchConfig, RouteRuleConfig};
use crate::pipeline::mode::ModeSpec;
use crate::pipeline::route::TablePattern;

/// What a matching rule says.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Do not store; acknowledged and counted as discarded.
    Drop,
    /// Store with this table (else the mode's table list) in this mode (index into the mode
    /// list; else the default mode).
    Store {
        /// Table pattern (Kamailio `sip_capture(table)`).
        table: Option<TablePattern>,
        /// Capture mode index.
        mode: Option<usize>,
    },
}

/// The compiled rule list.
#[derive(Debug, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    conditions: Conditions,
    action: Action,
}

#[derive(Debug, Default)]
struct Conditions {
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

fn compile_conditions(m: &MatchConfig, key: &str) -> Result<Conditions, ConfigError> {
    let cidrs = |list: &[String], field: &str| {
        list.iter()
            .map(|s| Cidr::parse(s).map_err(|e| ConfigError::invalid(format!("{key}.{field}"), e)))
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
    Ok(Conditions {
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

impl Rules {
    /// Compiles and validates the configured rules against the capture modes; errors name the
    /// key (`route[2].match.reply_code`).
    pub fn compile(config: &[RouteRuleConfig], modes: &[ModeSpec]) -> Result<Self, ConfigError> {
        let mut rules = Vec::with_capacity(config.len());
        for (i, rule) in config.iter().enumerate() {
            let key = format!("route[{i}]");
            let conditions = compile_conditions(&rule.matches, &format!("{key}.match"))?;
            let action = if rule.drop {
                if rule.table.is_some() || rule.capture_mode.is_some() {
                    return Err(ConfigError::invalid(
                        format!("{key}.drop"),
                        "a dropping rule cannot also name a table or capture_mode",
                    ));
                }
                Action::Drop
            } else {
                let table = rule
                    .table
                    .as_deref()
                    .map(TablePattern::parse)
                    .transpose()
                    .map_err(|e| ConfigError::invalid(format!("{key}.table"), e.to_string()))?;
                let mode = rule
                    .capture_mode
                    .as_deref()
                    .map(|name| {
                        modes.iter().position(|m| m.name == name).ok_or_else(|| {
                            ConfigError::invalid(
                                format!("{key}.capture_mode"),
                                format!("no capture mode named {name:?}"),
                            )
                        })
                    })
                    .transpose()?;
                if table.is_none() && mode.is_none() {
                    return Err(ConfigError::invalid(
                        key,
                        "a rule needs `table`, `capture_mode` or `drop = true`",
                    ));
                }
                Action::Store { table, mode }
            };
            rules.push(Rule { conditions, action });
        }
        Ok(Rules { rules })
    }

    /// Table patterns the rules name (for retention).
    pub fn tables(&self) -> impl Iterator<Item = &TablePattern> {
        self.rules.iter().filter_map(|r| match &r.action {
            Action::Store { table, .. } => table.as_ref(),
            Action::Drop => None,
        })
    }

    /// The action of the first rule that matches `record`, if any.
    pub fn decide(&self, record: &CaptureRecord) -> Option<&Action> {
        self.rules
            .iter()
            .find(|r| r.conditions.hold(record))
            .map(|r| &r.action)
    }
}

impl Conditions {
    fn hold(&self, record: &CaptureRecord) -> bool {
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
mod tests {
    use super::*;
    use crate::pipeline::mode::{HashSource, MtMode};
    use sipcapture_proto::v1::HepMeta;

    fn modes() -> Vec<ModeSpec> {
        ["default", "cap1"]
            .iter()
            .map(|n| ModeSpec {
                name: (*n).to_owned(),
                db_url: "sqlite::memory:".into(),
                table_name: "sip_capture".into(),
                mt_mode: MtMode::Rand,
                hash_source: HashSource::CallId,
                db_max_connections: 1,
            })
            .collect()
    }

    fn rules(toml_text: &str) -> Result<Rules, ConfigError> {
        #[derive(serde::Deserialize)]
        struct Doc {
            route: Vec<RouteRuleConfig>,
        }
        let doc: Doc = toml::from_str(toml_text).unwrap();
        Rules::compile(&doc.route, &modes())
    }

    fn record(method: &str, msg_type: u32, ua: &str) -> CaptureRecord {
        CaptureRecord {
            kind: RecordKind::Sip as i32,
            src_ip: vec![10, 1, 2, 3],
            src_port: 5060,
            dst_ip: vec![192, 0, 2, 1],
            dst_port: 5080,
            node: "homer01:7".into(),
            hep: Some(HepMeta {
                payload_type: 1,
                ..Default::default()
            }),
            sip: Some(SipFields {
                msg_type,
                method: method.into(),
                cseq_method: "INVITE".into(),
                user_agent: ua.into(),
                from_user: "alice".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn first_matching_rule_decides() {
        let r = rules(
            r#"
            [[route]]
            match = { header = { name = "user_agent", prefix = "friendly-scanner" } }
            drop = true
            [[route]]
            match = { reply_code = "4xx", cseq_method = "INVITE" }
            table = "failed_calls_%Y%m%d"
            [[route]]
            match = { src_ip = "10.0.0.0/8", src_port = [5060, 5061], node = "homer01:7" }
            capture_mode = "cap1"
            "#,
        )
        .unwrap();
        assert_eq!(
            r.decide(&record("INVITE", 1, "friendly-scanner 1.0")),
            Some(&Action::Drop)
        );
        match r.decide(&record("486", 2, "ua")) {
            Some(Action::Store {
                table: Some(t),
                mode: None,
            }) => {
                assert_eq!(t.as_str(), "failed_calls_%Y%m%d");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            r.decide(&record("200", 2, "ua")),
            Some(&Action::Store {
                table: None,
                mode: Some(1)
            })
        );
        let mut elsewhere = record("INVITE", 1, "ua");
        elsewhere.src_ip = vec![172, 16, 0, 1];
        assert_eq!(r.decide(&elsewhere), None);
    }

    #[test]
    fn header_regex_exact_and_ranges() {
        let r = rules(
            r#"
            [[route]]
            match = { header = [{ name = "from_user", regex = "^ali" }, { name = "user_agent", exact = "x" }], reply_code = ["180", "200-299"], dst_ip = "192.0.2.0/24", payload_type = 1, method = ["183", "200"] }
            table = "hits"
            "#,
        )
        .unwrap();
        assert!(r.decide(&record("200", 2, "x")).is_some());
        assert!(r.decide(&record("200", 2, "y")).is_none());
        assert!(
            r.decide(&record("183", 2, "x")).is_none(),
            "183 is outside the code ranges"
        );
        assert!(
            r.decide(&record("200", 1, "x")).is_none(),
            "a request has no reply code"
        );
    }

    #[test]
    fn bad_rules_name_their_key() {
        for (text, key) in [
            (
                "[[route]]\nmatch = { reply_code = \"4zz\" }\ndrop = true",
                "route[0].match.reply_code",
            ),
            (
                "[[route]]\nmatch = { src_ip = \"10.0.0.0/33\" }\ndrop = true",
                "route[0].match.src_ip",
            ),
            (
                "[[route]]\nmatch = { header = { name = \"nope\", exact = \"a\" } }\ndrop = true",
                "route[0].match.header[0].name",
            ),
            (
                "[[route]]\nmatch = { header = { name = \"callid\", regex = \"(\" } }\ndrop = true",
                "route[0].match.header[0].regex",
            ),
            (
                "[[route]]\ncapture_mode = \"nope\"",
                "route[0].capture_mode",
            ),
            ("[[route]]\ntable = \"bad-name\"", "route[0].table"),
            ("[[route]]\nmatch = { method = \"INVITE\" }", "route[0]"),
        ] {
            let err = rules(text).unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }

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
