//! Mirror-port capture (Kamailio `raw_moni_capture_on`, behaviour doc §5): a packet socket on
//! `raw_interface` (pnet's Linux `AF_PACKET` channel, all ethertypes), read in one blocking
//! thread. Each frame is decoded (Ethernet → VLAN tags → IPv4/IPv6 → UDP), filtered by the
//! `raw_socket_listen` port range (source OR destination port, inclusive) and handed to
//! [`Ingest::raw`].
//!
//! Differences from Kamailio, on purpose: IPv6 and VLAN/QinQ-tagged frames are decoded (Kamailio
//! only sees untagged IPv4); fragments are counted as `dropped.fragment` (no reassembly yet);
//! a `raw_socket_listen` without a port captures every port (Kamailio refuses to start).
//!
//! Things to know when capturing:
//! * Root or `CAP_NET_RAW` is needed; without it start-up fails naming `raw_moni_capture_on`.
//! * On `lo` every datagram is seen **twice** (the outgoing and the incoming copy), so each SIP
//!   message would become two records; pnet does not expose the packet direction to tell them
//!   apart. Capture on a real interface, a veth or a SPAN port instead.
//! * The kernel usually strips VLAN tags before a packet socket sees the frame (the tag travels
//!   in the packet's metadata, which pnet does not read), so tagged traffic arrives as plain
//!   IPv4/IPv6 here; tags in the bytes (pcap files, NICs that keep them) are decoded.
//! * The capture time is the receipt time (pnet gives no packet timestamp), as in Kamailio.

use std::io;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use pnet::datalink::{self, Channel, DataLinkReceiver};
use sipcapture_proto::v1::InputKind;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::decode::frame::{self, IPPROTO_UDP, LinkType};
use crate::events::{InternalEvent, MirrorFrame, MirrorReadFailed};
use crate::source::ingest::Ingest;

/// How long one read waits before the thread checks the stop token again.
const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Read buffer: the largest IP packet plus an Ethernet header and two VLAN tags. A bigger frame
/// would be cut and counted as `dropped.truncated`.
const READ_BUFFER: usize = 65_535 + 14 + 8;
/// Pause after a read error other than a time-out (interface down, ...), so it cannot spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(200);

/// Kamailio's `raw_socket_listen` value: `ip`, `ip:port` or `ip:portA-portB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawListen {
    /// The address (bound to in IPIP mode; ignored in mirror mode, but it must parse).
    pub ip: IpAddr,
    /// The port filter.
    pub ports: PortFilter,
}

impl RawListen {
    /// Parses like Kamailio's `extract_host_port`: split at the last `:`, then the port
    /// specification at its last `-`. A bare address (IPv6 included) or `[v6]:port` also
    /// parses. The error says what is wrong, for a message naming `raw_socket_listen`.
    pub fn parse(value: &str) -> Result<Self, String> {
        if let Ok(ip) = value.parse::<IpAddr>() {
            return Ok(RawListen {
                ip,
                ports: PortFilter::ANY,
            });
        }
        let Some((host, spec)) = value.rsplit_once(':') else {
            return Err(format!(
                "{value:?} is not an IP address, ip:port or ip:portA-portB"
            ));
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ip = host
            .parse::<IpAddr>()
            .map_err(|_| format!("{host:?} is not an IPv4 or IPv6 address (bad RAW IP)"))?;
        let port = |s: &str| {
            s.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{s:?} is not a port (1..=65535)"))
        };
        let range = match spec.rsplit_once('-') {
            Some((start, end)) => port(start)?..=port(end)?,
            None => {
                let p = port(spec)?;
                p..=p
            }
        };
        if range.is_empty() {
            return Err(format!("port range {spec:?} is empty (start above end)"));
        }
        Ok(RawListen {
            ip,
            ports: PortFilter { range: Some(range) },
        })
    }
}

/// Which UDP ports are captured: a datagram matches when its source OR destination port lies in
/// the inclusive range (Kamailio's userspace check); no range matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortFilter {
    /// The inclusive range, or `None` for every port.
    pub range: Option<RangeInclusive<u16>>,
}

impl PortFilter {
    /// Every port.
    pub const ANY: PortFilter = PortFilter { range: None };

    /// Whether a datagram between these ports is captured.
    pub fn matches(&self, src_port: u16, dst_port: u16) -> bool {
        self.range
            .as_ref()
            .is_none_or(|r| r.contains(&src_port) || r.contains(&dst_port))
    }
}

/// What the mirror source needs.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Kamailio `raw_interface`.
    pub interface: String,
    /// From `raw_socket_listen`.
    pub ports: PortFilter,
    /// Kamailio `promiscuous_on` (pnet sets `PACKET_MR_PROMISC`, which the kernel drops when
    /// the socket closes).
    pub promiscuous: bool,
}

/// Why mirror capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// `raw_interface` names no interface.
    #[error("raw_interface: no interface named {name:?} (have: {available})")]
    NoInterface {
        /// The configured name.
        name: String,
        /// The interfaces that exist.
        available: String,
    },
    /// The process may not open packet sockets.
    #[error(
        "raw_moni_capture_on: capturing on raw_interface {interface:?} needs root or \
         CAP_NET_RAW (e.g. `setcap cap_net_raw+ep <binary>`): {source}"
    )]
    PermissionDenied {
        /// The interface.
        interface: String,
        /// The OS error (EPERM/EACCES).
        source: io::Error,
    },
    /// Any other failure to open the socket.
    #[error("raw_interface: cannot capture on {interface:?}: {source}")]
    Open {
        /// The interface.
        interface: String,
        /// The OS error.
        source: io::Error,
    },
    /// pnet returned a channel kind we do not read.
    #[error("raw_interface: {0:?} does not give an Ethernet channel")]
    NotEthernet(String),
}

/// Opens the packet socket on the caller's thread (so start-up errors surface at once), then
/// reads it in a blocking task tracked by `tasks` until `stop` is cancelled.
pub fn start(
    config: &MirrorConfig,
    ingest: Arc<Ingest>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> Result<(), MirrorError> {
    let rx = open(config)?;
    let runtime = tokio::runtime::Handle::current();
    let ports = config.ports.clone();
    let stop = stop.clone();
    let interface = config.interface.clone();
    tasks.spawn_blocking(move || {
        tracing::info!(interface, ports = ?ports.range, "mirror capture started");
        read_loop(rx, &ports, &ingest, &runtime, &stop);
        tracing::info!(interface, "mirror capture stopped");
    });
    Ok(())
}

fn open(config: &MirrorConfig) -> Result<Box<dyn DataLinkReceiver>, MirrorError> {
    let interfaces = datalink::interfaces();
    let Some(interface) = interfaces.iter().find(|i| i.name == config.interface) else {
        return Err(MirrorError::NoInterface {
            name: config.interface.clone(),
            available: interfaces
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let channel_config = datalink::Config {
        read_buffer_size: READ_BUFFER,
        write_buffer_size: 64,
        read_timeout: Some(READ_TIMEOUT),
        promiscuous: config.promiscuous,
        ..datalink::Config::default()
    };
    match datalink::channel(interface, channel_config) {
        Ok(Channel::Ethernet(_tx, rx)) => Ok(rx),
        Ok(_) => Err(MirrorError::NotEthernet(config.interface.clone())),
        Err(source) if source.kind() == io::ErrorKind::PermissionDenied => {
            Err(MirrorError::PermissionDenied {
                interface: config.interface.clone(),
                source,
            })
        }
        Err(source) => Err(MirrorError::Open {
            interface: config.interface.clone(),
            source,
        }),
    }
}

fn read_loop(
    mut rx: Box<dyn DataLinkReceiver>,
    ports: &PortFilter,
    ingest: &Ingest,
    runtime: &tokio::runtime::Handle,
    stop: &CancellationToken,
) {
    while !stop.is_cancelled() {
        let frame = match rx.next() {
            Ok(frame) => frame,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                MirrorReadFailed { error: &e }.emit(&ingest.counters);
                std::thread::sleep(ERROR_BACKOFF);
                continue;
            }
        };
        MirrorFrame.emit(&ingest.counters);
        let datagram = match frame::udp_in_frame(frame, LinkType::Ethernet) {
            Ok(d) => d,
            Err(e) if e.is_skip() => {
                ingest.skip_packet(e.reason());
                continue;
            }
            Err(e) => {
                ingest.drop_packet(e.reason(), InputKind::Mirror, &e);
                continue;
            }
        };
        if !ports.matches(datagram.src.port(), datagram.dst.port()) {
            ingest.skip_packet("port_filtered");
            continue;
        }
        // Backpressure: a full queue blocks this thread, and the kernel socket buffer absorbs
        // the burst (then drops, which the kernel counts).
        runtime.block_on(ingest.raw(
            datagram.src,
            datagram.dst,
            IPPROTO_UDP,
            datagram.payload,
            InputKind::Mirror,
            None,
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn raw_socket_listen_follows_kamailio_syntax() {
        let l = RawListen::parse("10.0.0.0:5060-5090").unwrap();
        assert_eq!(l.ip, "10.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(l.ports.range, Some(5060..=5090));
        assert_eq!(
            RawListen::parse("0.0.0.0:5060").unwrap().ports.range,
            Some(5060..=5060)
        );
        // IPv6 without brackets (Kamailio: split at the last ':'), with brackets, bare.
        let v6 = RawListen::parse("fd00::1:5060-5061").unwrap();
        assert_eq!(v6.ip, "fd00::1".parse::<IpAddr>().unwrap());
        assert_eq!(v6.ports.range, Some(5060..=5061));
        assert_eq!(
            RawListen::parse("[fd00::1]:5070").unwrap().ports.range,
            Some(5070..=5070)
        );
        assert_eq!(RawListen::parse("fd00::1").unwrap().ports, PortFilter::ANY);
        assert_eq!(RawListen::parse("10.0.0.1").unwrap().ports, PortFilter::ANY);
        for bad in [
            "",
            "host:5060",
            "10.0.0.1:",
            "10.0.0.1:0",
            "10.0.0.1:5090-5060",
            "10.0.0.1:abc",
            "10.0.0.1:5060-70000",
        ] {
            assert!(RawListen::parse(bad).is_err(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn port_filter_is_source_or_destination_inclusive() {
        let f = RawListen::parse("0.0.0.0:5060-5090").unwrap().ports;
        assert!(f.matches(5060, 40000));
        assert!(f.matches(40000, 5090));
        assert!(f.matches(5075, 5075));
        assert!(!f.matches(5059, 5091));
        assert!(!f.matches(9999, 40000));
        assert!(PortFilter::ANY.matches(1, 2));
    }
}
