//! Fault test (issue 21): the collector→storer gRPC link is cut for 60 s while HEP keeps
//! arriving. A TCP proxy the test controls sits between the collector and the storer; cutting it
//! closes every connection and closes new ones at once. The collector keeps what it cannot
//! deliver (a small in-memory window, the rest in its spool on disk) and, once the link is back,
//! resends: every packet is stored exactly once, every record acknowledged, nothing dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sipcapture_integration_tests::faults::{
    TABLE, counter, stored_exactly_once, wait_acked, wait_for_first_rows,
};
use sipcapture_integration_tests::hep::send_tcp_paced;
use sipcapture_integration_tests::proxy::start_proxy;
use sipcapture_integration_tests::{Sandbox, count_rows, member_counters, open_db};

/// Packets sent: 80 s of traffic at [`RATE`].
const N: u32 = 20_000;
const RATE: u32 = 250;
const CUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_cut_60s_spools_and_delivers_exactly_once() {
    let sandbox = Sandbox::new().unwrap();
    let db_url = format!("sqlite://{}", sandbox.path().join("link.db").display());
    let storer = sandbox.storer("storer", &db_url, &[]).await.unwrap();
    let proxy = start_proxy(storer.grpc).await;
    // A small window so the backlog of the cut goes to the spool.
    let extra = ["--set", "max_unacked_batches=4"].map(str::to_owned);
    let collector = sandbox
        .collector("collector", &[format!("http://{}", proxy.addr)], &extra)
        .await
        .unwrap();
    let hep = collector.hep.unwrap();
    let sender = tokio::spawn(async move { send_tcp_paced(hep, "link", N, RATE).await });

    let db = open_db(&db_url).await.unwrap();
    wait_for_first_rows(&db, 1_000).await.unwrap();
    assert!(!sender.is_finished(), "the load runs into the cut");
    proxy.up.send_replace(false);
    let cut = Instant::now();
    // What was in flight at the cut settles within seconds; after that nothing reaches the
    // storer until the link is back.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rows_early = count_rows(&db, TABLE).await.unwrap();
    let counters_early = member_counters(collector.grpc).await.unwrap();
    tokio::time::sleep(CUT.saturating_sub(cut.elapsed())).await;
    let rows_late = count_rows(&db, TABLE).await.unwrap();
    let counters_late = member_counters(collector.grpc).await.unwrap();
    proxy.up.send_replace(true);
    eprintln!("link back after {:?}", cut.elapsed());
    assert_eq!(
        rows_early, rows_late,
        "nothing stored while the link is cut"
    );
    assert!(
        counter(&counters_late, "records_queued")
            > counter(&counters_early, "records_queued") + 1_000,
        "HEP kept arriving during the cut: {counters_early:?} {counters_late:?}"
    );

    sender.await.unwrap().unwrap();
    stored_exactly_once(&db, u64::from(N), Duration::from_secs(180), || {
        format!("collector log:\n{}", collector.process.log_text())
    })
    .await
    .unwrap();
    let counters = wait_acked(collector.grpc, u64::from(N)).await.unwrap();
    eprintln!("collector counters after the cut: {counters:?}");
    assert_eq!(
        counter(&counters, "records_acked"),
        u64::from(N),
        "{counters:?}"
    );
    assert!(
        counter(&counters, "records_spooled") > 0,
        "the backlog went through the spool: {counters:?}"
    );
    assert_eq!(
        counter(&counters, "dropped"),
        0,
        "nothing dropped: {counters:?}"
    );
    db.close().await.unwrap();
}
