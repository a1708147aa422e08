//! Extraction of every SIP-derived `sip_capture` column from a realistic INVITE (with SDP) and a
//! 200 OK. Target: ≥ 2 M messages/s on one core.
//!
//! `cargo bench -p sipcapture-collector --bench sip_extract -- --quick`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sipcapture_collector::sip::{ExtractConfig, TopohCodec, TopohConfig, extract};
use std::hint::black_box;

const INVITE: &[u8] = include_bytes!("../testdata/sip/invite.sip");
const REPLY: &[u8] = include_bytes!("../testdata/sip/reply_200_invite.sip");

fn bench(c: &mut Criterion) {
    let cfg = ExtractConfig::kamailio_defaults();
    let mut group = c.benchmark_group("sip_extract");
    for (name, msg) in [("invite", INVITE), ("reply_200", REPLY)] {
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| extract(black_box(msg), black_box(&cfg)).map(|c| c.callid.len()))
        });
    }
    group.finish();

    let codec = TopohCodec::new(&TopohConfig::kamailio_defaults());
    let masked = codec.mask(b"a84b4c76e66710@pc33.atlanta.example.com");
    c.bench_function("topoh_unmask", |b| {
        b.iter(|| codec.unmask(black_box(&masked)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
