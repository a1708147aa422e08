//! Multi-row inserts into runtime-named tables (identifiers quoted, and built only from
//! validated `[A-Za-z0-9_]` names), and the per-stream committed sequence.
//!
//! PostgreSQL gets one array per column (`INSERT … SELECT * FROM UNNEST($1::text[], …)`): 44
//! parameters whatever the number of rows, so the statement is prepared once per table and
//! connection and the server plans no row list. SQLite and MySQL get multi-row `VALUES`
//! statements (sea-query), as many as the parameter limits require.

use sea_orm::sea_query::{Alias, ArrayType, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};

use crate::db::schema::STREAM_STATE_TABLE;
use crate::table::{Column, ColumnKind, TableFamily, columns};

/// Bind parameters per statement we stay under (SQLite allows 32766, PostgreSQL and MySQL 65535).
const MAX_PARAMS: usize = 30_000;
/// Rows per PostgreSQL `UNNEST` statement (bounds one statement's message size).
const PG_ROWS_PER_STATEMENT: usize = 5_000;

/// Inserts `rows` (each in the family's column order) into `table`, as few statements as the
/// backend's limits allow. Returns the number of rows written.
pub async fn insert_rows<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    family: TableFamily,
    rows: &[Vec<Value>],
) -> Result<u64, DbErr> {
    let cols: &[Column] = columns(family);
    if conn.get_database_backend() == DbBackend::Postgres {
        let mut written = 0;
        for chunk in rows.chunks(PG_ROWS_PER_STATEMENT) {
            written += conn
                .execute_raw(unnest_insert(table, cols, chunk)?)
                .await?
                .rows_affected();
        }
        return Ok(written);
    }
    // SQLite and MySQL: multi-row VALUES with `?` placeholders, the values moved in once (no
    // expression tree to build and walk for every value).
    let backend = conn.get_database_backend();
    let per_statement = (MAX_PARAMS / cols.len()).max(1);
    let mut written = 0;
    for chunk in rows.chunks(per_statement) {
        let mut values = Vec::with_capacity(chunk.len() * cols.len());
        for row in chunk {
            if row.len() != cols.len() {
                return Err(row_mismatch(table, row.len(), cols.len()));
            }
            values.extend(row.iter().cloned());
        }
        let sql = multi_row_insert(backend, table, cols, chunk.len());
        written += conn
            .execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?
            .rows_affected();
    }
    Ok(written)
}

/// `INSERT INTO t (c1, …) VALUES (?, …), (?, …)` for `rows` rows (SQLite, MySQL).
fn multi_row_insert(backend: DbBackend, table: &str, cols: &[Column], rows: usize) -> String {
    let quote = |name: &str| match backend {
        DbBackend::MySql => format!("`{}`", name.replace('`', "``")),
        _ => quoted(name),
    };
    let names: Vec<String> = cols.iter().map(|c| quote(c.name)).collect();
    let one = format!("({})", vec!["?"; cols.len()].join(","));
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        quote(table),
        names.join(", ")
    );
    sql.reserve(rows * (one.len() + 1));
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&one);
    }
    sql
}

/// A double-quoted identifier (names are validated `[A-Za-z0-9_]`; quotes doubled anyway).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn row_mismatch(table: &str, values: usize, columns: usize) -> DbErr {
    DbErr::Custom(format!(
        "row does not fit table {table}: {values} values for {columns} columns"
    ))
}

/// `INSERT INTO "table" ("c1", …) SELECT * FROM UNNEST($1::text[], $2::int4[], …)` with one
/// array per column.
fn unnest_insert(table: &str, cols: &[Column], rows: &[Vec<Value>]) -> Result<Statement, DbErr> {
    let names: Vec<String> = cols.iter().map(|c| quoted(c.name)).collect();
    let mut arrays: Vec<Vec<Value>> = cols
        .iter()
        .map(|_| Vec::with_capacity(rows.len()))
        .collect();
    for row in rows {
        if row.len() != cols.len() {
            return Err(row_mismatch(table, row.len(), cols.len()));
        }
        for (array, value) in arrays.iter_mut().zip(row) {
            array.push(value.clone());
        }
    }
    let mut casts = Vec::with_capacity(cols.len());
    let mut values = Vec::with_capacity(cols.len());
    for (i, (col, array)) in cols.iter().zip(arrays).enumerate() {
        let (pg_type, array_type) = match col.kind {
            ColumnKind::Str(_) => ("text[]", ArrayType::String),
            ColumnKind::Int => ("int4[]", ArrayType::Int),
            ColumnKind::BigInt => ("int8[]", ArrayType::BigInt),
            ColumnKind::DateTime => ("timestamp[]", ArrayType::ChronoDateTime),
            ColumnKind::Blob => ("bytea[]", ArrayType::Bytes),
        };
        casts.push(format!("${}::{pg_type}", i + 1));
        values.push(Value::Array(array_type, Some(Box::new(array))));
    }
    let sql = format!(
        "INSERT INTO {} ({}) SELECT * FROM UNNEST({})",
        quoted(table),
        names.join(", "),
        casts.join(", ")
    );
    Ok(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
}

/// The last committed batch sequence of a stream (0 when none).
pub async fn last_committed<C: ConnectionTrait>(conn: &C, stream_id: &str) -> Result<u64, DbErr> {
    let stmt = Query::select()
        .column(Alias::new("last_sequence"))
        .from(Alias::new(STREAM_STATE_TABLE))
        .and_where(Expr::col(Alias::new("stream_id")).eq(stream_id))
        .to_owned();
    let Some(row) = conn.query_one(&stmt).await? else {
        return Ok(0);
    };
    let seq: i64 = row.try_get("", "last_sequence")?;
    Ok(u64::try_from(seq).unwrap_or(0))
}

/// Records `sequence` as the last committed batch of a stream (inside the batch's transaction).
pub async fn save_committed<C: ConnectionTrait>(
    conn: &C,
    stream_id: &str,
    collector_id: &str,
    sequence: u64,
    now_us: i64,
) -> Result<(), DbErr> {
    let seq = i64::try_from(sequence).unwrap_or(i64::MAX);
    let mut stmt = Query::insert();
    stmt.into_table(Alias::new(STREAM_STATE_TABLE))
        .columns([
            Alias::new("stream_id"),
            Alias::new("collector_id"),
            Alias::new("last_sequence"),
            Alias::new("updated_us"),
        ])
        .values([
            Expr::val(stream_id),
            Expr::val(collector_id),
            Expr::val(seq),
            Expr::val(now_us),
        ])
        .map_err(|e| DbErr::Custom(e.to_string()))?
        .on_conflict(
            OnConflict::column(Alias::new("stream_id"))
                .update_columns([
                    Alias::new("collector_id"),
                    Alias::new("last_sequence"),
                    Alias::new("updated_us"),
                ])
                .to_owned(),
        );
    conn.execute(&stmt).await?;
    Ok(())
}
