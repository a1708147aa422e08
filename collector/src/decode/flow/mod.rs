//! The stateful part of raw-capture decoding: what needs memory across frames. Pure decoders
//! (the parent [`crate::decode`]) are imported from here, never the other way round.
//!
//! * [`dissect`]: the frame walk of one reading thread ([`Dissector`]): link → IP → tunnels →
//!   transport, owning the state below;
//! * [`defrag`]: IPv4/IPv6 fragment reassembly;
//! * [`stream`]: TCP reassembly per flow direction, and the framing of what a stream carries
//!   (SIP, HEP3, WebSocket after an HTTP Upgrade);
//! * [`sip_frame`]: SIP message framing on a byte stream (Content-Length);
//! * [`sctp`]: SCTP user-message reassembly;
//! * [`seen`]: the last-seen order of flows (eviction and expiry without a scan);
//! * [`message`]: what they report ([`Dissected`]), shared by [`dissect`] and [`stream`].
//!
//! Synchronous and single-threaded; every piece of state is bounded and expires.

pub mod defrag;
pub mod dissect;
pub mod message;
pub mod sctp;
pub mod seen;
pub mod sip_frame;
pub mod stream;

pub use dissect::{DissectLimits, Dissector};
pub use message::{Dissected, PayloadKind, RawMessage, Transport};
