//! The migrated config as a TOML document: top-level keys, `[collector]`, `[storer]` and the
//! `[[storer.route]]` rules, each line commented with the source line it came from; plus the
//! notes (what was not translated, and why).

use sipcapture_storer::config::RouteRuleConfig;
use toml::Value;

use super::detect::Format;

/// A line or option that was not translated (or only approximately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// 1-based line in the source file, when the item has one.
    pub line: Option<usize>,
    /// The item: a statement, a parameter, an option.
    pub item: String,
    /// Why it was not translated, or what was done instead.
    pub reason: String,
}

impl Note {
    /// `FILE:LINE: ITEM: REASON`.
    pub fn render(&self, file: &str) -> String {
        match self.line {
            Some(line) => format!("{file}:{line}: {}: {}", self.item, self.reason),
            None => format!("{file}: {}: {}", self.item, self.reason),
        }
    }
}

/// The sections of the all-in-one config a key goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Top-level keys of `sipcapture up` (`metrics_listen`, `log_level`).
    Top,
    /// `[collector]`.
    Collector,
    /// `[storer]`.
    Storer,
}

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    value: Value,
    line: Option<usize>,
    /// Written commented out, with this explanation (the key needs something the source
    /// did not have, e.g. a certificate).
    disabled: Option<String>,
}

#[derive(Debug, Clone)]
struct Route {
    rule: RouteRuleConfig,
    comment: String,
}

/// The config being built.
#[derive(Debug, Clone)]
pub struct Document {
    format: Format,
    name: String,
    top: Vec<Entry>,
    collector: Vec<Entry>,
    storer: Vec<Entry>,
    routes: Vec<Route>,
    notes: Vec<Note>,
}

impl Document {
    /// An empty document for a source file.
    pub fn new(format: Format, name: &str) -> Self {
        Document {
            format,
            name: name.to_owned(),
            top: Vec::new(),
            collector: Vec::new(),
            storer: Vec::new(),
            routes: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn entries(&mut self, section: Section) -> &mut Vec<Entry> {
        match section {
            Section::Top => &mut self.top,
            Section::Collector => &mut self.collector,
            Section::Storer => &mut self.storer,
        }
    }

    /// Sets `key` (a later value replaces an earlier one, as in the sources).
    pub fn set(
        &mut self,
        section: Section,
        key: &str,
        value: impl Into<Value>,
        line: Option<usize>,
    ) {
        self.put(section, key, value.into(), line, None);
    }

    /// Writes `key` commented out, with the reason (something the source did not have).
    pub fn set_disabled(
        &mut self,
        section: Section,
        key: &str,
        value: impl Into<Value>,
        line: Option<usize>,
        why: &str,
    ) {
        self.put(section, key, value.into(), line, Some(why.to_owned()));
    }

    fn put(
        &mut self,
        section: Section,
        key: &str,
        value: Value,
        line: Option<usize>,
        disabled: Option<String>,
    ) {
        let entries = self.entries(section);
        let entry = Entry {
            key: key.to_owned(),
            value,
            line,
            disabled,
        };
        match entries.iter_mut().find(|e| e.key == key) {
            Some(existing) => *existing = entry,
            None => entries.push(entry),
        }
    }

    /// Appends `value` to the array `key`.
    pub fn push(
        &mut self,
        section: Section,
        key: &str,
        value: impl Into<Value>,
        line: Option<usize>,
    ) {
        let value = value.into();
        let entries = self.entries(section);
        match entries.iter_mut().find(|e| e.key == key) {
            Some(Entry {
                value: Value::Array(list),
                ..
            }) => list.push(value),
            _ => entries.push(Entry {
                key: key.to_owned(),
                value: Value::Array(vec![value]),
                line,
                disabled: None,
            }),
        }
    }

    /// The value of `key`, if set (and not disabled).
    pub fn get(&self, section: Section, key: &str) -> Option<&Value> {
        let entries = match section {
            Section::Top => &self.top,
            Section::Collector => &self.collector,
            Section::Storer => &self.storer,
        };
        entries
            .iter()
            .find(|e| e.key == key && e.disabled.is_none())
            .map(|e| &e.value)
    }

    /// Records an item not translated.
    pub fn note(
        &mut self,
        line: Option<usize>,
        item: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.notes.push(Note {
            line,
            item: item.into(),
            reason: reason.into(),
        });
    }

    /// Appends a routing rule (`comment` names its source).
    pub fn route(&mut self, rule: RouteRuleConfig, comment: impl Into<String>) {
        self.routes.push(Route {
            rule,
            comment: comment.into(),
        });
    }

    /// The routing rules so far.
    pub fn routes(&self) -> Vec<RouteRuleConfig> {
        self.routes.iter().map(|r| r.rule.clone()).collect()
    }

    /// The notes in line order (items without a line last), each once.
    pub fn sorted_notes(&self) -> Vec<Note> {
        let mut notes = self.notes.clone();
        notes.sort_by_key(|n| n.line.unwrap_or(usize::MAX));
        notes.dedup();
        notes
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let mut out = format!(
            "# sipcapture config migrated by `sipcapture migrate` from {} ({}).\n\
             # Check it with `sipcapture up --config FILE --check-config`; what could not be\n\
             # translated was listed on stderr ({} item(s)), see docs/MIGRATING.md.\n",
            self.name,
            self.format.name(),
            self.sorted_notes().len()
        );
        write_entries(&mut out, &self.top);
        for (name, entries) in [("collector", &self.collector), ("storer", &self.storer)] {
            if entries.is_empty() && (name != "storer" || self.routes.is_empty()) {
                continue;
            }
            out.push_str(&format!("\n[{name}]\n"));
            write_entries(&mut out, entries);
        }
        for route in &self.routes {
            out.push_str(&format!("\n# {}\n[[storer.route]]\n", route.comment));
            let m = Value::try_from(&route.rule.matches)
                .unwrap_or_else(|_| Value::Table(toml::Table::new()));
            out.push_str(&format!("match = {}\n", inline(&m)));
            if let Some(table) = &route.rule.table {
                out.push_str(&format!(
                    "table = {}\n",
                    inline(&Value::from(table.as_str()))
                ));
            }
            if let Some(mode) = &route.rule.capture_mode {
                out.push_str(&format!(
                    "capture_mode = {}\n",
                    inline(&Value::from(mode.as_str()))
                ));
            }
            if route.rule.drop {
                out.push_str("drop = true\n");
            }
        }
        out
    }
}

fn write_entries(out: &mut String, entries: &[Entry]) {
    for e in entries {
        let source = e.line.map(|l| format!("  # line {l}")).unwrap_or_default();
        match &e.disabled {
            None => out.push_str(&format!("{} = {}{source}\n", e.key, inline(&e.value))),
            Some(why) => out.push_str(&format!(
                "# {why}\n# {} = {}{source}\n",
                e.key,
                inline(&e.value)
            )),
        }
    }
}

/// A value in TOML's one-line form (inline tables and arrays).
pub fn inline(value: &Value) -> String {
    match value {
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Table(table) => {
            if table.is_empty() {
                return "{}".to_owned();
            }
            let items: Vec<String> = table
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), inline(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        other => other.to_string(),
    }
}

fn key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_owned()
    } else {
        Value::from(k).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcapture_storer::config::{HeaderMatchConfig, MatchConfig};

    #[test]
    fn renders_sections_rules_and_disabled_keys_as_valid_toml() {
        let mut doc = Document::new(Format::Kamailio, "k.cfg");
        doc.set(Section::Storer, "db_url", "sqlite://a \"b\".db", Some(3));
        doc.set(Section::Storer, "db_url", "sqlite://x.db", Some(4));
        doc.push(
            Section::Storer,
            "capture_mode",
            "m=>db_url=sqlite://m.db;table_name=t",
            Some(5),
        );
        doc.set(Section::Collector, "hep_tcp", false, None);
        doc.set_disabled(
            Section::Collector,
            "hep_tls_listen",
            "0.0.0.0:9061",
            Some(9),
            "needs a certificate",
        );
        doc.route(
            RouteRuleConfig {
                matches: MatchConfig {
                    method: vec!["INVITE".into()],
                    payload_type: vec![1],
                    header: vec![HeaderMatchConfig {
                        name: "user_agent".into(),
                        regex: Some("friendly-scanner".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                drop: true,
                ..Default::default()
            },
            "line 7",
        );
        let text = doc.render();
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        let storer = parsed["storer"].as_table().unwrap();
        assert_eq!(storer["db_url"].as_str(), Some("sqlite://x.db"));
        assert_eq!(storer["capture_mode"].as_array().unwrap().len(), 1);
        let route = &storer["route"].as_array().unwrap()[0];
        assert_eq!(route["drop"].as_bool(), Some(true));
        assert_eq!(
            route["match"]["header"][0]["regex"].as_str(),
            Some("friendly-scanner")
        );
        assert!(
            text.contains("# hep_tls_listen = \"0.0.0.0:9061\"  # line 9"),
            "{text}"
        );
        assert!(parsed["collector"].get("hep_tls_listen").is_none());
    }
}
