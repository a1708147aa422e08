//! The database side, all SQL per backend: [`connect`] a SeaORM pool for a `db_url`, create
//! tables from the schemas in `sql/` on first use ([`schema`]), insert rows (in the column order
//! of [`crate::table::columns`]) into runtime-named tables and keep the per-stream committed
//! sequence ([`insert`]), list and drop tables for retention ([`tables`]). Imports nothing from
//! the pipeline above it: only the ground module [`crate::table`].

pub mod bulk;
pub mod insert;
pub mod schema;
pub mod tables;

use std::time::Duration;

use sea_orm::{ConnectOptions, DatabaseBackend, DatabaseConnection, DbErr};

/// Why a database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL's scheme is not one we support.
    #[error("unsupported database URL {0:?}: use sqlite://FILE, postgres://... or mysql://...")]
    UnsupportedUrl(String),
    /// Connecting failed.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] DbErr),
    /// A statement failed.
    #[error("database error: {0}")]
    Query(#[from] DbErr),
}

impl DbError {
    /// Whether retrying may succeed: lost connections, pool time-outs, a locked SQLite file.
    /// Constraint or syntax errors never succeed on retry.
    pub fn is_retryable(&self) -> bool {
        match self {
            DbError::UnsupportedUrl(_) => false,
            DbError::Connect(_) => true,
            DbError::Query(e) => is_retryable(e),
        }
    }
}

/// Classifies a SeaORM error as transient or not.
pub fn is_retryable(e: &DbErr) -> bool {
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(rt) | DbErr::Query(rt) => {
            let text = rt.to_string().to_ascii_lowercase();
            [
                "connection",
                "broken pipe",
                "timed out",
                "timeout",
                "database is locked",
                "pool",
                "io error",
                "server has gone away",
                "lost connection",
                "deadlock",
                "terminating",
                "shutting down",
            ]
            .iter()
            .any(|needle| text.contains(needle))
        }
        _ => false,
    }
}

/// The backend a URL selects.
pub fn backend_of(url: &str) -> Result<DatabaseBackend, DbError> {
    let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
    match scheme.as_str() {
        "sqlite" => Ok(DatabaseBackend::Sqlite),
        "postgres" | "postgresql" => Ok(DatabaseBackend::Postgres),
        "mysql" | "mariadb" => Ok(DatabaseBackend::MySql),
        _ => Err(DbError::UnsupportedUrl(url.to_owned())),
    }
}

/// Normalises a URL: `mariadb://` becomes `mysql://`; a SQLite file is created when missing
/// (`mode=rwc`) unless the URL says otherwise.
pub fn normalise_url(url: &str) -> Result<String, DbError> {
    match backend_of(url)? {
        DatabaseBackend::Sqlite => {
            if url.contains("mode=") || url.contains(":memory:") {
                Ok(url.to_owned())
            } else if url.contains('?') {
                Ok(format!("{url}&mode=rwc"))
            } else {
                Ok(format!("{url}?mode=rwc"))
            }
        }
        DatabaseBackend::MySql if url.starts_with("mariadb:") => {
            Ok(format!("mysql:{}", url.trim_start_matches("mariadb:")))
        }
        _ => Ok(url.to_owned()),
    }
}

/// Opens a pool. SQLite gets a single connection (one writer; concurrent writers would only
/// wait on the file lock).
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbError> {
    open_pool(url, max_connections, false).await
}

/// Opens a pool without connecting: only the URL is checked (an error is a config error); the
/// first query connects. A storer starts this way so a database that is down at start-up makes
/// it not ready instead of stopping it.
pub async fn connect_lazily(
    url: &str,
    max_connections: u32,
) -> Result<DatabaseConnection, DbError> {
    open_pool(url, max_connections, true).await
}

async fn open_pool(
    url: &str,
    max_connections: u32,
    lazy: bool,
) -> Result<DatabaseConnection, DbError> {
    let backend = backend_of(url)?;
    let mut opts = ConnectOptions::new(normalise_url(url)?);
    let max = if backend == DatabaseBackend::Sqlite {
        1
    } else {
        max_connections.max(1)
    };
    opts.max_connections(max)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy(lazy)
        .sqlx_logging(false);
    sea_orm::Database::connect(opts)
        .await
        .map_err(DbError::Connect)
}

/// A cheap round trip proving the database answers now (the driver's ping on a pooled
/// connection; the readiness check, [`crate::health`]).
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbError> {
    db.ping().await.map_err(DbError::Query)
}

/// A pool's state for the `db_pool_*` gauges: (open connections, idle connections, maximum).
pub fn pool_state(db: &DatabaseConnection) -> (u32, u32, u32) {
    fn of<DB: sea_orm::sqlx::Database>(pool: &sea_orm::sqlx::Pool<DB>) -> (u32, u32, u32) {
        (
            pool.size(),
            u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            pool.options().get_max_connections(),
        )
    }
    // Matching on the backend first: sea-orm's pool getters panic on another backend.
    match db.get_database_backend() {
        DatabaseBackend::Postgres => of(db.get_postgres_connection_pool()),
        DatabaseBackend::MySql => of(db.get_mysql_connection_pool()),
        DatabaseBackend::Sqlite => of(db.get_sqlite_connection_pool()),
        _ => (0, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_and_urls() {
        assert_eq!(
            backend_of("sqlite://x.db").unwrap(),
            DatabaseBackend::Sqlite
        );
        assert_eq!(
            backend_of("postgres://u@h/db").unwrap(),
            DatabaseBackend::Postgres
        );
        assert_eq!(
            backend_of("mysql://root@127.0.0.1/test").unwrap(),
            DatabaseBackend::MySql
        );
        assert!(backend_of("oracle://x").is_err());
        assert_eq!(
            normalise_url("sqlite://x.db").unwrap(),
            "sqlite://x.db?mode=rwc"
        );
        assert_eq!(normalise_url("sqlite::memory:").unwrap(), "sqlite::memory:");
        assert_eq!(
            normalise_url("mariadb://root@h/test").unwrap(),
            "mysql://root@h/test"
        );
    }
}
