//! Inputs: bytes in, async I/O. Each source hands raw packets to [`ingest::Ingest`], which
//! decodes them, builds records and queues them for export.

pub mod hep_listener;
pub mod ingest;
pub mod mirror;
pub mod pcap_file;
pub mod rate_limit;
pub mod tls;
