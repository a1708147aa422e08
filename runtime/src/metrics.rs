//! The Prometheus scrape endpoint every service serves on `metrics_listen`: `GET /metrics` in the
//! text exposition format (0.0.4), rendered from the services' [`Counters`] at scrape time, plus
//! the standard process metrics ([`crate::process`]).
//! Served by [`crate::http`] (bounded connections, stops with the service's cancellation token).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use tokio_util::sync::CancellationToken;

use crate::counters::Counters;

/// Content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for /metrics on {addr} (metrics_listen): {}", crate::server::bind_problem(.error))]
pub struct MetricsError {
    /// The address.
    pub addr: SocketAddr,
    /// The OS error (in the message, not a separate cause).
    pub error: std::io::Error,
}

/// The text of every metric of `sets`, in order, then the process metrics (once per endpoint:
/// the services of `sipcapture up` share one process).
pub fn render(sets: &[Arc<Counters>]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for counters in sets {
        counters.render_prometheus(&mut out);
    }
    crate::process::ProcessStats::read().render(&mut out);
    out
}

/// Binds `addr` and serves `/metrics` for `sets` until `shutdown` is cancelled; returns the
/// bound address (port 0 picks a free one).
pub async fn serve(
    addr: SocketAddr,
    sets: Vec<Arc<Counters>>,
    shutdown: CancellationToken,
) -> Result<SocketAddr, MetricsError> {
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
    crate::http::serve(addr, app, shutdown, "prometheus /metrics")
        .await
        .map_err(|error| MetricsError { addr, error })
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

    /// Three services in one process (`sipcapture up`): every family declared once, its
    /// samples together after its HELP and TYPE, no series twice, process metrics once.
    #[test]
    fn one_endpoint_for_several_services_has_no_duplicates() {
        const COLLECTOR: crate::counters::Catalog = crate::counters::Catalog {
            service: "collector",
            metrics: &[
                crate::counters::counter("dropped", Some("reason"), "dropped")
                    .values(&["truncated", "bad_magic"]),
            ],
        };
        const CONTROL: crate::counters::Catalog = crate::counters::Catalog {
            service: "control",
            metrics: &[],
        };
        let sets: Vec<Arc<Counters>> = [COLLECTOR, STORER, CONTROL]
            .iter()
            .map(|c| Arc::new(Counters::new(c)))
            .collect();
        sets[0].count_drop("not_catalogued");
        sets[0].add("uncatalogued_a", 1);
        sets[0].add_labeled("uncatalogued_b", "x", 1);
        sets[0].add_labeled("uncatalogued_b", "y", 1);
        let text = render(&sets);
        let mut declared = std::collections::HashSet::new();
        let mut helps = std::collections::HashSet::new();
        let mut series = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(declared.insert(name.clone()), "TYPE twice: {name}\n{text}");
                current = name;
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(helps.insert(name.clone()), "HELP twice: {name}");
            } else {
                let (key, value) = line.rsplit_once(' ').unwrap();
                value.parse::<f64>().unwrap();
                let name = key.split('{').next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| *f == current))
                    .unwrap_or(name);
                assert_eq!(family, current, "sample outside its family: {line}");
                assert!(series.insert(key.to_owned()), "series twice: {key}");
            }
        }
        for service in ["collector", "storer", "control"] {
            assert!(declared.contains(&format!("sipcapture_{service}_build_info")));
        }
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(declared.contains("process_resident_memory_bytes"), "{text}");
        }
    }

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
