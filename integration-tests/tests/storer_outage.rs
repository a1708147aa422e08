//! A database outage mid-stream loses nothing and doubles nothing. A TCP proxy sits between the
//! storer and PostgreSQL (or MariaDB); 5 s into a steady flow of batches it closes every
//! connection and refuses new ones for 20 s, then reopens. The storer retries
//! (`insert_retries` / `insert_retry_timeout`), then ends the stream without acknowledging; the
//! client, like the collector's exporter, reconnects, learns the last committed batch from the
//! Welcome and resends the rest. In the end every row is stored exactly once.
//!
//! The default mode goes through the proxy while a second capture mode writes directly to
//! another database: a batch split over both is committed in the second database and refused by
//! the first, so its resend must skip the part already stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipcapture_integration_tests::Sandbox;
use sipcapture_integration_tests::member_counters;
use sipcapture_integration_tests::proxy::{host_port, start_proxy, through};
use sipcapture_integration_tests::storer::{
    Delivery, Engine, TestDb, count, micros, sip_record, start_storer,
};
use sipcapture_proto::v1::CaptureRecord;
use tokio::sync::{Mutex, watch};

const RECORDS_PER_BATCH: u64 = 20;

/// Batches not yet acknowledged, oldest first (the collector's in-memory window).
type Unacked = VecDeque<(u64, Vec<CaptureRecord>)>;
const OUTAGE: Duration = Duration::from_secs(20);

fn batch(seq: u64, t0: u64) -> Vec<CaptureRecord> {
    (0..RECORDS_PER_BATCH)
        .map(|i| {
            // Odd records go to the second capture mode (rule on from_user).
            let user = if i % 2 == 1 { "m-bob" } else { "alice" };
            sip_record(
                t0 + seq * 1000 + i,
                "INVITE",
                "INVITE",
                &format!("b{seq}-{i}@x"),
                user,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_loses_and_doubles_nothing() {
    outage(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_outage_loses_and_doubles_nothing() {
    outage(Engine::MySql).await;
}

async fn outage(engine: Engine) {
    let sandbox = Sandbox::new().unwrap();
    let Some(main_db) = TestDb::create(engine, &sandbox, "outage").await.unwrap() else {
        return;
    };
    let mode_db = TestDb::create(engine, &sandbox, "outage_m")
        .await
        .unwrap()
        .unwrap();
    let server = sipcapture_integration_tests::storer::server_url(engine).unwrap();
    let proxy = start_proxy(host_port(&server)).await;
    let db_name = main_db.url.rsplit('/').next().unwrap().to_owned();
    let proxied = through(&server, proxy.addr, &db_name);
    let extra = format!(
        r#"
insert_retries = 5
insert_retry_timeout = 2
db_max_connections = 4

[capture_mode.direct]
db_url = "{}"
table_name = "direct_%Y%m%d"

[[route]]
match = {{ header = {{ name = "from_user", prefix = "m-" }} }}
capture_mode = "direct"
"#,
        mode_db.url
    );
    let storer = start_storer(&sandbox, "storer", &proxied, &extra)
        .await
        .unwrap();

    let t0 = micros(2026, 7, 1, 8, 0, 0);
    let unacked: Arc<Mutex<Unacked>> = Arc::default();
    let (done_tx, done_rx) = watch::channel(false);

    // The source: a batch every 100 ms for 30 s; the outage runs from 5 s to 25 s.
    let producer = {
        let unacked = unacked.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let mut seq = 0;
            let mut outage_started = false;
            while start.elapsed() < Duration::from_secs(30) {
                seq += 1;
                unacked.lock().await.push_back((seq, batch(seq, t0)));
                if !outage_started && start.elapsed() >= Duration::from_secs(5) {
                    outage_started = true;
                    proxy.up.send_replace(false);
                    let up = proxy.up.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(OUTAGE).await;
                        up.send_replace(true);
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            done_tx.send_replace(true);
            (seq, proxy)
        })
    };

    // The exporter: stop-and-wait delivery; on any error reconnect, skip what the Welcome says
    // is committed, resend the rest.
    let mut stream_errors = 0;
    let mut duplicates = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    'connect: while Instant::now() < deadline {
        let mut d = match Delivery::open(storer.grpc, "it-collector", "outage-stream").await {
            Ok(d) => d,
            Err(_) => {
                stream_errors += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        unacked
            .lock()
            .await
            .retain(|(seq, _)| *seq > d.last_committed);
        loop {
            let next = unacked.lock().await.front().cloned();
            let Some((seq, records)) = next else {
                if *done_rx.borrow() {
                    break 'connect;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            match tokio::time::timeout(Duration::from_secs(30), d.send(seq, records)).await {
                Ok(Ok(ack)) => {
                    duplicates += u32::from(ack.duplicate);
                    unacked.lock().await.pop_front();
                }
                _ => {
                    stream_errors += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue 'connect;
                }
            }
        }
    }
    let (batches, _proxy) = producer.await.unwrap();
    assert!(
        unacked.lock().await.is_empty(),
        "batches left unacknowledged"
    );
    assert!(stream_errors > 0, "the outage never showed");

    let per_mode = batches * RECORDS_PER_BATCH / 2;
    let db = main_db.connect().await.unwrap();
    let mdb = mode_db.connect().await.unwrap();
    let main_rows = count(&db, "SELECT COUNT(*) AS n FROM sip_capture_call_20260701")
        .await
        .unwrap();
    let main_distinct = count(
        &db,
        "SELECT COUNT(DISTINCT callid) AS n FROM sip_capture_call_20260701",
    )
    .await
    .unwrap();
    let mode_rows = count(&mdb, "SELECT COUNT(*) AS n FROM direct_20260701")
        .await
        .unwrap();
    let mode_distinct = count(
        &mdb,
        "SELECT COUNT(DISTINCT callid) AS n FROM direct_20260701",
    )
    .await
    .unwrap();
    assert_eq!(
        (main_rows, main_distinct),
        (per_mode, per_mode),
        "default mode"
    );
    assert_eq!(
        (mode_rows, mode_distinct),
        (per_mode, per_mode),
        "direct mode"
    );

    let counters = member_counters(storer.grpc).await.unwrap();
    assert!(
        counters.get("insert_failed").copied().unwrap_or(0) >= 1,
        "{counters:?}"
    );
    assert!(
        counters
            .get("batch_parts_already_committed")
            .copied()
            .unwrap_or(0)
            >= 1,
        "no resend met a part committed before the outage: {counters:?}"
    );
    eprintln!(
        "{engine:?}: {batches} batches, {stream_errors} stream errors, {duplicates} duplicate acks, counters {counters:?}"
    );
    drop(storer);
    db.close().await.unwrap();
    mdb.close().await.unwrap();
    main_db.cleanup().await.unwrap();
    mode_db.cleanup().await.unwrap();
}
