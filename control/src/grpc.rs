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

use crate::events::{FanoutFailed, InternalEvent, RegistrationRefused, StatusChanged};
use crate::members::{Registry, fan_out};
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
    /// Who may change the fleet status: the admin token or an allowed client identity.
    pub admin: Authorizer,
    /// Who may register through Watch: the member token or an allowed client identity.
    pub member: Authorizer,
    /// Registered (Watch) members kept at most (`max_registered_members`).
    pub max_registered: usize,
    /// How long a registered member whose Watch stream ended is still reported (unreachable,
    /// not dialled) before it leaves the registry (`registered_member_linger_secs`).
    pub linger: Duration,
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

/// Where control reaches a registering member: an `https://` URL it advertises (the server
/// certificate proves the name), else the caller's own address (the peer IP control saw) at
/// the advertised port. A plain `http://` URL naming another host is never dialled: control
/// would otherwise call any address a caller names (SSRF); its port is kept, its host replaced.
fn status_url(req: &WatchRequest, peer: Option<SocketAddr>) -> Result<String, Status> {
    if req.status_url.starts_with("https://") {
        return Ok(req.status_url.clone());
    }
    let peer =
        peer.ok_or_else(|| Status::invalid_argument("status_url needed: peer address unknown"))?;
    let port = if req.status_url.is_empty() {
        u16::try_from(req.status_port)
            .map_err(|_| Status::invalid_argument("status_port out of range"))?
    } else {
        let uri: tonic::codegen::http::Uri = req
            .status_url
            .parse()
            .map_err(|_| Status::invalid_argument("status_url is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(Status::invalid_argument(
                "status_url must be an http:// or https:// URL",
            ));
        }
        let port = uri.port_u16().unwrap_or(80);
        let host = uri.host().unwrap_or("").trim_matches(['[', ']']);
        if host.parse::<std::net::IpAddr>().ok() != Some(peer.ip()) {
            tracing::warn!(claimed = %req.status_url, peer = %peer.ip(), "registration names another host over plain http: control dials the caller's own address instead");
        }
        port
    };
    if port == 0 {
        return Err(Status::invalid_argument(
            "status_url or status_port is needed",
        ));
    }
    let scheme = if req.status_tls { "https" } else { "http" };
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
        // Registering adds a member control will call: the member role (its token or an
        // allowed client certificate) is needed.
        if let Err(status) = self.control.member.check(&request) {
            RegistrationRefused {
                reason: "unauthorised",
            }
            .emit(&self.control.counters);
            return Err(status);
        }
        let peer = request.remote_addr();
        let req = request.into_inner();
        let url = status_url(&req, peer)?;
        let kind = MemberKind::try_from(req.kind).unwrap_or(MemberKind::Unspecified);
        let Ok(member) = self
            .control
            .registry
            .register(&url, self.control.max_registered)
        else {
            RegistrationRefused { reason: "full" }.emit(&self.control.counters);
            return Err(Status::resource_exhausted(format!(
                "control already has {} registered members (max_registered_members)",
                self.control.max_registered
            )));
        };
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
            // The member leaves with its last Watch stream (it registers again on reconnect),
            // after being reported unreachable for the linger period.
            if control.registry.watch_ended(&member) {
                tokio::time::sleep(control.linger).await;
                control.registry.remove_departed(&member);
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
        // Plain http: only the caller's own address is dialled, whatever host it names.
        req.status_url = "http://c1:9062".into();
        assert_eq!(
            status_url(&req, Some(peer)).unwrap(),
            "http://10.1.2.3:9062"
        );
        req.status_url = "http://10.1.2.3:7000".into();
        assert_eq!(
            status_url(&req, Some(peer)).unwrap(),
            "http://10.1.2.3:7000"
        );
        req.status_url = "https://c1.example:9062".into();
        assert_eq!(
            status_url(&req, Some(peer)).unwrap(),
            "https://c1.example:9062"
        );
        req.status_url = "ftp://c1:21".into();
        assert!(status_url(&req, Some(peer)).is_err());
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
