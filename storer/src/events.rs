//! The storer's typed internal events: each one logs and counts together (see
//! `sipcapture_runtime::events`). Metric names and meanings are in `docs/METRICS.md`.

use std::time::Duration;

use sipcapture_runtime::counters::{Counters, worth_logging};

pub use sipcapture_runtime::events::{InternalEvent, StatusChanged};

use crate::table::TableFamily;

/// The `family` label of a table family.
pub fn family_label(family: TableFamily) -> &'static str {
    match family {
        TableFamily::Sip => "sip",
        TableFamily::Report => "report",
    }
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
    /// `status` or `rule`.
    pub reason: &'static str,
}

impl InternalEvent for RecordDiscarded {
    fn emit(self, counters: &Counters) {
        counters.add_labeled("discarded", self.reason, 1);
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
