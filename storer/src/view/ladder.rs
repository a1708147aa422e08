//! A call's messages as a ladder: one column per IP:port (in the order they first appear),
//! one arrow per message from its sender to its receiver, time offsets from the first
//! message, retransmissions marked. Drawn as text here and as SVG by [`super::html`].

use std::collections::HashSet;

use super::{Endpoint, MAX_LADDER_MESSAGES, Message, MessageKind};

/// One arrow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrow {
    /// Index of the message in [`Ladder::messages`].
    pub message: usize,
    /// Sender column.
    pub from: usize,
    /// Receiver column.
    pub to: usize,
    /// Microseconds since the first message.
    pub offset_us: i64,
    /// Method, `code reason`, or report kind.
    pub label: String,
    /// The same message (same sender, receiver, capture node, first line and CSeq) was
    /// already drawn.
    pub retransmission: bool,
    /// A report (RTCP, QoS, log), not SIP.
    pub report: bool,
}

/// The ladder of a call.
#[derive(Debug, Clone)]
pub struct Ladder {
    /// Columns, by address.
    pub columns: Vec<Endpoint>,
    /// Arrows, oldest first.
    pub arrows: Vec<Arrow>,
    /// The messages drawn (at most [`MAX_LADDER_MESSAGES`]).
    pub messages: Vec<Message>,
    /// How many messages the call has in all when it had more than were drawn.
    pub cut_from: Option<usize>,
}

impl Ladder {
    /// The ladder of `messages` (oldest first).
    pub fn build(mut messages: Vec<Message>) -> Ladder {
        let total = messages.len();
        let cut_from = (total > MAX_LADDER_MESSAGES).then_some(total);
        messages.truncate(MAX_LADDER_MESSAGES);
        let mut columns: Vec<Endpoint> = Vec::new();
        let mut column = |e: &Endpoint| match columns.iter().position(|c| c == e) {
            Some(i) => i,
            None => {
                columns.push(e.clone());
                columns.len() - 1
            }
        };
        let start = messages.first().map_or(0, |m| m.time_us);
        let mut drawn: HashSet<(Endpoint, Endpoint, String, String, String)> = HashSet::new();
        let mut arrows = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let from = column(&m.src);
            let to = column(&m.dst);
            let first_line = m.raw.lines().next().unwrap_or("").to_owned();
            let key = (
                m.src.clone(),
                m.dst.clone(),
                m.node.clone(),
                first_line,
                m.cseq.clone(),
            );
            let report = matches!(m.kind, MessageKind::Report(_));
            let retransmission = !report && !drawn.insert(key);
            arrows.push(Arrow {
                message: i,
                from,
                to,
                offset_us: m.time_us - start,
                label: m.label(),
                retransmission,
                report,
            });
        }
        Ladder {
            columns,
            arrows,
            messages,
            cut_from,
        }
    }

    /// The ladder as text: a header of columns, then one line per arrow with its offset in
    /// seconds, e.g. `  +0.012 |<------- 180 Ringing -------|`.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let Some(first) = self.messages.first() else {
            out.push_str("no messages\n");
            return out;
        };
        let labels: Vec<String> = self
            .arrows
            .iter()
            .map(|a| {
                let mut l = a.label.clone();
                if a.retransmission {
                    l.push_str(" (retransmission)");
                }
                l
            })
            .collect();
        let widest_label = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        let widest_column = self
            .columns
            .iter()
            .map(|c| c.to_string().chars().count())
            .max()
            .unwrap_or(0);
        let width = (widest_label + 8).max(widest_column + 2).clamp(16, 48);
        const GUTTER: usize = 11;
        let center = |i: usize| GUTTER + width / 2 + i * width;
        let line_len = center(self.columns.len().saturating_sub(1)) + width / 2 + 1;

        out.push_str(&format!(
            "Call-ID {}  first message {} UTC  ({} messages)\n",
            first.callid,
            super::calls::format_time(first.time_us),
            self.cut_from.unwrap_or(self.messages.len())
        ));
        let mut header = vec![' '; line_len];
        for (i, c) in self.columns.iter().enumerate() {
            let text: Vec<char> = c.to_string().chars().collect();
            let start = center(i).saturating_sub(text.len() / 2);
            for (k, ch) in text.into_iter().enumerate() {
                if let Some(slot) = header.get_mut(start + k) {
                    *slot = ch;
                } else {
                    header.push(ch);
                }
            }
        }
        out.push_str(header.iter().collect::<String>().trim_end());
        out.push('\n');
        for (arrow, label) in self.arrows.iter().zip(&labels) {
            let mut line = vec![' '; line_len];
            let offset = format!("{:+.3}", arrow.offset_us as f64 / 1e6);
            for (k, ch) in offset.chars().enumerate().take(GUTTER - 1) {
                line[k] = ch;
            }
            for i in 0..self.columns.len() {
                line[center(i)] = '|';
            }
            let (a, b) = (center(arrow.from), center(arrow.to));
            let fill = if arrow.report { '.' } else { '-' };
            if a == b {
                // To itself (a local relay): a short loop mark after the column.
                let text: Vec<char> = format!("-> {label}").chars().collect();
                for (k, ch) in text.into_iter().enumerate() {
                    match line.get_mut(a + 2 + k) {
                        Some(slot) => *slot = ch,
                        None => line.push(ch),
                    }
                }
            } else {
                let (lo, hi) = (a.min(b), a.max(b));
                for slot in &mut line[lo + 1..hi] {
                    *slot = fill;
                }
                if b > a {
                    line[hi - 1] = '>';
                } else {
                    line[lo + 1] = '<';
                }
                let room = hi - lo - 5;
                let text: Vec<char> = format!(" {label} ").chars().take(room).collect();
                let start = lo + 1 + (hi - lo - 1 - text.len()) / 2;
                for (k, ch) in text.into_iter().enumerate() {
                    line[start + k] = ch;
                }
            }
            out.push_str(line.iter().collect::<String>().trim_end());
            out.push('\n');
        }
        if let Some(total) = self.cut_from {
            out.push_str(&format!(
                "(cut: the first {} of {total} messages are shown)\n",
                self.messages.len()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::calls::tests::msg;

    #[test]
    fn columns_arrows_and_retransmissions() {
        let a = ("10.0.0.1", 5060);
        let b = ("10.0.0.2", 5060);
        let ms = vec![
            msg(1_000_000, "INVITE", "", "1 INVITE", a),
            msg(1_500_000, "INVITE", "", "1 INVITE", a),
            msg(1_600_000, "180", "Ringing", "1 INVITE", b),
            msg(3_000_000, "200", "OK", "1 INVITE", b),
            msg(3_010_000, "ACK", "", "1 ACK", a),
        ];
        let ladder = Ladder::build(ms);
        assert_eq!(ladder.columns.len(), 2);
        assert_eq!(ladder.arrows.len(), 5);
        assert!(ladder.arrows[1].retransmission);
        assert!(!ladder.arrows[0].retransmission && !ladder.arrows[2].retransmission);
        assert_eq!((ladder.arrows[2].from, ladder.arrows[2].to), (1, 0));
        let text = ladder.render_text();
        let expected = "\
Call-ID c1  first message 1970-01-01 00:00:01.000 UTC  (5 messages)
                    10.0.0.1:5060                  10.0.0.2:5060
+0.000                    |----------- INVITE ---------->|
+0.500                    |-- INVITE (retransmission) -->|
+0.600                    |<------- 180 Ringing ---------|
+2.000                    |<---------- 200 OK -----------|
+2.010                    |------------ ACK ------------>|
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn long_calls_are_cut_and_say_so() {
        let ms: Vec<Message> = (0..MAX_LADDER_MESSAGES as i64 + 5)
            .map(|i| {
                msg(
                    i,
                    "OPTIONS",
                    "",
                    &format!("{i} OPTIONS"),
                    ("10.0.0.1", 5060),
                )
            })
            .collect();
        let ladder = Ladder::build(ms);
        assert_eq!(ladder.arrows.len(), MAX_LADDER_MESSAGES);
        assert_eq!(ladder.cut_from, Some(MAX_LADDER_MESSAGES + 5));
        assert!(
            ladder
                .render_text()
                .contains("(cut: the first 2000 of 2005")
        );
    }
}
