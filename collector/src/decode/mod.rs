//! Pure, synchronous, zero-copy decoders: bytes in, borrowed views out. No tokio here.

pub mod hep;
