//! Routing rules: the declarative replacement of Kamailio's routing script around
//! `sip_capture(table, mode)`. Rules are tried in order; the first whose conditions all hold
//! decides: store (a table pattern and/or a capture mode) or drop. This file owns the rules' config
//! type ([`RouteRuleConfig`], `[[route]]`) and only matches; [`crate::pipeline::route`] turns the
//! decision into a table.

use serde::{Deserialize, Serialize};
use sipcapture_proto::v1::CaptureRecord;
use sipcapture_runtime::config::ConfigError;
use sipcapture_runtime::matching::Matcher;

pub use sipcapture_runtime::matching::{HeaderMatchConfig, MatchConfig};

use crate::pipeline::mode::ModeSpec;
use crate::table::TablePattern;

/// One routing rule as configured (`[[route]]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRuleConfig {
    /// Conditions; all given ones must hold (a list holds when any entry matches). An empty
    /// `match` matches every record.
    #[serde(rename = "match", default)]
    pub matches: MatchConfig,
    /// Table pattern to store in (strftime allowed); Kamailio's `sip_capture(table)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Capture mode to store with; Kamailio's `sip_capture("", mode)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_mode: Option<String>,
    /// Do not store matching records (acknowledged and counted as discarded).
    #[serde(default)]
    pub drop: bool,
}

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
    conditions: Matcher,
    action: Action,
}

impl Rules {
    /// Compiles and validates the configured rules against the capture modes; errors name the
    /// key (`route[2].match.reply_code`).
    pub fn compile(config: &[RouteRuleConfig], modes: &[ModeSpec]) -> Result<Self, ConfigError> {
        let mut rules = Vec::with_capacity(config.len());
        for (i, rule) in config.iter().enumerate() {
            let key = format!("route[{i}]");
            let conditions = Matcher::compile(&rule.matches, &format!("{key}.match"))?;
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
            .find(|r| r.conditions.holds(record))
            .map(|r| &r.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::mode::{HashSource, MtMode};
    use sipcapture_proto::v1::{HepMeta, RecordKind, SipFields};

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
                schema: crate::pipeline::mode::StorageSchema::Homer5,
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
}
