//! Per schema and backend: the column expressions a search filters on ([`Columns`]), the
//! columns a message is read from ([`select_list`]) and a row back into a [`Message`]
//! ([`decode`]: HOMER 5 columns, or HOMER 7 JSON headers and the raw message).

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::{DatabaseBackend, QueryResult, Value};

use super::query::{Holds, Schema, ViewTable};
use super::{Endpoint, Message, MessageKind, ViewError};

/// Column expressions of a schema on a backend.
pub(super) struct Columns {
    pub(super) id_select: &'static str,
    pub(super) callid: &'static str,
    pub(super) aleg: &'static str,
    pub(super) correlation: &'static str,
    pub(super) time: &'static str,
    pub(super) from_user: &'static str,
    pub(super) to_user: &'static str,
    pub(super) ruri_user: &'static str,
    pub(super) method: &'static str,
    pub(super) src_ip: &'static str,
    pub(super) dst_ip: &'static str,
    pub(super) tz: bool,
}

impl Columns {
    pub(super) fn of(schema: Schema, backend: DatabaseBackend) -> Columns {
        let id_select = if backend == DatabaseBackend::MySql {
            "CAST(id AS SIGNED)"
        } else {
            "id"
        };
        match schema {
            Schema::Homer5 => Columns {
                id_select,
                callid: "callid",
                aleg: "callid_aleg",
                correlation: "correlation_id",
                time: "date",
                from_user: "from_user",
                to_user: "to_user",
                ruri_user: "ruri_user",
                method: "method",
                src_ip: "source_ip",
                dst_ip: "destination_ip",
                tz: false,
            },
            Schema::Homer7 => {
                let (from_user, to_user, ruri_user, method, src_ip, dst_ip, correlation) =
                    match backend {
                        DatabaseBackend::Postgres => (
                            "(data_header->>'from_user')",
                            "(data_header->>'to_user')",
                            "(data_header->>'ruri_user')",
                            "(data_header->>'method')",
                            "(protocol_header->>'srcIp')",
                            "(protocol_header->>'dstIp')",
                            "(protocol_header->>'correlation_id')",
                        ),
                        DatabaseBackend::MySql => (
                            "from_user",
                            "to_user",
                            "ruri_user",
                            "method",
                            "src_ip",
                            "dst_ip",
                            "correlation_id",
                        ),
                        _ => (
                            "json_extract(\"data_header\", '$.from_user')",
                            "json_extract(\"data_header\", '$.to_user')",
                            "json_extract(\"data_header\", '$.ruri_user')",
                            "json_extract(\"data_header\", '$.method')",
                            "json_extract(\"protocol_header\", '$.srcIp')",
                            "json_extract(\"protocol_header\", '$.dstIp')",
                            "json_extract(\"protocol_header\", '$.correlation_id')",
                        ),
                    };
                Columns {
                    id_select,
                    callid: "sid",
                    // HOMER 7 keeps the A-leg as the B-leg's correlation id.
                    aleg: correlation,
                    // Reports carry the call's correlation id as their sid.
                    correlation: "sid",
                    time: "create_date",
                    from_user,
                    to_user,
                    ruri_user,
                    method,
                    src_ip,
                    dst_ip,
                    tz: backend == DatabaseBackend::Postgres,
                }
            }
        }
    }

    /// A time bound as the column's type wants it.
    pub(super) fn time_value(&self, t: NaiveDateTime) -> Value {
        if self.tz {
            Value::from(t.and_utc())
        } else {
            Value::from(t)
        }
    }

    pub(super) fn time_of(&self, row: &QueryResult) -> Result<NaiveDateTime, ViewError> {
        Ok(if self.tz {
            row.try_get::<DateTime<Utc>>("", "t")?.naive_utc()
        } else {
            row.try_get::<NaiveDateTime>("", "t")?
        })
    }
}

pub(super) fn select_list(table: &ViewTable, backend: DatabaseBackend) -> String {
    match (table.schema, table.holds) {
        (Schema::Homer5, Holds::Reports(_)) => "micro_ts, correlation_id, source_ip, source_port, \
             destination_ip, destination_port, proto, type, node, msg"
            .to_owned(),
        (Schema::Homer5, _) => "micro_ts, method, reply_reason, cseq, callid, callid_aleg, \
             from_user, to_user, ruri_user, source_ip, source_port, destination_ip, \
             destination_port, proto, node, msg"
            .to_owned(),
        (Schema::Homer7, _) => {
            let text = |c: &str| match backend {
                DatabaseBackend::Postgres => format!("{c}::text AS {c}"),
                DatabaseBackend::MySql => format!("CAST({c} AS CHAR) AS {c}"),
                _ => c.to_owned(),
            };
            format!(
                "sid, {}, {}, raw",
                text("protocol_header"),
                text("data_header")
            )
        }
    }
}

fn port(row: &QueryResult, column: &str) -> Result<u16, ViewError> {
    let p: i32 = row.try_get("", column)?;
    Ok(u16::try_from(p).unwrap_or(0))
}

pub(super) fn decode(table: &ViewTable, row: &QueryResult) -> Result<Message, ViewError> {
    let text = |c: &str| row.try_get::<String>("", c);
    match (table.schema, table.holds) {
        (Schema::Homer5, holds) => {
            let sip = !matches!(holds, Holds::Reports(_));
            let msg: Vec<u8> = row.try_get("", "msg")?;
            let (kind, method, reply_reason, cseq, callid, aleg, from, to, ruri) = if sip {
                (
                    MessageKind::Sip,
                    text("method")?,
                    text("reply_reason")?,
                    text("cseq")?,
                    text("callid")?,
                    text("callid_aleg")?,
                    text("from_user")?,
                    text("to_user")?,
                    text("ruri_user")?,
                )
            } else {
                let hep_type: i32 = row.try_get("", "type")?;
                let kind = MessageKind::Report(u32::try_from(hep_type).unwrap_or(0));
                let empty = String::new;
                (
                    kind,
                    empty(),
                    empty(),
                    empty(),
                    text("correlation_id")?,
                    empty(),
                    empty(),
                    empty(),
                    empty(),
                )
            };
            let proto: i32 = row.try_get("", "proto")?;
            Ok(Message {
                table: table.name.clone(),
                time_us: row.try_get("", "micro_ts")?,
                method,
                reply_reason,
                cseq,
                callid,
                callid_aleg: aleg,
                from_user: from,
                to_user: to,
                ruri_user: ruri,
                src: Endpoint {
                    ip: text("source_ip")?,
                    port: port(row, "source_port")?,
                },
                dst: Endpoint {
                    ip: text("destination_ip")?,
                    port: port(row, "destination_port")?,
                },
                node: text("node")?,
                proto: u32::try_from(proto).unwrap_or(0),
                kind,
                raw: String::from_utf8_lossy(&msg).into_owned(),
            })
        }
        (Schema::Homer7, holds) => {
            let protocol: serde_json::Value =
                serde_json::from_str(&text("protocol_header")?).unwrap_or_default();
            let data: serde_json::Value =
                serde_json::from_str(&text("data_header")?).unwrap_or_default();
            let raw = text("raw")?;
            let p = |k: &str| json_text(&protocol, k);
            let d = |k: &str| json_text(&data, k);
            let n = |k: &str| {
                protocol
                    .get(k)
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(0)
            };
            let time_us = n("timeSeconds")
                .saturating_mul(1_000_000)
                .saturating_add(n("timeUseconds"));
            let (kind, method, reply_reason) = match holds {
                Holds::Reports(t) => (
                    MessageKind::Report(
                        t.or_else(|| u32::try_from(n("payloadType")).ok())
                            .unwrap_or(0),
                    ),
                    String::new(),
                    String::new(),
                ),
                _ => {
                    // The first line says request or reply (heplify's `method` key may hold
                    // the CSeq method of a reply).
                    let (method, reason) = first_line(&raw);
                    let method = if method.is_empty() {
                        d("method")
                    } else {
                        method
                    };
                    (MessageKind::Sip, method, reason)
                }
            };
            let sid = text("sid")?;
            Ok(Message {
                table: table.name.clone(),
                time_us,
                method,
                reply_reason,
                cseq: d("cseq"),
                callid: if d("callid").is_empty() {
                    sid
                } else {
                    d("callid")
                },
                callid_aleg: {
                    let c = p("correlation_id");
                    if c == d("callid") { String::new() } else { c }
                },
                from_user: d("from_user"),
                to_user: d("to_user"),
                ruri_user: d("ruri_user"),
                src: Endpoint {
                    ip: p("srcIp"),
                    port: u16::try_from(n("srcPort")).unwrap_or(0),
                },
                dst: Endpoint {
                    ip: p("dstIp"),
                    port: u16::try_from(n("dstPort")).unwrap_or(0),
                },
                node: {
                    let node = d("node");
                    if node.is_empty() {
                        p("captureId")
                    } else {
                        node
                    }
                },
                proto: u32::try_from(n("protocol")).unwrap_or(0),
                kind,
                raw,
            })
        }
    }
}

/// A JSON value as text (strings as they are, numbers printed).
fn json_text(v: &serde_json::Value, key: &str) -> String {
    match v.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The method, or the status code and reason, of a SIP message's first line.
pub fn first_line(raw: &str) -> (String, String) {
    let line = raw.lines().next().unwrap_or("");
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        (code.to_owned(), reason.trim().to_owned())
    } else {
        let method = line.split(' ').next().unwrap_or("");
        (method.to_owned(), String::new())
    }
}
