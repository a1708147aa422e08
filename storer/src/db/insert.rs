//! Multi-row inserts into runtime-named tables (sea-query, identifiers quoted by the builder and
//! built only from validated `[A-Za-z0-9_]` names), and the per-stream committed sequence.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr, Value};

use crate::db::schema::STREAM_STATE_TABLE;
use crate::table::{Column, TableFamily, columns};

/// Bind parameters per statement we stay under (SQLite allows 32766, PostgreSQL and MySQL 65535).
const MAX_PARAMS: usize = 30_000;

/// Inserts `rows` (each in the family's column order) into `table`, as few multi-row statements
/// as the parameter limits allow. Returns the number of rows written.
pub async fn insert_rows<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    family: TableFamily,
    rows: &[Vec<Value>],
) -> Result<u64, DbErr> {
    let cols: &[Column] = columns(family);
    let per_statement = (MAX_PARAMS / cols.len()).max(1);
    let mut written = 0;
    for chunk in rows.chunks(per_statement) {
        let mut stmt = Query::insert();
        stmt.into_table(Alias::new(table))
            .columns(cols.iter().map(|c| Alias::new(c.name)));
        for row in chunk {
            stmt.values(row.iter().cloned().map(Expr::val))
                .map_err(|e| DbErr::Custom(format!("row does not fit table {table}: {e}")))?;
        }
        written += conn.execute(&stmt).await?.rows_affected();
    }
    Ok(written)
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
