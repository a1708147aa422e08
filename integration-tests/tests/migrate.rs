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
    Sandbox, Up, bin_path, count_rows, free_port, now_us, open_db, rows_as_text, wait_for_rows,
};

const WAIT: Duration = Duration::from_secs(15);

/// `sipcapture migrate FILE` → (stdout, stderr); it must succeed.
fn migrate_file(source: &Path) -> (String, String) {
    let out = Command::new(bin_path("sipcapture").unwrap())
        .arg("migrate")
        .arg(source)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

/// `sipcapture migrate testdata/migrate/NAME` → the TOML text.
fn migrate(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/migrate");
    migrate_file(&dir.join(name)).0
}

/// Starts `sipcapture up` with the migrated `text` and the SQLite file `db` of the sandbox as
/// the default database; returns it and that database's URL.
async fn up_with(sandbox: &Sandbox, text: &str, db: &str) -> (Up, String) {
    let config = sandbox.path().join("migrated.toml");
    std::fs::write(&config, text).unwrap();
    let db_url = format!("sqlite://{}", sandbox.path().join(db).display());
    let up = sandbox
        .up(&["--config", config.to_str().unwrap(), "--db-url", &db_url])
        .await
        .unwrap();
    (up, db_url)
}

/// HEP3 packets from 192.0.2.10:5060 to 192.0.2.20:5080 at `t`, a microsecond apart.
fn packets_at(t: u32, messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let a: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let b: SocketAddr = "192.0.2.20:5080".parse().unwrap();
    messages
        .iter()
        .enumerate()
        .map(|(i, sip)| hep3_sip(a, b, t, u32::try_from(i).unwrap(), 2001, sip))
        .collect()
}

/// Sends `messages` at `t` and waits until the HOMER 5 call, registration and rest tables of
/// `day` hold exactly `counts` rows.
async fn send_and_count(
    up: &Up,
    db_url: &str,
    t: u32,
    messages: &[Vec<u8>],
    day: &str,
    counts: [u64; 3],
) -> sea_orm::DatabaseConnection {
    send_udp(up.hep, &packets_at(t, messages)).unwrap();
    let db = open_db(db_url).await.unwrap();
    for (family, n) in ["call", "registration", "rest"].iter().zip(counts) {
        wait_for_rows(&db, &format!("sip_capture_{family}_{day}"), n, WAIT)
            .await
            .unwrap();
    }
    db
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
    let (up, db_url) = up_with(&sandbox, &text, "sipcapture.db").await;

    let t = Utc
        .with_ymd_and_hms(2026, 3, 5, 12, 0, 0)
        .unwrap()
        .timestamp() as u32;
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
    let db = send_and_count(&up, &db_url, t, &messages, "20260305", [3, 2, 2]).await;
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
    let (up, db_url) = up_with(&sandbox, &text, "homer7.db").await;

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

/// The configuration the Kamailio differential tests run (integration-tests/src/kamailio.rs,
/// checked there against Kamailio 5.6), migrated: its `route[STORE]` (a seven-way `||` on
/// `$rm`, called from request_route and onreply_route) becomes rules that store every request
/// and reply where our default HOMER 5 split does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrated_differential_test_config_reproduces_the_homer5_split() {
    let sandbox = Sandbox::new().unwrap();
    let cfg = sipcapture_integration_tests::kamailio::config(
        Path::new("/usr/lib/x86_64-linux-gnu/kamailio/modules"),
        "127.0.0.1:9060".parse().unwrap(),
        "diff-node",
        "sqlite:///tmp/kamailio.sqlite",
    );
    let source = sandbox.path().join("kamailio.cfg");
    std::fs::write(&source, cfg).unwrap();
    let (text, stderr) = migrate_file(&source);
    assert!(
        stderr.contains(":8: disable_tcp=yes: Kamailio core setting"),
        "{stderr}"
    );
    assert!(text.contains("homer5_split = false"), "{text}");
    let (up, db_url) = up_with(&sandbox, &text, "sipcapture.db").await;

    let t = Utc
        .with_ymd_and_hms(2026, 3, 6, 8, 0, 0)
        .unwrap()
        .timestamp() as u32;
    let messages = [
        request("INVITE", "d-call", 1, "c1", None),
        reply(180, "Ringing", "INVITE", "d-call", 1, "c1", "c2"),
        request("PRACK", "d-call", 2, "c1", Some("c2")),
        request("REGISTER", "d-reg", 1, "r1", None),
        reply(200, "OK", "REGISTER", "d-reg", 1, "r1", "r2"),
        request("OPTIONS", "d-opt", 1, "o1", None),
        reply(200, "OK", "OPTIONS", "d-opt", 1, "o1", "o2"),
        request("SUBSCRIBE", "d-sub", 1, "s1", None),
    ];
    let db = send_and_count(&up, &db_url, t, &messages, "20260306", [3, 2, 3]).await;
    let node = rows_as_text(&db, "sip_capture_rest_20260306", &["node"])
        .await
        .unwrap();
    assert!(node.iter().all(|r| r[0] == "diff-node:2001"), "{node:?}");
    let mut up = up;
    up.process.terminate(Duration::from_secs(10)).unwrap();
}
