//! The storer: receives record batches from collectors and stores them with Kamailio
//! `sipcapture` semantics.
//!
//! Data flow: [`grpc`] (transport only: the Deliver stream, backpressure, acks after commit) →
//! [`pipeline::batch`] (one batch: route every record, build its row, group per capture mode and
//! table, commit the parts, build the ack; a typed error that [`grpc`] maps to a gRPC code) →
//! [`pipeline::route`] (the one place a table is chosen: routing hint, [`pipeline::rules`], the
//! HOMER 5 split, the capture mode's table list and mt_mode from [`pipeline::mode`], strftime) →
//! [`pipeline::rows`] (Kamailio's column values) → [`pipeline::write`] (one transaction per batch
//! part, retries) → [`db`] (all SQL per backend: SeaORM pool per capture mode, schemas from
//! `sql/`, multi-row inserts, the stream state, table listing and dropping) → [`table`] (ground:
//! table families, table patterns and strftime naming, dated patterns, the column list).
//!
//! The read side, [`view`], sits beside the flow: it finds calls and draws their ladders from
//! the tables (its own pool, SELECTs only) for `sipcapture calls|flow` and the `web_listen` page;
//! it imports [`db`] and nothing of the pipeline.
//!
//! Beside the flow: [`retention`] drops old dated tables in the background (through
//! [`pipeline::write::Writer`] and [`db::tables`]); [`health`] pings the databases and drives
//! readiness (gRPC health); [`events`] are the typed internal events
//! (log + metric); [`config`] is the one typed config, built from the lower modules' config types
//! ([`pipeline::rules::RouteRuleConfig`], [`pipeline::mode::MtMode`], ...); [`run`] wires it all
//! and serves gRPC and the Prometheus endpoint.
//!
//! Imports point down only (no cycles): `lib` → [`grpc`] → [`pipeline`] → [`db`] → [`table`].
//! Inside [`pipeline`]: `batch` → `route`, `rows`, `write`; `route` → `rules` → `mode`. [`config`]
//! and [`retention`] sit beside [`grpc`] (they import [`pipeline`], [`db`], [`table`]);
//! [`events`] imports only [`table`]; [`db`] imports nothing from [`pipeline`]; [`table`] imports
//! nothing from the crate.

pub mod config;
pub mod db;
pub mod events;
pub mod grpc;
pub mod health;
pub mod pipeline;
pub mod retention;
pub mod table;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use sipcapture_proto::v1::MemberKind;
use sipcapture_proto::v1::status_service_server::StatusServiceServer;
use sipcapture_proto::v1::storer_service_server::StorerServiceServer;
use sipcapture_runtime::counters::Counters;
use sipcapture_runtime::health::Readiness;
use sipcapture_runtime::server::GrpcLimits;
use sipcapture_runtime::service::Listener;
use sipcapture_runtime::status::{CaptureSwitch, StatusServer};
use tokio_util::sync::CancellationToken;

use crate::config::StorerConfig;
use crate::grpc::{Intake, StorerServer};
use crate::pipeline::batch::{Batcher, RecordLimits};
use crate::pipeline::dedup::Dedup;
use crate::pipeline::mode::{DEFAULT_MODE, StorageSchema};
use crate::pipeline::route::{Router, RouterBuildError, RouterConfig};
use crate::pipeline::write::{RetryPolicy, Writer};
use crate::table::DatedPattern;

/// gRPC service names the storer serves (for health).
pub const SERVICE_NAMES: &[&str] = &["sipcapture.v1.StorerService", "sipcapture.v1.StatusService"];
/// The services whose health (with the overall entry) follows the default mode's database;
/// StatusService keeps answering while the database is down.
pub const READINESS_SERVICES: &[&str] = &["sipcapture.v1.StorerService"];

/// Start-up and serving failures.
#[derive(Debug, thiserror::Error)]
pub enum StorerError {
    /// Bad config.
    #[error(transparent)]
    Config(#[from] sipcapture_runtime::config::ConfigError),
    /// Database unusable at start-up.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// gRPC failure.
    #[error(transparent)]
    Serve(#[from] sipcapture_runtime::server::ServeError),
    /// The web page could not start.
    #[error(transparent)]
    Web(#[from] view::web::WebError),
    /// The gRPC side (listener, TLS, `/metrics`) could not start.
    #[error(transparent)]
    Start(#[from] sipcapture_runtime::service::StartError),
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
    /// Whether the default mode's database answers; the gRPC server's health follows it.
    pub readiness: Readiness,
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
        let modes = config.modes()?;
        let router = Router::new(&RouterConfig {
            modes: &modes,
            rules: &config.route,
            homer5_split: config.homer5_split_in_effect(),
            rtcp_table: &config.rtcp_table,
            report_table: &config.report_table,
            logs_table: &config.logs_table,
            partitions: config.homer7_partitions()?,
        })
        .map_err(|e| match e {
            RouterBuildError::Rules(e) => e,
            RouterBuildError::Pattern { key, source } => {
                sipcapture_runtime::config::ConfigError::invalid(key, source.to_string())
            }
        })?;
        tracing::info!(
            choice = %config.default_table_choice(),
            "sip records no routing rule matches: table choice"
        );
        let counters = Arc::new(Counters::new(&events::CATALOG));
        let policy = RetryPolicy {
            retries: config.insert_retries,
            timeout: Duration::from_secs(config.insert_retry_timeout),
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        };
        let mut writers = Vec::with_capacity(modes.len());
        // Per writer: its database did not answer at start-up (its set-up is retried by the
        // health task; the storer is not ready meanwhile).
        let mut waiting = Vec::with_capacity(modes.len());
        for mode in &modes {
            // Lazily: a URL error stops the storer here, an unreachable database does not.
            let db = db::connect_lazily(&mode.db_url, mode.db_max_connections)
                .await
                .map_err(|e| {
                    let key = if mode.name == DEFAULT_MODE {
                        "db_url".to_owned()
                    } else {
                        format!("capture_mode.{}.db_url", mode.name)
                    };
                    sipcapture_runtime::config::ConfigError::invalid(key, e.to_string())
                })?;
            let writer = Writer::new(
                &mode.name,
                db,
                policy,
                counters.clone(),
                config.max_partitions,
                config.max_new_tables_per_minute,
            );
            // Bounded, so the gRPC side (health, status) starts soon even when the database
            // server does not answer at all; the health task finishes the set-up later.
            let init = tokio::time::timeout(health::START_TIMEOUT, writer.init())
                .await
                .unwrap_or_else(|_| {
                    Err(db::DbError::Connect(sea_orm::DbErr::Custom(format!(
                        "no answer within {:?}",
                        health::START_TIMEOUT
                    ))))
                });
            match init {
                Ok(()) => {
                    tracing::info!(mode = %mode.name, db = %redact(&mode.db_url), tables = %mode.table_name, "capture mode ready");
                    waiting.push(false);
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(mode = %mode.name, db = %redact(&mode.db_url), error = %e, "database unreachable at start-up: not ready until it answers");
                    waiting.push(true);
                }
                Err(e) => return Err(e.into()),
            }
            writers.push(Arc::new(writer));
        }
        register_pool_gauges(&counters, &writers);
        sipcapture_runtime::status::register_capture_gauge(&counters, switch.clone(), false);
        health::initial_gauges(&counters, &writers, &waiting);
        let ready_now = !waiting.first().copied().unwrap_or(false);
        let (ready, readiness) = Readiness::new(ready_now, READINESS_SERVICES);
        tokio::spawn(health::run(
            writers.clone(),
            waiting,
            ready,
            counters.clone(),
            health::CHECK_INTERVAL,
            shutdown.clone(),
        ));
        let homer7_writers: Vec<Arc<Writer>> = writers
            .iter()
            .zip(&modes)
            .filter(|(_, m)| m.schema == StorageSchema::Homer7)
            .map(|(w, _)| w.clone())
            .collect();
        let homer7 = (!homer7_writers.is_empty()).then(|| retention::Homer7Upkeep {
            writers: homer7_writers,
            parents: router.homer7_tables(),
            ahead_days: config.partition_ahead_days,
        });
        if let Some(upkeep) = &homer7 {
            // Before the first batch: the tables and today's partitions.
            retention::homer7_sweep(upkeep, 0, chrono::Utc::now()).await;
        }
        if config.retention_days > 0 || homer7.is_some() {
            let mut patterns: Vec<DatedPattern> = Vec::new();
            let configured = config.retention_tables.iter().map(String::as_str);
            let routed = router.dated_patterns().into_iter().map(|p| p.as_str());
            for raw in configured.chain(routed) {
                // Patterns without a full date (monthly tables) are left alone.
                if let Ok(p) = DatedPattern::parse(raw)
                    && !patterns.contains(&p)
                {
                    patterns.push(p);
                }
            }
            tokio::spawn(retention::run(
                writers.clone(),
                patterns,
                config.retention_days,
                retention::future_days(config.future_horizon),
                Duration::from_secs(config.retention_interval),
                homer7,
                shutdown.clone(),
            ));
        }
        let intake = Arc::new(Intake {
            storer_id: config.storer_id.clone(),
            batcher: Batcher {
                router,
                writers,
                switch: switch.clone(),
                counters: counters.clone(),
                custom_keys: config.homer7_custom_fields.clone(),
                limits: RecordLimits {
                    future_horizon: (config.future_horizon > 0).then(|| {
                        chrono::Duration::seconds(
                            config.future_horizon.try_into().unwrap_or(i64::MAX),
                        )
                    }),
                    max_msg_size: config.max_msg_size,
                },
                dedup: config.dedup.then(|| {
                    Dedup::new(
                        Duration::from_secs_f64(config.dedup_window),
                        config.dedup_max_entries,
                    )
                }),
            },
            counters: counters.clone(),
            shutdown,
            auth: config
                .service
                .authorizer(sipcapture_runtime::auth::Role::Collector),
        });
        Ok(Storer {
            intake,
            switch,
            counters,
            storer_id: config.storer_id.clone(),
            readiness,
        })
    }

    /// Adds the storer's services to a route set, with the message size limits.
    pub fn add_services(
        &self,
        routes: &mut tonic::service::RoutesBuilder,
        status: Option<StatusServer>,
        limits: &GrpcLimits,
    ) {
        routes.add_service(
            StorerServiceServer::new(StorerServer::new(self.intake.clone()))
                .max_decoding_message_size(limits.max_decoding_message_size)
                .max_encoding_message_size(limits.max_encoding_message_size),
        );
        if let Some(status) = status {
            routes.add_service(
                StatusServiceServer::new(status)
                    .max_decoding_message_size(limits.max_decoding_message_size)
                    .max_encoding_message_size(limits.max_encoding_message_size),
            );
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

/// The `db_pool_*` gauges, read from every capture mode's pool at scrape/export time.
fn register_pool_gauges(counters: &Counters, writers: &[Arc<Writer>]) {
    type Pick = fn((u32, u32, u32)) -> u32;
    let gauges: [(&'static str, Pick); 3] = [
        ("db_pool_connections", |s| s.0),
        ("db_pool_idle", |s| s.1),
        ("db_pool_max", |s| s.2),
    ];
    for (family, pick) in gauges {
        let writers: Vec<Arc<Writer>> = writers.to_vec();
        counters.gauge_fn(family, move |report| {
            for w in &writers {
                report(w.mode(), i64::from(pick(db::pool_state(w.db()))));
            }
        });
    }
}

/// Runs a storer until `shutdown` is cancelled.
pub async fn run(config: StorerConfig, shutdown: CancellationToken) -> Result<(), StorerError> {
    let service = &config.service;
    let switch = Arc::new(CaptureSwitch::new(service.capture_on));
    let storer = Storer::build(&config, switch.clone(), shutdown.clone()).await?;
    let counters = storer.counters.clone();
    let listener = Listener::bind(
        service,
        SERVICE_NAMES,
        counters.clone(),
        vec![counters],
        &shutdown,
    )
    .await?
    .with_readiness(storer.readiness.clone());
    sipcapture_runtime::service::follow_control(
        service,
        config.control.clone(),
        config.advertise_url.clone(),
        &config.storer_id,
        MemberKind::Storer,
        switch,
        &shutdown,
    )
    .await;
    tracing::info!(addr = %listener.local_addr(), db = %redact(&config.db_url), tls = listener.tls(), mtls = listener.mtls(), "storer listening");
    serve_web(&config, &shutdown).await?;
    let mut routes = tonic::service::RoutesBuilder::default();
    let status = storer
        .status_server()
        .with_auth(service.authorizer(sipcapture_runtime::auth::Role::Admin));
    storer.add_services(&mut routes, Some(status), &listener.limits());
    listener.serve(routes, shutdown).await?;
    Ok(())
}

/// Starts the read-only web page when `web_listen` is set: its own read pool on the default
/// mode's database, the storer's `auth_token`.
pub async fn serve_web(
    config: &StorerConfig,
    shutdown: &CancellationToken,
) -> Result<Option<std::net::SocketAddr>, StorerError> {
    let Some(addr) = config.web_listen else {
        return Ok(None);
    };
    let view = view::query::View::open(&config.db_url).await?;
    let bound = view::web::serve(
        addr,
        view,
        config.service.auth_token.clone(),
        shutdown.clone(),
    )
    .await?;
    Ok(Some(bound))
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
