//! Control: the desired capture status of the whole fleet, fanned out to every member, plus the
//! operator CLI and the all-in-one `sipcapture up`.
//!
//! Data flow: [`grpc`] (ControlService: SetStatus / Check) → [`members`] (fan-out to each
//! member's StatusService with a deadline, per-member results). [`config`] is the typed config;
//! [`cli`] prints replies as a table; [`up`] runs collector + storer + control in one process.

pub mod cli;
pub mod config;
pub mod grpc;
pub mod members;
pub mod up;

use std::sync::Arc;
use std::time::Duration;

use sipcapture_proto::status::CaptureSwitch;
use sipcapture_proto::v1::control_service_server::ControlServiceServer;
use tokio_util::sync::CancellationToken;

use crate::config::ControlConfig;
use crate::grpc::{Control, ControlServer};
use crate::members::{Member, MemberLink};

/// gRPC service names control serves.
pub const SERVICE_NAMES: &[&str] = &["sipcapture.v1.ControlService"];

/// Runs control until `shutdown` is cancelled.
pub async fn run(config: ControlConfig, shutdown: CancellationToken) -> Result<(), anyhow::Error> {
    config.validate()?;
    let control = Arc::new(Control {
        desired: CaptureSwitch::new(config.capture_on),
        members: config
            .member
            .iter()
            .cloned()
            .map(|u| Member::new(MemberLink::Remote(u)))
            .collect(),
        timeout: Duration::from_millis(config.member_timeout_ms),
    });
    let listener = sipcapture_proto::server::bind(config.grpc_listen).await?;
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(ControlServiceServer::new(ControlServer::new(control)));
    tracing::info!(addr = %config.grpc_listen, members = config.member.len(), "control listening");
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
