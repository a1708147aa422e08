//! TCP reassembly and SIP framing. A stream of known SIP messages is cut into segments at
//! fuzzer-chosen points and delivered in a fuzzer-chosen order with fuzzer-chosen overlapping
//! retransmissions (every byte arrives at least once): the messages that come out are exactly
//! the messages that went in, in order, nothing is reported lost, and no state is left. A
//! second pass feeds raw fuzzer segments (arbitrary sequence numbers, flags and bytes) to hunt
//! panics and check the memory bounds.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use sipcapture_collector_fuzz::decode::flow::Dissected;
use sipcapture_collector_fuzz::decode::ethernet::VlanTags;
use sipcapture_collector_fuzz::decode::flow::stream::{FlowKey, StreamLimits, Streams};
use sipcapture_collector_fuzz::decode::tcp::{self, TcpSegment};

const LIMITS: StreamLimits = StreamLimits {
    max_flows: 4,
    max_flow_bytes: 256 * 1024,
    max_total_bytes: 1024 * 1024,
    idle_timeout: Duration::from_secs(60),
    max_message: 64 * 1024,
};

fn key() -> FlowKey {
    FlowKey {
        src: "10.0.0.1:5060".parse().unwrap(),
        dst: "10.0.0.2:40000".parse().unwrap(),
    }
}

fn messages(n: usize, seed: u8) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let body = "v=0\r\n".repeat(usize::from(seed) % 7 + i % 3);
            format!(
                "INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: c{i}-{seed}\r\nl: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect()
}

fn feed(s: &mut Streams, seq: u32, flags: u8, payload: &[u8], out: &mut Vec<Vec<u8>>, lost: &mut u32) {
    let seg = TcpSegment {
        src_port: 5060,
        dst_port: 40000,
        seq,
        flags,
        payload,
    };
    s.segment(key(), &seg, VlanTags::default(), SystemTime::UNIX_EPOCH, &mut |d| match d {
        Dissected::Message(m) => out.push(m.payload.to_vec()),
        Dissected::Dropped(_) => *lost += 1,
        Dissected::Skipped(_) => {}
    });
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, ops)) = data.split_first() else {
        return;
    };
    // Pass 1: a correct stream, reordered and retransmitted.
    let sent = messages(usize::from(seed % 12) + 1, seed);
    let stream: Vec<u8> = sent.concat();
    let isn = u32::from(seed).wrapping_mul(0x0101_0101).wrapping_sub(7); // wraps sometimes
    // Cut points from the fuzz bytes.
    let mut cuts = vec![0usize];
    for b in ops.iter().take(64) {
        let next = cuts.last().copied().unwrap_or(0) + 1 + usize::from(*b) * 3;
        if next >= stream.len() {
            break;
        }
        cuts.push(next);
    }
    cuts.push(stream.len());
    let mut segments: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
    // Retransmissions covering arbitrary ranges, and a permutation.
    for pair in ops.chunks(2).skip(64).take(32) {
        if let [a, b] = pair {
            let start = usize::from(*a) * stream.len() / 256;
            let end = (start + 1 + usize::from(*b) * 4).min(stream.len());
            segments.push((start, end));
        }
    }
    let n = segments.len();
    for (i, b) in ops.iter().enumerate().take(n) {
        segments.swap(i, usize::from(*b) % n);
    }
    let mut streams = Streams::new(LIMITS);
    let mut got = Vec::new();
    let mut lost = 0;
    feed(&mut streams, isn, tcp::SYN, b"", &mut got, &mut lost);
    for (start, end) in &segments {
        let seq = isn.wrapping_add(1).wrapping_add(*start as u32);
        feed(&mut streams, seq, 0x18, &stream[*start..*end], &mut got, &mut lost);
    }
    let fin_seq = isn.wrapping_add(1).wrapping_add(stream.len() as u32);
    feed(&mut streams, fin_seq, tcp::FIN | 0x10, b"", &mut got, &mut lost);
    assert_eq!(lost, 0);
    assert_eq!(got, sent);
    assert_eq!((streams.flow_count(), streams.buffered_bytes()), (0, 0));

    // Pass 2: raw segments: [flags, seq (4 bytes), len, bytes...].
    let small = StreamLimits {
        max_flows: 2,
        max_flow_bytes: 2048,
        max_total_bytes: 3000,
        idle_timeout: Duration::from_secs(1),
        max_message: 1024,
    };
    let mut s = Streams::new(small);
    let mut rest = ops;
    let mut ts = SystemTime::UNIX_EPOCH;
    while let [flags, a, b, c, d, len, tail @ ..] = rest {
        let take = usize::from(*len).min(tail.len());
        let (payload, tail) = tail.split_at(take);
        rest = tail;
        let seg = TcpSegment {
            src_port: u16::from(*flags & 0x30),
            dst_port: 5060,
            seq: u32::from_be_bytes([*a, *b, *c, *d]),
            flags: *flags,
            payload,
        };
        let k = FlowKey {
            src: std::net::SocketAddr::new("10.0.0.1".parse().unwrap(), seg.src_port),
            dst: "10.0.0.2:5060".parse().unwrap(),
        };
        s.segment(k, &seg, VlanTags::default(), ts, &mut |_| {});
        assert!(s.flow_count() <= small.max_flows);
        assert!(s.buffered_bytes() <= small.max_total_bytes, "{}", s.buffered_bytes());
        ts += Duration::from_millis(300);
    }
    s.expire(ts + Duration::from_secs(5), &mut |_| {});
    assert_eq!((s.flow_count(), s.buffered_bytes()), (0, 0));
});
