//! Cost of the Lua hook (`nonsip_hook = 1`) on the per-packet path of `Ingest::hep`: decode →
//! hook → record (SIP extraction included), for a Kamailio siptrace HEP3 INVITE, without a hook,
//! with a no-op hook (`return 1`) and with a typical hook (reads `hep.method` and
//! `hep.src_ip`, calls `sip_capture` for REGISTER). The queue hand-off after the record is the
//! same with and without a hook and is left out.
//!
//! Run: `cargo bench -p sipcapture-collector --bench lua_hook`; budget: a no-op hook costs at
//! most 20% of the path without one (docs/BENCHMARKS.md). Before criterion's sequential runs it
//! prints an interleaved comparison (fastest of alternating batches), robust to a busy machine.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sipcapture_collector::decode::hep::decode;
use sipcapture_collector::hook::{Hook, HookSettings};
use sipcapture_collector::record::{Reception, RecordBuilder};
use sipcapture_collector::sip::ExtractConfig;
use sipcapture_proto::v1::InputKind;
use sipcapture_runtime::counters::Counters;

const HEP3_INVITE: &[u8] = include_bytes!("../testdata/hep/hep3_kamailio_invite.bin");

const NOOP: &str = "function ksr_sipcapture_event(ev, hep) return 1 end\n";
const TYPICAL: &str = r#"
function ksr_sipcapture_event(ev, hep)
  if hep.method == "OPTIONS" then return 0 end
  if hep.src_ip == "10.9.9.9" then return 0 end
  if hep.method == "REGISTER" then sip_capture("registrations_%Y%m%d") end
  return 1
end
"#;

fn hook(dir: &std::path::Path, name: &str, script: &str) -> Arc<Hook> {
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap_or_else(|e| panic!("{e}"));
    let settings = HookSettings {
        script_file: path,
        event_callback: "ksr_sipcapture_event".to_owned(),
        timeout: Duration::from_millis(100),
        memory_limit: 64 * 1024 * 1024,
        states: 2,
    };
    Hook::new(
        settings,
        None,
        Arc::new(Counters::new(&sipcapture_collector::events::CATALOG)),
    )
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("sipcapture-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let builder = RecordBuilder {
        capture_node: "homer01".to_owned(),
        collector_id: "bench".to_owned(),
        sip: ExtractConfig::kamailio_defaults(),
        max_inflated_payload: 1024 * 1024,
    };
    let rx = Reception {
        input: InputKind::HepUdp,
        peer: None,
        at: SystemTime::now(),
    };
    let hooks = [
        ("no_hook", None),
        ("noop_hook", Some(hook(&dir, "noop.lua", NOOP))),
        ("typical_hook", Some(hook(&dir, "typical.lua", TYPICAL))),
    ];
    interleaved(&builder, rx, &hooks);
    let mut group = c.benchmark_group("ingest_hep_path");
    group.throughput(Throughput::Elements(1));
    for (name, hook) in &hooks {
        group.bench_function(*name, |b| {
            b.iter(|| one(&builder, rx, hook.as_ref()));
        });
    }
    // The path `Ingest::hep` takes: the call on the bounded blocking pool (a packet copy, a
    // blocking-thread hand-off and the wait for its verdict) instead of the calling thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    for (name, hook) in &hooks {
        let Some(hook) = hook else { continue };
        group.bench_function(format!("{name}_pooled"), |b| {
            b.iter(|| {
                let data = black_box(HEP3_INVITE);
                let packet = decode(data).unwrap_or_else(|e| panic!("{e}"));
                black_box(runtime.block_on(hook.run_pooled(data, InputKind::HepUdp, None)));
                black_box(
                    builder
                        .from_hep(&packet, rx)
                        .unwrap_or_else(|e| panic!("{e}")),
                );
            });
        });
    }
    group.finish();
    let _cleanup = std::fs::remove_dir_all(&dir);
}

/// One packet through the path, with or without a hook.
fn one(builder: &RecordBuilder, rx: Reception, hook: Option<&Arc<Hook>>) {
    let data = black_box(HEP3_INVITE);
    let packet = decode(data).unwrap_or_else(|e| panic!("{e}"));
    if let Some(h) = hook {
        black_box(h.run(data, InputKind::HepUdp, None));
    }
    black_box(
        builder
            .from_hep(&packet, rx)
            .unwrap_or_else(|e| panic!("{e}")),
    );
}

/// The variants in alternating batches, keeping each one's fastest batch: on a shared machine
/// other processes slow down whole stretches of a sequential run, and the minimum over
/// interleaved batches is what the code costs when it has the core. Printed as
/// `interleaved <name>: <ns>/packet (<ratio> of no_hook)`.
fn interleaved(builder: &RecordBuilder, rx: Reception, hooks: &[(&str, Option<Arc<Hook>>)]) {
    const ROUNDS: usize = 200;
    const BATCH: u32 = 2_000;
    let mut best = vec![f64::MAX; hooks.len()];
    for _ in 0..ROUNDS {
        for (i, (_, hook)) in hooks.iter().enumerate() {
            let start = std::time::Instant::now();
            for _ in 0..BATCH {
                one(builder, rx, hook.as_ref());
            }
            let per = start.elapsed().as_secs_f64() * 1e9 / f64::from(BATCH);
            if let Some(b) = best.get_mut(i) {
                *b = b.min(per);
            }
        }
    }
    let base = best.first().copied().unwrap_or(1.0);
    for ((name, _), ns) in hooks.iter().zip(&best) {
        println!(
            "interleaved {name}: {ns:.0} ns/packet ({:.3} of no_hook)",
            ns / base
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
