//! The per-packet path shared by the live raw sources ([`super::mirror`], [`super::ipip`]): one
//! [`RawWorker`] per reader thread turns captured frames into [`Ingest::raw`] calls, counting
//! everything it does not hand on.

use std::sync::Arc;

use sipcapture_proto::v1::InputKind;

use crate::decode::error::PacketError;
use crate::decode::frame::{self, IPPROTO_UDP, LinkType};
use crate::decode::{ip, udp};
use crate::source::ingest::Ingest;
use crate::source::mirror::PortFilter;

/// What a captured buffer starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawLink {
    /// An Ethernet header (possibly VLAN-tagged).
    Ethernet,
    /// An IPv4 or IPv6 header (tunnel and tun devices; the inner packet of IPIP).
    RawIp,
}

/// One reader thread's decoding state.
#[derive(Debug)]
pub struct RawWorker {
    ingest: Arc<Ingest>,
    runtime: tokio::runtime::Handle,
    ports: PortFilter,
    input: InputKind,
}

impl RawWorker {
    /// A worker handing records of `input` to `ingest` (blocking on `runtime` while its queue
    /// is full).
    pub fn new(
        ingest: Arc<Ingest>,
        runtime: tokio::runtime::Handle,
        ports: PortFilter,
        input: InputKind,
    ) -> Self {
        RawWorker {
            ingest,
            runtime,
            ports,
            input,
        }
    }

    /// The ingest (for counters).
    pub fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    /// Handles one captured buffer.
    pub fn frame(&mut self, link: RawLink, data: &[u8]) {
        let decoded = match link {
            RawLink::Ethernet => {
                frame::udp_in_frame(data, LinkType::Ethernet).map(|d| (d.src, d.dst, d.payload))
            }
            RawLink::RawIp => udp_in_ip(data),
        };
        let (src, dst, payload) = match decoded {
            Ok(d) => d,
            Err(e) if e.is_skip() => {
                self.ingest.skip_packet(e.reason());
                return;
            }
            Err(e) => {
                self.ingest.drop_packet(e.reason(), self.input, &e);
                return;
            }
        };
        if !self.ports.matches(src.port(), dst.port()) {
            self.ingest.skip_packet("port_filtered");
            return;
        }
        // Backpressure: a full queue blocks this thread, and the kernel socket buffer absorbs
        // the burst (then drops, which the kernel counts).
        self.runtime.block_on(
            self.ingest
                .raw(src, dst, IPPROTO_UDP, payload, self.input, None),
        );
    }

    /// Called when a read times out: lets time-based state expire.
    pub fn idle(&mut self) {}
}

/// An IPv4/IPv6 packet down to its UDP payload.
fn udp_in_ip(
    data: &[u8],
) -> Result<(std::net::SocketAddr, std::net::SocketAddr, &[u8]), PacketError> {
    let version = data.first().map_or(0, |b| b >> 4);
    let packet = if version == 6 {
        ip::from_ipv6(data)
    } else {
        ip::from_ipv4(data)
    }?;
    if packet.protocol != IPPROTO_UDP {
        return Err(PacketError::NotUdp {
            offset: packet.header_len,
            protocol: packet.protocol,
        });
    }
    let datagram = udp::from_slice(packet.payload).map_err(|e| e.at(packet.header_len))?;
    Ok((
        std::net::SocketAddr::new(packet.src, datagram.src_port),
        std::net::SocketAddr::new(packet.dst, datagram.dst_port),
        datagram.payload,
    ))
}
