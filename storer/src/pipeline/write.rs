//! Committing one batch: every row of every table plus the stream's committed sequence in one
//! transaction, retried with capped exponential backoff while `insert_retries` and
//! `insert_retry_timeout` allow. What a failed batch means: it is not acknowledged, so the
//! collector keeps it and sends it again — nothing is lost. A row the database rejects for its
//! content (not a transient error) is isolated: the rest of the batch is committed and that row
//! is counted and logged with the database error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{DatabaseBackend, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use sipcapture_runtime::counters::Counters;

use crate::db::bulk::{Bulk, Outcome, Part};
use crate::db::insert::TableRows;
use crate::db::schema::{Admission, PartitionReady, Schema, TableCache};
use crate::db::{DbError, insert, tables};
use crate::events::{
    InsertFailed, InsertRetried, InsertTimed, InternalEvent, PartAlreadyCommitted,
    PartitionRefused, RowRejected, RowsStored, TableFailed,
};
use crate::table::{Partitioning, TableFamily};

/// A routed batch ready to commit.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedBatch<'a> {
    /// The collector stream it belongs to.
    pub stream_id: String,
    /// The collector.
    pub collector_id: String,
    /// Its sequence within the stream (the last one, when it holds several batches).
    pub sequence: u64,
    /// The first sequence it holds: equal to `sequence` for one batch; lower when several
    /// consecutive batches of a stream commit in one transaction (group commit).
    pub first_sequence: u64,
    /// Rows grouped per table (cells borrowed from the received records).
    pub tables: Vec<TableRows<'a>>,
    /// Look the stream's committed sequence up inside the transaction and write nothing when
    /// this batch is already there. Set for the parts of a batch that go to a non-default
    /// capture mode's database: such a part may have committed while another database failed,
    /// and the resent batch must not store it twice.
    pub skip_if_committed: bool,
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// The rows were written (their number), or the whole batch was already committed (0).
    Rows(u64),
    /// Part of a group of batches was already committed (another storer took over the stream
    /// meanwhile): nothing was written; commit its batches one by one.
    Partly,
}

/// Rows written per table family in one transaction, counted once it commits.
#[derive(Debug, Default)]
struct StoredRows {
    sip: u64,
    report: u64,
}

impl StoredRows {
    fn add(&mut self, family: TableFamily, n: u64) {
        if family.is_sip() {
            self.sip += n;
        } else {
            self.report += n;
        }
    }

    /// Emits [`RowsStored`] per family; returns the total.
    fn emit(&self, counters: &Counters) -> u64 {
        for (family, count) in [
            (TableFamily::Sip, self.sip),
            (TableFamily::Report, self.report),
        ] {
            if count > 0 {
                RowsStored { family, count }.emit(counters);
            }
        }
        self.sip + self.report
    }
}

/// Retry policy: Kamailio's knobs plus a backoff (Kamailio busy-spins; we do not).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt (`insert_retries`).
    pub retries: u32,
    /// Wall-clock cap over the retries (`insert_retry_timeout`).
    pub timeout: Duration,
    /// First backoff.
    pub base_delay: Duration,
    /// Backoff cap.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based): base × 2^(attempt-1), capped, with up
    /// to 25 % jitter so several storers do not retry in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_delay);
        let jitter = exp.mul_f64(rand::random_range(0.0..0.25));
        exp + jitter
    }
}

/// Why a batch was not committed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Every attempt failed.
    #[error("batch {sequence} not committed after {attempts} attempt(s): {source}")]
    Exhausted {
        /// The batch.
        sequence: u64,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        source: DbError,
    },
}

/// What commits tell the readiness check ([`crate::health`]) between its pings: when the last
/// commit succeeded, and a wake-up when one fails for a transient reason (connection lost, pool
/// time-out), so an outage is noticed at once rather than at the next tick.
#[derive(Debug, Default)]
pub struct Liveness {
    last_commit: std::sync::Mutex<Option<Instant>>,
    failed: tokio::sync::Notify,
}

impl Liveness {
    fn committed(&self) {
        if let Ok(mut last) = self.last_commit.lock() {
            *last = Some(Instant::now());
        }
    }

    fn failed(&self) {
        if let Ok(mut last) = self.last_commit.lock() {
            *last = None;
        }
        self.failed.notify_one();
    }

    /// Whether a commit succeeded within `window` and none failed since.
    pub fn committed_within(&self, window: Duration) -> bool {
        self.last_commit
            .lock()
            .ok()
            .and_then(|last| *last)
            .is_some_and(|at| at.elapsed() < window)
    }

    /// Waits for the next transient commit failure (one stored if none was waiting).
    pub async fn failure(&self) {
        self.failed.notified().await;
    }
}

/// Commits batches into one database (one capture mode).
#[derive(Debug)]
pub struct Writer {
    mode: String,
    db: DatabaseConnection,
    /// The driver pool under `db`: the hot path.
    bulk: Option<Bulk>,
    tables: TableCache,
    policy: RetryPolicy,
    counters: Arc<Counters>,
    liveness: Liveness,
}

impl Writer {
    /// A writer over an open pool, for the capture mode named `mode`.
    /// `max_partitions` bounds the HOMER 7 partitions it creates (0: no limit);
    /// `max_new_tables_per_minute` the new tables records of other days may cause (0: no
    /// limit; see [`Writer::admit`]).
    pub fn new(
        mode: &str,
        db: DatabaseConnection,
        policy: RetryPolicy,
        counters: Arc<Counters>,
        max_partitions: usize,
        max_new_tables_per_minute: u32,
    ) -> Self {
        Writer {
            mode: mode.to_owned(),
            bulk: Bulk::of(&db),
            db,
            tables: TableCache::new(max_partitions, max_new_tables_per_minute),
            policy,
            counters,
            liveness: Liveness::default(),
        }
    }

    /// What its commits tell about the database (readiness).
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// The pool.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The capture mode's name.
    pub fn mode(&self) -> &str {
        &self.mode
    }

    /// Drops a table (retention) and forgets it, so a late record recreates it.
    pub async fn drop_table(&self, table: &str) -> Result<(), DbError> {
        self.tables.forget(table);
        tables::drop_table(&self.db, table).await?;
        self.tables.forget(table);
        Ok(())
    }

    /// Creates the stream state table and reads which tables exist (rows for them never wait
    /// for the new-table budget).
    pub async fn init(&self) -> Result<(), DbError> {
        self.tables
            .ensure(
                &self.db,
                Schema::StreamState,
                crate::db::schema::STREAM_STATE_TABLE,
            )
            .await?;
        self.tables.remember(tables::list_tables(&self.db).await?);
        Ok(())
    }

    /// Whether a record may go to `table` (see [`TableCache::admit`]): a table that exists
    /// always; a new one when `exempt` (the current days, a pcap import) or within
    /// `max_new_tables_per_minute`.
    pub fn admit(&self, table: &str, exempt: bool) -> Admission {
        self.tables.admit(table, exempt)
    }

    /// The last committed sequence of a stream.
    pub async fn last_committed(&self, stream_id: &str) -> Result<u64, DbError> {
        Ok(insert::last_committed(&self.db, stream_id).await?)
    }

    /// The collector that last committed on a stream (None for a stream never seen).
    pub async fn stream_owner(&self, stream_id: &str) -> Result<Option<String>, DbError> {
        Ok(insert::stream_owner(&self.db, stream_id).await?)
    }

    /// Commits a batch; returns the number of rows written.
    #[tracing::instrument(name = "insert", skip_all, fields(mode = %self.mode, sequence = batch.sequence, tables = batch.tables.len()))]
    pub async fn commit(&self, batch: &PreparedBatch<'_>) -> Result<Committed, WriteError> {
        let started = Instant::now();
        let result = self.commit_with_retries(batch).await;
        InsertTimed {
            elapsed: started.elapsed(),
        }
        .emit(&self.counters);
        result
    }

    async fn commit_with_retries(
        &self,
        batch: &PreparedBatch<'_>,
    ) -> Result<Committed, WriteError> {
        let mut attempts = 0u32;
        let mut first_failure: Option<Instant> = None;
        loop {
            attempts += 1;
            let err = match self.try_commit(batch).await {
                Ok(written) => {
                    self.liveness.committed();
                    return Ok(written);
                }
                Err(err) => err,
            };
            if err.is_retryable() {
                self.liveness.failed();
            }
            if !err.is_retryable() {
                // A row the database refuses for its content: store the others.
                return self.commit_isolating(batch).await.map_err(|source| {
                    WriteError::Exhausted {
                        sequence: batch.sequence,
                        attempts,
                        source,
                    }
                });
            }
            let started = *first_failure.get_or_insert_with(Instant::now);
            let retries_done = attempts - 1;
            if retries_done >= self.policy.retries || started.elapsed() > self.policy.timeout {
                InsertFailed {
                    mode: &self.mode,
                    sequence: batch.sequence,
                    attempts,
                    error: &err,
                }
                .emit(&self.counters);
                return Err(WriteError::Exhausted {
                    sequence: batch.sequence,
                    attempts,
                    source: err,
                });
            }
            let delay = self.policy.delay(attempts);
            InsertRetried {
                mode: &self.mode,
                sequence: batch.sequence,
                attempt: attempts,
                delay,
                error: &err,
            }
            .emit(&self.counters);
            tokio::time::sleep(delay).await;
        }
    }

    /// Creates the batch's tables and partitions. `count`: count the partitions
    /// `max_partitions` refuses and the rows of unusable tables (once per commit attempt: the
    /// isolation pass after a failed one checks again without counting). Returns the indexes (in `batch.tables`) of the tables
    /// that cannot be created for a reason retrying will not fix; a transient error fails the
    /// whole attempt (it is retried).
    async fn ensure_tables(
        &self,
        batch: &PreparedBatch<'_>,
        count: bool,
    ) -> Result<Vec<usize>, DbError> {
        let mut failed = Vec::new();
        for (index, group) in batch.tables.iter().enumerate() {
            match self.ensure_group(group, count).await {
                Ok(()) => {}
                Err(e) if e.is_retryable() => return Err(e),
                Err(_) if !count => failed.push(index),
                Err(e) => {
                    TableFailed {
                        mode: &self.mode,
                        table: &group.table,
                        rows: u64::try_from(group.rows()).unwrap_or(u64::MAX),
                        error: &e,
                    }
                    .emit(&self.counters);
                    failed.push(index);
                }
            }
        }
        Ok(failed)
    }

    /// Creates one table of a batch and, for HOMER 7 on PostgreSQL, the partitions its rows
    /// need.
    async fn ensure_group(
        &self,
        group: &TableRows<'_>,
        count_refused: bool,
    ) -> Result<(), DbError> {
        let postgres = self.db.get_database_backend() == DatabaseBackend::Postgres;
        self.tables
            .ensure(&self.db, Schema::Family(group.family), &group.table)
            .await?;
        // HOMER 7 on PostgreSQL: the partition each row needs (replays and imports of old
        // captures keep their time; heplify-server would lose them).
        let Some(partitioning) = group.partitioning.filter(|_| postgres) else {
            return Ok(());
        };
        let length_us = i64::from(partitioning.length()) * 60_000_000;
        let mut starts: Vec<i64> = Vec::new();
        for time in group.create_dates() {
            let start = time.div_euclid(length_us) * length_us;
            if !starts.contains(&start) {
                starts.push(start);
            }
        }
        for start in starts {
            let time = chrono::DateTime::from_timestamp_micros(start)
                .unwrap_or(chrono::DateTime::UNIX_EPOCH);
            let partition = partitioning.partition(&group.table, time);
            let ready = self
                .tables
                .ensure_partition(&self.db, &group.table, &partition)
                .await?;
            if count_refused && ready == PartitionReady::OverLimit {
                PartitionRefused {
                    mode: &self.mode,
                    partition: &partition.name,
                }
                .emit(&self.counters);
            }
        }
        Ok(())
    }

    /// HOMER 7 upkeep: creates the parent tables and, on PostgreSQL, their partitions from
    /// `from` to `to` (heplify-server pre-creates the same). Returns the partitions created or
    /// found.
    pub async fn precreate(
        &self,
        parents: &[(String, TableFamily, Partitioning)],
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, DbError> {
        let postgres = self.db.get_database_backend() == DatabaseBackend::Postgres;
        let mut count = 0;
        for (parent, family, partitioning) in parents {
            self.tables
                .ensure(&self.db, Schema::Family(*family), parent)
                .await?;
            if !postgres {
                continue;
            }
            for partition in partitioning.covering(parent, from, to) {
                if self
                    .tables
                    .ensure_partition(&self.db, parent, &partition)
                    .await?
                    == PartitionReady::Ready
                {
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// HOMER 7 retention: drops the partitions (PostgreSQL) or deletes the rows (SQLite,
    /// MySQL) of `parents` older than `cutoff`. Returns what was dropped or how many rows went.
    pub async fn expire_homer7(
        &self,
        parents: &[(String, TableFamily, Partitioning)],
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, DbError> {
        let existing = tables::list_tables(&self.db).await?;
        let mut done = Vec::new();
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            for table in &existing {
                let expired = parents.iter().any(|(parent, _, partitioning)| {
                    crate::table::partition_start(parent, table).is_some_and(|start| {
                        start + chrono::Duration::minutes(i64::from(partitioning.length()))
                            <= cutoff
                    })
                });
                if expired {
                    self.drop_table(table).await?;
                    done.push(table.clone());
                }
            }
        } else {
            for (parent, _, _) in parents {
                if existing.contains(parent) {
                    let rows =
                        tables::delete_before(&self.db, parent, "create_date", cutoff).await?;
                    if rows > 0 {
                        done.push(format!("{parent}: {rows} rows"));
                    }
                }
            }
        }
        Ok(done)
    }

    async fn try_commit(&self, batch: &PreparedBatch<'_>) -> Result<Committed, DbError> {
        // DDL first and outside the transaction: MySQL commits implicitly on DDL, and SQLite's
        // single pooled connection is held by an open transaction.
        let failed = self.ensure_tables(batch, true).await?;
        if !failed.is_empty() {
            // The unusable tables' rows were counted (TableFailed); the rest commits with
            // the stream sequence, so the batch is acknowledged and never comes back.
            let rest = without_tables(batch, &failed);
            return self.commit_prepared(&rest).await;
        }
        self.commit_prepared(batch).await
    }

    /// Commits a batch whose tables exist.
    async fn commit_prepared(&self, batch: &PreparedBatch<'_>) -> Result<Committed, DbError> {
        let Some(bulk) = &self.bulk else {
            return self.commit_isolating(batch).await;
        };
        let part = Part {
            stream_id: &batch.stream_id,
            collector_id: &batch.collector_id,
            sequence: batch.sequence,
            first_sequence: batch.first_sequence,
            skip_if_committed: batch.skip_if_committed,
            tables: &batch.tables,
            now_us: now_us(),
        };
        match bulk.commit(&part).await? {
            Outcome::Written(per_table) => {
                let mut written = StoredRows::default();
                for (group, n) in batch.tables.iter().zip(per_table) {
                    written.add(group.family, n);
                }
                Ok(Committed::Rows(written.emit(&self.counters)))
            }
            Outcome::AllCommitted => {
                PartAlreadyCommitted.emit(&self.counters);
                Ok(Committed::Rows(0))
            }
            Outcome::Partly => Ok(Committed::Partly),
        }
    }

    /// With `skip_if_committed`: what the stream state in the transaction says was committed
    /// before — all of the batch (nothing to write), part of a group (commit it batch by
    /// batch), or none (`None`: write it).
    async fn committed_before(
        &self,
        txn: &DatabaseTransaction,
        batch: &PreparedBatch<'_>,
    ) -> Result<Option<Committed>, DbError> {
        if !batch.skip_if_committed {
            return Ok(None);
        }
        let committed = insert::last_committed(txn, &batch.stream_id).await?;
        if committed >= batch.sequence {
            PartAlreadyCommitted.emit(&self.counters);
            return Ok(Some(Committed::Rows(0)));
        }
        if committed >= batch.first_sequence {
            return Ok(Some(Committed::Partly));
        }
        Ok(None)
    }

    /// Row-by-row inside one transaction, each row in its own savepoint: rejected rows are
    /// counted and logged, the rest commit together with the stream sequence.
    async fn commit_isolating(&self, batch: &PreparedBatch<'_>) -> Result<Committed, DbError> {
        let failed = self.ensure_tables(batch, false).await?;
        let txn = self.db.begin().await?;
        if let Some(done) = self.committed_before(&txn, batch).await? {
            txn.rollback().await?;
            return Ok(done);
        }
        let mut written = StoredRows::default();
        let usable = batch
            .tables
            .iter()
            .enumerate()
            .filter(|(index, _)| !failed.contains(index));
        for (_, group) in usable {
            for row in group.chunks(1) {
                let savepoint = txn.begin().await?;
                match insert::insert_rows(&savepoint, &group.table, group.family, row).await {
                    Ok(n) => {
                        savepoint.commit().await?;
                        written.add(group.family, n);
                    }
                    Err(e) if crate::db::is_retryable(&e) => return Err(DbError::Query(e)),
                    Err(e) => {
                        savepoint.rollback().await?;
                        RowRejected {
                            mode: &self.mode,
                            table: &group.table,
                            error: &e,
                        }
                        .emit(&self.counters);
                    }
                }
            }
        }
        insert::save_committed(
            &txn,
            &batch.stream_id,
            &batch.collector_id,
            batch.sequence,
            now_us(),
        )
        .await?;
        txn.commit().await?;
        Ok(Committed::Rows(written.emit(&self.counters)))
    }
}

/// The batch without the tables at `failed` (indexes into `batch.tables`).
fn without_tables<'a>(batch: &PreparedBatch<'a>, failed: &[usize]) -> PreparedBatch<'a> {
    PreparedBatch {
        stream_id: batch.stream_id.clone(),
        collector_id: batch.collector_id.clone(),
        sequence: batch.sequence,
        first_sequence: batch.first_sequence,
        tables: batch
            .tables
            .iter()
            .enumerate()
            .filter(|(index, _)| !failed.contains(index))
            .map(|(_, group)| group.clone())
            .collect(),
        skip_if_committed: batch.skip_if_committed,
    }
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy {
            retries: 10,
            timeout: Duration::from_secs(60),
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        };
        let d1 = p.delay(1);
        assert!(d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(125));
        let d3 = p.delay(3);
        assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(500));
        let d10 = p.delay(10);
        assert!(d10 >= Duration::from_secs(2) && d10 <= Duration::from_millis(2500));
    }
}
