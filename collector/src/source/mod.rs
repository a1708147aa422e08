//! Inputs: bytes in, async I/O. Each source hands raw packets to [`ingest::Ingest`], which
//! decodes them, builds records and queues them for export.

pub mod bpf;
pub mod hep_listener;
pub mod ingest;
pub mod ipip;
pub mod mirror;
pub mod raw;
pub mod tls;
