//! The gate of the per-packet stage ([`crate::ingest`]): what may pass, asked at the three
//! points of the path where each rule applies —
//!
//! 1. before decoding, the sender against the per-source rate limit ([`rate_limit`]), so a
//!    flooding source costs as little as possible (`dropped.rate_limited`);
//! 2. after decoding, the HEP auth key (chunk 0x000e) against `hep_auth_key`
//!    (`dropped.auth_failed`);
//! 3. before a record is built (after the Lua hook, which runs while capture is off), the
//!    capture switch of the input and, for HEP, Kamailio's `hep_capture_on`
//!    (`discarded.status`, not a drop).
//!
//! Plain inline checks: no allocation, no lock but the rate limiter's shard.

pub mod rate_limit;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use sipcapture_proto::v1::InputKind;
use sipcapture_runtime::status::CaptureSwitch;

use self::rate_limit::{RateLimiter, Verdict as RateVerdict};

/// The rules: the capture switch, `hep_capture_on`, the HEP auth key and the rate limit.
#[derive(Debug)]
pub struct Gate {
    /// The capture switch (per input).
    pub switch: Arc<CaptureSwitch>,
    /// Kamailio `hep_capture_on`.
    pub hep_capture_on: bool,
    /// Required HEP auth key (chunk 0x000e), when configured.
    pub auth_key: Option<Vec<u8>>,
    /// Per-source rate limit of HEP packets (`hep_rate_limit`), when configured.
    pub rate_limit: Option<RateLimiter>,
}

/// One question to the gate, at its point of the path (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check<'a> {
    /// Before decoding: the sender of a HEP packet, against the rate limit.
    Sender(SocketAddr),
    /// After decoding: the auth key the HEP packet carries, if any.
    AuthKey(Option<&'a [u8]>),
    /// Before a record is built: capture on for `input`; `hep` also asks `hep_capture_on`.
    Capture {
        /// The input the packet came from.
        input: InputKind,
        /// A HEP packet (raw-captured messages and script reports only obey the switch).
        hep: bool,
    },
}

/// The gate's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let it through.
    Pass,
    /// Drop it, counted under this reason (`rate_limited`, `auth_failed`).
    Drop(&'static str),
    /// Capture is off: discard it (`discarded.status`).
    Discard,
}

impl Gate {
    /// Decides one [`Check`].
    #[inline]
    pub fn check(&self, check: Check<'_>) -> Decision {
        match check {
            Check::Sender(peer) => match &self.rate_limit {
                Some(limiter)
                    if limiter.check(peer.ip(), Instant::now()) == RateVerdict::Limited =>
                {
                    Decision::Drop("rate_limited")
                }
                _ => Decision::Pass,
            },
            Check::AuthKey(key) => match &self.auth_key {
                Some(wanted)
                    if !key
                        .is_some_and(|k| sipcapture_runtime::auth::constant_time_eq(k, wanted)) =>
                {
                    Decision::Drop("auth_failed")
                }
                _ => Decision::Pass,
            },
            Check::Capture { input, hep } => {
                if (hep && !self.hep_capture_on) || !self.switch.input_on(input) {
                    Decision::Discard
                } else {
                    Decision::Pass
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate {
            switch: Arc::new(CaptureSwitch::new(true)),
            hep_capture_on: true,
            auth_key: None,
            rate_limit: None,
        }
    }

    #[test]
    fn each_check_answers_for_its_own_rule() {
        let peer: SocketAddr = "10.0.0.1:9060".parse().unwrap();
        let (udp, mirror) = (InputKind::HepUdp, InputKind::Mirror);
        let open = gate();
        assert_eq!(open.check(Check::Sender(peer)), Decision::Pass);
        assert_eq!(open.check(Check::AuthKey(None)), Decision::Pass);
        let hep_udp = Check::Capture {
            input: udp,
            hep: true,
        };
        assert_eq!(open.check(hep_udp), Decision::Pass);

        let mut g = gate();
        g.auth_key = Some(b"secret".to_vec());
        g.rate_limit = RateLimiter::new(1.0, 1, 16, Instant::now());
        assert_eq!(g.check(Check::AuthKey(Some(b"secret"))), Decision::Pass);
        assert_eq!(
            g.check(Check::AuthKey(Some(b"other"))),
            Decision::Drop("auth_failed")
        );
        assert_eq!(g.check(Check::AuthKey(None)), Decision::Drop("auth_failed"));
        assert_eq!(g.check(Check::Sender(peer)), Decision::Pass);
        assert_eq!(g.check(Check::Sender(peer)), Decision::Drop("rate_limited"));

        // `hep_capture_on = 0` stops HEP only; the switch stops its input only.
        g.hep_capture_on = false;
        assert_eq!(g.check(hep_udp), Decision::Discard);
        let raw = |input| Check::Capture { input, hep: false };
        assert_eq!(g.check(raw(mirror)), Decision::Pass);
        g.switch.set(false, &[InputKind::Mirror]);
        assert_eq!(g.check(raw(mirror)), Decision::Discard);
        assert_eq!(g.check(raw(udp)), Decision::Pass);
    }
}
