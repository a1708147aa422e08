//! `sipcapture up` end to end on SQLite: HEP3 over UDP → rows in the HOMER 5 dated tables with
//! Kamailio's column values; garbage never crashes anything and is counted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use sipcapture_integration_tests::hep::{hep3_sip, reply, request, send_udp};
use sipcapture_integration_tests::{
    Sandbox, bin_path, member_counters, open_db, rows_as_text, wait_for_rows,
};

const WAIT: Duration = Duration::from_secs(10);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_dialog_lands_in_dated_tables_with_kamailio_columns() {
    let sandbox = Sandbox::new().unwrap();
    let mut up = sandbox.up(&["--capture-node", "it-node"]).await.unwrap();

    // 2026-03-04 23:59:59.5 UTC and 2026-03-05 00:00:01 UTC: the dated table follows the
    // packet's UTC time, so the BYE lands in the next day's table.
    let t1 = Utc
        .with_ymd_and_hms(2026, 3, 4, 23, 59, 59)
        .unwrap()
        .timestamp() as u32;
    let t2 = t1 + 2;
    let caller = addr("192.0.2.10:5060");
    let callee = addr("192.0.2.20:5080");
    let call_id = "a84b4c76e66710@pc33.atlanta.example.com";
    let packets = vec![
        hep3_sip(
            caller,
            callee,
            t1,
            500_000,
            2001,
            &request("INVITE", call_id, 1, "9fxced76sl", None),
        ),
        hep3_sip(
            callee,
            caller,
            t1,
            700_000,
            2001,
            &reply(200, "OK", "INVITE", call_id, 1, "9fxced76sl", "8321234356"),
        ),
        hep3_sip(
            caller,
            callee,
            t2,
            0,
            2001,
            &request("BYE", call_id, 2, "9fxced76sl", Some("8321234356")),
        ),
        hep3_sip(
            caller,
            callee,
            t2,
            1,
            2001,
            &request("REGISTER", "reg-1@192.0.2.10", 1, "r1", None),
        ),
        hep3_sip(
            caller,
            callee,
            t2,
            2,
            2001,
            &request("OPTIONS", "opt-1@192.0.2.10", 1, "o1", None),
        ),
    ];
    send_udp(up.hep, &packets).unwrap();

    let db = open_db(&up.db_url).await.unwrap();
    wait_for_rows(&db, "sip_capture_call_20260304", 2, WAIT)
        .await
        .unwrap();
    wait_for_rows(&db, "sip_capture_call_20260305", 1, WAIT)
        .await
        .unwrap();
    wait_for_rows(&db, "sip_capture_registration_20260305", 1, WAIT)
        .await
        .unwrap();
    wait_for_rows(&db, "sip_capture_rest_20260305", 1, WAIT)
        .await
        .unwrap();

    let cols = [
        "date",
        "micro_ts",
        "method",
        "reply_reason",
        "ruri",
        "ruri_user",
        "ruri_domain",
        "from_user",
        "from_domain",
        "from_tag",
        "to_user",
        "to_tag",
        "callid",
        "via_1",
        "via_1_branch",
        "cseq",
        "user_agent",
        "source_ip",
        "source_port",
        "destination_ip",
        "destination_port",
        "contact_ip",
        "contact_port",
        "contact_user",
        "proto",
        "family",
        "type",
        "node",
        "correlation_id",
    ];
    let rows = rows_as_text(&db, "sip_capture_call_20260304", &cols)
        .await
        .unwrap();
    let invite = &rows[0];
    let expected_invite = [
        "2026-03-04 23:59:59",
        &format!("{}", u64::from(t1) * 1_000_000 + 500_000),
        "INVITE",
        "",
        "sip:bob@biloxi.example.com",
        "bob",
        "biloxi.example.com",
        "alice",
        "atlanta.example.com",
        "9fxced76sl",
        "bob",
        "",
        call_id,
        "SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds1",
        "z9hG4bK776asdhds1",
        "1 INVITE",
        "sipcapture-it",
        "192.0.2.10",
        "5060",
        "192.0.2.20",
        "5080",
        "192.0.2.101",
        "5062",
        "alice",
        "1",
        "2",
        "1",
        "it-node:2001",
        call_id,
    ];
    for (i, (got, want)) in invite.iter().zip(expected_invite.iter()).enumerate() {
        assert_eq!(got, want, "INVITE column {}", cols[i]);
    }
    let ok = &rows[1];
    assert_eq!(ok[2], "200", "reply method is the status code");
    assert_eq!(ok[3], "OK");
    assert_eq!(ok[4], "", "replies have no ruri");
    assert_eq!(ok[11], "8321234356", "to_tag");
    assert_eq!(ok[26], "2", "type 2 = reply");
    assert_eq!(ok[17], "192.0.2.20");

    let bye = rows_as_text(
        &db,
        "sip_capture_call_20260305",
        &["method", "to_tag", "date"],
    )
    .await
    .unwrap();
    assert_eq!(bye[0], vec!["BYE", "8321234356", "2026-03-05 00:00:01"]);

    let msg = rows_as_text(&db, "sip_capture_rest_20260305", &["msg"])
        .await
        .unwrap();
    assert!(
        msg[0][0].starts_with("OPTIONS sip:bob@biloxi.example.com SIP/2.0\r\n"),
        "msg is the raw SIP message"
    );

    assert!(
        up.process.terminate(Duration::from_secs(20)).unwrap(),
        "clean exit on SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_counted_and_never_crashes() {
    let sandbox = Sandbox::new().unwrap();
    let mut up = sandbox.up(&[]).await.unwrap();

    let valid = hep3_sip(
        addr("10.0.0.1:5060"),
        addr("10.0.0.2:5060"),
        1_768_464_000,
        0,
        7,
        &request("OPTIONS", "g@x", 1, "t", None),
    );
    let mut garbage: Vec<Vec<u8>> = Vec::new();
    // random bytes
    for len in [1usize, 3, 6, 16, 100, 1400] {
        garbage.push((0..len).map(|_| rand::random::<u8>()).collect());
    }
    // every truncation of a valid HEP3 packet
    for cut in 1..valid.len() {
        garbage.push(valid[..cut].to_vec());
    }
    // a 64 KiB datagram (the largest UDP payload) of noise and one that looks like HEP3
    garbage.push(vec![0xAB; 65_507]);
    let mut big = b"HEP3\xff\xff".to_vec();
    big.resize(65_507, 0);
    garbage.push(big);
    // a HEP3 packet without a payload chunk
    garbage.push(b"HEP3\x00\x0d\x00\x00\x00\x07\x00\x07\x11".to_vec());
    let sent_garbage = garbage.len() as u64;
    send_udp(up.hep, &garbage).unwrap();
    // Garbage over TCP: a bad frame closes only that connection.
    {
        use std::io::Write;
        let mut tcp = std::net::TcpStream::connect(up.hep).unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    }
    send_udp(up.hep, std::slice::from_ref(&valid)).unwrap();

    let db = open_db(&up.db_url).await.unwrap();
    wait_for_rows(&db, "sip_capture_rest_20260115", 1, WAIT)
        .await
        .unwrap();
    assert!(up.process.is_running(), "still running after garbage");

    // Every garbage datagram is counted under a drop reason.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let counters = member_counters(up.grpc).await.unwrap();
        let dropped: u64 = counters
            .iter()
            .filter(|(k, _)| k.starts_with("dropped.") && *k != "dropped.tcp_bad_frame")
            .map(|(_, v)| *v)
            .sum();
        if dropped == sent_garbage && counters.get("dropped.tcp_bad_frame") == Some(&1) {
            assert_eq!(
                counters.get("hep_received"),
                Some(&(sent_garbage + 1)),
                "{counters:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "drops not counted: {dropped} of {sent_garbage}: {counters:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        up.process.log_text().contains("dropped hep packet"),
        "drops are logged"
    );
    assert!(up.process.terminate(Duration::from_secs(20)).unwrap());
}

/// Deliver stores, so with the storer's `auth_token` set a caller without it is refused, while
/// the in-process collector (which sends the storer's token) keeps storing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_needs_the_storer_token() {
    use sipcapture_proto::v1::storer_service_client::StorerServiceClient;
    use sipcapture_proto::v1::{DeliverRequest, Hello, deliver_request};

    let sandbox = Sandbox::new().unwrap();
    let up = sandbox
        .up(&["--set", "storer.auth_token=s3cret"])
        .await
        .unwrap();
    let call_id = "token-1@192.0.2.10";
    let packet = hep3_sip(
        addr("192.0.2.10:5060"),
        addr("192.0.2.20:5060"),
        1_772_668_800,
        0,
        2001,
        &request("INVITE", call_id, 1, "t1", None),
    );
    send_udp(up.hep, &[packet]).unwrap();
    let db = open_db(&up.db_url).await.unwrap();
    if let Err(e) = wait_for_rows(&db, "sip_capture_call_20260305", 1, WAIT).await {
        panic!("{e}\n{}", up.process.log_text());
    }

    let hello = DeliverRequest {
        message: Some(deliver_request::Message::Hello(Hello {
            collector_id: "intruder".into(),
            stream_id: "intruder-0".into(),
        })),
    };
    let mut client = StorerServiceClient::connect(format!("http://{}", up.grpc))
        .await
        .unwrap();
    let refused = client
        .deliver(tokio_stream::iter(vec![hello]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
}

/// A port in use: the error names what could not listen and why, in the operator's terms, and
/// prints the cause once (no `Caused by` repeating it).
#[test]
fn a_port_in_use_is_reported_once() {
    let sandbox = Sandbox::new().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap();
    let taken_udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp = taken_udp.local_addr().unwrap();
    let db = format!("sqlite://{}", sandbox.path().join("p.db").display());
    let run = |bin: &str, args: &[String]| {
        let out = std::process::Command::new(bin_path(bin).unwrap())
            .args(args)
            .current_dir(sandbox.path())
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let cases = [
        (
            "sipcapture",
            vec![
                "up".to_owned(),
                "--grpc-listen".to_owned(),
                port.to_string(),
                "--hep-listen".to_owned(),
                "127.0.0.1:0".to_owned(),
                "--db-url".to_owned(),
                db.clone(),
            ],
            format!("cannot listen for gRPC on {port}"),
        ),
        (
            "sipcapture",
            vec![
                "up".to_owned(),
                "--grpc-listen".to_owned(),
                "127.0.0.1:0".to_owned(),
                "--hep-listen".to_owned(),
                udp.to_string(),
                "--db-url".to_owned(),
                db.clone(),
            ],
            format!("cannot listen for HEP on udp {udp}"),
        ),
        (
            "sipcapture-storer",
            vec![
                "--grpc-listen".to_owned(),
                port.to_string(),
                "--db-url".to_owned(),
                db.clone(),
            ],
            format!("cannot listen for gRPC on {port}"),
        ),
    ];
    for (bin, args, what) in cases {
        let err = run(bin, &args);
        assert!(err.contains(&format!("Error: {what}")), "{bin}: {err}");
        assert_eq!(err.matches("already in use").count(), 1, "{bin}: {err}");
        assert!(!err.contains("Caused by"), "{bin}: {err}");
        assert!(!err.contains("os error"), "{bin}: {err}");
    }
}
