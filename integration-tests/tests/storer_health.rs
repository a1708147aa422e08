//! Readiness follows the database: a storer on PostgreSQL reached through a TCP proxy the test
//! controls. Cutting the proxy makes its gRPC health NOT_SERVING (overall entry and
//! StorerService; StatusService keeps answering) and its `ready` / `db_reachable` gauges 0;
//! restoring it makes it SERVING again. Skipped without `TEST_PG_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use sipcapture_integration_tests::prometheus::scrape;
use sipcapture_integration_tests::proxy::{host_port, start_proxy};
use sipcapture_integration_tests::storer::{Engine, TestDb};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storer_health_follows_its_database() {
    let sandbox = Sandbox::new().unwrap();
    let Some(db) = TestDb::create(Engine::Postgres, &sandbox, "health")
        .await
        .unwrap()
    else {
        return;
    };
    let real = host_port(&db.url);
    let proxy = start_proxy(real).await;
    let proxied = db
        .url
        .replacen(&real.to_string(), &proxy.addr.to_string(), 1);
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
