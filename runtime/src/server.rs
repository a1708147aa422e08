//! Serving a set of gRPC services the same way in every binary: `grpc.health.v1`, server
//! reflection v1 **and** v1alpha (grpcurl 1.8 speaks only v1alpha), a global stream limit,
//! per-connection stream and connection limits ([`GrpcLimits`]), optional TLS / mTLS with
//! certificates reloaded on change ([`crate::tls::ReloadingTls`]) and a graceful shutdown on a
//! cancellation token.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::config::ConfigError;
use crate::counters::{Counters, worth_logging};
use crate::tls::ReloadingTls;

/// Limits of a gRPC listener (`[grpc_limits]`), with defaults safe for a capture fleet.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcLimits {
    /// Largest message a service accepts, bytes (a collector batch is bounded by the
    /// collector's `batch_max_bytes` of payload plus per-record columns).
    pub max_decoding_message_size: usize,
    /// Largest message a service sends, bytes.
    pub max_encoding_message_size: usize,
    /// Concurrent HTTP/2 streams (calls) one connection may open.
    pub max_concurrent_streams: u32,
    /// Concurrent connections (TCP, TLS included); more wait in the accept queue.
    pub max_connections: usize,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        GrpcLimits {
            max_decoding_message_size: 16 * 1024 * 1024,
            max_encoding_message_size: 16 * 1024 * 1024,
            max_concurrent_streams: 256,
            max_connections: 1024,
        }
    }
}

impl GrpcLimits {
    /// Checks ranges; the error names `<prefix>.<key>`.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let checks = [
            ("max_decoding_message_size", self.max_decoding_message_size),
            ("max_encoding_message_size", self.max_encoding_message_size),
            (
                "max_concurrent_streams",
                usize::try_from(self.max_concurrent_streams).unwrap_or(usize::MAX),
            ),
            ("max_connections", self.max_connections),
        ];
        for (key, value) in checks {
            if value == 0 {
                return Err(ConfigError::invalid(
                    format!("{prefix}.{key}"),
                    "must be at least 1",
                ));
            }
        }
        if self.max_decoding_message_size < 64 * 1024 {
            return Err(ConfigError::invalid(
                format!("{prefix}.max_decoding_message_size"),
                "must be at least 65536 (a HEP packet with its columns)",
            ));
        }
        Ok(())
    }
}

/// How [`serve_with`] serves.
#[derive(Debug, Clone)]
pub struct ServeOptions<'a> {
    /// Names reported SERVING by health.
    pub service_names: &'a [&'a str],
    /// Global cap on concurrent calls (streams included).
    pub max_concurrent_calls: usize,
    /// Connection and stream limits.
    pub limits: GrpcLimits,
    /// TLS (mTLS when it has a client CA); plain TCP when none.
    pub tls: Option<Arc<ReloadingTls>>,
    /// Seconds a client has to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Where refused handshakes are counted (`grpc_tls_refused`).
    pub counters: Option<Arc<Counters>>,
    /// What health follows beyond "the server runs" (the storer's database); none: SERVING
    /// while serving.
    pub readiness: Option<crate::health::Readiness>,
}

impl<'a> ServeOptions<'a> {
    /// Plain TCP with default limits.
    pub fn new(service_names: &'a [&'a str], max_concurrent_calls: usize) -> Self {
        ServeOptions {
            service_names,
            max_concurrent_calls,
            limits: GrpcLimits::default(),
            tls: None,
            handshake_timeout: Duration::from_secs(crate::tls::DEFAULT_HANDSHAKE_TIMEOUT),
            counters: None,
            readiness: None,
        }
    }

    /// A service's `[grpc_tls]` and `[grpc_limits]`: loads the certificates (TLS when `cert` is
    /// set; the error names the key), starts their reloader (file change every
    /// `reload_interval`, SIGHUP) until `shutdown`, and counts handshakes in `counters`.
    pub fn with_grpc_tls(
        self,
        tls: &crate::tls::GrpcServerTls,
        limits: GrpcLimits,
        counters: Arc<Counters>,
        shutdown: &CancellationToken,
    ) -> Result<Self, crate::tls::TlsError> {
        let reloading = ReloadingTls::for_grpc(tls, "grpc_tls", Some(Arc::clone(&counters)))?;
        if let Some(reloading) = &reloading {
            reloading.spawn_reloader(Duration::from_secs(tls.reload_interval), shutdown.clone());
        }
        Ok(ServeOptions {
            limits,
            tls: reloading,
            handshake_timeout: Duration::from_secs(tls.handshake_timeout),
            counters: Some(counters),
            ..self
        })
    }
}

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service could not be built from the descriptor sets.
    #[error("cannot build gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The listen address could not be bound.
    #[error("cannot listen for gRPC on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Binds a gRPC listener, naming the address in the error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves `routes` on `listener` over plain TCP with default limits; see [`serve_with`].
pub async fn serve(
    listener: TcpListener,
    routes: RoutesBuilder,
    service_names: &[&str],
    max_concurrent_calls: usize,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    serve_with(
        listener,
        routes,
        &ServeOptions::new(service_names, max_concurrent_calls),
        shutdown,
    )
    .await
}

/// Serves `routes` on `listener` with health (every name in `service_names` reported SERVING,
/// plus the overall "" entry; those `options.readiness` names follow it) and reflection v1 + v1alpha, until `shutdown` is cancelled. In-flight
/// calls finish before this returns.
pub async fn serve_with(
    listener: TcpListener,
    mut routes: RoutesBuilder,
    options: &ServeOptions<'_>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let service_names = options.service_names;
    let max_concurrent_calls = options.max_concurrent_calls;
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in service_names {
        reporter
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let follow_stop = shutdown.child_token();
    if let Some(readiness) = options.readiness.clone() {
        crate::health::apply(&reporter, &readiness).await;
        tokio::spawn(crate::health::follow(
            reporter.clone(),
            readiness,
            follow_stop.clone(),
        ));
    }

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sipcapture_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sipcapture_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    routes
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    // A global cap on concurrent calls (streams included): a flood of connections cannot
    // exhaust the process; excess calls wait for a slot.
    let limit = tower::limit::GlobalConcurrencyLimitLayer::new(max_concurrent_calls.max(1));
    let on_shutdown = shutdown.clone();
    let stopped = async move {
        on_shutdown.cancelled().await;
    };
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(options.limits.max_concurrent_streams)
        .layer(limit)
        .add_routes(routes.routes());
    let connections = Arc::new(Semaphore::new(options.limits.max_connections.max(1)));
    let accept_stop = shutdown.child_token();
    let result = match &options.tls {
        None => {
            let incoming = accept_plain(listener, connections, accept_stop.clone());
            router.serve_with_incoming_shutdown(incoming, stopped).await
        }
        Some(tls) => {
            let incoming = accept_tls(
                listener,
                connections,
                Arc::clone(tls),
                options.handshake_timeout,
                options.counters.clone(),
                accept_stop.clone(),
            );
            router.serve_with_incoming_shutdown(incoming, stopped).await
        }
    };
    accept_stop.cancel();
    follow_stop.cancel();
    // Health goes NOT_SERVING once the server stops, for anyone still holding the reporter.
    for name in service_names {
        reporter
            .set_service_status(*name, tonic_health::ServingStatus::NotServing)
            .await;
    }
    result.map_err(ServeError::from)
}

/// A TCP connection holding one of the listener's connection slots until it closes.
#[derive(Debug)]
pub struct LimitedTcp {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for LimitedTcp {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LimitedTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Connections accepted and ready for the server (after their TLS handshake).
const READY_QUEUE: usize = 64;

/// Accepts while a connection slot is free (beyond `max_connections`, clients wait in the
/// kernel's accept queue).
async fn accept_one(
    listener: &TcpListener,
    connections: &Arc<Semaphore>,
    stop: &CancellationToken,
) -> Option<LimitedTcp> {
    loop {
        let slot = tokio::select! {
            () = stop.cancelled() => return None,
            slot = Arc::clone(connections).acquire_owned() => slot.ok()?,
        };
        let accepted = tokio::select! {
            () = stop.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ignored = stream.set_nodelay(true);
                return Some(LimitedTcp {
                    stream,
                    _slot: slot,
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "grpc accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn accept_plain(
    listener: TcpListener,
    connections: Arc<Semaphore>,
    stop: CancellationToken,
) -> ReceiverStream<std::io::Result<LimitedTcp>> {
    let (tx, rx) = mpsc::channel(READY_QUEUE);
    tokio::spawn(async move {
        while let Some(conn) = accept_one(&listener, &connections, &stop).await {
            if tx.send(Ok(conn)).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

type TlsConn = tokio_rustls::server::TlsStream<LimitedTcp>;

/// Accepts connections and runs each TLS handshake in its own task (a slow or hostile client
/// cannot hold up the others), bounded by `handshake_timeout`. Refused handshakes (no or an
/// untrusted client certificate, wrong protocol) are counted and logged.
fn accept_tls(
    listener: TcpListener,
    connections: Arc<Semaphore>,
    tls: Arc<ReloadingTls>,
    handshake_timeout: Duration,
    counters: Option<Arc<Counters>>,
    stop: CancellationToken,
) -> ReceiverStream<std::io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(READY_QUEUE);
    tokio::spawn(async move {
        while let Some(conn) = accept_one(&listener, &connections, &stop).await {
            let peer = conn.stream.peer_addr().ok();
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            let counters = counters.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(conn));
                let error = match handshake.await {
                    Ok(Ok(stream)) => {
                        let _closed = tx.send(Ok(stream)).await;
                        return;
                    }
                    // Closed before or during the handshake without a TLS error: a TCP probe
                    // (Kubernetes tcpSocket, load balancer health check) or a port scan, not a
                    // refused client. Counted apart so `grpc_tls_refused` stays a security signal.
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        if let Some(c) = &counters {
                            c.add("grpc_tls_closed_early", 1);
                        }
                        tracing::debug!(
                            ?peer,
                            "connection closed before the tls handshake completed"
                        );
                        return;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no handshake within {handshake_timeout:?}"),
                };
                let total = counters
                    .as_ref()
                    .map_or(1, |c| c.add("grpc_tls_refused", 1));
                if worth_logging(total) {
                    tracing::warn!(?peer, %error, total, "grpc tls handshake refused");
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A token cancelled on SIGINT or SIGTERM (Kubernetes), for graceful shutdown.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ignored = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ignored = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    async fn health(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map(|_| ())
    }

    #[tokio::test]
    async fn connections_over_the_limit_wait_for_a_free_slot() {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let server = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut options = ServeOptions::new(&[], 8);
                options.limits.max_connections = 1;
                serve_with(listener, RoutesBuilder::default(), &options, stop).await
            }
        });
        let endpoint = tonic::transport::Endpoint::from_shared(url).unwrap();
        let first = endpoint.connect().await.unwrap();
        health(first.clone()).await.unwrap();
        // The second connection waits in the accept queue while the first holds the slot.
        let second = endpoint.connect_lazy();
        let waiting = tokio::time::timeout(Duration::from_millis(300), health(second.clone()));
        assert!(waiting.await.is_err(), "served beyond max_connections");
        drop(first);
        tokio::time::timeout(Duration::from_secs(10), health(second))
            .await
            .unwrap()
            .unwrap();
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
