//! The tables of a database, for retention: listing them (per backend's catalog) and dropping
//! one (quoted per backend; names are validated `[A-Za-z0-9_]` identifiers or names read from
//! the catalog).

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement};

/// The tables of the connection's database (schema `current_schema()` on PostgreSQL).
pub async fn list_tables(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let backend = db.get_database_backend();
    let (sql, column) = match backend {
        DatabaseBackend::Postgres => (
            "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = current_schema()",
            "name",
        ),
        DatabaseBackend::MySql => (
            "SELECT CAST(table_name AS CHAR) AS name FROM information_schema.tables \
             WHERE table_schema = DATABASE()",
            "name",
        ),
        _ => (
            "SELECT name FROM sqlite_master WHERE type = 'table'",
            "name",
        ),
    };
    let rows = db
        .query_all_raw(Statement::from_string(backend, sql.to_owned()))
        .await?;
    rows.iter()
        .map(|row| row.try_get::<String>("", column))
        .collect()
}

/// Deletes the rows of `table` whose `column` (a UTC timestamp) is before `cutoff`; returns
/// how many.
pub async fn delete_before(
    db: &DatabaseConnection,
    table: &str,
    column: &str,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::MySql => format!("DELETE FROM `{table}` WHERE `{column}` < ?"),
        DatabaseBackend::Postgres => format!("DELETE FROM \"{table}\" WHERE \"{column}\" < $1"),
        _ => format!("DELETE FROM \"{table}\" WHERE \"{column}\" < ?"),
    };
    let result = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [sea_orm::Value::from(cutoff.naive_utc())],
        ))
        .await?;
    Ok(result.rows_affected())
}

/// Drops `table` when it exists.
pub async fn drop_table(db: &DatabaseConnection, table: &str) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let quoted = match backend {
        DatabaseBackend::MySql => format!("`{table}`"),
        _ => format!("\"{table}\""),
    };
    db.execute_raw(Statement::from_string(
        backend,
        format!("DROP TABLE IF EXISTS {quoted}"),
    ))
    .await?;
    Ok(())
}
