//! The `sipcapture.v1` wire contract, generated from `proto/` at build time.
//!
//! - `record.proto`: [`v1::CaptureRecord`], what a collector produces for every captured packet.
//! - `storer.proto`: [`v1::storer_service_server`], the collector → storer batch/ack stream.
//! - `status.proto`: [`v1::status_service_server`], on/off/check served by every member.
//! - `control.proto`: [`v1::control_service_server`], fan-out of the status to every member.
//!
//! Helpers that belong to the generated types live next to them in this crate, together with the
//! plumbing every service shares: [`server`] (health + reflection + shutdown), [`config`]
//! (file + env + `--set` + flags, validated), [`telemetry`] (logging, OpenTelemetry export, trace
//! context propagation), [`counters`] (every metric, [`events`] increment them) and [`metrics`]
//! (the Prometheus `/metrics` endpoint).

/// Generated types and services of package `sipcapture.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("sipcapture.v1");
}

pub mod auth;
pub mod config;
pub mod counters;
pub mod events;
mod helpers;
pub mod matching;
pub mod metrics;
pub mod server;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod watch;

pub use helpers::{ip_from_bytes, ip_to_bytes};

/// Encoded `FileDescriptorSet` of every `sipcapture.v1` file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sipcapture_descriptor.bin"));
