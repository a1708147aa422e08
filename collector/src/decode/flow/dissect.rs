//! The dissector of raw capture (mirror port, IPIP raw socket, pcap files): one captured frame
//! in, zero or more SIP messages (or HEP packets found in the traffic) out.
//!
//! The walk: link header ([`LinkType`]: Ethernet with 802.1Q/802.1ad tags, Linux cooked v1/v2,
//! raw IP) → PPPoE session → IPv4/IPv6 (extension headers; fragments reassembled by
//! [`super::defrag`]) → tunnels (IPIP and IPv6-in-IP, GRE with transparent Ethernet bridging
//! and ERSPAN I/II/III, VXLAN on UDP 4789), at most [`MAX_ENCAPSULATIONS`] deep → UDP (one
//! datagram = one message), TCP (per-flow reassembly and SIP / HEP / WebSocket framing,
//! [`super::stream`]) or SCTP (DATA chunks).
//!
//! The port predicate is applied to the innermost transport ports before any TCP flow state is
//! created. Everything that yields no message is reported: [`Dissected::Skipped`] for ordinary
//! traffic that is not ours (counted silently), [`Dissected::Dropped`] for malformed, cut or
//! lost data (counted and logged).
//!
//! State (fragments, TCP flows) is bounded by [`DissectLimits`]; [`Dissector::expire`] times it
//! out and should be called about once a second (with packet time for pcap files).
//! Synchronous and single-threaded: a reading thread owns its dissector.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use crate::decode::error::PacketError;
use crate::decode::ethernet::{self, ETHERTYPE_IPV4, ETHERTYPE_IPV6, VlanTags};
use crate::decode::frame::LinkType;
use crate::decode::tunnel::{self, Inner};
use crate::decode::{hep, ip, sctp, tcp, udp};

use super::defrag::{Defragmenter, FragmentKey, Reassembly};
use super::message::{Dissected, PayloadKind, RawMessage, Transport};
use super::sctp::{SctpReassembler, SctpReassembly, SctpStreamKey};
use super::stream::{FlowKey, StreamLimits, Streams};

/// Most encapsulations (tunnel or PPPoE headers) followed inside one frame.
pub const MAX_ENCAPSULATIONS: usize = 8;

const IPPROTO_IPIP: u8 = 4;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_GRE: u8 = 47;
const IPPROTO_SCTP: u8 = 132;

/// Bounds of the dissector's state. The defaults suit a busy SBC mirror port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DissectLimits {
    /// A datagram whose fragments have not all arrived after this long is discarded
    /// (`fragment_timeout`). Default 30 s (Linux `ipfrag_time`).
    pub fragment_timeout: Duration,
    /// Most datagrams being reassembled at once. Default 4096.
    pub max_fragment_datagrams: usize,
    /// Most fragment bytes buffered. Default 16 MiB.
    pub max_fragment_bytes: usize,
    /// A TCP flow direction without segments for this long is forgotten. Default 300 s.
    pub tcp_idle_timeout: Duration,
    /// Most TCP flow directions tracked (the least recently seen is evicted). Default 16384.
    pub max_tcp_flows: usize,
    /// Most bytes buffered per TCP direction. Default 256 KiB.
    pub max_tcp_flow_bytes: usize,
    /// Most bytes buffered over all TCP directions. Default 64 MiB.
    pub max_tcp_bytes: usize,
    /// Largest SIP header block and body on a stream, and largest WebSocket message.
    /// Default 64 KiB (Kamailio's `BUF_SIZE`).
    pub max_message: usize,
}

impl Default for DissectLimits {
    fn default() -> Self {
        DissectLimits {
            fragment_timeout: Duration::from_secs(30),
            max_fragment_datagrams: 4096,
            max_fragment_bytes: 16 << 20,
            tcp_idle_timeout: Duration::from_secs(300),
            max_tcp_flows: 16_384,
            max_tcp_flow_bytes: 256 << 10,
            max_tcp_bytes: 64 << 20,
            max_message: 65_535,
        }
    }
}

/// Per-frame context.
#[derive(Clone, Copy)]
struct Ctx<'p> {
    ts: SystemTime,
    vlan: VlanTags,
    ports: &'p dyn Fn(u16, u16) -> bool,
}

/// Stateful frame dissector (fragments, TCP flows). See the module docs.
#[derive(Debug)]
pub struct Dissector {
    defrag: Defragmenter,
    streams: Streams,
    sctp: SctpReassembler,
}

impl Dissector {
    /// A dissector with these limits.
    pub fn new(limits: DissectLimits) -> Self {
        Dissector {
            defrag: Defragmenter::new(
                limits.max_fragment_datagrams,
                limits.max_fragment_bytes,
                limits.fragment_timeout,
            ),
            streams: Streams::new(StreamLimits {
                max_flows: limits.max_tcp_flows,
                max_flow_bytes: limits.max_tcp_flow_bytes,
                max_total_bytes: limits.max_tcp_bytes,
                idle_timeout: limits.tcp_idle_timeout,
                max_message: limits.max_message,
            }),
            sctp: SctpReassembler::new(
                limits.max_fragment_datagrams,
                limits.max_message,
                limits.fragment_timeout,
            ),
        }
    }

    /// Decodes one captured frame. `ports(src, dst)` says whether the innermost transport's
    /// ports are captured; it is asked before any flow state is created. Emits zero or more
    /// items (a fragment or a segment in the middle of a message emits nothing until the
    /// message is complete).
    pub fn frame(
        &mut self,
        link: LinkType,
        ts: SystemTime,
        frame: &[u8],
        ports: &dyn Fn(u16, u16) -> bool,
        out: &mut dyn FnMut(Dissected<'_>),
    ) {
        let ctx = Ctx {
            ts,
            vlan: VlanTags::default(),
            ports,
        };
        let result = match link {
            LinkType::Ethernet => self.ethernet(ctx, frame, 0, 0, out),
            LinkType::LinuxSll => ethernet::from_linux_sll_any(frame)
                .and_then(|l| self.link_payload(ctx, l, 0, 0, out)),
            LinkType::LinuxSll2 => ethernet::from_linux_sll2_any(frame)
                .and_then(|l| self.link_payload(ctx, l, 0, 0, out)),
            LinkType::RawIp => self.raw_ip(ctx, frame, 0, 0, out),
        };
        if let Err(e) = result {
            out(report(e));
        }
    }

    /// Times out fragments and idle TCP flows, reporting what was lost.
    pub fn expire(&mut self, now: SystemTime, out: &mut dyn FnMut(Dissected<'_>)) {
        self.defrag.expire(now, &mut |e| out(Dissected::Dropped(e)));
        for _ in 0..self.sctp.expire(now) {
            out(Dissected::Dropped(PacketError::StreamFraming {
                what: "sctp message incomplete at the fragment timeout",
            }));
        }
        self.streams.expire(now, out);
    }

    /// Datagrams waiting for fragments, TCP flow directions tracked, and bytes buffered by both.
    pub fn state(&self) -> (usize, usize, usize) {
        (
            self.defrag.pending(),
            self.streams.flow_count(),
            self.defrag.buffered_bytes() + self.streams.buffered_bytes(),
        )
    }

    fn ethernet(
        &mut self,
        ctx: Ctx<'_>,
        buf: &[u8],
        base: usize,
        depth: usize,
        out: &mut dyn FnMut(Dissected<'_>),
    ) -> Result<(), PacketError> {
        let l2 = ethernet::from_ethernet_any(buf).map_err(|e| e.at(base))?;
        self.link_payload(ctx, l2, base, depth, out)
    }

    fn link_payload(
        &mut self,
        mut ctx: Ctx<'_>,
        l2: ethernet::LinkFrame<'_>,
        base: usize,
        depth: usize,
        out: &mut dyn FnMut(Dissected<'_>),
    ) -> Result<(), PacketError> {
        if l2.vlan != VlanTags::default() {
            ctx.vlan = l2.vlan;
        }
        let at = base + l2.header_len;
        match l2.ethertype {
            ETHERTYPE_IPV4 => self.ipv4(ctx, l2.payload, at, depth, out),
            ETHERTYPE_IPV6 => self.ipv6(ctx, l2.payload, at, depth, out),
            tunnel::ETHERTYPE_PPPOE_SESSION => {
                let depth = deeper(depth, at)?;
                let inner = tunnel::pppoe_session(l2.payload).map_err(|e| e.at(at))?;
                self.inner(ctx, inner, at, depth, out)
            }
            ethertype => Err(PacketError::UnsupportedEtherType {
                offset: at - 2,
                ethertype,
            }),
        }
    }

    fn inner(
        &mut self,
        ctx: Ctx<'_>,
        inner: tunnel::Encapsulated<'_>,
        base: usize,
        depth: usize,
        out: &mut dyn FnMut(Dissected<'_>),
    ) -> Result<(), PacketError> {
        let at = base + inner.header_len;
        match inner.inner {
            Inner::Ipv4 => self.ipv4(ctx, inner.payload, at, depth, out),
            Inner::Ipv6 => self.ipv6(ctx, inner.payload, at, depth, out),
            Inner::Ethernet => self.ethernet(ctx, inner.payload, at, depth, out),
        }
    }

    fn raw_ip(
        &mut self,
        ctx: Ctx<'_>,
        buf: &[u8],
        base: usize,
        depth: usize,
        out: &mut dyn FnMut(Dissected<'_>),
    ) -> Result<(), PacketError> {
        match buf.first().map(|b| b >> 4) {
            Some(6) => self.ipv6(ctx, buf, base, depth, out),
            Some(4) => self.ipv4(ctx, buf, base, depth, out),
            Some(version) => Err(PacketError::BadIpVersion {
                offset: base,
                version,
                expected: 4,
            }),
            None => Err(PacketError::Truncated {
                layer: "ip",
                offset: base,
                required: 1,
                actual: 0,
            }),
        }
    }

    fn ipv4(
        &mut self,
        ctx: Ctx<'_>,
        buf: &[u8],
        base: usize,
        depth: usize,
        out: &mut dyn FnMut(Dissected<'_>),
    ) -> Result<(), PacketError> {
        let header = ip::ipv4_header(buf).map_err(|e| e.at(base))?;
        self.ip_packet(ctx, header, base, depth, false, out)
    }

    fn ipv6(
        &mut self,
        ctx: Ctx<'_>,
        buf: &[u8],
        base: usize,
        depth: usize,
        out: &mut dyn FnMut(Dissected<'_>),
    ) -> Result<(), PacketError> {
        let header = ip::ipv6_header(buf).map_err(|e| e.at(base))?;
        self.ip_packet(ctx, header, base, depth, true, out)
    }

    fn ip_packet(
        &mut self,
        ctx: Ctx<'_>,
        header: ip::IpHeader<'_>,
        base: usize,
        depth: usize,
        v6: bool,
        out: &mut dyn FnMut(Dissected<'_>),
    ) -> Result<(), PacketError> {
        let p = header.packet;
        let at = base + p.header_len;
        let Some(fragment) = header.fragment else {
            return self.transport(ctx, p.src, p.dst, p.protocol, p.payload, at, depth, out);
        };
        let key = FragmentKey {
            src: p.src,
            dst: p.dst,
            protocol: p.protocol,
            id: fragment.id,
        };
        let frame_offset = base + fragment.header_at;
        match self
            .defrag
            .insert(key, fragment, p.payload, ctx.ts, frame_offset)?
        {
            Reassembly::Stored => Ok(()),
            Reassembly::Duplicate => {
                out(Dissected::Skipped("fragment_duplicate"));
                Ok(())
            }
            Reassembly::Complete(whole) => {
                // Offsets inside a reassembled payload count from its start.
                let (protocol, skip) = if v6 {
                    ip::ipv6_extensions(&whole, p.protocol)?
                } else {
                    (p.protocol, 0)
                };
                let payload = whole.get(skip..).unwrap_or_default();
                self.transport(ctx, p.src, p.dst, protocol, payload, skip, depth, out)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn transport(
        &mut self,
        ctx: Ctx<'_>,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        payload: &[u8],
        at: usize,
        depth: usize,
        out: &mut dyn FnMut(Dissected<'_>),
    ) -> Result<(), PacketError> {
        match protocol {
            IPPROTO_UDP => {
                let d = udp::from_slice(payload).map_err(|e| e.at(at))?;
                let inner_at = at + udp::UDP_HEADER_LEN;
                if (d.dst_port == tunnel::VXLAN_PORT || d.src_port == tunnel::VXLAN_PORT)
                    && let Ok(vx) = tunnel::vxlan(d.payload)
                {
                    let depth = deeper(depth, inner_at)?;
                    return self.inner(ctx, vx, inner_at, depth, out);
                }
                if !(ctx.ports)(d.src_port, d.dst_port) {
                    out(Dissected::Skipped("port_filtered"));
                    return Ok(());
                }
                let kind = if is_hep(d.payload) {
                    PayloadKind::Hep
                } else {
                    PayloadKind::Sip
                };
                out(Dissected::Message(RawMessage {
                    ts: ctx.ts,
                    vlan: ctx.vlan,
                    src: SocketAddr::new(src, d.src_port),
                    dst: SocketAddr::new(dst, d.dst_port),
                    transport: Transport::Udp,
                    ip_protocol: IPPROTO_UDP,
                    kind,
                    payload: d.payload,
                }));
                Ok(())
            }
            IPPROTO_TCP => {
                let seg = tcp::from_slice(payload).map_err(|e| e.at(at))?;
                if !(ctx.ports)(seg.src_port, seg.dst_port) {
                    out(Dissected::Skipped("port_filtered"));
                    return Ok(());
                }
                let key = FlowKey {
                    src: SocketAddr::new(src, seg.src_port),
                    dst: SocketAddr::new(dst, seg.dst_port),
                };
                self.streams.segment(key, &seg, ctx.vlan, ctx.ts, out);
                Ok(())
            }
            IPPROTO_SCTP => {
                let packet = sctp::from_slice(payload).map_err(|e| e.at(at))?;
                if !(ctx.ports)(packet.src_port, packet.dst_port) {
                    out(Dissected::Skipped("port_filtered"));
                    return Ok(());
                }
                let chunks_at = at + sctp::SCTP_COMMON_HEADER_LEN;
                let chunks = sctp::data_chunks(packet.chunks).map_err(|e| e.at(chunks_at))?;
                if chunks.is_empty() {
                    out(Dissected::Skipped("sctp_no_data"));
                }
                let src = SocketAddr::new(src, packet.src_port);
                let dst = SocketAddr::new(dst, packet.dst_port);
                for chunk in chunks {
                    let key = SctpStreamKey {
                        src,
                        dst,
                        stream: chunk.stream,
                    };
                    let whole;
                    let data = match self.sctp.chunk(key, &chunk, ctx.ts) {
                        Ok(SctpReassembly::Whole(data)) => data,
                        Ok(SctpReassembly::Complete(data)) => {
                            whole = data;
                            &whole
                        }
                        Ok(SctpReassembly::Stored) => continue,
                        Err(e) => {
                            out(Dissected::Dropped(e));
                            continue;
                        }
                    };
                    out(Dissected::Message(RawMessage {
                        ts: ctx.ts,
                        vlan: ctx.vlan,
                        src,
                        dst,
                        transport: Transport::Sctp,
                        ip_protocol: IPPROTO_SCTP,
                        kind: if is_hep(data) {
                            PayloadKind::Hep
                        } else {
                            PayloadKind::Sip
                        },
                        payload: data,
                    }));
                }
                Ok(())
            }
            IPPROTO_IPIP => {
                let depth = deeper(depth, at)?;
                self.ipv4(ctx, payload, at, depth, out)
            }
            IPPROTO_IPV6 => {
                let depth = deeper(depth, at)?;
                self.ipv6(ctx, payload, at, depth, out)
            }
            IPPROTO_GRE => {
                let depth = deeper(depth, at)?;
                let inner = tunnel::gre(payload).map_err(|e| e.at(at))?;
                self.inner(ctx, inner, at, depth, out)
            }
            protocol => Err(PacketError::UnsupportedIpProtocol {
                offset: at,
                protocol,
            }),
        }
    }
}

/// One more encapsulation level, or [`PacketError::TooManyEncapsulations`].
fn deeper(depth: usize, offset: usize) -> Result<usize, PacketError> {
    if depth >= MAX_ENCAPSULATIONS {
        return Err(PacketError::TooManyEncapsulations {
            offset,
            max: MAX_ENCAPSULATIONS,
        });
    }
    Ok(depth + 1)
}

/// An error as the item to report: ordinary traffic is skipped, the rest dropped.
fn report(e: PacketError) -> Dissected<'static> {
    if e.is_skip() {
        Dissected::Skipped(e.reason())
    } else {
        Dissected::Dropped(e)
    }
}

/// Whether a datagram is a HEP packet: the v3 magic (`HEP3`/`EEP1`), or a v1/v2 header that
/// decodes, names TCP/UDP/SCTP (or Kamailio's 22 for TLS) and carries a text payload.
pub fn is_hep(payload: &[u8]) -> bool {
    if payload.starts_with(b"HEP3") || payload.starts_with(b"EEP1") {
        return true;
    }
    if !matches!(payload.first(), Some(1 | 2)) {
        return false;
    }
    match hep::v1v2::decode(payload) {
        Ok(p) => {
            matches!(p.ip_protocol, Some(6 | 17 | 22 | 132))
                && p.payload.is_some_and(|b| {
                    b.wire_bytes()
                        .first()
                        .is_some_and(u8::is_ascii_alphanumeric)
                })
        }
        Err(_) => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn pcap_frames(file: &[u8]) -> Vec<&[u8]> {
        crate::decode::test_support::pcap_frames(file).1
    }

    const VLAN100: &[u8] = include_bytes!("../../../testdata/raw/gen_sip_udp_vlan100.pcap");
    const QINQ: &[u8] = include_bytes!("../../../testdata/raw/gen_sip_udp_qinq.pcap");
    const LO: &[u8] = include_bytes!("../../../testdata/raw/gen_sip_udp_lo.pcap");
    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    #[derive(Debug, Default)]
    struct Seen {
        messages: Vec<(
            VlanTags,
            SocketAddr,
            SocketAddr,
            Transport,
            PayloadKind,
            Vec<u8>,
        )>,
        skipped: Vec<&'static str>,
        dropped: Vec<PacketError>,
    }

    fn dissect(d: &mut Dissector, link: LinkType, frame: &[u8], seen: &mut Seen) {
        d.frame(link, T0, frame, &|_, _| true, &mut |item| match item {
            Dissected::Message(m) => seen.messages.push((
                m.vlan,
                m.src,
                m.dst,
                m.transport,
                m.kind,
                m.payload.to_vec(),
            )),
            Dissected::Skipped(r) => seen.skipped.push(r),
            Dissected::Dropped(e) => seen.dropped.push(e),
        });
    }

    fn one(link: LinkType, frame: &[u8]) -> Seen {
        let mut seen = Seen::default();
        dissect(
            &mut Dissector::new(DissectLimits::default()),
            link,
            frame,
            &mut seen,
        );
        seen
    }

    #[test]
    fn vlan_tags_travel_with_the_message() {
        let s = one(LinkType::Ethernet, pcap_frames(VLAN100)[0]);
        let m = &s.messages[0];
        assert_eq!(
            m.0,
            VlanTags {
                outer: Some(100),
                inner: None
            }
        );
        assert_eq!((m.3, m.4), (Transport::Udp, PayloadKind::Sip));
        assert!(m.5.starts_with(b"INVITE sip:"));
        let s = one(LinkType::Ethernet, pcap_frames(QINQ)[0]);
        assert_eq!(
            s.messages[0].0,
            VlanTags {
                outer: Some(200),
                inner: Some(100)
            }
        );
    }

    /// The loopback INVITE frame (Ethernet, IPv4, UDP) and its IP packet.
    fn invite() -> (Vec<u8>, Vec<u8>) {
        let frame = pcap_frames(LO)[0].to_vec();
        let ip = frame[14..].to_vec();
        (frame, ip)
    }

    fn ipv4_around(protocol: u8, inner: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + inner.len()).unwrap();
        let mut h = vec![
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, protocol, 0, 0, 198, 51, 100, 1, 198, 51, 100, 2,
        ];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h.extend_from_slice(inner);
        h
    }

    fn eth_around(ethertype: u16, inner: &[u8]) -> Vec<u8> {
        let mut f = vec![2u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(inner);
        f
    }

    fn udp_around(dst_port: u16, inner: &[u8]) -> Vec<u8> {
        let len = u16::try_from(8 + inner.len()).unwrap();
        let mut u = vec![0x30, 0x39];
        u.extend_from_slice(&dst_port.to_be_bytes());
        u.extend_from_slice(&len.to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(inner);
        u
    }

    #[test]
    fn tunnels_are_unwrapped_to_the_inner_message() {
        let (frame, ip) = invite();
        let want = one(LinkType::Ethernet, &frame).messages;
        assert_eq!(want.len(), 1);
        let check = |name: &str, link: LinkType, outer: &[u8]| {
            let got = one(link, outer);
            assert_eq!(got.messages, want, "{name}: {got:?}");
        };
        // IPIP on the raw socket (outer IPv4 header first).
        check("ipip", LinkType::RawIp, &ipv4_around(4, &ip));
        // GRE carrying IPv4, and GRE TEB carrying the whole Ethernet frame.
        let mut gre = vec![0, 0, 0x08, 0x00];
        gre.extend_from_slice(&ip);
        check(
            "gre",
            LinkType::Ethernet,
            &eth_around(0x0800, &ipv4_around(47, &gre)),
        );
        let mut teb = vec![0x20, 0, 0x65, 0x58, 0, 0, 0, 9];
        teb.extend_from_slice(&frame);
        check(
            "gre teb",
            LinkType::Ethernet,
            &eth_around(0x0800, &ipv4_around(47, &teb)),
        );
        // ERSPAN II.
        let mut erspan = vec![0x10, 0, 0x88, 0xbe, 0, 0, 0, 1, 0x10, 0, 0, 1, 0, 0, 0, 0];
        erspan.extend_from_slice(&frame);
        check(
            "erspan",
            LinkType::Ethernet,
            &eth_around(0x0800, &ipv4_around(47, &erspan)),
        );
        // VXLAN.
        let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        vxlan.extend_from_slice(&frame);
        let outer = ipv4_around(17, &udp_around(4789, &vxlan));
        check("vxlan", LinkType::Ethernet, &eth_around(0x0800, &outer));
        // PPPoE session.
        let mut pppoe = vec![0x11, 0, 0, 1];
        pppoe.extend_from_slice(&u16::try_from(ip.len() + 2).unwrap().to_be_bytes());
        pppoe.extend_from_slice(&[0x00, 0x21]);
        pppoe.extend_from_slice(&ip);
        check("pppoe", LinkType::Ethernet, &eth_around(0x8864, &pppoe));
        // Linux cooked v2.
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&ip);
        check("sll2", LinkType::LinuxSll2, &sll2);
    }

    #[test]
    fn nesting_is_bounded() {
        let (_, ip) = invite();
        let mut packet = ip;
        for _ in 0..=MAX_ENCAPSULATIONS {
            packet = ipv4_around(4, &packet);
        }
        let s = one(LinkType::RawIp, &packet);
        assert!(matches!(
            s.dropped.as_slice(),
            [PacketError::TooManyEncapsulations {
                max: MAX_ENCAPSULATIONS,
                ..
            }]
        ));
    }

    #[test]
    fn every_cut_of_a_tunnelled_frame_is_truncated() {
        let (frame, _) = invite();
        let mut erspan = vec![0x10, 0, 0x88, 0xbe, 0, 0, 0, 1, 0x10, 0, 0, 1, 0, 0, 0, 0];
        erspan.extend_from_slice(&frame);
        let outer = eth_around(0x0800, &ipv4_around(47, &erspan));
        for cut in 0..outer.len() {
            let s = one(LinkType::Ethernet, &outer[..cut]);
            assert!(s.messages.is_empty(), "cut {cut}");
            assert!(
                matches!(s.dropped.as_slice(), [e] if e.reason() == "truncated"),
                "cut {cut}: {s:?}"
            );
        }
    }

    #[test]
    fn port_filter_applies_to_the_inner_ports_before_state() {
        let (frame, _) = invite();
        let mut d = Dissector::new(DissectLimits::default());
        let mut skipped = Vec::new();
        d.frame(
            LinkType::Ethernet,
            T0,
            &frame,
            &|s, dst| s == 1 || dst == 1,
            &mut |i| {
                if let Dissected::Skipped(r) = i {
                    skipped.push(r);
                }
            },
        );
        assert_eq!(skipped, vec!["port_filtered"]);
        assert_eq!(d.state(), (0, 0, 0));
    }

    #[test]
    fn hep_in_udp_is_recognised() {
        let (frame, _) = invite();
        let sip = &frame[14 + 20 + 8..];
        assert!(!is_hep(sip));
        assert!(is_hep(b"HEP3\x00\x10rest-of-it"));
        assert!(!is_hep(&[0x80, 0x00, 0x01]));
        // HEP v2, IPv4, UDP, with a SIP payload; and the same header with an RTP payload.
        let mut v2 = vec![
            2, 28, 2, 17, 0x13, 0xc4, 0x13, 0xc4, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        v2.extend_from_slice(&[0; 12]);
        let mut ok = v2.clone();
        ok.extend_from_slice(sip);
        assert!(is_hep(&ok));
        v2.extend_from_slice(&[0x80; 40]);
        assert!(!is_hep(&v2));
    }
}
