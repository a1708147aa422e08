//! Export: records → numbered batches → the storer's Deliver stream. A batch is kept until the
//! storer acknowledges it (after its commit); after a lost stream the exporter reconnects (to the
//! next endpoint in the list when there are several), learns the last committed sequence from
//! the Welcome and resends the rest, in order. At most `max_unacked` batches are outstanding;
//! beyond that no more input is read, so pressure flows back to the inputs' bounded queue.

pub mod encoded;
pub mod lanes;
pub mod spool;
pub mod storers;
mod stream;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sipcapture_proto::v1::{CaptureRecord, RecordBatch, deliver_response};
use sipcapture_runtime::counters::Counters;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::events::{
    BatchAcked, BatchDuplicate, BatchSealed, BatchSent, InternalEvent, LaneMoves,
    RecordsDroppedBySpool, RecordsLostAtShutdown, RecordsSpooled, SpoolCorruptFrames,
    StreamConnectFailed, StreamConnected, StreamLost,
};
use encoded::EncodedBatch;
use spool::{Spool, SpoolError};
use storers::Storers;
use stream::Conn;

/// An error with its sources, `a: b: c` (tonic's transport errors hide the TLS reason in the
/// source chain).
struct ErrorChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = self.0.to_string();
        let mut source = self.0.source();
        while let Some(e) = source {
            let more = e.to_string();
            // tonic's Status already prints its source; say each reason once.
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            source = e.source();
        }
        f.write_str(&text)
    }
}

/// Exporter settings.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// This lane's number (its key for hash placement).
    pub lane: u64,
    /// The collector's id.
    pub collector_id: String,
    /// This delivery stream's id (sequence numbers are unique within it).
    pub stream_id: String,
    /// Records per batch.
    pub batch_max_records: usize,
    /// Payload bytes per batch.
    pub batch_max_bytes: usize,
    /// Oldest record age before a partial batch is sealed.
    pub batch_max_delay: Duration,
    /// Outstanding batches.
    pub max_unacked: usize,
    /// After the input closes (shutdown), how long to keep trying to deliver what is pending.
    pub drain_timeout: Duration,
    /// Bearer token sent when opening a Deliver stream (the collector's `auth_token`; storers
    /// with the same token require it).
    pub token: Option<String>,
}

/// A lane's state for the gauges (`unacked_batches`, `spool_bytes`, `spool_segments`): atomics
/// the exporter stores after every step and `/metrics` reads at scrape time.
#[derive(Debug, Default)]
pub struct LaneStats {
    /// Sealed batches not yet acknowledged, in memory.
    pub unacked: AtomicU64,
    /// Spool bytes on disk.
    pub spool_bytes: AtomicU64,
    /// Spool segment files.
    pub spool_segments: AtomicU64,
}

/// A sealed batch waiting for its acknowledgement.
#[derive(Debug)]
struct Pending {
    /// Encoded once, when sealed.
    batch: EncodedBatch,
    /// Read back from the spool (so its bytes are on disk already).
    spooled: bool,
    /// When it was first sent (for the send → ack latency).
    first_sent: Option<Instant>,
    /// The batch's span: open from sealing to the acknowledgement (its trace context travels
    /// in the batch, so the storer's spans join it).
    _span: tracing::Span,
}

impl Pending {
    fn new(batch: EncodedBatch, spooled: bool, span: tracing::Span) -> Self {
        Pending {
            batch,
            spooled,
            first_sent: None,
            _span: span,
        }
    }
}

/// The batch being filled.
#[derive(Debug, Default)]
struct Building {
    records: Vec<CaptureRecord>,
    bytes: usize,
    since: Option<Instant>,
}

/// Exporter state: the sealed, unacknowledged batches in order and the current connection.
struct Exporter {
    cfg: ExportConfig,
    counters: Arc<Counters>,
    stats: Arc<LaneStats>,
    building: Building,
    pending: VecDeque<Pending>,
    spool: Option<Spool>,
    next_sequence: u64,
    conn: Option<Conn>,
    /// Highest sequence sent on the current connection.
    sent_upto: u64,
    /// Highest sequence ever sent (to count resends).
    ever_sent: u64,
    storers: Arc<Storers>,
    /// The storer (URL) the current connection goes to.
    target: Option<String>,
    /// Since when the placement wants this lane on another storer: no new batches are sent
    /// until the in-flight ones are acknowledged (so a move resends nothing), or `MOVE_GRACE`
    /// has passed ([`Exporter::move_due`]).
    moving_since: Option<Instant>,
    backoff: Duration,
    reconnect_at: Instant,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a lane re-checks its placement (a storer back from failure gets its lanes back).
const PLACEMENT_CHECK: Duration = Duration::from_secs(5);
/// How long a lane that should move waits for its in-flight batches' acknowledgements.
const MOVE_GRACE: Duration = Duration::from_secs(30);

impl Exporter {
    fn add(&mut self, record: CaptureRecord) {
        self.building.bytes += record.payload.len() + 256;
        self.building.since.get_or_insert_with(Instant::now);
        self.building.records.push(record);
        if self.building.records.len() >= self.cfg.batch_max_records
            || self.building.bytes >= self.cfg.batch_max_bytes
        {
            self.seal();
        }
    }

    fn seal(&mut self) {
        if self.building.records.is_empty() {
            return;
        }
        let building = std::mem::take(&mut self.building);
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        BatchSealed.emit(&self.counters);
        let records = building.records.len();
        let span = tracing::info_span!("export_batch", lane = self.cfg.lane, sequence, records);
        let mut batch = RecordBatch {
            sequence,
            records: building.records,
            trace_context: Default::default(),
        };
        sipcapture_runtime::telemetry::inject_map(&span, &mut batch.trace_context);
        let batch = EncodedBatch::encode(&batch);
        let Some(spool) = self.spool.as_mut() else {
            self.pending.push_back(Pending::new(batch, false, span));
            return;
        };
        if let Err(e) = spool.reserve(sequence) {
            tracing::error!(error = %e, "cannot reserve sequence numbers in the spool");
        }
        // Order: once anything waits in the spool, new batches queue behind it.
        if !spool.has_unread() && self.pending.len() < self.cfg.max_unacked {
            self.pending.push_back(Pending::new(batch, false, span));
            return;
        }
        let records = batch.records;
        match spool.push(&batch) {
            Ok(()) => RecordsSpooled { records }.emit(&self.counters),
            Err(e) => {
                let reason = match e {
                    // The configured cap or the disk itself: either way the spool is full.
                    SpoolError::Full { .. } | SpoolError::NoSpace { .. } => "spool_full",
                    SpoolError::Io { .. } | SpoolError::Locked(_) => "spool_error",
                };
                RecordsDroppedBySpool {
                    reason,
                    records,
                    error: &e,
                }
                .emit(&self.counters);
            }
        }
    }

    /// Moves spooled batches into the in-memory window as it frees up.
    fn refill(&mut self) {
        let Some(spool) = self.spool.as_mut() else {
            return;
        };
        let corrupt_before = spool.corrupt_frames();
        while self.pending.len() < self.cfg.max_unacked && spool.has_unread() {
            match spool.pop() {
                Ok(Some(batch)) => {
                    let span = tracing::info_span!(
                        "export_batch",
                        lane = self.cfg.lane,
                        sequence = batch.sequence,
                        records = batch.records,
                        from_spool = true
                    );
                    // The batch keeps the trace context it was sealed with (read from its
                    // bytes only when traces are exported).
                    if sipcapture_runtime::telemetry::otel_traces_enabled() {
                        sipcapture_runtime::telemetry::extract_map(&span, &batch.trace_context());
                    }
                    self.pending.push_back(Pending::new(batch, true, span));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool");
                    break;
                }
            }
        }
        let frames = spool.corrupt_frames() - corrupt_before;
        if frames > 0 {
            SpoolCorruptFrames { frames }.emit(&self.counters);
        }
    }

    /// At shutdown with batches still unacknowledged: keep them in the spool for the next run.
    /// Returns the records that could not be kept (no spool, or a spool whose disk is full:
    /// as many batches as fit are kept, the rest are lost and logged with their count).
    fn save_for_restart(&mut self) -> u64 {
        let memory_only: Vec<&EncodedBatch> = self
            .pending
            .iter()
            .filter(|p| !p.spooled)
            .map(|p| &p.batch)
            .collect();
        let Some(spool) = self.spool.as_mut() else {
            return self.pending.iter().map(|p| p.batch.records).sum();
        };
        // Batches already in the spool come back at the next start whatever happens here.
        let (saved, error) = spool.save_unacked_prefix(&memory_only);
        let kept: u64 = memory_only[..saved].iter().map(|b| b.records).sum();
        let lost: u64 = memory_only[saved..].iter().map(|b| b.records).sum();
        spool.sync();
        if let Some(e) = error {
            tracing::error!(
                error = %e,
                kept_records = kept,
                lost_records = lost,
                "cannot save every unacknowledged batch to the spool"
            );
        }
        tracing::info!(
            records = kept,
            spool_bytes = spool.bytes(),
            "unacknowledged batches kept in the spool for the next start"
        );
        lost
    }

    /// [`Self::save_for_restart`], counting and logging what it could not keep.
    fn save_for_restart_counted(&mut self) {
        let lost = self.save_for_restart();
        if lost > 0 {
            RecordsLostAtShutdown { records: lost }.emit(&self.counters);
        }
    }

    /// Publishes the lane's gauges (relaxed atomic stores: cheap enough for every step).
    fn update_stats(&self) {
        let relaxed = Ordering::Relaxed;
        self.stats.unacked.store(self.pending.len() as u64, relaxed);
        if let Some(spool) = &self.spool {
            self.stats.spool_bytes.store(spool.bytes(), relaxed);
            self.stats
                .spool_segments
                .store(spool.segments() as u64, relaxed);
        }
    }

    fn flush_deadline(&self) -> Option<Instant> {
        self.building.since.map(|t| t + self.cfg.batch_max_delay)
    }

    /// Sends every pending batch not yet sent on this connection (bounded by the window).
    fn send_pending(&mut self) {
        let Some(conn) = &self.conn else {
            return;
        };
        if self.moving_since.is_some() {
            return;
        }
        for pending in &mut self.pending {
            let batch = &pending.batch;
            if batch.sequence <= self.sent_upto {
                continue;
            }
            // The encoded bytes are shared, not copied.
            if !conn.try_send(batch.body.clone()) {
                break;
            }
            self.sent_upto = batch.sequence;
            pending.first_sent.get_or_insert_with(Instant::now);
            let resend = batch.sequence <= self.ever_sent;
            if !resend {
                self.ever_sent = batch.sequence;
            }
            BatchSent { resend }.emit(&self.counters);
        }
    }

    /// Drops the pending batches up to `sequence` (acknowledged or already committed).
    fn acknowledge(&mut self, sequence: u64) {
        while let Some(front) = self.pending.front() {
            if front.batch.sequence > sequence {
                break;
            }
            let records = front.batch.records;
            let latency = front.first_sent.map(|t| t.elapsed());
            self.pending.pop_front();
            BatchAcked { records, latency }.emit(&self.counters);
        }
        if let Some(spool) = self.spool.as_mut() {
            spool.release(sequence);
        }
    }

    fn lose_connection(&mut self, why: &dyn std::fmt::Display) {
        if self.conn.take().is_some() {
            StreamLost {
                lane: self.cfg.lane,
                error: why,
                pending: self.pending.len(),
            }
            .emit(&self.counters);
        }
        if let Some(url) = self.target.take() {
            self.storers.mark_down(&url);
        }
        self.moving_since = None;
        self.reconnect_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// After a change of the endpoint set and every `PLACEMENT_CHECK`: when the placement now
    /// wants this lane on another storer (hash placement: the rendezvous winner changed;
    /// balanced: its storer has more lanes than the least loaded), stop sending and move once
    /// the in-flight batches are acknowledged. What was not sent yet goes to the new storer.
    fn follow_placement(&mut self) {
        if self.conn.is_none() || self.moving_since.is_some() {
            return;
        }
        if let Some((current, wanted)) = self.wanted_move() {
            tracing::debug!(lane = self.cfg.lane, from = %current, to = %wanted, "placement wants the lane on another storer");
            self.moving_since = Some(Instant::now());
        }
    }

    /// The lane's storer and the one the placement wants it on, when they differ.
    fn wanted_move(&self) -> Option<(String, String)> {
        let current = self.target.as_ref()?;
        let wanted = self.storers.target_for(self.cfg.lane)?;
        (*current != wanted).then(|| (current.clone(), wanted))
    }

    /// Whether something sent on this connection still waits for its acknowledgement.
    fn in_flight(&self) -> bool {
        self.pending
            .front()
            .is_some_and(|p| p.batch.sequence <= self.sent_upto)
    }

    /// A pending move can be made: nothing in flight, or `MOVE_GRACE` has passed.
    fn move_due(&self) -> bool {
        self.moving_since
            .is_some_and(|since| !self.in_flight() || since.elapsed() >= MOVE_GRACE)
    }

    /// Make before break: opens the stream to the storer the placement wants and only then
    /// drops the current one. A storer that cannot be reached is marked down and the lane
    /// stays where it is (so a dead storer in the list does not make lanes flap).
    async fn complete_move(&mut self) {
        self.moving_since = None;
        let Some((current, wanted)) = self.wanted_move() else {
            return;
        };
        if self.in_flight() {
            tracing::warn!(
                lane = self.cfg.lane,
                "in-flight batches not acknowledged in time; lane moves anyway (they are resent)"
            );
        }
        if self.open(wanted.clone()).await {
            LaneMoves {
                lane: self.cfg.lane,
                from: &current,
                to: &wanted,
            }
            .emit(&self.counters);
        } else {
            self.storers.assign(self.cfg.lane, &current);
        }
    }

    async fn connect(&mut self) {
        let Some(target) = self.storers.target_for(self.cfg.lane) else {
            self.lose_connection(&"no storer endpoints");
            return;
        };
        if !self.open(target.clone()).await {
            self.lose_connection(&format_args!("cannot open a stream to {target}"));
        }
    }

    /// Opens a stream to `target` and makes it the lane's connection (replacing, and so
    /// closing, any previous one); false when it cannot be opened (counted, logged, and the
    /// storer marked down).
    async fn open(&mut self, target: String) -> bool {
        let span = tracing::info_span!("storer_connect", lane = self.cfg.lane, storer = %target);
        let opened = Conn::open(&target, &self.storers, &self.cfg, self.cfg.max_unacked + 2)
            .instrument(span)
            .await;
        match opened {
            Ok((conn, welcome)) => {
                StreamConnected {
                    lane: self.cfg.lane,
                    storer: &welcome.storer_id,
                    via: &target,
                    last_committed: welcome.last_committed_sequence,
                }
                .emit(&self.counters);
                self.conn = Some(conn);
                self.target = Some(target);
                self.backoff = MIN_BACKOFF;
                self.sent_upto = welcome.last_committed_sequence;
                self.acknowledge(welcome.last_committed_sequence);
                true
            }
            Err(e) => {
                // A refused TLS handshake (untrusted or missing client certificate) ends here:
                // counted and logged (first and every power of two), not silent.
                StreamConnectFailed {
                    lane: self.cfg.lane,
                    storer: &target,
                    error: &ErrorChain(&e),
                }
                .emit(&self.counters);
                self.storers.mark_down(&target);
                false
            }
        }
    }
}

/// Runs the exporter until `input` is closed and everything pending is acknowledged (or the
/// drain time-out passes after the input closed).
pub async fn run(
    cfg: ExportConfig,
    storers: Arc<Storers>,
    spool: Option<Spool>,
    mut input: mpsc::Receiver<CaptureRecord>,
    counters: Arc<Counters>,
    stats: Arc<LaneStats>,
) {
    let next_sequence = spool.as_ref().map_or(1, Spool::first_free_sequence);
    let mut ex = Exporter {
        cfg,
        counters,
        stats,
        building: Building::default(),
        pending: VecDeque::new(),
        spool,
        next_sequence,
        conn: None,
        sent_upto: 0,
        ever_sent: 0,
        storers: storers.clone(),
        target: None,
        moving_since: None,
        backoff: MIN_BACKOFF,
        reconnect_at: Instant::now(),
    };
    let mut endpoint_changes = storers.subscribe();
    let mut placement_check = tokio::time::interval(PLACEMENT_CHECK);
    placement_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut input_open = true;
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if ex.conn.is_none() && Instant::now() >= ex.reconnect_at {
            ex.connect().await;
        }
        if ex.move_due() {
            ex.complete_move().await;
        }
        ex.refill();
        ex.send_pending();
        ex.update_stats();
        let spool_waiting = ex.spool.as_ref().is_some_and(Spool::has_unread);
        if !input_open && ex.building.records.is_empty() && ex.pending.is_empty() && !spool_waiting
        {
            tracing::info!("exporter drained");
            return;
        }
        if !input_open && ex.conn.is_none() && ex.spool.is_some() {
            // Shutting down with no storer reachable: keep everything for the next start.
            ex.save_for_restart_counted();
            return;
        }
        let far = Instant::now() + Duration::from_secs(3600);
        let flush_at = ex.flush_deadline().unwrap_or(far);
        let reconnect_at = if ex.conn.is_none() {
            ex.reconnect_at
        } else {
            far
        };
        let drain_at = drain_deadline.unwrap_or(far);
        // With a spool the exporter always reads input (what does not fit the window goes to
        // disk); without one, a full window stops reading and pressure reaches the inputs.
        let accept = input_open && (ex.spool.is_some() || ex.pending.len() < ex.cfg.max_unacked);
        tokio::select! {
            record = input.recv(), if accept => match record {
                Some(record) => ex.add(record),
                None => {
                    input_open = false;
                    ex.seal();
                    drain_deadline = Some(Instant::now() + ex.cfg.drain_timeout);
                }
            },
            () = tokio::time::sleep_until(flush_at), if ex.building.since.is_some() => ex.seal(),
            message = stream::next_message(ex.conn.as_mut()), if ex.conn.is_some() => match message {
                Ok(Some(deliver_response::Message::Ack(ack))) => {
                    if ack.duplicate {
                        BatchDuplicate.emit(&ex.counters);
                    }
                    ex.acknowledge(ack.sequence);
                }
                Ok(Some(deliver_response::Message::Welcome(_))) => {}
                Ok(None) => ex.lose_connection(&"stream closed by the storer"),
                Err(status) => ex.lose_connection(&status),
            },
            () = tokio::time::sleep_until(reconnect_at), if ex.conn.is_none() => {}
            changed = endpoint_changes.changed() => {
                if changed.is_ok() {
                    ex.follow_placement();
                }
            }
            _ = placement_check.tick() => ex.follow_placement(),
            () = tokio::time::sleep_until(drain_at), if drain_deadline.is_some() => {
                ex.save_for_restart_counted();
                return;
            }
        }
    }
}
