//! The collector's pure decoders, compiled from `collector/src/decode/` without the rest of the
//! collector (whose tonic/tokio/pnet tree would make every sanitizer build slow). The module
//! paths `decode::hep`, `decode::dissect`, ... match `sipcapture_collector::decode::*`.

#![forbid(unsafe_code)]

#[path = "../../src/decode/defrag.rs"]
#[doc(hidden)]
pub mod defrag;
#[path = "../../src/decode/dissect.rs"]
#[doc(hidden)]
pub mod dissect;
#[path = "../../src/decode/error.rs"]
#[doc(hidden)]
pub mod error;
#[path = "../../src/decode/ethernet.rs"]
#[doc(hidden)]
pub mod ethernet;
#[path = "../../src/decode/frame.rs"]
#[doc(hidden)]
pub mod frame;
#[path = "../../src/decode/hep/mod.rs"]
#[doc(hidden)]
pub mod hep;
#[path = "../../src/decode/ip.rs"]
#[doc(hidden)]
pub mod ip;
#[path = "../../src/decode/sctp.rs"]
#[doc(hidden)]
pub mod sctp;
#[path = "../../src/decode/sip_frame.rs"]
#[doc(hidden)]
pub mod sip_frame;
#[path = "../../src/decode/stream.rs"]
#[doc(hidden)]
pub mod stream;
#[path = "../../src/decode/tcp.rs"]
#[doc(hidden)]
pub mod tcp;
#[path = "../../src/decode/tunnel.rs"]
#[doc(hidden)]
pub mod tunnel;
#[path = "../../src/decode/udp.rs"]
#[doc(hidden)]
pub mod udp;
#[path = "../../src/decode/websocket.rs"]
#[doc(hidden)]
pub mod websocket;

/// Same module paths as the collector crate (`decode::hep`, `decode::dissect`, ...). The
/// modules sit at the crate root so that their `super::` paths resolve to each other.
pub mod decode {
    pub use super::{defrag, dissect, error, ethernet, frame, hep, ip, sctp, sip_frame, stream, tcp, tunnel, udp, websocket};
}


use decode::hep::HepPayload;

/// True when `inner` lies entirely inside `outer` (the "never reads past input" invariant for
/// zero-copy views). Compares addresses only; no `unsafe`.
pub fn within(outer: &[u8], inner: &[u8]) -> bool {
    let outer_range = outer.as_ptr_range();
    let inner_range = inner.as_ptr_range();
    inner.is_empty()
        || (outer_range.start as usize <= inner_range.start as usize
            && inner_range.end as usize <= outer_range.end as usize)
}

/// The bytes of a payload, compressed or not.
pub fn payload_bytes<'a>(payload: &HepPayload<'a>) -> &'a [u8] {
    payload.wire_bytes()
}
