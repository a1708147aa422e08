//! IPIP capture (Kamailio `raw_ipip_capture_on`, behaviour doc §5): a raw IPv4 socket for
//! protocol 4 (IP in IP, RFC 2003), optionally bound to the `raw_socket_listen` address, read in
//! one blocking thread. A switch or router mirrors traffic by encapsulating it towards this
//! host; the kernel hands the socket each packet with its outer IPv4 header, whose length is
//! read from its IHL (Kamailio skips a fixed 20 bytes, so outer options broke it). The inner
//! packet goes through the same [`RawWorker`] as mirror frames: port filter on the inner ports
//! (source OR destination), then [`crate::ingest::Ingest::raw`] with
//! [`InputKind::Ipip`].
//!
//! Things to know:
//! * Root or `CAP_NET_RAW` is needed; without it start-up fails naming `raw_ipip_capture_on`.
//! * A raw socket sees packets addressed to this host only, after the kernel's own IP
//!   reassembly (an outer packet fragmented on the way arrives whole); locally sent IPIP
//!   packets are not seen.
//! * Binding to an address (`raw_socket_listen` with a non-zero IPv4 address) keeps only
//!   packets whose outer destination is that address.
//! * One reader: a raw IP socket cannot share its load by flow (every raw socket gets a copy of
//!   every packet), so `raw_sock_children` applies to mirror capture only.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use sipcapture_proto::v1::InputKind;
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::decode::frame::LinkType;
use crate::decode::ip;
use crate::ingest::Ingest;
use crate::source::raw::{PortFilter, RawWorker};

/// IANA protocol number of IP in IP (RFC 2003).
pub const IPPROTO_IPIP: i32 = 4;
/// How long one read waits before the thread checks the stop token again.
const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// The largest IPv4 packet.
const READ_BUFFER: usize = 65_535;
/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`).
const SOCKET_RECV_BUFFER: usize = 8 * 1024 * 1024;
/// Pause after a read error other than a time-out, so it cannot spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(200);

/// What the IPIP source needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpipConfig {
    /// The address to bind to (from `raw_socket_listen`); `None` receives IPIP for every
    /// local address.
    pub bind: Option<Ipv4Addr>,
    /// The inner port filter (from `raw_socket_listen`).
    pub ports: PortFilter,
}

/// Why IPIP capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum IpipError {
    /// The process may not open raw sockets.
    #[error(
        "raw_ipip_capture_on: a raw IPIP socket needs root or CAP_NET_RAW \
         (e.g. `setcap cap_net_raw+ep <binary>`): {0}"
    )]
    PermissionDenied(#[source] io::Error),
    /// Any other failure to open the socket.
    #[error("raw_ipip_capture_on: cannot open a raw IPIP socket: {0}")]
    Open(#[source] io::Error),
    /// The bind to the `raw_socket_listen` address failed (not a local address, ...).
    #[error(
        "raw_socket_listen: cannot bind the IPIP socket to {addr}: {}",
        sipcapture_runtime::server::bind_problem(.error)
    )]
    Bind {
        /// The address.
        addr: Ipv4Addr,
        /// The OS error (in the message, not a separate cause).
        error: io::Error,
    },
}

/// Opens the socket on the caller's thread (so start-up errors surface at once), then reads it
/// in a blocking task tracked by `tasks` until `stop` is cancelled.
pub fn start(
    config: &IpipConfig,
    ingest: Arc<Ingest>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> Result<(), IpipError> {
    let socket = open(config)?;
    let mut worker = RawWorker::new(
        ingest,
        tokio::runtime::Handle::current(),
        config.ports.clone(),
        InputKind::Ipip,
    );
    let stop = stop.clone();
    let bind = config.bind;
    let ports = config.ports.range.clone();
    tasks.spawn_blocking(move || {
        tracing::info!(?bind, ?ports, "ipip capture started");
        read_loop(&socket, &mut worker, &stop);
        tracing::info!("ipip capture stopped");
    });
    Ok(())
}

fn open(config: &IpipConfig) -> Result<Socket, IpipError> {
    let socket =
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_IPIP))).map_err(|e| {
            if e.kind() == io::ErrorKind::PermissionDenied {
                IpipError::PermissionDenied(e)
            } else {
                IpipError::Open(e)
            }
        })?;
    if let Some(addr) = config.bind {
        let local = SocketAddr::V4(SocketAddrV4::new(addr, 0));
        socket
            .bind(&local.into())
            .map_err(|error| IpipError::Bind { addr, error })?;
    }
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_RECV_BUFFER) {
        tracing::debug!(error = %e, "ipip socket receive buffer unchanged");
    }
    socket
        .set_read_timeout(Some(READ_TIMEOUT))
        .map_err(IpipError::Open)?;
    Ok(socket)
}

fn read_loop(socket: &Socket, worker: &mut RawWorker, stop: &CancellationToken) {
    let mut buf = vec![0u8; READ_BUFFER];
    let mut reader = socket;
    while !stop.is_cancelled() {
        let len = match reader.read(&mut buf) {
            Ok(len) => len,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                worker.idle();
                continue;
            }
            Err(e) => {
                let total = worker.ingest().counters.count_drop("read_error");
                if sipcapture_runtime::counters::worth_logging(total) {
                    tracing::warn!(error = %e, total, "ipip capture read failed");
                }
                std::thread::sleep(ERROR_BACKOFF);
                continue;
            }
        };
        worker.ingest().counters.add("ipip_packets", 1);
        let packet = buf.get(..len).unwrap_or_default();
        match inner_packet(packet) {
            Ok(inner) => worker.frame(LinkType::RawIp, inner),
            Err(e) => {
                worker.ingest().drop_packet(e.reason(), InputKind::Ipip, &e);
            }
        }
    }
}

/// The inner packet of an IPIP packet as a raw socket delivers it: the outer IPv4 header, its
/// length from the IHL (options included), is cut off. The outer header is validated like any
/// IPv4 header (version, IHL, total length within the read).
pub fn inner_packet(packet: &[u8]) -> Result<&[u8], crate::decode::error::PacketError> {
    let outer = ip::from_ipv4(packet)?;
    Ok(outer.payload)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::decode::error::PacketError;

    fn ipv4(protocol: u8, options: usize, payload: &[u8]) -> Vec<u8> {
        let header_len = 20 + options;
        let total = u16::try_from(header_len + payload.len()).unwrap();
        let ihl = u8::try_from(header_len / 4).unwrap();
        let mut p = vec![0x40 | ihl, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 1, 0, 0, 64, protocol, 0, 0]);
        p.extend_from_slice(&[198, 51, 100, 1, 198, 51, 100, 2]);
        p.resize(header_len, 1);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn the_outer_header_length_comes_from_its_ihl() {
        let inner = ipv4(17, 0, b"inner udp bytes");
        for options in [0, 4, 40] {
            let outer = ipv4(4, options, &inner);
            assert_eq!(inner_packet(&outer).unwrap(), inner.as_slice(), "{options}");
        }
        // Trailing bytes beyond the outer total length are not part of the inner packet.
        let mut padded = ipv4(4, 0, &inner);
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(inner_packet(&padded).unwrap(), inner.as_slice());
    }

    #[test]
    fn broken_outer_headers_are_typed_errors() {
        let inner = ipv4(17, 0, b"x");
        let outer = ipv4(4, 0, &inner);
        assert!(matches!(
            inner_packet(&outer[..10]),
            Err(PacketError::Truncated { .. })
        ));
        assert!(matches!(
            inner_packet(&outer[..30]),
            Err(PacketError::Truncated { .. })
        ));
        let mut bad_ihl = outer.clone();
        bad_ihl[0] = 0x44;
        assert!(matches!(
            inner_packet(&bad_ihl),
            Err(PacketError::BadIpv4Length { ihl: 4, .. })
        ));
        let mut v6 = outer;
        v6[0] = 0x65;
        assert!(matches!(
            inner_packet(&v6),
            Err(PacketError::BadIpVersion { version: 6, .. })
        ));
    }
}
