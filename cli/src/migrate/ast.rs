//! Kamailio route blocks as a statement tree: `if`/`else`, calls, assignments, `drop`,
//! `exit`, `return`, `route(NAME)`; everything else kept as text for the notes.

use super::lex::{Tok, Token};

/// One statement of a route block.
#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    /// `{ ... }`.
    Block(Vec<Stmt>),
    /// `if (cond) then [else els]`.
    If {
        /// The condition's tokens (without the outer parentheses).
        cond: Vec<Token>,
        /// Line of the `if`.
        line: usize,
        /// The branch taken when the condition holds.
        then: Vec<Stmt>,
        /// The other branch (empty without `else`).
        els: Vec<Stmt>,
    },
    /// `name(arg, ...)`.
    Call {
        /// Function name.
        name: String,
        /// Arguments, each a token list.
        args: Vec<Vec<Token>>,
        /// Line.
        line: usize,
        /// The statement as written (for notes).
        text: String,
    },
    /// `$var(x) = expr;`.
    Assign {
        /// The pseudo-variable assigned.
        target: String,
        /// The expression.
        value: Vec<Token>,
        /// Line.
        line: usize,
        /// The statement as written.
        text: String,
    },
    /// `drop;` or `exit;`.
    Stop {
        /// Line.
        line: usize,
        /// `drop` or `exit`.
        word: String,
    },
    /// `return [expr];`.
    Return {
        /// Line.
        line: usize,
    },
    /// `route(NAME);`.
    RouteCall {
        /// The route called.
        name: String,
        /// Line.
        line: usize,
    },
    /// Anything else (`switch`, `while`, `$sht(...) = ...` is an Assign), as written.
    Other {
        /// The statement as written.
        text: String,
        /// Line.
        line: usize,
    },
}

/// The index of the token closing the bracket opened at `open` (or the last token).
pub fn matching(tokens: &[Token], open: usize) -> usize {
    let (o, c) = match &tokens[open].tok {
        Tok::Punct(p) if p == "(" => ("(", ")"),
        Tok::Punct(p) if p == "[" => ("[", "]"),
        _ => ("{", "}"),
    };
    let mut level = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        if t.tok.is(o) {
            level += 1;
        } else if t.tok.is(c) {
            level = level.saturating_sub(1);
            if level == 0 {
                return i;
            }
        }
    }
    tokens.len().saturating_sub(1)
}

/// The tokens between the bracket at `open` and its match `close` (empty when unbalanced).
pub fn inner(tokens: &[Token], open: usize, close: usize) -> &[Token] {
    tokens.get(open + 1..close).unwrap_or(&[])
}

/// The tokens as text, shortened for a note.
pub fn text_of(tokens: &[Token]) -> String {
    let mut s = String::new();
    for (i, t) in tokens.iter().enumerate() {
        let glue = i > 0
            && !t.tok.is("(")
            && !t.tok.is(")")
            && !t.tok.is(",")
            && !t.tok.is(";")
            && !tokens[i - 1].tok.is("(");
        if glue {
            s.push(' ');
        }
        s.push_str(&t.tok.text());
    }
    if s.chars().count() > 90 {
        s = s.chars().take(87).collect::<String>() + "...";
    }
    s
}

/// Splits `tokens` on top-level `sep` tokens.
pub fn split_top<'a>(tokens: &'a [Token], sep: &str) -> Vec<&'a [Token]> {
    let mut parts = Vec::new();
    let mut level = 0i32;
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        if t.tok.is("(") || t.tok.is("{") || t.tok.is("[") {
            level += 1;
        } else if t.tok.is(")") || t.tok.is("}") || t.tok.is("]") {
            level -= 1;
        } else if level == 0 && t.tok.is(sep) {
            parts.push(&tokens[start..i]);
            start = i + 1;
        }
    }
    parts.push(&tokens[start..]);
    parts
}

/// Parses the statements of a block's body (the tokens between its braces).
pub fn parse_block(tokens: &[Token]) -> Vec<Stmt> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let (stmt, next) = parse_stmt(tokens, i);
        if let Some(stmt) = stmt {
            out.push(stmt);
        }
        i = next.max(i + 1);
    }
    out
}

/// Index just past the statement end (`;` at depth 0) starting at `i`.
fn until_semicolon(tokens: &[Token], i: usize) -> usize {
    let mut j = i;
    while j < tokens.len() {
        if tokens[j].tok.is("(") || tokens[j].tok.is("{") || tokens[j].tok.is("[") {
            j = matching(tokens, j);
        } else if tokens[j].tok.is(";") {
            return j + 1;
        }
        j += 1;
    }
    j
}

fn parse_stmt(tokens: &[Token], i: usize) -> (Option<Stmt>, usize) {
    let t = &tokens[i];
    let line = t.line;
    let next_is = |p: &str| tokens.get(i + 1).is_some_and(|n| n.tok.is(p));
    match &t.tok {
        Tok::Punct(p) if p == ";" => (None, i + 1),
        Tok::Punct(p) if p == "{" => {
            let end = matching(tokens, i);
            (
                Some(Stmt::Block(parse_block(inner(tokens, i, end)))),
                end + 1,
            )
        }
        Tok::Ident(w) if w == "if" && next_is("(") => {
            let close = matching(tokens, i + 1);
            let cond = inner(tokens, i + 1, close).to_vec();
            let (then, mut next) = parse_body(tokens, close + 1);
            let mut els = Vec::new();
            if tokens.get(next).is_some_and(|t| t.tok.is_ident("else")) {
                let (e, after) = parse_body(tokens, next + 1);
                els = e;
                next = after;
            }
            (
                Some(Stmt::If {
                    cond,
                    line,
                    then,
                    els,
                }),
                next,
            )
        }
        Tok::Ident(w) if (w == "switch" || w == "while") && next_is("(") => {
            let close = matching(tokens, i + 1);
            let mut end = close + 1;
            if tokens.get(end).is_some_and(|t| t.tok.is("{")) {
                end = matching(tokens, end) + 1;
            }
            let text = text_of(&tokens[i..=close]);
            (Some(Stmt::Other { text, line }), end)
        }
        Tok::Ident(w) if w == "drop" || w == "exit" => (
            Some(Stmt::Stop {
                line,
                word: w.clone(),
            }),
            until_semicolon(tokens, i),
        ),
        Tok::Ident(w) if w == "return" => (Some(Stmt::Return { line }), until_semicolon(tokens, i)),
        Tok::Ident(w) if w == "route" && next_is("(") => {
            let close = matching(tokens, i + 1);
            let name = inner(tokens, i + 1, close)
                .iter()
                .map(|t| match &t.tok {
                    Tok::Str(s) => s.clone(),
                    other => other.text(),
                })
                .collect::<String>();
            (
                Some(Stmt::RouteCall { name, line }),
                until_semicolon(tokens, i),
            )
        }
        Tok::Pvar(target) if next_is("=") => {
            let end = until_semicolon(tokens, i);
            let stop = if tokens.get(end - 1).is_some_and(|t| t.tok.is(";")) {
                end - 1
            } else {
                end
            };
            (
                Some(Stmt::Assign {
                    target: target.clone(),
                    value: tokens[(i + 2).min(stop)..stop].to_vec(),
                    line,
                    text: text_of(&tokens[i..end]),
                }),
                end,
            )
        }
        Tok::Ident(name) if next_is("(") => {
            let close = matching(tokens, i + 1);
            let args = if close > i + 2 {
                split_top(inner(tokens, i + 1, close), ",")
                    .into_iter()
                    .map(<[Token]>::to_vec)
                    .collect()
            } else {
                Vec::new()
            };
            let end = until_semicolon(tokens, i);
            (
                Some(Stmt::Call {
                    name: name.clone(),
                    args,
                    line,
                    text: text_of(&tokens[i..=close]),
                }),
                end,
            )
        }
        _ => {
            let end = until_semicolon(tokens, i);
            (
                Some(Stmt::Other {
                    text: text_of(&tokens[i..end.min(tokens.len())]),
                    line,
                }),
                end,
            )
        }
    }
}

/// A branch body: a `{}` block or one statement.
fn parse_body(tokens: &[Token], i: usize) -> (Vec<Stmt>, usize) {
    if i >= tokens.len() {
        return (Vec::new(), i);
    }
    if tokens[i].tok.is("{") {
        let end = matching(tokens, i);
        return (parse_block(inner(tokens, i, end)), end + 1);
    }
    let (stmt, next) = parse_stmt(tokens, i);
    (stmt.into_iter().collect(), next.max(i + 1))
}
