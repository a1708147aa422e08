//! Kamailio's config preprocessor and tokenizer, as far as `migrate` needs them: `#!define` /
//! `#!trydef` / `#!redefine` / `#!undef`, `#!ifdef` / `#!ifndef` / `#!else` / `#!endif` on the
//! defines made in the file, `#!subst` / `#!substdef` / `#!substdefs` applied to string
//! literals, `#`, `//` and `/* */` comments. Every token keeps its source line.

use std::collections::{HashMap, HashSet};

use regex::Regex;

use super::emit::Document;

/// A token and its 1-based source line.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// What it is.
    pub tok: Tok,
    /// Source line.
    pub line: usize,
}

/// Token kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A name (`modparam`, `if`, an undefined define).
    Ident(String),
    /// A string literal's content (after `#!subst`).
    Str(String),
    /// A number (also dotted: `10.0.0.1`).
    Num(String),
    /// A pseudo-variable: `$rm`, `$var(table)`, `$sht(a=>b)`.
    Pvar(String),
    /// Punctuation and operators: `(`, `==`, `=~`, `&&`, `;`, ...
    Punct(String),
}

impl Tok {
    /// The token as it reads in the config.
    pub fn text(&self) -> String {
        match self {
            Tok::Ident(s) | Tok::Num(s) | Tok::Pvar(s) | Tok::Punct(s) => s.clone(),
            Tok::Str(s) => format!("{s:?}"),
        }
    }

    /// Whether this is the punctuation `p`.
    pub fn is(&self, p: &str) -> bool {
        matches!(self, Tok::Punct(s) if s == p)
    }

    /// Whether this is the name `n`.
    pub fn is_ident(&self, n: &str) -> bool {
        matches!(self, Tok::Ident(s) if s == n)
    }
}

/// One `#!subst` rule.
#[derive(Debug, Clone)]
struct Subst {
    regex: Regex,
    replacement: String,
    global: bool,
}

/// The file after preprocessing: inactive and directive lines blanked (line numbers kept).
#[derive(Debug, Clone, Default)]
pub struct Preprocessed {
    /// The active text, one entry per source line.
    pub lines: Vec<String>,
    /// Defines in effect at the end of the file (name → raw value).
    pub defines: HashMap<String, String>,
    substs: Vec<Subst>,
}

const MAX_DEFINE_DEPTH: usize = 8;

/// Runs the preprocessor directives over `text`.
pub fn preprocess(text: &str, doc: &mut Document) -> Preprocessed {
    let raw: Vec<&str> = text.lines().collect();
    let defined_anywhere: HashSet<String> = raw
        .iter()
        .filter_map(|l| {
            let t = l.trim_start();
            let rest = t
                .strip_prefix("#!define")
                .or_else(|| t.strip_prefix("#!trydef"))
                .or_else(|| t.strip_prefix("#!redefine"))?;
            rest.split_whitespace().next().map(str::to_owned)
        })
        .collect();
    let mut out = Preprocessed::default();
    // (condition of this branch, the enclosing text active)
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let line_no = i + 1;
        let active = stack.iter().all(|(cond, _)| *cond);
        let trimmed = raw[i].trim_start();
        let is_directive = trimmed.starts_with("#!") || trimmed.starts_with("!!");
        if !is_directive {
            out.lines.push(if active {
                raw[i].to_owned()
            } else {
                String::new()
            });
            i += 1;
            continue;
        }
        // A define value continues on the next line after a trailing backslash.
        let mut body = trimmed[2..].to_owned();
        out.lines.push(String::new());
        while body.ends_with('\\') && i + 1 < raw.len() {
            body.pop();
            i += 1;
            body.push('\n');
            body.push_str(raw[i]);
            out.lines.push(String::new());
        }
        i += 1;
        let (word, rest) = match body.split_once(char::is_whitespace) {
            Some((w, r)) => (w.to_owned(), r.trim().to_owned()),
            None => (body.trim().to_owned(), String::new()),
        };
        let name = rest.split_whitespace().next().unwrap_or("").to_owned();
        let value = rest[name.len()..].trim().to_owned();
        match word.as_str() {
            "ifdef" | "ifndef" => {
                if !defined_anywhere.contains(&name) && active {
                    doc.note(
                        Some(line_no),
                        format!("#!{word} {name}"),
                        format!(
                            "{name} is not defined in this file (a -D or -A on Kamailio's command \
                             line is not seen here): read as undefined"
                        ),
                    );
                }
                let defined = out.defines.contains_key(&name);
                stack.push((if word == "ifdef" { defined } else { !defined }, active));
            }
            "else" => match stack.last_mut() {
                Some((cond, _)) => *cond = !*cond,
                None => doc.note(Some(line_no), "#!else", "no #!ifdef/#!ifndef open: ignored"),
            },
            "endif" => {
                if stack.pop().is_none() {
                    doc.note(
                        Some(line_no),
                        "#!endif",
                        "no #!ifdef/#!ifndef open: ignored",
                    );
                }
            }
            _ if !active => {}
            "define" | "redefine" => {
                out.defines.insert(name, value);
            }
            "trydef" => {
                out.defines.entry(name).or_insert(value);
            }
            "undef" => {
                out.defines.remove(&name);
            }
            "subst" | "substdef" | "substdefs" => match parse_subst(&rest) {
                Ok((subst, pattern)) => {
                    if word != "subst" && is_ident(&pattern) {
                        out.defines
                            .insert(pattern, format!("{:?}", subst.replacement.clone()));
                    }
                    out.substs.push(subst);
                }
                Err(why) => doc.note(Some(line_no), format!("#!{word} {rest}"), why),
            },
            "include_file" | "import_file" => doc.note(
                Some(line_no),
                format!("#!{word} {rest}"),
                "included files are not read: migrate each file and merge the results",
            ),
            "KAMAILIO" | "OPENSER" | "SER" | "MAXCOMPAT" | "ALL" | "" => {}
            other => doc.note(
                Some(line_no),
                format!("#!{other} {rest}").trim().to_owned(),
                "preprocessor directive not supported by migrate: ignored",
            ),
        }
    }
    if !stack.is_empty() {
        doc.note(
            None,
            "#!ifdef/#!ifndef",
            "not closed by #!endif at the end of the file",
        );
    }
    out
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `"/regex/replacement/flags"` (any delimiter) → the rule and its raw pattern.
fn parse_subst(arg: &str) -> Result<(Subst, String), String> {
    let arg = arg.trim();
    let inner = arg
        .strip_prefix('"')
        .and_then(|a| a.strip_suffix('"'))
        .unwrap_or(arg);
    let mut chars = inner.chars();
    let delim = chars.next().ok_or("empty substitution")?;
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in chars {
        if escaped {
            if c != delim {
                cur.push('\\');
            }
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == delim {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    if parts.len() != 3 {
        return Err(format!(
            "not {delim}regex{delim}replacement{delim}flags: ignored"
        ));
    }
    let flags = &parts[2];
    let pattern = if flags.contains('i') {
        format!("(?i){}", parts[0])
    } else {
        parts[0].clone()
    };
    let regex = Regex::new(&pattern).map_err(|e| format!("bad regular expression: {e}"))?;
    // Kamailio's back-references `\1` are `${1}` here.
    let back = Regex::new(r"\\([0-9])").map_err(|e| e.to_string())?;
    let replacement = back.replace_all(&parts[1], "$${$1}").into_owned();
    Ok((
        Subst {
            regex,
            replacement,
            global: flags.contains('g'),
        },
        parts[0].clone(),
    ))
}

impl Preprocessed {
    fn subst(&self, s: &str) -> String {
        let mut s = s.to_owned();
        for rule in &self.substs {
            s = if rule.global {
                rule.regex
                    .replace_all(&s, rule.replacement.as_str())
                    .into_owned()
            } else {
                rule.regex
                    .replace(&s, rule.replacement.as_str())
                    .into_owned()
            };
        }
        s
    }

    /// Applies the defines to a raw text (word by word, outside quotes are not distinguished):
    /// for values read line by line (`listen=udp:MY_IP:9060`).
    pub fn expand_words(&self, text: &str) -> String {
        let mut out = String::new();
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String| {
            match self.defines.get(word.as_str()) {
                Some(v) => out.push_str(v.trim().trim_matches('"')),
                None => out.push_str(word),
            }
            word.clear();
        };
        for c in text.chars() {
            if c.is_ascii_alphanumeric() || c == '_' {
                word.push(c);
            } else {
                flush(&mut word, &mut out);
                out.push(c);
            }
        }
        flush(&mut word, &mut out);
        out
    }

    /// The tokens of the active text, defines expanded.
    pub fn tokens(&self) -> Vec<Token> {
        let mut out = Vec::new();
        let text = self.lines.join("\n");
        self.lex(&text, 1, 0, &mut out);
        out
    }

    fn lex(&self, text: &str, first_line: usize, depth: usize, out: &mut Vec<Token>) {
        let b: Vec<char> = text.chars().collect();
        let mut i = 0;
        let mut line = first_line;
        // Inside an expanded define every token is on the line of its use.
        let fixed = depth > 0;
        while i < b.len() {
            let c = b[i];
            let at = line;
            if c == '\n' {
                if !fixed {
                    line += 1;
                }
                i += 1;
            } else if c.is_whitespace() {
                i += 1;
            } else if c == '#' || (c == '/' && b.get(i + 1) == Some(&'/')) {
                while i < b.len() && b[i] != '\n' {
                    i += 1;
                }
            } else if c == '/' && b.get(i + 1) == Some(&'*') {
                i += 2;
                while i < b.len() && !(b[i] == '*' && b.get(i + 1) == Some(&'/')) {
                    if b[i] == '\n' && !fixed {
                        line += 1;
                    }
                    i += 1;
                }
                i += 2;
            } else if c == '"' || c == '\'' {
                let mut s = String::new();
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == '\\' && i + 1 < b.len() {
                        i += 1;
                        if b[i] != c && b[i] != '\\' {
                            s.push('\\');
                        }
                    }
                    if b[i] == '\n' && !fixed {
                        line += 1;
                    }
                    s.push(b[i]);
                    i += 1;
                }
                i += 1;
                out.push(Token {
                    tok: Tok::Str(self.subst(&s)),
                    line: at,
                });
            } else if c == '$' {
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_' || b[i] == '.') {
                    i += 1;
                }
                for (open, close) in [('(', ')'), ('{', '}')] {
                    if b.get(i) == Some(&open) {
                        let mut level = 0;
                        while i < b.len() {
                            if b[i] == open {
                                level += 1;
                            } else if b[i] == close {
                                level -= 1;
                                if level == 0 {
                                    i += 1;
                                    break;
                                }
                            }
                            i += 1;
                        }
                    }
                }
                out.push(Token {
                    tok: Tok::Pvar(b[start..i].iter().collect()),
                    line: at,
                });
            } else if c.is_ascii_alphabetic() || c == '_' {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_') {
                    i += 1;
                }
                let word: String = b[start..i].iter().collect();
                match self.defines.get(&word) {
                    Some(value) if depth < MAX_DEFINE_DEPTH && !value.is_empty() => {
                        self.lex(value, at, depth + 1, out);
                    }
                    _ => out.push(Token {
                        tok: Tok::Ident(word),
                        line: at,
                    }),
                }
            } else if c.is_ascii_digit() {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '.') {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Num(b[start..i].iter().collect()),
                    line: at,
                });
            } else {
                let two: String = b[i..(i + 2).min(b.len())].iter().collect();
                let op = if ["==", "!=", "=~", "!~", "&&", "||", ">=", "<=", "=>"]
                    .contains(&two.as_str())
                {
                    two
                } else {
                    c.to_string()
                };
                i += op.chars().count();
                out.push(Token {
                    tok: Tok::Punct(op),
                    line: at,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::detect::Format;

    fn pre(text: &str) -> (Preprocessed, Document) {
        let mut doc = Document::new(Format::Kamailio, "t.cfg");
        (preprocess(text, &mut doc), doc)
    }

    #[test]
    fn defines_ifdefs_and_substs() {
        let text = "#!define WITH_MYSQL\n\
                    #!ifdef WITH_MYSQL\n\
                    #!define DBURL \"mysql://u:p@db/homer_data\"\n\
                    #!else\n\
                    #!define DBURL \"postgres://u@db/homer_data\"\n\
                    #!endif\n\
                    #!ifdef WITH_DEBUG\n\
                    debug=3\n\
                    #!endif\n\
                    #!substdef \"!HOMER_NODE!homer07!g\"\n\
                    modparam(\"sipcapture\", \"db_url\", DBURL) # comment\n\
                    modparam(\"sipcapture\", \"capture_node\", \"HOMER_NODE\")\n\
                    /* block\n comment */ x = $var(a) + \"b\";\n";
        let (p, doc) = pre(text);
        assert_eq!(p.lines[7], "", "the WITH_DEBUG branch is inactive");
        let toks = p.tokens();
        let strs: Vec<(String, usize)> = toks
            .iter()
            .filter_map(|t| match &t.tok {
                Tok::Str(s) => Some((s.clone(), t.line)),
                _ => None,
            })
            .collect();
        assert_eq!(
            strs,
            vec![
                ("sipcapture".into(), 11),
                ("db_url".into(), 11),
                ("mysql://u:p@db/homer_data".into(), 11),
                ("sipcapture".into(), 12),
                ("capture_node".into(), 12),
                ("homer07".into(), 12),
                ("b".into(), 14),
            ]
        );
        assert!(
            toks.iter()
                .any(|t| t.tok == Tok::Pvar("$var(a)".into()) && t.line == 14)
        );
        let notes: Vec<_> = doc.sorted_notes();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].line, Some(7));
        assert!(notes[0].reason.contains("WITH_DEBUG"));
    }

    #[test]
    fn subst_back_references_and_word_expansion() {
        let (p, _) =
            pre("#!subst \"/db-(.*)/\\1.example.com/\"\n#!define MY_IP 10.0.0.5\nx \"db-one\"\n");
        assert!(
            p.tokens()
                .iter()
                .any(|t| t.tok == Tok::Str("one.example.com".into()))
        );
        assert_eq!(p.expand_words("udp:MY_IP:9060"), "udp:10.0.0.5:9060");
    }
}
