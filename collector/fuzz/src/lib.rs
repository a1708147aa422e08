//! The collector's HEP codec, compiled from `collector/src/decode/hep/` without the rest of the
//! collector (whose tonic/tokio/pnet tree would make every sanitizer build slow). The module
//! path `decode::hep` matches `sipcapture_collector::decode::hep`.

#![forbid(unsafe_code)]

#[path = "../../src/decode/hep/mod.rs"]
#[doc(hidden)]
pub mod hep;

/// Same module path as the collector crate: `decode::hep`.
pub mod decode {
    pub use super::hep;
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
