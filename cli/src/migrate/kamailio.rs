//! `kamailio.cfg` → the all-in-one config: the top-level statements (`modparam`, `loadmodule`,
//! core settings such as `listen=`), then the route blocks through [`super::script`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::ast::{Stmt, inner, matching, parse_block, split_top, text_of};
use super::emit::{Document, Section};
use super::lex::{Preprocessed, Tok, Token, preprocess};
use super::rules::{ANY_REPLY, FoundRule, simplify};
use super::script::{Scope, Walker};
use sipcapture_storer::config::{MatchConfig, RouteRuleConfig};

/// A `modparam` value.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Num(String),
    /// A name no `#!define` in the file gives a value.
    Undefined(String),
    Other(String),
}

impl Val {
    fn int(&self) -> Option<i64> {
        match self {
            Val::Str(s) | Val::Num(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn string(&self) -> Option<String> {
        match self {
            Val::Str(s) | Val::Num(s) => Some(s.clone()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Block {
    kind: String,
    name: Option<String>,
    line: usize,
    end_line: usize,
    body: Vec<Stmt>,
}

/// What the top level holds.
#[derive(Debug, Default)]
struct TopLevel {
    modparams: Vec<(usize, String, String, Val)>,
    core: Vec<(usize, String, String)>,
    modules: Vec<(usize, String)>,
    blocks: Vec<Block>,
}

const ROUTE_KINDS: &[&str] = &[
    "route",
    "request_route",
    "onreply_route",
    "reply_route",
    "failure_route",
    "branch_route",
    "onsend_route",
    "event_route",
];

fn parse_top(pre: &Preprocessed, tokens: &[Token], doc: &mut Document) -> TopLevel {
    let mut top = TopLevel::default();
    let mut i = 0;
    let skip_line = |i: usize| {
        let line = tokens[i].line;
        let mut j = i;
        while j < tokens.len() && tokens[j].line == line {
            j += 1;
        }
        j
    };
    while i < tokens.len() {
        let t = &tokens[i];
        let next = tokens.get(i + 1).map(|n| &n.tok);
        match &t.tok {
            Tok::Ident(kw)
                if ROUTE_KINDS.contains(&kw.as_str())
                    && next.is_some_and(|n| n.is("[") || n.is("{")) =>
            {
                let mut j = i + 1;
                let mut name = None;
                if tokens[j].tok.is("[") {
                    let close = matching(tokens, j);
                    name = Some(
                        inner(tokens, j, close)
                            .iter()
                            .map(|t| match &t.tok {
                                Tok::Str(s) => s.clone(),
                                other => other.text(),
                            })
                            .collect::<String>(),
                    );
                    j = close + 1;
                }
                if !tokens.get(j).is_some_and(|t| t.tok.is("{")) {
                    doc.note(
                        Some(t.line),
                        kw.clone(),
                        "route block without a body: ignored",
                    );
                    i = j;
                    continue;
                }
                let close = matching(tokens, j);
                top.blocks.push(Block {
                    kind: kw.clone(),
                    name,
                    line: t.line,
                    end_line: tokens[close].line,
                    body: parse_block(inner(tokens, j, close)),
                });
                i = close + 1;
            }
            Tok::Ident(kw) if kw == "modparam" && next.is_some_and(|n| n.is("(")) => {
                let close = matching(tokens, i + 1);
                let args = split_top(inner(tokens, i + 1, close), ",");
                let text = text_of(&tokens[i..=close]);
                match args.as_slice() {
                    [
                        [
                            Token {
                                tok: Tok::Str(module),
                                ..
                            },
                        ],
                        [
                            Token {
                                tok: Tok::Str(name),
                                ..
                            },
                        ],
                        value,
                    ] => {
                        let val = match value {
                            [
                                Token {
                                    tok: Tok::Str(s), ..
                                },
                            ] => Val::Str(s.clone()),
                            [
                                Token {
                                    tok: Tok::Num(s), ..
                                },
                            ] => Val::Num(s.clone()),
                            [
                                Token {
                                    tok: Tok::Ident(s), ..
                                },
                            ] => Val::Undefined(s.clone()),
                            other => Val::Other(text_of(other)),
                        };
                        top.modparams
                            .push((t.line, module.clone(), name.clone(), val));
                    }
                    _ => doc.note(Some(t.line), text, "modparam not understood: ignored"),
                }
                i = close + 1;
            }
            Tok::Ident(kw) if kw == "loadmodule" => {
                if let Some(Tok::Str(module)) = next {
                    top.modules.push((t.line, module.clone()));
                    i += 2;
                } else {
                    i = skip_line(i);
                }
            }
            Tok::Ident(name) if next.is_some_and(|n| n.is("=")) => {
                let raw = pre.lines.get(t.line - 1).map_or("", String::as_str);
                let value = raw.split_once('=').map_or("", |(_, v)| v);
                let value = value
                    .split('#')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_end_matches(';');
                top.core
                    .push((t.line, name.clone(), pre.expand_words(value.trim())));
                i = skip_line(i);
            }
            Tok::Punct(p) if p == ";" => i += 1,
            other => {
                let end = skip_line(i);
                let reason = if other.is_ident("include_file") || other.is_ident("import_file") {
                    "included files are not read: migrate each file and merge the results"
                } else {
                    "not understood at the top level: ignored"
                };
                doc.note(Some(t.line), text_of(&tokens[i..end]), reason);
                i = end;
            }
        }
    }
    top
}

/// Translates a Kamailio config into `doc`.
pub fn translate(text: &str, doc: &mut Document) {
    let pre = preprocess(text, doc);
    let tokens = pre.tokens();
    let top = parse_top(&pre, &tokens, doc);

    let mut db_scheme = None;
    for (line, module) in &top.modules {
        let base = module
            .rsplit('/')
            .next()
            .unwrap_or(module)
            .trim_end_matches(".so");
        match base {
            "sipcapture" => {}
            "db_mysql" => db_scheme = Some("mysql"),
            "db_postgres" => db_scheme = Some("postgres"),
            "db_sqlite" => db_scheme = Some("sqlite"),
            _ => doc.note(
                Some(*line),
                format!("loadmodule \"{module}\""),
                "Kamailio module: not applicable",
            ),
        }
    }
    modparams(&top, db_scheme, doc);
    listen(&top, doc);
    routes(&top, doc);
}

fn flag(doc: &mut Document, section: Section, key: &str, val: &Val, line: usize, item: &str) {
    match val.int() {
        Some(n) => doc.set(section, key, n != 0, Some(line)),
        None => doc.note(Some(line), item, "not an integer: not translated"),
    }
}

fn modparams(top: &TopLevel, db_scheme: Option<&str>, doc: &mut Document) {
    let mut lua_script = None;
    let mut nonsip_hook = None;
    let mut capture_on_set = false;
    for (line, module, name, val) in &top.modparams {
        let line = *line;
        let item = format!("modparam(\"{module}\", \"{name}\")");
        let ours = ["sipcapture", "app_lua", "topoh"].contains(&module.as_str());
        if let (Val::Other(text), true) = (val, ours) {
            doc.note(
                Some(line),
                item,
                format!("value `{text}` is not a literal: not translated"),
            );
            continue;
        }
        if module == "app_lua" && name == "load" {
            lua_script = val.string().map(|s| (line, s));
            continue;
        }
        if module == "topoh" && (name == "mask_key" || name == "callid_prefix") {
            if let Some(s) = val.string() {
                doc.set(Section::Collector, name, s, Some(line));
            }
            continue;
        }
        if module != "sipcapture" {
            doc.note(Some(line), item, format!("module {module}: not applicable"));
            continue;
        }
        let (c, s) = (Section::Collector, Section::Storer);
        match name.as_str() {
            "db_url" => db_url(doc, val, db_scheme, line, &item),
            "table_name" | "mt_mode" | "hash_source" => match val.string() {
                Some(v) => doc.set(s, name, v, Some(line)),
                None => doc.note(Some(line), item, "not a string: not translated"),
            },
            "db_insert_mode" | "insert_retries" | "insert_retry_timeout" => match val.int() {
                Some(n) => doc.set(s, name, n, Some(line)),
                None => doc.note(Some(line), item, "not an integer: not translated"),
            },
            "capture_on" => {
                capture_on_set = true;
                flag(doc, c, "capture_on", val, line, &item);
                flag(doc, s, "capture_on", val, line, &item);
            }
            "capture_mode" => match val.string() {
                Some(v) => doc.push(s, "capture_mode", v, Some(line)),
                None => doc.note(Some(line), item, "not a string: not translated"),
            },
            "hep_capture_on"
            | "raw_ipip_capture_on"
            | "raw_moni_capture_on"
            | "promiscuous_on"
            | "raw_moni_bpf_on"
            | "topoh_unmask"
            | "capture_bad_msgs" => {
                flag(doc, c, name, val, line, &item);
            }
            "nonsip_hook" => nonsip_hook = Some((line, val.int().unwrap_or(0) != 0)),
            "raw_socket_listen"
            | "raw_interface"
            | "callid_aleg_header"
            | "event_callback"
            | "custom_field1_header"
            | "custom_field2_header"
            | "custom_field3_header" => match val.string() {
                Some(v) => doc.set(c, name, v, Some(line)),
                None => doc.note(Some(line), item, "not a string: not translated"),
            },
            "raw_sock_children" => match val.int() {
                Some(n) => doc.set(c, name, n, Some(line)),
                None => doc.note(Some(line), item, "not an integer: not translated"),
            },
            "capture_node" => match val.string() {
                Some(v) => {
                    doc.set(c, name, v.clone(), Some(line));
                    doc.set(s, name, v, Some(line));
                }
                None => doc.note(Some(line), item, "not a string: not translated"),
            },
            _ => doc.note(
                Some(line),
                item,
                "unknown sipcapture parameter: not translated",
            ),
        }
    }
    match (nonsip_hook, lua_script) {
        (Some((line, true)), Some((script_line, script))) => {
            doc.set(Section::Collector, "nonsip_hook", true, Some(line));
            doc.set(Section::Collector, "script_file", script, Some(script_line));
        }
        (Some((line, true)), None) => doc.note(
            Some(line),
            "modparam(\"sipcapture\", \"nonsip_hook\", 1)",
            "runs event_route[sipcapture:request], Kamailio script: port it to a Lua hook \
             (docs/SCRIPTING.md), then set collector.nonsip_hook and collector.script_file",
        ),
        (Some((line, false)), _) => doc.set(Section::Collector, "nonsip_hook", false, Some(line)),
        (None, _) => {}
    }
    if !capture_on_set {
        doc.note(
            None,
            "modparam(\"sipcapture\", \"capture_on\")",
            "not set: Kamailio's default is 0 (no capture); sipcapture captures by default",
        );
    }
}

fn db_url(doc: &mut Document, val: &Val, db_scheme: Option<&str>, line: usize, item: &str) {
    let url = match val {
        Val::Str(s) => s.clone(),
        Val::Undefined(name) => {
            let scheme = db_scheme.unwrap_or("mysql");
            let placeholder = if scheme == "sqlite" {
                "sqlite://homer_data.db".to_owned()
            } else {
                format!("{scheme}://USER:PASSWORD@HOST/homer_data")
            };
            doc.note(
                Some(line),
                item,
                format!(
                    "{name} is not defined in this file: db_url set to the placeholder \
                     {placeholder:?} (scheme from the loaded db module), edit it"
                ),
            );
            doc.set(Section::Storer, "db_url", placeholder, Some(line));
            return;
        }
        _ => {
            doc.note(Some(line), item, "not a string: not translated");
            return;
        }
    };
    let lower = url.to_ascii_lowercase();
    let supported = ["mysql://", "postgres://", "postgresql://", "sqlite://"]
        .iter()
        .any(|p| lower.starts_with(p));
    if supported {
        doc.set(Section::Storer, "db_url", url, Some(line));
    } else {
        doc.note(
            Some(line),
            item,
            format!("{url:?}: only mysql://, postgres:// and sqlite:// databases are supported"),
        );
    }
}

/// A Kamailio listen address: `proto:host:port`, `host:port`, `host`, `[v6]:port`.
fn parse_listen(value: &str, default_port: u16) -> Option<(String, SocketAddr)> {
    let value = value.split_whitespace().next()?;
    let (proto, rest) = match value.split_once(':') {
        Some((p, r)) if ["udp", "tcp", "tls", "sctp", "ws", "wss"].contains(&p) => (p, r),
        _ => ("any", value),
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, tail) = v6.split_once(']')?;
        (h, tail.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (rest, None),
        }
    };
    let ip: IpAddr = host.parse().ok()?;
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    Some((proto.to_owned(), SocketAddr::new(ip, port)))
}

fn listen(top: &TopLevel, doc: &mut Document) {
    let port = top
        .core
        .iter()
        .rev()
        .find(|(_, k, _)| k == "port")
        .and_then(|(_, _, v)| v.parse::<u16>().ok())
        .unwrap_or(5060);
    let mut hep: Option<SocketAddr> = None;
    let (mut udp, mut tcp) = (false, false);
    for (line, key, value) in &top.core {
        match key.as_str() {
            "port" => {}
            "listen" => match parse_listen(value, port) {
                Some((proto, addr)) if proto == "tls" => doc.set_disabled(
                    Section::Collector,
                    "hep_tls_listen",
                    addr.to_string(),
                    Some(*line),
                    "HEP over TLS needs hep_tls_cert and hep_tls_key (Kamailio's tls module \
                     config is not read)",
                ),
                Some((proto, addr)) if hep.is_none_or(|h| h == addr) => match proto.as_str() {
                    "udp" | "tcp" | "any" => {
                        hep = Some(addr);
                        udp |= proto != "tcp";
                        tcp |= proto != "udp";
                        doc.set(
                            Section::Collector,
                            "hep_listen",
                            addr.to_string(),
                            Some(*line),
                        );
                    }
                    other => doc.note(
                        Some(*line),
                        format!("listen={value}"),
                        format!("{other} is not a HEP transport here: not translated"),
                    ),
                },
                Some(_) => doc.note(
                    Some(*line),
                    format!("listen={value}"),
                    "sipcapture receives HEP on one address (UDP and TCP share hep_listen): \
                     not translated",
                ),
                None => doc.note(
                    Some(*line),
                    format!("listen={value}"),
                    "not an IP address (interface names and host names are not resolved): \
                     not translated",
                ),
            },
            _ => doc.note(
                Some(*line),
                format!("{key}={value}"),
                "Kamailio core setting: not applicable",
            ),
        }
    }
    match hep {
        Some(_) => {
            doc.set(Section::Collector, "hep_udp", udp, None);
            doc.set(Section::Collector, "hep_tcp", tcp, None);
        }
        None => {
            doc.set(
                Section::Collector,
                "hep_listen",
                SocketAddr::from(([0, 0, 0, 0], port)).to_string(),
                None,
            );
        }
    }
}

fn routes(top: &TopLevel, doc: &mut Document) {
    let named: HashMap<String, Vec<Stmt>> = top
        .blocks
        .iter()
        .filter(|b| b.kind == "route" && b.name.is_some())
        .filter_map(|b| b.name.clone().map(|n| (n, b.body.clone())))
        .collect();
    let mut request = None;
    let mut reply = None;
    for b in &top.blocks {
        match (b.kind.as_str(), &b.name) {
            ("request_route", None) | ("route", None) => request = Some(b),
            ("onreply_route" | "reply_route", None) => reply = Some(b),
            ("route", Some(_)) => {}
            ("event_route", Some(name)) if name == "sipcapture:request" => doc.note(
                Some(b.line),
                "event_route[sipcapture:request]",
                "Kamailio script run per HEP packet: port it to a Lua hook (docs/SCRIPTING.md)",
            ),
            (kind, name) => doc.note(
                Some(b.line),
                match name {
                    Some(n) => format!("{kind}[{n}]"),
                    None => kind.to_owned(),
                },
                "not used for captured messages: not translated",
            ),
        }
    }
    let mut found: Vec<FoundRule> = Vec::new();
    let walk = |block: &Block, scope: Scope, doc: &mut Document| {
        let mut w = Walker::new(&named, scope, &block.kind, block.end_line);
        w.walk(&block.body);
        for (line, item, reason) in w.notes {
            doc.note(line, item, reason);
        }
        w.rules
    };
    match reply {
        Some(b) => found.extend(walk(b, Scope::Reply, doc)),
        None if request.is_some() => {
            doc.note(
                None,
                "onreply_route",
                "none in the file: Kamailio stores no reply, so a rule drops them",
            );
            found.push(FoundRule {
                rule: RouteRuleConfig {
                    matches: MatchConfig {
                        payload_type: vec![1],
                        reply_code: vec![ANY_REPLY.to_owned()],
                        ..Default::default()
                    },
                    drop: true,
                    ..Default::default()
                },
                lines: Vec::new(),
                what: "no onreply_route: replies are not stored".to_owned(),
            });
        }
        None => {}
    }
    if let Some(b) = request {
        found.extend(walk(b, Scope::Request, doc));
    }
    if found.is_empty() {
        doc.note(
            None,
            "request_route",
            "no sip_capture found: the HOMER 5 split (homer5_split) decides the tables",
        );
        return;
    }
    doc.set(Section::Storer, "homer5_split", false, None);
    for r in simplify(found) {
        let lines: Vec<String> = r.lines.iter().map(ToString::to_string).collect();
        let comment = match lines.len() {
            0 => r.what,
            1 => format!("line {}: {}", lines[0], r.what),
            _ => format!("lines {}: {}", lines.join(", "), r.what),
        };
        doc.route(r.rule, comment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_db_url_lua_hook_topoh_tls_and_no_reply_route() {
        let text = "#!ifndef WITH_FAST\n\
                    #!define SLOW 1\n\
                    #!endif\n\
                    listen=tls:192.0.2.1:9061\n\
                    loadmodule \"db_postgres.so\"\n\
                    modparam(\"sipcapture\", \"db_url\", DBURL)\n\
                    modparam(\"sipcapture\", \"nonsip_hook\", 1)\n\
                    modparam(\"sipcapture\", \"event_callback\", \"ksr_hep\")\n\
                    modparam(\"app_lua\", \"load\", \"/etc/kamailio/hep.lua\")\n\
                    modparam(\"sipcapture\", \"topoh_unmask\", 1)\n\
                    modparam(\"topoh\", \"mask_key\", \"k3y\")\n\
                    modparam(\"sipcapture\", \"no_such\", 1)\n\
                    request_route { if (is_method(\"INVITE\")) { sip_capture(); } }\n";
        let mut doc = Document::new(super::super::Format::Kamailio, "k.cfg");
        translate(text, &mut doc);
        let out: toml::Table = toml::from_str(&doc.render()).unwrap();
        let (c, s) = (&out["collector"], &out["storer"]);
        assert_eq!(
            s["db_url"].as_str(),
            Some("postgres://USER:PASSWORD@HOST/homer_data")
        );
        assert_eq!(c["nonsip_hook"].as_bool(), Some(true));
        assert_eq!(c["script_file"].as_str(), Some("/etc/kamailio/hep.lua"));
        assert_eq!(c["event_callback"].as_str(), Some("ksr_hep"));
        assert_eq!(c["topoh_unmask"].as_bool(), Some(true));
        assert_eq!(c["mask_key"].as_str(), Some("k3y"));
        assert!(
            c.get("hep_tls_listen").is_none(),
            "TLS is written commented out"
        );
        assert_eq!(c["hep_listen"].as_str(), Some("0.0.0.0:5060"));
        let routes = s["route"].as_array().unwrap();
        assert_eq!(routes.len(), 3, "{routes:?}");
        assert_eq!(
            routes[0]["drop"].as_bool(),
            Some(true),
            "replies first: none stored"
        );
        assert_eq!(
            routes[0]["match"]["reply_code"][0].as_str(),
            Some("100-699")
        );
        assert_eq!(routes[1]["capture_mode"].as_str(), Some("default"));
        assert_eq!(
            routes[2]["drop"].as_bool(),
            Some(true),
            "other requests: end of route"
        );
        let notes = doc.sorted_notes();
        let at = |line: usize| notes.iter().filter(|n| n.line == Some(line)).count();
        assert_eq!(at(1), 1, "WITH_FAST is not defined in the file: {notes:?}");
        assert_eq!(at(6), 1, "the placeholder db_url is listed: {notes:?}");
        assert_eq!(at(12), 1, "unknown parameter: {notes:?}");
        assert!(
            notes
                .iter()
                .any(|n| n.line.is_none() && n.item.contains("capture_on"))
        );
        assert!(notes.iter().any(|n| n.item == "onreply_route"));
    }

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("udp:10.0.0.1:9060", 5060),
            Some(("udp".into(), "10.0.0.1:9060".parse().unwrap()))
        );
        assert_eq!(
            parse_listen("tcp:[::1]:9060 advertise 1.2.3.4:9060", 5060),
            Some(("tcp".into(), "[::1]:9060".parse().unwrap()))
        );
        assert_eq!(
            parse_listen("0.0.0.0", 9060),
            Some(("any".into(), "0.0.0.0:9060".parse().unwrap()))
        );
        assert_eq!(parse_listen("udp:eth0:9060", 5060), None);
    }
}
