//! Who may change state: bearer-token checks and mTLS identity allow-lists for mutating calls
//! (status and control changes, member registration) when they are configured.

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

/// The rule for mutating calls of one service: a bearer token and/or an allow-list of client
/// certificate identities (`grpc_admin_identities`). With neither configured every call is
/// allowed (a closed network or a TLS client CA is then the only gate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorizer {
    token: Option<String>,
    identities: Vec<String>,
}

impl Authorizer {
    /// A rule from the configured token and identities (empty values ignored).
    pub fn new(token: Option<String>, identities: Vec<String>) -> Self {
        Authorizer {
            token: token.filter(|t| !t.is_empty()),
            identities: identities.into_iter().filter(|i| !i.is_empty()).collect(),
        }
    }

    /// Whether any credential is required.
    pub fn is_open(&self) -> bool {
        self.token.is_none() && self.identities.is_empty()
    }

    /// The token, for calls this service makes on behalf of an authorised caller.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Allows the call when the rule is open, when the caller's verified certificate has a
    /// name on the allow-list, or when it sends the right bearer token. A caller with a
    /// certificate not on the list and no valid token gets PERMISSION_DENIED; one without any
    /// credential (or a wrong token) UNAUTHENTICATED.
    pub fn check<T>(&self, request: &tonic::Request<T>) -> Result<(), Status> {
        if self.is_open() {
            return Ok(());
        }
        let names = crate::tls::peer_names(request);
        if names.iter().any(|n| self.identities.contains(n)) {
            return Ok(());
        }
        if self.token.is_some() && check_bearer(request.metadata(), self.token.as_deref()).is_ok() {
            return Ok(());
        }
        match names.first() {
            Some(name) if !self.identities.is_empty() => Err(Status::permission_denied(format!(
                "client identity {name:?} is not in grpc_admin_identities"
            ))),
            _ if self.token.is_some() => {
                Err(Status::unauthenticated("missing or wrong bearer token"))
            }
            _ => Err(Status::unauthenticated(
                "a client certificate listed in grpc_admin_identities is required",
            )),
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

        let certs_only = Authorizer::new(None, vec!["admin".into()]);
        let err = certs_only.check(&tonic::Request::new(())).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("grpc_admin_identities"));
    }
}
