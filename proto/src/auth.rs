//! Bearer-token checks for mutating calls (status and control changes) when a token is
//! configured.

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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
}
