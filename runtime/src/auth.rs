//! Who may change state: one rule per role ([`Role`]: the collector role delivers to storers,
//! the member role registers with control, the admin role switches capture), each a bearer
//! token and/or an allow-list of mTLS client identities ([`Authorizer`]). A role with neither
//! configured is open only to loopback peers and verified client certificates, unless
//! `allow_insecure = true` (the safe default; docs/SECURITY.md).

use std::net::SocketAddr;

use tonic::Status;
use tonic::metadata::MetadataMap;

/// The metadata key carrying `Bearer <token>`.
pub const AUTHORIZATION: &str = "authorization";

/// Accepts the call when no token is configured, or when `authorization: Bearer <token>`
/// matches; otherwise UNAUTHENTICATED.
pub fn check_bearer(metadata: &MetadataMap, expected: Option<&str>) -> Result<(), Status> {
    let Some(expected) = expected.filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let given = metadata
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Status::unauthenticated("missing or wrong bearer token"))
    }
}

/// Adds `authorization: Bearer <token>` to a request when a token is given.
pub fn with_bearer<T>(mut request: tonic::Request<T>, token: Option<&str>) -> tonic::Request<T> {
    if let Some(token) = token.filter(|t| !t.is_empty())
        && let Ok(value) = format!("Bearer {token}").parse()
    {
        request.metadata_mut().insert(AUTHORIZATION, value);
    }
    request
}

/// What a caller may do; each role has its own token and identity allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Delivers records to a storer (StorerService.Deliver).
    Collector,
    /// Registers with control (ControlService.Watch).
    Member,
    /// Switches capture (SetStatus on control and on every member).
    #[default]
    Admin,
}

impl Role {
    /// The role's token key (`auth_token` is every role's fallback).
    pub fn token_key(self) -> &'static str {
        match self {
            Role::Collector => "collector_token",
            Role::Member => "member_token",
            Role::Admin => "admin_token",
        }
    }

    /// The role's identity allow-list key.
    pub fn identities_key(self) -> &'static str {
        match self {
            Role::Collector => "grpc_collector_identities",
            Role::Member => "grpc_member_identities",
            Role::Admin => "grpc_admin_identities",
        }
    }

    /// The role's name in logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Role::Collector => "collector",
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
}

/// Who passed a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A verified client certificate; its identity (first name).
    Certificate(String),
    /// The role's bearer token.
    Token,
    /// No credential: a loopback peer, an in-process call, or `allow_insecure`.
    Anonymous,
}

/// The rule for one role's mutating calls: a bearer token and/or an allow-list of client
/// certificate identities. With an empty allow-list, the collector and member roles accept any
/// certificate the listener's client CA verified (the CA is their gate); the admin role only
/// listed ones. With neither token nor list (open), calls are accepted from loopback peers and
/// verified certificates only, unless `allow_insecure`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorizer {
    role: Role,
    token: Option<String>,
    identities: Vec<String>,
    allow_insecure: bool,
}

impl Authorizer {
    /// An admin rule from the configured token and identities (empty values ignored), open to
    /// any peer when both are empty (see [`Authorizer::for_role`] for the safe default).
    pub fn new(token: Option<String>, identities: Vec<String>) -> Self {
        Authorizer::for_role(Role::Admin, token, identities, true)
    }

    /// The rule of `role`; `allow_insecure` opens an unconfigured role to every peer.
    pub fn for_role(
        role: Role,
        token: Option<String>,
        identities: Vec<String>,
        allow_insecure: bool,
    ) -> Self {
        Authorizer {
            role,
            token: token.filter(|t| !t.is_empty()),
            identities: identities.into_iter().filter(|i| !i.is_empty()).collect(),
            allow_insecure,
        }
    }

    /// The role this rule guards.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether no credential is configured (the loopback rule then applies).
    pub fn is_open(&self) -> bool {
        self.token.is_none() && self.identities.is_empty()
    }

    /// Whether any peer is accepted without a credential.
    pub fn accepts_anyone(&self) -> bool {
        self.is_open() && self.allow_insecure
    }

    /// The token, for calls this service makes on behalf of an authorised caller.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Allows the call and says who made it; see [`Authorizer::check_as`].
    pub fn check<T>(&self, request: &tonic::Request<T>) -> Result<(), Status> {
        self.check_as(request).map(|_| ())
    }

    /// Allows the call when the caller's verified certificate has a name on the allow-list
    /// (or, for the collector and member roles with an empty list, any verified certificate),
    /// or when it sends the role's bearer token; an open rule allows loopback peers, verified
    /// certificates and, with `allow_insecure`, everyone. A caller with a certificate not on
    /// the list and no valid token gets PERMISSION_DENIED; one without any credential (or a
    /// wrong token) UNAUTHENTICATED; a remote anonymous caller of an open rule
    /// PERMISSION_DENIED naming the keys.
    pub fn check_as<T>(&self, request: &tonic::Request<T>) -> Result<Caller, Status> {
        let names = crate::tls::peer_names(request);
        let certificate = || names.first().cloned().map(Caller::Certificate);
        if self.is_open() {
            if let Some(caller) = certificate() {
                return Ok(caller);
            }
            if self.allow_insecure || request.remote_addr().is_none_or(|a| is_loopback(&a)) {
                return Ok(Caller::Anonymous);
            }
            return Err(Status::permission_denied(format!(
                "no {} credential is configured, so this call is accepted from loopback only: \
                 set auth_token (or {}), grpc_tls.client_ca, or allow_insecure = true",
                self.role.name(),
                self.role.token_key()
            )));
        }
        let listed = if self.identities.is_empty() {
            self.role != Role::Admin
        } else {
            names.iter().any(|n| self.identities.contains(n))
        };
        if listed && let Some(caller) = certificate() {
            return Ok(caller);
        }
        if self.token.is_some() && check_bearer(request.metadata(), self.token.as_deref()).is_ok() {
            return Ok(Caller::Token);
        }
        match names.first() {
            Some(name) if !self.identities.is_empty() => Err(Status::permission_denied(format!(
                "client identity {name:?} is not in {}",
                self.role.identities_key()
            ))),
            _ if self.token.is_some() => Err(Status::unauthenticated(format!(
                "missing or wrong bearer token for the {} role",
                self.role.name()
            ))),
            _ => Err(Status::unauthenticated(format!(
                "a client certificate listed in {} is required",
                self.role.identities_key()
            ))),
        }
    }
}

/// Whether a peer is on this host (127.0.0.0/8, ::1, or IPv4-mapped loopback).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Compares two secrets in time that depends only on their lengths (no early exit at the
/// first differing byte), for bearer tokens and the HEP auth key.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_rules() {
        let req = with_bearer(tonic::Request::new(()), Some("s3cret"));
        assert!(check_bearer(req.metadata(), Some("s3cret")).is_ok());
        assert!(check_bearer(req.metadata(), None).is_ok());
        let err = check_bearer(req.metadata(), Some("other")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        let bare = tonic::Request::new(());
        assert!(check_bearer(bare.metadata(), Some("s3cret")).is_err());
    }

    #[test]
    fn authorizer_rules() {
        let open = Authorizer::new(Some(String::new()), vec![]);
        assert!(open.is_open());
        assert!(open.check(&tonic::Request::new(())).is_ok());

        let token = Authorizer::new(Some("t".into()), vec!["admin".into()]);
        let err = token.check(&tonic::Request::new(())).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        let ok = with_bearer(tonic::Request::new(()), Some("t"));
        assert!(token.check(&ok).is_ok());

        let roles = Authorizer::for_role(Role::Collector, Some("c".into()), vec![], false);
        let admin = with_bearer(tonic::Request::new(()), Some("t"));
        assert_eq!(
            roles.check(&admin).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            roles
                .check_as(&with_bearer(tonic::Request::new(()), Some("c")))
                .ok(),
            Some(Caller::Token)
        );

        let certs_only = Authorizer::new(None, vec!["admin".into()]);
        let err = certs_only.check(&tonic::Request::new(())).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("grpc_admin_identities"));
    }

    fn from(peer: &str) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        request
            .extensions_mut()
            .insert(tonic::transport::server::TcpConnectInfo {
                local_addr: None,
                remote_addr: Some(peer.parse().unwrap()),
            });
        request
    }

    #[test]
    fn an_unconfigured_role_accepts_loopback_only_unless_insecure() {
        let safe = Authorizer::for_role(Role::Admin, None, vec![], false);
        assert_eq!(
            safe.check_as(&from("127.0.0.1:5000")).ok(),
            Some(Caller::Anonymous)
        );
        assert_eq!(
            safe.check_as(&from("[::1]:5000")).ok(),
            Some(Caller::Anonymous)
        );
        assert_eq!(
            safe.check_as(&from("[::ffff:127.0.0.1]:5000")).ok(),
            Some(Caller::Anonymous)
        );
        let err = safe.check(&from("192.0.2.7:5000")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains("allow_insecure"), "{err:?}");
        let open = Authorizer::for_role(Role::Admin, None, vec![], true);
        assert!(open.accepts_anyone());
        assert!(open.check(&from("192.0.2.7:5000")).is_ok());
    }
}
