//! The same views as self-contained HTML: a ladder page with an SVG (one `<g class="arrow">`
//! per message; clicking an arrow shows the full message through a `#m<N>` anchor and the CSS
//! `:target` rule, so the page needs no script at all) and the search page with its list of
//! calls. Everything that comes from captured packets is escaped; nothing is loaded from
//! elsewhere (no CDN: the page works without internet access).

use std::fmt::Write as _;

use super::calls::{CallSummary, format_time};
use super::ladder::Ladder;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1em;color:#222}\
h1{font-size:1.3em}table{border-collapse:collapse;font-size:.9em}\
td,th{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;white-space:nowrap}\
tr:hover{background:#f3f6fb}form{margin:.5em 0 1em}form input{margin-right:.6em}\
.msg{display:none;white-space:pre-wrap;font:.85em monospace;background:#f7f7f7;\
border:1px solid #ccc;padding:.6em;max-width:100em}.msg:target{display:block}\
svg text{font:12px monospace}.arrow:hover text{font-weight:bold}.arrow line{stroke:#1f5fa8}\
.retrans line{stroke:#c33;stroke-dasharray:5 3}.report line{stroke:#888;stroke-dasharray:2 3}\
.col{stroke:#999}.note{color:#a60}";

/// Escapes text for HTML element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\r' && c != '\t' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query-string value.
pub fn url_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n",
        esc(title)
    )
}

const COLUMN: usize = 230;
const LEFT: usize = 90;
const TOP: usize = 56;
const ROW: usize = 30;

/// The ladder's SVG: a column per address, an arrow per message linking to `#m<N>`.
pub fn ladder_svg(ladder: &Ladder) -> String {
    let cols = ladder.columns.len().max(1);
    let width = LEFT + cols * COLUMN;
    let height = TOP + ladder.arrows.len() * ROW + 20;
    let x = |i: usize| LEFT + COLUMN / 2 + i * COLUMN;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"ladder\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\"><defs><marker id=\"head\" \
         viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" \
         orient=\"auto-start-reverse\"><path d=\"M0,0L10,5L0,10z\" fill=\"context-stroke\"/>\
         </marker></defs>"
    );
    for (i, c) in ladder.columns.iter().enumerate() {
        let _ = write!(
            s,
            "<g class=\"column\"><text x=\"{}\" y=\"24\" text-anchor=\"middle\">{}</text>\
             <line class=\"col\" x1=\"{0}\" y1=\"34\" x2=\"{0}\" y2=\"{}\"/></g>",
            x(i),
            esc(&c.to_string()),
            height - 10
        );
    }
    for (row, arrow) in ladder.arrows.iter().enumerate() {
        let y = TOP + row * ROW + 12;
        let class = if arrow.report {
            "arrow report"
        } else if arrow.retransmission {
            "arrow retrans"
        } else {
            "arrow"
        };
        let mut label = arrow.label.clone();
        if arrow.retransmission {
            label.push_str(" (retransmission)");
        }
        let (x1, x2) = (x(arrow.from), x(arrow.to));
        let _ = write!(
            s,
            "<a href=\"#m{n}\"><g class=\"{class}\" data-message=\"{n}\">\
             <title>{title}</title>\
             <text x=\"4\" y=\"{y}\">{offset:+.3}s</text>",
            n = arrow.message,
            title = esc(&label),
            offset = arrow.offset_us as f64 / 1e6,
        );
        if x1 == x2 {
            let _ = write!(
                s,
                "<path d=\"M{x1},{y}h40v10h-40\" fill=\"none\" stroke=\"#1f5fa8\" \
                 marker-end=\"url(#head)\"/><text x=\"{}\" y=\"{}\">{}</text>",
                x1 + 46,
                y + 9,
                esc(&label)
            );
        } else {
            let _ = write!(
                s,
                "<line x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke-width=\"1.5\" \
                 marker-end=\"url(#head)\"/><text x=\"{}\" y=\"{}\" \
                 text-anchor=\"middle\">{}</text>",
                x1.midpoint(x2),
                y - 5,
                esc(&label)
            );
        }
        s.push_str("</g></a>");
    }
    s.push_str("</svg>");
    s
}

/// The full messages, each shown when its arrow is clicked (`#m<N>`).
fn messages_html(ladder: &Ladder) -> String {
    let mut s = String::new();
    for (i, m) in ladder.messages.iter().enumerate() {
        let _ = write!(
            s,
            "<pre class=\"msg\" id=\"m{i}\">{} UTC  {} → {}  node {}  table {}\n\n{}</pre>",
            esc(&format_time(m.time_us)),
            esc(&m.src.to_string()),
            esc(&m.dst.to_string()),
            esc(&m.node),
            esc(&m.table),
            esc(&m.raw)
        );
    }
    s
}

/// The ladder page of a call (what `sipcapture flow --html` writes and the web page shows).
/// `back` is an optional link back to the list.
pub fn flow_page(callid: &str, ladder: &Ladder, back: Option<&str>) -> String {
    let mut body = String::new();
    if let Some(back) = back {
        let _ = write!(body, "<p><a href=\"{}\">← calls</a></p>", esc(back));
    }
    let _ = write!(body, "<h1>Call {}</h1>", esc(callid));
    if let Some(first) = ladder.messages.first() {
        let _ = write!(
            body,
            "<p>{} messages from {} UTC. Click an arrow to see the message.</p>",
            ladder.cut_from.unwrap_or(ladder.messages.len()),
            esc(&format_time(first.time_us))
        );
    } else {
        body.push_str("<p>No message of this call is stored.</p>");
    }
    if let Some(total) = ladder.cut_from {
        let _ = write!(
            body,
            "<p class=\"note\">This call has {total} messages: the first {} are drawn.</p>",
            ladder.messages.len()
        );
    }
    body.push_str(&ladder_svg(ladder));
    body.push_str(&messages_html(ladder));
    page(&format!("Call {callid}"), &body)
}

/// The values of the search form, as typed.
#[derive(Debug, Clone, Default)]
pub struct FormValues {
    /// `from`.
    pub from: String,
    /// `to`.
    pub to: String,
    /// `user`.
    pub user: String,
    /// `callid`.
    pub callid: String,
    /// `method`.
    pub method: String,
    /// `ip`.
    pub ip: String,
}

impl FormValues {
    fn query(&self) -> String {
        [
            ("from", &self.from),
            ("to", &self.to),
            ("user", &self.user),
            ("callid", &self.callid),
            ("method", &self.method),
            ("ip", &self.ip),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", url_value(v)))
        .collect::<Vec<_>>()
        .join("&")
    }
}

/// What the list shows besides the calls.
#[derive(Debug, Clone, Default)]
pub struct ListState {
    /// 0-based page.
    pub page: usize,
    /// Another page exists.
    pub more: bool,
    /// The search stopped before the oldest rows.
    pub partial: bool,
    /// An error to show instead of the list.
    pub error: Option<String>,
}

/// The search page: the form, then the calls (newest first) with paging links.
pub fn calls_page(form: &FormValues, calls: &[CallSummary], state: &ListState) -> String {
    let mut body = String::from("<h1>Captured calls</h1><form method=\"get\" action=\"/\">");
    for (name, label, value, hint) in [
        ("from", "From", &form.from, "1h, 2026-12-05 10:00"),
        ("to", "To", &form.to, "now"),
        ("user", "User", &form.user, "from, to or R-URI user"),
        ("callid", "Call-ID", &form.callid, ""),
        ("method", "Method", &form.method, "INVITE, 486"),
        ("ip", "IP", &form.ip, "source or destination"),
    ] {
        let _ = write!(
            body,
            "<label>{label} <input name=\"{name}\" id=\"{name}\" value=\"{}\" \
             placeholder=\"{hint}\" size=\"14\"></label>",
            esc(value)
        );
    }
    body.push_str("<button type=\"submit\" id=\"search\">Search</button></form>");
    if let Some(error) = &state.error {
        let _ = write!(body, "<p class=\"note\" id=\"error\">{}</p>", esc(error));
        return page("sipcapture: calls", &body);
    }
    if calls.is_empty() {
        body.push_str("<p id=\"none\">No calls found.</p>");
    } else {
        body.push_str(
            "<table id=\"calls\"><thead><tr><th>Time (UTC)</th><th>Duration</th>\
             <th>Method</th><th>From → To</th><th>Reply</th><th>Messages</th><th>Nodes</th>\
             <th>Call-ID</th></tr></thead><tbody>",
        );
        for c in calls {
            let _ = write!(
                body,
                "<tr class=\"call\"><td>{}</td><td>{:.3} s</td><td>{}</td><td>{} → {}</td>\
                 <td>{}</td><td>{}</td><td>{}</td>\
                 <td><a class=\"open\" href=\"/call?callid={}\">{}</a></td></tr>",
                esc(&format_time(c.first_us)),
                c.duration_secs(),
                esc(&c.method),
                esc(&c.from_user),
                esc(&c.to_user),
                esc(if c.final_reply.is_empty() {
                    "-"
                } else {
                    &c.final_reply
                }),
                c.messages,
                esc(&c.nodes.join(", ")),
                url_value(&c.callid),
                esc(&c.callid)
            );
        }
        body.push_str("</tbody></table>");
    }
    if state.partial {
        body.push_str(
            "<p class=\"note\">The search stopped after reading its row limit: narrow the \
             time range to see older calls.</p>",
        );
    }
    let query = form.query();
    let link = |page: usize| {
        if query.is_empty() {
            format!("/?page={page}")
        } else {
            format!("/?{query}&page={page}")
        }
    };
    body.push_str("<p>");
    if state.page > 0 {
        let _ = write!(
            body,
            "<a id=\"prev\" href=\"{}\">← newer</a> ",
            esc(&link(state.page - 1))
        );
    }
    if state.more {
        let _ = write!(
            body,
            "<a id=\"next\" href=\"{}\">older →</a>",
            esc(&link(state.page + 1))
        );
    }
    body.push_str("</p>");
    page("sipcapture: calls", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::calls::tests::msg;

    #[test]
    fn escaping_and_urls() {
        assert_eq!(
            esc("<script>\"a\"&'b'\u{1}"),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;\\x01"
        );
        assert_eq!(url_value("a b@c/d"), "a%20b%40c%2Fd");
    }

    #[test]
    fn one_arrow_per_message_and_hostile_text_escaped() {
        let a = ("10.0.0.1", 5060);
        let b = ("10.0.0.2", 5060);
        let mut ms = vec![
            msg(1_000_000, "INVITE", "", "1 INVITE", a),
            msg(
                1_100_000,
                "180",
                "<img src=x onerror=alert(1)>",
                "1 INVITE",
                b,
            ),
            msg(1_200_000, "200", "OK", "1 INVITE", b),
        ];
        ms[0].raw = "INVITE sip:bob@b SIP/2.0\r\nSubject: <script>x</script>\r\n".into();
        let html = flow_page("c1<x>", &Ladder::build(ms), Some("/"));
        assert_eq!(html.matches("<g class=\"arrow").count(), 3);
        assert_eq!(html.matches("<pre class=\"msg\"").count(), 3);
        assert!(
            !html.contains("<script>") && !html.contains("<img"),
            "{html}"
        );
        assert!(html.contains("href=\"#m1\""));
        assert!(!html.contains("http://") || !html.contains("src=\"http"));
    }

    #[test]
    fn list_with_paging() {
        let form = FormValues {
            user: "alice bob".into(),
            ..FormValues::default()
        };
        let html = calls_page(
            &form,
            &[],
            &ListState {
                page: 1,
                more: true,
                ..ListState::default()
            },
        );
        assert!(html.contains("No calls found"));
        assert!(
            html.contains("href=\"/?user=alice%20bob&amp;page=2\""),
            "{html}"
        );
        assert!(
            html.contains("href=\"/?user=alice%20bob&amp;page=0\""),
            "{html}"
        );
    }
}
