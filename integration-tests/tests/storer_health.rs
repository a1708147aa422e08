//! Readiness follows the database: a storer on PostgreSQL reached through a TCP proxy the test
//! controls. Cutting the proxy makes its gRPC health NOT_SERVING (overall entry and
//! StorerService; StatusService keeps answering) and its `ready` / `db_reachable` gauges 0;
//! restoring it makes it SERVING again. A storer started while its database is down starts
//! anyway, NOT_SERVING, and becomes SERVING and stores when the database comes; a database URL
//! that does not parse still stops it. Skipped without `TEST_PG_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use sipcapture_integration_tests::prometheus::scrape;
use sipcapture_integration_tests::proxy::{Proxy, host_port, start_proxy};
use sipcapture_integration_tests::storer::{Delivery, Engine, TestDb, count, micros, sip_record};
use sipcapture_integration_tests::{Sandbox, free_port, health_status, wait_until};
use tonic_health::pb::health_check_response::ServingStatus;

/// Check interval (5 s) + ping time-out (10 s) + slack.
const WAIT: Duration = Duration::from_secs(40);

async fn wait_health(addr: SocketAddr, service: &str, want: ServingStatus) {
    wait_until(&format!("{service:?} {want:?}"), WAIT, || async {
        Ok(health_status(addr, service).await == Some(want))
    })
    .await
    .unwrap();
}

/// Waits for NOT_SERVING (overall and StorerService) while StatusService keeps answering
/// SERVING (liveness), and the `ready` / `db_reachable` gauges show it.
async fn wait_not_serving(grpc: SocketAddr, metrics: SocketAddr) {
    wait_health(grpc, "", ServingStatus::NotServing).await;
    assert_eq!(
        health_status(grpc, "sipcapture.v1.StorerService").await,
        Some(ServingStatus::NotServing)
    );
    assert_eq!(
        health_status(grpc, "sipcapture.v1.StatusService").await,
        Some(ServingStatus::Serving),
        "the status service keeps answering (liveness)"
    );
    let s = scrape(metrics).await.unwrap();
    assert_eq!(s.get("sipcapture_storer_ready"), 0.0, "{}", s.text);
    assert_eq!(
        s.get("sipcapture_storer_db_reachable{mode=\"default\"}"),
        0.0
    );
}

/// A fresh PostgreSQL database, a proxy to its server (switched on) and its URL through the
/// proxy; `None` without `TEST_PG_URL`.
async fn proxied_db(sandbox: &Sandbox, tag: &str) -> Option<(TestDb, Proxy, String)> {
    let db = TestDb::create(Engine::Postgres, sandbox, tag)
        .await
        .unwrap()?;
    let real = host_port(&db.url);
    let proxy = start_proxy(real).await;
    let proxied = db
        .url
        .replacen(&real.to_string(), &proxy.addr.to_string(), 1);
    Some((db, proxy, proxied))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storer_health_follows_its_database() {
    let sandbox = Sandbox::new().unwrap();
    let Some((db, proxy, proxied)) = proxied_db(&sandbox, "health").await else {
        return;
    };
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut storer = sandbox
        .storer(
            "health-storer",
            &proxied,
            &["--set".into(), format!("metrics_listen={metrics}")],
        )
        .await
        .unwrap();
    let grpc = storer.grpc;

    let s = scrape(metrics).await.unwrap();
    assert_eq!(s.get("sipcapture_storer_ready"), 1.0, "{}", s.text);
    assert_eq!(
        s.get("sipcapture_storer_db_reachable{mode=\"default\"}"),
        1.0
    );
    assert_eq!(s.get("sipcapture_storer_capture_on"), 1.0);

    // Outage: every connection closed, new ones refused.
    proxy.up.send_replace(false);
    wait_not_serving(grpc, metrics).await;
    assert!(
        storer.process.is_running(),
        "an outage does not stop the storer"
    );

    // Recovery.
    proxy.up.send_replace(true);
    wait_health(grpc, "", ServingStatus::Serving).await;
    assert_eq!(
        health_status(grpc, "sipcapture.v1.StorerService").await,
        Some(ServingStatus::Serving)
    );
    let s = scrape(metrics).await.unwrap();
    assert_eq!(s.get("sipcapture_storer_ready"), 1.0);
    assert_eq!(
        s.get("sipcapture_storer_db_reachable{mode=\"default\"}"),
        1.0
    );
    let log = storer.process.log_text();
    assert!(log.contains("database unreachable"), "{log}");
    assert!(log.contains("database reachable again"), "{log}");

    storer.process.terminate(Duration::from_secs(10)).unwrap();
    db.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storer_started_while_its_database_is_down_waits_for_it() {
    let sandbox = Sandbox::new().unwrap();
    let Some((db, proxy, proxied)) = proxied_db(&sandbox, "startdown").await else {
        return;
    };
    proxy.up.send_replace(false);
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut storer = sandbox
        .spawn(
            "startdown-storer",
            "sipcapture-storer",
            &[
                "--grpc-listen".into(),
                grpc.to_string(),
                "--db-url".into(),
                proxied.clone(),
                "--set".into(),
                format!("metrics_listen={metrics}"),
            ],
        )
        .unwrap();

    // Up, answering health, but not ready: the database never answered.
    wait_not_serving(grpc, metrics).await;
    // Several checks later it is still running and still not ready.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(storer.is_running(), "{}", storer.log_text());
    assert_eq!(
        health_status(grpc, "").await,
        Some(ServingStatus::NotServing)
    );

    // The database comes: ready, and a record is stored.
    proxy.up.send_replace(true);
    wait_health(grpc, "", ServingStatus::Serving).await;
    let s = scrape(metrics).await.unwrap();
    assert_eq!(s.get("sipcapture_storer_ready"), 1.0, "{}", s.text);
    let mut delivery = Delivery::open(grpc, "it-collector", "it-stream")
        .await
        .unwrap();
    let time = micros(2026, 12, 6, 3, 0, 0);
    let ack = delivery
        .send(
            delivery.last_committed + 1,
            vec![sip_record(
                time,
                "INVITE",
                "INVITE",
                "startdown-1@it",
                "alice",
            )],
        )
        .await
        .unwrap();
    assert_eq!(ack.sequence, delivery.last_committed + 1);
    let conn = db.connect().await.unwrap();
    let rows = count(
        &conn,
        "SELECT COUNT(*) AS n FROM sip_capture_call_20261206 WHERE callid = 'startdown-1@it'",
    )
    .await
    .unwrap();
    assert_eq!(rows, 1);
    let log = storer.log_text();
    assert!(log.contains("database unreachable at start-up"), "{log}");
    assert!(log.contains("database reachable again"), "{log}");
    storer.terminate(Duration::from_secs(10)).unwrap();
    drop(conn);

    // A URL that does not parse is a config error: the storer stops at once.
    let bad = sandbox
        .spawn(
            "badurl-storer",
            "sipcapture-storer",
            &[
                "--grpc-listen".into(),
                SocketAddr::from(([127, 0, 0, 1], free_port().unwrap())).to_string(),
                "--db-url".into(),
                "postgres://user@127.0.0.1:notaport/db".into(),
            ],
        )
        .unwrap();
    let mut bad = bad;
    wait_until("the bad-URL storer exits", Duration::from_secs(20), || {
        let running = bad.is_running();
        async move { Ok(!running) }
    })
    .await
    .unwrap();
    assert!(
        bad.log_text().contains("db_url") || bad.log_text().contains("notaport"),
        "{}",
        bad.log_text()
    );
    db.cleanup().await.unwrap();
}
