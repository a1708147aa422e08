//! The read-only web page a storer (or `sipcapture up`) serves when `web_listen` is set: `/`
//! is the search form and the list of calls, `/call?callid=…[&related=1]` the ladder of one
//! call. Plain HTML and SVG, no script (the Content-Security-Policy forbids any), nothing
//! loaded from elsewhere.
//!
//! SIP holds personal data, so the page takes the same credentials as gRPC: when the storer
//! has an `auth_token`, every request needs it, as `Authorization: Bearer <token>` or as the
//! password of HTTP Basic auth (any user name; browsers ask for it). Without a token the
//! storer refuses a `web_listen` that is not a loopback address unless
//! `web_allow_anonymous = true` says so (see [`crate::config::StorerConfig::validate`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use tokio_util::sync::CancellationToken;

use super::html::{self, FormValues, ListState};
use super::ladder::Ladder;
use super::query::View;

/// Calls per page of the web list.
pub const PAGE_SIZE: usize = 50;
/// The deepest page the list serves (bounds the rows one request walks).
pub const MAX_PAGE: usize = 200;

/// Why the page could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for the web page on {addr} (web_listen): {}", sipcapture_runtime::server::bind_problem(.error))]
pub struct WebError {
    /// The address.
    pub addr: SocketAddr,
    /// The OS error (in the message, not a separate cause).
    pub error: std::io::Error,
}

struct Web {
    view: View,
    token: Option<String>,
}

/// Binds `addr` and serves the page over `view` until `shutdown`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    view: View,
    token: Option<String>,
    shutdown: CancellationToken,
) -> Result<SocketAddr, WebError> {
    let state = Arc::new(Web { view, token });
    let app = axum::Router::new()
        .route("/", axum::routing::get(list))
        .route("/call", axum::routing::get(call))
        .with_state(state);
    sipcapture_runtime::http::serve(addr, app, shutdown, "web page")
        .await
        .map_err(|error| WebError { addr, error })
}

/// Whether the request carries the token (always, when none is configured).
fn authorised(headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let given = if let Some(bearer) = value.strip_prefix("Bearer ") {
        bearer.trim().as_bytes().to_vec()
    } else if let Some(basic) = value.strip_prefix("Basic ") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else {
            return false;
        };
        match decoded.iter().position(|&b| b == b':') {
            Some(colon) => decoded[colon + 1..].to_vec(),
            None => return false,
        }
    } else {
        return false;
    };
    sipcapture_runtime::auth::constant_time_eq(&given, token.as_bytes())
}

fn respond(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn unauthorised() -> Response {
    let mut r = respond(
        StatusCode::UNAUTHORIZED,
        "<!DOCTYPE html><title>sipcapture</title><p>This page needs the storer's auth_token \
         (HTTP Basic password, or Authorization: Bearer).</p>"
            .to_owned(),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"sipcapture\", charset=\"UTF-8\""),
    );
    r
}

/// Decodes `application/x-www-form-urlencoded` (`+` is a space, `%XX` a byte); the last
/// value of a repeated key wins.
pub fn parse_query(raw: &str) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    if let Some(b) = hex {
                        out.push(b);
                        i += 2;
                    } else {
                        out.push(b'%');
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v).trim().to_owned())
        })
        .collect()
}

fn non_empty(q: &HashMap<String, String>, key: &str) -> Option<String> {
    q.get(key).filter(|v| !v.is_empty()).cloned()
}

/// The request's query parameters once its credentials are checked (`None`: refused).
fn admit(web: &Web, headers: &HeaderMap, raw: Option<&str>) -> Option<HashMap<String, String>> {
    authorised(headers, web.token.as_deref()).then(|| parse_query(raw.unwrap_or("")))
}

async fn list(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(q) = admit(&web, &headers, raw.as_deref()) else {
        return unauthorised();
    };
    let form = FormValues {
        from: q.get("from").cloned().unwrap_or_default(),
        to: q.get("to").cloned().unwrap_or_default(),
        user: q.get("user").cloned().unwrap_or_default(),
        callid: q.get("callid").cloned().unwrap_or_default(),
        method: q.get("method").cloned().unwrap_or_default(),
        ip: q.get("ip").cloned().unwrap_or_default(),
    };
    let page = q
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_PAGE);
    let mut state = ListState {
        page,
        ..ListState::default()
    };
    let search = match form.search(chrono::Utc::now(), PAGE_SIZE, page * PAGE_SIZE) {
        Ok(search) => search,
        Err(e) => {
            state.error = Some(e.to_string());
            return respond(
                StatusCode::BAD_REQUEST,
                html::calls_page(&form, &[], &state),
            );
        }
    };
    match super::search_calls(&web.view, &search).await {
        Ok((calls, found)) => {
            state.more = found.more;
            state.partial = found.partial;
            respond(StatusCode::OK, html::calls_page(&form, &calls, &state))
        }
        Err(e) => {
            tracing::warn!(error = %e, "web search failed");
            state.error = Some(e.to_string());
            respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                html::calls_page(&form, &[], &state),
            )
        }
    }
}

async fn call(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(q) = admit(&web, &headers, raw.as_deref()) else {
        return unauthorised();
    };
    let Some(callid) = non_empty(&q, "callid") else {
        return respond(
            StatusCode::BAD_REQUEST,
            "<!DOCTYPE html><title>sipcapture</title><p>No callid given.</p>".to_owned(),
        );
    };
    let related = q.get("related").is_some_and(|v| v == "1" || v == "on");
    match web.view.call(&callid, related).await {
        Ok(messages) => respond(
            StatusCode::OK,
            html::flow_page(&callid, &Ladder::build(messages), Some("/")),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "web flow failed");
            respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "<!DOCTYPE html><title>sipcapture</title><p>{}</p>",
                    html::esc(&e.to_string())
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_as_bearer_or_basic_password() {
        let mut h = HeaderMap::new();
        assert!(authorised(&h, None));
        assert!(!authorised(&h, Some("s3cret")));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(authorised(&h, Some("s3cret")));
        assert!(!authorised(&h, Some("other")));
        // "anyone:s3cret"
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YW55b25lOnMzY3JldA=="),
        );
        assert!(authorised(&h, Some("s3cret")));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!"));
        assert!(!authorised(&h, Some("s3cret")));
    }

    #[test]
    fn query_strings() {
        let q = parse_query("user=alice+b&callid=a%40b%2Fc&x=%zz&page=2&user=carol");
        assert_eq!(q["user"], "carol");
        assert_eq!(q["callid"], "a@b/c");
        assert_eq!(q["x"], "%zz");
        assert_eq!(q["page"], "2");
    }
}
