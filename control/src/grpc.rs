//! `sipcapture.v1.ControlService`: holds the desired status and fans it out.

use std::sync::Arc;
use std::time::Duration;

use sipcapture_proto::status::CaptureSwitch;
use sipcapture_proto::v1::control_service_server::ControlService;
use sipcapture_proto::v1::{
    CaptureAction, ControlCheckRequest, ControlSetStatusRequest, ControlStatusReply, InputKind,
    SetStatusRequest,
};
use tonic::{Request, Response, Status};

use crate::members::{Member, fan_out};

/// The control service state.
#[derive(Debug)]
pub struct Control {
    /// The desired state (same semantics as a member's switch).
    pub desired: CaptureSwitch,
    /// Known members.
    pub members: Vec<Member>,
    /// Per-member deadline.
    pub timeout: Duration,
}

impl Control {
    fn reply(&self, members: Vec<sipcapture_proto::v1::MemberStatus>) -> ControlStatusReply {
        let desired = self.desired.state();
        ControlStatusReply {
            desired: desired as i32,
            reply: desired.reply_text().to_owned(),
            members,
        }
    }

    /// Applies a SetStatus request.
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
        if req.members.is_empty() {
            self.desired.set(on, &inputs);
        }
        tracing::info!(on, ?inputs, members = ?req.members, "capture status requested");
        let request = SetStatusRequest {
            action: req.action,
            inputs: req.inputs.clone(),
        };
        let members = fan_out(&self.members, &req.members, Some(request), self.timeout).await;
        Ok(self.reply(members))
    }

    /// Checks every selected member.
    pub async fn check(&self, selectors: &[String]) -> ControlStatusReply {
        let members = fan_out(&self.members, selectors, None, self.timeout).await;
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

#[tonic::async_trait]
impl ControlService for ControlServer {
    async fn set_status(
        &self,
        request: Request<ControlSetStatusRequest>,
    ) -> Result<Response<ControlStatusReply>, Status> {
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
}
