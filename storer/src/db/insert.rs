//! Rows of a table ([`TableRows`]: the cells of every row, flat) and the SeaORM statements of the
//! rare paths: one row at a time while a batch isolates a row the database refuses, and the
//! per-stream committed sequence. The hot path is [`crate::db::bulk`]. Identifiers are quoted and
//! built only from validated `[A-Za-z0-9_]` names.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};

use crate::db::schema::STREAM_STATE_TABLE;
use crate::table::{Cell, Column, ColumnKind, Partitioning, TableFamily, columns};

/// The rows of one table within a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRows<'a> {
    /// Expanded, validated table name.
    pub table: String,
    /// Its schema.
    pub family: TableFamily,
    /// The cells of every row, row after row, each row in the family's column order.
    pub cells: Vec<Cell<'a>>,
    /// A HOMER 7 table on PostgreSQL is partitioned by `create_date` in partitions of this
    /// length (created before the rows are written).
    pub partitioning: Option<Partitioning>,
}

impl<'a> TableRows<'a> {
    /// No rows yet.
    pub fn new(table: String, family: TableFamily) -> Self {
        TableRows {
            table,
            family,
            cells: Vec::new(),
            partitioning: None,
        }
    }

    /// The capture times (µs since the epoch) of the rows, for a HOMER 7 table (its
    /// `create_date`, the second column); empty for other families.
    pub fn create_dates(&self) -> impl Iterator<Item = i64> + '_ {
        let rows = if self.family.is_hep() { self.rows() } else { 0 };
        self.chunks(1)
            .take(rows)
            .filter_map(|row| match row.get(1) {
                Some(Cell::DateTime(t)) => Some(t.and_utc().timestamp_micros()),
                _ => None,
            })
    }

    /// The family's columns.
    pub fn columns(&self) -> &'static [Column] {
        columns(self.family)
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.cells.len() / self.columns().len()
    }

    /// The rows, `n` at a time (each item holds the cells of up to `n` rows).
    pub fn chunks(&self, n: usize) -> std::slice::Chunks<'_, Cell<'a>> {
        self.cells.chunks(n.max(1) * self.columns().len())
    }

    /// Checks that the cells make whole rows.
    pub fn check(&self) -> Result<(), DbErr> {
        whole_rows(&self.table, self.cells.len(), self.columns().len())
    }
}

/// An error unless `values` values make whole rows of `columns` columns.
fn whole_rows(table: &str, values: usize, columns: usize) -> Result<(), DbErr> {
    if values.is_multiple_of(columns) {
        Ok(())
    } else {
        Err(DbErr::Custom(format!(
            "rows do not fit table {table}: {values} values for {columns} columns"
        )))
    }
}

/// A cell as a SeaORM value (the rare one-row path).
pub fn value(cell: &Cell<'_>) -> Value {
    match cell {
        Cell::Text(s) => Value::from(s.as_ref().to_owned()),
        Cell::Ip(ip) => Value::from(ip.map(|ip| ip.to_string()).unwrap_or_default()),
        Cell::Int(n) => Value::from(*n),
        Cell::BigInt(n) => Value::from(*n),
        Cell::DateTime(t) => Value::from(*t),
        Cell::Blob(b) => Value::from(b.to_vec()),
        Cell::Json(s) => Value::from(s.clone()),
    }
}

/// Inserts the rows whose cells are `cells` into `table` with one multi-row statement (the
/// isolation path calls it with one row). Returns the number of rows written.
pub async fn insert_rows<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    family: TableFamily,
    cells: &[Cell<'_>],
) -> Result<u64, DbErr> {
    let cols = columns(family);
    if cells.is_empty() {
        return Ok(0);
    }
    whole_rows(table, cells.len(), cols.len())?;
    let backend = conn.get_database_backend();
    let sql = multi_row_insert(backend, table, cols, cells.len() / cols.len());
    let values: Vec<Value> = cells.iter().map(value).collect();
    Ok(conn
        .execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .rows_affected())
}

/// `INSERT INTO t (c1, …) VALUES (?, …), (?, …)` for `rows` rows (`$n` on PostgreSQL).
pub fn multi_row_insert(backend: DbBackend, table: &str, cols: &[Column], rows: usize) -> String {
    let quote = |name: &str| match backend {
        DbBackend::MySql => format!("`{}`", name.replace('`', "``")),
        _ => quoted(name),
    };
    let names: Vec<String> = cols.iter().map(|c| quote(c.name)).collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        quote(table),
        names.join(", ")
    );
    let mut n = 0;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ",(" });
        for col in 0..cols.len() {
            if col > 0 {
                sql.push(',');
            }
            n += 1;
            if backend == DbBackend::Postgres {
                // Text parameters into jsonb and timestamptz columns (the one-row path): cast,
                // the timestamp read as UTC whatever the session's time zone.
                let kind = cols.get(col).map(|c| c.kind);
                let (before, after) = match kind {
                    Some(ColumnKind::Json) => ("", "::jsonb"),
                    Some(ColumnKind::DateTimeTz) => ("(", "::timestamp AT TIME ZONE 'UTC')"),
                    _ => ("", ""),
                };
                sql.push_str(before);
                sql.push('$');
                sql.push_str(&n.to_string());
                sql.push_str(after);
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

/// A double-quoted identifier (names are validated `[A-Za-z0-9_]`; quotes doubled anyway).
pub fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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

/// The collector recorded with a stream's state (None when the stream has none).
pub async fn stream_owner<C: ConnectionTrait>(
    conn: &C,
    stream_id: &str,
) -> Result<Option<String>, DbErr> {
    let stmt = Query::select()
        .column(Alias::new("collector_id"))
        .from(Alias::new(STREAM_STATE_TABLE))
        .and_where(Expr::col(Alias::new("stream_id")).eq(stream_id))
        .to_owned();
    let Some(row) = conn.query_one(&stmt).await? else {
        return Ok(None);
    };
    let owner: Option<String> = row.try_get("", "collector_id")?;
    Ok(owner)
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
