//! The service plumbing every sipcapture service (collector, storer, control and the all-in-one
//! `sipcapture up`) shares; the wire contract itself is `sipcapture-proto`.
//!
//! In the order a service uses them at start-up:
//! - [`config`]: loading a typed config (defaults < file < `SIPCAPTURE_*` env < `--set` < flags),
//!   validated, errors naming the key.
//! - [`telemetry`]: logging, OpenTelemetry export, trace context propagation.
//! - [`counters`]: the metrics registry of one service (lock-free atomics registered once from
//!   the service's own catalog); [`events`] increment it; [`metrics`] serves `/metrics` (through
//!   [`http`], the bounded HTTP endpoint the storer's web page uses too), with
//!   the [`process`] metrics and [`build_info`] (version and git commit of the build).
//! - [`tls`] and [`auth`]: certificates (reloaded on change) and who may change the status.
//! - [`server`]: the gRPC server builder (health, reflection, limits, TLS, graceful shutdown);
//!   [`connection`] holds each connection's deadlines and [`per_ip`] the cap per source
//!   address (the collector's HEP TCP/TLS listeners use it too).
//!   [`health`]: a service's readiness, which its `grpc.health.v1` status follows.
//! - [`service`]: the keys every service shares ([`service::ServiceConfig`], validated once)
//!   and the start-up sequence around them (a binary's [`service::main`], the gRPC
//!   [`service::Listener`]).
//! - [`status`]: the capture switch and the `StatusService` every member serves.
//! - [`watch`]: the client side of `ControlService/Watch` (members follow control's status).
//! - [`matching`]: record conditions shared by the storer's routing rules and the collector's
//!   forward rules.

pub mod auth;
pub mod build_info;
pub mod config;
pub mod connection;
pub mod counters;
pub mod events;
pub mod health;
pub mod http;
pub mod matching;
pub mod metrics;
pub mod per_ip;
pub mod process;
pub mod server;
pub mod service;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod watch;
