//! Pure, synchronous, zero-copy decoders: bytes in, borrowed views out. No tokio here.
//!
//! Raw capture: [`dissect`] walks a frame through [`ethernet`] (VLAN, SLL), [`tunnel`] (PPPoE,
//! GRE/ERSPAN, VXLAN), [`ip`] (+ [`defrag`]), [`udp`], [`tcp`] (+ [`stream`] reassembly with
//! [`sip_frame`] and [`websocket`] framing) and [`sctp`]. HEP: [`hep`].

pub mod defrag;
pub mod dissect;
pub mod error;
pub mod ethernet;
pub mod frame;
pub mod hep;
pub mod ip;
pub mod sctp;
pub mod sip_frame;
pub mod stream;
pub mod tcp;
pub mod tunnel;
pub mod udp;
pub mod websocket;
