//! Members as control sees them: remote ones reached over gRPC (StatusService) and the local one
//! of `sipcapture up`. Fan-out calls every member concurrently with a per-call deadline and
//! reports, per member, what it acknowledged or why it did not answer.

use std::sync::Mutex;
use std::time::Duration;

use futures::future::join_all;
use sipcapture_proto::status::StatusServer;
use sipcapture_proto::v1::status_service_client::StatusServiceClient;
use sipcapture_proto::v1::{
    CaptureState, CheckRequest, MemberKind, MemberStatus, SetStatusRequest, StatusReply,
};
use tonic::transport::Endpoint;

/// How control reaches a member.
#[derive(Debug, Clone)]
pub enum MemberLink {
    /// A StatusService at a URL.
    Remote(String),
    /// The in-process member of `sipcapture up`.
    Local(StatusServer),
}

/// A member and when it last answered.
#[derive(Debug)]
pub struct Member {
    /// How to reach it.
    pub link: MemberLink,
    last_seen_ms: Mutex<i64>,
    last_id: Mutex<(String, MemberKind)>,
}

impl Member {
    /// A member that has not answered yet.
    pub fn new(link: MemberLink) -> Self {
        Member {
            link,
            last_seen_ms: Mutex::new(0),
            last_id: Mutex::new((String::new(), MemberKind::Unspecified)),
        }
    }

    /// The address shown for it.
    pub fn address(&self) -> String {
        match &self.link {
            MemberLink::Remote(url) => url.clone(),
            MemberLink::Local(_) => "local".to_owned(),
        }
    }

    fn matches(&self, selector: &str) -> bool {
        if self.address() == selector {
            return true;
        }
        self.last_id.lock().is_ok_and(|id| id.0 == selector)
    }

    async fn call(
        &self,
        request: Option<SetStatusRequest>,
        timeout: Duration,
    ) -> Result<StatusReply, String> {
        match &self.link {
            MemberLink::Local(server) => match request {
                Some(req) => server.apply(&req).map_err(|s| s.message().to_owned()),
                None => Ok(server.reply()),
            },
            MemberLink::Remote(url) => {
                let url = url.clone();
                let call = async move {
                    let channel = Endpoint::from_shared(url)
                        .map_err(|e| e.to_string())?
                        .connect_timeout(timeout)
                        .connect()
                        .await
                        .map_err(|e| format!("unreachable: {e}"))?;
                    let mut client = StatusServiceClient::new(channel);
                    let reply = match request {
                        Some(req) => client.set_status(req).await,
                        None => client.check(CheckRequest {}).await,
                    };
                    reply
                        .map(tonic::Response::into_inner)
                        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
                };
                tokio::time::timeout(timeout, call)
                    .await
                    .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
            }
        }
    }

    async fn status(&self, request: Option<SetStatusRequest>, timeout: Duration) -> MemberStatus {
        let address = self.address();
        match self.call(request, timeout).await {
            Ok(reply) => {
                let now = chrono::Utc::now().timestamp_millis();
                if let Ok(mut seen) = self.last_seen_ms.lock() {
                    *seen = now;
                }
                let kind = MemberKind::try_from(reply.kind).unwrap_or(MemberKind::Unspecified);
                if let Ok(mut id) = self.last_id.lock() {
                    *id = (reply.member_id.clone(), kind);
                }
                MemberStatus {
                    member_id: reply.member_id,
                    kind: reply.kind,
                    address,
                    state: reply.state,
                    reachable: true,
                    error: String::new(),
                    last_seen_unix_ms: now,
                    inputs: reply.inputs,
                }
            }
            Err(error) => {
                let (id, kind) = self.last_id.lock().map(|g| g.clone()).unwrap_or_default();
                MemberStatus {
                    member_id: if id.is_empty() { address.clone() } else { id },
                    kind: kind as i32,
                    address,
                    state: CaptureState::Unspecified as i32,
                    reachable: false,
                    error,
                    last_seen_unix_ms: self.last_seen_ms.lock().map(|g| *g).unwrap_or(0),
                    inputs: Vec::new(),
                }
            }
        }
    }
}

/// Calls every member selected by `selectors` (all when empty) concurrently: SetStatus when
/// `request` is given, else Check.
pub async fn fan_out(
    members: &[Member],
    selectors: &[String],
    request: Option<SetStatusRequest>,
    timeout: Duration,
) -> Vec<MemberStatus> {
    let calls = members
        .iter()
        .filter(|m| selectors.is_empty() || selectors.iter().any(|s| m.matches(s)))
        .map(|m| m.status(request.clone(), timeout));
    join_all(calls).await
}
