//! The collector's decoders, compiled from `collector/src/decode/` without the rest of the
//! collector (whose tonic/tokio/pnet tree would make every sanitizer build slow). The module
//! paths `decode::hep`, `decode::flow::dissect`, ... match `sipcapture_collector::decode::*`.

#![forbid(unsafe_code)]

/// The collector's `decode` module: the same files and module paths (`decode::hep`,
/// `decode::flow::dissect`, ...), so their `super::` and `crate::decode::` paths resolve as in
/// the collector.
#[doc(hidden)]
#[path = "../../src/decode"]
pub mod decode {
    pub mod error;
    pub mod ethernet;
    pub mod flow;
    pub mod frame;
    /// `hep/mod.rs` without `record` (the record-to-HEP3 encoder reads `sipcapture_proto`,
    /// which this crate does not build): the same modules and re-exports otherwise.
    pub mod hep {
        pub mod chunk;
        mod dispatch;
        pub mod encode;
        mod error;
        pub mod framing;
        mod packet;
        pub mod v1v2;
        pub mod v3;

        pub use chunk::{HepChunk, HepChunks};
        pub use dispatch::decode;
        pub use encode::{encode_v1v2, encode_v3, try_encode_v3};
        pub use error::HepError;
        pub use framing::tcp_frame_len;
        use packet::be_u16;
        pub use packet::{EEP1_MAGIC, HEP3_MAGIC, HepPacket, HepPayload};
    }
    pub mod ip;
    pub mod sctp;
    pub mod tcp;
    pub mod tunnel;
    pub mod udp;
    pub mod websocket;
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
