//! `sipcapture.v1.ControlService`: holds the desired status, fans it out to every member and
//! keeps a Watch stream per registered member.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sipcapture_proto::v1::control_service_server::ControlService;
use sipcapture_proto::v1::{
    CaptureAction, ControlCheckRequest, ControlSetStatusRequest, ControlStatusReply, DesiredStatus,
    InputKind, MemberKind, SetStatusRequest, WatchRequest,
};
use sipcapture_runtime::auth::Authorizer;
use sipcapture_runtime::tls::GrpcClientTls;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::events::{FanoutFailed, InternalEvent, StatusChanged};
use crate::members::{MemberLink, Origin, Registry, fan_out};
use crate::state::DesiredState;

/// The control service state.
#[derive(Debug)]
pub struct Control {
    /// The desired status.
    pub desired: DesiredState,
    /// Known members.
    pub registry: Arc<Registry>,
    /// Per-member deadline.
    pub timeout: Duration,
    /// Bearer token for SetStatus (ours and the members').
    pub token: Option<String>,
    /// Who may change the fleet status: the token or an allowed client identity.
    pub admin: Authorizer,
    /// Client TLS for `https://` members.
    pub tls: GrpcClientTls,
    /// Control's metrics.
    pub counters: Arc<sipcapture_runtime::counters::Counters>,
}

impl Control {
    fn reply(&self, members: Vec<sipcapture_proto::v1::MemberStatus>) -> ControlStatusReply {
        let desired = self.desired.fleet_state();
        ControlStatusReply {
            desired: desired as i32,
            reply: desired.reply_text().to_owned(),
            members,
        }
    }

    /// Applies a SetStatus request: records the desired status, then calls every selected
    /// member concurrently and reports each one's answer.
    pub async fn set_status(
        &self,
        req: ControlSetStatusRequest,
    ) -> Result<ControlStatusReply, Status> {
        let action = CaptureAction::try_from(req.action)
            .map_err(|_| Status::invalid_argument("Bad parameter (on, off or check)"))?;
        let inputs = req
            .inputs
            .iter()
            .map(|i| {
                InputKind::try_from(*i)
                    .map_err(|_| Status::invalid_argument(format!("unknown input kind {i}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let Some(on) = action.target() else {
            if action == CaptureAction::Check {
                return Ok(self.check(&req.members).await);
            }
            return Err(Status::invalid_argument(
                "Not enough parameters (on, off or check)",
            ));
        };
        self.desired.set(on, &inputs, &req.members);
        StatusChanged {
            member: "control",
            on,
            inputs: &inputs,
        }
        .emit(&self.counters);
        let request = SetStatusRequest {
            action: req.action,
            inputs: req.inputs.clone(),
        };
        let members = fan_out(
            &self.registry.all(),
            &req.members,
            Some(request),
            self.timeout,
            self.token.as_deref(),
            &self.tls,
        )
        .await;
        FanoutFailed {
            members: members.iter().filter(|m| !m.reachable).count() as u64,
        }
        .emit(&self.counters);
        Ok(self.reply(members))
    }

    /// Checks every selected member.
    pub async fn check(&self, selectors: &[String]) -> ControlStatusReply {
        let members = fan_out(
            &self.registry.all(),
            selectors,
            None,
            self.timeout,
            None,
            &self.tls,
        )
        .await;
        self.reply(members)
    }
}

/// The gRPC face of [`Control`].
#[derive(Debug, Clone)]
pub struct ControlServer {
    control: Arc<Control>,
}

impl ControlServer {
    /// A server over shared control state.
    pub fn new(control: Arc<Control>) -> Self {
        ControlServer { control }
    }
}

/// Where control reaches a registering member.
fn status_url(req: &WatchRequest, peer: Option<SocketAddr>) -> Result<String, Status> {
    if !req.status_url.is_empty() {
        return Ok(req.status_url.clone());
    }
    let port = u16::try_from(req.status_port)
        .map_err(|_| Status::invalid_argument("status_port out of range"))?;
    let scheme = if req.status_tls { "https" } else { "http" };
    let peer =
        peer.ok_or_else(|| Status::invalid_argument("status_url needed: peer address unknown"))?;
    if port == 0 {
        return Err(Status::invalid_argument(
            "status_url or status_port is needed",
        ));
    }
    Ok(format!("{scheme}://{}", SocketAddr::new(peer.ip(), port)))
}

#[tonic::async_trait]
impl ControlService for ControlServer {
    async fn set_status(
        &self,
        request: Request<ControlSetStatusRequest>,
    ) -> Result<Response<ControlStatusReply>, Status> {
        self.control.admin.check(&request)?;
        self.control
            .set_status(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn check(
        &self,
        _request: Request<ControlCheckRequest>,
    ) -> Result<Response<ControlStatusReply>, Status> {
        Ok(Response::new(self.control.check(&[]).await))
    }

    type WatchStream = ReceiverStream<Result<DesiredStatus, Status>>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // Registering adds a member that control will call with its bearer token: with auth
        // configured, only a caller with the token or a verified client certificate may.
        if !self.control.admin.is_open()
            && sipcapture_runtime::tls::peer_identity(&request).is_none()
        {
            self.control.admin.check(&request)?;
        }
        let peer = request.remote_addr();
        let req = request.into_inner();
        let url = status_url(&req, peer)?;
        let kind = MemberKind::try_from(req.kind).unwrap_or(MemberKind::Unspecified);
        let member = self
            .control
            .registry
            .add(MemberLink::Remote(url.clone()), Origin::Registered);
        member.note_identity(&req.member_id, kind);
        tracing::info!(member = %req.member_id, ?kind, %url, "member registered");

        let (tx, rx) = mpsc::channel(4);
        let control = self.control.clone();
        tokio::spawn(async move {
            let mut changes = control.desired.subscribe();
            loop {
                let desired = control.desired.desired_for(&req.member_id, &url);
                if tx.send(Ok(desired)).await.is_err() {
                    break;
                }
                // Wake on a change, or when the member goes away.
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { break },
                    () = tx.closed() => break,
                }
            }
            tracing::info!(member = %req.member_id, %url, "member watch ended");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_url_rules() {
        let peer: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        let mut req = WatchRequest {
            status_port: 9062,
            ..Default::default()
        };
        assert_eq!(
            status_url(&req, Some(peer)).unwrap(),
            "http://10.1.2.3:9062"
        );
        req.status_url = "http://c1:9062".into();
        assert_eq!(status_url(&req, Some(peer)).unwrap(), "http://c1:9062");
        req.status_url = String::new();
        req.status_tls = true;
        assert_eq!(
            status_url(&req, Some(peer)).unwrap(),
            "https://10.1.2.3:9062"
        );
        let bad = WatchRequest::default();
        assert!(status_url(&bad, Some(peer)).is_err());
    }
}
