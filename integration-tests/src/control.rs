//! Clients of control and of members' StatusService, as an operator's tool calls them.

use std::net::SocketAddr;

use sipcapture_proto::v1::control_service_client::ControlServiceClient;
use sipcapture_proto::v1::status_service_client::StatusServiceClient;
use sipcapture_proto::v1::{
    CaptureAction, CaptureState, CheckRequest, ControlCheckRequest, ControlSetStatusRequest,
    ControlStatusReply, SetStatusRequest,
};
use sipcapture_runtime::auth::with_bearer;

/// ControlService.Check: the desired status and every member's.
pub async fn check(control: SocketAddr) -> anyhow::Result<ControlStatusReply> {
    let mut client = ControlServiceClient::connect(format!("http://{control}")).await?;
    Ok(client.check(ControlCheckRequest {}).await?.into_inner())
}

/// A member's state (StatusService.Check, which needs no credential).
pub async fn member_state(addr: SocketAddr) -> anyhow::Result<CaptureState> {
    let mut client = StatusServiceClient::connect(format!("http://{addr}")).await?;
    let reply = client.check(CheckRequest {}).await?.into_inner();
    Ok(CaptureState::try_from(reply.state)?)
}

/// ControlService.SetStatus for the whole fleet, with `token` as bearer token when given.
/// Panics only when control cannot be reached at all.
pub async fn set_status(
    control: SocketAddr,
    action: CaptureAction,
    token: Option<&str>,
) -> Result<ControlStatusReply, tonic::Status> {
    let mut client = ControlServiceClient::connect(format!("http://{control}"))
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let req = ControlSetStatusRequest {
        action: action as i32,
        ..Default::default()
    };
    client
        .set_status(with_bearer(tonic::Request::new(req), token))
        .await
        .map(tonic::Response::into_inner)
}

/// StatusService.SetStatus on one member (all inputs); its state afterwards.
pub async fn member_set_status(
    addr: SocketAddr,
    action: CaptureAction,
    token: Option<&str>,
) -> Result<CaptureState, tonic::Status> {
    let mut client = StatusServiceClient::connect(format!("http://{addr}"))
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let req = SetStatusRequest {
        action: action as i32,
        inputs: Vec::new(),
    };
    let reply = client
        .set_status(with_bearer(tonic::Request::new(req), token))
        .await?
        .into_inner();
    CaptureState::try_from(reply.state).map_err(|e| tonic::Status::internal(e.to_string()))
}
