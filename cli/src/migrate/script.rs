//! Kamailio route blocks ([`super::ast`]) walked path by path into routing rules.
//!
//! Each path through `request_route` / `onreply_route` collects the conditions it took (the
//! method, `$ua`, `$rs`, ...) and ends in `sip_capture(table, mode)` (a storing rule), `drop` /
//! `exit` before any capture, or the end of the route (a dropping rule: Kamailio stores
//! nothing). The paths are visited depth first, the `if` branch before the `else`, so the
//! rules in that order, first match deciding, give every record the path's outcome without
//! writing negations. A condition `migrate` cannot express is read as false and listed.

use std::collections::HashMap;

use sipcapture_storer::config::{HeaderMatchConfig, MatchConfig, RouteRuleConfig};

use super::ast::{Stmt, matching, split_top, text_of};
use super::lex::{Tok, Token};
use super::rules::{ANY_REPLY, FoundRule, and, or_same_field};

/// Which route a block is: requests or replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `request_route`: `$rm` / `is_method` are the request's method.
    Request,
    /// `onreply_route`: `$rm` / `is_method` are the CSeq method; `$rs` the status.
    Reply,
}

/// A note from the walk: line, item, reason.
pub type WalkNote = (Option<usize>, String, String);

const MAX_PATHS: usize = 4096;
const MAX_ROUTE_DEPTH: usize = 16;

/// Walks a route's paths into rules.
#[derive(Debug)]
pub struct Walker<'a> {
    routes: &'a HashMap<String, Vec<Stmt>>,
    scope: Scope,
    route_name: String,
    end_line: usize,
    /// The rules in path order.
    pub rules: Vec<FoundRule>,
    /// What was not translated.
    pub notes: Vec<WalkNote>,
    paths: usize,
}

#[derive(Debug, Clone)]
struct State {
    m: MatchConfig,
    vars: HashMap<String, Option<String>>,
    captured: bool,
}

#[derive(Debug, Clone, Copy)]
struct Frame<'s> {
    stmts: &'s [Stmt],
    route: bool,
}

/// What a condition says.
#[derive(Debug, Clone, PartialEq)]
enum Cond {
    Known(Box<MatchConfig>),
    Unknown(String),
}

impl<'a> Walker<'a> {
    /// A walker for a route of `scope`; `routes` are the named `route[NAME]` blocks.
    pub fn new(
        routes: &'a HashMap<String, Vec<Stmt>>,
        scope: Scope,
        route_name: &str,
        end_line: usize,
    ) -> Self {
        Walker {
            routes,
            scope,
            route_name: route_name.to_owned(),
            end_line,
            rules: Vec::new(),
            notes: Vec::new(),
            paths: 0,
        }
    }

    /// The conditions every rule of this route starts from.
    pub fn base(&self) -> MatchConfig {
        MatchConfig {
            payload_type: vec![1],
            reply_code: match self.scope {
                Scope::Request => Vec::new(),
                Scope::Reply => vec![ANY_REPLY.to_owned()],
            },
            ..Default::default()
        }
    }

    /// Walks `body` (the route's statements).
    pub fn walk(&mut self, body: &[Stmt]) {
        let state = State {
            m: self.base(),
            vars: HashMap::new(),
            captured: false,
        };
        self.run(
            vec![Frame {
                stmts: body,
                route: false,
            }],
            state,
        );
        if self.paths > MAX_PATHS {
            self.notes.push((
                None,
                self.route_name.clone(),
                format!("more than {MAX_PATHS} paths: the rest were not translated"),
            ));
        }
    }

    fn note(&mut self, line: usize, item: impl Into<String>, reason: impl Into<String>) {
        self.notes.push((Some(line), item.into(), reason.into()));
    }

    fn run<'s>(&mut self, mut stack: Vec<Frame<'s>>, mut st: State)
    where
        'a: 's,
    {
        loop {
            if self.paths > MAX_PATHS {
                return;
            }
            let Some(top) = stack.last_mut() else {
                let line = self.end_line;
                self.end(
                    st,
                    line,
                    format!("end of {} without sip_capture", self.route_name),
                );
                return;
            };
            let Some((stmt, rest)) = top.stmts.split_first() else {
                stack.pop();
                continue;
            };
            top.stmts = rest;
            match stmt {
                Stmt::Block(body) => stack.push(Frame {
                    stmts: body,
                    route: false,
                }),
                Stmt::If {
                    cond,
                    line,
                    then,
                    els,
                } => {
                    match self.condition(cond) {
                        Cond::Known(delta) => {
                            if let Some(m) = and(&st.m, &delta) {
                                let mut taken = st.clone();
                                taken.m = m;
                                let mut branch = stack.clone();
                                branch.push(Frame {
                                    stmts: then,
                                    route: false,
                                });
                                self.run(branch, taken);
                            }
                        }
                        Cond::Unknown(why) => {
                            if !then.is_empty() {
                                self.note(
                                    *line,
                                    format!("if ({})", text_of(cond)),
                                    format!("{why}: read as false, its branch is not translated"),
                                );
                            }
                        }
                    }
                    stack.push(Frame {
                        stmts: els,
                        route: false,
                    });
                }
                Stmt::Stop { line, word } => {
                    self.end(st, *line, format!("`{word}` before sip_capture"));
                    return;
                }
                Stmt::Return { line } => {
                    while let Some(frame) = stack.pop() {
                        if frame.route {
                            break;
                        }
                    }
                    if stack.is_empty() {
                        self.end(st, *line, "`return` before sip_capture".to_owned());
                        return;
                    }
                }
                Stmt::RouteCall { name, line } => {
                    let depth = stack.iter().filter(|f| f.route).count();
                    match self.routes.get(name) {
                        Some(body) if depth < MAX_ROUTE_DEPTH => stack.push(Frame {
                            stmts: body,
                            route: true,
                        }),
                        Some(_) => self.note(
                            *line,
                            format!("route({name})"),
                            format!("calls nested deeper than {MAX_ROUTE_DEPTH}: not followed"),
                        ),
                        None => self.note(
                            *line,
                            format!("route({name})"),
                            "no route[] block of that name in this file: not followed",
                        ),
                    }
                }
                Stmt::Assign {
                    target,
                    value,
                    line,
                    text,
                } => {
                    if is_var(target) {
                        let v = self.eval(value, &st);
                        st.vars.insert(target.clone(), v);
                    } else {
                        self.note(
                            *line,
                            text.clone(),
                            "not translated (Kamailio script state)",
                        );
                    }
                }
                Stmt::Call {
                    name,
                    args,
                    line,
                    text,
                } => match name.as_str() {
                    "sip_capture" => self.capture(&mut st, args, *line, text),
                    "report_capture" => self.note(
                        *line,
                        text.clone(),
                        "HEP reports are stored by type in report_table / rtcp_table / \
                         logs_table: not translated",
                    ),
                    "sip_capture_forward" => self.note(
                        *line,
                        text.clone(),
                        "use the collector's [[collector.forward]] rules: not translated",
                    ),
                    _ => self.note(*line, text.clone(), "Kamailio function: not translated"),
                },
                Stmt::Other { text, line } => {
                    self.note(*line, text.clone(), "not translated");
                }
            }
        }
    }

    fn end(&mut self, st: State, line: usize, what: String) {
        self.paths += 1;
        if st.captured {
            return;
        }
        self.rules.push(FoundRule {
            rule: RouteRuleConfig {
                matches: st.m,
                drop: true,
                ..Default::default()
            },
            lines: vec![line],
            what: format!("{what} in {}: not stored", self.route_name),
        });
    }

    fn capture(&mut self, st: &mut State, args: &[Vec<Token>], line: usize, text: &str) {
        if st.captured {
            self.note(
                line,
                text,
                "a second sip_capture on the same path (Kamailio stores the message twice): \
                 stored once",
            );
            return;
        }
        let arg = |i: usize| -> Option<Option<String>> {
            args.get(i).map(|tokens| self.eval(tokens, st))
        };
        let table = match arg(0) {
            None => Some(String::new()),
            Some(v) => v,
        };
        let mode = match arg(1) {
            None => Some(String::new()),
            Some(v) => v,
        };
        let (Some(table), Some(mode)) = (table, mode) else {
            self.note(
                line,
                text,
                "the table or capture mode is not known without running the script: \
                 such messages get the default table choice",
            );
            st.captured = true;
            return;
        };
        let mut rule = RouteRuleConfig {
            matches: st.m.clone(),
            ..Default::default()
        };
        if !table.is_empty() {
            rule.table = Some(table);
        }
        if !mode.is_empty() {
            rule.capture_mode = Some(mode);
        }
        if rule.table.is_none() && rule.capture_mode.is_none() {
            rule.capture_mode = Some("default".to_owned());
        }
        self.rules.push(FoundRule {
            rule,
            lines: vec![line],
            what: format!("{text} in {}", self.route_name),
        });
        st.captured = true;
    }

    /// A string expression: literals, `$var`/`$avp` values, `$utimef(fmt)` / `$timef(fmt)`
    /// (strftime, applied per packet here), joined with `+`. `None` when not known.
    fn eval(&self, tokens: &[Token], st: &State) -> Option<String> {
        let mut out = String::new();
        for part in split_top(tokens, "+") {
            match part {
                [
                    Token {
                        tok: Tok::Str(s), ..
                    },
                ] => out.push_str(&expand_pvars(s, st)?),
                [
                    Token {
                        tok: Tok::Num(s), ..
                    },
                ] => out.push_str(s),
                [
                    Token {
                        tok: Tok::Pvar(p), ..
                    },
                ] => out.push_str(&pvar_value(p, st)?),
                _ => return None,
            }
        }
        Some(out)
    }

    fn condition(&self, tokens: &[Token]) -> Cond {
        let mut tokens = tokens;
        while tokens.len() >= 2 && tokens[0].tok.is("(") && matching(tokens, 0) == tokens.len() - 1
        {
            tokens = &tokens[1..tokens.len() - 1];
        }
        let ands = split_top(tokens, "&&");
        if ands.len() > 1 {
            let mut m = MatchConfig::default();
            for part in ands {
                match self.condition(part) {
                    Cond::Known(c) => match and(&m, &c) {
                        Some(both) => m = both,
                        None => return Cond::Unknown("never true".to_owned()),
                    },
                    unknown => return unknown,
                }
            }
            return Cond::Known(Box::new(m));
        }
        let ors = split_top(tokens, "||");
        if ors.len() > 1 {
            let mut acc: Option<MatchConfig> = None;
            for part in ors {
                let Cond::Known(c) = self.condition(part) else {
                    return Cond::Unknown("an `||` of conditions not all on one field".into());
                };
                acc = match acc {
                    None => Some(*c),
                    Some(a) => match or_same_field(&a, &c) {
                        Some(u) => Some(u),
                        None => {
                            return Cond::Unknown(
                                "an `||` of conditions on different fields".into(),
                            );
                        }
                    },
                };
            }
            return acc.map_or(Cond::Unknown("empty".into()), |m| Cond::Known(Box::new(m)));
        }
        self.atom(tokens)
    }

    fn atom(&self, tokens: &[Token]) -> Cond {
        let unknown = || Cond::Unknown("condition not translatable".to_owned());
        let method_field = |m: &mut MatchConfig, list: Vec<String>| match self.scope {
            Scope::Request => m.method = list,
            Scope::Reply => m.cseq_method = list,
        };
        match tokens {
            [
                Token {
                    tok: Tok::Ident(f), ..
                },
                open,
                Token {
                    tok: Tok::Str(s), ..
                },
                close,
            ] if f == "is_method" && open.tok.is("(") && close.tok.is(")") => {
                let mut m = MatchConfig::default();
                method_field(&mut m, methods_of(s));
                Cond::Known(Box::new(m))
            }
            [
                Token {
                    tok: Tok::Pvar(pv), ..
                },
                Token {
                    tok: Tok::Punct(op),
                    ..
                },
                value,
            ] => {
                let v = match &value.tok {
                    Tok::Str(s) | Tok::Num(s) => s.clone(),
                    _ => return unknown(),
                };
                let mut m = MatchConfig::default();
                match (pv.as_str(), op.as_str()) {
                    ("$rm", "==") => method_field(&mut m, vec![v.to_ascii_uppercase()]),
                    ("$rm", "=~") => match regex_alternatives(&v, is_method_name) {
                        Some(list) => method_field(&mut m, list),
                        None => return unknown(),
                    },
                    ("$rs", "==") if self.scope == Scope::Reply => m.reply_code = vec![v],
                    // A status has three digits, so `401|407` matches exactly those.
                    ("$rs", "=~") if self.scope == Scope::Reply => {
                        match regex_alternatives(&v, is_status) {
                            Some(codes) => m.reply_code = codes,
                            None => return unknown(),
                        }
                    }
                    ("$si", "==") => m.src_ip = vec![v],
                    ("$sp", "==") => match v.parse() {
                        Ok(port) => m.src_port = vec![port],
                        Err(_) => return unknown(),
                    },
                    (pv, "==" | "=~") => {
                        let Some(name) = header_of(pv) else {
                            return unknown();
                        };
                        let mut h = HeaderMatchConfig {
                            name: name.to_owned(),
                            ..Default::default()
                        };
                        if op == "==" {
                            h.exact = Some(v);
                        } else {
                            // Kamailio's `=~` is case-insensitive (REG_ICASE).
                            h.regex = Some(format!("(?i){v}"));
                        }
                        m.header = vec![h];
                    }
                    _ => return unknown(),
                }
                Cond::Known(Box::new(m))
            }
            _ => unknown(),
        }
    }
}

fn is_var(pv: &str) -> bool {
    pv.starts_with("$var(") || pv.starts_with("$avp(")
}

fn pvar_value(pv: &str, st: &State) -> Option<String> {
    if is_var(pv) {
        return st.vars.get(pv).cloned().flatten();
    }
    for f in ["$utimef(", "$timef("] {
        if let Some(fmt) = pv.strip_prefix(f).and_then(|r| r.strip_suffix(')')) {
            return Some(fmt.to_owned());
        }
    }
    None
}

/// `$var(x)` inside a string argument (Kamailio expands pseudo-variables in `sip_capture`'s
/// table).
fn expand_pvars(s: &str, st: &State) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let end = tail.find(')').map(|e| e + 1)?;
        out.push_str(&pvar_value(&tail[..end], st)?);
        rest = &tail[end..];
    }
    out.push_str(rest);
    Some(out)
}

fn header_of(pv: &str) -> Option<&'static str> {
    Some(match pv {
        "$ua" | "$hdr(User-Agent)" => "user_agent",
        "$fU" => "from_user",
        "$fd" => "from_domain",
        "$ft" => "from_tag",
        "$tU" => "to_user",
        "$td" => "to_domain",
        "$tt" => "to_tag",
        "$rU" => "ruri_user",
        "$rd" => "ruri_domain",
        "$ci" => "callid",
        _ => return None,
    })
}

fn methods_of(s: &str) -> Vec<String> {
    s.split('|')
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| !m.is_empty())
        .collect()
}

/// `^(INVITE|BYE)$`, `INVITE|BYE`, `REGISTER` → the names (each must pass `word`); `None` for
/// a real regular expression.
fn is_method_name(m: &str) -> bool {
    m.bytes().all(|b| b.is_ascii_alphabetic())
}

fn is_status(m: &str) -> bool {
    m.len() == 3 && m.bytes().all(|b| b.is_ascii_digit())
}

fn regex_alternatives(re: &str, word: fn(&str) -> bool) -> Option<Vec<String>> {
    let mut r = re.trim();
    r = r.strip_prefix('^').unwrap_or(r);
    r = r.strip_suffix('$').unwrap_or(r);
    if let Some(inner) = r.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        r = inner;
    }
    let list = methods_of(r);
    let ok = !list.is_empty() && list.iter().all(|m| word(m));
    ok.then_some(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::ast::parse_block;
    use crate::migrate::detect::Format;
    use crate::migrate::emit::Document;
    use crate::migrate::lex::preprocess;
    use crate::migrate::rules::simplify;

    fn walk(body: &str, scope: Scope) -> (Vec<FoundRule>, Vec<WalkNote>) {
        let mut doc = Document::new(Format::Kamailio, "t");
        let tokens = preprocess(body, &mut doc).tokens();
        let stmts = parse_block(&tokens);
        let routes = HashMap::from([(
            "STORE".to_owned(),
            parse_block(&preprocess("sip_capture(\"$var(t)\");", &mut doc).tokens()),
        )]);
        let mut w = Walker::new(&routes, scope, "request_route", 99);
        w.walk(&stmts);
        (simplify(w.rules), w.notes)
    }

    #[test]
    fn homer5_pattern_becomes_ordered_rules() {
        let (rules, notes) = walk(
            r#"
            if (is_method("INVITE|REGISTER")) {
                if ($ua =~ "friendly-scanner") { sql_query("cb", "x"); drop; }
            }
            if ($rm == "REGISTER") { $var(table) = "sip_capture_registration"; }
            else if ($rm =~ "^(INVITE|UPDATE|BYE|ACK|PRACK|REFER|CANCEL)$") { $var(table) = "sip_capture_call"; }
            else { $var(table) = "sip_capture_rest"; }
            $var(a) = $var(table) + "_" + $utimef(%Y%m%d);
            sip_capture("$var(a)");
            drop;
            "#,
            Scope::Request,
        );
        let view: Vec<(Vec<String>, Option<String>, bool, usize)> = rules
            .iter()
            .map(|r| {
                (
                    r.rule.matches.method.clone(),
                    r.rule.table.clone(),
                    r.rule.drop,
                    r.rule.matches.header.len(),
                )
            })
            .collect();
        assert_eq!(
            view,
            vec![
                (vec!["INVITE".into(), "REGISTER".into()], None, true, 1),
                (
                    vec!["REGISTER".into()],
                    Some("sip_capture_registration_%Y%m%d".into()),
                    false,
                    0
                ),
                (
                    ["INVITE", "UPDATE", "BYE", "ACK", "PRACK", "REFER", "CANCEL"]
                        .map(String::from)
                        .to_vec(),
                    Some("sip_capture_call_%Y%m%d".into()),
                    false,
                    0
                ),
                (vec![], Some("sip_capture_rest_%Y%m%d".into()), false, 0),
            ]
        );
        assert_eq!(
            rules[0].rule.matches.header[0].regex.as_deref(),
            Some("(?i)friendly-scanner")
        );
        assert_eq!(rules[3].rule.matches.payload_type, vec![1]);
        assert!(
            notes.iter().any(|n| n.1.starts_with("sql_query")),
            "{notes:?}"
        );
    }

    #[test]
    fn replies_unknown_conditions_routes_and_fallthrough() {
        let (rules, notes) = walk(
            r#"
            if ($sht(a=>x) == 1) { exit; }
            if (is_method("OPTIONS")) { exit; }
            if ($rs =~ "^(401|407)$") { $var(t) = "auth"; route(STORE); }
            if ($rs == "200" && is_method("INVITE")) { $var(t) = "ok_calls"; route(STORE); }
            else if (is_method("INVITE") || $rm == "BYE") { sip_capture("", "cap1"); }
            "#,
            Scope::Reply,
        );
        type View = (
            Vec<String>,
            Vec<String>,
            Option<String>,
            Option<String>,
            bool,
        );
        let view: Vec<View> = rules
            .iter()
            .map(|r| {
                (
                    r.rule.matches.cseq_method.clone(),
                    r.rule.matches.reply_code.clone(),
                    r.rule.table.clone(),
                    r.rule.capture_mode.clone(),
                    r.rule.drop,
                )
            })
            .collect();
        assert_eq!(
            view,
            vec![
                (
                    vec!["OPTIONS".into()],
                    vec![ANY_REPLY.into()],
                    None,
                    None,
                    true
                ),
                (
                    vec![],
                    vec!["401".into(), "407".into()],
                    Some("auth".into()),
                    None,
                    false
                ),
                (
                    vec!["INVITE".into()],
                    vec!["200".into()],
                    Some("ok_calls".into()),
                    None,
                    false
                ),
                (
                    vec!["INVITE".into(), "BYE".into()],
                    vec![ANY_REPLY.into()],
                    None,
                    Some("cap1".into()),
                    false
                ),
                (vec![], vec![ANY_REPLY.into()], None, None, true),
            ]
        );
        assert!(
            notes
                .iter()
                .any(|n| n.0 == Some(2) && n.2.contains("read as false")),
            "{notes:?}"
        );
    }
}
