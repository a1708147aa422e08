//! HEP forwarding without scripting (issue 11): `[[forward]]` rules send matching packets to
//! other HEP collectors. Raw HEP arrives byte-identical over UDP (HEP v1/v2 towards a TCP
//! destination is re-encoded as HEP3), checked byte for byte and decoded by the reference
//! Wireshark dissector (`shared/tools/hep.lua` in tshark); Kamailio 5.6 `sipcapture` receiving
//! our forwarded HEP stores the same rows as our own storer does from the same packets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sipcapture_collector::decode::hep::encode_record;
use sipcapture_integration_tests::hep::{hep2_sip, hep3_sip, reply, request, send_udp};
use sipcapture_integration_tests::kamailio::{self, Kamailio};
use sipcapture_integration_tests::{Sandbox, member_counters, open_db, wait_for_rows, wait_until};
use sipcapture_proto::v1::{CaptureRecord, RecordKind};

/// 2026-01-15 12:00:00 UTC.
const TS: u32 = 1_768_478_400;
const DAY: &str = "20260115";
const HEP_LUA: &str = "/work/shared/tools/hep.lua";

fn hep2(src: SocketAddr, dst: SocketAddr, sip: &[u8]) -> Vec<u8> {
    hep2_sip(src, dst, TS, 500, 2002, sip).unwrap()
}

fn config_file(dir: &Path, name: &str, text: &str) -> Vec<String> {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    vec!["--config".to_owned(), path.display().to_string()]
}

/// A classic pcap (Ethernet/IPv4/UDP to port 9060) holding `payloads`, for tshark.
fn write_pcap(path: &Path, payloads: &[Vec<u8>]) {
    let frames: Vec<(u32, Vec<u8>)> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| (1_700_000_000 + u32::try_from(i).unwrap(), p.clone()))
        .collect();
    sipcapture_integration_tests::pcap::write_udp(path, 9060, &frames).unwrap();
}

const TSHARK_FIELDS: [&str; 11] = [
    "hep.family",
    "hep.ip_proto",
    "hep.src_ip",
    "hep.dst_ip",
    "hep.src_port",
    "hep.dst_port",
    "hep.ts_sec",
    "hep.ts_usec",
    "hep.capture_id",
    "hep.correlation_id",
    "hep.payload",
];

/// tshark's decoding of every packet of `pcap` with the reference HEP dissector: per packet,
/// field → value (plus `hep.version`).
fn tshark_fields(pcap: &Path) -> Option<Vec<BTreeMap<String, String>>> {
    if Command::new("tshark").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "tshark is required in CI (.ci/run installs it)"
        );
        eprintln!("skipping the tshark checks: tshark is not installed (apt-get install tshark)");
        return None;
    }
    let mut args = vec![
        "-X".to_owned(),
        format!("lua_script:{HEP_LUA}"),
        "-r".to_owned(),
        pcap.display().to_string(),
        "-T".to_owned(),
        "fields".to_owned(),
        "-E".to_owned(),
        "separator=|".to_owned(),
        "-e".to_owned(),
        "hep.version".to_owned(),
    ];
    for f in TSHARK_FIELDS {
        args.push("-e".to_owned());
        args.push(f.to_owned());
    }
    let out = Command::new("tshark").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Some(
        text.lines()
            .map(|line| {
                let values: Vec<&str> = line.split('|').collect();
                std::iter::once("hep.version")
                    .chain(TSHARK_FIELDS)
                    .zip(values)
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .collect(),
    )
}

fn recv_udp(socket: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 65_535];
    (0..n)
        .map(|_| {
            let len = socket.recv(&mut buf).unwrap();
            buf[..len].to_vec()
        })
        .collect()
}

/// HEP3 frames from a TCP stream.
fn recv_hep3_frames(listener: &TcpListener, n: usize) -> Vec<Vec<u8>> {
    let (mut stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (0..n)
        .map(|_| {
            let mut head = [0u8; 6];
            stream.read_exact(&mut head).unwrap();
            assert_eq!(&head[..4], b"HEP3");
            let len = usize::from(u16::from_be_bytes([head[4], head[5]]));
            let mut frame = head.to_vec();
            frame.resize(len, 0);
            stream.read_exact(&mut frame[6..]).unwrap();
            frame
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_rules_relay_hep_byte_identical_and_tshark_decodes_it_the_same() {
    let sandbox = Sandbox::new().unwrap();
    let url = format!("sqlite://{}", sandbox.path().join("a.db").display());
    let storer = sandbox.storer("storer", &url, &[]).await.unwrap();
    let udp_peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp_peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = config_file(
        sandbox.path(),
        "collector.toml",
        &format!(
            r#"
[[forward]]
match = {{ src_ip = "10.1.0.0/16" }}
to = ["sip:{};transport=udp", "sip:{};transport=tcp"]
store = false
"#,
            udp_peer.local_addr().unwrap(),
            tcp_peer.local_addr().unwrap()
        ),
    );
    let collector = sandbox
        .collector("collector", &[storer.url()], &config)
        .await
        .unwrap();
    let dst: SocketAddr = "192.0.2.20:5060".parse().unwrap();
    let v3 = hep3_sip(
        "10.1.2.3:5060".parse().unwrap(),
        dst,
        TS,
        250_000,
        2001,
        &request("INVITE", "fwd-v3", 1, "ft", None),
    );
    let v2 = hep2(
        "10.1.2.4:5062".parse().unwrap(),
        dst,
        &request("REGISTER", "fwd-v2", 1, "ft", None),
    );
    let local = hep3_sip(
        "192.0.2.10:5060".parse().unwrap(),
        dst,
        TS,
        1,
        2001,
        &request("INVITE", "local-1", 1, "ft", None),
    );
    send_udp(collector.hep.unwrap(), &[v3.clone(), v2.clone(), local]).unwrap();

    let over_udp = recv_udp(&udp_peer, 2);
    assert_eq!(
        over_udp,
        [v3.clone(), v2.clone()],
        "byte-identical over UDP"
    );
    let over_tcp = recv_hep3_frames(&tcp_peer, 2);
    assert_eq!(over_tcp[0], v3, "HEP3 goes unchanged over TCP");
    assert_ne!(over_tcp[1], v2, "HEP2 is re-encoded as HEP3 for a stream");

    // Only the packet no rule matched is stored.
    let db = open_db(&url).await.unwrap();
    wait_for_rows(
        &db,
        &format!("sip_capture_call_{DAY}"),
        1,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let counters = member_counters(collector.grpc).await.unwrap();
    assert_eq!(
        counters.get("dropped.forwarded_only"),
        Some(&2),
        "{counters:?}"
    );
    assert_eq!(counters.get("forwarded"), Some(&4), "{counters:?}");

    // The reference dissector reads every forwarded packet as it reads the original.
    let sent = sandbox.path().join("sent.pcap");
    let got = sandbox.path().join("forwarded.pcap");
    write_pcap(&sent, &[v3.clone(), v2.clone(), v3, v2]);
    write_pcap(
        &got,
        &[
            over_udp[0].clone(),
            over_udp[1].clone(),
            over_tcp[0].clone(),
            over_tcp[1].clone(),
        ],
    );
    let (Some(sent), Some(got)) = (tshark_fields(&sent), tshark_fields(&got)) else {
        return;
    };
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[0]["hep.version"], "3");
    assert_eq!(sent[1]["hep.version"], "2");
    assert_eq!(sent[0]["hep.src_ip"], "10.1.2.3");
    assert_eq!(sent[1]["hep.capture_id"], "2002");
    assert_eq!(&got[..3], &sent[..3]);
    // The re-encoded HEP2 decodes to the same fields, as version 3.
    let mut reencoded = got[3].clone();
    assert_eq!(
        reencoded
            .insert("hep.version".to_owned(), "2".to_owned())
            .as_deref(),
        Some("3")
    );
    assert_eq!(reencoded, sent[3]);
}

#[test]
fn raw_capture_records_encode_as_hep3_that_tshark_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let sip = request("OPTIONS", "raw-1", 1, "ft", None);
    let record = CaptureRecord {
        capture_time_us: u64::from(TS) * 1_000_000 + 42,
        family: 2,
        ip_protocol: 17,
        src_ip: vec![198, 51, 100, 7],
        src_port: 5060,
        dst_ip: vec![198, 51, 100, 8],
        dst_port: 5080,
        kind: RecordKind::Sip as i32,
        payload: sip.clone(),
        ..Default::default()
    };
    let mut hep = Vec::new();
    encode_record(&record, 4242, &mut hep).unwrap();
    let pcap = dir.path().join("agent.pcap");
    write_pcap(&pcap, &[hep]);
    let Some(fields) = tshark_fields(&pcap) else {
        return;
    };
    let hex: String = sip.iter().map(|b| format!("{b:02x}")).collect();
    let expected: BTreeMap<String, String> = [
        ("hep.version", "3"),
        ("hep.family", "2"),
        ("hep.ip_proto", "17"),
        ("hep.src_ip", "198.51.100.7"),
        ("hep.dst_ip", "198.51.100.8"),
        ("hep.src_port", "5060"),
        ("hep.dst_port", "5080"),
        ("hep.ts_sec", &TS.to_string()),
        ("hep.ts_usec", "42"),
        ("hep.capture_id", "4242"),
        ("hep.correlation_id", ""),
        ("hep.payload", &hex),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(fields, [expected]);
}

/// `encode_record` of a raw-captured SIP message (the collector as a HEP agent).
fn agent_hep(src: SocketAddr, dst: SocketAddr, sip: &[u8]) -> Vec<u8> {
    let octets = |a: SocketAddr| match a.ip() {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let record = CaptureRecord {
        capture_time_us: u64::from(TS) * 1_000_000 + 9,
        family: 2,
        ip_protocol: 17,
        src_ip: octets(src),
        src_port: u32::from(src.port()),
        dst_ip: octets(dst),
        dst_port: u32::from(dst.port()),
        kind: RecordKind::Sip as i32,
        payload: sip.to_vec(),
        ..Default::default()
    };
    let mut out = Vec::new();
    encode_record(&record, 2003, &mut out).unwrap();
    out
}

fn kamailio_tables() -> Vec<String> {
    ["call", "registration", "rest"]
        .iter()
        .map(|t| format!("sip_capture_{t}_{DAY}"))
        .collect()
}

fn rows_dir(dir: &Path) -> PathBuf {
    dir.join("kamailio")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_stores_our_forwarded_hep_as_we_store_it() {
    if let Some(why) = kamailio::unavailable() {
        assert!(
            std::env::var("CI").is_err(),
            "Kamailio is required in CI: {why}"
        );
        eprintln!("skipping: {why}");
        return;
    }
    const NODE: &str = "homer01";
    let sandbox = Sandbox::new().unwrap();
    let mut kam = Kamailio::start(&rows_dir(sandbox.path()), &kamailio_tables(), NODE)
        .await
        .unwrap();
    let url = format!("sqlite://{}", sandbox.path().join("ours.db").display());
    let storer = sandbox.storer("storer", &url, &[]).await.unwrap();
    // Everything is stored here and forwarded (raw, over UDP) to Kamailio.
    let config = config_file(
        sandbox.path(),
        "collector.toml",
        &format!(
            "capture_node = \"{NODE}\"\n[[forward]]\nto = [\"sip:{}\"]\n",
            kam.hep
        ),
    );
    let collector = sandbox
        .collector("collector", &[storer.url()], &config)
        .await
        .unwrap();
    let a: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let b: SocketAddr = "192.0.2.20:5070".parse().unwrap();
    let packets = vec![
        hep3_sip(
            a,
            b,
            TS,
            1,
            2001,
            &request("INVITE", "kam-1", 1, "ft", None),
        ),
        hep3_sip(
            b,
            a,
            TS,
            2,
            2001,
            &reply(200, "OK", "INVITE", "kam-1", 1, "ft", "tt"),
        ),
        hep3_sip(
            a,
            b,
            TS,
            3,
            2001,
            &request("REGISTER", "kam-2", 1, "ft", None),
        ),
        hep3_sip(
            a,
            b,
            TS,
            4,
            2001,
            &request("OPTIONS", "kam-3", 1, "ft", None),
        ),
        hep2(a, b, &request("BYE", "kam-1", 2, "ft", Some("tt"))),
        // What the collector sends as a HEP agent for a raw-captured message.
        agent_hep(a, b, &request("MESSAGE", "kam-4", 1, "ft", None)),
    ];
    send_udp(collector.hep.unwrap(), &packets).unwrap();

    let ours = open_db(&url).await.unwrap();
    let theirs = open_db(&kam.db_url()).await.unwrap();
    let t = Duration::from_secs(30);
    let expected = [3u64, 1, 2];
    for (table, n) in kamailio_tables().iter().zip(expected) {
        wait_for_rows(&ours, table, n, t).await.unwrap();
        wait_until(&format!("kamailio rows in {table}"), t, || async {
            Ok(kamailio::normalised_rows(&theirs, table).await?.len() as u64 >= n)
        })
        .await
        .unwrap();
    }
    for table in kamailio_tables() {
        let mut mine = kamailio::normalised_rows(&ours, &table).await.unwrap();
        let mut kams = kamailio::normalised_rows(&theirs, &table).await.unwrap();
        mine.sort();
        kams.sort();
        // As in kamailio_diff.rs: Kamailio's db_sqlite binds a value without a pointer (`auth`
        // always) as NULL, which counts as ''; a NULL on our side would be a mismatch.
        assert!(
            mine.iter().flatten().all(|(_, null)| !null),
            "{table}: NULL in our rows"
        );
        for row in &mut kams {
            for (value, null) in row.iter_mut() {
                if *null {
                    assert!(value.is_empty());
                    *null = false;
                }
            }
        }
        assert_eq!(mine, kams, "{table}: our rows differ from Kamailio's");
    }
    let counters = member_counters(collector.grpc).await.unwrap();
    assert_eq!(counters.get("forwarded"), Some(&6), "{counters:?}");
    kam.stop().unwrap();
}
