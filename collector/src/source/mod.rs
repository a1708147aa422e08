//! Inputs: bytes in, async I/O. Each source hands raw packets to [`crate::ingest::Ingest`], the
//! per-packet stage, which decodes them, builds records and queues them for export.
//!
//! * [`hep_listener`] (+ [`tls`]): HEP over UDP, TCP and TLS.
//! * [`mirror`]: mirror-port frames from packet sockets, filtered in the kernel by [`bpf`].
//! * [`ipip`]: IP-in-IP packets from a raw socket.
//! * [`pcap_file`]: pcap/pcapng files.
//! * [`raw`]: the per-thread dissecting worker both live raw sources share.

pub mod bpf;
pub mod hep_listener;
pub mod ipip;
pub mod mirror;
pub mod pcap_file;
pub mod raw;
pub mod tls;
