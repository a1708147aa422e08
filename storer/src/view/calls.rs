//! Messages grouped into one summary per call: what `sipcapture calls` prints and the web
//! page lists.

use std::collections::BTreeSet;

use super::{Message, MessageKind};

/// One call, as a line of the list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallSummary {
    /// Call-ID.
    pub callid: String,
    /// Time of the first message, microseconds since the epoch.
    pub first_us: i64,
    /// Time of the last message.
    pub last_us: i64,
    /// The first request's method (INVITE, REGISTER, ...).
    pub method: String,
    /// From user of the first request.
    pub from_user: String,
    /// To user of the first request.
    pub to_user: String,
    /// Request-URI user of the first request.
    pub ruri_user: String,
    /// The final reply to the first request's method (`200 OK`, `486 Busy Here`), or the last
    /// provisional one when no final reply was captured; empty when no reply was.
    pub final_reply: String,
    /// Its status code (0 without a reply).
    pub final_code: u16,
    /// Stored messages.
    pub messages: usize,
    /// Capture nodes that saw the call, sorted.
    pub nodes: Vec<String>,
}

impl CallSummary {
    /// Duration from the first to the last message, seconds.
    pub fn duration_secs(&self) -> f64 {
        (self.last_us - self.first_us) as f64 / 1e6
    }
}

/// The summary of one call's messages (oldest first); `None` without a SIP message.
pub fn summarise(callid: &str, messages: &[&Message]) -> Option<CallSummary> {
    let sip: Vec<&&Message> = messages
        .iter()
        .filter(|m| m.kind == MessageKind::Sip)
        .collect();
    let first = sip.first()?;
    let request = sip
        .iter()
        .find(|m| m.status().is_none())
        .copied()
        .unwrap_or(first);
    let method = if request.status().is_none() {
        request.method.clone()
    } else {
        request.cseq_method().to_owned()
    };
    // The answer to the dialog-creating request: the last final reply for its CSeq method
    // (a 401/407 challenge followed by a 200 gives 200), else the last provisional one.
    let replies = sip
        .iter()
        .filter(|m| m.status().is_some() && m.cseq_method() == method);
    let mut final_reply: Option<&Message> = None;
    let mut provisional: Option<&Message> = None;
    for reply in replies {
        if reply.status().is_some_and(|c| c >= 200) {
            final_reply = Some(reply);
        } else {
            provisional = Some(reply);
        }
    }
    let answer = final_reply.or(provisional);
    let nodes: BTreeSet<&str> = messages
        .iter()
        .map(|m| m.node.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    Some(CallSummary {
        callid: callid.to_owned(),
        first_us: first.time_us,
        last_us: sip.last().map_or(first.time_us, |m| m.time_us),
        method,
        from_user: request.from_user.clone(),
        to_user: request.to_user.clone(),
        ruri_user: request.ruri_user.clone(),
        final_reply: answer.map(|m| m.label()).unwrap_or_default(),
        final_code: answer.and_then(|m| m.status()).unwrap_or(0),
        messages: sip.len(),
        nodes: nodes.into_iter().map(str::to_owned).collect(),
    })
}

/// The summaries of `callids` (in that order) from their messages.
pub fn summaries(callids: &[String], messages: &[Message]) -> Vec<CallSummary> {
    callids
        .iter()
        .filter_map(|id| {
            let of_call: Vec<&Message> = messages.iter().filter(|m| &m.callid == id).collect();
            summarise(id, &of_call)
        })
        .collect()
}

/// A time in microseconds as `YYYY-MM-DD HH:MM:SS.mmm` UTC.
pub fn format_time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| us.to_string())
}

/// The list as a fixed-width text table, newest first as given.
pub fn render_table(calls: &[CallSummary]) -> String {
    let mut rows = vec![[
        "TIME (UTC)".to_owned(),
        "DURATION".to_owned(),
        "METHOD".to_owned(),
        "FROM -> TO".to_owned(),
        "REPLY".to_owned(),
        "MSGS".to_owned(),
        "NODES".to_owned(),
        "CALL-ID".to_owned(),
    ]];
    for c in calls {
        rows.push([
            format_time(c.first_us),
            format!("{:.3}s", c.duration_secs()),
            c.method.clone(),
            format!("{} -> {}", c.from_user, c.to_user),
            if c.final_reply.is_empty() {
                "-".to_owned()
            } else {
                c.final_reply.clone()
            },
            c.messages.to_string(),
            c.nodes.join(","),
            c.callid.clone(),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::view::Endpoint;

    pub(crate) fn msg(
        t: i64,
        method: &str,
        reason: &str,
        cseq: &str,
        from: (&str, u16),
    ) -> Message {
        Message {
            table: "sip_capture_call_20261205".into(),
            time_us: t,
            method: method.into(),
            reply_reason: reason.into(),
            cseq: cseq.into(),
            callid: "c1".into(),
            callid_aleg: String::new(),
            from_user: "alice".into(),
            to_user: "bob".into(),
            ruri_user: "bob".into(),
            src: Endpoint {
                ip: from.0.into(),
                port: from.1,
            },
            dst: Endpoint {
                ip: if from.0 == "10.0.0.1" {
                    "10.0.0.2".into()
                } else {
                    "10.0.0.1".into()
                },
                port: 5060,
            },
            node: "n1".into(),
            proto: 17,
            kind: MessageKind::Sip,
            raw: format!("{method} x SIP/2.0\r\nCSeq: {cseq}\r\n\r\n"),
        }
    }

    #[test]
    fn the_final_reply_is_the_last_final_answer_to_the_invite() {
        let a = ("10.0.0.1", 5060);
        let b = ("10.0.0.2", 5060);
        let ms = vec![
            msg(1_000_000, "INVITE", "", "1 INVITE", a),
            msg(
                1_010_000,
                "407",
                "Proxy Authentication Required",
                "1 INVITE",
                b,
            ),
            msg(1_020_000, "ACK", "", "1 ACK", a),
            msg(1_030_000, "INVITE", "", "2 INVITE", a),
            msg(1_040_000, "180", "Ringing", "2 INVITE", b),
            msg(2_000_000, "200", "OK", "2 INVITE", b),
            msg(2_010_000, "ACK", "", "2 ACK", a),
            msg(5_000_000, "BYE", "", "3 BYE", b),
            msg(5_010_000, "200", "OK", "3 BYE", a),
        ];
        let s = summaries(&["c1".to_owned()], &ms);
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!(s.method, "INVITE");
        assert_eq!((s.final_code, s.final_reply.as_str()), (200, "200 OK"));
        assert_eq!(s.messages, 9);
        assert_eq!(s.nodes, vec!["n1".to_owned()]);
        assert!((s.duration_secs() - 4.01).abs() < 1e-9);
        let text = render_table(std::slice::from_ref(s));
        assert!(text.starts_with("TIME (UTC)"), "{text}");
        assert!(
            text.contains("alice -> bob  200 OK  9     n1     c1"),
            "{text}"
        );
    }

    #[test]
    fn only_provisional_or_no_reply() {
        let a = ("10.0.0.1", 5060);
        let b = ("10.0.0.2", 5060);
        let ms = vec![
            msg(1, "INVITE", "", "1 INVITE", a),
            msg(2, "180", "Ringing", "1 INVITE", b),
        ];
        let s = summaries(&["c1".to_owned()], &ms);
        assert_eq!(s[0].final_reply, "180 Ringing");
        let s = summaries(&["c1".to_owned()], &ms[..1]);
        assert_eq!((s[0].final_code, s[0].final_reply.as_str()), (0, ""));
        assert!(summaries(&["other".to_owned()], &ms).is_empty());
    }
}
