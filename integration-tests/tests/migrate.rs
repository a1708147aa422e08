//! Migrated configs run for real on SQLite. A HOMER 5 kamailio.cfg: `sipcapture migrate`
//! translates the routing script into `[[storer.route]]` rules and HEP packets land in the
//! tables the script chose (scanner INVITEs and OPTIONS dropped, replies routed by their CSeq
//! method or status, as Kamailio's onreply_route did). A HOMER 7 heplify-server.toml:
//! DiscardMethod drops, Dedup drops the second capture point's copy, CustomHeader fills
//! data_header.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use sipcapture_integration_tests::hep::{hep3_sip, reply, request, send_udp};
use sipcapture_integration_tests::{
    Sandbox, bin_path, count_rows, free_port, now_us, open_db, rows_as_text, wait_for_rows,
};

const WAIT: Duration = Duration::from_secs(15);

/// `sipcapture migrate testdata/migrate/NAME` → the TOML text.
fn migrate(name: &str) -> String {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/migrate")
        .join(name);
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
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrated_kamailio_routing_decides_the_tables() {
    let sandbox = Sandbox::new().unwrap();
    // The archive capture mode points at the production MySQL: the run keeps the mode but on
    // a local SQLite file, and the default database comes from --db-url.
    let text = migrate("kamailio.cfg").replace(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrated_heplify_server_config_discards_dedups_and_keeps_custom_headers() {
    let sandbox = Sandbox::new().unwrap();
    // The production database and Prometheus port are replaced for the run; everything else
    // is as migrated (HOMER 7 schema, DiscardMethod, Dedup, CustomHeader, AlegIDs).
    let metrics = format!("127.0.0.1:{}", free_port().unwrap());
    let text = migrate("heplify-server.toml").replace("0.0.0.0:9096", &metrics);
    assert!(text.contains("schema = \"homer7\""));
    let config = sandbox.path().join("migrated.toml");
    std::fs::write(&config, &text).unwrap();
    let db_url = format!("sqlite://{}", sandbox.path().join("homer7.db").display());
    let up = sandbox
        .up(&["--config", config.to_str().unwrap(), "--db-url", &db_url])
        .await
        .unwrap();

    let t = u32::try_from(now_us() / 1_000_000).unwrap() - 60;
    let a: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let b: SocketAddr = "192.0.2.20:5080".parse().unwrap();
    let invite = String::from_utf8(request("INVITE", "h7-call", 1, "c1", None))
        .unwrap()
        .replace(
            "User-Agent: sipcapture-it\r\n",
            "User-Agent: sipcapture-it\r\nX-CustomerIP: 198.51.100.7\r\nX-Billing: gold\r\n",
        )
        .into_bytes();
    let hep = |usec: u32, capture_id: u32, sip: &[u8]| hep3_sip(a, b, t, usec, capture_id, sip);
    // DiscardMethod = ["OPTIONS","NOTIFY"]: by CSeq method, so the reply goes too.
    let first = vec![
        hep(0, 2001, &request("OPTIONS", "h7-opt", 1, "o1", None)),
        hep(
            1,
            2001,
            &reply(200, "OK", "OPTIONS", "h7-opt", 1, "o1", "o2"),
        ),
        hep(2, 2001, &request("NOTIFY", "h7-ntf", 1, "n1", None)),
        hep(3, 2001, &invite),
    ];
    send_udp(up.hep, &first).unwrap();
    let db = open_db(&db_url).await.unwrap();
    wait_for_rows(&db, "hep_proto_1_call", 1, WAIT)
        .await
        .unwrap();
    // Dedup: the same INVITE seen by a second capture point (in a later batch, within the
    // window) is not stored again; the REGISTER after it shows the copy was decided.
    let later = vec![
        hep(3, 2002, &invite),
        hep(4, 2001, &request("REGISTER", "h7-reg", 1, "r1", None)),
    ];
    send_udp(up.hep, &later).unwrap();
    wait_for_rows(&db, "hep_proto_1_registration", 1, WAIT)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        count_rows(&db, "hep_proto_1_call").await.unwrap(),
        1,
        "dedup"
    );
    assert_eq!(
        count_rows(&db, "hep_proto_1_default").await.unwrap(),
        0,
        "OPTIONS, its reply and NOTIFY are discarded"
    );
    let rows = rows_as_text(&db, "hep_proto_1_call", &["sid", "data_header"])
        .await
        .unwrap();
    assert_eq!(rows[0][0], "h7-call");
    let header: serde_json::Value = serde_json::from_str(&rows[0][1]).unwrap();
    assert_eq!(header["X-CustomerIP"], "198.51.100.7", "{header}");
    assert_eq!(header["X-Billing"], "gold", "{header}");
    let mut up = up;
    up.process.terminate(Duration::from_secs(10)).unwrap();
}
