//! Raw-capture dissection throughput: one captured SIP/UDP frame (Ethernet + 802.1Q, IPv4,
//! UDP, an INVITE with SDP from the generated corpus), the same frame inside ERSPAN II, and a
//! SIP-over-TCP stream of 1400-byte segments carrying several messages each.
//!
//! Run: `cargo bench -p sipcapture-collector --bench dissect -- --quick`.

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sipcapture_collector::decode::flow::{DissectLimits, Dissected, Dissector};
use sipcapture_collector::decode::frame::LinkType;

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

criterion_group!(benches, bench);
criterion_main!(benches);
