//! The hot write path: one transaction per batch part — check the stream's committed sequence,
//! write every table's rows, save the new sequence, commit — straight through the sqlx pool
//! under SeaORM, each value encoded once into what the driver sends:
//!
//! - PostgreSQL: `COPY … FROM STDIN (FORMAT binary)` inside the transaction (no statement to
//!   parse or plan per row, no text conversions on the server);
//! - MySQL / MariaDB: multi-row `INSERT … VALUES (?,…),…` whose values are written directly
//!   into the driver's argument buffer;
//! - SQLite: multi-row `INSERT … VALUES` (one prepared statement per row count, cached by
//!   sqlx), each text bound once.
//!
//! The rows are [`Cell`]s borrowed from the received records: from the gRPC message to the
//! database driver nothing is copied per column (the SeaORM `Value` path copied every text three
//! times and allocated for each). Errors come back as SeaORM's [`DbErr`], so retry and isolation
//! treat both paths alike ([`crate::db::is_retryable`]).

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use sea_orm::sqlx::mysql::{MySqlArguments, MySqlConnection, MySqlPool};
use sea_orm::sqlx::postgres::{PgConnection, PgPool};
use sea_orm::sqlx::sqlite::{SqliteArguments, SqliteConnection, SqlitePool};
use sea_orm::sqlx::{self, Arguments as _, AssertSqlSafe};
use sea_orm::{DatabaseBackend, DatabaseConnection, DbErr, RuntimeErr};

use crate::db::insert::{TableRows, multi_row_insert, quoted};
use crate::table::Cell;

/// Bind parameters per statement we stay under (SQLite allows 32766, MySQL 65535).
const MAX_PARAMS: usize = 30_000;
/// Bytes of `COPY` data gathered before they are sent.
const COPY_CHUNK: usize = 1 << 20;
/// 2000-01-01T00:00:00Z in Unix microseconds: PostgreSQL's timestamp epoch.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// The pool of a capture mode's database, as the driver's own type.
#[derive(Debug, Clone)]
pub enum Bulk {
    /// SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
    /// MySQL / MariaDB.
    MySql(MySqlPool),
}

/// One batch part to commit.
#[derive(Debug)]
pub struct Part<'p, 'a> {
    /// The stream-state key.
    pub stream_id: &'p str,
    /// The collector.
    pub collector_id: &'p str,
    /// The newest batch sequence the part holds.
    pub sequence: u64,
    /// The oldest.
    pub first_sequence: u64,
    /// Look the committed sequence up first and write nothing when the part is there.
    pub skip_if_committed: bool,
    /// Rows per table.
    pub tables: &'p [TableRows<'a>],
    /// The stream state's `updated_us`.
    pub now_us: i64,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed: rows written per table, in the part's order.
    Written(Vec<u64>),
    /// The whole part was committed before: nothing written.
    AllCommitted,
    /// Some of its batches were committed before: nothing written.
    Partly,
}

/// SeaORM's error for a driver error: lost connections and pool trouble as connection errors
/// (retried), everything else as an execution error whose text says whether it may pass.
fn db_err(e: sqlx::Error) -> DbErr {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(e))),
        e => DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e))),
    }
}

fn encode_err(e: sqlx::error::BoxDynError) -> DbErr {
    DbErr::Custom(format!("cannot encode a value: {e}"))
}

fn state_select(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => {
            r#"SELECT "last_sequence" FROM "sipcapture_stream_state" WHERE "stream_id" = $1"#
        }
        DatabaseBackend::MySql => {
            "SELECT `last_sequence` FROM `sipcapture_stream_state` WHERE `stream_id` = ?"
        }
        _ => r#"SELECT "last_sequence" FROM "sipcapture_stream_state" WHERE "stream_id" = ?"#,
    }
}

fn state_upsert(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => {
            r#"INSERT INTO "sipcapture_stream_state" ("stream_id", "collector_id", "last_sequence", "updated_us") VALUES ($1, $2, $3, $4) ON CONFLICT ("stream_id") DO UPDATE SET "collector_id" = "excluded"."collector_id", "last_sequence" = "excluded"."last_sequence", "updated_us" = "excluded"."updated_us""#
        }
        DatabaseBackend::MySql => {
            "INSERT INTO `sipcapture_stream_state` (`stream_id`, `collector_id`, `last_sequence`, `updated_us`) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE `collector_id` = VALUES(`collector_id`), `last_sequence` = VALUES(`last_sequence`), `updated_us` = VALUES(`updated_us`)"
        }
        _ => {
            r#"INSERT INTO "sipcapture_stream_state" ("stream_id", "collector_id", "last_sequence", "updated_us") VALUES (?, ?, ?, ?) ON CONFLICT ("stream_id") DO UPDATE SET "collector_id" = "excluded"."collector_id", "last_sequence" = "excluded"."last_sequence", "updated_us" = "excluded"."updated_us""#
        }
    }
}

/// One transaction on `$pool`: the committed-sequence check, `$insert` per table, the new
/// sequence, the commit. (A macro: the three drivers' transactions are different types.)
macro_rules! commit_part {
    ($pool:expr, $backend:expr, $part:expr, $insert:ident) => {{
        let part: &Part<'_, '_> = $part;
        let mut txn = $pool.begin().await.map_err(db_err)?;
        if part.skip_if_committed {
            let committed: Option<i64> = sqlx::query_scalar(state_select($backend))
                .bind(part.stream_id)
                .fetch_optional(&mut *txn)
                .await
                .map_err(db_err)?;
            let committed = committed.and_then(|c| u64::try_from(c).ok()).unwrap_or(0);
            if committed >= part.first_sequence {
                txn.rollback().await.map_err(db_err)?;
                return Ok(if committed >= part.sequence {
                    Outcome::AllCommitted
                } else {
                    Outcome::Partly
                });
            }
        }
        let mut written = Vec::with_capacity(part.tables.len());
        for rows in part.tables {
            rows.check()?;
            written.push($insert(&mut txn, rows).await?);
        }
        sqlx::query(state_upsert($backend))
            .bind(part.stream_id)
            .bind(part.collector_id)
            .bind(i64::try_from(part.sequence).unwrap_or(i64::MAX))
            .bind(part.now_us)
            .execute(&mut *txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        Ok(Outcome::Written(written))
    }};
}

impl Bulk {
    /// The driver pool under a SeaORM connection (none for a backend we do not write to).
    pub fn of(db: &DatabaseConnection) -> Option<Bulk> {
        // Matching on the backend first: sea-orm's pool getters panic on another backend.
        match db.get_database_backend() {
            DatabaseBackend::Sqlite => Some(Bulk::Sqlite(db.get_sqlite_connection_pool().clone())),
            DatabaseBackend::Postgres => {
                Some(Bulk::Postgres(db.get_postgres_connection_pool().clone()))
            }
            DatabaseBackend::MySql => Some(Bulk::MySql(db.get_mysql_connection_pool().clone())),
            _ => None,
        }
    }

    /// Commits one batch part in one transaction.
    pub async fn commit(&self, part: &Part<'_, '_>) -> Result<Outcome, DbErr> {
        match self {
            Bulk::Sqlite(pool) => commit_part!(pool, DatabaseBackend::Sqlite, part, sqlite_insert),
            Bulk::Postgres(pool) => commit_part!(pool, DatabaseBackend::Postgres, part, pg_copy),
            Bulk::MySql(pool) => commit_part!(pool, DatabaseBackend::MySql, part, mysql_insert),
        }
    }
}

/// The multi-row INSERT for the rows whose cells are `chunk`.
fn chunk_sql(backend: DatabaseBackend, rows: &TableRows<'_>, chunk: &[Cell<'_>]) -> String {
    let cols = rows.columns();
    multi_row_insert(backend, &rows.table, cols, chunk.len() / cols.len())
}

/// An address as text, written into a reused buffer.
fn ip_str<'b>(buf: &'b mut String, ip: &IpAddr) -> &'b str {
    buf.clear();
    // Writing into a String cannot fail.
    let _infallible = std::fmt::Write::write_fmt(buf, format_args!("{ip}"));
    buf.as_str()
}

async fn sqlite_insert(conn: &mut SqliteConnection, rows: &TableRows<'_>) -> Result<u64, DbErr> {
    let cols = rows.columns();
    // The empty text, shared: most columns of most rows are empty.
    let empty: Arc<str> = Arc::from("");
    let mut ip_text = String::new();
    let mut written = 0;
    for chunk in rows.chunks(MAX_PARAMS / cols.len()) {
        let sql = chunk_sql(DatabaseBackend::Sqlite, rows, chunk);
        let mut args = SqliteArguments::default();
        args.reserve(chunk.len(), 0);
        for cell in chunk {
            match cell {
                Cell::Text(s) if s.is_empty() => args.add(Arc::clone(&empty)),
                Cell::Text(s) => args.add(Arc::<str>::from(s.as_ref())),
                Cell::Ip(None) => args.add(Arc::clone(&empty)),
                Cell::Ip(Some(ip)) => args.add(Arc::<str>::from(ip_str(&mut ip_text, ip))),
                Cell::Int(n) => args.add(*n),
                Cell::BigInt(n) => args.add(*n),
                Cell::DateTime(t) => args.add(*t),
                Cell::Blob(b) => args.add(b.to_vec()),
                Cell::Json(s) => args.add(Arc::<str>::from(s.as_str())),
            }
            .map_err(encode_err)?;
        }
        written += sqlx::query_with(AssertSqlSafe(sql), args)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?
            .rows_affected();
    }
    Ok(written)
}

async fn mysql_insert(conn: &mut MySqlConnection, rows: &TableRows<'_>) -> Result<u64, DbErr> {
    let cols = rows.columns();
    let mut ip_text = String::new();
    let mut written = 0;
    for chunk in rows.chunks(MAX_PARAMS / cols.len()) {
        let sql = chunk_sql(DatabaseBackend::MySql, rows, chunk);
        let mut args = MySqlArguments::default();
        let bytes: usize = chunk.iter().map(cell_size).sum();
        args.reserve(chunk.len(), bytes);
        for cell in chunk {
            match cell {
                Cell::Text(s) => args.add(s.as_ref()),
                Cell::Ip(None) => args.add(""),
                Cell::Ip(Some(ip)) => args.add(ip_str(&mut ip_text, ip)),
                Cell::Int(n) => args.add(*n),
                Cell::BigInt(n) => args.add(*n),
                Cell::DateTime(t) => args.add(*t),
                Cell::Blob(b) => args.add(*b),
                Cell::Json(s) => args.add(s.as_str()),
            }
            .map_err(encode_err)?;
        }
        written += sqlx::query_with(AssertSqlSafe(sql), args)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?
            .rows_affected();
    }
    Ok(written)
}

/// About the bytes a cell takes in a driver buffer.
fn cell_size(cell: &Cell<'_>) -> usize {
    match cell {
        Cell::Text(s) => s.len() + 2,
        Cell::Json(s) => s.len() + 4,
        Cell::Blob(b) => b.len() + 4,
        Cell::Ip(_) => 20,
        _ => 8,
    }
}

async fn pg_copy(conn: &mut PgConnection, rows: &TableRows<'_>) -> Result<u64, DbErr> {
    let cols = rows.columns();
    let names: Vec<String> = cols.iter().map(|c| quoted(c.name)).collect();
    let statement = format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        quoted(&rows.table),
        names.join(", ")
    );
    let mut copy = conn.copy_in_raw(&statement).await.map_err(db_err)?;
    let mut data = Vec::with_capacity(COPY_CHUNK + 64 * 1024);
    copy_header(&mut data);
    for row in rows.chunks(1) {
        copy_row(&mut data, row)?;
        if data.len() >= COPY_CHUNK {
            copy.send(data.as_slice()).await.map_err(db_err)?;
            data.clear();
        }
    }
    data.extend_from_slice(&(-1i16).to_be_bytes());
    copy.send(data.as_slice()).await.map_err(db_err)?;
    copy.finish().await.map_err(db_err)
}

/// The binary `COPY` signature, flags and (empty) header extension.
fn copy_header(data: &mut Vec<u8>) {
    data.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    data.extend_from_slice(&0i32.to_be_bytes());
    data.extend_from_slice(&0i32.to_be_bytes());
}

/// One tuple of a binary `COPY`: the field count, then each field's length and bytes in the
/// column's binary format (text as UTF-8, int4, int8, timestamp as µs since 2000, bytea).
fn copy_row(data: &mut Vec<u8>, row: &[Cell<'_>]) -> Result<(), DbErr> {
    let fields = i16::try_from(row.len()).map_err(|_| DbErr::Custom("too many columns".into()))?;
    data.extend_from_slice(&fields.to_be_bytes());
    for cell in row {
        match cell {
            Cell::Text(s) => copy_field(data, s.as_bytes())?,
            Cell::Json(s) => {
                // jsonb's binary format: version 1, then the text.
                let len = i32::try_from(s.len() + 1).map_err(|_| {
                    DbErr::Custom(format!("a value of {} bytes is too long", s.len()))
                })?;
                data.extend_from_slice(&len.to_be_bytes());
                data.push(1);
                data.extend_from_slice(s.as_bytes());
            }
            Cell::Blob(b) => copy_field(data, b)?,
            Cell::Ip(None) => copy_field(data, b"")?,
            Cell::Ip(Some(ip)) => {
                let at = data.len();
                data.extend_from_slice(&0i32.to_be_bytes());
                write!(data, "{ip}").map_err(|e| DbErr::Custom(e.to_string()))?;
                let len = i32::try_from(data.len() - at - 4).unwrap_or(0);
                data[at..at + 4].copy_from_slice(&len.to_be_bytes());
            }
            Cell::Int(n) => {
                data.extend_from_slice(&4i32.to_be_bytes());
                data.extend_from_slice(&n.to_be_bytes());
            }
            Cell::BigInt(n) => {
                data.extend_from_slice(&8i32.to_be_bytes());
                data.extend_from_slice(&n.to_be_bytes());
            }
            Cell::DateTime(t) => {
                let micros = t.and_utc().timestamp_micros().saturating_sub(PG_EPOCH_US);
                data.extend_from_slice(&8i32.to_be_bytes());
                data.extend_from_slice(&micros.to_be_bytes());
            }
        }
    }
    Ok(())
}

fn copy_field(data: &mut Vec<u8>, bytes: &[u8]) -> Result<(), DbErr> {
    let len = i32::try_from(bytes.len())
        .map_err(|_| DbErr::Custom(format!("a value of {} bytes is too long", bytes.len())))?;
    data.extend_from_slice(&len.to_be_bytes());
    data.extend_from_slice(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::schema::STREAM_STATE_TABLE;
    use std::borrow::Cow;
    use std::net::{IpAddr, Ipv6Addr};

    #[test]
    fn state_statements_name_the_state_table() {
        for backend in [
            DatabaseBackend::Sqlite,
            DatabaseBackend::Postgres,
            DatabaseBackend::MySql,
        ] {
            assert!(state_select(backend).contains(STREAM_STATE_TABLE));
            assert!(state_upsert(backend).contains(STREAM_STATE_TABLE));
        }
    }

    #[test]
    fn copy_rows_use_postgres_binary_formats() {
        let t = chrono::DateTime::from_timestamp(946_684_801, 0)
            .unwrap()
            .naive_utc();
        let row = [
            Cell::DateTime(t),
            Cell::BigInt(7),
            Cell::Text(Cow::Borrowed("ab")),
            Cell::Ip(Some(IpAddr::V6(Ipv6Addr::LOCALHOST))),
            Cell::Int(-1),
            Cell::Blob(b"\0x"),
        ];
        let mut data = Vec::new();
        copy_header(&mut data);
        assert_eq!(data.len(), 19);
        data.clear();
        copy_row(&mut data, &row).unwrap();
        let mut want = vec![0, 6];
        want.extend([0, 0, 0, 8, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40]); // one second after 2000
        want.extend([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
        want.extend([0, 0, 0, 2, b'a', b'b']);
        want.extend([0, 0, 0, 3, b':', b':', b'1']);
        want.extend([0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]);
        want.extend([0, 0, 0, 2, 0, b'x']);
        assert_eq!(data, want);
    }
}
