//! A tiny classic-pcap reader for tests: enough to pull UDP payloads and a naive TCP byte stream
//! out of the corpus captures and send them to a running collector; and [`write_udp`], a writer
//! of Ethernet/IPv4/UDP captures.
//!
//! Supported: classic pcap (both byte orders, micro- and nanosecond magic; not pcapng), link
//! types Ethernet (1, with 802.1Q/802.1ad tags), Linux cooked v1 (113) and v2 (276), raw IP
//! (101, 12, 14) and raw IPv4/IPv6 (228/229); IPv4 (no fragments) and IPv6 (no extension
//! headers); UDP and TCP. Anything else is skipped, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use anyhow::{Context, bail};

/// Writes a classic pcap (Ethernet, IPv4 127.0.0.1 → 127.0.0.1, UDP 40000 → `dst_port`) with
/// one frame per `(seconds, payload)`, stamped with those seconds.
pub fn write_udp(path: &Path, dst_port: u16, frames: &[(u32, Vec<u8>)]) -> anyhow::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    for (ts, payload) in frames {
        let frame = udp_frame(dst_port, payload)?;
        let len = u32::try_from(frame.len())?;
        out.extend_from_slice(&ts.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out)?;
    Ok(())
}

/// One Ethernet/IPv4/UDP frame, 127.0.0.1:40000 → 127.0.0.1:`dst_port`, carrying `payload`.
pub fn udp_frame(dst_port: u16, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    let udp_len = u16::try_from(8 + payload.len())?;
    let ip_len = 20 + udp_len;
    let mut frame = vec![0u8; 12];
    frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    frame.extend_from_slice(&[0x45, 0]);
    frame.extend_from_slice(&ip_len.to_be_bytes());
    frame.extend_from_slice(&[
        0,
        0,
        0,
        0,
        64,
        IPPROTO_UDP,
        0,
        0,
        127,
        0,
        0,
        1,
        127,
        0,
        0,
        1,
    ]);
    frame.extend_from_slice(&40_000u16.to_be_bytes());
    frame.extend_from_slice(&dst_port.to_be_bytes());
    frame.extend_from_slice(&udp_len.to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(payload);
    Ok(frame)
}

const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW_BSD: u32 = 12;
const LINKTYPE_RAW_OPENBSD: u32 = 14;
const LINKTYPE_RAW: u32 = 101;
const LINKTYPE_LINUX_SLL: u32 = 113;
const LINKTYPE_IPV4: u32 = 228;
const LINKTYPE_IPV6: u32 = 229;
const LINKTYPE_LINUX_SLL2: u32 = 276;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Capture time, microseconds since the epoch.
    pub ts_usec: u64,
    /// The captured bytes (link-layer header included).
    pub data: Vec<u8>,
}

/// A classic pcap file in memory.
#[derive(Debug, Clone)]
pub struct Capture {
    /// The link type of every frame.
    pub link_type: u32,
    /// The frames, in file order.
    pub frames: Vec<Frame>,
}

/// A transport-layer segment or datagram found in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    /// IP protocol (6 or 17).
    pub protocol: u8,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// TCP sequence number (0 for UDP).
    pub seq: u32,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// The payload.
    pub payload: Vec<u8>,
}

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

fn u16_at(b: &[u8], at: usize, big_endian: bool) -> Option<u16> {
    let bytes: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if big_endian {
        u16::from_be_bytes(bytes)
    } else {
        u16::from_le_bytes(bytes)
    })
}

fn u32_at(b: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let bytes: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    })
}

impl Capture {
    /// Reads a classic pcap file.
    pub fn read(path: &Path) -> anyhow::Result<Capture> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Capture::parse(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    /// Parses a classic pcap file image.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Capture> {
        let magic = bytes.get(..4).context("shorter than a pcap header")?;
        let (big_endian, nanos) = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
            _ => bail!("not a classic pcap file (pcapng is not supported)"),
        };
        let link_type = u32_at(bytes, 20, big_endian).context("truncated pcap header")? & 0xffff;
        let mut frames = Vec::new();
        let mut at = 24usize;
        while at < bytes.len() {
            let header = |off: usize| u32_at(bytes, at + off, big_endian);
            let (Some(sec), Some(frac), Some(incl_len)) = (header(0), header(4), header(8)) else {
                bail!("truncated record header at offset {at}");
            };
            let usec = if nanos { frac / 1000 } else { frac };
            let start = at + 16;
            let end = start + usize::try_from(incl_len)?;
            let data = bytes
                .get(start..end)
                .with_context(|| format!("truncated record at offset {at}"))?;
            frames.push(Frame {
                ts_usec: u64::from(sec) * 1_000_000 + u64::from(usec),
                data: data.to_vec(),
            });
            at = end;
        }
        Ok(Capture { link_type, frames })
    }

    /// The UDP and TCP segments of every frame that has one, in file order.
    pub fn transports(&self) -> Vec<Transport> {
        self.frames
            .iter()
            .filter_map(|f| transport_of(self.link_type, &f.data))
            .collect()
    }

    /// The UDP payloads, in file order.
    pub fn udp_payloads(&self) -> Vec<Transport> {
        self.transports()
            .into_iter()
            .filter(|t| t.protocol == IPPROTO_UDP)
            .collect()
    }

    /// The client→server byte stream of the first TCP connection: the client is the side that
    /// sent the first SYN (or, without a SYN, the sender of the first segment with data).
    /// Segments are appended in sequence order; a segment that starts before the next expected
    /// byte (a retransmission) contributes only its new bytes. Gaps are not filled (naive).
    pub fn tcp_client_stream(&self) -> Option<Vec<u8>> {
        let tcp: Vec<Transport> = self
            .transports()
            .into_iter()
            .filter(|t| t.protocol == IPPROTO_TCP)
            .collect();
        let first = tcp
            .iter()
            .find(|t| t.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN)
            .or_else(|| tcp.iter().find(|t| !t.payload.is_empty()))?;
        let (client, server) = (first.src, first.dst);
        let mut segments: Vec<&Transport> = tcp
            .iter()
            .filter(|t| t.src == client && t.dst == server && !t.payload.is_empty())
            .collect();
        let base = segments.first()?.seq;
        segments.sort_by_key(|t| t.seq.wrapping_sub(base));
        let mut stream = Vec::new();
        let mut next = 0usize;
        for seg in segments {
            let offset = usize::try_from(seg.seq.wrapping_sub(base)).ok()?;
            let end = offset + seg.payload.len();
            if end <= next {
                continue;
            }
            let skip = next.saturating_sub(offset);
            stream.extend_from_slice(seg.payload.get(skip..).unwrap_or_default());
            next = end;
        }
        Some(stream)
    }
}

/// The IP packet inside a frame of `link_type`: (ethertype-like version tag, bytes).
fn network_layer(link_type: u32, frame: &[u8]) -> Option<(u16, &[u8])> {
    match link_type {
        LINKTYPE_ETHERNET => {
            let mut ethertype = u16_at(frame, 12, true)?;
            let mut at = 14;
            while ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
                ethertype = u16_at(frame, at + 2, true)?;
                at += 4;
            }
            Some((ethertype, frame.get(at..)?))
        }
        LINKTYPE_LINUX_SLL => Some((u16_at(frame, 14, true)?, frame.get(16..)?)),
        LINKTYPE_LINUX_SLL2 => Some((u16_at(frame, 0, true)?, frame.get(20..)?)),
        LINKTYPE_RAW | LINKTYPE_RAW_BSD | LINKTYPE_RAW_OPENBSD | LINKTYPE_IPV4 | LINKTYPE_IPV6 => {
            let version = frame.first()? >> 4;
            let ethertype = if version == 6 {
                ETHERTYPE_IPV6
            } else {
                ETHERTYPE_IPV4
            };
            Some((ethertype, frame))
        }
        _ => None,
    }
}

fn transport_of(link_type: u32, frame: &[u8]) -> Option<Transport> {
    let (ethertype, ip) = network_layer(link_type, frame)?;
    let (protocol, src_ip, dst_ip, l4): (u8, IpAddr, IpAddr, &[u8]) = match ethertype {
        ETHERTYPE_IPV4 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let total = usize::from(u16_at(ip, 2, true)?);
            let flags_fragment = u16_at(ip, 6, true)?;
            // More-fragments set or a non-zero offset: not a whole datagram.
            if flags_fragment & 0x3fff != 0 {
                return None;
            }
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            let end = total.min(ip.len());
            (
                *ip.get(9)?,
                Ipv4Addr::from(src).into(),
                Ipv4Addr::from(dst).into(),
                ip.get(ihl..end)?,
            )
        }
        ETHERTYPE_IPV6 => {
            let payload_len = usize::from(u16_at(ip, 4, true)?);
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            let end = (40 + payload_len).min(ip.len());
            (
                *ip.get(6)?,
                Ipv6Addr::from(src).into(),
                Ipv6Addr::from(dst).into(),
                ip.get(40..end)?,
            )
        }
        _ => return None,
    };
    let src_port = u16_at(l4, 0, true)?;
    let dst_port = u16_at(l4, 2, true)?;
    let (seq, tcp_flags, payload) = match protocol {
        IPPROTO_UDP => (0, 0, l4.get(8..)?),
        IPPROTO_TCP => {
            let data_offset = usize::from(l4.get(12)? >> 4) * 4;
            (u32_at(l4, 4, true)?, *l4.get(13)?, l4.get(data_offset..)?)
        }
        _ => return None,
    };
    Some(Transport {
        protocol,
        src: SocketAddr::new(src_ip, src_port),
        dst: SocketAddr::new(dst_ip, dst_port),
        seq,
        tcp_flags,
        payload: payload.to_vec(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name)
    }

    #[test]
    fn reads_udp_payloads_of_the_hep3_corpus() {
        let cap = Capture::read(&testdata("gen_hep3_kamailio_siptrace.pcap")).unwrap();
        assert_eq!(cap.link_type, LINKTYPE_ETHERNET);
        let udp = cap.udp_payloads();
        assert_eq!(udp.len(), 120);
        assert!(udp.iter().all(|t| t.payload.starts_with(b"HEP3")));
        assert!(udp.iter().all(|t| t.dst.port() == 9060));
    }

    #[test]
    fn reassembles_the_tcp_client_stream() {
        let cap = Capture::read(&testdata("gen_hep3_tcp_kamailio_siptrace.pcap")).unwrap();
        let stream = cap.tcp_client_stream().unwrap();
        // Walk the HEP3 frames by their length field: exactly 120, ending at the stream's end.
        let mut at = 0;
        let mut frames = 0;
        while at < stream.len() {
            assert_eq!(&stream[at..at + 4], b"HEP3");
            at += usize::from(u16::from_be_bytes([stream[at + 4], stream[at + 5]]));
            frames += 1;
        }
        assert_eq!(at, stream.len());
        assert_eq!(frames, 120);
    }

    #[test]
    fn linux_cooked_and_raw_ip_frames() {
        // A minimal IPv4/UDP datagram 10.0.0.1:1 -> 10.0.0.2:2 carrying "hi".
        let ip = [
            0x45, 0, 0, 30, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2, 0,
            10, 0, 0, b'h', b'i',
        ];
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        sll.extend_from_slice(&ip);
        for (link, frame) in [(LINKTYPE_LINUX_SLL, sll.as_slice()), (LINKTYPE_RAW, &ip)] {
            let t = transport_of(link, frame).unwrap();
            assert_eq!(t.src, "10.0.0.1:1".parse().unwrap());
            assert_eq!(t.dst, "10.0.0.2:2".parse().unwrap());
            assert_eq!(t.payload, b"hi");
        }
        assert!(Capture::parse(b"\x0a\x0d\x0d\x0a").is_err());
    }
}
