//! Intake, transport only: the `Deliver` stream. Each stream is served by its own task: Hello →
//! Welcome (the last committed sequence), then for each batch, together with the batches that
//! arrived behind it (group commit): commit ([`crate::pipeline::batch`]) → one ack per batch. A batch is acknowledged only after every part of it committed; a batch that cannot be
//! committed ends the stream with the code of its [`BatchError`] (UNAVAILABLE when a database
//! failed), so the collector keeps it and sends it again. Backpressure: the responses go through
//! a bounded queue the collector reads.

use std::sync::Arc;

use sipcapture_proto::v1::storer_service_server::StorerService;
use sipcapture_proto::v1::{
    DeliverRequest, DeliverResponse, RecordBatch, Welcome, deliver_request, deliver_response,
};
use sipcapture_runtime::auth::{Authorizer, Caller};
use sipcapture_runtime::counters::Counters;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use crate::pipeline::batch::{BatchError, Batcher};

/// Responses buffered per stream before the handler waits for the collector to read them.
const RESPONSE_QUEUE: usize = 64;
/// Batches of one stream read ahead while a group commits (bounds the memory a stream holds:
/// 32 gave ~10 % more rows/s and ~50 MiB more peak RSS in `storer/benches/e2e_up.sh`).
const READ_AHEAD_BATCHES: usize = 8;
/// Payload KiB of one stream read ahead and not yet committed at most (a collector's batch is
/// about 0.5 MiB; with 16 MiB batches allowed by `grpc_limits`, this bounds what one stream
/// holds, not the count above).
const READ_AHEAD_KIB: usize = 8 * 1024;
const READ_AHEAD_KIB_U32: u32 = 8 * 1024;
/// Batches of one stream committed together at most (group commit).
const MAX_GROUP_BATCHES: usize = 16;
/// Records of one stream committed together at most: beyond it the next batches wait for the
/// next transaction.
const MAX_GROUP_RECORDS: usize = 8_000;
/// How far a batch's sequence may lie beyond the stream's committed one. A collector's sequence
/// only jumps when it restarts (by at most the 10 000 its spool reserves per run), so this
/// leaves room for a hundred restarts in a row without a commit; a batch beyond it (a forged
/// 2^64 − 1 that would set the stream state so that every later batch counts as already
/// committed) is refused and stored nowhere, never saturated into the state. A stream this
/// storer has no state for (committed 0) starts at its first batch, whatever its sequence: a
/// collector that ran long (past a million batches) and fails over to a new database must not be
/// refused for ever.
pub const MAX_SEQUENCE_AHEAD: u64 = 1_000_000;

/// Everything a stream handler needs.
#[derive(Debug)]
pub struct Intake {
    /// This storer's id.
    pub storer_id: String,
    /// Routes and commits the batches.
    pub batcher: Batcher,
    /// Event counters (the `streams_open` gauge).
    pub counters: Arc<Counters>,
    /// Cancelled at shutdown: handlers finish the batch in hand and close their stream.
    pub shutdown: CancellationToken,
    /// Who may deliver (the collector role): `collector_token` (else `auth_token`) as a
    /// bearer token, or a client certificate the listener verified (listed in
    /// `grpc_collector_identities` when that is set); with neither configured, loopback peers
    /// only unless `allow_insecure`.
    pub auth: Authorizer,
}

impl Intake {
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
        let default_writer = self.batcher.default_writer().map_err(batch_status)?;
        if authenticated {
            let owner = tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                owner = default_writer.stream_owner(&hello.stream_id) => owner,
            };
            let owner = owner.map_err(|e| Status::unavailable(e.to_string()))?;
            check_owner(&hello.stream_id, owner.as_deref(), &hello.collector_id)?;
        }
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

        // The reader keeps the HTTP/2 stream flowing while a group commits: it reads batches
        // ahead into a bounded queue (the collector's window is about as large), and the
        // committer takes everything that has arrived as one group (group commit: one batch
        // when idle, up to MAX_GROUP_* under load).
        let (queued, mut arrived) =
            mpsc::channel::<(Arrival, Option<OwnedSemaphorePermit>)>(READ_AHEAD_BATCHES);
        // Payload bytes (KiB) read ahead and not yet committed, whatever the batch count.
        let budget = Arc::new(Semaphore::new(READ_AHEAD_KIB));
        let reader = async {
            loop {
                let message = tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    message = inbound.message() => message,
                };
                let arrival = match message {
                    Ok(Some(message)) => batch_of(message).map(Some),
                    Ok(None) => Ok(None),
                    Err(status) => Err(status),
                };
                let last_one = !matches!(arrival, Ok(Some(_)));
                let kib = match &arrival {
                    Ok(Some(batch)) => payload_kib(batch),
                    _ => 0,
                };
                let Ok(permit) = budget.clone().acquire_many_owned(kib).await else {
                    return;
                };
                if queued.send((arrival, Some(permit))).await.is_err() || last_one {
                    return;
                }
            }
        };
        let committer = async {
            loop {
                let first = tokio::select! {
                    () = self.shutdown.cancelled() => {
                        tracing::info!(stream = %hello.stream_id, "closing collector stream for shutdown");
                        return Ok(());
                    }
                    first = arrived.recv() => first,
                };
                // The permits go back (the read-ahead budget frees) once the group committed.
                let mut permits = Vec::new();
                let mut group = match first {
                    Some((Ok(Some(batch)), permit)) => {
                        permits.push(permit);
                        vec![batch]
                    }
                    Some((Ok(None), _)) | None => return Ok(()),
                    Some((Err(status), _)) => return Err(status),
                };
                let mut records = group.first().map_or(0, |b| b.records.len());
                let mut ended: Option<Result<(), Status>> = None;
                while group.len() < MAX_GROUP_BATCHES && records < MAX_GROUP_RECORDS {
                    match arrived.try_recv() {
                        Ok((Ok(Some(batch)), permit)) => {
                            records += batch.records.len();
                            group.push(batch);
                            permits.push(permit);
                        }
                        Ok((Ok(None), _)) => {
                            ended = Some(Ok(()));
                            break;
                        }
                        Ok((Err(status), _)) => {
                            ended = Some(Err(status));
                            break;
                        }
                        Err(_) => break,
                    }
                }
                // The group's span joins the trace of its first batch (its context travels in
                // it).
                let span = tracing::info_span!(
                    "intake_batch",
                    stream = %hello.stream_id,
                    sequence = group.first().map_or(0, |b| b.sequence),
                    batches = group.len(),
                    records
                );
                if let Some(first) = group.first() {
                    sipcapture_runtime::telemetry::extract_map(&span, &first.trace_context);
                }
                for batch in &mut group {
                    check_sequence(batch.sequence, last)?;
                    stamp_origin(batch, &hello.collector_id);
                }
                let acks = self
                    .batcher
                    .commit_group(&hello.stream_id, &hello.collector_id, last, &group)
                    .instrument(span)
                    .await
                    .map_err(batch_status)?;
                drop(permits);
                for ack in acks {
                    last = last.max(ack.sequence);
                    send(out, deliver_response::Message::Ack(ack)).await?;
                }
                if let Some(ended) = ended {
                    return ended;
                }
            }
        };
        // The stream ends when the committer does; the reader stopping first (stream closed)
        // only ends the queue.
        tokio::pin!(reader, committer);
        let mut reading = true;
        loop {
            tokio::select! {
                () = &mut reader, if reading => reading = false,
                result = &mut committer => return result,
            }
        }
    }
}

/// Refuses a Hello for a stream whose state row belongs to another collector when the caller
/// proved who it is with a certificate: the row is the stream's exactly-once state, and a
/// stranger advancing it would make the owner's next batches count as already committed.
fn check_owner(stream_id: &str, owner: Option<&str>, identity: &str) -> Result<(), Status> {
    match owner {
        Some(owner) if !owner.is_empty() && owner != identity => {
            tracing::warn!(
                stream = stream_id,
                owner,
                identity,
                "stream refused: its state belongs to another collector"
            );
            Err(Status::permission_denied(format!(
                "stream {stream_id:?} belongs to another collector; a collector identity may only resume its own streams"
            )))
        }
        _ => Ok(()),
    }
}

/// Refuses a batch sequence the stream state cannot take: beyond [`MAX_SEQUENCE_AHEAD`] of the
/// committed one, or beyond what the state column holds (i64).
fn check_sequence(sequence: u64, last: u64) -> Result<(), Status> {
    let limit = last
        .saturating_add(if last == 0 {
            u64::MAX
        } else {
            MAX_SEQUENCE_AHEAD
        })
        .min(u64::try_from(i64::MAX).unwrap_or(u64::MAX));
    if sequence > limit {
        tracing::warn!(
            sequence,
            last,
            "batch refused: its sequence is too far ahead of the stream's committed one"
        );
        return Err(Status::invalid_argument(format!(
            "batch sequence {sequence} is more than {MAX_SEQUENCE_AHEAD} beyond the stream's committed sequence {last}"
        )));
    }
    Ok(())
}

/// What the reader hands the committer: a batch, the end of the stream, or its error.
type Arrival = Result<Option<RecordBatch>, Status>;

/// A batch's payload size in KiB for the read-ahead budget (at least 1, at most the budget,
/// so one batch larger than the budget still passes, alone).
fn payload_kib(batch: &RecordBatch) -> u32 {
    let bytes: usize = batch.records.iter().map(|r| r.payload.len()).sum();
    u32::try_from(bytes / 1024 + 1)
        .unwrap_or(u32::MAX)
        .min(READ_AHEAD_KIB_U32)
}

/// The batch a stream message carries.
fn batch_of(message: DeliverRequest) -> Result<RecordBatch, Status> {
    match message.message {
        Some(deliver_request::Message::Batch(batch)) => Ok(batch),
        _ => Err(Status::invalid_argument("expected a RecordBatch")),
    }
}

/// The gRPC status of a batch that was not committed: UNAVAILABLE when a database failed (the
/// collector keeps the batch and sends it again), INTERNAL when the storer lacks a capture mode's
/// writer.
fn batch_status(error: BatchError) -> Status {
    let message = error.to_string();
    match error {
        BatchError::NoDefaultMode | BatchError::ModeWithoutWriter => Status::internal(message),
        BatchError::Write(_) => Status::unavailable(message),
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
        let identity = match self.intake.auth.check_as(&request)? {
            Caller::Certificate(identity) => Some(identity),
            Caller::Token | Caller::Anonymous => None,
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_budget_counts_kib_within_the_budget() {
        let batch = |bytes: usize| RecordBatch {
            records: vec![sipcapture_proto::v1::CaptureRecord {
                payload: vec![0; bytes],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(payload_kib(&batch(0)), 1);
        assert_eq!(payload_kib(&batch(10 * 1024)), 11);
        assert_eq!(payload_kib(&batch(64 * 1024 * 1024)), READ_AHEAD_KIB_U32);
        assert_eq!(READ_AHEAD_KIB_U32 as usize, READ_AHEAD_KIB);
    }

    #[test]
    fn a_certificate_resumes_only_its_own_streams() {
        assert!(check_owner("s", None, "c1").is_ok());
        assert!(check_owner("s", Some(""), "c1").is_ok());
        assert!(check_owner("s", Some("c1"), "c1").is_ok());
        assert_eq!(
            check_owner("s", Some("c2"), "c1").unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn sequences_far_ahead_or_beyond_i64_are_refused() {
        assert!(check_sequence(1, 0).is_ok());
        assert!(check_sequence(MAX_SEQUENCE_AHEAD + 1, 1).is_ok());
        assert_eq!(
            check_sequence(MAX_SEQUENCE_AHEAD + 2, 1)
                .unwrap_err()
                .code(),
            tonic::Code::InvalidArgument
        );
        // A stream without state starts where its first batch is, up to i64.
        assert!(check_sequence(5_000_000_000, 0).is_ok());
        assert!(check_sequence(u64::MAX, 0).is_err());
        assert!(check_sequence(u64::MAX, 7).is_err());
        let top = u64::try_from(i64::MAX).unwrap();
        assert!(check_sequence(top, top - 5).is_ok());
        assert!(check_sequence(top + 1, top).is_err());
    }
}
