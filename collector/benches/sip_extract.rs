//! Extraction of every SIP-derived `sip_capture` column from a realistic INVITE (with SDP) and a
//! 200 OK. Target: ≥ 2 M messages/s on one core.
//!
//! `cargo bench -p sipcapture-collector --bench sip_extract -- --quick`
//!
//! Instruction counts (repeatable on a loaded machine): with `SIP_EXTRACT_LOOPS=N` set the binary
//! skips criterion and extracts the INVITE `N` times, so two runs under callgrind give the cost
//! of one extraction as `(Ir(N=100000) - Ir(N=0)) / 100000`:
//!
//! ```text
//! SIP_EXTRACT_LOOPS=100000 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/deps/sip_extract-<hash> --bench
//! ```

use criterion::{Criterion, Throughput, criterion_group};
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

/// The fixed-count loop for callgrind (see the module docs).
fn instruction_count_loop(loops: u64) {
    let cfg = ExtractConfig::kamailio_defaults();
    let mut total = 0usize;
    for _ in 0..loops {
        total += extract(black_box(INVITE), black_box(&cfg)).map_or(0, |c| c.callid.len());
    }
    println!("extracted the INVITE {loops} times ({total} Call-ID bytes)");
}

criterion_group!(benches, bench);

fn main() {
    if let Some(loops) = std::env::var("SIP_EXTRACT_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        instruction_count_loop(loops);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
