//! Intake: the `Deliver` stream. Each stream is served by its own task: Hello → Welcome (the
//! last committed sequence), then for each batch: route → rows → commit → ack. A batch is
//! acknowledged only after its transaction committed; a batch that cannot be committed ends the
//! stream with UNAVAILABLE, so the collector keeps it and sends it again.
//!
//! A batch whose records go to several capture modes (several databases) is split into one part
//! per mode, rows grouped per (mode, table). The non-default parts commit first (concurrently),
//! each in its own transaction together with a per-mode stream-state row
//! (`<stream_id>@<mode>`); the default mode's part commits last, with the stream's own state row —
//! the one the Welcome reports. The batch is acknowledged only when every part committed. If one
//! database fails, the batch is not acknowledged and comes back; the parts already committed
//! find their sequence in their own database and are skipped, so nothing is stored twice.

use std::sync::Arc;

use sipcapture_runtime::counters::Counters;
use sipcapture_runtime::status::CaptureSwitch;
use sipcapture_proto::v1::storer_service_server::StorerService;
use sipcapture_proto::v1::{
    BatchAck, DeliverRequest, DeliverResponse, RecordBatch, Welcome, deliver_request,
    deliver_response,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use crate::events::{
    BatchCommitted, BatchDuplicate, BatchReceived, HashSourceEmpty, InternalEvent, RecordDiscarded,
    RecordUnroutable, RowTruncated,
};
use crate::pipeline::route::{Decision, Router};
use crate::pipeline::rows;
use crate::pipeline::write::{PreparedBatch, TableRows, Writer};

/// Responses buffered per stream before the handler waits for the collector to read them.
const RESPONSE_QUEUE: usize = 64;

/// Everything a stream handler needs.
#[derive(Debug)]
pub struct Intake {
    /// This storer's id.
    pub storer_id: String,
    /// Table choice.
    pub router: Router,
    /// One writer per capture mode, in the router's mode order (0: the default mode).
    pub writers: Vec<Arc<Writer>>,
    /// Capture on/off.
    pub switch: Arc<CaptureSwitch>,
    /// Event counters.
    pub counters: Arc<Counters>,
    /// Cancelled at shutdown: handlers finish the batch in hand and close their stream.
    pub shutdown: CancellationToken,
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

impl Intake {
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

    async fn handle(
        &self,
        inbound: &mut Streaming<DeliverRequest>,
        out: &mpsc::Sender<Result<DeliverResponse, Status>>,
        identity: Option<String>,
    ) -> Result<(), Status> {
        // A storer shutting down does not wait for a collector still opening its stream.
        let first = tokio::select! {
            () = self.shutdown.cancelled() => return Ok(()),
            first = inbound.message() => first?,
        };
        let mut hello = match first {
            Some(DeliverRequest {
                message: Some(deliver_request::Message::Hello(hello)),
            }) => hello,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be a Hello",
                ));
            }
        };
        if hello.stream_id.is_empty() || hello.stream_id.len() > 200 {
            return Err(Status::invalid_argument(
                "stream_id must have 1 to 200 characters",
            ));
        }
        let authenticated = identity.is_some();
        // An authenticated identity (the collector's verified client certificate) is the
        // origin, whatever the collector claims.
        if let Some(identity) = identity {
            if hello.collector_id != identity {
                tracing::info!(claimed = %hello.collector_id, %identity, "collector id replaced by its certificate identity");
            }
            hello.collector_id = identity;
        }
        // The stream-state column holds 200 characters (a long certificate SAN, a long claim).
        if let Some((cut, _)) = hello.collector_id.char_indices().nth(200) {
            hello.collector_id.truncate(cut);
        }
        let default_writer = self
            .writers
            .first()
            .ok_or_else(|| Status::internal("no default capture mode"))?;
        let last = tokio::select! {
            () = self.shutdown.cancelled() => return Ok(()),
            last = default_writer.last_committed(&hello.stream_id) => last,
        };
        let mut last = last.map_err(|e| Status::unavailable(e.to_string()))?;
        tracing::info!(collector = %hello.collector_id, stream = %hello.stream_id, last, authenticated, "collector stream opened");
        send(
            out,
            deliver_response::Message::Welcome(Welcome {
                storer_id: self.storer_id.clone(),
                last_committed_sequence: last,
            }),
        )
        .await?;

        loop {
            let message = tokio::select! {
                () = self.shutdown.cancelled() => {
                    tracing::info!(stream = %hello.stream_id, "closing collector stream for shutdown");
                    return Ok(());
                }
                message = inbound.message() => message?,
            };
            let Some(message) = message else {
                return Ok(());
            };
            let Some(deliver_request::Message::Batch(mut batch)) = message.message else {
                return Err(Status::invalid_argument("expected a RecordBatch"));
            };
            // The batch's span joins the collector's trace (its context travels in the batch).
            let span = tracing::info_span!(
                "intake_batch",
                stream = %hello.stream_id,
                sequence = batch.sequence,
                records = batch.records.len()
            );
            sipcapture_runtime::telemetry::extract_map(&span, &batch.trace_context);
            stamp_origin(&mut batch, &hello.collector_id);
            let ack = self
                .commit_batch(&hello.stream_id, &hello.collector_id, last, &batch)
                .instrument(span)
                .await?;
            last = last.max(batch.sequence);
            send(out, deliver_response::Message::Ack(ack)).await?;
        }
    }

    /// Commits one batch (or recognises a resend) and returns its acknowledgement.
    pub async fn commit_batch(
        &self,
        stream_id: &str,
        collector_id: &str,
        last: u64,
        batch: &RecordBatch,
    ) -> Result<BatchAck, Status> {
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
                .ok_or_else(|| Status::internal("capture mode without a writer"))?;
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
            stored += result.map_err(|e| Status::unavailable(e.to_string()))?;
        }
        // Last, and always (even without rows): the default mode's rows and the stream state.
        let default_writer = self
            .writers
            .first()
            .ok_or_else(|| Status::internal("no default capture mode"))?;
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
        stored += default_writer
            .commit(&prepared)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        BatchCommitted.emit(&self.counters);
        Ok(BatchAck {
            sequence: batch.sequence,
            stored: u32::try_from(stored).unwrap_or(u32::MAX),
            discarded: routed.discarded,
            duplicate: false,
        })
    }
}

/// Sets every record's origin collector to the stream's (authenticated or claimed) collector.
fn stamp_origin(batch: &mut RecordBatch, collector_id: &str) {
    for record in &mut batch.records {
        let origin = record.origin.get_or_insert_with(Default::default);
        if origin.collector_id != collector_id {
            collector_id.clone_into(&mut origin.collector_id);
        }
    }
}

async fn send(
    out: &mpsc::Sender<Result<DeliverResponse, Status>>,
    message: deliver_response::Message,
) -> Result<(), Status> {
    out.send(Ok(DeliverResponse {
        message: Some(message),
    }))
    .await
    .map_err(|_| Status::cancelled("collector went away"))
}

/// `sipcapture.v1.StorerService`.
#[derive(Debug, Clone)]
pub struct StorerServer {
    intake: Arc<Intake>,
}

impl StorerServer {
    /// A server over an intake.
    pub fn new(intake: Arc<Intake>) -> Self {
        StorerServer { intake }
    }
}

#[tonic::async_trait]
impl StorerService for StorerServer {
    type DeliverStream = ReceiverStream<Result<DeliverResponse, Status>>;

    async fn deliver(
        &self,
        request: Request<Streaming<DeliverRequest>>,
    ) -> Result<Response<Self::DeliverStream>, Status> {
        let peer = request.remote_addr();
        let span = tracing::info_span!("deliver_stream", peer = ?peer);
        sipcapture_runtime::telemetry::extract_metadata(&span, request.metadata());
        let identity = sipcapture_runtime::tls::peer_identity(&request);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(RESPONSE_QUEUE);
        let intake = self.intake.clone();
        tokio::spawn(
            async move {
                intake.counters.add_gauge("streams_open", "", 1);
                if let Err(status) = intake.handle(&mut inbound, &tx, identity).await {
                    tracing::warn!(?peer, code = ?status.code(), message = status.message(), "collector stream ended with an error");
                    let _ignored = tx.send(Err(status)).await;
                }
                intake.counters.add_gauge("streams_open", "", -1);
            }
            .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
