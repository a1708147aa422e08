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
use sipcapture_runtime::auth::Role;
use sipcapture_runtime::counters::Counters;
use sipcapture_runtime::service::Listener;
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
            config.service.peer_scheme(),
            Duration::from_secs(config.member_dns_refresh),
            shutdown.clone(),
        ));
    }
    let counters = Arc::new(Counters::new(&events::CATALOG));
    let members = registry.clone();
    counters.gauge_fn("members", move |report| {
        report("", i64::try_from(members.all().len()).unwrap_or(i64::MAX));
    });
    let desired = DesiredState::load(config.state_file.clone(), config.service.capture_on);
    sipcapture_runtime::status::register_capture_gauge(&counters, desired.fleet(), true);
    Arc::new(Control {
        desired,
        counters,
        registry,
        timeout: Duration::from_millis(config.member_timeout_ms),
        token: config.service.token_for(Role::Admin),
        admin: config.service.authorizer(Role::Admin),
        member: config.service.authorizer(Role::Member),
        max_registered: config.max_registered_members,
        linger: Duration::from_secs(config.registered_member_linger_secs),
        tls: config.service.grpc_client_tls.clone(),
    })
}

/// Runs control until `shutdown` is cancelled.
pub async fn run(config: ControlConfig, shutdown: CancellationToken) -> Result<(), ControlError> {
    config.validate()?;
    let control = build(&config, &shutdown);
    let counters = control.counters.clone();
    let listener = Listener::bind(
        &config.service,
        SERVICE_NAMES,
        counters.clone(),
        vec![counters],
        &shutdown,
    )
    .await?;
    let limits = listener.limits();
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(
        ControlServiceServer::new(ControlServer::new(control))
            .max_decoding_message_size(limits.max_decoding_message_size)
            .max_encoding_message_size(limits.max_encoding_message_size),
    );
    tracing::info!(addr = %listener.local_addr(), members = config.member.len(), tls = listener.tls(), "control listening");
    listener.serve(routes, shutdown).await?;
    Ok(())
}

/// Why control stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Bad config.
    #[error(transparent)]
    Config(#[from] sipcapture_runtime::config::ConfigError),
    /// The gRPC side could not start.
    #[error(transparent)]
    Start(#[from] sipcapture_runtime::service::StartError),
    /// gRPC failure.
    #[error(transparent)]
    Serve(#[from] sipcapture_runtime::server::ServeError),
}
