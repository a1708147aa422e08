#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Observability end to end, on the real binaries:
//! - the Prometheus `/metrics` endpoints of collector and storer move by exactly what was sent
//!   (N valid HEP packets and M garbage ones → exact deltas, per drop reason), and every
//!   service kind (`sipcapture-control`, `sipcapture up`) serves one;
//! - with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an OTLP/gRPC receiver started here, a
//!   batch's spans arrive from both processes in one trace (collector `export_batch` → storer
//!   `intake_batch` → `insert`), and so do the metrics.

use std::net::SocketAddr;
use std::time::Duration;

use sipcapture_integration_tests::hep::{hep3_sip, request, send_udp};
use sipcapture_integration_tests::otlp::{OtlpSink, SpanSeen};
use sipcapture_integration_tests::prometheus::{Scrape, scrape};
use sipcapture_integration_tests::{Sandbox, free_port, open_db, wait_for_rows, wait_until};

const WAIT: Duration = Duration::from_secs(30);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// `n` valid HEP3 OPTIONS packets (distinct Call-IDs, one day so one table).
fn valid_packets(n: usize, tag: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            hep3_sip(
                addr("10.0.0.1:5060"),
                addr("10.0.0.2:5060"),
                1_768_464_000,
                u32::try_from(i).unwrap(),
                7,
                &request("OPTIONS", &format!("{tag}-{i}@x"), 1, "t", None),
            )
        })
        .collect()
}

/// Spans of `service` named `name` whose parent is `parent` (same trace).
fn children<'a>(
    spans: &'a [SpanSeen],
    parent: &'a SpanSeen,
    service: &'a str,
    name: &'a str,
) -> impl Iterator<Item = &'a SpanSeen> + 'a {
    spans.iter().filter(move |s| {
        s.service == service
            && s.name == name
            && s.trace_id == parent.trace_id
            && s.parent_span_id == parent.span_id
    })
}

fn metrics_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()))
}

/// Scrapes `addr` until `done` holds; returns that scrape.
async fn scrape_until(addr: SocketAddr, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let s = scrape(addr).await.unwrap();
        if done(&s) {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; last scrape:\n{}",
            s.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoints_count_exactly_what_was_sent_and_dropped() {
    const N: usize = 25;
    let sandbox = Sandbox::new().unwrap();
    let db_url = format!("sqlite://{}", sandbox.path().join("m.db").display());
    let storer_metrics = metrics_addr();
    let collector_metrics = metrics_addr();
    let mut storer = sandbox
        .storer(
            "storer-m",
            &db_url,
            &["--set".into(), format!("metrics_listen={storer_metrics}")],
        )
        .await
        .unwrap();
    let mut collector = sandbox
        .collector(
            "collector-m",
            &[storer.url()],
            &[
                "--set".into(),
                format!("metrics_listen={collector_metrics}"),
            ],
        )
        .await
        .unwrap();
    let hep = collector.hep.unwrap();

    let c0 = scrape(collector_metrics).await.unwrap();
    let s0 = scrape(storer_metrics).await.unwrap();
    // Every documented family is declared with its type, before anything moved.
    assert!(c0.declares("sipcapture_collector_hep_received_total", "counter"));
    assert!(c0.declares("sipcapture_collector_queue_depth", "gauge"));
    assert!(c0.declares("sipcapture_collector_batch_ack_seconds", "histogram"));
    assert!(s0.declares("sipcapture_storer_rows_stored_total", "counter"));
    assert!(s0.declares("sipcapture_storer_insert_seconds", "histogram"));
    assert_eq!(
        s0.get("sipcapture_storer_db_pool_max{mode=\"default\"}"),
        1.0,
        "{}",
        s0.text
    );

    // M garbage datagrams with known reasons: 3 × bad magic, 2 × a cut HEP3 magic.
    let garbage: Vec<Vec<u8>> = vec![
        b"GARBAGE, NOT HEP AT ALL".to_vec(),
        b"\x00\x00\x00\x00\x00\x00".to_vec(),
        b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
        b"HEP".to_vec(),
        b"HE".to_vec(),
    ];
    let (bad_magic, truncated) = (3.0, 2.0);
    let m = garbage.len() as f64;
    send_udp(hep, &garbage).unwrap();
    send_udp(hep, &valid_packets(N, "metrics")).unwrap();
    let n = N as f64;

    let db = open_db(&db_url).await.unwrap();
    wait_for_rows(&db, "sip_capture_rest_20260115", N as u64, WAIT)
        .await
        .unwrap();

    let acked_before = c0.get("sipcapture_collector_records_acked_total");
    let c1 = scrape_until(collector_metrics, "collector acks", |s| {
        s.get("sipcapture_collector_records_acked_total") - acked_before >= n
            && s.get("sipcapture_collector_hep_received_total{input=\"hep_udp\"}") >= n + m
    })
    .await;
    let d = |name: &str| c1.get(name) - c0.get(name);
    assert_eq!(
        d("sipcapture_collector_hep_received_total{input=\"hep_udp\"}"),
        n + m
    );
    assert_eq!(
        d("sipcapture_collector_hep_decoded_total{input=\"hep_udp\"}"),
        n
    );
    assert_eq!(
        d("sipcapture_collector_dropped_total{reason=\"bad_magic\"}"),
        bad_magic
    );
    assert_eq!(
        d("sipcapture_collector_dropped_total{reason=\"truncated\"}"),
        truncated
    );
    assert_eq!(
        c1.sum("sipcapture_collector_dropped_total") - c0.sum("sipcapture_collector_dropped_total"),
        m,
        "only the garbage is dropped:\n{}",
        c1.text
    );
    assert_eq!(d("sipcapture_collector_records_queued_total"), n);
    assert_eq!(d("sipcapture_collector_records_acked_total"), n);
    assert_eq!(d("sipcapture_collector_records_spooled_total"), 0.0);
    let batches = d("sipcapture_collector_batches_acked_total");
    assert!(batches >= 1.0, "{}", c1.text);
    assert_eq!(d("sipcapture_collector_batches_sent_total"), batches);
    assert_eq!(d("sipcapture_collector_batches_sealed_total"), batches);
    assert_eq!(d("sipcapture_collector_batch_ack_seconds_count"), batches);
    assert_eq!(
        c1.get("sipcapture_collector_batch_ack_seconds_bucket{le=\"+Inf\"}"),
        c1.get("sipcapture_collector_batch_ack_seconds_count")
    );
    assert_eq!(
        c1.get("sipcapture_collector_unacked_batches{lane=\"0\"}"),
        0.0
    );
    assert_eq!(c1.get("sipcapture_collector_queue_depth{lane=\"0\"}"), 0.0);
    assert!(
        c1.series
            .contains_key("sipcapture_collector_spool_bytes{lane=\"0\"}")
    );

    let s1 = scrape(storer_metrics).await.unwrap();
    let ds = |name: &str| s1.get(name) - s0.get(name);
    assert_eq!(ds("sipcapture_storer_rows_stored_total{family=\"sip\"}"), n);
    assert_eq!(ds("sipcapture_storer_batches_received_total"), batches);
    assert_eq!(ds("sipcapture_storer_batches_committed_total"), batches);
    assert_eq!(ds("sipcapture_storer_insert_failed_total"), 0.0);
    assert_eq!(s1.sum("sipcapture_storer_dropped_total"), 0.0);
    assert_eq!(ds("sipcapture_storer_insert_seconds_count"), batches);
    assert_eq!(s1.get("sipcapture_storer_streams_open"), 1.0, "{}", s1.text);

    // The same counters in StatusService/Check (one source of truth).
    let counters = sipcapture_integration_tests::member_counters(collector.grpc)
        .await
        .unwrap();
    assert_eq!(
        counters.get("dropped.bad_magic").copied().unwrap_or(0) as f64,
        c1.get("sipcapture_collector_dropped_total{reason=\"bad_magic\"}")
    );

    assert!(collector.process.terminate(WAIT).unwrap());
    assert!(storer.process.terminate(WAIT).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_and_up_serve_metrics() {
    let sandbox = Sandbox::new().unwrap();
    let control_metrics = metrics_addr();
    let mut control = sandbox
        .control(&["--set".into(), format!("metrics_listen={control_metrics}")])
        .await
        .unwrap();
    let s = scrape(control_metrics).await.unwrap();
    assert!(
        s.declares("sipcapture_control_members", "gauge"),
        "{}",
        s.text
    );
    assert_eq!(s.get("sipcapture_control_members"), 0.0);
    assert!(s.declares("sipcapture_control_status_changed_total", "counter"));
    assert!(control.process.terminate(WAIT).unwrap());

    // The all-in-one serves the three parts' metrics on one endpoint, with JSON logs.
    let up_metrics = metrics_addr();
    let metrics_flag = format!("metrics_listen={up_metrics}");
    let mut up = sandbox
        .up(&["--set", &metrics_flag, "--set", "log_format=json"])
        .await
        .unwrap();
    send_udp(up.hep, &valid_packets(3, "up")).unwrap();
    let s = scrape_until(up_metrics, "rows stored by up", |s| {
        s.get("sipcapture_storer_rows_stored_total{family=\"sip\"}") == 3.0
    })
    .await;
    assert_eq!(
        s.get("sipcapture_collector_hep_received_total{input=\"hep_udp\"}"),
        3.0
    );
    assert_eq!(s.get("sipcapture_control_members"), 1.0, "{}", s.text);
    // One endpoint for three services: still valid, nothing declared twice.
    let families = sipcapture_integration_tests::prometheus::validate(&s.text)
        .unwrap_or_else(|e| panic!("{e}\n{}", s.text));
    for service in ["collector", "storer", "control"] {
        let info = format!("sipcapture_{service}_build_info");
        assert!(families.contains(&info), "{}", s.text);
        assert_eq!(s.sum(&info), 1.0, "{}", s.text);
    }
    assert!(s.text.contains("git_commit=\""));
    for process in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(s.get(process) > 0.0, "{process}: {}", s.text);
    }
    // Every drop reason at 0 before it occurs; the capture state follows `status`.
    assert!(
        s.series
            .contains_key("sipcapture_collector_dropped_total{reason=\"bad_magic\"}"),
        "{}",
        s.text
    );
    assert_eq!(s.get("sipcapture_storer_ready"), 1.0);
    assert_eq!(s.get("sipcapture_storer_capture_on"), 1.0);
    assert_eq!(
        s.get("sipcapture_collector_capture_on{input=\"hep_udp\"}"),
        1.0
    );
    let status = sipcapture_integration_tests::bin_path("sipcapture").unwrap();
    let off = std::process::Command::new(&status)
        .args(["status", "off", "--target", &up.grpc.to_string()])
        .output()
        .unwrap();
    assert!(off.status.success(), "{off:?}");
    let s = scrape_until(up_metrics, "capture_on 0", |s| {
        s.get("sipcapture_collector_capture_on{input=\"hep_udp\"}") == 0.0
    })
    .await;
    assert_eq!(s.get("sipcapture_storer_capture_on"), 0.0, "{}", s.text);
    assert_eq!(
        s.get("sipcapture_control_capture_on{input=\"hep_udp\"}"),
        0.0
    );
    let log = up.process.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("sipcapture up: capturing"))
        .expect("start-up line");
    assert!(
        line.starts_with('{') && line.contains("\"level\":\"INFO\""),
        "json log line expected: {line}"
    );
    assert!(up.process.terminate(WAIT).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_receiver_gets_one_trace_per_batch_and_the_metrics() {
    const N: usize = 10;
    let sink = OtlpSink::start().await.unwrap();
    let mut sandbox = Sandbox::new().unwrap();
    sandbox.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint());
    sandbox.set_env("OTEL_METRIC_EXPORT_INTERVAL", "300");
    sandbox.set_env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let db_url = format!("sqlite://{}", sandbox.path().join("o.db").display());
    let mut storer = sandbox.storer("storer-o", &db_url, &[]).await.unwrap();
    let mut collector = sandbox
        .collector("collector-o", &[storer.url()], &[])
        .await
        .unwrap();
    send_udp(collector.hep.unwrap(), &valid_packets(N, "otlp")).unwrap();
    let db = open_db(&db_url).await.unwrap();
    wait_for_rows(&db, "sip_capture_rest_20260115", N as u64, WAIT)
        .await
        .unwrap();

    // Spans: the collector's batch span is the parent of the storer's intake span, whose
    // child is the insert; one trace id across both processes.
    wait_until(
        "a batch trace across collector and storer",
        WAIT,
        || async {
            let spans = sink.spans();
            let found = spans
                .iter()
                .filter(|s| s.service == "sipcapture-collector" && s.name == "export_batch")
                .any(|batch| {
                    children(&spans, batch, "sipcapture-storer", "intake_batch").any(|intake| {
                        children(&spans, intake, "sipcapture-storer", "insert").count() > 0
                    })
                });
            Ok(found)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: spans {:#?}", sink.spans()));
    assert!(
        sink.spans()
            .iter()
            .all(|s| s.trace_id.len() == 16 && s.trace_id.iter().any(|b| *b != 0)),
        "valid trace ids"
    );

    // Metrics: the same counters, exported over OTLP.
    let n = N as f64;
    wait_until("otlp metrics", WAIT, || async {
        Ok(sink.latest(
            "sipcapture-collector",
            "sipcapture.collector.hep_received",
            &["input=hep_udp"],
        ) == Some(n)
            && sink.latest(
                "sipcapture-storer",
                "sipcapture.storer.rows_stored",
                &["family=sip"],
            ) == Some(n)
            && sink
                .latest(
                    "sipcapture-collector",
                    "sipcapture.collector.batch_ack_seconds",
                    &[],
                )
                .is_some_and(|count| count >= 1.0))
    })
    .await
    .unwrap_or_else(|e| {
        let names: std::collections::BTreeSet<String> = sink
            .points()
            .into_iter()
            .map(|p| format!("{} {}", p.service, p.metric))
            .collect();
        panic!("{e}: metrics seen {names:#?}")
    });

    // The Deliver stream's metadata carried the context too: the storer's stream span (closed,
    // so exported, when the stream ends at shutdown) is a child of the collector's connect span.
    assert!(collector.process.terminate(WAIT).unwrap());
    assert!(storer.process.terminate(WAIT).unwrap());
    let spans = sink.spans();
    let stream_from_metadata = spans
        .iter()
        .filter(|s| s.service == "sipcapture-collector" && s.name == "storer_connect")
        .any(|connect| {
            children(&spans, connect, "sipcapture-storer", "deliver_stream").count() > 0
        });
    assert!(stream_from_metadata, "spans {spans:#?}");
}
