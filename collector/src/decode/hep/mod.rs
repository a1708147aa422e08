//! HEP (Homer Encapsulation Protocol) v1, v2 and v3: decoder, encoder and TCP framing.
//!
//! Wire formats follow the Kamailio `sipcapture` behaviour (`hep.h`, `hep.c`; our
//! reference document sections 1.2, 1.3 and 7) and the HEP3 specification (rev 37):
//!
//! * [`HepPacket`] and [`HepPayload`] (`packet.rs`), [`HepError`] (`error.rs`), and
//!   [`decode`] (`dispatch.rs`), which dispatches on the version;
//! * [`v1v2`]: the fixed C-struct layout of HEP v1/v2 (`hep_hdr` + addresses + optional
//!   12-byte time header), payload to the end of the datagram;
//! * [`v3`]: the `"HEP3"`/`"EEP1"` control header and the chunk walk;
//! * [`chunk`]: the 6-byte chunk header and a non-allocating chunk iterator;
//! * [`framing`]: HEP3 framing on a TCP byte stream ([`tcp_frame_len`]);
//! * [`encode`]: the inverse of the decoders, for tests, load generation and forwarding;
//! * [`record`]: a `CaptureRecord` encoded as HEP3 (forwarding raw-captured records). The only
//!   part that reads the wire contract (`sipcapture_proto`), which is why the fuzz crate, which
//!   compiles this folder without it, lists the other modules itself.
//!
//! Decoding is pure, synchronous and zero-copy: a [`HepPacket`] borrows from the input buffer
//! and nothing is allocated. The decoder only *reports* what is on the wire; acceptance rules
//! (Kamailio's `totelem >= 9`, both IPs present, ...) are decided by the caller.
#![deny(clippy::indexing_slicing)]

pub mod chunk;
mod dispatch;
pub mod encode;
mod error;
pub mod framing;
mod packet;
pub mod record;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests;
pub mod v1v2;
pub mod v3;

pub use chunk::{HepChunk, HepChunks};
pub use dispatch::decode;
pub use encode::{encode_v1v2, encode_v3, try_encode_v3};
pub use error::HepError;
pub use framing::tcp_frame_len;
use packet::be_u16;
pub use packet::{EEP1_MAGIC, HEP3_MAGIC, HepPacket, HepPayload};
pub use record::encode_record;
