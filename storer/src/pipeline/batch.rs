//! One batch, from received records to committed rows: every record is routed
//! ([`crate::pipeline::route`]), its row built ([`crate::pipeline::rows`]) and grouped per
//! (capture mode, table); the parts are committed ([`crate::pipeline::write`]) and the batch's
//! acknowledgement is built. The transport ([`crate::grpc`]) acknowledges it only after this
//! returns.
//!
//! A batch whose records go to several capture modes (several databases) is split into one part
//! per mode, rows grouped per (mode, table). The non-default parts commit first (concurrently),
//! each in its own transaction together with a per-mode stream-state row
//! (`<stream_id>@<mode>`); the default mode's part commits last, with the stream's own state row —
//! the one the Welcome reports. The batch is acknowledged only when every part committed. If one
//! database fails, the batch is not acknowledged ([`BatchError`]) and comes back; the parts
//! already committed find their sequence in their own database and are skipped, so nothing is
//! stored twice.

use std::sync::Arc;

use sipcapture_proto::v1::{BatchAck, CaptureRecord, InputKind, RecordBatch};
use sipcapture_runtime::counters::Counters;
use sipcapture_runtime::status::CaptureSwitch;

use crate::db::insert::TableRows;
use crate::db::schema::Admission;
use crate::events::{
    BatchCommitted, BatchDuplicate, BatchReceived, DedupEvicted, FutureDated, HashSourceEmpty,
    InternalEvent, MsgTruncated, RecordDiscarded, RecordUnroutable, RowTruncated, TableOverBudget,
};
use crate::pipeline::dedup::{Dedup, Verdict};
use crate::pipeline::route::{Decision, Router};
use crate::pipeline::rows;
use crate::pipeline::write::{Committed, PreparedBatch, WriteError, Writer};

/// Why a batch was not committed (and so must not be acknowledged).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The storer has no writer for the default capture mode.
    #[error("no default capture mode")]
    NoDefaultMode,
    /// A record was routed to a capture mode that has no writer.
    #[error("capture mode without a writer")]
    ModeWithoutWriter,
    /// A part of the batch could not be committed (the database failed after the retries).
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Routes and commits batches: the routing state and one writer per capture mode.
#[derive(Debug)]
pub struct Batcher {
    /// Table choice.
    pub router: Router,
    /// One writer per capture mode, in the router's mode order (0: the default mode).
    pub writers: Vec<Arc<Writer>>,
    /// Capture on/off.
    pub switch: Arc<CaptureSwitch>,
    /// Event counters.
    pub counters: Arc<Counters>,
    /// HOMER 7: the `data_header` keys of custom_field1..3.
    pub custom_keys: Vec<String>,
    /// Drops SIP messages captured twice (`dedup`).
    pub dedup: Option<Dedup>,
    /// What input may cost: capture times, message sizes.
    pub limits: RecordLimits,
}

/// Bounds on what one record may cost the database.
#[derive(Debug, Clone, Copy)]
pub struct RecordLimits {
    /// Live records dated beyond now + this are dropped (`future_horizon`; `None`: no limit).
    pub future_horizon: Option<chrono::Duration>,
    /// The stored message is cut to this many bytes (`max_msg_size`).
    pub max_msg_size: usize,
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits {
            future_horizon: Some(chrono::Duration::days(1)),
            max_msg_size: 65_536,
        }
    }
}

/// Records of the current days (from yesterday, UTC time of the storer) never wait for the
/// new-table budget: a day's rollover and live traffic always get their tables.
const CURRENT_DAYS: chrono::Duration = chrono::Duration::days(1);

/// Whether a record comes from `sipcapture import` (a pcap file an operator chose): its old or
/// odd dates are kept, and its tables are created without the new-table budget.
fn is_import(record: &CaptureRecord) -> bool {
    record
        .origin
        .as_ref()
        .is_some_and(|origin| origin.input() == InputKind::Pcap)
}

/// Rows of one batch for one capture mode.
#[derive(Debug, Default)]
pub struct ModePart<'a> {
    /// Capture mode index (0: default).
    pub mode: usize,
    /// Rows per table.
    pub tables: Vec<TableRows<'a>>,
}

/// What routing one batch (or a group of batches) produced.
#[derive(Debug, Default)]
pub struct Routed<'a> {
    /// Rows per (mode, table).
    pub parts: Vec<ModePart<'a>>,
    /// Records deliberately not stored (capture off, routing rule `drop`).
    pub discarded: u32,
}

impl Routed<'_> {
    /// Rows routed so far, over every mode and table.
    fn rows(&self) -> u32 {
        let rows: usize = self
            .parts
            .iter()
            .flat_map(|p| &p.tables)
            .map(TableRows::rows)
            .sum();
        u32::try_from(rows).unwrap_or(u32::MAX)
    }
}

/// The stream-state key of a non-default mode's part of a stream.
pub fn mode_stream_key(stream_id: &str, mode: &str) -> String {
    format!("{stream_id}@{mode}")
}

impl Batcher {
    /// The default capture mode's writer: it holds the stream's own committed sequence.
    pub fn default_writer(&self) -> Result<&Arc<Writer>, BatchError> {
        self.writers.first().ok_or(BatchError::NoDefaultMode)
    }

    /// Routes every record of a batch and builds its rows.
    pub fn route_batch<'a>(&self, batch: &'a RecordBatch) -> Routed<'a> {
        let mut routed = Routed::default();
        self.route_into(batch, 0, &mut routed);
        routed
    }

    /// Routes every record of a batch of stream `stream` (its dedup key) into `routed`
    /// (several batches of a group share one).
    fn route_into<'a>(&self, batch: &'a RecordBatch, stream: u64, routed: &mut Routed<'a>) {
        let now = chrono::Utc::now();
        let horizon = self.limits.future_horizon.map(|h| now + h);
        for record in &batch.records {
            if !self.switch.is_on() {
                routed.discarded += 1;
                RecordDiscarded { reason: "status" }.emit(&self.counters);
                continue;
            }
            if let Some(dedup) = &self.dedup {
                match dedup.check(record, stream, batch.sequence) {
                    Verdict::Store => {}
                    Verdict::StoreEvicted => DedupEvicted.emit(&self.counters),
                    Verdict::Duplicate => {
                        routed.discarded += 1;
                        RecordDiscarded {
                            reason: "duplicate",
                        }
                        .emit(&self.counters);
                        continue;
                    }
                }
            }
            let import = is_import(record);
            let time = crate::table::capture_time(record);
            if !import && horizon.is_some_and(|horizon| time > horizon) {
                FutureDated {
                    capture_time_us: record.capture_time_us,
                }
                .emit(&self.counters);
                continue;
            }
            let route = match self.router.route(record) {
                Ok(Decision::Store(route)) => route,
                Ok(Decision::Drop) => {
                    routed.discarded += 1;
                    RecordDiscarded { reason: "rule" }.emit(&self.counters);
                    continue;
                }
                Err(e) => {
                    RecordUnroutable {
                        reason: e.reason(),
                        error: &e,
                    }
                    .emit(&self.counters);
                    continue;
                }
            };
            let exempt = import || time >= now - CURRENT_DAYS;
            let admission = self
                .writers
                .get(route.mode)
                .map_or(Admission::Known, |w| w.admit(&route.table, exempt));
            if admission == Admission::OverBudget {
                TableOverBudget {
                    table: &route.table,
                }
                .emit(&self.counters);
                continue;
            }
            if route.hash_source_empty {
                HashSourceEmpty.emit(&self.counters);
            }
            let part = match routed.parts.iter().position(|p| p.mode == route.mode) {
                Some(i) => routed.parts.get_mut(i),
                None => {
                    routed.parts.push(ModePart {
                        mode: route.mode,
                        tables: Vec::new(),
                    });
                    routed.parts.last_mut()
                }
            };
            let Some(part) = part else { continue };
            let group = match part.tables.iter().position(|t| t.table == route.table) {
                Some(i) => part.tables.get_mut(i),
                None => {
                    let mut rows = TableRows::new(route.table, route.family);
                    rows.partitioning = route.partitioning;
                    part.tables.push(rows);
                    part.tables.last_mut()
                }
            };
            let Some(group) = group else { continue };
            let cut = rows::Cut {
                custom_keys: &self.custom_keys,
                max_msg_size: self.limits.max_msg_size,
            };
            let built = rows::row(record, route.family, &cut, &mut group.cells);
            if built.value_cut {
                RowTruncated.emit(&self.counters);
            }
            if built.msg_cut {
                MsgTruncated.emit(&self.counters);
            }
        }
    }

    /// Commits one batch (or recognises a resend) and returns its acknowledgement.
    pub async fn commit_batch(
        &self,
        stream_id: &str,
        collector_id: &str,
        last: u64,
        batch: &RecordBatch,
    ) -> Result<BatchAck, BatchError> {
        let acks = self
            .commit_group(stream_id, collector_id, last, std::slice::from_ref(batch))
            .await?;
        Ok(acks.into_iter().next().unwrap_or(BatchAck {
            sequence: batch.sequence,
            stored: 0,
            discarded: 0,
            duplicate: true,
        }))
    }

    /// Commits a group of batches of one stream that arrived together (group commit): the
    /// resends among them (sequence not above `last`, the stream's committed sequence) are
    /// recognised; the others, consecutive and ascending, commit in one transaction per capture
    /// mode with the stream state set to the newest of them. Returns one acknowledgement per
    /// batch, in order; none is valid before this returns. When another storer committed some
    /// of the group meanwhile (a failed-over stream), or the group is not ascending, its
    /// batches commit one by one.
    pub async fn commit_group(
        &self,
        stream_id: &str,
        collector_id: &str,
        last: u64,
        batches: &[RecordBatch],
    ) -> Result<Vec<BatchAck>, BatchError> {
        let mut acks = Vec::with_capacity(batches.len());
        let mut fresh: Vec<&RecordBatch> = Vec::with_capacity(batches.len());
        let mut ascending = true;
        for batch in batches {
            BatchReceived.emit(&self.counters);
            if batch.sequence <= last {
                acks.push(self.duplicate(batch.sequence));
                continue;
            }
            if fresh
                .last()
                .is_some_and(|prev| prev.sequence >= batch.sequence)
            {
                ascending = false;
            }
            fresh.push(batch);
        }
        if ascending
            && let Some(fresh_acks) = self.commit_fresh(stream_id, collector_id, &fresh).await?
        {
            acks.extend(fresh_acks);
            return Ok(acks);
        }
        let mut last = last;
        for batch in fresh {
            if batch.sequence <= last {
                acks.push(self.duplicate(batch.sequence));
                continue;
            }
            let one = self
                .commit_fresh(stream_id, collector_id, std::slice::from_ref(&batch))
                .await?;
            acks.extend(one.into_iter().flatten());
            last = batch.sequence;
        }
        Ok(acks)
    }

    /// The acknowledgement of a resent batch (committed before), counted.
    fn duplicate(&self, sequence: u64) -> BatchAck {
        BatchDuplicate { sequence }.emit(&self.counters);
        BatchAck {
            sequence,
            stored: 0,
            discarded: 0,
            duplicate: true,
        }
    }

    /// Commits consecutive fresh batches in one transaction per capture mode; `None` when some
    /// of them were committed by another storer meanwhile (never for a single batch).
    async fn commit_fresh(
        &self,
        stream_id: &str,
        collector_id: &str,
        fresh: &[&RecordBatch],
    ) -> Result<Option<Vec<BatchAck>>, BatchError> {
        let (Some(first), Some(newest)) = (fresh.first(), fresh.last()) else {
            return Ok(Some(Vec::new()));
        };
        let (first_sequence, sequence) = (first.sequence, newest.sequence);
        let mut routed = Routed::default();
        let mut per_batch = Vec::with_capacity(fresh.len());
        let stream = self.dedup.as_ref().map_or(0, |d| d.stream_key(stream_id));
        for batch in fresh {
            let (rows_before, discarded_before) = (routed.rows(), routed.discarded);
            self.route_into(batch, stream, &mut routed);
            per_batch.push((
                routed.rows() - rows_before,
                routed.discarded - discarded_before,
            ));
        }
        let mut default_tables = Vec::new();
        let mut others = Vec::new();
        for part in routed.parts {
            if part.mode == 0 {
                default_tables = part.tables;
                continue;
            }
            let writer = self
                .writers
                .get(part.mode)
                .ok_or(BatchError::ModeWithoutWriter)?;
            let prepared = PreparedBatch {
                stream_id: mode_stream_key(stream_id, writer.mode()),
                collector_id: collector_id.to_owned(),
                sequence,
                first_sequence,
                tables: part.tables,
                skip_if_committed: true,
            };
            others.push(async move { writer.commit(&prepared).await });
        }
        let mut partly = false;
        let mut written = 0;
        for result in futures::future::join_all(others).await {
            match result? {
                Committed::Rows(n) => written += n,
                Committed::Partly => partly = true,
            }
        }
        if partly {
            return Ok(None);
        }
        // Last, and always (even without rows): the default mode's rows and the stream state.
        let default_writer = self.default_writer()?;
        let prepared = PreparedBatch {
            stream_id: stream_id.to_owned(),
            collector_id: collector_id.to_owned(),
            sequence,
            first_sequence,
            tables: default_tables,
            // Re-checked inside the transaction: another storer may have committed these
            // batches since this stream's Welcome (a collector that failed over while the old
            // stream was still being served).
            skip_if_committed: true,
        };
        match default_writer.commit(&prepared).await? {
            Committed::Rows(n) => written += n,
            Committed::Partly => return Ok(None),
        }
        // Each batch reports the rows routed from it; none when the group had been committed
        // before (a resend that found its sequence in the database).
        let acks = fresh
            .iter()
            .zip(per_batch)
            .map(|(batch, (routed_rows, discarded))| {
                BatchCommitted.emit(&self.counters);
                BatchAck {
                    sequence: batch.sequence,
                    stored: if written == 0 { 0 } else { routed_rows },
                    discarded,
                    duplicate: false,
                }
            })
            .collect();
        Ok(Some(acks))
    }
}
