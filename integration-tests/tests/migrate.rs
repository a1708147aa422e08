//! A migrated HOMER 5 kamailio.cfg run for real: `sipcapture migrate` translates the routing
//! script into `[[storer.route]]` rules, `sipcapture up` runs with the result on SQLite, and
//! HEP packets land in the tables the script chose (scanner INVITEs and OPTIONS dropped,
//! replies routed by their CSeq method or status, as Kamailio's onreply_route did).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use sipcapture_integration_tests::hep::{hep3_sip, reply, request, send_udp};
use sipcapture_integration_tests::{Sandbox, bin_path, open_db, rows_as_text, wait_for_rows};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrated_kamailio_routing_decides_the_tables() {
    let sandbox = Sandbox::new().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/migrate/kamailio.cfg");
    let out = Command::new(bin_path("sipcapture").unwrap())
        .arg("migrate")
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The archive capture mode points at the production MySQL: the run keeps the mode but on
    // a local SQLite file, and the default database comes from --db-url.
    let text = String::from_utf8(out.stdout).unwrap().replace(
        "mysql://homer_user@10.20.0.5/homer_archive",
        "sqlite://archive.db",
    );
    assert!(text.contains("sqlite://archive.db"));
    let config = sandbox.path().join("migrated.toml");
    std::fs::write(&config, &text).unwrap();
    let db_url = format!(
        "sqlite://{}",
        sandbox.path().join("sipcapture.db").display()
    );
    let up = sandbox
        .up(&["--config", config.to_str().unwrap(), "--db-url", &db_url])
        .await
        .unwrap();

    let t = Utc
        .with_ymd_and_hms(2026, 3, 5, 12, 0, 0)
        .unwrap()
        .timestamp() as u32;
    let a: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let b: SocketAddr = "192.0.2.20:5080".parse().unwrap();
    let scanner = String::from_utf8(request("INVITE", "scan-1", 1, "s1", None))
        .unwrap()
        .replace("User-Agent: sipcapture-it", "User-Agent: friendly-scanner");
    let messages: Vec<Vec<u8>> = vec![
        // Dropped by the script: a scanner's INVITE and OPTIONS (`exit`).
        scanner.into_bytes(),
        request("OPTIONS", "opt-1", 1, "o1", None),
        // Calls: INVITE, its 200 (onreply_route: CSeq INVITE), BYE.
        request("INVITE", "call-1", 1, "c1", None),
        reply(200, "OK", "INVITE", "call-1", 1, "c1", "c2"),
        request("BYE", "call-1", 2, "c1", Some("c2")),
        // Registrations: REGISTER and its 401 (onreply_route: `$rs == "401"`).
        request("REGISTER", "reg-1", 1, "r1", None),
        reply(401, "Unauthorized", "REGISTER", "reg-1", 1, "r1", "r2"),
        // The rest: MESSAGE and its 202.
        request("MESSAGE", "msg-1", 1, "m1", None),
        reply(202, "Accepted", "MESSAGE", "msg-1", 1, "m1", "m2"),
    ];
    let packets: Vec<Vec<u8>> = messages
        .iter()
        .enumerate()
        .map(|(i, sip)| hep3_sip(a, b, t, u32::try_from(i).unwrap() * 1000, 2001, sip))
        .collect();
    send_udp(up.hep, &packets).unwrap();

    let db = open_db(&db_url).await.unwrap();
    for (table, n) in [
        ("sip_capture_call_20260305", 3),
        ("sip_capture_registration_20260305", 2),
        ("sip_capture_rest_20260305", 2),
    ] {
        wait_for_rows(&db, table, n, WAIT).await.unwrap();
    }
    // The dropped ones were sent first, so they were decided before the rest arrived; give
    // a late batch a moment, then check nothing else was stored anywhere.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut stored = Vec::new();
    for table in [
        "sip_capture_call_20260305",
        "sip_capture_registration_20260305",
        "sip_capture_rest_20260305",
    ] {
        for row in rows_as_text(&db, table, &["callid", "method", "node"])
            .await
            .unwrap()
        {
            assert_eq!(
                row[2], "homer-homer_user:2001",
                "capture_node from the modparam"
            );
            stored.push(format!("{table}:{}:{}", row[0], row[1]));
        }
    }
    stored.sort();
    assert_eq!(
        stored,
        [
            "sip_capture_call_20260305:call-1:200",
            "sip_capture_call_20260305:call-1:BYE",
            "sip_capture_call_20260305:call-1:INVITE",
            "sip_capture_registration_20260305:reg-1:401",
            "sip_capture_registration_20260305:reg-1:REGISTER",
            "sip_capture_rest_20260305:msg-1:202",
            "sip_capture_rest_20260305:msg-1:MESSAGE",
        ]
    );
    let mut up = up;
    up.process.terminate(Duration::from_secs(10)).unwrap();
}
