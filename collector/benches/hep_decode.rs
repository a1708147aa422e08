//! HEP decode throughput: one typical ~800-byte HEP3 SIP packet (Kamailio siptrace chunk set:
//! 11 counted chunks, a correlation id and an INVITE with SDP), plus HEPv2 and TCP framing.
//!
//! Run: `cargo bench -p sipcapture-collector --bench hep_decode`; target >= 5 M packets/s/core.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sipcapture_collector::decode::hep::{
    HepPacket, HepPayload, decode, encode_v1v2, encode_v3, tcp_frame_len,
};

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
User-Agent: sipcapture-bench/1.0\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n\
Supported: replaces, timer\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 238\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n\
s=Session SDP\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=sendrecv\r\n";

fn sip_packet(version: u8) -> HepPacket<'static> {
    HepPacket {
        version,
        ip_family: Some(2),
        ip_protocol: Some(17),
        src_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 101))),
        dst_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 4))),
        src_port: Some(5060),
        dst_port: Some(5060),
        ts_sec: Some(1_700_000_000),
        ts_usec: Some(123_456),
        proto_type: Some(1),
        capture_id: Some(2001),
        keep_alive: None,
        auth_key: None,
        payload: Some(HepPayload::Raw(INVITE)),
        correlation_id: Some(b"a84b4c76e66710@pc33.atlanta.example.com"),
        vlan_id: None,
        node_name: None,
        core_chunks: 0,
        chunk_area: &[],
    }
}

fn bench_decode(c: &mut Criterion) {
    let mut hep3 = Vec::new();
    encode_v3(&sip_packet(3), &mut hep3);
    let mut hep2 = Vec::new();
    if encode_v1v2(&sip_packet(2), &mut hep2).is_err() {
        hep2.clear();
    }

    let mut group = c.benchmark_group("hep_decode");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("v3_sip_{}_bytes", hep3.len()), |b| {
        b.iter(|| decode(black_box(&hep3)))
    });
    group.bench_function(format!("v2_sip_{}_bytes", hep2.len()), |b| {
        b.iter(|| decode(black_box(&hep2)))
    });
    group.bench_function("tcp_frame_len", |b| {
        b.iter(|| tcp_frame_len(black_box(&hep3), 65_535))
    });
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
