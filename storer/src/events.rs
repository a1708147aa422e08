//! The storer's typed internal events: each one logs and counts together (see
//! `sipcapture_runtime::events`). [`CATALOG`] lists every metric they move; `docs/METRICS.md`
//! documents each one (a test checks it).

use std::time::Duration;

use sipcapture_runtime::counters::{Catalog, Counters, counter, gauge, histogram, worth_logging};

pub use sipcapture_runtime::events::{InternalEvent, StatusChanged};

use crate::table::TableFamily;

/// The `family` label of a table family.
pub fn family_label(family: TableFamily) -> &'static str {
    if family.is_sip() { "sip" } else { "report" }
}

/// A batch arrived on a Deliver stream.
#[derive(Debug, Clone, Copy)]
pub struct BatchReceived;

impl InternalEvent for BatchReceived {
    fn emit(self, counters: &Counters) {
        counters.add("batches_received", 1);
    }
}

/// A batch arrived again after it was committed: acknowledged, not stored again.
#[derive(Debug, Clone, Copy)]
pub struct BatchDuplicate {
    /// Its sequence.
    pub sequence: u64,
}

impl InternalEvent for BatchDuplicate {
    fn emit(self, counters: &Counters) {
        tracing::debug!(
            sequence = self.sequence,
            "batch committed before; acknowledged again"
        );
        counters.add("batches_duplicate", 1);
    }
}

/// Every part of a batch committed; it is acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct BatchCommitted;

impl InternalEvent for BatchCommitted {
    fn emit(self, counters: &Counters) {
        counters.add("batches_committed", 1);
    }
}

/// Rows of one table family went into the database in a committed transaction.
#[derive(Debug, Clone, Copy)]
pub struct RowsStored {
    /// The table family.
    pub family: TableFamily,
    /// Rows.
    pub count: u64,
}

impl InternalEvent for RowsStored {
    fn emit(self, counters: &Counters) {
        counters.add_labeled("rows_stored", family_label(self.family), self.count);
    }
}

/// A value was cut to its column width.
#[derive(Debug, Clone, Copy)]
pub struct RowTruncated;

impl InternalEvent for RowTruncated {
    fn emit(self, counters: &Counters) {
        counters.add("rows_truncated", 1);
    }
}

/// `mt_mode = hash` found an empty hash source; the first table was used.
#[derive(Debug, Clone, Copy)]
pub struct HashSourceEmpty;

impl InternalEvent for HashSourceEmpty {
    fn emit(self, counters: &Counters) {
        counters.add("hash_source_empty", 1);
    }
}

/// A record acknowledged but deliberately not stored (`status`: capture off; `rule`: a routing
/// rule said `drop`).
#[derive(Debug, Clone, Copy)]
pub struct RecordDiscarded {
    /// `status`, `rule` or `duplicate`.
    pub reason: &'static str,
}

impl InternalEvent for RecordDiscarded {
    fn emit(self, counters: &Counters) {
        counters.add_labeled("discarded", self.reason, 1);
    }
}

/// A HOMER 7 partition was not created: `max_partitions` reached. Logged on the 1st and every
/// 2^n-th occurrence.
pub struct PartitionRefused<'a> {
    /// The capture mode.
    pub mode: &'a str,
    /// The partition.
    pub partition: &'a str,
}

impl InternalEvent for PartitionRefused<'_> {
    fn emit(self, counters: &Counters) {
        let total = counters.add("partitions_refused", 1);
        if worth_logging(total) {
            tracing::warn!(
                mode = self.mode,
                partition = self.partition,
                total,
                "HOMER 7 partition not created: max_partitions reached; rows that need it are refused"
            );
        }
    }
}

/// Dedup's memory was full: the oldest message was forgotten before its window ended.
pub struct DedupEvicted;

impl InternalEvent for DedupEvicted {
    fn emit(self, counters: &Counters) {
        counters.add("dedup_evicted", 1);
    }
}

/// A record with no valid table (bad pattern, unknown capture mode): dropped and logged on the
/// 1st and every 2^n-th occurrence of its reason.
pub struct RecordUnroutable<'a> {
    /// Low-cardinality reason (`unknown_capture_mode`, `bad_table_pattern`, ...).
    pub reason: &'static str,
    /// The routing error, for the log.
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for RecordUnroutable<'_> {
    fn emit(self, counters: &Counters) {
        let total = counters.count_drop(self.reason);
        if worth_logging(total) {
            tracing::error!(reason = self.reason, error = %self.error, total, "record dropped: no valid table");
        }
    }
}

/// The database refused one row for its content; the rest of the batch was committed.
pub struct RowRejected<'a> {
    /// Capture mode.
    pub mode: &'a str,
    /// The table (logged, never a label).
    pub table: &'a str,
    /// The database error.
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for RowRejected<'_> {
    fn emit(self, counters: &Counters) {
        let total = counters.count_drop("row_rejected");
        if worth_logging(total) {
            tracing::error!(mode = %self.mode, table = %self.table, error = %self.error, total, "row rejected by the database");
        }
    }
}

/// Whether a total that just grew by `n` crossed a power of two (log lines thin out as a
/// cause repeats, as with [`worth_logging`] for single steps).
fn crossed_power_of_two(total: u64, n: u64) -> bool {
    let before = total.saturating_sub(n);
    n > 0 && (before == 0 || before.ilog2() != total.ilog2())
}

/// A table could not be created for a reason retrying will not fix (an object of that name
/// that is not a usable table, a schema error): its rows in this batch are dropped and
/// counted, the other tables' rows are committed (the dead-letter path of one table).
pub struct TableFailed<'a> {
    /// Capture mode.
    pub mode: &'a str,
    /// The table (logged, never a label).
    pub table: &'a str,
    /// Its rows in the batch.
    pub rows: u64,
    /// The database error.
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for TableFailed<'_> {
    fn emit(self, counters: &Counters) {
        let total = counters.count_drops("table_failed", self.rows);
        if crossed_power_of_two(total, self.rows) {
            tracing::error!(mode = %self.mode, table = %self.table, rows = self.rows, error = %self.error, total, "table unusable: its rows dropped, the rest of the batch stored");
        }
    }
}

/// A record needed a new table for a date outside the current days while
/// `max_new_tables_per_minute` was spent: dropped and counted.
pub struct TableOverBudget<'a> {
    /// The table it needed (logged, never a label).
    pub table: &'a str,
}

impl InternalEvent for TableOverBudget<'_> {
    fn emit(self, counters: &Counters) {
        let total = counters.count_drop("table_budget");
        if worth_logging(total) {
            tracing::warn!(table = %self.table, total, "record dropped: max_new_tables_per_minute reached for tables of other days");
        }
    }
}

/// A live record dated beyond `future_horizon` after now: dropped and counted (it would
/// create a table no retention ever reaches).
#[derive(Debug, Clone, Copy)]
pub struct FutureDated {
    /// Its capture time, µs since the epoch.
    pub capture_time_us: u64,
}

impl InternalEvent for FutureDated {
    fn emit(self, counters: &Counters) {
        let total = counters.count_drop("future_date");
        if worth_logging(total) {
            tracing::warn!(
                capture_time_us = self.capture_time_us,
                total,
                "record dropped: capture time beyond future_horizon"
            );
        }
    }
}

/// A stored message (`msg`, `raw`) was cut to `max_msg_size`.
#[derive(Debug, Clone, Copy)]
pub struct MsgTruncated;

impl InternalEvent for MsgTruncated {
    fn emit(self, counters: &Counters) {
        counters.add("msg_truncated", 1);
    }
}

/// A batch transaction failed with a transient error and will be tried again.
pub struct InsertRetried<'a> {
    /// Capture mode.
    pub mode: &'a str,
    /// The batch.
    pub sequence: u64,
    /// Attempts so far.
    pub attempt: u32,
    /// Wait before the next attempt.
    pub delay: Duration,
    /// The database error.
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for InsertRetried<'_> {
    fn emit(self, counters: &Counters) {
        tracing::info!(mode = %self.mode, sequence = self.sequence, attempt = self.attempt, delay = ?self.delay, error = %self.error, "insert retried");
        counters.add("insert_retried", 1);
    }
}

/// A batch transaction was given up after `insert_retries`: not acknowledged, the collector
/// keeps it.
pub struct InsertFailed<'a> {
    /// Capture mode.
    pub mode: &'a str,
    /// The batch.
    pub sequence: u64,
    /// Attempts made.
    pub attempts: u32,
    /// The last database error.
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for InsertFailed<'_> {
    fn emit(self, counters: &Counters) {
        tracing::warn!(mode = %self.mode, sequence = self.sequence, attempts = self.attempts, error = %self.error, "insert failed, batch not acknowledged");
        counters.add("insert_failed", 1);
    }
}

/// A part of a resent batch was found committed in its database already (skipped).
#[derive(Debug, Clone, Copy)]
pub struct PartAlreadyCommitted;

impl InternalEvent for PartAlreadyCommitted {
    fn emit(self, counters: &Counters) {
        counters.add("batch_parts_already_committed", 1);
    }
}

/// One batch part's commit finished (successfully or not): its latency.
#[derive(Debug, Clone, Copy)]
pub struct InsertTimed {
    /// All attempts included.
    pub elapsed: Duration,
}

impl InternalEvent for InsertTimed {
    fn emit(self, counters: &Counters) {
        counters.observe("insert_seconds", self.elapsed);
    }
}

/// A capture mode's database stopped or started answering the readiness check.
#[derive(Debug)]
pub struct DatabaseReachability<'a> {
    /// The capture mode.
    pub mode: &'a str,
    /// Whether it answers now.
    pub reachable: bool,
    /// Why not.
    pub error: Option<&'a str>,
}

impl InternalEvent for DatabaseReachability<'_> {
    fn emit(self, counters: &Counters) {
        counters.set_gauge("db_reachable", self.mode, i64::from(self.reachable));
        match self.error {
            Some(e) => tracing::warn!(mode = %self.mode, error = %e, "database unreachable"),
            None => tracing::info!(mode = %self.mode, "database reachable again"),
        }
    }
}

/// Every metric the storer exports (plus the runtime's `COMMON` ones).
pub const CATALOG: Catalog = Catalog {
    service: "storer",
    metrics: &[
        counter("batches_received", None, "batches received from collectors"),
        counter(
            "batches_committed",
            None,
            "batches committed and acknowledged",
        ),
        counter(
            "batches_duplicate",
            None,
            "batches received again after they were committed (acknowledged, not stored)",
        ),
        counter(
            "batch_parts_already_committed",
            None,
            "parts of a resent batch already committed in a capture mode's database",
        ),
        counter(
            "rows_stored",
            Some("family"),
            "rows inserted, by table family (sip, report)",
        )
        .values(&["sip", "report"]),
        counter(
            "rows_truncated",
            None,
            "rows with a value cut to its column width",
        ),
        counter(
            "msg_truncated",
            None,
            "stored messages (msg, raw) cut to max_msg_size",
        ),
        counter(
            "hash_source_empty",
            None,
            "records whose mt_mode hash source was empty (first table used)",
        ),
        counter(
            "insert_retried",
            None,
            "batch transactions retried after a transient database error",
        ),
        counter(
            "insert_failed",
            None,
            "batch transactions given up after insert_retries (batch not acknowledged)",
        ),
        counter(
            "dropped",
            Some("reason"),
            "records dropped, by reason (no valid table, a reserved table name, row rejected by the database, table unusable, new-table budget spent, dated beyond future_horizon)",
        )
        .values(&[
            "unknown_capture_mode",
            "bad_table_pattern",
            "unsafe_table_name",
            "empty_table",
            "reserved_table_name",
            "row_rejected",
            "table_failed",
            "table_budget",
            "future_date",
        ]),
        counter(
            "discarded",
            Some("reason"),
            "records acknowledged but deliberately not stored (status off, routing rule drop, duplicate of a copy captured elsewhere)",
        )
        .values(&["status", "rule", "duplicate"]),
        counter(
            "partitions_refused",
            None,
            "HOMER 7 partitions not created because max_partitions was reached (their rows are refused and counted in dropped{reason=\"row_rejected\"})",
        ),
        counter(
            "dedup_evicted",
            None,
            "messages forgotten by dedup before their window ended (dedup_max_entries reached)",
        ),
        gauge(
            "streams_open",
            None,
            "collector Deliver streams being served",
        ),
        gauge(
            "db_pool_connections",
            Some("mode"),
            "connections open in a capture mode's database pool",
        ),
        gauge(
            "db_pool_idle",
            Some("mode"),
            "idle connections in a capture mode's database pool",
        ),
        gauge(
            "db_pool_max",
            Some("mode"),
            "configured maximum connections of a capture mode's pool",
        ),
        gauge(
            "capture_on",
            None,
            "1 while the storer stores (status on), 0 while capture is off",
        ),
        gauge(
            "ready",
            None,
            "1 while gRPC health is SERVING: the default capture mode's database answers",
        ),
        gauge(
            "db_reachable",
            Some("mode"),
            "1 while a capture mode's database answers the readiness check (every 5 s)",
        ),
        histogram(
            "insert_seconds",
            "time to commit one batch part (all attempts included)",
        ),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_list_every_metric() {
        let docs = include_str!("../../docs/METRICS.md");
        assert_eq!(CATALOG.undocumented(docs), Vec::<String>::new());
    }
}
