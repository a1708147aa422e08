//! Creating tables from the schemas in `sql/` (one file per family and database) on first use.

use hashbrown::HashSet;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};
use tokio::sync::Mutex;

use crate::db::DbError;
use crate::table::{Partition, TableFamily};

/// The table holding the last committed batch per collector stream.
pub const STREAM_STATE_TABLE: &str = "sipcapture_stream_state";

const SQLITE_SIP: &str = include_str!("../../../sql/sqlite/sip_capture.sql");
const SQLITE_REPORT: &str = include_str!("../../../sql/sqlite/report_capture.sql");
const SQLITE_STATE: &str = include_str!("../../../sql/sqlite/stream_state.sql");
const PG_SIP: &str = include_str!("../../../sql/postgresql/sip_capture.sql");
const PG_REPORT: &str = include_str!("../../../sql/postgresql/report_capture.sql");
const PG_STATE: &str = include_str!("../../../sql/postgresql/stream_state.sql");
const MYSQL_SIP: &str = include_str!("../../../sql/mysql/sip_capture.sql");
const MYSQL_REPORT: &str = include_str!("../../../sql/mysql/report_capture.sql");
const MYSQL_STATE: &str = include_str!("../../../sql/mysql/stream_state.sql");
const SQLITE_HEP_SIP: &str = include_str!("../../../sql/sqlite/hep_proto_sip.sql");
const SQLITE_HEP_REPORT: &str = include_str!("../../../sql/sqlite/hep_proto_report.sql");
const PG_HEP_SIP: &str = include_str!("../../../sql/postgresql/hep_proto_sip.sql");
const PG_HEP_REPORT: &str = include_str!("../../../sql/postgresql/hep_proto_report.sql");
const MYSQL_HEP_SIP: &str = include_str!("../../../sql/mysql/hep_proto_sip.sql");
const MYSQL_HEP_REPORT: &str = include_str!("../../../sql/mysql/hep_proto_report.sql");

/// Which schema file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// A capture table of a family.
    Family(TableFamily),
    /// The stream state table.
    StreamState,
}

/// The schema text for a backend (`{table}` placeholders, `;` lines between statements).
pub fn schema_text(backend: DatabaseBackend, schema: Schema) -> &'static str {
    match (backend, schema) {
        (DatabaseBackend::Postgres, Schema::Family(TableFamily::Sip)) => PG_SIP,
        (DatabaseBackend::Postgres, Schema::Family(TableFamily::Report)) => PG_REPORT,
        (DatabaseBackend::Postgres, Schema::StreamState) => PG_STATE,
        (DatabaseBackend::Postgres, Schema::Family(TableFamily::HepSip)) => PG_HEP_SIP,
        (DatabaseBackend::Postgres, Schema::Family(TableFamily::HepReport)) => PG_HEP_REPORT,
        (DatabaseBackend::MySql, Schema::Family(TableFamily::HepSip)) => MYSQL_HEP_SIP,
        (DatabaseBackend::MySql, Schema::Family(TableFamily::HepReport)) => MYSQL_HEP_REPORT,
        (_, Schema::Family(TableFamily::HepSip)) => SQLITE_HEP_SIP,
        (_, Schema::Family(TableFamily::HepReport)) => SQLITE_HEP_REPORT,
        (DatabaseBackend::MySql, Schema::Family(TableFamily::Sip)) => MYSQL_SIP,
        (DatabaseBackend::MySql, Schema::Family(TableFamily::Report)) => MYSQL_REPORT,
        (DatabaseBackend::MySql, Schema::StreamState) => MYSQL_STATE,
        (_, Schema::Family(TableFamily::Sip)) => SQLITE_SIP,
        (_, Schema::Family(TableFamily::Report)) => SQLITE_REPORT,
        (_, Schema::StreamState) => SQLITE_STATE,
    }
}

/// The statements that create `table` (a name already validated as `[A-Za-z0-9_]`).
pub fn create_statements(backend: DatabaseBackend, schema: Schema, table: &str) -> Vec<String> {
    schema_text(backend, schema)
        .split("\n;\n")
        .map(|s| s.trim().replace("{table}", table))
        .filter(|s| !s.is_empty())
        .collect()
}

/// Remembers which tables exist, so each is created once per process.
#[derive(Debug, Default)]
pub struct TableCache {
    known: Mutex<Known>,
    /// Most HOMER 7 partitions this process keeps (0: no limit).
    max_partitions: usize,
}

#[derive(Debug, Default)]
struct Known {
    tables: HashSet<String>,
    partitions: HashSet<String>,
}

/// What [`TableCache::ensure_partition`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionReady {
    /// The partition exists.
    Ready,
    /// Not created: `max_partitions` reached (rows that need it are refused by the database
    /// and counted, the others stored).
    OverLimit,
}

impl TableCache {
    /// A cache that creates at most `max_partitions` HOMER 7 partitions (0: no limit): packet
    /// times are chosen by whoever sends the packets, and each new time span would otherwise
    /// be a new table with its indexes.
    pub fn with_partition_limit(max_partitions: usize) -> Self {
        TableCache {
            known: Mutex::default(),
            max_partitions,
        }
    }

    /// Creates `table` when this process has not seen it yet. `CREATE ... IF NOT EXISTS` makes
    /// concurrent storers safe; a race that still reports "already exists" is ignored.
    pub async fn ensure(
        &self,
        db: &DatabaseConnection,
        schema: Schema,
        table: &str,
    ) -> Result<(), DbError> {
        let mut known = self.known.lock().await;
        if known.tables.contains(table) {
            return Ok(());
        }
        let backend = db.get_database_backend();
        for sql in create_statements(backend, schema, table) {
            if let Err(e) = db.execute_raw(Statement::from_string(backend, sql)).await {
                let text = e.to_string().to_ascii_lowercase();
                if !(text.contains("already exists") || text.contains("duplicate")) {
                    return Err(DbError::Query(e));
                }
            }
        }
        tracing::info!(table, "table ready");
        known.tables.insert(table.to_owned());
        Ok(())
    }

    /// Creates the partition `partition` of the (partitioned, PostgreSQL) table `parent` when
    /// this process has not seen it yet. A partition another writer created with other bounds
    /// (an overlap) is left as it is: rows it covers go there.
    pub async fn ensure_partition(
        &self,
        db: &DatabaseConnection,
        parent: &str,
        partition: &Partition,
    ) -> Result<PartitionReady, DbError> {
        let mut known = self.known.lock().await;
        if known.partitions.contains(&partition.name) {
            return Ok(PartitionReady::Ready);
        }
        if self.max_partitions > 0 && known.partitions.len() >= self.max_partitions {
            return Ok(PartitionReady::OverLimit);
        }
        let backend = db.get_database_backend();
        let sql = partition_statement(parent, partition);
        if let Err(e) = db.execute_raw(Statement::from_string(backend, sql)).await {
            let text = e.to_string().to_ascii_lowercase();
            if !(text.contains("already exists")
                || text.contains("duplicate")
                || text.contains("would overlap"))
            {
                return Err(DbError::Query(e));
            }
        }
        tracing::debug!(table = parent, partition = %partition.name, "partition ready");
        known.partitions.insert(partition.name.clone());
        Ok(PartitionReady::Ready)
    }

    /// Forgets every table (after a database error the table may have been dropped).
    pub async fn forget(&self, table: &str) {
        let mut known = self.known.lock().await;
        known.tables.remove(table);
        known.partitions.remove(table);
    }
}

/// `CREATE TABLE … PARTITION OF …` for one HOMER 7 partition (names are validated
/// identifiers; the bounds are UTC instants).
pub fn partition_statement(parent: &str, partition: &Partition) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS \"{}\" PARTITION OF \"{}\" FOR VALUES FROM ('{}') TO ('{}')",
        partition.name,
        parent,
        partition.from.format("%Y-%m-%d %H:%M:%S+00"),
        partition.to.format("%Y-%m-%d %H:%M:%S+00"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_fill_the_name() {
        for backend in [
            DatabaseBackend::Sqlite,
            DatabaseBackend::Postgres,
            DatabaseBackend::MySql,
        ] {
            let stmts = create_statements(
                backend,
                Schema::Family(TableFamily::Sip),
                "sip_capture_call_20261126",
            );
            assert!(!stmts.is_empty());
            assert!(stmts.iter().all(|s| !s.contains("{table}")));
            assert!(stmts[0].contains("sip_capture_call_20261126"));
            // every one of the 44 columns is in the schema
            for c in crate::table::SIP_COLUMNS {
                let quoted_pg = format!("\"{}\"", c.name);
                let quoted_my = format!("`{}`", c.name);
                assert!(
                    stmts[0].contains(&quoted_pg) || stmts[0].contains(&quoted_my),
                    "{backend:?} lacks {}",
                    c.name
                );
            }
        }
    }
}
