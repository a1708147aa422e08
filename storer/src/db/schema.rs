//! Creating tables from the schemas in `sql/` (one file per family and database) on first use.

use hashbrown::HashSet;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, TransactionTrait};
use std::sync::Mutex;
use std::time::Instant;

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

/// Remembers which tables exist, so each is created once per process, and bounds how many new
/// tables packets may cause ([`TableCache::admit`]).
///
/// The lock is never held across DDL: a table being created (its indexes may take a while on a
/// busy database) does not hold up rows for tables that exist. Two writers creating the same
/// table at once both run `CREATE ... IF NOT EXISTS`, which is harmless.
#[derive(Debug)]
pub struct TableCache {
    known: Mutex<Known>,
    /// Most HOMER 7 partitions this process keeps (0: no limit).
    max_partitions: usize,
}

#[derive(Debug)]
struct Known {
    tables: HashSet<String>,
    /// Tables admitted for creation ([`TableCache::admit`]) and not created yet.
    admitted: HashSet<String>,
    partitions: HashSet<String>,
    budget: TableBudget,
}

/// Most new tables a flood can make at once (the bucket's size): each costs its DDL, and
/// batches of a stream commit in order, so this bounds how long a valid record behind them
/// waits.
pub const NEW_TABLE_BURST: u32 = 10;

/// A token bucket of new tables: refilled continuously at `per_minute` a minute, at most
/// [`NEW_TABLE_BURST`] (or `per_minute` when smaller) at once (0: no limit).
#[derive(Debug)]
struct TableBudget {
    per_minute: u32,
    tokens: f64,
    refilled: Instant,
}

impl TableBudget {
    fn new(per_minute: u32) -> Self {
        TableBudget {
            per_minute,
            tokens: f64::from(per_minute.min(NEW_TABLE_BURST)),
            refilled: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let rate = f64::from(self.per_minute) / 60.0;
        let cap = f64::from(self.per_minute.min(NEW_TABLE_BURST));
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(cap);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What [`TableCache::admit`] decided for a table a record needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The table exists or is already on its way.
    Known,
    /// A new table: it will be created.
    Admitted,
    /// A new table over `max_new_tables_per_minute`: the record is dropped and counted.
    OverBudget,
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

impl Default for TableCache {
    fn default() -> Self {
        TableCache::new(0, 0)
    }
}

impl TableCache {
    /// A cache that creates at most `max_partitions` HOMER 7 partitions (0: no limit) and
    /// admits at most `max_new_tables_per_minute` new tables for records that are not exempt
    /// (0: no limit): packet times are chosen by whoever sends the packets, and each new time
    /// span would otherwise be a new table with its indexes.
    pub fn new(max_partitions: usize, max_new_tables_per_minute: u32) -> Self {
        TableCache {
            known: Mutex::new(Known {
                tables: HashSet::new(),
                admitted: HashSet::new(),
                partitions: HashSet::new(),
                budget: TableBudget::new(max_new_tables_per_minute),
            }),
            max_partitions,
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        // A panic while holding this lock cannot leave the sets inconsistent: keep going.
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records tables that already exist (read from the catalog at start-up), so rows for
    /// them never wait for the new-table budget.
    pub fn remember<I: IntoIterator<Item = String>>(&self, tables: I) {
        self.known().tables.extend(tables);
    }

    /// Whether a record may use `table`: it exists (or was admitted), or it is new and either
    /// `exempt` (a record of the current days, or of a pcap import) or within the budget of
    /// new tables.
    pub fn admit(&self, table: &str, exempt: bool) -> Admission {
        let mut known = self.known();
        if known.tables.contains(table) || known.admitted.contains(table) {
            return Admission::Known;
        }
        if !exempt && !known.budget.take(Instant::now()) {
            return Admission::OverBudget;
        }
        known.admitted.insert(table.to_owned());
        Admission::Admitted
    }

    /// Creates `table` when this process has not seen it yet. `CREATE ... IF NOT EXISTS` makes
    /// concurrent storers safe; a race that still reports "already exists" is ignored.
    pub async fn ensure(
        &self,
        db: &DatabaseConnection,
        schema: Schema,
        table: &str,
    ) -> Result<(), DbError> {
        if self.known().tables.contains(table) {
            return Ok(());
        }
        let backend = db.get_database_backend();
        let statements = create_statements(backend, schema, table);
        // One transaction first: the table and its indexes cost one commit (one sync of the
        // SQLite file instead of one per statement). Should it fail (a concurrent creation, an
        // object of that name), statement by statement, tolerating what already exists.
        if create_in_one_transaction(db, &statements).await.is_err() {
            for sql in statements {
                if let Err(e) = db.execute_raw(Statement::from_string(backend, sql)).await {
                    let text = e.to_string().to_ascii_lowercase();
                    if !(text.contains("already exists") || text.contains("duplicate")) {
                        return Err(DbError::Query(e));
                    }
                }
            }
        }
        tracing::info!(table, "table ready");
        let mut known = self.known();
        known.admitted.remove(table);
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
        {
            let known = self.known();
            if known.partitions.contains(&partition.name) {
                return Ok(PartitionReady::Ready);
            }
            if self.max_partitions > 0 && known.partitions.len() >= self.max_partitions {
                return Ok(PartitionReady::OverLimit);
            }
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
        self.known().partitions.insert(partition.name.clone());
        Ok(PartitionReady::Ready)
    }

    /// Forgets a table (dropped by retention, or possibly dropped after a database error).
    pub fn forget(&self, table: &str) {
        let mut known = self.known();
        known.tables.remove(table);
        known.admitted.remove(table);
        known.partitions.remove(table);
    }
}

/// Runs `statements` in one transaction (rolled back on the first error).
async fn create_in_one_transaction(
    db: &DatabaseConnection,
    statements: &[String],
) -> Result<(), sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let txn = db.begin().await?;
    for sql in statements {
        if let Err(e) = txn
            .execute_raw(Statement::from_string(backend, sql.clone()))
            .await
        {
            txn.rollback().await?;
            return Err(e);
        }
    }
    txn.commit().await
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
    fn new_tables_are_admitted_within_the_budget_and_exempt_ones_always() {
        let cache = TableCache::new(0, 2);
        cache.remember(["sip_capture_call_20261206".to_owned()]);
        assert_eq!(
            cache.admit("sip_capture_call_20261206", false),
            Admission::Known
        );
        assert_eq!(cache.admit("t1", false), Admission::Admitted);
        assert_eq!(cache.admit("t1", false), Admission::Known);
        assert_eq!(cache.admit("t2", false), Admission::Admitted);
        assert_eq!(cache.admit("t3", false), Admission::OverBudget);
        assert_eq!(cache.admit("t3", true), Admission::Admitted);
        cache.forget("t1");
        assert_eq!(cache.admit("t1", false), Admission::OverBudget);
        let unlimited = TableCache::new(0, 0);
        for i in 0..1000 {
            assert_eq!(
                unlimited.admit(&format!("t{i}"), false),
                Admission::Admitted
            );
        }
    }

    #[test]
    fn the_budget_refills_over_a_minute() {
        let mut budget = TableBudget::new(60);
        let start = Instant::now();
        for _ in 0..NEW_TABLE_BURST {
            assert!(budget.take(start));
        }
        assert!(!budget.take(start));
        assert!(budget.take(start + std::time::Duration::from_millis(1100)));
        assert!(!budget.take(start + std::time::Duration::from_millis(1100)));
        // A minute later: one burst, not a minute's worth.
        let later = start + std::time::Duration::from_secs(120);
        for _ in 0..NEW_TABLE_BURST {
            assert!(budget.take(later));
        }
        assert!(!budget.take(later));
    }

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
