//! The `sipcapture.v1` wire contract, generated from `proto/` at build time — nothing else.
//!
//! - `record.proto`: [`v1::CaptureRecord`], what a collector produces for every captured packet.
//! - `storer.proto`: [`v1::storer_service_server`], the collector → storer batch/ack stream.
//! - `status.proto`: [`v1::status_service_server`], on/off/check served by every member.
//! - `control.proto`: [`v1::control_service_server`], fan-out of the status to every member.
//!
//! Next to the generated types: thin conversions ([`ip_to_bytes`], [`ip_from_bytes`], the
//! capture state and action helpers) and the descriptor set served by reflection. The service
//! plumbing every member shares (server, TLS, auth, telemetry, metrics, config loading) is the
//! `sipcapture-runtime` crate.

/// Generated types and services of package `sipcapture.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("sipcapture.v1");
}

mod helpers;

pub use helpers::{ip_from_bytes, ip_to_bytes};

/// Encoded `FileDescriptorSet` of every `sipcapture.v1` file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sipcapture_descriptor.bin"));
