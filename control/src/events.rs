//! Control's typed internal events: each one logs and counts together (see
//! `sipcapture_runtime::events`). [`CATALOG`] lists every metric they move; `docs/METRICS.md`
//! documents each one (a test checks it).

use sipcapture_runtime::counters::{Catalog, Counters, counter, gauge};

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

/// A Watch registration was refused.
#[derive(Debug, Clone, Copy)]
pub struct RegistrationRefused {
    /// `unauthorised` (no member credential) or `full` (`max_registered_members` reached).
    pub reason: &'static str,
}

impl InternalEvent for RegistrationRefused {
    fn emit(self, counters: &Counters) {
        let total = counters.add_labeled("registrations_refused", self.reason, 1);
        if sipcapture_runtime::counters::worth_logging(total) {
            tracing::warn!(reason = self.reason, total, "member registration refused");
        }
    }
}

/// Every metric control exports (plus the runtime's `COMMON` ones, whose `status_changed` this
/// catalog redefines).
pub const CATALOG: Catalog = Catalog {
    service: "control",
    metrics: &[
        counter(
            "status_changed",
            Some("state"),
            "desired status changes accepted by control",
        )
        .values(&["on", "off"]),
        counter(
            "fanout_failed",
            None,
            "status pushes to a member that failed or timed out",
        ),
        gauge(
            "capture_on",
            Some("input"),
            "the fleet's desired status per input: 1 on, 0 off (per-member overrides not shown)",
        ),
        counter(
            "registrations_refused",
            Some("reason"),
            "Watch registrations refused: no member credential, or max_registered_members reached",
        )
        .values(&["unauthorised", "full"]),
        gauge(
            "members",
            None,
            "members known to control (configured, registered, DNS)",
        ),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_list_every_metric() {
        let docs = include_str!("../../docs/METRICS.md");
        assert_eq!(CATALOG.undocumented(docs), Vec::<String>::new());
    }
}
