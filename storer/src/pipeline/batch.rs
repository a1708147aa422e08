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

use sipcapture_proto::v1::{BatchAck, RecordBatch};
use sipcapture_runtime::counters::Counters;
use sipcapture_runtime::status::CaptureSwitch;

use crate::events::{
    BatchCommitted, BatchDuplicate, BatchReceived, HashSourceEmpty, InternalEvent, RecordDiscarded,
    RecordUnroutable, RowTruncated,
};
use crate::pipeline::route::{Decision, Router};
use crate::pipeline::rows;
use crate::pipeline::write::{PreparedBatch, TableRows, WriteError, Writer};

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
}

/// Rows of one batch for one capture mode.
#[derive(Debug, Default)]
pub struct ModePart {
    /// Capture mode index (0: default).
    pub mode: usize,
    /// Rows per table.
    pub tables: Vec<TableRows>,
}

/// What routing one batch produced.
#[derive(Debug, Default)]
pub struct Routed {
    /// Rows per (mode, table).
    pub parts: Vec<ModePart>,
    /// Records deliberately not stored (capture off, routing rule `drop`).
    pub discarded: u32,
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
    pub fn route_batch(&self, batch: &RecordBatch) -> Routed {
        let mut routed = Routed::default();
        for record in &batch.records {
            if !self.switch.is_on() {
                routed.discarded += 1;
                RecordDiscarded { reason: "status" }.emit(&self.counters);
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
            if route.hash_source_empty {
                HashSourceEmpty.emit(&self.counters);
            }
            let row = rows::row(record, route.family);
            if row.truncated {
                RowTruncated.emit(&self.counters);
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
            match part.tables.iter_mut().find(|t| t.table == route.table) {
                Some(group) => group.rows.push(row.values),
                None => part.tables.push(TableRows {
                    table: route.table,
                    family: route.family,
                    rows: vec![row.values],
                }),
            }
        }
        routed
    }

    /// Commits one batch (or recognises a resend) and returns its acknowledgement.
    pub async fn commit_batch(
        &self,
        stream_id: &str,
        collector_id: &str,
        last: u64,
        batch: &RecordBatch,
    ) -> Result<BatchAck, BatchError> {
        BatchReceived.emit(&self.counters);
        if batch.sequence <= last {
            BatchDuplicate {
                sequence: batch.sequence,
            }
            .emit(&self.counters);
            return Ok(BatchAck {
                sequence: batch.sequence,
                stored: 0,
                discarded: 0,
                duplicate: true,
            });
        }
        let routed = self.route_batch(batch);
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
                sequence: batch.sequence,
                tables: part.tables,
                skip_if_committed: true,
            };
            others.push(async move { writer.commit(&prepared).await });
        }
        let mut stored = 0;
        for result in futures::future::join_all(others).await {
            stored += result?;
        }
        // Last, and always (even without rows): the default mode's rows and the stream state.
        let default_writer = self.default_writer()?;
        let prepared = PreparedBatch {
            stream_id: stream_id.to_owned(),
            collector_id: collector_id.to_owned(),
            sequence: batch.sequence,
            tables: default_tables,
            // Re-checked inside the transaction: another storer may have committed this batch
            // since this stream's Welcome (a collector that failed over while the old stream
            // was still being served).
            skip_if_committed: true,
        };
        stored += default_writer.commit(&prepared).await?;
        BatchCommitted.emit(&self.counters);
        Ok(BatchAck {
            sequence: batch.sequence,
            stored: u32::try_from(stored).unwrap_or(u32::MAX),
            discarded: routed.discarded,
            duplicate: false,
        })
    }
}
