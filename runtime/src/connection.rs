//! The deadlines of one gRPC connection, enforced below HTTP/2 on its byte stream
//! ([`GuardedConn`]), and the tower layer that tells it when calls are in flight
//! ([`TrackStreamsLayer`]):
//!
//! - **preface**: the client must send the 24-byte HTTP/2 connection preface (RFC 9113 §3.4)
//!   within `preface_timeout` of the connection being ready (accepted; for TLS, handshake done).
//!   hyper waits for it forever, so a flood of silent TCP connections used to hold every
//!   connection slot;
//! - **keepalive**: the server pings after `keepalive_interval` without a byte from the client
//!   (hyper's HTTP/2 keepalive); a peer silent for `keepalive_interval + keepalive_timeout` is
//!   taken for dead and closed here, so the close is counted (hyper's own keepalive time-out is
//!   set later, as a backstop);
//! - **idle**: a connection with no call in flight for `idle_timeout` is closed (gRPC's
//!   `MAX_CONNECTION_IDLE`). gRPC clients reconnect on their next call.
//!
//! A deadline ends the connection by failing its read with `TimedOut` when nothing is waiting
//! to be read, so hyper drops it; no call is in flight when the idle rule fires. Each close is
//! counted as `grpc_connections_closed{reason}`.
//!
//! Calls find their connection through the address pair tonic puts into each request
//! (`TcpConnectInfo`, inside `TlsConnectInfo` on TLS): unique among a listener's open
//! connections.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};

use crate::counters::{Counters, LogEvery, worth_logging};
use crate::per_ip::IpSlot;

/// Bytes of the HTTP/2 client connection preface, `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
const PREFACE_LEN: usize = 24;

/// The deadlines of a connection (from `[grpc_limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnDeadlines {
    /// Time to send the HTTP/2 preface.
    pub preface: Duration,
    /// Time without a call in flight before the connection is closed.
    pub idle: Duration,
    /// Silence (no byte read) after which the peer is taken for dead: keepalive interval plus
    /// time-out; `None` when keepalive is off.
    pub silence: Option<Duration>,
}

/// Why a deadline closed a connection: the `reason` label of `grpc_connections_closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No HTTP/2 preface within `preface_timeout`.
    Preface,
    /// No call in flight for `idle_timeout`.
    Idle,
    /// No answer to keepalive pings within `keepalive_timeout`.
    Keepalive,
}

impl CloseReason {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Preface => "preface_timeout",
            CloseReason::Idle => "idle",
            CloseReason::Keepalive => "keepalive",
        }
    }
}

/// What a connection shares with the calls it carries.
#[derive(Debug)]
struct Activity {
    /// Calls in flight (from the request's arrival to the end of its response body).
    calls: AtomicUsize,
    /// When the last call ended (or the connection opened).
    idle_since: Mutex<Instant>,
    /// The connection's task, woken when its last call ends (to arm the idle deadline).
    waker: Mutex<Option<Waker>>,
}

impl Activity {
    /// When the connection became idle, or `None` while calls are in flight (then `waker` is
    /// woken when the last one ends).
    fn idle_since(&self, waker: &Waker) -> Option<Instant> {
        // The waker first: a call ending after the count was read finds it and wakes us.
        *self.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(waker.clone());
        if self.calls.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(
            *self
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// A call in flight on a connection; ends when dropped (with the response body).
#[derive(Debug)]
pub struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.calls.fetch_sub(1, Ordering::AcqRel) == 1 {
            *activity
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Instant::now();
            let waker = activity
                .waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// A connection's (local, remote) addresses: the key of a listener's open connections.
pub type ConnAddrs = (Option<SocketAddr>, Option<SocketAddr>);

/// The slots a connection holds until it closes: one of its listener's (`max_connections`)
/// and one of its source address's (`max_connections_per_ip`).
#[derive(Debug)]
pub struct ConnSlots {
    /// The listener's slot.
    pub listener: OwnedSemaphorePermit,
    /// The source address's slot.
    pub address: IpSlot,
}

/// The open connections of one listener, for calls to find theirs.
#[derive(Debug, Default)]
pub struct Connections {
    by_addr: Mutex<HashMap<ConnAddrs, Arc<Activity>>>,
}

impl Connections {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Connections::default())
    }

    fn register(&self, key: ConnAddrs, now: Instant) -> Arc<Activity> {
        let activity = Arc::new(Activity {
            calls: AtomicUsize::new(0),
            idle_since: Mutex::new(now),
            waker: Mutex::new(None),
        });
        self.by_addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::clone(&activity));
        activity
    }

    fn remove(&self, key: &ConnAddrs, activity: &Arc<Activity>) {
        let mut by_addr = self.by_addr.lock().unwrap_or_else(PoisonError::into_inner);
        if by_addr.get(key).is_some_and(|a| Arc::ptr_eq(a, activity)) {
            by_addr.remove(key);
        }
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.by_addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks a call in flight on the connection the request came on (`None` when its address
    /// is unknown: a transport without connect info).
    fn call_started(&self, extensions: &http::Extensions) -> Option<CallGuard> {
        let info = extensions.get::<TcpConnectInfo>().or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .map(TlsConnectInfo::get_ref)
        })?;
        let key = (info.local_addr(), info.remote_addr());
        let by_addr = self.by_addr.lock().unwrap_or_else(PoisonError::into_inner);
        let activity = Arc::clone(by_addr.get(&key)?);
        activity.calls.fetch_add(1, Ordering::AcqRel);
        Some(CallGuard(activity))
    }
}

/// A connection's byte stream with its deadlines (see the module docs). Dropping it removes the
/// connection from its listener's [`Connections`].
pub struct GuardedConn<IO> {
    io: IO,
    _slots: ConnSlots,
    connections: Arc<Connections>,
    key: ConnAddrs,
    activity: Arc<Activity>,
    deadlines: ConnDeadlines,
    opened: Instant,
    /// Preface bytes still to come.
    preface_left: usize,
    last_read: Instant,
    timer: Pin<Box<Sleep>>,
    counters: Option<Arc<Counters>>,
}

impl<IO> std::fmt::Debug for GuardedConn<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedConn")
            .field("peer", &self.key.1)
            .field("deadlines", &self.deadlines)
            .finish_non_exhaustive()
    }
}

impl<IO> GuardedConn<IO> {
    /// Registers the connection `(local, peer)` in `connections` and guards `io` from now on;
    /// `slots` are given back when it is dropped.
    pub fn new(
        io: IO,
        (local, peer): ConnAddrs,
        slots: ConnSlots,
        connections: Arc<Connections>,
        deadlines: ConnDeadlines,
        counters: Option<Arc<Counters>>,
    ) -> Self {
        let now = Instant::now();
        let key = (local, peer);
        let activity = connections.register(key, now);
        GuardedConn {
            io,
            _slots: slots,
            connections,
            key,
            activity,
            deadlines,
            opened: now,
            preface_left: PREFACE_LEN,
            last_read: now,
            timer: Box::pin(tokio::time::sleep_until(now)),
            counters,
        }
    }

    /// The first deadline now in force, or `None` (calls in flight, keepalive off).
    fn next_deadline(&self, waker: &Waker) -> Option<(CloseReason, Instant)> {
        if self.preface_left > 0 {
            return Some((
                CloseReason::Preface,
                later(self.opened, self.deadlines.preface),
            ));
        }
        let keepalive = self
            .deadlines
            .silence
            .map(|silence| (CloseReason::Keepalive, later(self.last_read, silence)));
        let idle = self
            .activity
            .idle_since(waker)
            .map(|since| (CloseReason::Idle, later(since, self.deadlines.idle)));
        [keepalive, idle]
            .into_iter()
            .flatten()
            .min_by_key(|(_, at)| *at)
    }

    fn expire(&self, reason: CloseReason) -> std::io::Error {
        // Without counters (tests), a per-process count keeps the log bounded all the same.
        static CLOSED: LogEvery = LogEvery::new();
        let total = self.counters.as_ref().map_or_else(
            || CLOSED.tick().unwrap_or(0),
            |c| c.add_labeled("grpc_connections_closed", reason.label(), 1),
        );
        let peer = self.key.1;
        match reason {
            // A client that connects and says nothing: a scan, a wrong protocol, or a flood.
            CloseReason::Preface if worth_logging(total) => {
                tracing::warn!(
                    ?peer,
                    total,
                    timeout = ?self.deadlines.preface,
                    "grpc connection closed: no http/2 preface in time"
                );
            }
            _ => tracing::debug!(?peer, reason = reason.label(), "grpc connection closed"),
        }
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("grpc connection closed: {}", reason.label()),
        )
    }
}

/// `at + after`, or a far future when that overflows.
fn later(at: Instant, after: Duration) -> Instant {
    at.checked_add(after)
        .unwrap_or_else(|| at + Duration::from_secs(86_400 * 365))
}

impl<IO> Drop for GuardedConn<IO> {
    fn drop(&mut self) {
        self.connections.remove(&self.key, &self.activity);
    }
}

impl<IO: Connected> Connected for GuardedConn<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> IO::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for GuardedConn<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len().saturating_sub(before);
                if read > 0 {
                    this.last_read = Instant::now();
                    this.preface_left = this.preface_left.saturating_sub(read);
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        // Nothing waiting to be read: is a deadline past? The timer wakes this task at the
        // next one (hyper keeps a read pending on every open connection).
        loop {
            let Some((reason, at)) = this.next_deadline(cx.waker()) else {
                return Poll::Pending;
            };
            if Instant::now() >= at {
                return Poll::Ready(Err(this.expire(reason)));
            }
            if this.timer.deadline() != at {
                this.timer.as_mut().reset(at);
            }
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for GuardedConn<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Counts each call in flight on its connection, from the request until its response body ends
/// (a streaming call until the stream ends), for the idle deadline.
#[derive(Debug, Clone)]
pub struct TrackStreamsLayer {
    connections: Arc<Connections>,
}

impl TrackStreamsLayer {
    /// Tracks calls on the connections of `connections`.
    pub fn new(connections: Arc<Connections>) -> Self {
        TrackStreamsLayer { connections }
    }
}

impl<S> tower::Layer<S> for TrackStreamsLayer {
    type Service = TrackStreams<S>;

    fn layer(&self, inner: S) -> TrackStreams<S> {
        TrackStreams {
            inner,
            connections: Arc::clone(&self.connections),
        }
    }
}

/// See [`TrackStreamsLayer`].
#[derive(Debug, Clone)]
pub struct TrackStreams<S> {
    inner: S,
    connections: Arc<Connections>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for TrackStreams<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
    ReqBody: 'static,
    ResBody: 'static,
{
    type Response = http::Response<TrackedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // Counted from here: a call waiting for a `max_grpc_calls` slot is in flight too.
        let guard = self.connections.call_started(request.extensions());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| TrackedBody {
                inner,
                _guard: guard,
            }))
        })
    }
}

/// A response body holding its call's [`CallGuard`] until it is dropped.
#[derive(Debug)]
pub struct TrackedBody<B> {
    inner: B,
    _guard: Option<CallGuard>,
}

impl<B: http_body::Body + Unpin> http_body::Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
