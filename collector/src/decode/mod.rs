//! Pure, synchronous, zero-copy decoders: bytes in, borrowed views out. No tokio here.

pub mod error;
pub mod ethernet;
pub mod frame;
pub mod hep;
pub mod ip;
pub mod udp;
