//! HEP listeners: UDP (several SO_REUSEPORT sockets, one receive task each, large receive
//! buffers), TCP with HEP3 stream framing (several frames per segment, frames split across
//! segments; a bad length closes only that connection), and the same framing inside TLS.
//!
//! TCP and TLS connections share one limit (`tcp_max_connections`: excess clients wait in the
//! accept backlog), one cap per source address (`tcp_max_connections_per_ip`: excess clients
//! are closed at once and counted), one frame cap, one frame deadline (`tcp_frame_timeout`,
//! from a frame's first byte to its last: a sender dripping bytes cannot hold a connection
//! forever) and one idle time-out (which also bounds a TLS handshake). Errors of one
//! connection are counted, and logged only the first time and every power of two.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sipcapture_proto::v1::InputKind;
use sipcapture_runtime::per_ip::PerIpLimit;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::decode::hep::tcp_frame_len;
use crate::events::{
    InternalEvent, TcpAcceptFailed, TcpConnectionAccepted, TcpIdleClosed, TcpRefusedPerIp,
    TlsConnectionAccepted, TlsHandshakeFailed,
};
use crate::ingest::{Ingest, Outcome};
use crate::source::tls::{self, TlsError};

/// Largest UDP payload (IPv4: 65507; IPv6 jumbograms aside): one buffer fits any datagram.
const UDP_BUFFER: usize = 65_536;

/// Listener failures at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A socket could not be opened or bound.
    #[error(
        "cannot listen for HEP on {proto} {addr}: {}",
        sipcapture_runtime::server::bind_problem(.error)
    )]
    Bind {
        /// "udp", "tcp" or "tls".
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error (in the message, not a separate cause).
        error: io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The HEP-over-TLS listener's settings.
#[derive(Debug, Clone)]
pub struct TlsListenConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// PEM certificate chain.
    pub cert: std::path::PathBuf,
    /// PEM private key.
    pub key: std::path::PathBuf,
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Address for UDP and TCP.
    pub addr: SocketAddr,
    /// UDP on.
    pub udp: bool,
    /// TCP on.
    pub tcp: bool,
    /// UDP sockets sharing the port.
    pub udp_sockets: usize,
    /// SO_RCVBUF per UDP socket.
    pub udp_recv_buffer: usize,
    /// Largest TCP frame.
    pub tcp_max_frame: usize,
    /// Concurrent TCP connections.
    pub tcp_max_connections: usize,
    /// Concurrent TCP connections from one source address.
    pub tcp_max_connections_per_ip: usize,
    /// TCP idle time-out.
    pub tcp_idle_timeout: Duration,
    /// Time from a frame's first byte to its last.
    pub tcp_frame_timeout: Duration,
    /// HEP3 over TLS, when configured.
    pub tls: Option<TlsListenConfig>,
}

/// The addresses actually bound (a configured port 0 becomes a real port).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoundAddrs {
    /// UDP address, when UDP is on.
    pub udp: Option<SocketAddr>,
    /// TCP address, when TCP is on.
    pub tcp: Option<SocketAddr>,
    /// TLS address, when TLS is configured.
    pub tls: Option<SocketAddr>,
}

/// What runs on an accepted connection before the HEP3 framing.
#[derive(Clone)]
enum StreamKind {
    /// HEP3 frames directly on TCP.
    Plain,
    /// A TLS handshake, then HEP3 frames inside TLS.
    Tls(Arc<sipcapture_runtime::tls::ReloadingTls>),
}

impl StreamKind {
    fn input(&self) -> InputKind {
        match self {
            StreamKind::Plain => InputKind::HepTcp,
            StreamKind::Tls(_) => InputKind::HepTls,
        }
    }
}

fn udp_socket(addr: SocketAddr, recv_buffer: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    // The kernel may cap this at net.core.rmem_max; a smaller buffer is not fatal.
    if let Err(e) = socket.set_recv_buffer_size(recv_buffer) {
        tracing::warn!(error = %e, "cannot set the UDP receive buffer size");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Binds every configured socket (and loads the TLS certificate and key) and spawns the receive
/// tasks on `tasks`. Returns the bound addresses. Tasks stop when `shutdown` is cancelled.
pub fn start(
    cfg: &ListenConfig,
    ingest: Arc<Ingest>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<BoundAddrs, ListenError> {
    let mut bound = BoundAddrs::default();
    let mut port = cfg.addr.port();
    if cfg.udp {
        let mut addr = cfg.addr;
        for i in 0..cfg.udp_sockets.max(1) {
            addr.set_port(port);
            let socket =
                udp_socket(addr, cfg.udp_recv_buffer).map_err(|error| ListenError::Bind {
                    proto: "udp",
                    addr,
                    error,
                })?;
            if i == 0 {
                let local = socket.local_addr().map_err(|error| ListenError::Bind {
                    proto: "udp",
                    addr,
                    error,
                })?;
                port = local.port();
                bound.udp = Some(local);
            }
            tasks.spawn(udp_loop(socket, ingest.clone(), shutdown.clone()));
        }
    }
    let slots = Slots {
        all: Arc::new(Semaphore::new(cfg.tcp_max_connections.max(1))),
        per_ip: PerIpLimit::new(cfg.tcp_max_connections_per_ip),
    };
    let mut streams = Vec::new();
    if cfg.tcp {
        let mut addr = cfg.addr;
        addr.set_port(port);
        let listener = tcp_listener(addr).map_err(|error| ListenError::Bind {
            proto: "tcp",
            addr,
            error,
        })?;
        bound.tcp = listener.local_addr().ok();
        streams.push((listener, StreamKind::Plain));
    }
    if let Some(tls_cfg) = &cfg.tls {
        let acceptor = tls::acceptor(
            &tls_cfg.cert,
            &tls_cfg.key,
            Some(ingest.counters.clone()),
            shutdown,
        )?;
        let addr = tls_cfg.addr;
        let listener = tcp_listener(addr).map_err(|error| ListenError::Bind {
            proto: "tls",
            addr,
            error,
        })?;
        bound.tls = listener.local_addr().ok();
        streams.push((listener, StreamKind::Tls(acceptor)));
    }
    // Spawn only once every listener is bound, so a failed start leaves nothing running.
    for (listener, kind) in streams {
        tasks.spawn(accept_loop(
            listener,
            kind,
            slots.clone(),
            cfg.clone(),
            ingest.clone(),
            tasks.clone(),
            shutdown.clone(),
        ));
    }
    Ok(bound)
}

fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

async fn udp_loop(socket: UdpSocket, ingest: Arc<Ingest>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        match received {
            Ok((len, peer)) => {
                let data = buf.get(..len).unwrap_or_default();
                if ingest.hep(data, InputKind::HepUdp, Some(peer)).await == Outcome::Closed {
                    return;
                }
            }
            // ICMP errors and the like surface here on some systems; keep receiving.
            Err(e) => tracing::debug!(error = %e, "udp receive error"),
        }
    }
}

/// The connection slots the TCP and TLS listeners share: in all, and per source address.
#[derive(Clone)]
struct Slots {
    all: Arc<Semaphore>,
    per_ip: Arc<PerIpLimit>,
}

async fn accept_loop(
    listener: TcpListener,
    kind: StreamKind,
    slots: Slots,
    cfg: ListenConfig,
    ingest: Arc<Ingest>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        // Wait for a free connection slot before accepting: excess clients queue in the backlog.
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            p = slots.all.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                // One address cannot take every slot: over its cap, closed at once.
                let Some(ip_slot) = slots.per_ip.try_acquire(peer.ip()) else {
                    TcpRefusedPerIp {
                        peer,
                        input: kind.input(),
                        max: slots.per_ip.max(),
                    }
                    .emit(&ingest.counters);
                    continue;
                };
                let ingest = ingest.clone();
                let shutdown = shutdown.clone();
                let cfg = cfg.clone();
                let kind = kind.clone();
                tasks.spawn(async move {
                    let _permits = (permit, ip_slot);
                    match kind {
                        StreamKind::Plain => {
                            TcpConnectionAccepted.emit(&ingest.counters);
                            read_frames(stream, peer, InputKind::HepTcp, &cfg, &ingest, &shutdown)
                                .await;
                        }
                        StreamKind::Tls(acceptor) => {
                            let acceptor = acceptor.acceptor();
                            tls_connection(stream, peer, &acceptor, &cfg, &ingest, &shutdown).await;
                        }
                    }
                });
            }
            Err(error) => {
                TcpAcceptFailed {
                    error: &error,
                    input: kind.input(),
                }
                .emit(&ingest.counters);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Runs the TLS handshake (bounded by the idle time-out, so a silent client cannot hold a
/// connection slot), then reads HEP3 frames from the decrypted stream.
#[tracing::instrument(skip_all, fields(peer = %peer))]
async fn tls_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: &TlsAcceptor,
    cfg: &ListenConfig,
    ingest: &Ingest,
    shutdown: &CancellationToken,
) {
    TlsConnectionAccepted.emit(&ingest.counters);
    let handshake = tokio::select! {
        () = shutdown.cancelled() => return,
        r = tokio::time::timeout(cfg.tcp_idle_timeout, acceptor.accept(stream)) => r,
    };
    let error = match handshake {
        Ok(Ok(tls_stream)) => {
            read_frames(tls_stream, peer, InputKind::HepTls, cfg, ingest, shutdown).await;
            return;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_elapsed) => "handshake timed out".to_owned(),
    };
    TlsHandshakeFailed { error }.emit(&ingest.counters);
}

/// Reads HEP3 frames from one stream (TCP or TLS) until EOF, idle time-out, a frame not
/// completed within `tcp_frame_timeout`, a broken frame or shutdown.
#[tracing::instrument(skip_all, fields(peer = %peer, input = ?input))]
async fn read_frames<S: AsyncRead + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    input: InputKind,
    cfg: &ListenConfig,
    ingest: &Ingest,
    shutdown: &CancellationToken,
) {
    let mut buf = BytesMut::with_capacity(cfg.tcp_max_frame.min(65_536));
    // When the incomplete frame at the head of `buf` began (its first byte arrived, or the
    // frames before it were handed on: time spent waiting for the queue is not the sender's).
    let mut frame_started: Option<Instant> = None;
    loop {
        // Emit every complete frame in the buffer; "need more" is not an error.
        let mut emitted = false;
        loop {
            match tcp_frame_len(&buf, cfg.tcp_max_frame) {
                Ok(Some(len)) => {
                    let frame = buf.split_to(len);
                    emitted = true;
                    if ingest.hep(&frame, input, Some(peer)).await == Outcome::Closed {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // Counted and logged (first and every power of two) as a drop; one line
                    // per bad connection would let a flood of them flood the log.
                    ingest.drop_packet("tcp_bad_frame", input, &e);
                    tracing::debug!(error = %e, "closing hep stream: broken framing");
                    return;
                }
            }
        }
        frame_started = match (buf.is_empty(), emitted) {
            (true, _) => None,
            (false, true) => Some(Instant::now()),
            (false, false) => frame_started.or_else(|| Some(Instant::now())),
        };
        let idle_deadline = Instant::now() + cfg.tcp_idle_timeout;
        let (deadline, frame_due) = match frame_started.map(|t| t + cfg.tcp_frame_timeout) {
            Some(frame_deadline) if frame_deadline <= idle_deadline => (frame_deadline, true),
            _ => (idle_deadline, false),
        };
        let read = tokio::select! {
            () = shutdown.cancelled() => return,
            r = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => r,
        };
        match read {
            Err(_elapsed) if frame_due => {
                let detail = format!(
                    "frame of {} bytes so far incomplete after {:?}",
                    buf.len(),
                    cfg.tcp_frame_timeout
                );
                ingest.drop_packet("tcp_frame_timeout", input, &detail);
                return;
            }
            Err(_elapsed) => {
                TcpIdleClosed.emit(&ingest.counters);
                return;
            }
            Ok(Ok(0)) => {
                if !buf.is_empty() {
                    ingest.drop_packet("truncated", input, &"connection closed inside a frame");
                }
                return;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "hep stream read failed");
                return;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    //! The listener limits and framing rules, proven on real loopback sockets: several frames
    //! per segment, a frame split byte by byte, a bad length closing only its connection, the
    //! idle time-out, the connection limit, and HEP3 inside TLS.

    use std::net::{IpAddr, Ipv4Addr};
    use std::path::Path;

    use sipcapture_proto::v1::CaptureRecord;
    use sipcapture_runtime::counters::Counters;
    use sipcapture_runtime::status::CaptureSwitch;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    use tokio::sync::mpsc;
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

    use super::*;
    use crate::config::CollectorConfig;
    use crate::decode::hep::{HepPacket, HepPayload, encode_v3};
    use crate::record::RecordBuilder;

    const WAIT: Duration = Duration::from_secs(5);

    struct Harness {
        bound: BoundAddrs,
        records: mpsc::Receiver<CaptureRecord>,
        counters: Arc<Counters>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    }

    impl Harness {
        fn start(adjust: impl FnOnce(&mut ListenConfig)) -> Harness {
            let mut cfg = ListenConfig {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                udp: false,
                tcp: true,
                udp_sockets: 1,
                udp_recv_buffer: 1 << 20,
                tcp_max_frame: 65_535,
                tcp_max_connections: 16,
                tcp_max_connections_per_ip: 16,
                tcp_idle_timeout: Duration::from_secs(30),
                tcp_frame_timeout: Duration::from_secs(30),
                tls: None,
            };
            adjust(&mut cfg);
            let (queue, mut lanes) = crate::export::lanes::LaneQueues::new(
                1,
                1024,
                crate::export::storers::Placement::Balanced,
            );
            let records = lanes.remove(0);
            let counters = Arc::new(Counters::new(&crate::events::CATALOG));
            let ingest = Arc::new(Ingest {
                builder: RecordBuilder {
                    capture_node: "test".to_owned(),
                    collector_id: "test".to_owned(),
                    sip: CollectorConfig::default().extract_config(),
                    max_inflated_payload: crate::config::DEFAULT_MAX_INFLATED_PAYLOAD,
                },
                gate: crate::gate::Gate {
                    switch: Arc::new(CaptureSwitch::new(true)),
                    hep_capture_on: true,
                    auth_key: None,
                    rate_limit: None,
                },
                packets: crate::events::PacketCounters::new(&counters),
                counters: counters.clone(),
                queue,
                hooks: crate::hook::Hooks::default(),
            });
            let tasks = TaskTracker::new();
            let shutdown = CancellationToken::new();
            let bound = start(&cfg, ingest, &tasks, &shutdown).unwrap();
            Harness {
                bound,
                records,
                counters,
                shutdown,
                tasks,
            }
        }

        fn tcp(&self) -> SocketAddr {
            self.bound.tcp.unwrap()
        }

        async fn next(&mut self) -> CaptureRecord {
            tokio::time::timeout(WAIT, self.records.recv())
                .await
                .expect("no record within 5 s")
                .expect("queue closed")
        }

        async fn assert_nothing_for(&mut self, wait: Duration) {
            if let Ok(r) = tokio::time::timeout(wait, self.records.recv()).await {
                panic!("unexpected record {r:?}");
            }
        }

        async fn stop(self) {
            self.shutdown.cancel();
            self.tasks.close();
            tokio::time::timeout(WAIT, self.tasks.wait()).await.unwrap();
        }
    }

    /// A HEP3 SIP packet whose source port is `1000 + n` (to tell records apart).
    fn frame(n: u16, ip_protocol: u8) -> Vec<u8> {
        let sip = format!(
            "OPTIONS sip:bob@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{n}\r\n\
             From: <sip:alice@example.com>;tag=a{n}\r\n\
             To: <sip:bob@example.com>\r\n\
             Call-ID: frame-{n}@example.com\r\n\
             CSeq: {n} OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let packet = HepPacket {
            version: 3,
            ip_family: Some(2),
            ip_protocol: Some(ip_protocol),
            src_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            dst_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))),
            src_port: Some(1000 + n),
            dst_port: Some(5060),
            ts_sec: Some(1_700_000_000),
            ts_usec: Some(u32::from(n)),
            proto_type: Some(1),
            capture_id: Some(7),
            keep_alive: None,
            auth_key: None,
            payload: Some(HepPayload::Raw(sip.as_bytes())),
            correlation_id: None,
            vlan_id: None,
            node_name: None,
            core_chunks: 0,
            chunk_area: &[],
        };
        let mut out = Vec::new();
        encode_v3(&packet, &mut out);
        assert!(!out.is_empty());
        out
    }

    fn udp_frame(n: u16) -> Vec<u8> {
        frame(n, 17)
    }

    /// Waits until the peer closes `conn` (EOF or reset), skipping what it sends first (a TLS
    /// alert); fails after `WAIT`.
    async fn assert_closed_by_peer(conn: &mut TcpStream) {
        let mut sink = Vec::new();
        let read = tokio::time::timeout(WAIT, conn.read_to_end(&mut sink))
            .await
            .expect("connection still open after 5 s");
        assert!(sink.len() < 64, "unexpected data {sink:?} ({read:?})");
    }

    #[tokio::test]
    async fn several_frames_in_one_segment() {
        let mut h = Harness::start(|_| {});
        let mut conn = TcpStream::connect(h.tcp()).await.unwrap();
        let segment = [udp_frame(0), udp_frame(1), udp_frame(2)].concat();
        conn.write_all(&segment).await.unwrap();
        for n in 0..3 {
            let r = h.next().await;
            assert_eq!(r.src_port, 1000 + n);
            assert_eq!(r.origin.unwrap().input, InputKind::HepTcp as i32);
        }
        assert_eq!(h.counters.get("tcp_connections"), 1);
        h.stop().await;
    }

    #[tokio::test]
    async fn frames_split_byte_by_byte_across_segments() {
        let mut h = Harness::start(|_| {});
        let mut conn = TcpStream::connect(h.tcp()).await.unwrap();
        conn.set_nodelay(true).unwrap();
        let (first, second) = (udp_frame(0), udp_frame(1));
        // Every byte but the last of the first frame: buffered, nothing emitted, not an error.
        for byte in &first[..first.len() - 1] {
            conn.write_all(std::slice::from_ref(byte)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        h.assert_nothing_for(Duration::from_millis(100)).await;
        // The last byte of frame 0 and the first byte of frame 1 in one segment.
        conn.write_all(&[first[first.len() - 1], second[0]])
            .await
            .unwrap();
        assert_eq!(h.next().await.src_port, 1000);
        for byte in &second[1..] {
            conn.write_all(std::slice::from_ref(byte)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(h.next().await.src_port, 1001);
        assert_eq!(h.counters.get("dropped.tcp_bad_frame"), 0);
        h.stop().await;
    }

    #[tokio::test]
    async fn a_bad_length_closes_only_that_connection() {
        let mut h = Harness::start(|cfg| cfg.tcp_max_frame = 2000);
        let mut good = TcpStream::connect(h.tcp()).await.unwrap();
        good.write_all(&udp_frame(0)).await.unwrap();
        assert_eq!(h.next().await.src_port, 1000);

        // Declared length below the 6-byte header, above tcp_max_frame, and a wrong magic:
        // each closes its own connection and is counted.
        let broken: [&[u8]; 3] = [b"HEP3\x00\x05", b"HEP3\x07\xd1rest", b"GET / HTTP/1.1\r\n"];
        for (i, bytes) in broken.into_iter().enumerate() {
            let mut bad = TcpStream::connect(h.tcp()).await.unwrap();
            // A valid frame first: the connection worked until the bad length arrived.
            bad.write_all(&[udp_frame(10), bytes.to_vec()].concat())
                .await
                .unwrap();
            assert_eq!(h.next().await.src_port, 1010);
            assert_closed_by_peer(&mut bad).await;
            assert_eq!(h.counters.get("dropped.tcp_bad_frame"), i as u64 + 1);
        }

        // The first connection is untouched.
        good.write_all(&udp_frame(1)).await.unwrap();
        assert_eq!(h.next().await.src_port, 1001);
        h.assert_nothing_for(Duration::from_millis(50)).await;
        h.stop().await;
    }

    #[tokio::test]
    async fn a_frame_cut_by_eof_is_counted_as_truncated() {
        let mut h = Harness::start(|_| {});
        let mut conn = TcpStream::connect(h.tcp()).await.unwrap();
        let f = udp_frame(0);
        conn.write_all(&[f.clone(), f[..f.len() / 2].to_vec()].concat())
            .await
            .unwrap();
        conn.shutdown().await.unwrap();
        assert_eq!(h.next().await.src_port, 1000);
        let deadline = tokio::time::Instant::now() + WAIT;
        while h.counters.get("dropped.truncated") == 0 {
            assert!(tokio::time::Instant::now() < deadline, "not counted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        h.stop().await;
    }

    #[tokio::test]
    async fn idle_timeout_closes_a_silent_connection_but_not_a_busy_one() {
        let idle = Duration::from_millis(300);
        let mut h = Harness::start(|cfg| cfg.tcp_idle_timeout = idle);
        let mut silent = TcpStream::connect(h.tcp()).await.unwrap();
        let mut busy = TcpStream::connect(h.tcp()).await.unwrap();
        let opened = tokio::time::Instant::now();
        // The busy one sends a frame every 100 ms for 900 ms: three idle periods in total,
        // never idle for a whole one.
        for n in 0..9 {
            busy.write_all(&udp_frame(n)).await.unwrap();
            assert_eq!(h.next().await.src_port, 1000 + u32::from(n));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_closed_by_peer(&mut silent).await;
        assert!(opened.elapsed() >= idle);
        assert_eq!(h.counters.get("tcp_idle_closed"), 1);
        busy.write_all(&udp_frame(99)).await.unwrap();
        assert_eq!(h.next().await.src_port, 1099);
        // Then the busy one falls silent too.
        assert_closed_by_peer(&mut busy).await;
        assert_eq!(h.counters.get("tcp_idle_closed"), 2);
        h.stop().await;
    }

    #[tokio::test]
    async fn connections_over_the_limit_wait_for_a_free_slot() {
        let mut h = Harness::start(|cfg| cfg.tcp_max_connections = 1);
        let mut first = TcpStream::connect(h.tcp()).await.unwrap();
        first.write_all(&udp_frame(0)).await.unwrap();
        assert_eq!(h.next().await.src_port, 1000);
        // The kernel completes the second handshake (backlog), but it is not served yet.
        let mut second = TcpStream::connect(h.tcp()).await.unwrap();
        second.write_all(&udp_frame(1)).await.unwrap();
        h.assert_nothing_for(Duration::from_millis(300)).await;
        drop(first);
        assert_eq!(h.next().await.src_port, 1001);
        assert_eq!(h.counters.get("tcp_connections"), 2);
        h.stop().await;
    }

    #[tokio::test]
    async fn connections_over_the_per_ip_cap_are_closed_and_counted() {
        let mut h = Harness::start(|cfg| cfg.tcp_max_connections_per_ip = 2);
        let mut first = TcpStream::connect(h.tcp()).await.unwrap();
        let second = TcpStream::connect(h.tcp()).await.unwrap();
        first.write_all(&udp_frame(0)).await.unwrap();
        assert_eq!(h.next().await.src_port, 1000);
        // The third from 127.0.0.1 is closed at once, with 13 slots free in all.
        let mut third = TcpStream::connect(h.tcp()).await.unwrap();
        let _ignored = third.write_all(&udp_frame(1)).await;
        assert_closed_by_peer(&mut third).await;
        assert_eq!(h.counters.get("tcp_refused_per_ip"), 1);
        h.assert_nothing_for(Duration::from_millis(100)).await;
        // A slot given back is taken again.
        drop(second);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut again = TcpStream::connect(h.tcp()).await.unwrap();
            let _ignored = again.write_all(&udp_frame(2)).await;
            if let Ok(Some(r)) =
                tokio::time::timeout(Duration::from_millis(200), h.records.recv()).await
            {
                assert_eq!(r.src_port, 1002);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "slot not given back"
            );
        }
        first.write_all(&udp_frame(3)).await.unwrap();
        assert_eq!(h.next().await.src_port, 1003);
        h.stop().await;
    }

    #[tokio::test]
    async fn a_frame_dripping_past_its_deadline_is_dropped_and_its_connection_closed() {
        let deadline = Duration::from_millis(600);
        let mut h = Harness::start(|cfg| cfg.tcp_frame_timeout = deadline);
        // Whole frames, each in one write, 300 ms apart: never a frame pending for long.
        let mut steady = TcpStream::connect(h.tcp()).await.unwrap();
        // One frame, then the next one byte every 100 ms: never idle, never complete.
        let mut drip = TcpStream::connect(h.tcp()).await.unwrap();
        drip.set_nodelay(true).unwrap();
        let frame = udp_frame(50);
        drip.write_all(&[udp_frame(49), frame[..8].to_vec()].concat())
            .await
            .unwrap();
        assert_eq!(h.next().await.src_port, 1049);
        let started = tokio::time::Instant::now();
        let mut closed = false;
        for (i, byte) in frame[8..].iter().enumerate() {
            if i % 3 == 0 {
                steady.write_all(&udp_frame(i as u16)).await.unwrap();
                assert_eq!(h.next().await.src_port, 1000 + i as u32);
            }
            if drip.write_all(std::slice::from_ref(byte)).await.is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if h.counters.get("dropped.tcp_frame_timeout") == 1 {
                closed = true;
                break;
            }
        }
        assert!(closed, "the drip outlived its frame deadline");
        assert_closed_by_peer(&mut drip).await;
        assert!(started.elapsed() >= deadline);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(h.counters.get("dropped.tcp_frame_timeout"), 1);
        assert_eq!(h.counters.get("tcp_idle_closed"), 0);
        // The steady sender is untouched.
        steady.write_all(&udp_frame(999)).await.unwrap();
        assert_eq!(h.next().await.src_port, 1999);
        h.stop().await;
    }

    /// A self-signed certificate for "localhost", written as PEM files into `dir`.
    fn self_signed(dir: &Path) -> (rustls::pki_types::CertificateDer<'static>, TlsListenConfig) {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = dir.join("hep.crt");
        let key = dir.join("hep.key");
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        let tls = TlsListenConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            cert,
            key,
        };
        (generated.cert.der().clone(), tls)
    }

    async fn tls_client(
        addr: SocketAddr,
        trusted: rustls::pki_types::CertificateDer<'static>,
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut roots = RootCertStore::empty();
        roots.add(trusted).unwrap();
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.unwrap()
    }

    #[tokio::test]
    async fn hep3_over_tls_becomes_hep_tls_records() {
        let dir = tempfile::tempdir().unwrap();
        let (trusted, tls) = self_signed(dir.path());
        let mut h = Harness::start(|cfg| cfg.tls = Some(tls));
        let tls_addr = h.bound.tls.unwrap();
        assert_ne!(Some(tls_addr), h.bound.tcp);

        let mut conn = tls_client(tls_addr, trusted).await;
        // Two frames in one write, then one split in two writes; the second frame says its SIP
        // travelled over TCP (chunk 0x0002 = 6), the others over UDP.
        conn.write_all(&[frame(0, 17), frame(1, 6)].concat())
            .await
            .unwrap();
        conn.flush().await.unwrap();
        let third = frame(2, 17);
        conn.write_all(&third[..10]).await.unwrap();
        conn.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        conn.write_all(&third[10..]).await.unwrap();
        conn.flush().await.unwrap();

        for (n, transport) in [(0, 1), (1, 2), (2, 1)] {
            let r = h.next().await;
            assert_eq!(r.src_port, 1000 + n);
            assert_eq!(r.transport, transport, "transport follows the HEP payload");
            assert_eq!(r.origin.unwrap().input, InputKind::HepTls as i32);
        }
        assert_eq!(h.counters.get("tls_connections"), 1);
        assert_eq!(h.counters.get("tcp_connections"), 0);

        // A bad frame inside TLS closes that connection like on plain TCP.
        conn.write_all(b"HEP3\x00\x01").await.unwrap();
        conn.flush().await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(WAIT, conn.read(&mut byte))
            .await
            .unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert_eq!(h.counters.get("dropped.tcp_bad_frame"), 1);
        h.stop().await;
    }

    #[tokio::test]
    async fn plain_hep_or_silence_on_the_tls_port_fails_the_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let (_, tls) = self_signed(dir.path());
        let mut h = Harness::start(|cfg| {
            cfg.tls = Some(tls);
            cfg.tcp = false;
            cfg.tcp_idle_timeout = Duration::from_millis(300);
        });
        assert_eq!(h.bound.tcp, None);
        let tls_addr = h.bound.tls.unwrap();

        let mut plain = TcpStream::connect(tls_addr).await.unwrap();
        plain.write_all(&udp_frame(0)).await.unwrap();
        assert_closed_by_peer(&mut plain).await;

        // A client that never starts the handshake is cut off by the idle time-out.
        let mut silent = TcpStream::connect(tls_addr).await.unwrap();
        assert_closed_by_peer(&mut silent).await;

        h.assert_nothing_for(Duration::from_millis(50)).await;
        assert_eq!(h.counters.get("tls_handshake_failed"), 2);
        h.stop().await;
    }

    #[tokio::test]
    async fn unreadable_tls_files_fail_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ListenConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            udp: false,
            tcp: false,
            udp_sockets: 1,
            udp_recv_buffer: 1 << 20,
            tcp_max_frame: 65_535,
            tcp_max_connections: 1,
            tcp_max_connections_per_ip: 1,
            tcp_idle_timeout: Duration::from_secs(1),
            tcp_frame_timeout: Duration::from_secs(1),
            tls: Some(TlsListenConfig {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                cert: dir.path().join("none.crt"),
                key: dir.path().join("none.key"),
            }),
        };
        let (queue, _records) = crate::export::lanes::LaneQueues::new(
            1,
            1,
            crate::export::storers::Placement::Balanced,
        );
        let counters = Arc::new(Counters::new(&crate::events::CATALOG));
        let ingest = Arc::new(Ingest {
            builder: RecordBuilder {
                capture_node: "test".to_owned(),
                collector_id: "test".to_owned(),
                sip: CollectorConfig::default().extract_config(),
                max_inflated_payload: 1,
            },
            gate: crate::gate::Gate {
                switch: Arc::new(CaptureSwitch::new(true)),
                hep_capture_on: true,
                auth_key: None,
                rate_limit: None,
            },
            packets: crate::events::PacketCounters::new(&counters),
            counters,
            queue,
            hooks: crate::hook::Hooks::default(),
        });
        let err = start(&cfg, ingest, &TaskTracker::new(), &CancellationToken::new())
            .err()
            .unwrap();
        assert!(
            matches!(err, ListenError::Tls(TlsError::File { .. })),
            "{err}"
        );
    }
}
