//! HEP listeners: UDP (several SO_REUSEPORT sockets, one receive task each, large receive
//! buffers) and TCP with HEP3 stream framing (several frames per segment, frames split across
//! segments; a bad length closes only that connection).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sipcapture_proto::v1::InputKind;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::decode::hep::tcp_frame_len;
use crate::source::ingest::Ingest;

/// Largest UDP payload (IPv4: 65507; IPv6 jumbograms aside): one buffer fits any datagram.
const UDP_BUFFER: usize = 65_536;

/// Listener failures at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A socket could not be opened or bound.
    #[error("cannot listen for HEP on {proto} {addr}: {source}")]
    Bind {
        /// "udp" or "tcp".
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
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
    /// TCP idle time-out.
    pub tcp_idle_timeout: Duration,
}

/// The addresses actually bound (a configured port 0 becomes a real port).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoundAddrs {
    /// UDP address, when UDP is on.
    pub udp: Option<SocketAddr>,
    /// TCP address, when TCP is on.
    pub tcp: Option<SocketAddr>,
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

/// Binds every configured socket and spawns the receive tasks on `tasks`. Returns the bound
/// addresses. Tasks stop when `shutdown` is cancelled.
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
                udp_socket(addr, cfg.udp_recv_buffer).map_err(|source| ListenError::Bind {
                    proto: "udp",
                    addr,
                    source,
                })?;
            if i == 0 {
                let local = socket.local_addr().map_err(|source| ListenError::Bind {
                    proto: "udp",
                    addr,
                    source,
                })?;
                port = local.port();
                bound.udp = Some(local);
            }
            tasks.spawn(udp_loop(socket, ingest.clone(), shutdown.clone()));
        }
    }
    if cfg.tcp {
        let mut addr = cfg.addr;
        addr.set_port(port);
        let listener = tcp_listener(addr).map_err(|source| ListenError::Bind {
            proto: "tcp",
            addr,
            source,
        })?;
        bound.tcp = listener.local_addr().ok();
        tasks.spawn(tcp_accept_loop(
            listener,
            cfg.clone(),
            ingest,
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
                if ingest.hep(data, InputKind::HepUdp, Some(peer)).await
                    == crate::source::ingest::Outcome::Closed
                {
                    return;
                }
            }
            // ICMP errors and the like surface here on some systems; keep receiving.
            Err(e) => tracing::debug!(error = %e, "udp receive error"),
        }
    }
}

async fn tcp_accept_loop(
    listener: TcpListener,
    cfg: ListenConfig,
    ingest: Arc<Ingest>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(cfg.tcp_max_connections.max(1)));
    loop {
        // Wait for a free connection slot before accepting: excess clients queue in the backlog.
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let ingest = ingest.clone();
                let shutdown = shutdown.clone();
                let cfg = cfg.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    tcp_connection(stream, peer, &cfg, &ingest, &shutdown).await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads HEP3 frames from one connection until EOF, idle time-out, a broken frame or shutdown.
#[tracing::instrument(skip_all, fields(peer = %peer))]
async fn tcp_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    cfg: &ListenConfig,
    ingest: &Ingest,
    shutdown: &CancellationToken,
) {
    ingest.counters.add("tcp_connections", 1);
    let mut buf = BytesMut::with_capacity(cfg.tcp_max_frame.min(65_536));
    loop {
        // Emit every complete frame in the buffer; "need more" is not an error.
        loop {
            match tcp_frame_len(&buf, cfg.tcp_max_frame) {
                Ok(Some(len)) => {
                    let frame = buf.split_to(len);
                    let outcome = ingest.hep(&frame, InputKind::HepTcp, Some(peer)).await;
                    if outcome == crate::source::ingest::Outcome::Closed {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    ingest.drop_packet("tcp_bad_frame", InputKind::HepTcp, &e);
                    tracing::warn!(error = %e, "closing hep tcp connection: broken framing");
                    return;
                }
            }
        }
        let read = tokio::select! {
            () = shutdown.cancelled() => return,
            r = tokio::time::timeout(cfg.tcp_idle_timeout, stream.read_buf(&mut buf)) => r,
        };
        match read {
            Err(_elapsed) => {
                tracing::debug!("closing idle hep tcp connection");
                return;
            }
            Ok(Ok(0)) => {
                if !buf.is_empty() {
                    ingest.drop_packet(
                        "truncated",
                        InputKind::HepTcp,
                        &"connection closed inside a frame",
                    );
                }
                return;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "hep tcp read failed");
                return;
            }
        }
    }
}
