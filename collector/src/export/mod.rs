//! Export: records → numbered batches → the storer's Deliver stream. A batch is kept until the
//! storer acknowledges it (after its commit); after a lost stream the exporter reconnects (to the
//! next endpoint in the list when there are several), learns the last committed sequence from
//! the Welcome and resends the rest, in order. At most `max_unacked` batches are outstanding;
//! beyond that no more input is read, so pressure flows back to the inputs' bounded queue.

mod stream;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use sipcapture_proto::counters::Counters;
use sipcapture_proto::v1::{CaptureRecord, RecordBatch, deliver_response};
use tokio::sync::mpsc;
use tokio::time::Instant;

use stream::Conn;

/// Exporter settings.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// Storer endpoints, tried in order.
    pub storers: Vec<String>,
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
    building: Building,
    pending: VecDeque<RecordBatch>,
    next_sequence: u64,
    conn: Option<Conn>,
    /// Highest sequence sent on the current connection.
    sent_upto: u64,
    /// Highest sequence ever sent (to count resends).
    ever_sent: u64,
    endpoint: usize,
    backoff: Duration,
    reconnect_at: Instant,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

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
        self.counters.add("batches_sealed", 1);
        self.pending.push_back(RecordBatch {
            sequence,
            records: building.records,
        });
    }

    fn flush_deadline(&self) -> Option<Instant> {
        self.building.since.map(|t| t + self.cfg.batch_max_delay)
    }

    /// Sends every pending batch not yet sent on this connection (bounded by the window).
    fn send_pending(&mut self) {
        let Some(conn) = &self.conn else {
            return;
        };
        for batch in &self.pending {
            if batch.sequence <= self.sent_upto {
                continue;
            }
            if !conn.try_send(batch.clone()) {
                break;
            }
            self.sent_upto = batch.sequence;
            if batch.sequence <= self.ever_sent {
                self.counters.add("batches_resent", 1);
            } else {
                self.ever_sent = batch.sequence;
                self.counters.add("batches_sent", 1);
            }
        }
    }

    /// Drops the pending batches up to `sequence` (acknowledged or already committed).
    fn acknowledge(&mut self, sequence: u64) {
        while let Some(front) = self.pending.front() {
            if front.sequence > sequence {
                break;
            }
            let records = front.records.len() as u64;
            self.pending.pop_front();
            self.counters.add("records_acked", records);
            self.counters.add("batches_acked", 1);
        }
    }

    fn lose_connection(&mut self, why: &dyn std::fmt::Display) {
        if self.conn.take().is_some() {
            tracing::warn!(error = %why, pending = self.pending.len(), "storer stream lost; will resend unacknowledged batches");
            self.counters.add("stream_errors", 1);
        }
        self.endpoint = (self.endpoint + 1) % self.cfg.storers.len().max(1);
        self.reconnect_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    async fn connect(&mut self) {
        let Some(url) = self.cfg.storers.get(self.endpoint).cloned() else {
            return;
        };
        match Conn::open(&url, &self.cfg, self.cfg.max_unacked + 2).await {
            Ok((conn, welcome)) => {
                tracing::info!(storer = %welcome.storer_id, %url, last_committed = welcome.last_committed_sequence, "connected to storer");
                self.conn = Some(conn);
                self.backoff = MIN_BACKOFF;
                self.sent_upto = welcome.last_committed_sequence;
                self.acknowledge(welcome.last_committed_sequence);
                self.counters.add("stream_connects", 1);
            }
            Err(e) => self.lose_connection(&format_args!("{url}: {e}")),
        }
    }
}

/// Runs the exporter until `input` is closed and everything pending is acknowledged (or the
/// drain time-out passes after the input closed).
pub async fn run(
    cfg: ExportConfig,
    mut input: mpsc::Receiver<CaptureRecord>,
    counters: Arc<Counters>,
) {
    let mut ex = Exporter {
        cfg,
        counters,
        building: Building::default(),
        pending: VecDeque::new(),
        next_sequence: 1,
        conn: None,
        sent_upto: 0,
        ever_sent: 0,
        endpoint: 0,
        backoff: MIN_BACKOFF,
        reconnect_at: Instant::now(),
    };
    let mut input_open = true;
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if ex.conn.is_none() && Instant::now() >= ex.reconnect_at {
            ex.connect().await;
        }
        ex.send_pending();
        if !input_open && ex.building.records.is_empty() && ex.pending.is_empty() {
            tracing::info!("exporter drained");
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
        let accept = input_open && ex.pending.len() < ex.cfg.max_unacked;
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
                        ex.counters.add("batches_duplicate", 1);
                    }
                    ex.acknowledge(ack.sequence);
                }
                Ok(Some(deliver_response::Message::Welcome(_))) => {}
                Ok(None) => ex.lose_connection(&"stream closed by the storer"),
                Err(status) => ex.lose_connection(&status),
            },
            () = tokio::time::sleep_until(reconnect_at), if ex.conn.is_none() => {}
            () = tokio::time::sleep_until(drain_at), if drain_deadline.is_some() => {
                let records: usize = ex.pending.iter().map(|b| b.records.len()).sum::<usize>() + ex.building.records.len();
                ex.counters.add("records_lost_at_shutdown", records as u64);
                tracing::error!(records, batches = ex.pending.len(), "shutdown: storers did not acknowledge everything in time; records lost");
                return;
            }
        }
    }
}
