//! `sipcapture import FILE`: every capture of the shared corpus (VLAN, QinQ, IPIP, IPv6,
//! fragmented v4/v6, SIP over TCP split across segments and with retransmissions, ERSPAN,
//! SCTP, WebSocket, HEP v1/v2/v3 over UDP and TCP) imported from file into SQLite yields
//! exactly the SIP message count of `/work/shared/corpus/README.md`, each message one row, with
//! the packet's capture time, transport and addresses.
//!
//! The heplify captures are AGPL: they are read from `/work/shared/corpus` and skipped with a
//! message when that folder is absent; the PcapPlusPlus and generated ones are copied under
//! `testdata/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use sipcapture_integration_tests::{Sandbox, count_rows, open_db};

const SHARED: &str = "/work/shared/corpus";

/// (file, SIP messages per the corpus README), from `testdata/corpus/counts.txt`.
fn corpus() -> impl Iterator<Item = (&'static str, u64)> {
    include_str!("../testdata/corpus/counts.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, n)| (name, n.parse().unwrap()))
}

/// Where a capture is: the shared corpus when present, else the project's copy (not for the
/// AGPL heplify files).
fn locate(name: &str) -> Option<PathBuf> {
    let shared = Path::new(SHARED).join(name);
    if shared.exists() {
        return Some(shared);
    }
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    [testdata.join("corpus").join(name), testdata.join(name)]
        .into_iter()
        .find(|p| p.exists())
}

/// Runs `sipcapture import` to completion; returns its stdout.
fn import(sandbox: &Sandbox, file: &Path, db: &str, extra: &[&str]) -> String {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let mut args = vec![
        "import".to_owned(),
        file.display().to_string(),
        "--db".to_owned(),
        db.to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let mut process = sandbox.spawn(&name, "sipcapture", &args).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while process.is_running() {
        assert!(Instant::now() < deadline, "{name}: import did not finish");
        std::thread::sleep(Duration::from_millis(25));
    }
    let log = process.log_text();
    assert!(log.contains(": imported"), "{name}: no summary\n{log}");
    log
}

/// The `sip_capture_*` tables of a database.
async fn sip_tables(db: &DatabaseConnection) -> Vec<String> {
    let backend = db.get_database_backend();
    let sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'sip_capture_%' ORDER BY name";
    db.query_all_raw(Statement::from_string(backend, sql))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "name").unwrap())
        .collect()
}

/// Rows of every sip_capture table matching `filter`, as text columns.
async fn select(db: &DatabaseConnection, columns: &str, filter: &str) -> Vec<Vec<String>> {
    let backend = db.get_database_backend();
    let mut out = Vec::new();
    for table in sip_tables(db).await {
        let sql = format!("SELECT {columns} FROM {table} WHERE {filter} ORDER BY micro_ts, id");
        for row in db
            .query_all_raw(Statement::from_string(backend, sql))
            .await
            .unwrap()
        {
            let n = columns.split(',').count();
            out.push(
                (0..n)
                    .map(|i| {
                        row.try_get_by_index::<Option<String>>(i)
                            .map(|v| v.unwrap_or_default())
                            .or_else(|_| row.try_get_by_index::<i64>(i).map(|v| v.to_string()))
                            .unwrap()
                    })
                    .collect(),
            );
        }
    }
    out
}

async fn total_rows(db: &DatabaseConnection) -> u64 {
    let mut n = 0;
    for table in sip_tables(db).await {
        n += count_rows(db, &table).await.unwrap();
    }
    n
}

/// Rows that are an exact copy of another one (same message, time and addresses).
async fn duplicate_rows(db: &DatabaseConnection) -> u64 {
    let backend = db.get_database_backend();
    let mut n = 0;
    for table in sip_tables(db).await {
        let sql = format!(
            "SELECT COUNT(*) - COUNT(DISTINCT msg || '|' || micro_ts || '|' || source_ip || '|' || \
             source_port || '|' || destination_port) AS d FROM {table}"
        );
        let row = db
            .query_one_raw(Statement::from_string(backend, sql))
            .await
            .unwrap()
            .unwrap();
        n += u64::try_from(row.try_get::<i64>("", "d").unwrap()).unwrap();
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_capture_yields_its_sip_message_count() {
    let sandbox = Sandbox::new().unwrap();
    let mut skipped = Vec::new();
    for (name, want) in corpus() {
        let Some(file) = locate(name) else {
            skipped.push(name);
            continue;
        };
        let db_path = sandbox.path().join(format!("{name}.db"));
        let db_url = format!("sqlite://{}", db_path.display());
        // pcpp_sip_reqs.pcap's BYE is cut inside its header block ("Content-Lengt" without a
        // colon): Kamailio keeps such a message only with capture_bad_msgs=1.
        let extra: &[&str] = if name == "pcpp_sip_reqs.pcap" {
            &["--set", "capture_bad_msgs=1", "--quiet"]
        } else {
            &["--quiet"]
        };
        let summary = import(&sandbox, &file, &db_url, extra);
        let db = open_db(&db_url).await.unwrap();
        let got = total_rows(&db).await;
        assert_eq!(got, want, "{name}: rows\n{summary}");
        assert_eq!(duplicate_rows(&db).await, 0, "{name}: duplicated rows");
        // The summary counts the same messages (SIP + HEP-carried SIP).
        let sip = summary_value(&summary, "sip messages:");
        let hep = summary_value(&summary, "hep packets:");
        assert_eq!(sip + hep, want, "{name}: summary\n{summary}");
        db.close().await.unwrap();
    }
    // The import keeps nothing in its working directory (no spool left behind).
    assert!(
        !sandbox.path().join("sipcapture-spool").exists(),
        "an import left a spool directory"
    );
    if !skipped.is_empty() {
        eprintln!(
            "skipped (not in {SHARED}; the heplify captures are AGPL and not copied into the \
             project): {skipped:?}"
        );
    }
}

fn summary_value(summary: &str, key: &str) -> u64 {
    summary
        .lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {key:?} in\n{summary}"))
}

/// Imports one file and returns its database.
async fn imported(sandbox: &Sandbox, name: &str) -> Option<DatabaseConnection> {
    let file = locate(name)?;
    let db_url = format!(
        "sqlite://{}",
        sandbox.path().join(format!("{name}.db")).display()
    );
    import(sandbox, &file, &db_url, &["--quiet"]);
    Some(open_db(&db_url).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_follow_the_packets() {
    let sandbox = Sandbox::new().unwrap();
    let cols = "method, callid, proto, family, source_ip, source_port, destination_ip, destination_port, date";

    // VLAN-tagged UDP: addresses of the tagged IPv4 header, transport UDP (1), family 2, and the
    // dated table and `date` from the packet time (2026-11-26 for the generated captures).
    let db = imported(&sandbox, "gen_sip_udp_vlan100.pcap")
        .await
        .unwrap();
    let rows = select(&db, cols, "method = 'INVITE'").await;
    assert_eq!(rows.len(), 3);
    let r = &rows[0];
    assert_eq!(
        (&r[2], &r[3], &r[4], &r[5], &r[6], &r[7]),
        (
            &"1".to_owned(),
            &"2".to_owned(),
            &"192.0.2.10".to_owned(),
            &"5090".to_owned(),
            &"192.0.2.20".to_owned(),
            &"5091".to_owned()
        )
    );
    assert!(r[8].starts_with("2026-11-26"), "date {}", r[8]);
    assert!(!r[1].is_empty());
    assert_eq!(sip_tables(&db).await, vec!["sip_capture_call_20261126"]);

    // IPIP: the inner addresses, not the tunnel's.
    let db = imported(&sandbox, "gen_sip_udp_ipip.pcap").await.unwrap();
    let rows = select(&db, cols, "1=1").await;
    assert_eq!(rows.len(), 18);
    assert!(
        rows.iter()
            .all(|r| r[4].starts_with("192.0.2.") && r[6].starts_with("192.0.2."))
    );

    // IPv6 fragments: family 10, v6 addresses, one row per INVITE.
    let db = imported(&sandbox, "gen_sip_udp_ipv6_fragmented.pcap")
        .await
        .unwrap();
    let rows = select(&db, cols, "method = 'INVITE'").await;
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r[3] == "10" && r[4] == "2001:db8::10"));
    let callids: std::collections::HashSet<_> = rows.iter().map(|r| r[1].clone()).collect();
    assert_eq!(callids.len(), 3);

    // SIP over TCP: transport 2; the 18 messages of 3 calls, each call 6 rows.
    let db = imported(&sandbox, "gen_sip_tcp_lo.pcap").await.unwrap();
    let rows = select(&db, cols, "1=1").await;
    assert_eq!(rows.len(), 18);
    assert!(rows.iter().all(|r| r[2] == "2"), "{rows:?}");

    // HEP3 over TCP found in a capture: the HEP addresses (the proxy's), not the HEP transport.
    let db = imported(&sandbox, "gen_hep3_tcp_kamailio_siptrace.pcap")
        .await
        .unwrap();
    let rows = select(&db, "node", "1=1").await;
    assert_eq!(rows.len(), 120);
    assert!(
        rows.iter().all(|r| r[0].ends_with(":2001")),
        "{:?}",
        rows[0]
    );

    // The AGPL captures, when present: WebSocket (proto 5) and SCTP (proto 4).
    if let Some(db) = imported(&sandbox, "heplify_sip_tcp_websocket.pcap").await {
        let ws = select(&db, "proto", "proto = 5").await.len();
        let udp = select(&db, "proto", "proto = 1").await.len();
        assert_eq!((ws, udp), (11, 28));
    } else {
        eprintln!("skipping the WebSocket check: {SHARED} is absent");
    }
    if let Some(db) = imported(&sandbox, "heplify_sip_sctp.pcap").await {
        let rows = select(&db, "proto, method", "1=1").await;
        assert_eq!(rows.len(), 4);
        assert!(rows.iter().all(|r| r[0] == "4"), "{rows:?}");
    } else {
        eprintln!("skipping the SCTP check: {SHARED} is absent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_pcap_flag_imports_through_a_storer() {
    let sandbox = Sandbox::new().unwrap();
    let db_url = format!("sqlite://{}", sandbox.path().join("storer.db").display());
    let storer = sandbox.storer("storer", &db_url, &[]).await.unwrap();
    let file = locate("gen_sip_udp_qinq.pcap").unwrap();
    let args = vec![
        "--pcap".to_owned(),
        file.display().to_string(),
        "--storer".to_owned(),
        storer.url(),
        "--set".to_owned(),
        "spool_dir=".to_owned(),
    ];
    let mut collector = sandbox
        .spawn("collector-pcap", "sipcapture-collector", &args)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while collector.is_running() {
        assert!(Instant::now() < deadline, "collector --pcap did not exit");
        std::thread::sleep(Duration::from_millis(25));
    }
    let log = collector.log_text();
    assert!(log.contains("sip messages: 18"), "{log}");
    // The collector exits only after the storer acknowledged (committed) every record.
    let db = open_db(&db_url).await.unwrap();
    assert_eq!(total_rows(&db).await, 18);
}

/// A pcapng section: one Ethernet interface with `options` (code, value), then one enhanced
/// packet block per `(timestamp in interface units, frame)`.
fn pcapng(options: &[(u16, Vec<u8>)], packets: &[(u64, Vec<u8>)]) -> Vec<u8> {
    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(12 + body.len()).unwrap();
        let mut b = kind.to_le_bytes().to_vec();
        b.extend(len.to_le_bytes());
        b.extend(body);
        b.extend(len.to_le_bytes());
        b
    }
    let mut shb = 0x1A2B_3C4D_u32.to_le_bytes().to_vec();
    shb.extend(1u16.to_le_bytes());
    shb.extend(0u16.to_le_bytes());
    shb.extend((-1i64).to_le_bytes());
    let mut idb = 1u16.to_le_bytes().to_vec();
    idb.extend(0u16.to_le_bytes());
    idb.extend(65535u32.to_le_bytes());
    for (code, value) in options {
        idb.extend(code.to_le_bytes());
        idb.extend(u16::try_from(value.len()).unwrap().to_le_bytes());
        idb.extend(value);
        idb.resize(idb.len().next_multiple_of(4), 0);
    }
    idb.extend([0, 0, 0, 0]);
    let mut file = block(0x0A0D_0D0A, &shb);
    file.extend(block(1, &idb));
    for (ts, frame) in packets {
        let len = u32::try_from(frame.len()).unwrap();
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend(u32::try_from(ts >> 32).unwrap().to_le_bytes());
        epb.extend(u32::try_from(ts & 0xffff_ffff).unwrap().to_le_bytes());
        epb.extend(len.to_le_bytes());
        epb.extend(len.to_le_bytes());
        epb.extend(frame);
        epb.resize(epb.len().next_multiple_of(4), 0);
        file.extend(block(6, &epb));
    }
    file
}

fn options_request(n: u32) -> Vec<u8> {
    format!(
        "OPTIONS sip:probe@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-ts{n}\r\n\
         From: <sip:a@example.com>;tag={n}\r\nTo: <sip:probe@example.com>\r\n\
         Call-ID: pcapng-time-{n}@example.com\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Issue 21 item 9: a pcapng whose interface says seconds (`if_tsresol` = 0) with a timestamp of
/// 2^64 − 1 of them, or adds `if_tsoffset` = i64::MAX seconds, used to panic the import
/// ("overflow when adding duration to instant"). Now the impossible times are refused per
/// packet and the sane packets of the same file are stored with their time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_pcapng_timestamps_do_not_panic_the_import() {
    let sandbox = Sandbox::new().unwrap();
    let frame =
        |n| sipcapture_integration_tests::pcap::udp_frame(5060, &options_request(n)).unwrap();
    // 2026-01-15 08:00:00 UTC in each interface's units.
    let sane_secs: u64 = 1_768_464_000;
    type Options = Vec<(u16, Vec<u8>)>;
    type Packets = Vec<(u64, Vec<u8>)>;
    let cases: [(&str, Options, Packets); 2] = [
        (
            "tsresol0.pcapng",
            vec![(9, vec![0])],
            vec![(u64::MAX, frame(1)), (sane_secs, frame(2))],
        ),
        (
            "tsoffset.pcapng",
            vec![(14, i64::MAX.to_le_bytes().to_vec())],
            vec![(sane_secs * 1_000_000, frame(3))],
        ),
    ];
    for (name, options, packets) in cases {
        let file = sandbox.path().join(name);
        std::fs::write(&file, pcapng(&options, &packets)).unwrap();
        let db_url = format!(
            "sqlite://{}",
            sandbox.path().join(format!("{name}.db")).display()
        );
        let summary = import(&sandbox, &file, &db_url, &[]);
        assert!(!summary.contains("panicked"), "{name}:\n{summary}");
        // The impossible time is a counted drop, by reason.
        assert!(summary.contains("bad_timestamp: 1"), "{name}:\n{summary}");
        let db = open_db(&db_url).await.unwrap();
        let stored = total_rows(&db).await;
        if name == "tsresol0.pcapng" {
            // The sane packet beside the impossible one is stored, at its own time.
            assert_eq!(stored, 1, "{name}:\n{summary}");
            let rows = select(&db, "callid, date", "callid = 'pcapng-time-2@example.com'").await;
            assert_eq!(rows.len(), 1, "{name}: {rows:?}");
            assert!(rows[0][1].starts_with("2026-01-15"), "{name}: {rows:?}");
        } else {
            // Every packet of the interface is impossible: none stored, none crashed.
            assert_eq!(stored, 0, "{name}:\n{summary}");
        }
        db.close().await.unwrap();
    }
}
