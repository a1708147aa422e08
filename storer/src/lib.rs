//! The storer: receives record batches from collectors and stores them with Kamailio
//! `sipcapture` semantics.
//!
//! Data flow: [`grpc`] (intake: the Deliver stream, acks after commit) →
//! [`pipeline::route`] (table choice: HOMER 5 split, capture modes, mt_mode, strftime) →
//! [`pipeline::rows`] (Kamailio's column values) → [`pipeline::write`] (one transaction per
//! batch, retries) → [`db`] (SeaORM pool, schemas from `sql/`, multi-row inserts).
//! [`config`] is the one typed config; [`run`] wires it all and serves gRPC.

pub mod config;
pub mod db;
pub mod grpc;
pub mod pipeline;

use std::sync::Arc;
use std::time::Duration;

use sipcapture_proto::counters::Counters;
use sipcapture_proto::status::{CaptureSwitch, StatusServer};
use sipcapture_proto::v1::MemberKind;
use sipcapture_proto::v1::status_service_server::StatusServiceServer;
use sipcapture_proto::v1::storer_service_server::StorerServiceServer;
use tokio_util::sync::CancellationToken;

use crate::config::StorerConfig;
use crate::grpc::{Intake, StorerServer};
use crate::pipeline::route::{Router, RouterConfig};
use crate::pipeline::write::{RetryPolicy, Writer};

/// gRPC service names the storer serves (for health).
pub const SERVICE_NAMES: &[&str] = &["sipcapture.v1.StorerService", "sipcapture.v1.StatusService"];

/// Start-up and serving failures.
#[derive(Debug, thiserror::Error)]
pub enum StorerError {
    /// Bad config.
    #[error(transparent)]
    Config(#[from] sipcapture_proto::config::ConfigError),
    /// Database unusable at start-up.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// gRPC failure.
    #[error(transparent)]
    Serve(#[from] sipcapture_proto::server::ServeError),
}

/// A storer ready to serve: its gRPC services and the state behind them.
#[derive(Debug)]
pub struct Storer {
    /// The intake behind the Deliver service.
    pub intake: Arc<Intake>,
    /// The capture switch.
    pub switch: Arc<CaptureSwitch>,
    /// Counters.
    pub counters: Arc<Counters>,
    /// The id.
    pub storer_id: String,
}

impl Storer {
    /// Validates the config, connects the database and creates the state table. `switch` is
    /// shared with the collector in the all-in-one process.
    pub async fn build(
        config: &StorerConfig,
        switch: Arc<CaptureSwitch>,
        shutdown: CancellationToken,
    ) -> Result<Self, StorerError> {
        config.validate()?;
        let router = Router::new(&RouterConfig {
            table_name: &config.table_name,
            mt_mode: config.mt_mode,
            hash_source: config.hash_source,
            homer5_split: config.homer5_split,
            rtcp_table: &config.rtcp_table,
            report_table: &config.report_table,
            logs_table: &config.logs_table,
        })
        .map_err(|e| sipcapture_proto::config::ConfigError::invalid("table_name", e.to_string()))?;
        let counters = Arc::new(Counters::new("storer"));
        let db = db::connect(&config.db_url, config.db_max_connections).await?;
        let policy = RetryPolicy {
            retries: config.insert_retries,
            timeout: Duration::from_secs(config.insert_retry_timeout),
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        };
        let writer = Writer::new(db, policy, counters.clone());
        writer.init().await?;
        let intake = Arc::new(Intake {
            storer_id: config.storer_id.clone(),
            router,
            writer,
            switch: switch.clone(),
            counters: counters.clone(),
            shutdown,
        });
        Ok(Storer {
            intake,
            switch,
            counters,
            storer_id: config.storer_id.clone(),
        })
    }

    /// Adds the storer's services to a route set.
    pub fn add_services(&self, routes: &mut tonic::service::RoutesBuilder, status: bool) {
        routes.add_service(
            StorerServiceServer::new(StorerServer::new(self.intake.clone()))
                .max_decoding_message_size(64 * 1024 * 1024),
        );
        if status {
            routes.add_service(StatusServiceServer::new(self.status_server()));
        }
    }

    /// The status service of this storer.
    pub fn status_server(&self) -> StatusServer {
        StatusServer::new(
            self.storer_id.clone(),
            MemberKind::Storer,
            self.switch.clone(),
            vec![self.counters.clone()],
        )
    }
}

/// Runs a storer until `shutdown` is cancelled.
pub async fn run(config: StorerConfig, shutdown: CancellationToken) -> Result<(), StorerError> {
    let switch = Arc::new(CaptureSwitch::new(config.capture_on));
    let storer = Storer::build(&config, switch, shutdown.clone()).await?;
    let listener = sipcapture_proto::server::bind(config.grpc_listen).await?;
    tracing::info!(addr = %config.grpc_listen, db = %redact(&config.db_url), "storer listening");
    let mut routes = tonic::service::RoutesBuilder::default();
    storer.add_services(&mut routes, true);
    sipcapture_proto::server::serve(
        listener,
        routes,
        SERVICE_NAMES,
        config.max_grpc_calls,
        shutdown,
    )
    .await?;
    Ok(())
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = url.get(scheme_end + 3..at).unwrap_or("");
            match creds.split_once(':') {
                Some((user, _)) => format!(
                    "{}{user}:***{}",
                    url.get(..scheme_end + 3).unwrap_or(""),
                    url.get(at..).unwrap_or("")
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
