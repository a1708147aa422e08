//! One forward destination: a task that connects (and reconnects with capped exponential
//! backoff), then sends what its bounded queue holds — UDP datagrams as they are, HEP3 frames
//! over TCP or TLS.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sipcapture_runtime::counters::Counters;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use super::rules::{Target, Transport};
use crate::decode::hep;
use crate::events::{
    ForwardConnectFailed, ForwardConnected, ForwardSendFailed, Forwarded, InternalEvent,
};

/// Longest wait between two reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Connect time-out of a TCP/TLS destination.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What to send: a received HEP packet, or a record to encode.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// The packet as received (forwarded byte-identical where the transport allows).
    Raw(Bytes),
    /// Already-encoded HEP3 (a raw-captured record).
    Hep3(Bytes),
}

/// The bytes to put on the wire for `out` over `transport`.
fn wire_bytes(out: &Outgoing, transport: Transport) -> Result<Bytes, hep::HepError> {
    match out {
        Outgoing::Hep3(b) => Ok(b.clone()),
        Outgoing::Raw(b) if transport == Transport::Udp => Ok(b.clone()),
        Outgoing::Raw(b) => {
            // A stream needs HEP3's length field: v1/v2 are re-encoded; HEP3/EEP1 go as received
            // (EEP1 frames on the same length field).
            if b.starts_with(hep::HEP3_MAGIC) || b.starts_with(hep::EEP1_MAGIC) {
                return Ok(b.clone());
            }
            let packet = hep::decode(b)?;
            let mut buf = Vec::with_capacity(b.len() + 64);
            hep::try_encode_v3(&packet, &mut buf)?;
            Ok(Bytes::from(buf))
        }
    }
}

async fn resolve(target: &Target) -> std::io::Result<SocketAddr> {
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, target.port));
    }
    tokio::net::lookup_host((target.host.as_str(), target.port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{} does not resolve", target.host)))
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn connect(target: &Target, tls: Option<&TlsConnector>) -> std::io::Result<Conn> {
    let addr = resolve(target).await?;
    match target.transport {
        Transport::Udp => {
            let local: SocketAddr = if addr.is_ipv4() {
                SocketAddr::from(([0, 0, 0, 0], 0))
            } else {
                SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
            };
            let socket = UdpSocket::bind(local).await?;
            socket.connect(addr).await?;
            Ok(Conn::Udp(socket))
        }
        Transport::Tcp | Transport::Tls => {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|_| std::io::Error::other("connect timed out"))??;
            stream.set_nodelay(true)?;
            let Some(connector) = tls.filter(|_| target.transport == Transport::Tls) else {
                return Ok(Conn::Tcp(stream));
            };
            let name = rustls_pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let tls_stream = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, stream))
                .await
                .map_err(|_| std::io::Error::other("tls handshake timed out"))??;
            Ok(Conn::Tls(Box::new(tls_stream)))
        }
    }
}

async fn send(conn: &mut Conn, bytes: &[u8]) -> std::io::Result<()> {
    match conn {
        Conn::Udp(s) => s.send(bytes).await.map(|_| ()),
        Conn::Tcp(s) => s.write_all(bytes).await,
        Conn::Tls(s) => {
            s.write_all(bytes).await?;
            s.flush().await
        }
    }
}

/// At shutdown: what is still queued (and the packet held for a retry) is counted as
/// `dropped.forward_shutdown`, never lost silently.
fn abandon(name: &str, rx: &mut mpsc::Receiver<Outgoing>, held: bool, counters: &Counters) {
    rx.close();
    let mut left = u64::from(held);
    while rx.try_recv().is_ok() {
        left += 1;
    }
    if left > 0 {
        for _ in 0..left {
            counters.count_drop("forward_shutdown");
        }
        tracing::warn!(dest = %name, packets = left, "shutdown: forward queue not sent");
    }
}

/// One destination: connect (and reconnect with backoff), then send what the queue holds. A
/// packet whose send fails is retried once on the next connection.
pub(super) async fn run_destination(
    target: Target,
    tls: Option<TlsConnector>,
    mut rx: mpsc::Receiver<Outgoing>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) {
    let name = format!("{}:{}", target.host, target.port);
    let mut conn: Option<Conn> = None;
    let mut backoff = Duration::from_millis(100);
    let mut pending: Option<(Bytes, bool)> = None;
    loop {
        let (bytes, retried) = match pending.take() {
            Some(p) => p,
            None => {
                let next = tokio::select! {
                    () = shutdown.cancelled() => None,
                    next = rx.recv() => next,
                };
                let Some(out) = next else {
                    abandon(&name, &mut rx, false, &counters);
                    return;
                };
                match wire_bytes(&out, target.transport) {
                    Ok(b) => (b, false),
                    Err(e) => {
                        let total = counters.count_drop("forward_unencodable");
                        if sipcapture_runtime::counters::worth_logging(total) {
                            tracing::warn!(dest = %name, error = %e, total, "packet not forwardable");
                        }
                        continue;
                    }
                }
            }
        };
        if conn.is_none() {
            match connect(&target, tls.as_ref()).await {
                Ok(c) => {
                    conn = Some(c);
                    backoff = Duration::from_millis(100);
                    ForwardConnected.emit(&counters);
                }
                Err(e) => {
                    ForwardConnectFailed {
                        dest: &name,
                        error: &e,
                    }
                    .emit(&counters);
                    pending = Some((bytes, retried));
                    tokio::select! {
                        () = shutdown.cancelled() => {
                            abandon(&name, &mut rx, true, &counters);
                            return;
                        }
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    // While unreachable, the queue keeps filling; once full, new packets are
                    // counted as `dropped.forward_queue_full`. The held packet is dropped after
                    // one retry so a dead peer cannot pin it forever.
                    if retried {
                        pending = None;
                        counters.count_drop("forward_unreachable");
                    } else if let Some(p) = pending.as_mut() {
                        p.1 = true;
                    }
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match send(c, &bytes).await {
            Ok(()) => Forwarded.emit(&counters),
            Err(e) => {
                conn = None;
                ForwardSendFailed {
                    dest: &name,
                    error: &e,
                }
                .emit(&counters);
                if !retried {
                    pending = Some((bytes, true));
                } else {
                    counters.count_drop("forward_send_failed");
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn streams_get_hep3_and_datagrams_the_original_bytes() {
        let v2 = include_bytes!("../../testdata/hep/hep2_kamailio_invite.bin");
        let raw = Outgoing::Raw(Bytes::from_static(v2));
        assert_eq!(&wire_bytes(&raw, Transport::Udp).unwrap()[..], &v2[..]);
        let framed = wire_bytes(&raw, Transport::Tcp).unwrap();
        assert!(framed.starts_with(b"HEP3"));
        let p = hep::decode(&framed).unwrap();
        assert_eq!(p.capture_id, Some(2001));
        let v3 = include_bytes!("../../testdata/hep/hep3_kamailio_invite.bin");
        let raw = Outgoing::Raw(Bytes::from_static(v3));
        assert_eq!(&wire_bytes(&raw, Transport::Tls).unwrap()[..], &v3[..]);
    }
}
