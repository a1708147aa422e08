//! `sipcapture import FILE`: a pcap/pcapng file into the database in one process, like
//! `sipcapture up` but with the file as the only input. The in-process storer listens on a free
//! loopback port (a running `up` is not disturbed); the collector's import waits until every
//! record is acknowledged, i.e. committed, then everything stops.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use sipcapture_collector::source::pcap_file::ImportSummary;
use sipcapture_runtime::counters::Counters;
use sipcapture_runtime::status::CaptureSwitch;
use sipcapture_storer::Storer;
use tokio_util::sync::CancellationToken;

use crate::up::{UpConfig, UpError, loopback_url};

/// gRPC service names the import's private listener serves.
const SERVICE_NAMES: &[&str] = &["sipcapture.v1.StorerService"];

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Start-up of the storer or the pipeline.
    #[error(transparent)]
    Up(#[from] UpError),
    /// The file, or the collector side of the import.
    #[error(transparent)]
    Collector(#[from] sipcapture_collector::CollectorError),
}

/// Imports `path` with the all-in-one `config` (its `grpc_listen` is replaced by a free
/// loopback port). `progress` draws a progress bar when stderr is a terminal.
pub async fn run(
    mut config: UpConfig,
    path: &Path,
    progress: bool,
    stop: CancellationToken,
) -> Result<ImportSummary, ImportError> {
    config.grpc_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.validate().map_err(UpError::from)?;
    let listener = sipcapture_runtime::server::bind(config.grpc_listen)
        .await
        .map_err(UpError::from)?;
    let grpc_addr = listener.local_addr().map_err(|error| {
        UpError::from(sipcapture_runtime::server::ServeError::Bind {
            addr: config.grpc_listen,
            error,
        })
    })?;
    config.collector.storer = vec![loopback_url(grpc_addr)];
    config.collector.storer_dns.clear();
    // No disk spool: reading the file waits for the storer (backpressure) instead, so nothing
    // is lost and no `sipcapture-spool/` is left behind in the working directory.
    config.collector.spool_dir = std::path::PathBuf::new();
    config.share_storer_token();
    let switch = Arc::new(CaptureSwitch::new(
        config.collector.service.capture_on && config.storer.service.capture_on,
    ));
    let server_stop = CancellationToken::new();
    let storer = Storer::build(&config.storer, switch.clone(), server_stop.clone())
        .await
        .map_err(UpError::from)?;
    let mut routes = tonic::service::RoutesBuilder::default();
    storer.add_services(&mut routes, None, &config.grpc_limits);
    let server = tokio::spawn(sipcapture_runtime::server::serve(
        listener,
        routes,
        SERVICE_NAMES,
        config.storer.service.max_grpc_calls,
        server_stop.clone(),
    ));
    tracing::info!(
        file = %path.display(),
        db = %sipcapture_storer::redact(&config.storer.db_url),
        "sipcapture import: reading"
    );
    let counters = Arc::new(Counters::new(&sipcapture_collector::events::CATALOG));
    let imported = sipcapture_collector::import_file(
        &config.collector,
        path,
        switch,
        counters,
        progress,
        stop,
    )
    .await;
    server_stop.cancel();
    match server.await {
        Ok(result) => result.map_err(UpError::from)?,
        Err(e) => tracing::error!(error = %e, "grpc server task failed"),
    }
    Ok(imported?)
}
