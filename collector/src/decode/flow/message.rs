//! What the stateful decoders report, shared by the frame walk ([`super::dissect`]) and the
//! TCP streams ([`super::stream`]): a message found in captured traffic, or why a frame gave
//! none.

use std::net::SocketAddr;
use std::time::SystemTime;

use crate::decode::error::PacketError;
use crate::decode::ethernet::VlanTags;

/// The transport a message was captured on, as Kamailio's `proto` column needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// SCTP.
    Sctp,
    /// WebSocket over TCP (WSS cannot be seen in clear).
    Ws,
}

impl Transport {
    /// Kamailio's `proto` value: 1 UDP, 2 TCP, 4 SCTP, 5 WS.
    pub fn kamailio_proto(self) -> u32 {
        match self {
            Transport::Udp => 1,
            Transport::Tcp => 2,
            Transport::Sctp => 4,
            Transport::Ws => 5,
        }
    }
}

/// What a message's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// A candidate SIP message (the SIP parser decides; non-SIP UDP payloads such as RTP are
    /// counted as `not_sip` by the ingest).
    Sip,
    /// A HEP packet captured on its way to a HEP collector (`HEP3`/`EEP1`, or a valid v1/v2
    /// header): it goes through the HEP path, so a capture of HEP traffic imports its SIP.
    Hep,
}

/// One message found in captured traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawMessage<'a> {
    /// Capture time of the frame that completed the message.
    pub ts: SystemTime,
    /// VLAN ids of the (innermost tagged) Ethernet header.
    pub vlan: VlanTags,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// The transport.
    pub transport: Transport,
    /// The IP protocol number (17, 6 or 132; 6 for WebSocket).
    pub ip_protocol: u8,
    /// SIP or HEP.
    pub kind: PayloadKind,
    /// One complete SIP message (or one HEP packet).
    pub payload: &'a [u8],
}

/// What the dissector reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dissected<'a> {
    /// A message.
    Message(RawMessage<'a>),
    /// Ordinary traffic that is not ours (another ethertype or protocol, a port outside the
    /// filter, a retransmission, a non-SIP stream): count silently under this reason.
    Skipped(&'static str),
    /// Malformed, cut or lost data: count and log.
    Dropped(PacketError),
}
