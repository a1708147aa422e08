//! Serving a set of gRPC services the same way in every binary: `grpc.health.v1`, server
//! reflection v1 **and** v1alpha (grpcurl 1.8 speaks only v1alpha), a global stream limit,
//! per-connection stream and connection limits ([`GrpcLimits`]: connections in all and per
//! source address, and each connection's HTTP/2 preface, keepalive and idle deadlines, see
//! [`crate::connection`]), optional TLS / mTLS with certificates reloaded on change
//! ([`crate::tls::ReloadingTls`]) and a graceful shutdown on a cancellation token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

use crate::config::ConfigError;
use crate::connection::{
    ConnAddrs, ConnDeadlines, ConnSlots, Connections, GuardedConn, TrackStreamsLayer,
};
use crate::counters::{Counters, LogEvery};
use crate::per_ip::PerIpLimit;
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
    /// Concurrent connections from one source IP address (loopback included); more are
    /// closed at once and counted (`grpc_refused_per_ip`).
    pub max_connections_per_ip: usize,
    /// Seconds a client has to send the HTTP/2 connection preface once its connection is
    /// accepted (after the TLS handshake on TLS); then it is closed and counted
    /// (`grpc_connections_closed{reason="preface_timeout"}`).
    pub preface_timeout: u64,
    /// Seconds a connection may stay open with no call in flight before it is closed
    /// (`grpc_connections_closed{reason="idle"}`); clients reconnect on their next call.
    pub idle_timeout: u64,
    /// Seconds without a byte from the client after which the server sends an HTTP/2 PING;
    /// 0 turns keepalive off.
    pub keepalive_interval: u64,
    /// Seconds a client has to answer a keepalive PING before its connection is closed
    /// (`grpc_connections_closed{reason="keepalive"}`).
    pub keepalive_timeout: u64,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        GrpcLimits {
            max_decoding_message_size: 16 * 1024 * 1024,
            max_encoding_message_size: 16 * 1024 * 1024,
            max_concurrent_streams: 256,
            max_connections: 1024,
            max_connections_per_ip: 128,
            preface_timeout: 10,
            idle_timeout: 120,
            keepalive_interval: 60,
            keepalive_timeout: 20,
        }
    }
}

/// Longest time-out `[grpc_limits]` accepts, seconds (a week).
const MAX_TIMEOUT_SECS: u64 = 7 * 86_400;

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
            ("max_connections_per_ip", self.max_connections_per_ip),
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
        let timeouts = [
            ("preface_timeout", self.preface_timeout, 1),
            ("idle_timeout", self.idle_timeout, 1),
            ("keepalive_interval", self.keepalive_interval, 0),
            ("keepalive_timeout", self.keepalive_timeout, 1),
        ];
        for (key, value, min) in timeouts {
            if !(min..=MAX_TIMEOUT_SECS).contains(&value) {
                return Err(ConfigError::invalid(
                    format!("{prefix}.{key}"),
                    format!("must be within {min}..={MAX_TIMEOUT_SECS} seconds"),
                ));
            }
        }
        Ok(())
    }

    /// The deadlines each connection gets.
    pub fn deadlines(&self) -> ConnDeadlines {
        ConnDeadlines {
            preface: Duration::from_secs(self.preface_timeout),
            idle: Duration::from_secs(self.idle_timeout),
            silence: self
                .keepalive()
                .map(|(interval, timeout)| interval + timeout),
        }
    }

    /// HTTP/2 keepalive interval and time-out, when on.
    fn keepalive(&self) -> Option<(Duration, Duration)> {
        (self.keepalive_interval > 0).then(|| {
            (
                Duration::from_secs(self.keepalive_interval),
                Duration::from_secs(self.keepalive_timeout),
            )
        })
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
    #[error("cannot listen for gRPC on {addr}: {}", bind_problem(.error))]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error: in the message, not a separate cause (printed once).
        error: std::io::Error,
    },
}

/// Why a bind failed, in an operator's terms. Bind errors carry the OS error in their message
/// and not as a `source`, so `Error: ... Caused by: ...` does not print it twice.
pub fn bind_problem(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::AddrInUse => {
            "the port is already in use (another process, or another sipcapture, listens on it)"
                .to_owned()
        }
        ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)".to_owned()
        }
        ErrorKind::AddrNotAvailable => "the address is not one of this host's addresses".to_owned(),
        _ => error.to_string(),
    }
}

/// Binds a gRPC listener, naming the address in the error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| ServeError::Bind { addr, error })
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
    // exhaust the process; excess calls wait for a slot. Calls are counted per connection
    // first (a waiting call keeps its connection from being idle).
    let limit = tower::limit::GlobalConcurrencyLimitLayer::new(max_concurrent_calls.max(1));
    let connections = Connections::new();
    let on_shutdown = shutdown.clone();
    let stopped = async move {
        on_shutdown.cancelled().await;
    };
    let limits = &options.limits;
    // hyper's own keepalive time-out is a backstop: the connection guard closes (and counts) a
    // silent peer first, at interval + timeout.
    let (keepalive_interval, keepalive_backstop) = match limits.keepalive() {
        Some((interval, timeout)) => (Some(interval), Some(timeout.saturating_mul(2))),
        None => (None, None),
    };
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(keepalive_interval)
        .http2_keepalive_timeout(keepalive_backstop)
        .layer(TrackStreamsLayer::new(Arc::clone(&connections)))
        .layer(limit)
        .add_routes(routes.routes());
    let accept = Accept {
        slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        per_ip: PerIpLimit::new(limits.max_connections_per_ip),
        connections,
        deadlines: limits.deadlines(),
        counters: options.counters.clone(),
        stop: shutdown.child_token(),
    };
    let accept_stop = accept.stop.clone();
    let result = match &options.tls {
        None => {
            let incoming = accept_plain(listener, accept);
            router.serve_with_incoming_shutdown(incoming, stopped).await
        }
        Some(tls) => {
            let incoming = accept_tls(listener, accept, Arc::clone(tls), options.handshake_timeout);
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

/// Connections accepted and ready for the server (after their TLS handshake).
const READY_QUEUE: usize = 64;

/// How a listener accepts: its connection slots (global and per source address), the
/// deadlines each connection gets, where refusals and closes are counted.
struct Accept {
    slots: Arc<Semaphore>,
    per_ip: Arc<PerIpLimit>,
    connections: Arc<Connections>,
    deadlines: ConnDeadlines,
    counters: Option<Arc<Counters>>,
    stop: CancellationToken,
}

impl Accept {
    /// Accepts while a connection slot is free (beyond `max_connections`, clients wait in the
    /// kernel's accept queue); a client whose address already holds `max_connections_per_ip`
    /// is closed at once and counted. The slots go with the connection.
    async fn next(&self, listener: &TcpListener) -> Option<(TcpStream, ConnSlots)> {
        let slot = tokio::select! {
            () = self.stop.cancelled() => return None,
            slot = Arc::clone(&self.slots).acquire_owned() => slot.ok()?,
        };
        loop {
            let accepted = tokio::select! {
                () = self.stop.cancelled() => return None,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let Some(ip_slot) = self.per_ip.try_acquire(peer.ip()) else {
                        self.refused(peer);
                        continue;
                    };
                    let _ignored = stream.set_nodelay(true);
                    let slots = ConnSlots {
                        listener: slot,
                        address: ip_slot,
                    };
                    return Some((stream, slots));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning (logged first and every
                    // power of two).
                    static FAILED: LogEvery = LogEvery::new();
                    if let Some(total) = FAILED.tick() {
                        tracing::warn!(error = %e, total, "grpc accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Counts (and logs, first and every power of two) a connection over its address's cap.
    fn refused(&self, peer: SocketAddr) {
        static REFUSED: LogEvery = LogEvery::new();
        if let Some(total) = REFUSED.count(self.counters.as_deref(), "grpc_refused_per_ip") {
            tracing::warn!(
                %peer,
                total,
                max_connections_per_ip = self.per_ip.max(),
                "grpc connection refused: too many from one address"
            );
        }
    }

    /// `io` with the connection deadlines and `slots`, registered for call tracking.
    fn guard<IO>(&self, io: IO, addrs: ConnAddrs, slots: ConnSlots) -> GuardedConn<IO> {
        GuardedConn::new(
            io,
            addrs,
            slots,
            Arc::clone(&self.connections),
            self.deadlines,
            self.counters.clone(),
        )
    }
}

/// The (local, peer) addresses of `stream`, as tonic's `TcpConnectInfo` reports them.
fn addrs(stream: &TcpStream) -> ConnAddrs {
    (stream.local_addr().ok(), stream.peer_addr().ok())
}

fn accept_plain(
    listener: TcpListener,
    accept: Accept,
) -> ReceiverStream<std::io::Result<GuardedConn<TcpStream>>> {
    let (tx, rx) = mpsc::channel(READY_QUEUE);
    tokio::spawn(async move {
        while let Some((stream, slots)) = accept.next(&listener).await {
            let addrs = addrs(&stream);
            if tx
                .send(Ok(accept.guard(stream, addrs, slots)))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

type TlsConn = GuardedConn<tokio_rustls::server::TlsStream<TcpStream>>;

/// Accepts connections and runs each TLS handshake in its own task (a slow or hostile client
/// cannot hold up the others), bounded by `handshake_timeout`. Refused handshakes (no or an
/// untrusted client certificate, wrong protocol) are counted and logged.
fn accept_tls(
    listener: TcpListener,
    accept: Accept,
    tls: Arc<ReloadingTls>,
    handshake_timeout: Duration,
) -> ReceiverStream<std::io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(READY_QUEUE);
    let accept = Arc::new(accept);
    tokio::spawn(async move {
        while let Some((stream, slots)) = accept.next(&listener).await {
            let addrs = addrs(&stream);
            let peer = addrs.1;
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            let accept = Arc::clone(&accept);
            tokio::spawn(async move {
                let counters = &accept.counters;
                // The slots are held from accept, through the handshake.
                let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
                let error = match handshake.await {
                    Ok(Ok(stream)) => {
                        let _closed = tx.send(Ok(accept.guard(stream, addrs, slots))).await;
                        return;
                    }
                    // Closed before or during the handshake without a TLS error: a TCP probe
                    // (Kubernetes tcpSocket, load balancer health check) or a port scan, not a
                    // refused client. Counted apart so `grpc_tls_refused` stays a security signal.
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        if let Some(c) = counters {
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
                static REFUSED: LogEvery = LogEvery::new();
                if let Some(total) = REFUSED.count(counters.as_deref(), "grpc_tls_refused") {
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
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! The listener limits on real loopback sockets: the connection cap, the cap per source
    //! address, and the preface, idle and keepalive deadlines (1 s each, so the tests wait a few
    //! seconds).

    use super::*;
    use crate::counters::Catalog;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    const WAIT: Duration = Duration::from_secs(10);

    async fn health(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map(|_| ())
    }

    struct TestServer {
        addr: SocketAddr,
        endpoint: tonic::transport::Endpoint,
        counters: Arc<Counters>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<Result<(), ServeError>>,
    }

    impl TestServer {
        async fn start(adjust: impl FnOnce(&mut GrpcLimits)) -> TestServer {
            TestServer::start_with(None, adjust).await
        }

        /// Over TLS with a self-signed certificate for "localhost" written into `dir`.
        async fn start_tls(dir: &std::path::Path, adjust: impl FnOnce(&mut GrpcLimits)) -> Self {
            TestServer::start_with(Some(dir), adjust).await
        }

        async fn start_with(
            tls_dir: Option<&std::path::Path>,
            adjust: impl FnOnce(&mut GrpcLimits),
        ) -> TestServer {
            let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let counters = Arc::new(Counters::new(&Catalog {
                service: "test",
                metrics: &[],
            }));
            let mut limits = GrpcLimits::default();
            adjust(&mut limits);
            limits.validate("grpc_limits").unwrap();
            let stop = CancellationToken::new();
            let mut server_tls = crate::tls::GrpcServerTls::default();
            let mut client_tls = crate::tls::GrpcClientTls::default();
            let mut url = format!("http://{addr}");
            if let Some(dir) = tls_dir {
                let generated =
                    rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
                let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
                std::fs::write(&cert, generated.cert.pem()).unwrap();
                std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
                server_tls.cert = Some(cert.clone());
                server_tls.key = Some(key);
                client_tls.ca = Some(cert);
                client_tls.server_name = Some("localhost".to_owned());
                url = format!("https://{addr}");
            }
            let options = ServeOptions::new(&[], 8)
                .with_grpc_tls(&server_tls, limits, Arc::clone(&counters), &stop)
                .unwrap();
            let task = tokio::spawn({
                let stop = stop.clone();
                async move { serve_with(listener, RoutesBuilder::default(), &options, stop).await }
            });
            let endpoint = client_tls.endpoint(&url).unwrap();
            TestServer {
                addr,
                endpoint,
                counters,
                stop,
                task,
            }
        }

        async fn wait_for(&self, counter: &str, n: u64) {
            let deadline = tokio::time::Instant::now() + WAIT;
            while self.counters.get(counter) < n {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{counter} = {} after {WAIT:?}, expected {n}",
                    self.counters.get(counter)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(self.counters.get(counter), n, "{counter}");
        }

        async fn stop(self) {
            self.stop.cancel();
            tokio::time::timeout(WAIT, self.task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }

    /// Waits until the server closes `conn` (EOF or reset); fails after `WAIT`.
    async fn assert_closed_by_server(conn: &mut TcpStream) {
        let mut sink = Vec::new();
        let read = tokio::time::timeout(WAIT, conn.read_to_end(&mut sink)).await;
        assert!(read.is_ok(), "connection still open after {WAIT:?}");
    }

    #[tokio::test]
    async fn connections_over_the_limit_wait_for_a_free_slot() {
        let server = TestServer::start(|limits| limits.max_connections = 1).await;
        let first = server.endpoint.connect().await.unwrap();
        health(first.clone()).await.unwrap();
        // The second connection waits in the accept queue while the first holds the slot.
        let second = server.endpoint.connect_lazy();
        let waiting = tokio::time::timeout(Duration::from_millis(300), health(second.clone()));
        assert!(waiting.await.is_err(), "served beyond max_connections");
        drop(first);
        tokio::time::timeout(WAIT, health(second))
            .await
            .unwrap()
            .unwrap();
        server.stop().await;
    }

    #[tokio::test]
    async fn connections_over_the_per_ip_cap_are_closed_and_counted() {
        let server = TestServer::start(|limits| limits.max_connections_per_ip = 2).await;
        let first = server.endpoint.connect().await.unwrap();
        health(first.clone()).await.unwrap();
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        // The third connection from 127.0.0.1 is closed at once, however many slots are free.
        let mut third = TcpStream::connect(server.addr).await.unwrap();
        assert_closed_by_server(&mut third).await;
        server.wait_for("grpc_refused_per_ip", 1).await;
        health(first.clone()).await.unwrap();
        // A freed slot is available again.
        silent.shutdown().await.unwrap();
        drop(silent);
        tokio::time::timeout(WAIT, async {
            loop {
                if health(server.endpoint.connect_lazy()).await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap();
        server.stop().await;
    }

    #[tokio::test]
    async fn a_connection_without_the_http2_preface_is_closed_in_time() {
        let server = TestServer::start(|limits| limits.preface_timeout = 1).await;
        let opened = tokio::time::Instant::now();
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        // Half a preface, then nothing: still a silent client.
        let mut dripping = TcpStream::connect(server.addr).await.unwrap();
        dripping.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        // A real client is served meanwhile and keeps its connection.
        let channel = server.endpoint.connect().await.unwrap();
        health(channel.clone()).await.unwrap();
        assert_closed_by_server(&mut silent).await;
        assert_closed_by_server(&mut dripping).await;
        assert!(opened.elapsed() >= Duration::from_millis(900));
        server
            .wait_for("grpc_connections_closed.preface_timeout", 2)
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        health(channel).await.unwrap();
        assert_eq!(server.counters.get("grpc_connections_closed"), 2);
        server.stop().await;
    }

    /// With `idle_timeout = 1`: a connection that made one call is closed after 1 s, one with a
    /// Watch stream open stays (its call is found through `TcpConnectInfo`, or through
    /// `TlsConnectInfo` on TLS), and the closed client reconnects on its next call.
    async fn idle_closes_only_the_connection_without_a_call(server: TestServer) {
        let idle = server.endpoint.connect().await.unwrap();
        health(idle.clone()).await.unwrap();
        let watching = server.endpoint.connect().await.unwrap();
        let mut watch = HealthClient::new(watching)
            .watch(HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(watch.message().await.unwrap().is_some(), "first status");
        server.wait_for("grpc_connections_closed.idle", 1).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let still_open = tokio::time::timeout(Duration::from_millis(200), watch.message()).await;
        assert!(still_open.is_err(), "stream ended: {still_open:?}");
        assert_eq!(server.counters.get("grpc_connections_closed"), 1);
        tokio::time::timeout(WAIT, async {
            while health(idle.clone()).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap();
        drop(watch);
        server.stop().await;
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_but_not_one_with_a_stream_open() {
        let server = TestServer::start(|limits| limits.idle_timeout = 1).await;
        idle_closes_only_the_connection_without_a_call(server).await;
    }

    #[tokio::test]
    async fn over_tls_an_idle_connection_is_closed_but_not_one_with_a_stream_open() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start_tls(dir.path(), |limits| limits.idle_timeout = 1).await;
        idle_closes_only_the_connection_without_a_call(server).await;
    }

    #[tokio::test]
    async fn a_peer_that_stops_answering_pings_is_closed_even_with_a_stream_open() {
        let server = TestServer::start(|limits| {
            limits.keepalive_interval = 1;
            limits.keepalive_timeout = 1;
        })
        .await;
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        // The client's connection is driven until `freeze`, then kept open but never polled:
        // a peer that is gone without closing its socket.
        let (freeze, frozen) = tokio::sync::oneshot::channel::<()>();
        let driver = tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = &mut connection => {}
                _ = frozen => std::future::pending::<()>().await,
            }
        });
        let mut client = client.ready().await.unwrap();
        let request = http::Request::post(format!(
            "http://{}/grpc.health.v1.Health/Watch",
            server.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
        let (response, mut body) = client.send_request(request, false).unwrap();
        // An empty HealthCheckRequest: no compression, length 0.
        body.send_data(bytes_of(&[0, 0, 0, 0, 0]), true).unwrap();
        let response = tokio::time::timeout(WAIT, response).await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        freeze.send(()).unwrap();
        server
            .wait_for("grpc_connections_closed.keepalive", 1)
            .await;
        assert_eq!(server.counters.get("grpc_connections_closed.idle"), 0);
        driver.abort();
        server.stop().await;
    }

    fn bytes_of(data: &[u8]) -> bytes::Bytes {
        bytes::Bytes::copy_from_slice(data)
    }

    #[test]
    fn bad_limits_name_their_key() {
        type Break = fn(&mut GrpcLimits);
        let cases: [(&str, Break); 5] = [
            ("grpc_limits.max_connections_per_ip", |l| {
                l.max_connections_per_ip = 0;
            }),
            ("grpc_limits.preface_timeout", |l| l.preface_timeout = 0),
            ("grpc_limits.idle_timeout", |l| l.idle_timeout = u64::MAX),
            ("grpc_limits.keepalive_timeout", |l| l.keepalive_timeout = 0),
            ("grpc_limits.keepalive_interval", |l| {
                l.keepalive_interval = MAX_TIMEOUT_SECS + 1;
            }),
        ];
        for (key, break_it) in cases {
            let mut limits = GrpcLimits::default();
            break_it(&mut limits);
            let err = limits.validate("grpc_limits").unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        let off = GrpcLimits {
            keepalive_interval: 0,
            ..GrpcLimits::default()
        };
        off.validate("grpc_limits").unwrap();
        assert_eq!(off.deadlines().silence, None);
        assert_eq!(
            GrpcLimits::default().deadlines().silence,
            Some(Duration::from_secs(80))
        );
    }
}
