//! The Prometheus scrape endpoint every service serves on `metrics_listen`: `GET /metrics` in the
//! text exposition format (0.0.4), rendered from the services' [`Counters`] at scrape time.
//! A small axum (hyper HTTP/1.1) server that stops with the service's cancellation token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::counters::Counters;

/// Content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for /metrics on {addr} (metrics_listen): {source}")]
pub struct MetricsError {
    /// The address.
    pub addr: SocketAddr,
    /// The OS error.
    pub source: std::io::Error,
}

/// The text of every metric of `sets`, in order.
pub fn render(sets: &[Arc<Counters>]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for counters in sets {
        counters.render_prometheus(&mut out);
    }
    out
}

/// Binds `addr` and serves `/metrics` for `sets` until `shutdown` is cancelled; returns the
/// bound address (port 0 picks a free one).
pub async fn serve(
    addr: SocketAddr,
    sets: Vec<Arc<Counters>>,
    shutdown: CancellationToken,
) -> Result<SocketAddr, MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError { addr, source })?;
    let sets = Arc::new(sets);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let sets = sets.clone();
            async move {
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, CONTENT_TYPE)],
                    render(&sets),
                )
                    .into_response()
            }
        }),
    );
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
    tracing::info!(addr = %bound, "prometheus /metrics listening");
    Ok(bound)
}

/// Starts the endpoint when `addr` is set (the services' `metrics_listen`).
pub async fn serve_if(
    addr: Option<SocketAddr>,
    sets: Vec<Arc<Counters>>,
    shutdown: &CancellationToken,
) -> Result<Option<SocketAddr>, MetricsError> {
    match addr {
        Some(addr) => Ok(Some(serve(addr, sets, shutdown.clone()).await?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const STORER: crate::counters::Catalog = crate::counters::Catalog {
        service: "storer",
        metrics: &[crate::counters::counter(
            "batches_committed",
            None,
            "committed",
        )],
    };

    #[tokio::test]
    async fn serves_the_text_format() {
        let counters = Arc::new(Counters::new(&STORER));
        counters.add("batches_committed", 2);
        let stop = CancellationToken::new();
        let addr = serve("127.0.0.1:0".parse().unwrap(), vec![counters], stop.clone())
            .await
            .unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("text/plain; version=0.0.4"), "{text}");
        assert!(
            text.contains("sipcapture_storer_batches_committed_total 2\n"),
            "{text}"
        );
        stop.cancel();
    }
}
