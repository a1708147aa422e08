//! `heplify-server.toml` → the all-in-one config. heplify-server's options are flat
//! `Name = value` lines; each is translated or listed with the reason it is not.

use std::collections::HashMap;
use std::net::SocketAddr;

use sipcapture_storer::config::{MatchConfig, RouteRuleConfig};
use toml::Value;

use super::emit::{Document, Section};

/// heplify-server's defaults (config/config.go) for the options that build one of our keys.
const DEFAULTS: &[(&str, &str)] = &[
    ("HEPAddr", "0.0.0.0:9060"),
    ("DBShema", "homer5"),
    ("DBDriver", "mysql"),
    ("DBAddr", "localhost:3306"),
    ("DBUser", "root"),
    ("DBPass", ""),
    ("DBDataTable", "homer_data"),
    ("DBSSLMode", "disable"),
    ("PromAddr", ":9096"),
];

/// Options that have no counterpart, with the reason.
const NOT_APPLICABLE: &[(&str, &str)] = &[
    ("ES", "Elasticsearch output is not supported"),
    ("Loki", "Loki output is not supported"),
    (
        "Lineproto",
        "InfluxDB line protocol output is not supported",
    ),
    (
        "PromTarget",
        "per-target Prometheus gauges are not supported",
    ),
    ("HEPWSAddr", "HEP over WebSocket is not supported"),
    ("HEPv2Enable", "HEP v1/v2 are always accepted"),
    ("ForceHEPPayload", "not supported"),
    (
        "DBConfTable",
        "homer-app's configuration database is not used by the capture server",
    ),
    (
        "DBBulk",
        "batching is the collector's batch_max_records / batch_max_delay_ms (defaults kept)",
    ),
    (
        "DBTimer",
        "batching is the collector's batch_max_delay_ms (default kept)",
    ),
    (
        "DBBuffer",
        "buffering is the collector's queue_capacity and spool (defaults kept)",
    ),
    (
        "DBWorker",
        "writers are delivery lanes (collector.storer_lanes, set per database)",
    ),
    (
        "DBRotate",
        "tables and partitions are always created as needed",
    ),
    ("DBPartIsup", "ISUP has no table of its own here"),
    (
        "DBDropOnStart",
        "retention always runs at start-up and every retention_interval",
    ),
    (
        "DBUsage",
        "size-based dropping is not supported: use retention_days",
    ),
    (
        "DBPercentageUsage",
        "size-based dropping is not supported: use retention_days",
    ),
    (
        "DBMaxSize",
        "size-based dropping is not supported: use retention_days",
    ),
    (
        "DBProcDropLimit",
        "size-based dropping is not supported: use retention_days",
    ),
    ("CensorMethod", "not supported"),
    (
        "ForceALegID",
        "not supported: callid_aleg is taken from callid_aleg_header only",
    ),
    (
        "IgnoreCaseCH",
        "header names are always matched case-insensitively",
    ),
    ("SIPHeader", "the HOMER 7 data_header keys are fixed"),
    ("LogDbg", "use log_level (RUST_LOG syntax)"),
    ("LogStd", "logs always go to stderr"),
    ("LogSys", "syslog is not supported: logs go to stderr"),
    ("Config", "the config file is given with --config"),
    ("ConfigHTTP", "the web configuration page is not supported"),
    ("Version", "use `sipcapture --version`"),
    (
        "Script",
        "the Lua hook is configured with nonsip_hook / script_file (docs/SCRIPTING.md)",
    ),
    (
        "TLSCertFolder",
        "HEP over TLS takes hep_tls_cert / hep_tls_key",
    ),
    ("TLSMinVersion", "TLS 1.2 and 1.3 are accepted"),
];

/// The options `translate` turns into keys.
const TRANSLATED: &[&str] = &[
    "HEPAddr",
    "HEPTCPAddr",
    "HEPTLSAddr",
    "DBShema",
    "DBDriver",
    "DBAddr",
    "DBUser",
    "DBPass",
    "DBDataTable",
    "DBSSLMode",
    "DBDropDays",
    "DBDropDaysCall",
    "DBDropDaysRegister",
    "DBDropDaysDefault",
    "DBPartSip",
    "DBPartQos",
    "DBPartLog",
    "Dedup",
    "DiscardMethod",
    "AlegIDs",
    "CustomHeader",
    "PromAddr",
    "LogLvl",
];

struct Options {
    values: HashMap<String, Value>,
    lines: HashMap<String, usize>,
}

impl Options {
    fn line(&self, key: &str) -> Option<usize> {
        self.lines.get(key).copied()
    }

    fn str(&self, key: &str) -> String {
        match self.values.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => DEFAULTS
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(String::new(), |(_, v)| (*v).to_owned()),
        }
    }

    /// Lists `key = value` as not translated.
    fn refuse(&self, doc: &mut Document, key: &str, reason: &str) {
        doc.note(
            self.line(key),
            format!("{key} = {:?}", self.str(key)),
            reason,
        );
    }

    fn int(&self, key: &str) -> i64 {
        match self.values.get(key) {
            Some(Value::Integer(n)) => *n,
            Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
            _ => 0,
        }
    }

    fn list(&self, key: &str) -> Vec<String> {
        match self.values.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .filter(|s| !s.trim().is_empty())
                .collect(),
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Go's `host:port` with an optional host (`:9096`) → a socket address.
fn addr(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_owned()
    };
    full.parse().ok()
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Go duration `2h` / `30m` / `1h30m` → minutes.
fn minutes(s: &str) -> Option<u32> {
    let mut total = 0u32;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            let n: u32 = num.parse().ok()?;
            num.clear();
            total += match c {
                'h' => n * 60,
                'm' => n,
                _ => return None,
            };
        }
    }
    (num.is_empty() && total > 0).then_some(total)
}

/// Translates a heplify-server config into `doc`; `Err` when the text is not TOML.
pub fn translate(text: &str, doc: &mut Document) -> Result<(), String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| format!("not a heplify-server TOML config: {e}"))?;
    let mut lines = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if let Some((key, _)) = line.trim_start().split_once('=') {
            lines.entry(key.trim().to_owned()).or_insert(i + 1);
        }
    }
    let opts = Options {
        values: table.clone().into_iter().collect(),
        lines,
    };
    for key in table.keys() {
        if TRANSLATED.contains(&key.as_str()) {
            continue;
        }
        let reason = NOT_APPLICABLE
            .iter()
            .filter(|(prefix, _)| key.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or("unknown heplify-server option: not translated", |(_, r)| *r);
        let value = super::emit::inline(&table[key]);
        doc.note(
            opts.line(key),
            format!("{key} = {value}"),
            format!("not applicable: {reason}"),
        );
    }
    listeners(&opts, doc);
    database(&opts, doc);
    retention(&opts, doc);
    sip(&opts, doc);
    if let Some(prom) = opts.values.get("PromAddr").map(|_| opts.str("PromAddr")) {
        if prom.trim().is_empty() {
            // heplify-server without a Prometheus endpoint: ours is off by default too.
        } else if let Some(a) = addr(&prom) {
            doc.set(
                Section::Top,
                "metrics_listen",
                a.to_string(),
                opts.line("PromAddr"),
            );
        } else {
            doc.note(
                opts.line("PromAddr"),
                format!("PromAddr = {prom:?}"),
                "not an address",
            );
        }
    }
    if opts.values.contains_key("LogLvl") {
        let level = match opts.str("LogLvl").to_ascii_lowercase().as_str() {
            "warning" => "warn".to_owned(),
            "critical" => "error".to_owned(),
            other => other.to_owned(),
        };
        doc.set(Section::Top, "log_level", level, opts.line("LogLvl"));
    }
    Ok(())
}

fn listeners(opts: &Options, doc: &mut Document) {
    let udp = opts.str("HEPAddr");
    let tcp = opts.str("HEPTCPAddr");
    let tls = opts.str("HEPTLSAddr");
    let c = Section::Collector;
    match (addr(&udp), udp.trim().is_empty()) {
        (Some(a), _) => {
            doc.set(c, "hep_listen", a.to_string(), opts.line("HEPAddr"));
            doc.set(c, "hep_udp", true, opts.line("HEPAddr"));
        }
        (None, true) => doc.set(c, "hep_udp", false, opts.line("HEPAddr")),
        (None, false) => doc.note(
            opts.line("HEPAddr"),
            format!("HEPAddr = {udp:?}"),
            "not an address",
        ),
    }
    let tcp_line = opts.line("HEPTCPAddr");
    if tcp.trim().is_empty() {
        doc.set(c, "hep_tcp", false, tcp_line);
    } else {
        match addr(&tcp) {
            Some(t) if udp.trim().is_empty() => {
                doc.set(c, "hep_listen", t.to_string(), tcp_line);
                doc.set(c, "hep_tcp", true, tcp_line);
            }
            Some(t) if addr(&udp) == Some(t) => doc.set(c, "hep_tcp", true, tcp_line),
            _ => {
                doc.set(c, "hep_tcp", false, tcp_line);
                doc.note(
                    tcp_line,
                    format!("HEPTCPAddr = {tcp:?}"),
                    "HEP over TCP shares hep_listen with UDP here; a different address is not \
                     translated (TCP is off)",
                );
            }
        }
    }
    if !tls.trim().is_empty() {
        match addr(&tls) {
            Some(a) => {
                doc.set_disabled(
                    c,
                    "hep_tls_listen",
                    a.to_string(),
                    opts.line("HEPTLSAddr"),
                    "heplify-server made its own certificate (TLSCertFolder): set hep_tls_cert \
                     and hep_tls_key, then uncomment",
                );
                doc.note(
                    opts.line("HEPTLSAddr"),
                    format!("HEPTLSAddr = {tls:?}"),
                    "written commented out: HEP over TLS needs hep_tls_cert and hep_tls_key",
                );
            }
            None => doc.note(
                opts.line("HEPTLSAddr"),
                format!("HEPTLSAddr = {tls:?}"),
                "not an address",
            ),
        }
    }
}

fn database(opts: &Options, doc: &mut Document) {
    let s = Section::Storer;
    let schema = opts.str("DBShema").to_ascii_lowercase();
    let homer7 = schema == "homer7";
    match schema.as_str() {
        "homer5" | "homer7" => doc.set(s, "schema", schema.clone(), opts.line("DBShema")),
        other => doc.note(
            opts.line("DBShema"),
            format!("DBShema = {other:?}"),
            "only homer5 and homer7 are supported: schema left at homer5",
        ),
    }
    let driver = opts.str("DBDriver").to_ascii_lowercase();
    let scheme = match driver.as_str() {
        "mysql" => "mysql",
        "postgres" | "postgresql" => "postgres",
        _ => {
            opts.refuse(
                doc,
                "DBDriver",
                "only mysql and postgres are supported: db_url not translated",
            );
            return;
        }
    };
    let db_addr = opts.str("DBAddr");
    let line = opts
        .line("DBAddr")
        .or(opts.line("DBDriver"))
        .or(opts.line("DBUser"));
    if db_addr.starts_with("unix:") {
        opts.refuse(
            doc,
            "DBAddr",
            "a Unix socket: not translated, set db_url by hand",
        );
        return;
    }
    let user = opts.str("DBUser");
    let pass = opts.str("DBPass");
    let credentials = match (user.is_empty(), pass.is_empty()) {
        (true, _) => String::new(),
        (false, true) => format!("{}@", encode(&user)),
        (false, false) => format!("{}:{}@", encode(&user), encode(&pass)),
    };
    let mut url = format!(
        "{scheme}://{credentials}{db_addr}/{}",
        encode(&opts.str("DBDataTable"))
    );
    let ssl = opts.str("DBSSLMode");
    if scheme == "postgres" && !ssl.is_empty() && ssl != "disable" {
        url.push_str(&format!("?sslmode={}", encode(&ssl)));
    }
    doc.set(s, "db_url", url, line);
    for (key, ours) in [
        ("DBPartSip", "partition_sip_minutes"),
        ("DBPartQos", "partition_qos_minutes"),
        ("DBPartLog", "partition_log_minutes"),
    ] {
        if !opts.values.contains_key(key) {
            continue;
        }
        let raw = opts.str(key);
        match minutes(&raw) {
            Some(m) if homer7 => doc.set(s, ours, i64::from(m), opts.line(key)),
            Some(_) => doc.note(
                opts.line(key),
                format!("{key} = {raw:?}"),
                "not applicable: HOMER 5 tables are daily",
            ),
            None => doc.note(opts.line(key), format!("{key} = {raw:?}"), "not a duration"),
        }
    }
}

fn retention(opts: &Options, doc: &mut Document) {
    let base = opts.int("DBDropDays");
    let per_type = ["DBDropDaysCall", "DBDropDaysRegister", "DBDropDaysDefault"];
    let effective: Vec<i64> = per_type
        .iter()
        .map(|k| match opts.int(k) {
            0 => base,
            n => n,
        })
        .collect();
    let days = effective
        .iter()
        .copied()
        .chain([base])
        .max()
        .unwrap_or(0)
        .max(0);
    if opts.values.contains_key("DBDropDays") || effective.iter().any(|d| *d != base) {
        doc.set(
            Section::Storer,
            "retention_days",
            days,
            opts.line("DBDropDays"),
        );
    }
    if days != base && opts.values.contains_key("DBDropDays") {
        doc.note(
            opts.line("DBDropDays"),
            format!("DBDropDays = {base}"),
            format!(
                "one retention for every table here: retention_days = {days} (the longest of \
                 DBDropDays*), so nothing is dropped earlier than heplify-server would"
            ),
        );
    }
    for (key, d) in per_type.iter().zip(&effective) {
        if opts.int(key) != 0 && *d != days {
            doc.note(
                opts.line(key),
                format!("{key} = {}", opts.int(key)),
                format!(
                    "one retention for every table here: retention_days = {days} (the longest), \
                     so nothing is dropped earlier than heplify-server would"
                ),
            );
        }
    }
}

fn sip(opts: &Options, doc: &mut Document) {
    if let Some(v) = opts.values.get("Dedup") {
        doc.set(
            Section::Storer,
            "dedup",
            v.as_bool().unwrap_or(false),
            opts.line("Dedup"),
        );
    }
    let discard = opts.list("DiscardMethod");
    if !discard.is_empty() {
        doc.route(
            RouteRuleConfig {
                matches: MatchConfig {
                    payload_type: vec![1],
                    cseq_method: discard.iter().map(|m| m.to_ascii_uppercase()).collect(),
                    ..Default::default()
                },
                drop: true,
                ..Default::default()
            },
            format!(
                "line {}: DiscardMethod (requests and replies of these CSeq methods)",
                opts.line("DiscardMethod").unwrap_or(0)
            ),
        );
    }
    let aleg = opts.list("AlegIDs");
    if !aleg.is_empty() {
        let mut names = Vec::new();
        for entry in &aleg {
            let (name, regex) = match entry.split_once(',') {
                Some((n, r)) => (n.trim(), Some(r)),
                None => (entry.trim(), None),
            };
            if let Some(regex) = regex {
                doc.note(
                    opts.line("AlegIDs"),
                    format!("AlegIDs entry {entry:?}"),
                    format!(
                        "the value regex {regex:?} is not supported: the whole {name} value is \
                         the A-leg Call-ID"
                    ),
                );
            }
            names.push(name.to_owned());
        }
        doc.set(
            Section::Collector,
            "callid_aleg_header",
            names.join(";"),
            opts.line("AlegIDs"),
        );
    }
    let custom = opts.list("CustomHeader");
    for (i, name) in custom.iter().enumerate() {
        if i < 3 {
            doc.set(
                Section::Collector,
                &format!("custom_field{}_header", i + 1),
                name.clone(),
                opts.line("CustomHeader"),
            );
        } else {
            doc.note(
                opts.line("CustomHeader"),
                format!("CustomHeader entry {name:?}"),
                "at most 3 custom headers (custom_field1..3_header): not translated",
            );
        }
    }
    if !custom.is_empty() {
        let kept: Vec<Value> = custom
            .iter()
            .take(3)
            .map(|s| Value::from(s.as_str()))
            .collect();
        doc.set(
            Section::Storer,
            "homer7_custom_fields",
            Value::Array(kept),
            opts.line("CustomHeader"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(addr(":9096"), Some("0.0.0.0:9096".parse().unwrap()));
        assert_eq!(
            addr("127.0.0.1:9060"),
            Some("127.0.0.1:9060".parse().unwrap())
        );
        assert_eq!(addr("localhost:9060"), None);
        assert_eq!(minutes("2h"), Some(120));
        assert_eq!(minutes("1h30m"), Some(90));
        assert_eq!(minutes("2d"), None);
        assert_eq!(encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    }
}
