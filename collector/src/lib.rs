//! The collector: receives HEP and mirrored SIP, decodes it, extracts the SIP columns and streams
//! `CaptureRecord`s to storers.
//!
//! Data flow: [`source`] (bytes in: HEP over UDP, TCP and TLS; mirror-port frames via pnet)
//! → [`decode`] (pure decoders: HEP v1/v2/v3; Ethernet/VLAN/SLL, IPv4/IPv6, UDP) → [`sip`] (SIP
//! start line and headers into the `sip_capture` column values) → [`record`] (the only place a
//! record is built) → [`export`] (lanes of numbered batches to storers, kept until acknowledged,
//! spooled to disk beyond the in-memory window). [`pipeline`] wires it; [`config`] is the one
//! typed config; [`events`] are the typed internal events (log + metric); [`run`] serves the
//! status service and the Prometheus endpoint next to it.

pub mod config;
pub mod decode;
pub mod events;
pub mod export;
pub mod pipeline;
pub mod record;
pub mod sip;
pub mod source;

use std::sync::Arc;

use sipcapture_proto::counters::Counters;
use sipcapture_proto::status::{CaptureSwitch, StatusServer};
use sipcapture_proto::v1::status_service_server::StatusServiceServer;
use sipcapture_proto::v1::{MemberKind, WatchRequest};
use tokio_util::sync::CancellationToken;

use crate::config::CollectorConfig;
use crate::pipeline::Pipeline;

/// gRPC service names the collector serves (for health).
pub const SERVICE_NAMES: &[&str] = &["sipcapture.v1.StatusService"];

/// Start-up and serving failures.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// Bad config.
    #[error(transparent)]
    Config(#[from] sipcapture_proto::config::ConfigError),
    /// A HEP listener or the spool could not start.
    #[error(transparent)]
    Pipeline(#[from] pipeline::PipelineError),
    /// gRPC failure.
    #[error(transparent)]
    Serve(#[from] sipcapture_proto::server::ServeError),
    /// The `/metrics` endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] sipcapture_proto::metrics::MetricsError),
}

/// Runs a collector until `shutdown` is cancelled, then shuts down in order.
pub async fn run(
    config: CollectorConfig,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    config.validate()?;
    let switch = Arc::new(CaptureSwitch::new(config.capture_on));
    let counters = Arc::new(Counters::new("collector"));
    let listener = sipcapture_proto::server::bind(config.grpc_listen).await?;
    let registration = WatchRequest {
        member_id: config.collector_id.clone(),
        kind: MemberKind::Collector as i32,
        status_url: config.advertise_url.clone().unwrap_or_default(),
        status_port: u32::from(config.grpc_listen.port()),
    };
    // Converge to the fleet's status before the inputs open.
    sipcapture_proto::watch::start(
        config.control.clone(),
        registration,
        switch.clone(),
        shutdown.clone(),
        std::time::Duration::from_secs(3),
    )
    .await;
    sipcapture_proto::metrics::serve_if(config.metrics_listen, vec![counters.clone()], &shutdown)
        .await?;
    let pipeline = Pipeline::start(&config, switch.clone(), counters.clone())?;
    let status = StatusServer::new(
        config.collector_id.clone(),
        MemberKind::Collector,
        switch,
        vec![counters],
    )
    .with_token(config.auth_token.clone());
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(StatusServiceServer::new(status));
    tracing::info!(addr = %config.grpc_listen, "collector grpc listening");
    let served = sipcapture_proto::server::serve(
        listener,
        routes,
        SERVICE_NAMES,
        config.max_grpc_calls,
        shutdown,
    )
    .await;
    pipeline.shutdown().await;
    served?;
    Ok(())
}
