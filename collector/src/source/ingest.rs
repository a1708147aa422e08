//! The shared per-packet path of every HEP input: decode → auth check → status gate → record →
//! bounded queue. Every packet is either queued or counted under a drop reason.

use std::sync::Arc;
use std::time::SystemTime;

use sipcapture_proto::counters::{Counters, worth_logging};
use sipcapture_proto::status::CaptureSwitch;
use sipcapture_proto::v1::InputKind;

use crate::decode::hep;
use crate::export::lanes::LaneQueues;
use crate::record::{Reception, RecordBuilder};

/// Decodes and queues packets.
#[derive(Debug)]
pub struct Ingest {
    /// Builds records.
    pub builder: RecordBuilder,
    /// The capture switch (per input).
    pub switch: Arc<CaptureSwitch>,
    /// Kamailio `hep_capture_on`.
    pub hep_capture_on: bool,
    /// Required HEP auth key (chunk 0x000e), when configured.
    pub auth_key: Option<Vec<u8>>,
    /// Counters.
    pub counters: Arc<Counters>,
    /// The exporter's lane queues.
    pub queue: LaneQueues,
}

/// What happened to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A record was queued.
    Queued,
    /// Decoded, but capture is off for the input: counted as discarded by status.
    Discarded,
    /// Dropped with a reason.
    Dropped(&'static str),
    /// The exporter is gone (shutdown).
    Closed,
}

impl Ingest {
    /// Counts a drop and logs the first and every power-of-two occurrence of its reason.
    pub fn drop_packet(
        &self,
        reason: &'static str,
        input: InputKind,
        detail: &dyn std::fmt::Display,
    ) -> Outcome {
        let total = self.counters.drop_one(reason, drop_counter(reason));
        if worth_logging(total) {
            tracing::warn!(reason, ?input, %detail, total, "dropped hep packet");
        }
        Outcome::Dropped(reason)
    }

    /// Handles one HEP packet (a UDP datagram or one TCP frame).
    pub async fn hep(
        &self,
        data: &[u8],
        input: InputKind,
        peer: Option<std::net::SocketAddr>,
    ) -> Outcome {
        self.counters.add("hep_received", 1);
        let packet = match hep::decode(data) {
            Ok(p) => p,
            Err(e) => return self.drop_packet(e.reason(), input, &e),
        };
        self.counters.add("hep_decoded", 1);
        if let Some(key) = &self.auth_key
            && packet.auth_key != Some(key.as_slice())
        {
            return self.drop_packet("auth_failed", input, &"auth key missing or wrong");
        }
        if !self.hep_capture_on || !self.switch.input_on(input) {
            self.counters.add("discarded.status", 1);
            return Outcome::Discarded;
        }
        let rx = Reception {
            input,
            peer,
            at: SystemTime::now(),
        };
        let record = match self.builder.from_hep(&packet, rx) {
            Ok(r) => r,
            Err(e) => return self.drop_packet(e.reason(), input, &e),
        };
        if record.flags.as_ref().is_some_and(|f| f.incomplete_hep) {
            self.counters.add("hep_incomplete", 1);
        }
        if self.queue.send(record).await.is_err() {
            return Outcome::Closed;
        }
        self.counters.add("records_queued", 1);
        Outcome::Queued
    }
}

/// The counter name of a drop reason (`dropped.<reason>`), interned for the known reasons.
pub fn drop_counter(reason: &'static str) -> &'static str {
    match reason {
        "truncated" => "dropped.truncated",
        "bad_magic" => "dropped.bad_magic",
        "auth_failed" => "dropped.auth_failed",
        "no_payload" => "dropped.no_payload",
        "too_large" => "dropped.too_large",
        "tcp_bad_frame" => "dropped.tcp_bad_frame",
        _ => leak_name(reason),
    }
}

/// Builds `dropped.<reason>` once per distinct reason (reasons are a small fixed set of
/// `&'static str` from the decoders, so this allocates a bounded number of times).
fn leak_name(reason: &'static str) -> &'static str {
    use std::sync::Mutex;
    static NAMES: Mutex<Vec<(&'static str, &'static str)>> = Mutex::new(Vec::new());
    let Ok(mut names) = NAMES.lock() else {
        return "dropped.other";
    };
    if let Some((_, name)) = names.iter().find(|(r, _)| *r == reason) {
        return name;
    }
    let name: &'static str = Box::leak(format!("dropped.{reason}").into_boxed_str());
    names.push((reason, name));
    name
}
