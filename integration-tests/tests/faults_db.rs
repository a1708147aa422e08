//! Fault test (issue 21): the database server itself stops for 30 s under load and comes back.
//!
//! A private PostgreSQL or MariaDB server (its own data directory and port: the machine's shared
//! servers are never touched) behind a real storer and a real collector; HEP over TCP keeps
//! arriving at a steady rate for a minute. 8 s in, the server is stopped — cleanly or with
//! SIGKILL (a crash) — and restarted on the same data 30 s later. The storer retries, then ends
//! the collector's stream unacknowledged; the collector keeps the batches (window and spool) and
//! resends after reconnecting. In the end every packet is stored exactly once (row count and
//! distinct Call-IDs equal to what was sent), every record is acknowledged and none is dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sipcapture_integration_tests::dbserver::{DbServer, ServerKind, Stop};
use sipcapture_integration_tests::faults::{
    counter, stored_exactly_once, wait_acked, wait_for_first_rows,
};
use sipcapture_integration_tests::hep::send_tcp_paced;
use sipcapture_integration_tests::{Sandbox, member_counters, open_db};

/// Packets sent: a minute of traffic at [`RATE`].
const N: u32 = 15_000;
const RATE: u32 = 250;
const OUTAGE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_30s_under_load() {
    db_down_30s(ServerKind::Postgres, Stop::Clean).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashed_30s_under_load() {
    db_down_30s(ServerKind::Postgres, Stop::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_stopped_30s_under_load() {
    db_down_30s(ServerKind::MariaDb, Stop::Clean).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_crashed_30s_under_load() {
    db_down_30s(ServerKind::MariaDb, Stop::Kill).await;
}

async fn db_down_30s(kind: ServerKind, how: Stop) {
    let Some(mut server) = DbServer::start(kind).await.unwrap() else {
        return;
    };
    let db_url = server.create_database("faults").await.unwrap();
    let sandbox = Sandbox::new().unwrap();
    let storer = sandbox
        .storer(
            "storer",
            &db_url,
            &[
                "--set".into(),
                "insert_retries=3".into(),
                "--set".into(),
                "insert_retry_timeout=2".into(),
            ],
        )
        .await
        .unwrap();
    let collector = sandbox
        .collector("collector", &[storer.url()], &[])
        .await
        .unwrap();
    let hep = collector.hep.unwrap();
    let prefix = format!("{kind:?}-{how:?}");
    let sender = tokio::spawn(async move { send_tcp_paced(hep, &prefix, N, RATE).await });

    let db = open_db(&db_url).await.unwrap();
    wait_for_first_rows(&db, 1_000).await.unwrap();
    db.close().await.unwrap();

    assert!(!sender.is_finished(), "the load runs into the outage");
    server.stop(how).unwrap();
    let stopped = Instant::now();
    eprintln!("{kind:?} stopped ({how:?})");
    // Traffic keeps arriving while the database is away; once what was in flight at the stop
    // has settled (10 s), nothing more is acknowledged: acknowledgements follow commits.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let early = member_counters(collector.grpc).await.unwrap();
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
    let late = member_counters(collector.grpc).await.unwrap();
    server.restart().await.unwrap();
    eprintln!("{kind:?} back after {:?}", stopped.elapsed());

    sender.await.unwrap().unwrap();
    let db = open_db(&db_url).await.unwrap();
    stored_exactly_once(&db, u64::from(N), Duration::from_secs(180), || {
        format!(
            "storer log:\n{}\ncollector log:\n{}",
            storer.process.log_text(),
            collector.process.log_text()
        )
    })
    .await
    .unwrap();

    let collector_counters = wait_acked(collector.grpc, u64::from(N)).await.unwrap();
    let storer_counters = member_counters(storer.grpc).await.unwrap();
    eprintln!("collector counters: {collector_counters:?}");
    eprintln!("storer counters: {storer_counters:?}");
    // The outage showed: records kept arriving but none was acknowledged, and the storer's
    // inserts failed and were retried.
    assert_eq!(
        counter(&early, "records_acked"),
        counter(&late, "records_acked"),
        "no acknowledgement while the database is down: {early:?} {late:?}"
    );
    assert!(
        counter(&late, "records_queued") > counter(&early, "records_queued"),
        "records kept arriving: {early:?} {late:?}"
    );
    assert!(
        counter(&storer_counters, "insert_retried") > 0,
        "{storer_counters:?}"
    );
    assert_eq!(
        collector_counters.get("records_acked"),
        Some(&u64::from(N)),
        "every record acknowledged: {collector_counters:?}"
    );
    assert_eq!(
        counter(&collector_counters, "dropped"),
        0,
        "nothing dropped: {collector_counters:?}"
    );
    db.close().await.unwrap();
}
