//! Control: the desired capture status of the whole fleet, fanned out to every member. The
//! `sipcapture` command (its `status` client and the all-in-one `up`) is the `sipcapture-cli`
//! crate.
//!
//! Data flow: [`grpc`] (ControlService: SetStatus / Check / Watch) → [`state`] (the desired
//! status, persisted, announced to watching members) → [`members`] (registry of configured,
//! registered and DNS-found members; fan-out to each member's StatusService with a deadline,
//! per-member results). [`config`] is the typed config; [`events`] are the typed internal
//! events (log + metric); [`build`] makes control's state for a server ([`run`] or the
//! all-in-one), [`run`] serves it.

pub mod config;
pub mod events;
pub mod grpc;
pub mod members;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use sipcapture_proto::v1::control_service_server::ControlServiceServer;
use sipcapture_runtime::auth::Authorizer;
use sipcapture_runtime::counters::Counters;
use sipcapture_runtime::server::ServeOptions;
use sipcapture_runtime::tls::TlsError;
use tokio_util::sync::CancellationToken;

use crate::config::ControlConfig;
use crate::grpc::{Control, ControlServer};
use crate::members::{MemberLink, Origin, Registry};
use crate::state::DesiredState;

/// gRPC service names control serves.
pub const SERVICE_NAMES: &[&str] = &["sipcapture.v1.ControlService"];

/// Builds control's state from its config (members, desired status, DNS refresh task).
pub fn build(config: &ControlConfig, shutdown: &CancellationToken) -> Arc<Control> {
    let registry = Arc::new(Registry::default());
    for url in &config.member {
        registry.add(MemberLink::Remote(url.clone()), Origin::Static);
    }
    if !config.member_dns.is_empty() {
        tokio::spawn(members::refresh_dns(
            registry.clone(),
            config.member_dns.clone(),
            if config.grpc_client_tls.ca.is_some() || config.grpc_client_tls.cert.is_some() {
                "https"
            } else {
                "http"
            },
            Duration::from_secs(config.member_dns_refresh),
            shutdown.clone(),
        ));
    }
    let counters = Arc::new(Counters::new(&events::CATALOG));
    let members = registry.clone();
    counters.gauge_fn("members", move |report| {
        report("", i64::try_from(members.all().len()).unwrap_or(i64::MAX));
    });
    Arc::new(Control {
        desired: DesiredState::load(config.state_file.clone(), config.capture_on),
        counters,
        registry,
        timeout: Duration::from_millis(config.member_timeout_ms),
        token: config.auth_token.clone().filter(|t| !t.is_empty()),
        admin: Authorizer::new(
            config.auth_token.clone(),
            config.grpc_admin_identities.clone(),
        ),
        tls: config.grpc_client_tls.clone(),
    })
}

/// Runs control until `shutdown` is cancelled.
pub async fn run(config: ControlConfig, shutdown: CancellationToken) -> Result<(), anyhow::Error> {
    config.validate()?;
    let control = build(&config, &shutdown);
    let listener = sipcapture_runtime::server::bind(config.grpc_listen).await?;
    let counters = control.counters.clone();
    let options = ServeOptions::new(SERVICE_NAMES, config.max_grpc_calls)
        .with_grpc_tls(
            &config.grpc_tls,
            config.grpc_limits,
            counters.clone(),
            &shutdown,
        )
        .map_err(TlsError::into_config)?;
    let limits = config.grpc_limits;
    sipcapture_runtime::metrics::serve_if(
        config.metrics_listen,
        vec![control.counters.clone()],
        &shutdown,
    )
    .await?;
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(
        ControlServiceServer::new(ControlServer::new(control))
            .max_decoding_message_size(limits.max_decoding_message_size)
            .max_encoding_message_size(limits.max_encoding_message_size),
    );
    tracing::info!(addr = %config.grpc_listen, members = config.member.len(), tls = options.tls.is_some(), "control listening");
    sipcapture_runtime::server::serve_with(listener, routes, &options, shutdown).await?;
    Ok(())
}
