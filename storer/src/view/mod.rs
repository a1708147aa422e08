//! The read side: find calls in what was captured and draw their message flow.
//!
//! Data flow: [`query`] (all SQL, with [`decode`] turning rows of either schema into messages: which tables a search covers, the calls of a search walked
//! newest first through the `date` / `create_date` index, the messages of a call by Call-ID,
//! its related legs and reports; HOMER 5 and HOMER 7 tables on SQLite, PostgreSQL and MariaDB)
//! → [`calls`] (messages grouped into one summary per call: times, users, final reply, nodes)
//! and [`ladder`] (messages into a ladder: one column per IP:port, arrows, retransmissions;
//! drawn as text) → [`html`] (the same as self-contained HTML pages with an SVG ladder, no
//! script) → [`web`] (the read-only page a storer or `up` serves on `web_listen`).
//!
//! Nothing here writes: the view opens its own pool and only runs SELECTs.

pub mod calls;
pub mod decode;
pub mod html;
pub mod ladder;
pub mod query;
pub mod web;

use std::fmt;

use chrono::{DateTime, Utc};

/// One page of calls for `search`: their summaries (newest activity first) and whether more
/// exist.
pub async fn search_calls(
    view: &query::View,
    search: &Search,
) -> Result<(Vec<calls::CallSummary>, query::Found), ViewError> {
    // One catalogue read for both steps.
    let tables = view.tables().await?;
    let found = view.find(&tables, search).await?;
    let messages = view
        .messages(&tables, &found.callids, search.from, search.to)
        .await?;
    Ok((calls::summaries(&found.callids, &messages), found))
}

/// Why a search or a flow could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// Connecting failed, or the URL is not one we support.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sea_orm::DbErr),
    /// A search parameter is not usable.
    #[error("{0}")]
    BadSearch(String),
}

/// One side of a message: address and port as stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Endpoint {
    /// The address, as text (IPv4 or IPv6).
    pub ip: String,
    /// The port.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ip.contains(':') {
            write!(f, "[{}]:{}", self.ip, self.port)
        } else {
            write!(f, "{}:{}", self.ip, self.port)
        }
    }
}

/// What a stored row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    /// A SIP request or reply.
    Sip,
    /// A HEP report correlated with the call (RTCP, QoS, log), with its HEP payload type.
    Report(u32),
}

/// One stored message, normalised from either schema.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Message {
    /// The table it was read from.
    pub table: String,
    /// Capture time, microseconds since the epoch.
    pub time_us: i64,
    /// Request method, or the reply's status code as text (HOMER's `method` column).
    pub method: String,
    /// A reply's reason phrase.
    pub reply_reason: String,
    /// The CSeq header value (`1 INVITE`).
    pub cseq: String,
    /// Call-ID.
    pub callid: String,
    /// The A-leg Call-ID header's value, when the message had one.
    pub callid_aleg: String,
    /// From user.
    pub from_user: String,
    /// To user.
    pub to_user: String,
    /// Request-URI user.
    pub ruri_user: String,
    /// Sender.
    pub src: Endpoint,
    /// Receiver.
    pub dst: Endpoint,
    /// Capture node.
    pub node: String,
    /// Transport protocol number (17 UDP, 6 TCP, ...).
    pub proto: u32,
    /// SIP or a report.
    pub kind: MessageKind,
    /// The message or report as captured (lossy UTF-8).
    pub raw: String,
}

impl Message {
    /// The reply's status code, when this is a SIP reply.
    pub fn status(&self) -> Option<u16> {
        if self.kind != MessageKind::Sip {
            return None;
        }
        let code: u16 = self.method.parse().ok()?;
        (100..=699).contains(&code).then_some(code)
    }

    /// The method named by the CSeq header (`INVITE` for `1 INVITE`).
    pub fn cseq_method(&self) -> &str {
        self.cseq.split_whitespace().nth(1).unwrap_or("")
    }

    /// The arrow's text: method, `code reason`, or the report kind.
    pub fn label(&self) -> String {
        match self.kind {
            MessageKind::Report(t) => report_name(t).to_owned(),
            MessageKind::Sip => match self.status() {
                Some(code) if self.reply_reason.is_empty() => code.to_string(),
                Some(code) => format!("{code} {}", self.reply_reason),
                None => self.method.clone(),
            },
        }
    }
}

/// A HEP payload type's usual name.
pub fn report_name(hep_type: u32) -> &'static str {
    match hep_type {
        5 => "RTCP",
        32..=38 => "QoS report",
        53 => "DNS",
        54 => "QoS report",
        100 => "log",
        _ => "report",
    }
}

/// A search for calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    /// Calls with a message at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Calls with a message at or before this time.
    pub to: Option<DateTime<Utc>>,
    /// From, To or Request-URI user.
    pub user: Option<String>,
    /// Call-ID.
    pub callid: Option<String>,
    /// A message of the call has this method (or reply code).
    pub method: Option<String>,
    /// A message of the call was sent from or to this address.
    pub ip: Option<String>,
    /// Calls per page (1..=[`MAX_LIMIT`]).
    pub limit: usize,
    /// Calls skipped (paging).
    pub offset: usize,
}

/// The most calls one search returns.
pub const MAX_LIMIT: usize = 1000;
/// The most messages a ladder draws (a call with more is cut, and says so).
pub const MAX_LADDER_MESSAGES: usize = 2000;
/// The most rows a search walks before it stops with what it found (a bound on the work one
/// request can cause; the answer then says it is partial).
pub const MAX_SCANNED_ROWS: usize = 200_000;

impl Search {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), ViewError> {
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(ViewError::BadSearch(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from > to
        {
            return Err(ViewError::BadSearch(format!(
                "from ({from}) is after to ({to})"
            )));
        }
        Ok(())
    }
}

impl html::FormValues {
    /// The search these values (as typed; empty = not given) ask for, one page of `limit` calls
    /// after `offset`: what the web form and `sipcapture calls` both run.
    pub fn search(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        offset: usize,
    ) -> Result<Search, ViewError> {
        let given = |v: &String| (!v.is_empty()).then(|| v.clone());
        let time = |v: &String| given(v).map(|t| parse_time(&t, now)).transpose();
        Ok(Search {
            from: time(&self.from)?,
            to: time(&self.to)?,
            user: given(&self.user),
            callid: given(&self.callid),
            method: given(&self.method),
            ip: given(&self.ip),
            limit,
            offset,
        })
    }
}

/// Parses a time given on the command line or in the search form: RFC 3339
/// (`2026-12-05T10:00:00Z`), `YYYY-MM-DD HH:MM[:SS]` or `YYYY-MM-DDTHH:MM[:SS]` (UTC), a date
/// (`YYYY-MM-DD`, midnight UTC), epoch seconds, or a span back from `now` (`15m`, `2h`, `7d`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ViewError> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(t, format) {
            return Ok(naive.and_utc());
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        && let Some(midnight) = date.and_hms_opt(0, 0, 0)
    {
        return Ok(midnight.and_utc());
    }
    if let Ok(secs) = t.parse::<i64>()
        && let Some(dt) = DateTime::from_timestamp(secs, 0)
    {
        return Ok(dt);
    }
    let (number, unit) = t.split_at(t.len().saturating_sub(1));
    if let Ok(n) = number.parse::<i64>() {
        let span = match unit {
            "s" => chrono::Duration::try_seconds(n),
            "m" => chrono::Duration::try_minutes(n),
            "h" => chrono::Duration::try_hours(n),
            "d" => chrono::Duration::try_days(n),
            _ => None,
        };
        if let Some(back) = span.and_then(|span| now.checked_sub_signed(span)) {
            return Ok(back);
        }
    }
    Err(ViewError::BadSearch(format!(
        "cannot read the time {text:?}: use 2026-12-05T10:00:00Z, \"2026-12-05 10:00\", \
         2026-12-05, epoch seconds, or a span back from now such as 15m, 2h, 7d"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_accepted_shape() {
        let now = DateTime::parse_from_rfc3339("2026-12-05T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s| parse_time(s, now).unwrap().to_rfc3339();
        assert_eq!(at("2026-12-05T10:00:00Z"), "2026-12-05T10:00:00+00:00");
        assert_eq!(at("2026-12-05T11:00:00+01:00"), "2026-12-05T10:00:00+00:00");
        assert_eq!(at("2026-12-05 10:00"), "2026-12-05T10:00:00+00:00");
        assert_eq!(at("2026-12-05"), "2026-12-05T00:00:00+00:00");
        assert_eq!(at("1764928800"), "2025-12-05T10:00:00+00:00");
        assert_eq!(at("2h"), "2026-12-05T10:00:00+00:00");
        assert_eq!(at("7d"), "2026-11-28T12:00:00+00:00");
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("99999999999999999d", now).is_err());
    }

    #[test]
    fn labels_of_requests_replies_and_reports() {
        let mut m = Message {
            table: String::new(),
            time_us: 0,
            method: "INVITE".into(),
            reply_reason: String::new(),
            cseq: "1 INVITE".into(),
            callid: String::new(),
            callid_aleg: String::new(),
            from_user: String::new(),
            to_user: String::new(),
            ruri_user: String::new(),
            src: Endpoint {
                ip: "::1".into(),
                port: 5060,
            },
            dst: Endpoint {
                ip: "10.0.0.1".into(),
                port: 5060,
            },
            node: String::new(),
            proto: 17,
            kind: MessageKind::Sip,
            raw: String::new(),
        };
        assert_eq!(m.label(), "INVITE");
        assert_eq!(m.status(), None);
        assert_eq!(m.cseq_method(), "INVITE");
        m.method = "180".into();
        m.reply_reason = "Ringing".into();
        assert_eq!(m.label(), "180 Ringing");
        assert_eq!(m.status(), Some(180));
        m.kind = MessageKind::Report(5);
        assert_eq!(m.label(), "RTCP");
        assert_eq!(m.src.to_string(), "[::1]:5060");
        assert_eq!(m.dst.to_string(), "10.0.0.1:5060");
    }
}
