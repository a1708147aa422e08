//! Raw-capture dissection throughput: one captured SIP/UDP frame (Ethernet + 802.1Q, IPv4,
//! UDP, an INVITE with SDP from the generated corpus), the same frame inside ERSPAN II, and a
//! SIP-over-TCP stream of 1400-byte segments carrying several messages each; and the cost of a
//! new TCP flow arriving at a full flow table (1 k, 10 k, 100 k flows: eviction of the least
//! recently seen flow must not grow with the table, issue 21).
//!
//! Run: `cargo bench -p sipcapture-collector --bench dissect -- --quick`.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sipcapture_collector::decode::ethernet::VlanTags;
use sipcapture_collector::decode::flow::stream::{FlowKey, StreamLimits, Streams};
use sipcapture_collector::decode::flow::{DissectLimits, Dissected, Dissector};
use sipcapture_collector::decode::frame::LinkType;
use sipcapture_collector::decode::tcp::TcpSegment;

const VLAN100: &[u8] = include_bytes!("../testdata/raw/gen_sip_udp_vlan100.pcap");

fn first_frame(file: &[u8]) -> Vec<u8> {
    let caplen = u32::from_le_bytes([file[32], file[33], file[34], file[35]]) as usize;
    file[40..40 + caplen].to_vec()
}

fn ipv4(protocol: u8, inner: &[u8]) -> Vec<u8> {
    let total = (20 + inner.len()) as u16;
    let mut h = vec![
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, protocol, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h.extend_from_slice(inner);
    h
}

fn eth(inner: &[u8]) -> Vec<u8> {
    let mut f = vec![2u8; 12];
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(inner);
    f
}

fn tcp(seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0x13, 0xc4, 0x9c, 0x40];
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    eth(&ipv4(6, &t))
}

fn bench(c: &mut Criterion) {
    let frame = first_frame(VLAN100);
    let mut erspan = vec![0x10, 0, 0x88, 0xbe, 0, 0, 0, 1, 0x10, 0, 0, 1, 0, 0, 0, 0];
    erspan.extend_from_slice(&frame);
    let erspan = eth(&ipv4(47, &erspan));
    let all = |_: u16, _: u16| true;
    let mut g = c.benchmark_group("dissect");
    g.throughput(Throughput::Elements(1));
    for (name, f) in [("udp_vlan_frame", &frame), ("erspan_frame", &erspan)] {
        let mut d = Dissector::new(DissectLimits::default());
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0;
                d.frame(
                    LinkType::Ethernet,
                    SystemTime::UNIX_EPOCH,
                    black_box(f),
                    &all,
                    &mut |i| {
                        if let Dissected::Message(m) = i {
                            n += m.payload.len();
                        }
                    },
                );
                n
            })
        });
    }
    // SIP over TCP: a stream of INVITEs cut into 1400-byte segments.
    let sip_start = 14 + 4 + 20 + 8;
    let invite = &frame[sip_start..];
    let stream: Vec<u8> = invite.repeat(64);
    let segments: Vec<Vec<u8>> = stream
        .chunks(1400)
        .enumerate()
        .map(|(i, c)| tcp(1 + (i * 1400) as u32, c))
        .collect();
    g.throughput(Throughput::Elements(64));
    g.bench_function("tcp_stream_64_messages", |b| {
        b.iter(|| {
            let mut d = Dissector::new(DissectLimits::default());
            let mut messages = 0;
            for s in &segments {
                d.frame(
                    LinkType::Ethernet,
                    SystemTime::UNIX_EPOCH,
                    s,
                    &all,
                    &mut |i| {
                        if matches!(i, Dissected::Message(_)) {
                            messages += 1;
                        }
                    },
                );
            }
            assert_eq!(messages, 64);
            messages
        })
    });
    g.finish();
}

/// The n-th flow direction (distinct addresses and ports).
fn flow_key(n: u64) -> FlowKey {
    let [.., a, b, c, d] = n.to_be_bytes();
    FlowKey {
        src: std::net::SocketAddr::from(([10, a, b, c], 5060)),
        dst: std::net::SocketAddr::from(([192, 0, 2, 1], 1024 + u16::from(d))),
    }
}

/// One data segment per new flow into a full table: each evicts the least recently seen flow.
fn full_flow_table(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow_table_full");
    g.throughput(Throughput::Elements(1));
    let payload = b"OPTIONS sip:a@b SIP/2.0\r\n";
    for flows in [1_000usize, 10_000, 100_000] {
        let limits = StreamLimits {
            max_flows: flows,
            max_flow_bytes: 64 * 1024,
            max_total_bytes: 1 << 30,
            idle_timeout: Duration::from_secs(3600),
            max_message: 64 * 1024,
        };
        let mut streams = Streams::new(limits);
        let mut next = 0u64;
        let feed = |streams: &mut Streams, next: &mut u64| {
            *next += 1;
            let seg = TcpSegment {
                src_port: 5060,
                dst_port: 1024,
                seq: 1,
                flags: 0x18,
                payload,
            };
            let ts = SystemTime::UNIX_EPOCH + Duration::from_micros(*next);
            streams.segment(flow_key(*next), &seg, VlanTags::default(), ts, &mut |_| {});
        };
        while streams.flow_count() < flows {
            feed(&mut streams, &mut next);
        }
        g.bench_function(format!("new_flow_at_{flows}"), |b| {
            b.iter(|| {
                feed(&mut streams, &mut next);
                assert_eq!(streams.flow_count(), flows);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, full_flow_table);
criterion_main!(benches);
