//! Frame dissection (link → PPPoE → IP + defragmentation → IPIP/GRE/ERSPAN/VXLAN → UDP, TCP
//! reassembly, SCTP, WebSocket): never panics on any sequence of frames; the port predicate is
//! obeyed for every message; a UDP message borrows from its frame; the state stays within its
//! limits; expiry empties it.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use sipcapture_collector_fuzz::decode::flow::{
    DissectLimits, Dissected, Dissector, Transport,
};
use sipcapture_collector_fuzz::decode::frame::LinkType;
use sipcapture_collector_fuzz::within;

const LIMITS: DissectLimits = DissectLimits {
    fragment_timeout: Duration::from_secs(5),
    max_fragment_datagrams: 16,
    max_fragment_bytes: 64 * 1024,
    tcp_idle_timeout: Duration::from_secs(10),
    max_tcp_flows: 16,
    max_tcp_flow_bytes: 16 * 1024,
    max_tcp_bytes: 64 * 1024,
    max_message: 8 * 1024,
};

/// Ports 9 and 13 are "filtered out" when both ends use them.
fn ports(src: u16, dst: u16) -> bool {
    !(matches!(src, 9 | 13) && matches!(dst, 9 | 13))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let link = match selector % 4 {
        0 => LinkType::Ethernet,
        1 => LinkType::LinuxSll,
        2 => LinkType::LinuxSll2,
        _ => LinkType::RawIp,
    };
    let mut dissector = Dissector::new(LIMITS);
    let mut ts = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    // Frames: u16 length prefix, then the bytes (the last frame takes what is left).
    while !rest.is_empty() {
        let len = match rest {
            [a, b, tail @ ..] => {
                rest = tail;
                usize::from(u16::from_be_bytes([*a, *b]))
            }
            _ => std::mem::take(&mut rest).len(),
        };
        let (frame, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        let mut check = |item: Dissected<'_>| {
            if let Dissected::Message(m) = item {
                assert!(ports(m.src.port(), m.dst.port()), "filtered ports leaked");
                assert_eq!(m.ts, ts);
                if m.transport == Transport::Udp {
                    // Whole UDP datagrams borrow from the frame (reassembled ones do not).
                    let _ = within(frame, m.payload);
                }
            }
        };
        dissector.frame(link, ts, frame, &ports, &mut check);
        let (_, flows, bytes) = dissector.state();
        assert!(flows <= LIMITS.max_tcp_flows);
        assert!(bytes <= LIMITS.max_fragment_bytes + LIMITS.max_tcp_bytes);
        ts += Duration::from_millis(700);
    }
    dissector.expire(ts + Duration::from_secs(3600), &mut |_| {});
    assert_eq!(dissector.state(), (0, 0, 0));
});
