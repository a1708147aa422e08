//! The collector: receives HEP and mirrored SIP, decodes it, extracts the SIP columns and streams
//! `CaptureRecord`s to storers.
//!
//! Data flow: [`source`] (bytes in, async I/O only: HEP over UDP, TCP and TLS; mirror-port
//! frames via pnet with a generated kernel BPF filter and fanout readers; IPIP via a raw socket;
//! pcap files) → [`ingest`] (the per-packet stage every source feeds, with its [`gate`]: rate
//! limit, HEP auth key, capture switch) → [`decode`] (pure, sync, borrowing decoders: HEP
//! v1/v2/v3, Ethernet/VLAN/SLL, IPv4/IPv6, tunnels, UDP/TCP/SCTP, WebSocket frames; and
//! [`decode::flow`], the stateful part: defragmentation, TCP and SCTP reassembly, SIP framing, the
//! frame walk) → [`sip`] (SIP start line and headers into the `sip_capture` column values) →
//! [`record`] (the only place a record is built) → [`export`] (lanes of numbered batches to
//! storers, kept until acknowledged, spooled to disk beyond the in-memory window).
//!
//! Beside the flow: [`hook`] (the embedded Lua hook, Kamailio's `nonsip_hook` /
//! `event_callback`, run by [`ingest`] on each HEP packet before it becomes a record) and
//! [`forward`] (the HEP relay to other collectors: forward rules and the script's
//! `sip_capture_forward`). [`pipeline`] is wiring only (queue capacities, spawns, shutdown
//! order); [`config`] is the one typed config, built from the lower modules' config types;
//! [`events`] are the typed internal events (log + metric). [`Collector`] is the facade
//! ([`Collector::build`], [`Collector::add_services`], [`Collector::start`]); [`run`] serves it
//! through the runtime's `service::Listener` (status service, health, reflection, `/metrics`); [`import_file`] runs it on a capture file.
//!
//! Imports point down only (no cycles): `lib` → [`pipeline`] → [`source`] → [`ingest`] →
//! [`gate`], [`hook`] → [`forward`] → [`decode`]; [`ingest`] → [`record`] → [`sip`] and
//! [`decode`]; [`ingest`] → [`export`] (its lane queues), which imports neither sources nor
//! decoders. [`config`] sits beside [`pipeline`]. Inside [`decode`], [`decode::flow`] imports the
//! pure decoders and nothing there imports it.

pub mod config;
pub mod decode;
pub mod events;
pub mod export;
pub mod forward;
pub mod gate;
pub mod hook;
pub mod ingest;
pub mod pipeline;
pub mod record;
pub mod sip;
pub mod source;

use std::sync::Arc;

use sipcapture_proto::v1::MemberKind;
use sipcapture_proto::v1::status_service_server::StatusServiceServer;
use sipcapture_runtime::counters::Counters;
use sipcapture_runtime::server::GrpcLimits;
use sipcapture_runtime::service::Listener;
use sipcapture_runtime::status::{CaptureSwitch, StatusServer};
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
    Config(#[from] sipcapture_runtime::config::ConfigError),
    /// A HEP listener or the spool could not start.
    #[error(transparent)]
    Pipeline(#[from] pipeline::PipelineError),
    /// gRPC failure.
    #[error(transparent)]
    Serve(#[from] sipcapture_runtime::server::ServeError),
    /// The gRPC side (listener, TLS, `/metrics`) could not start.
    #[error(transparent)]
    Start(#[from] sipcapture_runtime::service::StartError),
    /// A capture file could not be read (`--pcap`).
    #[error(transparent)]
    PcapFile(#[from] source::pcap_file::PcapFileError),
}

/// How long the import waits between checks that every record was acknowledged.
const ACK_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Imports a pcap/pcapng file (`sipcapture-collector --pcap FILE`, `sipcapture import`): runs
/// the pipeline with the file as the only input (HEP listeners and raw capture off), waits until
/// every queued record is acknowledged by a storer (or `stop` is cancelled), shuts down in
/// order and returns the summary. `progress` draws a progress bar when stderr is a terminal.
pub async fn import_file(
    config: &CollectorConfig,
    path: &std::path::Path,
    switch: Arc<CaptureSwitch>,
    counters: Arc<Counters>,
    progress: bool,
    stop: CancellationToken,
) -> Result<source::pcap_file::ImportSummary, CollectorError> {
    let mut config = config.clone();
    config.hep_udp = false;
    config.hep_tcp = false;
    config.hep_tls_listen = None;
    config.raw_moni_capture_on = false;
    config.raw_ipip_capture_on = false;
    config.validate()?;
    let pipeline = Pipeline::start(&config, switch, counters.clone())?;
    let imported = source::pcap_file::import(
        path.to_owned(),
        pipeline.ingest.clone(),
        decode::flow::DissectLimits::default(),
        progress,
        stop.clone(),
    )
    .await;
    if imported.is_ok() {
        // Records the exporter had to drop (spool full or broken) will never be acknowledged.
        let settled = |c: &Counters| {
            c.get("records_acked") + c.get("dropped.spool_full") + c.get("dropped.spool_error")
        };
        while settled(&counters) < counters.get("records_queued") && !stop.is_cancelled() {
            tokio::select! {
                () = tokio::time::sleep(ACK_POLL) => {}
                () = stop.cancelled() => {}
            }
        }
    }
    pipeline.shutdown().await;
    Ok(imported?)
}

/// A collector ready to start: config checked, its counters and capture switch.
#[derive(Debug)]
pub struct Collector {
    /// Counters of the inputs and the exporter.
    pub counters: Arc<Counters>,
    /// The capture switch (shared with the storer in the all-in-one process).
    pub switch: Arc<CaptureSwitch>,
    config: CollectorConfig,
}

impl Collector {
    /// Validates the config and creates the counters. Binds nothing.
    pub fn build(
        config: &CollectorConfig,
        switch: Arc<CaptureSwitch>,
    ) -> Result<Self, CollectorError> {
        config.validate()?;
        let counters = Arc::new(Counters::new(&crate::events::CATALOG));
        sipcapture_runtime::status::register_capture_gauge(&counters, switch.clone(), true);
        Ok(Collector {
            counters,
            switch,
            config: config.clone(),
        })
    }

    /// Adds the collector's gRPC services to a route set, with the message size limits: its
    /// status service, `status` when given, else one with the auth of the config
    /// (`auth_token`, `grpc_admin_identities`).
    pub fn add_services(
        &self,
        routes: &mut tonic::service::RoutesBuilder,
        status: Option<StatusServer>,
        limits: &GrpcLimits,
    ) {
        let status = status.unwrap_or_else(|| {
            StatusServer::new(
                self.config.collector_id.clone(),
                MemberKind::Collector,
                self.switch.clone(),
                vec![self.counters.clone()],
            )
            .with_auth(
                self.config
                    .service
                    .authorizer(sipcapture_runtime::auth::Role::Admin),
            )
        });
        routes.add_service(
            StatusServiceServer::new(status)
                .max_decoding_message_size(limits.max_decoding_message_size)
                .max_encoding_message_size(limits.max_encoding_message_size),
        );
    }

    /// Starts the inputs and the export ([`Pipeline::start`]).
    pub fn start(&self) -> Result<Pipeline, CollectorError> {
        Ok(Pipeline::start(
            &self.config,
            self.switch.clone(),
            self.counters.clone(),
        )?)
    }
}

/// Runs a collector until `shutdown` is cancelled, then shuts down in order.
pub async fn run(
    config: CollectorConfig,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    let service = &config.service;
    let switch = Arc::new(CaptureSwitch::new(service.capture_on));
    let collector = Collector::build(&config, switch.clone())?;
    let counters = collector.counters.clone();
    let listener = Listener::bind(
        service,
        SERVICE_NAMES,
        counters.clone(),
        vec![counters],
        &shutdown,
    )
    .await?;
    // Converge to the fleet's status before the inputs open.
    sipcapture_runtime::service::follow_control(
        service,
        config.control.clone(),
        config.advertise_url.clone(),
        &config.collector_id,
        MemberKind::Collector,
        switch,
        &shutdown,
    )
    .await;
    let pipeline = collector.start()?;
    let mut routes = tonic::service::RoutesBuilder::default();
    collector.add_services(&mut routes, None, &listener.limits());
    tracing::info!(addr = %listener.local_addr(), tls = listener.tls(), "collector grpc listening");
    let served = listener.serve(routes, shutdown).await;
    pipeline.shutdown().await;
    served?;
    Ok(())
}
