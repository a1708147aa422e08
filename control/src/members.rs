//! Members as control sees them: remote ones reached over gRPC (StatusService) — configured,
//! registered through Watch, or found in DNS — and the local one of `sipcapture up`. Fan-out
//! calls every member concurrently with a per-call deadline and reports, per member, what it
//! acknowledged or why it did not answer; nobody is hidden.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::future::join_all;
use sipcapture_proto::v1::status_service_client::StatusServiceClient;
use sipcapture_proto::v1::{
    CaptureState, CheckRequest, MemberKind, MemberStatus, SetStatusRequest, StatusReply,
};
use sipcapture_runtime::auth::with_bearer;
use sipcapture_runtime::status::StatusServer;
use sipcapture_runtime::tls::GrpcClientTls;

/// How control reaches a member.
#[derive(Debug, Clone)]
pub enum MemberLink {
    /// A StatusService at a URL.
    Remote(String),
    /// The in-process member of `sipcapture up`.
    Local(StatusServer),
}

/// How control learnt of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Listed in the config.
    Static,
    /// Registered through Watch.
    Registered,
    /// Found in DNS.
    Dns,
    /// In-process.
    Local,
}

#[derive(Debug, Default, Clone)]
struct Seen {
    last_seen_ms: i64,
    member_id: String,
    kind: i32,
}

/// A member and what control last heard from it.
#[derive(Debug)]
pub struct Member {
    /// How to reach it.
    pub link: MemberLink,
    /// How it was found.
    pub origin: Origin,
    seen: Mutex<Seen>,
    /// Watch streams open for it (a registered member leaves with its last one).
    watches: AtomicUsize,
}

impl Member {
    /// A member that has not answered yet.
    pub fn new(link: MemberLink, origin: Origin) -> Self {
        let seen = match &link {
            MemberLink::Local(server) => Seen {
                last_seen_ms: 0,
                member_id: server.member_id().to_owned(),
                kind: server.kind() as i32,
            },
            MemberLink::Remote(_) => Seen::default(),
        };
        Member {
            link,
            origin,
            seen: Mutex::new(seen),
            watches: AtomicUsize::new(0),
        }
    }

    /// The address shown for it.
    pub fn address(&self) -> String {
        match &self.link {
            MemberLink::Remote(url) => url.clone(),
            MemberLink::Local(_) => "local".to_owned(),
        }
    }

    /// The id it last reported (empty before it answered).
    pub fn member_id(&self) -> String {
        self.seen
            .lock()
            .map(|s| s.member_id.clone())
            .unwrap_or_default()
    }

    /// Records what a registration told about the member.
    pub fn note_identity(&self, member_id: &str, kind: MemberKind) {
        if let Ok(mut s) = self.seen.lock() {
            s.member_id = member_id.to_owned();
            s.kind = kind as i32;
            s.last_seen_ms = chrono::Utc::now().timestamp_millis();
        }
    }

    /// Whether a selector (member id or address) names this member.
    pub fn matches(&self, selector: &str) -> bool {
        self.address() == selector || self.member_id() == selector
    }

    /// A registered member whose Watch streams have all ended.
    pub fn is_departed(&self) -> bool {
        self.origin == Origin::Registered && self.watches.load(Ordering::SeqCst) == 0
    }

    /// Whether control may send its bearer token to this member: never in clear text to an
    /// address a caller registered (only the operator's configured and DNS members, the
    /// in-process one, and `https://` URLs).
    fn may_receive_token(&self) -> bool {
        match &self.link {
            MemberLink::Local(_) => true,
            MemberLink::Remote(url) => {
                self.origin != Origin::Registered || url.starts_with("https://")
            }
        }
    }

    async fn call(
        &self,
        request: Option<SetStatusRequest>,
        timeout: Duration,
        token: Option<&str>,
        tls: &GrpcClientTls,
    ) -> Result<StatusReply, String> {
        // A registered plain-http member gets no token: it follows the change through its
        // Watch stream, and control checks it until it reports the new state (or the
        // deadline, when its reply shows what it applied).
        let (request, token, expected) = if token.is_some() && !self.may_receive_token() {
            (None, None, request.as_ref().and_then(expected_state))
        } else {
            (request, token, None)
        };
        match &self.link {
            MemberLink::Local(server) => match request {
                Some(req) => server.apply(&req).map_err(|s| s.message().to_owned()),
                None => Ok(server.reply()),
            },
            MemberLink::Remote(url) => {
                let call = async {
                    let channel = tls
                        .endpoint(url)
                        .map_err(|e| e.to_string())?
                        .connect_timeout(timeout)
                        .connect()
                        .await
                        .map_err(|e| format!("unreachable: {e}"))?;
                    let mut client = StatusServiceClient::new(channel);
                    let reply = match request {
                        Some(req) => {
                            client
                                .set_status(with_bearer(tonic::Request::new(req), token))
                                .await
                        }
                        None => client.check(CheckRequest {}).await,
                    };
                    let mut reply = reply
                        .map(tonic::Response::into_inner)
                        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
                    let deadline = tokio::time::Instant::now() + timeout.mul_f32(0.8);
                    while expected.is_some_and(|want| reply.state != want as i32)
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        reply = client
                            .check(CheckRequest {})
                            .await
                            .map(tonic::Response::into_inner)
                            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
                    }
                    Ok(reply)
                };
                tokio::time::timeout(timeout, call)
                    .await
                    .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
            }
        }
    }

    /// Calls the member (SetStatus with a request, else Check) and reports the outcome.
    pub async fn status(
        &self,
        request: Option<SetStatusRequest>,
        timeout: Duration,
        token: Option<&str>,
        tls: &GrpcClientTls,
    ) -> MemberStatus {
        let address = self.address();
        // A departed member is not dialled: its address came from a registration that ended.
        let outcome = if self.is_departed() {
            Err("its watch stream ended: it leaves the registry after registered_member_linger_secs".to_owned())
        } else {
            self.call(request, timeout, token, tls).await
        };
        match outcome {
            Ok(reply) => {
                let now = chrono::Utc::now().timestamp_millis();
                if let Ok(mut s) = self.seen.lock() {
                    *s = Seen {
                        last_seen_ms: now,
                        member_id: reply.member_id.clone(),
                        kind: reply.kind,
                    };
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
                let seen = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
                MemberStatus {
                    member_id: if seen.member_id.is_empty() {
                        address.clone()
                    } else {
                        seen.member_id
                    },
                    kind: seen.kind,
                    address,
                    state: CaptureState::Unspecified as i32,
                    reachable: false,
                    error,
                    last_seen_unix_ms: seen.last_seen_ms,
                    inputs: Vec::new(),
                }
            }
        }
    }
}

/// The state a whole-member ON or OFF leads to (None for a per-input change).
fn expected_state(request: &SetStatusRequest) -> Option<CaptureState> {
    if !request.inputs.is_empty() {
        return None;
    }
    match sipcapture_proto::v1::CaptureAction::try_from(request.action)
        .ok()?
        .target()?
    {
        true => Some(CaptureState::Enabled),
        false => Some(CaptureState::Disabled),
    }
}

/// Every member control knows.
#[derive(Debug, Default)]
pub struct Registry {
    members: RwLock<Vec<Arc<Member>>>,
}

impl Registry {
    /// Registers a Watch caller at `url`: the existing member with that address, or a new
    /// registered one. When `max_registered` registered members are already known, a departed
    /// one (no Watch stream open) makes room, else the registration is refused. Pair with
    /// [`Registry::watch_ended`] when the stream ends.
    pub fn register(&self, url: &str, max_registered: usize) -> Result<Arc<Member>, RegistryFull> {
        let Ok(mut members) = self.members.write() else {
            return Err(RegistryFull);
        };
        let member = if let Some(existing) = members.iter().find(|m| m.address() == url) {
            existing.clone()
        } else {
            let registered = members
                .iter()
                .filter(|m| m.origin == Origin::Registered)
                .count();
            if registered >= max_registered {
                let departed = members.iter().position(|m| m.is_departed());
                let Some(departed) = departed else {
                    return Err(RegistryFull);
                };
                members.remove(departed);
            }
            let member = Arc::new(Member::new(
                MemberLink::Remote(url.to_owned()),
                Origin::Registered,
            ));
            members.push(member.clone());
            member
        };
        member.watches.fetch_add(1, Ordering::SeqCst);
        Ok(member)
    }

    /// Ends one Watch stream of `member`; returns true when it was the last one (the member
    /// has departed: it is reported unreachable without being dialled until [`Registry::remove_departed`]).
    pub fn watch_ended(&self, member: &Arc<Member>) -> bool {
        member.watches.fetch_sub(1, Ordering::SeqCst) == 1
    }

    /// Removes `member` if it is a registered member that has departed (no Watch stream
    /// re-opened since); configured, DNS and local members stay.
    pub fn remove_departed(&self, member: &Arc<Member>) {
        let Ok(mut members) = self.members.write() else {
            return;
        };
        if member.is_departed() {
            members.retain(|m| !Arc::ptr_eq(m, member));
        }
    }

    /// Adds a member unless one with the same address exists; returns the member.
    pub fn add(&self, link: MemberLink, origin: Origin) -> Arc<Member> {
        let candidate = Member::new(link, origin);
        let address = candidate.address();
        let Ok(mut members) = self.members.write() else {
            return Arc::new(candidate);
        };
        if let Some(existing) = members.iter().find(|m| m.address() == address) {
            return existing.clone();
        }
        let member = Arc::new(candidate);
        members.push(member.clone());
        member
    }

    /// Replaces the DNS-found members with `urls` (others are kept).
    pub fn set_dns(&self, urls: &[String]) {
        let Ok(mut members) = self.members.write() else {
            return;
        };
        members.retain(|m| m.origin != Origin::Dns || urls.contains(&m.address()));
        for url in urls {
            if !members.iter().any(|m| m.address() == *url) {
                members.push(Arc::new(Member::new(
                    MemberLink::Remote(url.clone()),
                    Origin::Dns,
                )));
            }
        }
    }

    /// A snapshot of the members.
    pub fn all(&self) -> Vec<Arc<Member>> {
        self.members.read().map(|m| m.clone()).unwrap_or_default()
    }
}

/// The registry already holds `max_registered_members` registered members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("control's registry is full (max_registered_members)")]
pub struct RegistryFull;

/// Calls every member selected by `selectors` (all when empty) concurrently: SetStatus when
/// `request` is given, else Check.
pub async fn fan_out(
    members: &[Arc<Member>],
    selectors: &[String],
    request: Option<SetStatusRequest>,
    timeout: Duration,
    token: Option<&str>,
    tls: &GrpcClientTls,
) -> Vec<MemberStatus> {
    let calls = members
        .iter()
        .filter(|m| selectors.is_empty() || selectors.iter().any(|s| m.matches(s)))
        .map(|m| m.status(request.clone(), timeout, token, tls));
    join_all(calls).await
}

/// Re-resolves `names` (`host:port`) every `every` and replaces the DNS members with the
/// addresses found (`scheme://address`), until `shutdown`.
pub async fn refresh_dns(
    registry: Arc<Registry>,
    names: Vec<String>,
    scheme: &'static str,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let mut urls = Vec::new();
        for name in &names {
            match tokio::net::lookup_host(name.as_str()).await {
                Ok(addrs) => urls.extend(addrs.map(|a| format!("{scheme}://{a}"))),
                Err(e) => tracing::warn!(name, error = %e, "cannot resolve member name"),
            }
        }
        urls.sort();
        urls.dedup();
        registry.set_dns(&urls);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dns_names_become_members_and_static_ones_stay() {
        let registry = Arc::new(Registry::default());
        registry.add(
            MemberLink::Remote("http://10.9.9.9:9062".into()),
            Origin::Static,
        );
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(refresh_dns(
            registry.clone(),
            vec!["localhost:9063".into()],
            "http",
            Duration::from_secs(3600),
            shutdown.clone(),
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let addrs: Vec<String> = registry.all().iter().map(|m| m.address()).collect();
            if addrs.iter().any(|a| a == "http://127.0.0.1:9063") {
                assert!(addrs.contains(&"http://10.9.9.9:9062".to_owned()));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{addrs:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A later resolution without the address drops it; static members stay.
        registry.set_dns(&[]);
        let addrs: Vec<String> = registry.all().iter().map(|m| m.address()).collect();
        assert_eq!(addrs, vec!["http://10.9.9.9:9062".to_owned()]);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[test]
    fn registrations_are_capped_and_departed_members_make_room() {
        let registry = Registry::default();
        registry.add(
            MemberLink::Remote("http://10.0.0.1:1".into()),
            Origin::Static,
        );
        let a = registry.register("http://127.0.0.1:1", 2).unwrap();
        let again = registry.register("http://127.0.0.1:1", 2).unwrap();
        assert!(Arc::ptr_eq(&a, &again), "one member per address");
        let b = registry.register("http://127.0.0.1:2", 2).unwrap();
        assert_eq!(
            registry.register("http://127.0.0.1:3", 2).unwrap_err(),
            RegistryFull
        );
        // `a` has two streams: the first end does not make it depart.
        assert!(!registry.watch_ended(&a));
        assert!(registry.watch_ended(&a));
        assert!(a.is_departed() && !b.is_departed());
        // A full registry evicts the departed member for a new one.
        let c = registry.register("http://127.0.0.1:3", 2).unwrap();
        let addrs: Vec<String> = registry.all().iter().map(|m| m.address()).collect();
        assert_eq!(
            addrs,
            [
                "http://10.0.0.1:1",
                "http://127.0.0.1:2",
                "http://127.0.0.1:3"
            ]
        );
        assert!(registry.watch_ended(&c));
        registry.remove_departed(&c);
        registry.remove_departed(&b);
        assert_eq!(registry.all().len(), 2, "b still watches; c left");
    }
}
