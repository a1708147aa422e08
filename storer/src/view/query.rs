//! All SQL of the read side, per schema and backend. Tables are found by HOMER's names
//! (`sip_capture*`, `rtcp_capture*`, `report_capture*`, `logs_capture*` for HOMER 5;
//! `hep_proto_<type>_{call,registration,default}` for HOMER 7, whose PostgreSQL partitions are
//! read through their parent); dated HOMER 5 tables outside a search's time range (with a day
//! of slack) are not read at all.
//!
//! Every query is driven by an index of the schemas in `sql/`: a search walks the `date`
//! (`create_date`) index newest first in pages of [`PAGE_ROWS`] (keyset on the time and `id`),
//! with the user (`from_user`/`to_user`/`ruri_user`), Call-ID, address and method filters as
//! extra conditions (the user and Call-ID columns are indexed too, so the planner may start
//! there); it stops as soon as it has the calls it needs, so a day table of millions of rows
//! is never read whole. The messages of a call are then read by Call-ID (`callid` / `sid`
//! index), its reports by correlation id.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, Value};

use super::decode::{Columns, decode, select_list};
use super::{MAX_SCANNED_ROWS, Message, Search, ViewError};

/// Rows read per step of a search's walk.
pub const PAGE_ROWS: usize = 1000;
/// Call-IDs per `IN (…)` list.
const IN_CHUNK: usize = 200;

/// Which schema a table belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Kamailio / HOMER 5 columns.
    Homer5,
    /// heplify-server / HOMER 7 `hep_proto_*` JSON rows.
    Homer7,
}

/// What a table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// SIP calls (the HOMER 5 `call` split, HOMER 7 `hep_proto_1_call`, or an unsplit table).
    Calls,
    /// REGISTER transactions.
    Registrations,
    /// Other SIP (OPTIONS, SUBSCRIBE, ...).
    Other,
    /// Reports correlated with calls (RTCP, QoS, logs); HOMER 7 tables name their HEP type.
    Reports(Option<u32>),
}

/// A table the view reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewTable {
    /// Its name.
    pub name: String,
    /// Its schema.
    pub schema: Schema,
    /// What it holds.
    pub holds: Holds,
    /// The day in its name (`…_20261205`), when dated.
    pub day: Option<NaiveDate>,
}

impl ViewTable {
    /// Classifies a table by its name; `None` for tables the view does not read.
    pub fn classify(name: &str) -> Option<ViewTable> {
        if let Some(rest) = name.strip_prefix("hep_proto_") {
            let (hep_type, kind) = rest.split_once('_')?;
            let hep_type: u32 = hep_type.parse().ok()?;
            let holds = match (hep_type, kind) {
                (1, "call") => Holds::Calls,
                (1, "registration") => Holds::Registrations,
                (1, "default") => Holds::Other,
                (_, "default") => Holds::Reports(Some(hep_type)),
                _ => return None, // partitions (`…_call_20261205_1200`) are read via the parent
            };
            return Some(ViewTable {
                name: name.to_owned(),
                schema: Schema::Homer7,
                holds,
                day: None,
            });
        }
        let holds = if name.starts_with("sip_capture") {
            if name.contains("registration") {
                Holds::Registrations
            } else if name.contains("_rest") {
                Holds::Other
            } else {
                Holds::Calls
            }
        } else if ["rtcp_capture", "report_capture", "logs_capture"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            Holds::Reports(None)
        } else {
            return None;
        };
        Some(ViewTable {
            name: name.to_owned(),
            schema: Schema::Homer5,
            holds,
            day: day_of(name),
        })
    }

    fn is_sip(&self) -> bool {
        !matches!(self.holds, Holds::Reports(_))
    }

    /// Whether the table may hold rows between `from` and `to` (a day of slack each side:
    /// strftime names may follow local time).
    fn in_range(&self, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> bool {
        let Some(day) = self.day else { return true };
        let after_from = from.is_none_or(|f| day >= f.date_naive() - chrono::Days::new(1));
        let before_to = to.is_none_or(|t| day <= t.date_naive() + chrono::Days::new(1));
        after_from && before_to
    }
}

/// The date a HOMER 5 table name ends with: 8 digits (`%Y%m%d`) or 10 (`%Y%m%d%H`).
fn day_of(name: &str) -> Option<NaiveDate> {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let tail = name.get(name.len() - digits..)?;
    let ymd = match digits {
        8 => tail,
        10 => tail.get(..8)?,
        _ => return None,
    };
    NaiveDate::parse_from_str(ymd, "%Y%m%d").ok()
}

/// One page of a search: the Call-IDs newest first, and whether there are more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Call-IDs, newest activity first.
    pub callids: Vec<String>,
    /// Another page exists.
    pub more: bool,
    /// The walk stopped at [`MAX_SCANNED_ROWS`]: older calls may match too.
    pub partial: bool,
}

/// The read side of one database.
#[derive(Debug, Clone)]
pub struct View {
    db: DatabaseConnection,
}

impl View {
    /// Opens a read pool on `url` (SQLite: one connection; others: up to 4).
    pub async fn open(url: &str) -> Result<View, crate::db::DbError> {
        Ok(View {
            db: crate::db::connect(url, 4).await?,
        })
    }

    /// The view of an open pool.
    pub fn new(db: DatabaseConnection) -> View {
        View { db }
    }

    fn backend(&self) -> DatabaseBackend {
        self.db.get_database_backend()
    }

    /// The tables the view can read, newest day first (undated ones first of all).
    pub async fn tables(&self) -> Result<Vec<ViewTable>, ViewError> {
        let mut tables: Vec<ViewTable> = crate::db::tables::list_tables(&self.db)
            .await?
            .iter()
            .filter_map(|name| ViewTable::classify(name))
            .collect();
        tables.sort_by(|a, b| b.day.cmp(&a.day).then_with(|| a.name.cmp(&b.name)));
        Ok(tables)
    }

    /// The Call-IDs of one page of `search` over `tables` (from [`View::tables`]), newest
    /// activity first.
    pub async fn find(&self, tables: &[ViewTable], search: &Search) -> Result<Found, ViewError> {
        search.validate()?;
        // Call tables only, unless the search names a Call-ID or a method (REGISTER, OPTIONS
        // and their replies live in the registration and rest tables).
        let calls_only = search.callid.is_none() && search.method.is_none();
        let want = search.offset + search.limit + 1;
        let mut last_seen: HashMap<String, i64> = HashMap::new();
        let mut partial = false;
        for table in tables.iter().filter(|t| {
            t.is_sip()
                && t.in_range(search.from, search.to)
                && (!calls_only || t.holds == Holds::Calls)
        }) {
            partial |= self.walk(table, search, want, &mut last_seen).await?;
        }
        let mut order: Vec<(i64, String)> = last_seen.into_iter().map(|(id, t)| (t, id)).collect();
        order.sort_by(|a, b| b.cmp(a));
        let more = order.len() > search.offset + search.limit;
        let callids = order
            .into_iter()
            .skip(search.offset)
            .take(search.limit)
            .map(|(_, id)| id)
            .collect();
        Ok(Found {
            callids,
            more,
            partial,
        })
    }

    /// Walks `table` newest first until it has `want` distinct Call-IDs (each with the time of
    /// its newest matching row); true when it stopped at [`MAX_SCANNED_ROWS`].
    async fn walk(
        &self,
        table: &ViewTable,
        search: &Search,
        want: usize,
        seen: &mut HashMap<String, i64>,
    ) -> Result<bool, ViewError> {
        let backend = self.backend();
        let cols = Columns::of(table.schema, backend);
        let mut found_here: HashSet<String> = HashSet::new();
        let mut cursor: Option<(NaiveDateTime, i64)> = None;
        let mut scanned = 0usize;
        loop {
            let statement = walk_statement(backend, table, search, cursor);
            let rows = self.db.query_all_raw(statement).await?;
            scanned += rows.len();
            for row in &rows {
                let id: i64 = row.try_get("", "rid")?;
                let callid: String = row.try_get("", "callid")?;
                let t = cols.time_of(row)?;
                cursor = Some((t, id));
                // Microseconds where the schema has them (HOMER 5 `date` has whole seconds).
                let us = if table.schema == Schema::Homer5 {
                    row.try_get::<i64>("", "us")?
                } else {
                    t.and_utc().timestamp_micros()
                };
                seen.entry(callid.clone())
                    .and_modify(|newest| *newest = (*newest).max(us))
                    .or_insert(us);
                found_here.insert(callid);
            }
            if rows.len() < PAGE_ROWS || found_here.len() >= want {
                return Ok(false);
            }
            if scanned >= MAX_SCANNED_ROWS {
                return Ok(true);
            }
        }
    }

    /// Every stored message of the calls `callids` (SIP only) in `tables`, oldest first;
    /// `from`/`to` limit the dated tables read.
    pub async fn messages(
        &self,
        tables: &[ViewTable],
        callids: &[String],
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<Message>, ViewError> {
        let mut out = Vec::new();
        for table in tables.iter().filter(|t| t.is_sip() && t.in_range(from, to)) {
            let cols = Columns::of(table.schema, self.backend());
            self.read_in(table, cols.callid, callids, &mut out).await?;
        }
        sort(&mut out);
        Ok(out)
    }

    /// The messages of one call, oldest first. With `related`, also the legs correlated with
    /// it (its `callid_aleg`, the legs naming it as their A-leg) and its reports (RTCP, QoS,
    /// logs) by correlation id.
    pub async fn call(&self, callid: &str, related: bool) -> Result<Vec<Message>, ViewError> {
        let tables = self.tables().await?;
        let backend = self.backend();
        let mut out = Vec::new();
        let mut callids = vec![callid.to_owned()];
        for table in tables.iter().filter(|t| t.is_sip()) {
            let cols = Columns::of(table.schema, backend);
            self.read_in(table, cols.callid, &callids, &mut out).await?;
        }
        if related {
            let mut legs: Vec<String> = out
                .iter()
                .map(|m| m.callid_aleg.clone())
                .filter(|a| !a.is_empty() && a != callid)
                .collect();
            for table in tables.iter().filter(|t| t.is_sip()) {
                let cols = Columns::of(table.schema, backend);
                let mut b_legs = Vec::new();
                self.read_in(table, cols.aleg, &callids, &mut b_legs)
                    .await?;
                legs.extend(b_legs.into_iter().map(|m| m.callid));
            }
            legs.sort();
            legs.dedup();
            legs.retain(|l| l != callid);
            for table in tables.iter().filter(|t| t.is_sip()) {
                let cols = Columns::of(table.schema, backend);
                self.read_in(table, cols.callid, &legs, &mut out).await?;
            }
            callids.extend(legs);
            for table in tables.iter().filter(|t| !t.is_sip()) {
                let cols = Columns::of(table.schema, backend);
                self.read_in(table, cols.correlation, &callids, &mut out)
                    .await?;
            }
        }
        sort(&mut out);
        // The same row read twice (a leg that is also an A-leg) shows once.
        out.dedup_by(|a, b| {
            a.table == b.table && a.time_us == b.time_us && a.raw == b.raw && a.src == b.src
        });
        Ok(out)
    }

    /// Appends the rows of `table` whose `column` is one of `values`.
    async fn read_in(
        &self,
        table: &ViewTable,
        column: &str,
        values: &[String],
        out: &mut Vec<Message>,
    ) -> Result<(), ViewError> {
        let backend = self.backend();
        for chunk in values.chunks(IN_CHUNK) {
            if chunk.is_empty() {
                continue;
            }
            let mut sql = Sql::new(backend);
            sql.push(&format!(
                "SELECT {} FROM {} WHERE {column} IN (",
                select_list(table, backend),
                quote(backend, &table.name)
            ));
            for (i, v) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind(v.clone().into());
            }
            // Bounded: a call with more messages than a ladder draws is cut (and says so).
            sql.push(&format!(
                ") ORDER BY {} LIMIT {}",
                Columns::of(table.schema, backend).time,
                chunk.len() * (super::MAX_LADDER_MESSAGES + 1)
            ));
            let rows = self.db.query_all_raw(sql.statement()).await?;
            for row in &rows {
                out.push(decode(table, row)?);
            }
        }
        Ok(())
    }
}

/// One step of a search's walk over `table`: the rows after `cursor` (time, id), newest
/// first, that match `search`.
pub fn walk_statement(
    backend: DatabaseBackend,
    table: &ViewTable,
    search: &Search,
    cursor: Option<(NaiveDateTime, i64)>,
) -> Statement {
    let cols = Columns::of(table.schema, backend);
    let mut sql = Sql::new(backend);
    sql.push(&format!(
        "SELECT {id} AS rid, {callid} AS callid, {time} AS t{us} FROM {table} WHERE 1=1",
        id = cols.id_select,
        callid = cols.callid,
        time = cols.time,
        us = if table.schema == Schema::Homer5 {
            ", micro_ts AS us"
        } else {
            ""
        },
        table = quote(backend, &table.name),
    ));
    if let Some(from) = search.from {
        sql.push(&format!(" AND {} >= ", cols.time));
        sql.bind(cols.time_value(from.naive_utc()));
    }
    if let Some(to) = search.to {
        sql.push(&format!(" AND {} <= ", cols.time));
        sql.bind(cols.time_value(to.naive_utc()));
    }
    if let Some(callid) = &search.callid {
        sql.push(&format!(" AND {} = ", cols.callid));
        sql.bind(callid.clone().into());
    }
    if let Some(user) = &search.user {
        sql.push(" AND (");
        for (i, column) in [cols.from_user, cols.to_user, cols.ruri_user]
            .iter()
            .enumerate()
        {
            if i > 0 {
                sql.push(" OR ");
            }
            sql.push(&format!("{column} = "));
            sql.bind(user.clone().into());
        }
        sql.push(")");
    }
    if let Some(method) = &search.method {
        sql.push(&format!(" AND {} = ", cols.method));
        sql.bind(method.to_ascii_uppercase().into());
    }
    if let Some(ip) = &search.ip {
        sql.push(&format!(" AND ({} = ", cols.src_ip));
        sql.bind(ip.clone().into());
        sql.push(&format!(" OR {} = ", cols.dst_ip));
        sql.bind(ip.clone().into());
        sql.push(")");
    }
    if let Some((t, id)) = cursor {
        sql.push(&format!(" AND ({} < ", cols.time));
        sql.bind(cols.time_value(t));
        sql.push(&format!(" OR ({} = ", cols.time));
        sql.bind(cols.time_value(t));
        sql.push(" AND id < ");
        sql.bind(id.into());
        sql.push("))");
    }
    sql.push(&format!(
        " ORDER BY {time} DESC, id DESC LIMIT {PAGE_ROWS}",
        time = cols.time
    ));
    sql.statement()
}

fn sort(messages: &mut [Message]) {
    messages.sort_by(|a, b| {
        // Ties (one capture time) in the same order on every database.
        a.time_us
            .cmp(&b.time_us)
            .then_with(|| a.src.cmp(&b.src))
            .then_with(|| a.raw.cmp(&b.raw))
            .then_with(|| a.table.cmp(&b.table))
    });
}

/// A table name quoted for `backend` (names come from the catalogue).
fn quote(backend: DatabaseBackend, name: &str) -> String {
    match backend {
        DatabaseBackend::MySql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// SQL text with bound values, numbered per backend.
struct Sql {
    backend: DatabaseBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    fn new(backend: DatabaseBackend) -> Sql {
        Sql {
            backend,
            text: String::with_capacity(512),
            values: Vec::new(),
        }
    }

    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn bind(&mut self, v: Value) {
        self.values.push(v);
        if self.backend == DatabaseBackend::Postgres {
            self.text.push_str(&format!("${}", self.values.len()));
        } else {
            self.text.push('?');
        }
    }

    fn statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::decode::first_line;

    #[test]
    fn tables_by_name() {
        let t = ViewTable::classify("sip_capture_call_20261205").unwrap();
        assert_eq!((t.schema, t.holds), (Schema::Homer5, Holds::Calls));
        assert_eq!(t.day, NaiveDate::from_ymd_opt(2026, 12, 5));
        let t = ViewTable::classify("sip_capture_registration_2026120517").unwrap();
        assert_eq!(t.holds, Holds::Registrations);
        assert_eq!(t.day, NaiveDate::from_ymd_opt(2026, 12, 5));
        let t = ViewTable::classify("sip_capture").unwrap();
        assert_eq!((t.holds, t.day), (Holds::Calls, None));
        let t = ViewTable::classify("sip_capture_rest_20261205").unwrap();
        assert_eq!(t.holds, Holds::Other);
        let t = ViewTable::classify("rtcp_capture_20261205").unwrap();
        assert_eq!(t.holds, Holds::Reports(None));
        let t = ViewTable::classify("hep_proto_1_call").unwrap();
        assert_eq!((t.schema, t.holds), (Schema::Homer7, Holds::Calls));
        let t = ViewTable::classify("hep_proto_5_default").unwrap();
        assert_eq!(t.holds, Holds::Reports(Some(5)));
        assert_eq!(ViewTable::classify("hep_proto_1_call_20261205_1200"), None);
        assert_eq!(ViewTable::classify("stream_state"), None);
    }

    #[test]
    fn dated_tables_outside_the_range_are_skipped() {
        let t = ViewTable::classify("sip_capture_call_20261205").unwrap();
        let at = |s: &str| Some(s.parse::<DateTime<Utc>>().unwrap());
        assert!(t.in_range(None, None));
        assert!(t.in_range(at("2026-12-06T10:00:00Z"), None));
        assert!(!t.in_range(at("2026-12-07T10:00:00Z"), None));
        assert!(!t.in_range(None, at("2026-12-03T10:00:00Z")));
        assert!(t.in_range(at("2026-12-01T00:00:00Z"), at("2026-12-04T10:00:00Z")));
    }

    #[test]
    fn first_lines() {
        assert_eq!(
            first_line("SIP/2.0 180 Ringing\r\nVia: x\r\n"),
            ("180".to_owned(), "Ringing".to_owned())
        );
        assert_eq!(
            first_line("INVITE sip:bob@b SIP/2.0\r\n"),
            ("INVITE".to_owned(), String::new())
        );
    }

    /// The plan SQLite chooses for each kind of search over a HOMER 5 day table and a HOMER 7
    /// table with the schemas of `sql/sqlite/`: no step reads the table without an index.
    #[tokio::test]
    async fn searches_are_driven_by_an_index_on_sqlite() {
        use crate::db::schema::{Schema as Ddl, create_statements};
        use crate::table::TableFamily;
        let db = crate::db::connect("sqlite::memory:", 1).await.unwrap();
        let backend = DatabaseBackend::Sqlite;
        for (family, name) in [
            (TableFamily::Sip, "sip_capture_call_20261205"),
            (TableFamily::HepSip, "hep_proto_1_call"),
        ] {
            for ddl in create_statements(backend, Ddl::Family(family), name) {
                db.execute_unprepared(&ddl).await.unwrap();
            }
        }
        let at = |s: &str| Some(s.parse::<DateTime<Utc>>().unwrap());
        let base = Search {
            limit: 50,
            from: at("2026-12-05T00:00:00Z"),
            to: at("2026-12-05T23:59:59Z"),
            ..Search::default()
        };
        let searches = [
            base.clone(),
            Search {
                user: Some("alice".into()),
                ..base.clone()
            },
            Search {
                callid: Some("c1@x".into()),
                ..base.clone()
            },
            Search {
                method: Some("INVITE".into()),
                ip: Some("10.0.0.1".into()),
                ..base.clone()
            },
        ];
        let cursor = Some(("2026-12-05T12:00:00".parse::<NaiveDateTime>().unwrap(), 100));
        for name in ["sip_capture_call_20261205", "hep_proto_1_call"] {
            let table = ViewTable::classify(name).unwrap();
            for search in &searches {
                let mut statement = walk_statement(backend, &table, search, cursor);
                statement.sql = format!("EXPLAIN QUERY PLAN {}", statement.sql);
                let plan: Vec<String> = db
                    .query_all_raw(statement)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.try_get::<String>("", "detail").unwrap())
                    .collect();
                assert!(
                    plan.iter()
                        .all(|step| !step.starts_with("SCAN") || step.contains("USING")),
                    "{name} {search:?}: {plan:#?}"
                );
                assert!(
                    plan.iter().any(|step| step.contains("INDEX")),
                    "{name} {search:?}: {plan:#?}"
                );
            }
        }
    }

    #[test]
    fn placeholders_per_backend() {
        let mut pg = Sql::new(DatabaseBackend::Postgres);
        pg.push("a = ");
        pg.bind(1i64.into());
        pg.push(" AND b = ");
        pg.bind(2i64.into());
        assert_eq!(pg.text, "a = $1 AND b = $2");
        let mut my = Sql::new(DatabaseBackend::MySql);
        my.bind(1i64.into());
        assert_eq!(my.text, "?");
        assert_eq!(quote(DatabaseBackend::MySql, "a`b"), "`a``b`");
        assert_eq!(quote(DatabaseBackend::Sqlite, "a\"b"), "\"a\"\"b\"");
    }
}
