//! Several storers: with `storer_placement = "call_id"` every record of one Call-ID lands on the
//! same storer (consistent hashing of lanes), and with the default balanced placement the lanes
//! are spread evenly over the storers, including one that starts after the collector. Each
//! storer writes its own database here, so the placement is visible in the rows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use sipcapture_integration_tests::hep::{hep3_sip, request};
use sipcapture_integration_tests::{Sandbox, count_rows, member_counters, open_db, wait_until};
use tokio::io::AsyncWriteExt;

const TABLE: &str = "sip_capture_rest_20260115";

async fn send(target: std::net::SocketAddr, calls: u32, per_call: u32) {
    let mut stream = tokio::net::TcpStream::connect(target).await.unwrap();
    for m in 0..per_call {
        for c in 0..calls {
            let sip = request("OPTIONS", &format!("call-{c}@placement"), m + 1, "t", None);
            let packet = hep3_sip(
                "10.2.0.1:5060".parse().unwrap(),
                "10.2.0.2:5060".parse().unwrap(),
                1_768_464_000,
                m * calls + c,
                3,
                &sip,
            );
            stream.write_all(&packet).await.unwrap();
        }
    }
    stream.flush().await.unwrap();
}

async fn callids(db: &sea_orm::DatabaseConnection) -> HashMap<String, i64> {
    let sql = format!("SELECT callid, COUNT(*) AS n FROM {TABLE} GROUP BY callid");
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_default();
    rows.iter()
        .map(|r| {
            (
                r.try_get::<String>("", "callid").unwrap(),
                r.try_get::<i64>("", "n").unwrap(),
            )
        })
        .collect()
}

async fn two_storers_and_a_collector(
    sandbox: &Sandbox,
    extra: &[&str],
) -> (
    Vec<sea_orm::DatabaseConnection>,
    sipcapture_integration_tests::Service,
    Vec<sipcapture_integration_tests::Service>,
) {
    let mut storers = Vec::new();
    let mut urls = Vec::new();
    let mut dbs = Vec::new();
    for i in 1..=2 {
        let db_url = format!(
            "sqlite://{}",
            sandbox.path().join(format!("s{i}.db")).display()
        );
        let s = sandbox
            .storer(&format!("storer{i}"), &db_url, &[])
            .await
            .unwrap();
        urls.push(s.url());
        storers.push(s);
        dbs.push(open_db(&db_url).await.unwrap());
    }
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    let collector = sandbox.collector("collector", &urls, &extra).await.unwrap();
    (dbs, collector, storers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_id_placement_keeps_each_call_on_one_storer() {
    let sandbox = Sandbox::new().unwrap();
    let (dbs, collector, _storers) = two_storers_and_a_collector(
        &sandbox,
        &[
            "--set",
            "storer_placement=call_id",
            "--set",
            "storer_lanes=16",
        ],
    )
    .await;
    send(collector.hep.unwrap(), 200, 5).await;
    wait_until(
        "1000 rows in the two databases",
        Duration::from_secs(60),
        || async {
            Ok(count_rows(&dbs[0], TABLE).await? + count_rows(&dbs[1], TABLE).await? == 1000)
        },
    )
    .await
    .unwrap();
    let a = callids(&dbs[0]).await;
    let b = callids(&dbs[1]).await;
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both storers get calls: {} / {}",
        a.len(),
        b.len()
    );
    assert_eq!(a.len() + b.len(), 200, "no call is split across storers");
    assert!(
        a.values().chain(b.values()).all(|n| *n == 5),
        "every message of a call on one storer"
    );
    eprintln!(
        "call_id placement: {} calls on storer1, {} on storer2",
        a.len(),
        b.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balanced_placement_uses_every_storer() {
    let sandbox = Sandbox::new().unwrap();
    let (dbs, collector, _storers) =
        two_storers_and_a_collector(&sandbox, &["--set", "storer_lanes=8"]).await;
    send(collector.hep.unwrap(), 1000, 1).await;
    wait_until(
        "1000 rows in the two databases",
        Duration::from_secs(60),
        || async {
            Ok(count_rows(&dbs[0], TABLE).await? + count_rows(&dbs[1], TABLE).await? == 1000)
        },
    )
    .await
    .unwrap();
    let a = count_rows(&dbs[0], TABLE).await.unwrap();
    let b = count_rows(&dbs[1], TABLE).await.unwrap();
    eprintln!("balanced placement: {a} rows on storer1, {b} on storer2");
    // 8 lanes, 4 per storer, records in turn over the lanes: 500 / 500 unless a connection
    // failed and a lane moved; never everything on one storer.
    assert!(a >= 250 && b >= 250, "both storers used evenly: {a} / {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balanced_placement_gives_a_late_storer_its_lanes() {
    let sandbox = Sandbox::new().unwrap();
    let urls_dbs: Vec<(std::net::SocketAddr, String)> = (1..=2)
        .map(|i| {
            let addr = std::net::SocketAddr::from((
                [127, 0, 0, 1],
                sipcapture_integration_tests::free_port().unwrap(),
            ));
            let db = format!(
                "sqlite://{}",
                sandbox.path().join(format!("late{i}.db")).display()
            );
            (addr, db)
        })
        .collect();
    let _storer1 = sandbox
        .storer_at("storer1", urls_dbs[0].0, &urls_dbs[0].1, &[])
        .await
        .unwrap();
    let urls: Vec<String> = urls_dbs
        .iter()
        .map(|(a, _)| format!("http://{a}"))
        .collect();
    let extra: Vec<String> = ["--set", "storer_lanes=8"].map(str::to_owned).to_vec();
    let collector = sandbox.collector("collector", &urls, &extra).await.unwrap();
    let db1 = open_db(&urls_dbs[0].1).await.unwrap();
    // Storer 2 is down: everything goes to storer 1.
    send(collector.hep.unwrap(), 400, 1).await;
    wait_until("400 rows on storer 1", Duration::from_secs(60), || async {
        Ok(count_rows(&db1, TABLE).await? == 400)
    })
    .await
    .unwrap();
    // Storer 2 stays down past its down mark (5 s) and a placement check (every 5 s): the
    // lanes try it (make before break), fail and stay where they are; nothing flaps.
    tokio::time::sleep(Duration::from_secs(11)).await;
    send(collector.hep.unwrap(), 400, 1).await;
    wait_until("800 rows on storer 1", Duration::from_secs(60), || async {
        Ok(count_rows(&db1, TABLE).await? == 800)
    })
    .await
    .unwrap();
    let counters = member_counters(collector.grpc).await.unwrap();
    assert_eq!(
        counters.get("lane_moves").copied().unwrap_or(0),
        0,
        "{counters:?}"
    );
    // Storer 2 starts: within a placement check (5 s) plus the down mark (5 s) half of the
    // lanes move to it, so rounds of 400 records end up split 200 / 200.
    let _storer2 = sandbox
        .storer_at("storer2", urls_dbs[1].0, &urls_dbs[1].1, &[])
        .await
        .unwrap();
    let db2 = open_db(&urls_dbs[1].1).await.unwrap();
    let mut total = 800;
    let mut last = (0, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let before = (
            count_rows(&db1, TABLE).await.unwrap(),
            count_rows(&db2, TABLE).await.unwrap(),
        );
        send(collector.hep.unwrap(), 400, 1).await;
        total += 400;
        wait_until("every row stored", Duration::from_secs(60), || async {
            Ok(count_rows(&db1, TABLE).await? + count_rows(&db2, TABLE).await? == total)
        })
        .await
        .unwrap();
        let after = (
            count_rows(&db1, TABLE).await.unwrap(),
            count_rows(&db2, TABLE).await.unwrap(),
        );
        last = (after.0 - before.0, after.1 - before.1);
        if last == (200, 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("late storer: last round {} / {}", last.0, last.1);
    assert_eq!(last, (200, 200), "the late storer gets half of the lanes");
    // Exactly the four lanes that moved are counted (no lane moved back and forth).
    let counters = member_counters(collector.grpc).await.unwrap();
    assert_eq!(counters.get("lane_moves"), Some(&4), "{counters:?}");
}
