//! Typed internal events: one type per occurrence, whose `emit` logs and counts together, so a
//! log line and its metric can never disagree (vector's `internal_events`). Each crate defines
//! its own in `events.rs`; the ones every member shares live here. Labels are low-cardinality
//! `&'static str` values only: never a Call-ID, an address or a table name.

use crate::counters::Counters;

/// An occurrence worth a log line and a metric.
pub trait InternalEvent {
    /// Logs (when the event is worth it) and counts.
    fn emit(self, counters: &Counters);
}

/// The capture status of a member (or control's desired status) changed.
#[derive(Debug, Clone, Copy)]
pub struct StatusChanged<'a> {
    /// Who changed (member id, or "control").
    pub member: &'a str,
    /// The new state.
    pub on: bool,
    /// The input kinds switched (empty: all).
    pub inputs: &'a [sipcapture_proto::v1::InputKind],
}

impl InternalEvent for StatusChanged<'_> {
    fn emit(self, counters: &Counters) {
        let state = if self.on { "on" } else { "off" };
        tracing::info!(member = %self.member, on = self.on, inputs = ?self.inputs, "capture status changed");
        counters.add_labeled("status_changed", state, 1);
    }
}
