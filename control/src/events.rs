//! Control's typed internal events: each one logs and counts together (see
//! `sipcapture_runtime::events`). Metric names and meanings are in `docs/METRICS.md`.

use sipcapture_runtime::counters::Counters;

pub use sipcapture_runtime::events::{InternalEvent, StatusChanged};

/// A status push to members left some of them unreachable (their state is reported as such).
#[derive(Debug, Clone, Copy)]
pub struct FanoutFailed {
    /// Members that did not answer or refused.
    pub members: u64,
}

impl InternalEvent for FanoutFailed {
    fn emit(self, counters: &Counters) {
        if self.members > 0 {
            tracing::warn!(members = self.members, "status not applied by every member");
            counters.add("fanout_failed", self.members);
        }
    }
}
