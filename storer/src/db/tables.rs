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
