//! Real Kamailio 5.6 siptrace captures (HEP v1, v2, v3 over UDP and v3 over one TCP connection,
//! 120 HEP packets each, from `gen-hep-traffic.sh`) replayed into `sipcapture up`: every packet
//! becomes exactly one row, with the addresses, ports, time and node Kamailio would store.
//!
//! The expected values are not computed by our decoder: `testdata/*.expected.csv` were written
//! by tshark 4.0 with the independent Lua dissector `shared/tools/hep.lua`:
//!
//! ```sh
//! tshark -X lua_script:hep.lua -r FILE.pcap -d tcp.port==9065,hep -T fields -E separator=/t \
//!   -E aggregator=';' -e hep.version -e hep.src_ip -e hep.src_port -e hep.dst_ip \
//!   -e hep.dst_port -e hep.ts_sec -e hep.ts_usec -e hep.capture_id
//! ```
//! (one line per HEP packet; several packets in one TCP segment split on `;`).

// A test crate: its helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use sipcapture_integration_tests::pcap::Capture;
use sipcapture_integration_tests::{Sandbox, member_counters, now_us, open_db, rows_as_text};

const PACKETS: usize = 120;
const WAIT: Duration = Duration::from_secs(30);
const COLUMNS: &[&str] = &[
    "source_ip",
    "source_port",
    "destination_ip",
    "destination_port",
    "micro_ts",
    "node",
];

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// One expected row: the tshark/hep.lua view of one HEP packet.
#[derive(Debug)]
struct Expected {
    src_ip: String,
    src_port: String,
    dst_ip: String,
    dst_port: String,
    /// `Some(µs)` when the packet carries a time (v2, v3); v1 rows get the receipt time.
    micro_ts: Option<u64>,
    capture_id: Option<String>,
}

fn expected(name: &str) -> Vec<Expected> {
    let text = std::fs::read_to_string(testdata(name)).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let c: Vec<&str> = line.split(',').collect();
            assert_eq!(c.len(), 8, "bad expected line {line:?}");
            let micro_ts = (!c[5].is_empty())
                .then(|| c[5].parse::<u64>().unwrap() * 1_000_000 + c[6].parse::<u64>().unwrap());
            Expected {
                src_ip: c[1].to_owned(),
                src_port: c[2].to_owned(),
                dst_ip: c[3].to_owned(),
                dst_port: c[4].to_owned(),
                micro_ts,
                capture_id: (!c[7].is_empty()).then(|| c[7].to_owned()),
            }
        })
        .collect()
}

/// Every `sip_capture_*` table (the HOMER 5 split puts a dialog's messages in call/rest tables).
async fn sip_tables(db: &DatabaseConnection) -> Vec<String> {
    let sql = "SELECT name FROM sqlite_master WHERE type = 'table' \
               AND name LIKE 'sip\\_capture\\_%' ESCAPE '\\' ORDER BY name";
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get::<String>("", "name").unwrap())
        .collect()
}

async fn all_rows(db: &DatabaseConnection) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for table in sip_tables(db).await {
        rows.extend(rows_as_text(db, &table, COLUMNS).await.unwrap());
    }
    rows
}

/// Waits until the `sip_capture_*` tables hold exactly `n` rows together.
async fn wait_for_sip_rows(db: &DatabaseConnection, n: usize) -> Vec<Vec<String>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = all_rows(db).await;
        assert!(rows.len() <= n, "{} rows, expected {n}", rows.len());
        if rows.len() == n {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "{} rows after {WAIT:?}, expected {n}",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

enum Send {
    Udp,
    Tcp,
}

/// Replays `pcap` into a fresh `sipcapture up` and checks the rows against `expected_csv`.
async fn replay_and_check(pcap: &str, expected_csv: &str, send: Send) {
    let capture = Capture::read(&testdata(pcap)).unwrap();
    let expected = expected(expected_csv);
    assert_eq!(expected.len(), PACKETS);

    let sandbox = Sandbox::new().unwrap();
    let up = sandbox.up(&[]).await.unwrap();
    let sent_from = now_us();
    match send {
        Send::Udp => {
            let datagrams = capture.udp_payloads();
            assert_eq!(datagrams.len(), PACKETS);
            let payloads: Vec<Vec<u8>> = datagrams.into_iter().map(|t| t.payload).collect();
            sipcapture_integration_tests::hep::send_udp(up.hep, &payloads).unwrap();
        }
        Send::Tcp => {
            let stream = capture.tcp_client_stream().unwrap();
            let mut conn = std::net::TcpStream::connect(up.hep).unwrap();
            conn.write_all(&stream).unwrap();
            conn.shutdown(std::net::Shutdown::Write).unwrap();
        }
    }

    let db = open_db(&up.db_url).await.unwrap();
    let mut rows = wait_for_sip_rows(&db, PACKETS).await;
    let sent_to = now_us();

    // Match every expected packet to one distinct row.
    for e in &expected {
        let node = match (&e.micro_ts, &e.capture_id) {
            // Kamailio: `capture_node:captid` only when the packet carried a time.
            (Some(_), Some(id)) => format!("homer01:{id}"),
            _ => "homer01".to_owned(),
        };
        let position = rows.iter().position(|r| {
            let ts: u64 = r[4].parse().unwrap();
            let time_ok = match e.micro_ts {
                Some(us) => ts == us,
                // HEP v1 has no time: the receipt time is stored.
                None => (sent_from..=sent_to).contains(&ts),
            };
            r[0] == e.src_ip
                && r[1] == e.src_port
                && r[2] == e.dst_ip
                && r[3] == e.dst_port
                && time_ok
                && r[5] == node
        });
        let Some(i) = position else {
            panic!("no row for {e:?} (node {node}); rows left: {rows:?}");
        };
        rows.swap_remove(i);
    }
    assert!(rows.is_empty());

    let counters = member_counters(up.grpc).await.unwrap();
    let count = |k: &str| counters.get(k).copied().unwrap_or(0);
    assert_eq!(count("hep_received"), PACKETS as u64, "{counters:?}");
    assert_eq!(count("hep_decoded"), PACKETS as u64, "{counters:?}");
    assert_eq!(count("hep_incomplete"), 0, "{counters:?}");
    let drops = sipcapture_integration_tests::dropped_total(&counters);
    assert_eq!(drops, 0, "{counters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_hep1_over_udp_every_packet_is_a_row() {
    replay_and_check(
        "gen_hep1_kamailio_siptrace.pcap",
        "gen_hep1_kamailio_siptrace.expected.csv",
        Send::Udp,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_hep2_over_udp_every_packet_is_a_row() {
    replay_and_check(
        "gen_hep2_kamailio_siptrace.pcap",
        "gen_hep2_kamailio_siptrace.expected.csv",
        Send::Udp,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_hep3_over_udp_every_packet_is_a_row() {
    replay_and_check(
        "gen_hep3_kamailio_siptrace.pcap",
        "gen_hep3_kamailio_siptrace.expected.csv",
        Send::Udp,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_hep3_over_one_tcp_connection_every_frame_is_a_row() {
    replay_and_check(
        "gen_hep3_tcp_kamailio_siptrace.pcap",
        "gen_hep3_tcp_kamailio_siptrace.expected.csv",
        Send::Tcp,
    )
    .await;
}
