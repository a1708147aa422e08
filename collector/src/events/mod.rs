//! The collector's typed internal events: each one logs and counts together (see
//! `sipcapture_runtime::events`). [`CATALOG`] (`catalog.rs`) lists every metric they move;
//! `docs/METRICS.md` documents them.

mod catalog;

pub use catalog::{CATALOG, DROP_REASONS, INPUTS};

use std::time::Duration;

use sipcapture_proto::v1::InputKind;
use sipcapture_runtime::counters::{Counter, Counters, worth_logging};

pub use sipcapture_runtime::events::{InternalEvent, StatusChanged};

/// The `input` label of an input kind.
pub fn input_label(input: InputKind) -> &'static str {
    sipcapture_runtime::status::input_label(input)
}

/// Every input kind, in the order of [`PacketCounters`]' arrays ([`input_index`]).
const INPUT_KINDS: [InputKind; 7] = [
    InputKind::Unspecified,
    InputKind::HepUdp,
    InputKind::HepTcp,
    InputKind::HepTls,
    InputKind::Ipip,
    InputKind::Mirror,
    InputKind::Pcap,
];

/// The position of `input` in [`INPUT_KINDS`].
fn input_index(input: InputKind) -> usize {
    match input {
        InputKind::Unspecified => 0,
        InputKind::HepUdp => 1,
        InputKind::HepTcp => 2,
        InputKind::HepTls => 3,
        InputKind::Ipip => 4,
        InputKind::Mirror => 5,
        InputKind::Pcap => 6,
    }
}

/// The counters every packet moves, resolved once from the registry when the per-packet stage
/// is built, so the hot path names no series: `hep_received`, `hep_decoded` and
/// `raw_received` per input kind, and `records_queued`.
#[derive(Debug, Clone)]
pub struct PacketCounters {
    hep_received: [Counter; 7],
    hep_decoded: [Counter; 7],
    raw_received: [Counter; 7],
    records_queued: Counter,
}

impl PacketCounters {
    /// Resolves the series in `counters` (the collector's registry).
    pub fn new(counters: &Counters) -> Self {
        let per_input =
            |family| INPUT_KINDS.map(|input| counters.counter(family, input_label(input)));
        PacketCounters {
            hep_received: per_input("hep_received"),
            hep_decoded: per_input("hep_decoded"),
            raw_received: per_input("raw_received"),
            records_queued: counters.counter("records_queued", ""),
        }
    }

    fn by_input(family: &[Counter; 7], input: InputKind) -> &Counter {
        &family[input_index(input)]
    }
}

/// An occurrence on the per-packet path, counted through [`PacketCounters`].
pub trait PacketEvent {
    /// Counts.
    fn emit(self, counters: &PacketCounters);
}

/// A HEP packet (datagram or stream frame) arrived, before decoding.
#[derive(Debug, Clone, Copy)]
pub struct HepReceived {
    /// Where from.
    pub input: InputKind,
}

impl PacketEvent for HepReceived {
    fn emit(self, counters: &PacketCounters) {
        PacketCounters::by_input(&counters.hep_received, self.input).add(1);
    }
}

/// A HEP packet decoded; `incomplete` when core chunks were missing.
#[derive(Debug, Clone, Copy)]
pub struct HepDecoded {
    /// Where from.
    pub input: InputKind,
}

impl PacketEvent for HepDecoded {
    fn emit(self, counters: &PacketCounters) {
        PacketCounters::by_input(&counters.hep_decoded, self.input).add(1);
    }
}

/// A record was built from a HEP packet that lacked core chunks (stored, flagged).
#[derive(Debug, Clone, Copy)]
pub struct HepIncomplete;

impl InternalEvent for HepIncomplete {
    fn emit(self, counters: &Counters) {
        counters.add("hep_incomplete", 1);
    }
}

/// A raw input (mirror port) handed over one transport payload.
#[derive(Debug, Clone, Copy)]
pub struct RawReceived {
    /// Where from.
    pub input: InputKind,
}

impl PacketEvent for RawReceived {
    fn emit(self, counters: &PacketCounters) {
        PacketCounters::by_input(&counters.raw_received, self.input).add(1);
    }
}

/// A packet could not become a record. Logged on the 1st and every 2^n-th drop of a reason.
#[derive(Clone, Copy)]
pub struct PacketDropped<'a> {
    /// Low-cardinality reason (`bad_magic`, `truncated`, `auth_failed`, ...).
    pub reason: &'static str,
    /// Where from.
    pub input: InputKind,
    /// The error, for the log only.
    pub detail: &'a dyn std::fmt::Display,
}

impl InternalEvent for PacketDropped<'_> {
    fn emit(self, counters: &Counters) {
        let total = counters.count_drop(self.reason);
        if worth_logging(total) {
            let (reason, input, detail) = (self.reason, self.input, self.detail);
            match input {
                InputKind::HepUdp | InputKind::HepTcp | InputKind::HepTls => {
                    tracing::warn!(reason, ?input, %detail, total, "dropped hep packet");
                }
                _ => tracing::warn!(reason, ?input, %detail, total, "dropped raw packet"),
            }
        }
    }
}

/// Ordinary raw traffic that is not ours (another protocol, a filtered port, a fragment):
/// counted under `dropped{reason}` but never logged — on a mirror port it is most traffic.
#[derive(Debug, Clone, Copy)]
pub struct PacketSkipped {
    /// Low-cardinality reason.
    pub reason: &'static str,
}

impl InternalEvent for PacketSkipped {
    fn emit(self, counters: &Counters) {
        counters.count_drop(self.reason);
    }
}

/// A decoded packet not captured because capture is off for its input.
#[derive(Debug, Clone, Copy)]
pub struct DiscardedByStatus;

impl InternalEvent for DiscardedByStatus {
    fn emit(self, counters: &Counters) {
        counters.add_labeled("discarded", "status", 1);
    }
}

/// A record entered the exporter's queue.
#[derive(Debug, Clone, Copy)]
pub struct RecordQueued;

impl PacketEvent for RecordQueued {
    fn emit(self, counters: &PacketCounters) {
        counters.records_queued.add(1);
    }
}

/// A HEP TCP connection was accepted.
#[derive(Debug, Clone, Copy)]
pub struct TcpConnectionAccepted;

impl InternalEvent for TcpConnectionAccepted {
    fn emit(self, counters: &Counters) {
        counters.add("tcp_connections", 1);
    }
}

/// A HEP TCP/TLS connection was closed at accept: its source address already held
/// `tcp_max_connections_per_ip`. Logged on the 1st and every 2^n-th refusal.
#[derive(Debug, Clone, Copy)]
pub struct TcpRefusedPerIp {
    /// The client.
    pub peer: std::net::SocketAddr,
    /// TCP or TLS.
    pub input: InputKind,
    /// The cap.
    pub max: usize,
}

impl InternalEvent for TcpRefusedPerIp {
    fn emit(self, counters: &Counters) {
        let total = counters.add("tcp_refused_per_ip", 1);
        if worth_logging(total) {
            let (peer, input, max) = (self.peer, self.input, self.max);
            tracing::warn!(
                %peer,
                ?input,
                total,
                tcp_max_connections_per_ip = max,
                "hep connection refused: too many from one address"
            );
        }
    }
}

/// Accepting a HEP TCP/TLS connection failed (out of file descriptors, ...). Logged on the
/// 1st and every 2^n-th failure.
#[derive(Debug, Clone, Copy)]
pub struct TcpAcceptFailed<'a> {
    /// The OS error.
    pub error: &'a std::io::Error,
    /// TCP or TLS.
    pub input: InputKind,
}

impl InternalEvent for TcpAcceptFailed<'_> {
    fn emit(self, counters: &Counters) {
        let total = counters.add("tcp_accept_failed", 1);
        if worth_logging(total) {
            let (error, input) = (self.error, self.input);
            tracing::warn!(%error, ?input, total, "hep accept failed");
        }
    }
}

/// A HEP TLS connection was accepted (before its handshake).
#[derive(Debug, Clone, Copy)]
pub struct TlsConnectionAccepted;

impl InternalEvent for TlsConnectionAccepted {
    fn emit(self, counters: &Counters) {
        counters.add("tls_connections", 1);
    }
}

/// A TLS handshake failed or timed out.
#[derive(Debug, Clone)]
pub struct TlsHandshakeFailed {
    /// Why.
    pub error: String,
}

impl InternalEvent for TlsHandshakeFailed {
    fn emit(self, counters: &Counters) {
        let total = counters.add_labeled("tls_handshake_failed", "", 1);
        if worth_logging(total) {
            tracing::warn!(error = %self.error, total, "hep tls handshake failed");
        }
    }
}

/// A HEP stream was closed after `tcp_idle_timeout`.
#[derive(Debug, Clone, Copy)]
pub struct TcpIdleClosed;

impl InternalEvent for TcpIdleClosed {
    fn emit(self, counters: &Counters) {
        tracing::debug!("closing idle hep stream");
        counters.add("tcp_idle_closed", 1);
    }
}

/// A frame was read from the mirror-port socket.
#[derive(Debug, Clone, Copy)]
pub struct MirrorFrame;

impl InternalEvent for MirrorFrame {
    fn emit(self, counters: &Counters) {
        counters.add("mirror_frames", 1);
    }
}

/// Reading the mirror-port socket failed (counted as `dropped{reason="read_error"}`).
#[derive(Debug, Clone, Copy)]
pub struct MirrorReadFailed<'a> {
    /// The OS error.
    pub error: &'a std::io::Error,
}

impl InternalEvent for MirrorReadFailed<'_> {
    fn emit(self, counters: &Counters) {
        let total = counters.count_drop("read_error");
        if worth_logging(total) {
            tracing::warn!(error = %self.error, total, "mirror capture read failed");
        }
    }
}

/// A batch was numbered and sealed.
#[derive(Debug, Clone, Copy)]
pub struct BatchSealed;

impl InternalEvent for BatchSealed {
    fn emit(self, counters: &Counters) {
        counters.add("batches_sealed", 1);
    }
}

/// A batch went onto a Deliver stream (`resend`: again, after a lost stream).
#[derive(Debug, Clone, Copy)]
pub struct BatchSent {
    /// Sent before on an earlier stream.
    pub resend: bool,
}

impl InternalEvent for BatchSent {
    fn emit(self, counters: &Counters) {
        let name = if self.resend {
            "batches_resent"
        } else {
            "batches_sent"
        };
        counters.add(name, 1);
    }
}

/// A storer acknowledged a batch after its commit.
#[derive(Debug, Clone, Copy)]
pub struct BatchAcked {
    /// Records in it.
    pub records: u64,
    /// From its first send to the acknowledgement (None: acknowledged by a Welcome before
    /// being sent on this run).
    pub latency: Option<Duration>,
}

impl InternalEvent for BatchAcked {
    fn emit(self, counters: &Counters) {
        counters.add("records_acked", self.records);
        counters.add("batches_acked", 1);
        if let Some(latency) = self.latency {
            counters.observe("batch_ack_seconds", latency);
        }
    }
}

/// The storer said an acknowledged batch had been committed before (a resend).
#[derive(Debug, Clone, Copy)]
pub struct BatchDuplicate;

impl InternalEvent for BatchDuplicate {
    fn emit(self, counters: &Counters) {
        counters.add("batches_duplicate", 1);
    }
}

/// Records went to the on-disk spool.
#[derive(Debug, Clone, Copy)]
pub struct RecordsSpooled {
    /// How many.
    pub records: u64,
}

impl InternalEvent for RecordsSpooled {
    fn emit(self, counters: &Counters) {
        counters.add("records_spooled", self.records);
    }
}

/// The spool could not take a batch: its records are dropped (`spool_full`, `spool_error`).
pub struct RecordsDroppedBySpool<'a> {
    /// `spool_full` or `spool_error`.
    pub reason: &'static str,
    /// Records lost.
    pub records: u64,
    /// The spool error.
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for RecordsDroppedBySpool<'_> {
    fn emit(self, counters: &Counters) {
        let total = counters.count_drops(self.reason, self.records);
        // Log the first drop and every time the total passes a power of two.
        let before = total.saturating_sub(self.records);
        if (before + 1).next_power_of_two() <= total {
            tracing::error!(error = %self.error, records = self.records, total, "records dropped: the spool cannot take them");
        }
    }
}

/// Shutdown with unacknowledged records that no spool could keep (none configured, or a full disk).
#[derive(Debug, Clone, Copy)]
pub struct RecordsLostAtShutdown {
    /// Records lost.
    pub records: u64,
}

impl InternalEvent for RecordsLostAtShutdown {
    fn emit(self, counters: &Counters) {
        counters.add("records_lost_at_shutdown", self.records);
        tracing::error!(
            records = self.records,
            "shutdown: records lost (storers did not acknowledge them in time and the spool could not keep them: none configured, or its disk is full)"
        );
    }
}

/// The spool skipped frames whose checksum failed (at recovery or when reading back).
#[derive(Debug, Clone, Copy)]
pub struct SpoolCorruptFrames {
    /// Frames skipped.
    pub frames: u64,
}

impl InternalEvent for SpoolCorruptFrames {
    fn emit(self, counters: &Counters) {
        if self.frames > 0 {
            tracing::warn!(frames = self.frames, "corrupt spool frames skipped");
        }
        counters.add("spool_corrupt_frames", self.frames);
    }
}

/// A Deliver stream to a storer was opened.
#[derive(Debug, Clone, Copy)]
pub struct StreamConnected<'a> {
    /// The lane.
    pub lane: u64,
    /// The storer's id.
    pub storer: &'a str,
    /// How it was reached.
    pub via: &'a str,
    /// The storer's last committed sequence of this stream.
    pub last_committed: u64,
}

impl InternalEvent for StreamConnected<'_> {
    fn emit(self, counters: &Counters) {
        tracing::info!(lane = self.lane, storer = %self.storer, via = self.via, last_committed = self.last_committed, "connected to storer");
        counters.add("stream_connects", 1);
    }
}

/// A lane moved to another storer because the placement wanted it there (a storer joined,
/// left or came back, or the lanes were uneven).
pub struct LaneMoves<'a> {
    /// The lane.
    pub lane: u64,
    /// The storer it leaves.
    pub from: &'a str,
    /// The storer it goes to.
    pub to: &'a str,
}

impl InternalEvent for LaneMoves<'_> {
    fn emit(self, counters: &Counters) {
        tracing::info!(
            lane = self.lane,
            from = self.from,
            to = self.to,
            "lane moved to another storer"
        );
        counters.add("lane_moves", 1);
    }
}

/// A Deliver stream could not be opened (storer down, TLS handshake refused, no Welcome).
/// Logged on the 1st and every 2^n-th failure.
pub struct StreamConnectFailed<'a> {
    /// The lane.
    pub lane: u64,
    /// The storer it tried.
    pub storer: &'a str,
    /// Why (with its source chain).
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for StreamConnectFailed<'_> {
    fn emit(self, counters: &Counters) {
        let total = counters.add_labeled("stream_connect_failed", "", 1);
        if worth_logging(total) {
            tracing::warn!(lane = self.lane, storer = self.storer, error = %self.error, total, "cannot open a stream to the storer");
        }
    }
}

/// A Deliver stream was lost; unacknowledged batches will be resent.
#[derive(Clone, Copy)]
pub struct StreamLost<'a> {
    /// The lane.
    pub lane: u64,
    /// Why.
    pub error: &'a dyn std::fmt::Display,
    /// Batches waiting for their acknowledgement.
    pub pending: usize,
}

impl InternalEvent for StreamLost<'_> {
    fn emit(self, counters: &Counters) {
        tracing::warn!(lane = self.lane, error = %self.error, pending = self.pending, "storer stream lost; will resend unacknowledged batches");
        counters.add("stream_errors", 1);
    }
}

/// The Lua hook's script was (re)loaded (start-up, SIGHUP or a file change).
pub struct ScriptLoaded<'a> {
    /// The script file.
    pub file: &'a std::path::Path,
    /// How many loads so far.
    pub generation: u64,
}

impl InternalEvent for ScriptLoaded<'_> {
    fn emit(self, counters: &Counters) {
        counters.add("script_reloads", 1);
        tracing::info!(file = %self.file.display(), generation = self.generation, "lua script loaded");
    }
}

/// The Lua hook's script could not be loaded; the previous version stays in use.
pub struct ScriptLoadFailed<'a> {
    /// The script file.
    pub file: &'a std::path::Path,
    /// Why (Lua's message, with file and line).
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for ScriptLoadFailed<'_> {
    fn emit(self, counters: &Counters) {
        counters.add("script_errors", 1);
        tracing::error!(error = %self.error, file = %self.file.display(), "lua script not loaded; keeping the previous version");
    }
}

/// A hook call failed (runtime error or time-out); the packet takes the default path. Logged on
/// the first and every 2^n-th error.
pub struct ScriptFailed<'a> {
    /// The script file.
    pub file: &'a std::path::Path,
    /// The first line of Lua's message (`file:line: ...`).
    pub error: &'a str,
}

impl InternalEvent for ScriptFailed<'_> {
    fn emit(self, counters: &Counters) {
        let total = counters.add("script_errors", 1);
        if worth_logging(total) {
            tracing::error!(file = %self.file.display(), error = %self.error, total, "lua script error; packet takes the default path");
        }
    }
}

/// Every Lua state was busy (slow calls): the packet took the default path without the hook.
pub struct ScriptSkippedBusy;

impl InternalEvent for ScriptSkippedBusy {
    fn emit(self, counters: &Counters) {
        let total = counters.add("script_skipped_busy", 1);
        if worth_logging(total) {
            tracing::warn!(
                total,
                "every lua state is busy; packet stored without the hook"
            );
        }
    }
}

/// A hook call's verdict was not back in time (a C function the time limit cannot interrupt):
/// the packet took the default path; the call finishes in the background.
pub struct ScriptOverran<'a> {
    /// The script file.
    pub file: &'a std::path::Path,
    /// How long the packet waited.
    pub waited: std::time::Duration,
}

impl InternalEvent for ScriptOverran<'_> {
    fn emit(self, counters: &Counters) {
        let total = counters.add("script_overruns", 1);
        if worth_logging(total) {
            tracing::warn!(file = %self.file.display(), waited_ms = self.waited.as_millis(), total, "lua call overran its time limit (inside a C function?); packet takes the default path");
        }
    }
}

/// A report row asked for by the script (`report_capture`) was queued.
pub struct ScriptReportQueued;

impl InternalEvent for ScriptReportQueued {
    fn emit(self, counters: &Counters) {
        counters.add("script_reports", 1);
    }
}

/// A connection to a HEP forward destination was opened.
pub struct ForwardConnected;

impl InternalEvent for ForwardConnected {
    fn emit(self, counters: &Counters) {
        counters.add("forward_connects", 1);
    }
}

/// A HEP forward destination could not be reached (retried with backoff). Logged on the first
/// and every 2^n-th failure.
pub struct ForwardConnectFailed<'a> {
    /// The destination (`host:port;transport`).
    pub dest: &'a str,
    /// Why.
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for ForwardConnectFailed<'_> {
    fn emit(self, counters: &Counters) {
        let total = counters.add("forward_connect_failed", 1);
        if worth_logging(total) {
            tracing::warn!(dest = %self.dest, error = %self.error, total, "forward destination unreachable");
        }
    }
}

/// A packet was sent to a HEP forward destination.
pub struct Forwarded;

impl InternalEvent for Forwarded {
    fn emit(self, counters: &Counters) {
        counters.add("forwarded", 1);
    }
}

/// Sending to a HEP forward destination failed; the connection is reopened. Logged on the
/// first and every 2^n-th failure.
pub struct ForwardSendFailed<'a> {
    /// The destination.
    pub dest: &'a str,
    /// Why.
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for ForwardSendFailed<'_> {
    fn emit(self, counters: &Counters) {
        let total = counters.add("forward_errors", 1);
        if worth_logging(total) {
            tracing::warn!(dest = %self.dest, error = %self.error, total, "forward send failed; reconnecting");
        }
    }
}
