//! Mirror-port capture (Kamailio `raw_moni_capture_on`, behaviour doc §5): packet sockets on
//! `raw_interface` (all ethertypes), each read in its own blocking thread by a
//! [`RawWorker`] with its own [`crate::decode::flow::Dissector`] (Ethernet → VLAN tags →
//! PPPoE → IPv4/IPv6 with defragmentation → tunnels → UDP, TCP reassembly, SCTP, WebSocket),
//! filtered by the `raw_socket_listen` port range (source OR destination port, inclusive).
//!
//! The sockets: socket2 creates each `AF_PACKET` socket (protocol 0, so nothing is queued
//! before the bind) and attaches the `raw_moni_bpf_on` filter ([`super::bpf`]) with
//! `SO_ATTACH_FILTER`; pnet then binds it to the interface (`ETH_P_ALL`), adds the
//! `promiscuous_on` membership (`PACKET_MR_PROMISC`), joins the `raw_sock_children` fanout group
//! (`PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG`: a flow, both directions, stays on one
//! socket, and IPv4 fragments are reassembled by the kernel before the flow hash) and reads it.
//! All of it through safe APIs.
//!
//! Differences from Kamailio, on purpose: IPv6, VLAN/QinQ-tagged frames, fragments, tunnels,
//! TCP, SCTP and WebSocket are decoded (Kamailio only sees untagged, unfragmented IPv4/UDP);
//! the BPF filter covers all of that too; a `raw_socket_listen` without a port captures every
//! port (Kamailio refuses to start); `raw_sock_children` readers each have their own socket in
//! a fanout group (Kamailio's children share one socket, so a flow's packets are spread over
//! processes).
//!
//! Things to know when capturing:
//! * Root or `CAP_NET_RAW` is needed; without it start-up fails naming `raw_moni_capture_on`.
//! * On `lo` every datagram is seen **twice** (the outgoing and the incoming copy), so each SIP
//!   message would become two records; pnet does not expose the packet direction to tell them
//!   apart. Capture on a real interface, a veth or a SPAN port instead.
//! * The kernel usually strips the outer VLAN tag of a received frame before a packet socket
//!   sees it (the tag travels in the packet's metadata, which pnet does not read), so a
//!   single-tagged frame arrives untagged and a QinQ frame with its inner tag; tags in the bytes
//!   are decoded. The VLAN id is therefore not reliable on live capture.
//! * Interfaces without a link header (tun, IPIP/GRE tunnel devices) are read as raw IP.
//! * The capture time is the receipt time (pnet gives no packet timestamp), as in Kamailio.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use std::os::fd::IntoRawFd;

use pnet::datalink::{self, Channel, DataLinkReceiver, FanoutOption, FanoutType, NetworkInterface};
use sipcapture_proto::v1::InputKind;
use socket2::{Domain, Socket, Type};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::decode::frame::LinkType;
use crate::events::{InternalEvent, MirrorFrame, MirrorReadFailed};
use crate::ingest::Ingest;
use crate::source::bpf;
use crate::source::raw::{PortFilter, RawWorker};

/// How long one read waits before the thread checks the stop token again.
const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Read buffer: the largest IP packet plus an Ethernet header and two VLAN tags. A bigger frame
/// would be cut and counted as `dropped.truncated`.
const READ_BUFFER: usize = 65_535 + 14 + 8;
/// Pause after a read error other than a time-out (interface down, ...), so it cannot spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(200);

/// What the mirror source needs.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Kamailio `raw_interface`.
    pub interface: String,
    /// From `raw_socket_listen`.
    pub ports: PortFilter,
    /// Kamailio `promiscuous_on`: a `PACKET_MR_PROMISC` membership on every capture socket,
    /// which the kernel drops when the socket closes (no interface left promiscuous after a
    /// crash, unlike Kamailio's `IFF_PROMISC` flag).
    pub promiscuous: bool,
    /// Kamailio `raw_moni_bpf_on`: attach the port-range filter of [`super::bpf`] (needs
    /// `ports` to hold a range).
    pub bpf: bool,
    /// Kamailio `raw_sock_children`: reader threads, each with its own packet socket in one
    /// `PACKET_FANOUT` group (hash mode with `PACKET_FANOUT_FLAG_DEFRAG`).
    pub children: usize,
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
    /// The interface's link type (`/sys/class/net/<if>/type`) is neither Ethernet-like nor
    /// raw IP.
    #[error(
        "raw_interface: {interface:?} has link type {arphrd} (ARPHRD_*), not Ethernet or raw IP"
    )]
    UnsupportedLink {
        /// The interface.
        interface: String,
        /// Its ARPHRD type.
        arphrd: u32,
    },
    /// The BPF program could not be built or attached.
    #[error("raw_moni_bpf_on: {0}")]
    Filter(String),
    /// `PACKET_FANOUT` could not be set up.
    #[error("raw_sock_children: cannot join the PACKET_FANOUT group on {interface:?}: {source}")]
    Fanout {
        /// The interface.
        interface: String,
        /// The OS error.
        source: io::Error,
    },
}

/// ARPHRD types (linux/if_arp.h) whose frames start with an Ethernet header.
const ARPHRD_ETHERNET_LIKE: [u32; 2] = [1 /* ETHER */, 772 /* LOOPBACK */];
/// ARPHRD types whose frames start at the IP header: IPIP, IP6IP6, SIT, GRE, NONE (tun).
const ARPHRD_RAW_IP: [u32; 5] = [768, 769, 776, 778, 65534];
/// Receive buffer asked for per capture socket (the kernel caps it at `net.core.rmem_max`).
const SOCKET_RECV_BUFFER: usize = 8 * 1024 * 1024;
/// Tries at finding a free `PACKET_FANOUT` group id.
const FANOUT_ID_TRIES: usize = 8;

/// Opens the packet sockets on the caller's thread (so start-up errors surface at once), then
/// reads each in a blocking task tracked by `tasks` until `stop` is cancelled.
pub fn start(
    config: &MirrorConfig,
    ingest: Arc<Ingest>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> Result<(), MirrorError> {
    let interface = find_interface(&config.interface)?;
    let link = link_of(&config.interface)?;
    let program = match (&config.ports.range, config.bpf) {
        (Some(range), true) => {
            // `link_of` only answers Ethernet or raw IP.
            let filter_link = if link == LinkType::RawIp {
                bpf::FilterLink::RawIp
            } else {
                bpf::FilterLink::Ethernet
            };
            let program = bpf::port_range_program(filter_link, range)
                .map_err(|e| MirrorError::Filter(e.to_string()))?;
            Some(program)
        }
        (None, true) => {
            return Err(MirrorError::Filter(
                "raw_socket_listen has no port range to filter on".to_owned(),
            ));
        }
        (_, false) => None,
    };
    let children = config.children.max(1);
    let mut receivers = Vec::with_capacity(children);
    let mut fanout = None;
    if children > 1 {
        // The group id is per network namespace: pick a random one, and another if a group
        // with that id exists with other settings (EINVAL) or is full.
        let mut last_error = None;
        for _ in 0..FANOUT_ID_TRIES {
            let group_id = rand::random::<u16>();
            match open(&interface, config, program.as_deref(), Some(group_id)) {
                Ok(rx) => {
                    receivers.push(rx);
                    fanout = Some(group_id);
                    break;
                }
                Err(MirrorError::Fanout { source, .. }) => last_error = Some(source),
                Err(e) => return Err(e),
            }
        }
        if fanout.is_none() {
            return Err(MirrorError::Fanout {
                interface: config.interface.clone(),
                source: last_error.unwrap_or_else(|| io::Error::other("no group id")),
            });
        }
    }
    while receivers.len() < children {
        receivers.push(open(&interface, config, program.as_deref(), fanout)?);
    }
    let runtime = tokio::runtime::Handle::current();
    for (worker, rx) in receivers.into_iter().enumerate() {
        let mut raw = RawWorker::new(
            ingest.clone(),
            runtime.clone(),
            config.ports.clone(),
            InputKind::Mirror,
        );
        let stop = stop.clone();
        let interface = config.interface.clone();
        let ports = config.ports.range.clone();
        let bpf = program.is_some();
        tasks.spawn_blocking(move || {
            tracing::info!(
                interface,
                worker,
                ?ports,
                bpf,
                ?fanout,
                "mirror capture started"
            );
            read_loop(rx, link, &mut raw, &stop);
            tracing::info!(interface, worker, "mirror capture stopped");
        });
    }
    Ok(())
}

fn find_interface(name: &str) -> Result<NetworkInterface, MirrorError> {
    let interfaces = datalink::interfaces();
    match interfaces.iter().find(|i| i.name == name) {
        Some(interface) => Ok(interface.clone()),
        None => Err(MirrorError::NoInterface {
            name: name.to_owned(),
            available: interfaces
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// What the interface's frames start with, from its ARPHRD type; Ethernet when sysfs does not
/// say.
fn link_of(interface: &str) -> Result<LinkType, MirrorError> {
    let path = format!("/sys/class/net/{interface}/type");
    let Some(arphrd) = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    else {
        return Ok(LinkType::Ethernet);
    };
    if ARPHRD_ETHERNET_LIKE.contains(&arphrd) {
        Ok(LinkType::Ethernet)
    } else if ARPHRD_RAW_IP.contains(&arphrd) {
        Ok(LinkType::RawIp)
    } else {
        Err(MirrorError::UnsupportedLink {
            interface: interface.to_owned(),
            arphrd,
        })
    }
}

/// Opens one capture socket. The socket is created with protocol 0, so it receives nothing
/// until pnet binds it to the interface (`ETH_P_ALL`): the filter is in place before the first
/// frame. pnet then adds the promiscuous membership and joins the fanout group.
fn open(
    interface: &NetworkInterface,
    config: &MirrorConfig,
    program: Option<&[bpf::Insn]>,
    fanout: Option<u16>,
) -> Result<Box<dyn DataLinkReceiver>, MirrorError> {
    let socket = Socket::new(Domain::PACKET, Type::RAW, None).map_err(|source| {
        if matches!(source.kind(), io::ErrorKind::PermissionDenied) {
            MirrorError::PermissionDenied {
                interface: config.interface.clone(),
                source,
            }
        } else {
            MirrorError::Open {
                interface: config.interface.clone(),
                source,
            }
        }
    })?;
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_RECV_BUFFER) {
        tracing::debug!(error = %e, "capture socket receive buffer unchanged");
    }
    if let Some(program) = program {
        let filter: Vec<socket2::SockFilter> =
            program.iter().map(|insn| insn.to_sock_filter()).collect();
        socket
            .attach_filter(&filter)
            .map_err(|e| MirrorError::Filter(format!("SO_ATTACH_FILTER failed: {e}")))?;
    }
    let channel_config = datalink::Config {
        read_buffer_size: READ_BUFFER,
        write_buffer_size: 64,
        read_timeout: Some(READ_TIMEOUT),
        promiscuous: config.promiscuous,
        linux_fanout: fanout.map(|group_id| FanoutOption {
            group_id,
            fanout_type: FanoutType::HASH,
            defrag: true,
            rollover: false,
        }),
        // pnet owns (and closes) the descriptor from here on.
        socket_fd: Some(socket.into_raw_fd()),
        ..datalink::Config::default()
    };
    match datalink::channel(interface, channel_config) {
        Ok(Channel::Ethernet(_tx, rx)) => Ok(rx),
        Ok(_) => Err(MirrorError::NotEthernet(config.interface.clone())),
        Err(source) if fanout.is_some() && source.raw_os_error().is_some_and(is_fanout_errno) => {
            Err(MirrorError::Fanout {
                interface: config.interface.clone(),
                source,
            })
        }
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

/// EINVAL (a group with this id has other settings) and ENOSPC (full group), which only the
/// fanout step returns after a successful bind.
fn is_fanout_errno(errno: i32) -> bool {
    const EINVAL: i32 = 22;
    const ENOSPC: i32 = 28;
    matches!(errno, EINVAL | ENOSPC)
}

fn read_loop(
    mut rx: Box<dyn DataLinkReceiver>,
    link: LinkType,
    worker: &mut RawWorker,
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
                worker.idle();
                continue;
            }
            Err(e) => {
                MirrorReadFailed { error: &e }.emit(&worker.ingest().counters);
                std::thread::sleep(ERROR_BACKOFF);
                continue;
            }
        };
        MirrorFrame.emit(&worker.ingest().counters);
        worker.frame(link, frame);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_link_type_comes_from_the_interface_type() {
        // `lo` is ARPHRD_LOOPBACK (772), with a fake Ethernet header.
        assert_eq!(link_of("lo").unwrap(), LinkType::Ethernet);
        // No sysfs entry: assume Ethernet (pnet then reports the missing interface).
        assert_eq!(link_of("no-such-if0").unwrap(), LinkType::Ethernet);
    }
}
