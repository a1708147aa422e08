//! `schema = "homer7"`: what the storer writes reads in homer-app as if heplify-server had
//! written it. The expected rows are written here by hand from heplify-server 1.60.3's rules
//! (`decoder/sip.go` table choice by CSeq method, `database/header.go` JSON headers,
//! `database/postgres.go` sid and tables), not computed by the storer's code; the SQL is the
//! SQL homer-app 1.5 runs (`data/service/search.go`: `SearchData`, `GetTransactionData`), with
//! its gorm placeholders written out.
//!
//! On PostgreSQL the tables are heplify's partitioned `hep_proto_*` parents; on SQLite and
//! MariaDB the same names with JSON text, so one config works everywhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};
use serde_json::{Value, json};
use sipcapture_integration_tests::pcap::Capture;
use sipcapture_integration_tests::storer::{
    Delivery, Engine, TestDb, count, report_record, sip_record, start_storer, table_names,
};
use sipcapture_integration_tests::{Sandbox, member_counters, now_us, on_every_engine, wait_until};

const WAIT: Duration = Duration::from_secs(20);

/// heplify-server's tables.
const HEP_TABLES: [&str; 8] = [
    "hep_proto_1_call",
    "hep_proto_1_registration",
    "hep_proto_1_default",
    "hep_proto_5_default",
    "hep_proto_35_default",
    "hep_proto_53_default",
    "hep_proto_54_default",
    "hep_proto_100_default",
];

on_every_engine!(
    heplify_tables_keys_and_values,
    old_rows_stored_and_retention_drops_them
);

/// heplify's `protocol_header` of a `sip_record` / `report_record` (192.0.2.10 → 192.0.2.20).
fn protocol_header(
    time_us: u64,
    ports: (u16, u16),
    payload_type: u32,
    capture_id: &str,
    correlation_id: &str,
) -> Value {
    json!({
        "protocolFamily": 2,
        "protocol": 17,
        "srcIp": "192.0.2.10",
        "dstIp": "192.0.2.20",
        "srcPort": ports.0,
        "dstPort": ports.1,
        "timeSeconds": time_us / 1_000_000,
        "timeUseconds": time_us % 1_000_000,
        "payloadType": payload_type,
        "captureId": capture_id,
        "correlation_id": correlation_id,
    })
}

/// heplify's SIP `data_header` of a `sip_record` (plus the configured custom field).
fn sip_data_header(method: &str, cseq_method: &str, call_id: &str, from_user: &str) -> Value {
    let request = method.parse::<u32>().is_err();
    json!({
        "ruri_user": if request { "bob" } else { "" },
        "ruri_domain": if request { "biloxi.example.com" } else { "" },
        "from_user": from_user,
        "from_tag": "1928301774",
        "to_user": "bob",
        "to_tag": "",
        "callid": call_id,
        "cseq": format!("314159 {cseq_method}"),
        "method": method,
        "user_agent": "sipcapture-it/1.0",
    })
}

/// One stored row: sid, create_date as µs, the two headers, raw.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    table: String,
    sid: String,
    create_us: i64,
    protocol_header: Value,
    data_header: Value,
    raw: String,
}

/// The rows of `table` matching `filter` (SQL), oldest first.
async fn rows(db: &DatabaseConnection, table: &str, filter: &str) -> Vec<Row> {
    let backend = db.get_database_backend();
    let micros = match backend {
        DatabaseBackend::Postgres => "CAST(EXTRACT(EPOCH FROM create_date) * 1000000 AS BIGINT)",
        DatabaseBackend::MySql => {
            "CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', create_date) AS SIGNED)"
        }
        // SQLite: the text sqlx writes ("2026-12-05 12:00:00.123456"), read back below.
        _ => "create_date",
    };
    let text = if backend == DatabaseBackend::MySql {
        "CHAR"
    } else {
        "TEXT"
    };
    let sql = format!(
        "SELECT sid, {micros} AS us, CAST(protocol_header AS {text}) AS ph, \
         CAST(data_header AS {text}) AS dh, raw FROM {table} WHERE {filter} ORDER BY create_date, id"
    );
    db.query_all_raw(Statement::from_string(backend, sql))
        .await
        .unwrap()
        .iter()
        .map(|r| Row {
            table: table.to_owned(),
            sid: r.try_get("", "sid").unwrap(),
            create_us: match backend {
                DatabaseBackend::Sqlite => {
                    let text: String = r.try_get("", "us").unwrap();
                    chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f")
                        .unwrap()
                        .and_utc()
                        .timestamp_micros()
                }
                _ => r.try_get("", "us").unwrap(),
            },
            protocol_header: serde_json::from_str(&r.try_get::<String>("", "ph").unwrap()).unwrap(),
            data_header: serde_json::from_str(&r.try_get::<String>("", "dh").unwrap()).unwrap(),
            raw: r.try_get("", "raw").unwrap(),
        })
        .collect()
}

/// Every record kind heplify-server stores goes to its table, with exactly heplify's JSON
/// keys, types and values; homer-app's searches find them.
async fn heplify_tables_keys_and_values(engine: Engine) {
    let sandbox = Sandbox::new().unwrap();
    let Some(test_db) = TestDb::create(engine, &sandbox, "homer7").await.unwrap() else {
        return;
    };
    let extra = r#"
schema = "homer7"
homer7_custom_fields = ["x_mac"]
"#;
    let mut storer = start_storer(&sandbox, "storer", &test_db.url, extra)
        .await
        .unwrap();
    let t = now_us() - 60_000_000;
    let call = "call-1@atlanta.example.com";
    let mut records = Vec::new();
    // (record, table, sid, data_header) expected
    let mut expected: Vec<(String, String, Value, Value)> = Vec::new();
    let mut sip =
        |records: &mut Vec<_>, at: u64, method: &str, cseq: &str, id: &str, table: &str| {
            let r = sip_record(at, method, cseq, id, "alice");
            expected.push((
                table.to_owned(),
                id.to_owned(),
                protocol_header(at, (5060, 5080), 1, "2001", id),
                sip_data_header(method, cseq, id, "alice"),
            ));
            records.push(r);
        };
    // Calls by CSeq method (replies follow their CSeq), INFO and NOTIFY included.
    sip(
        &mut records,
        t,
        "INVITE",
        "INVITE",
        call,
        "hep_proto_1_call",
    );
    sip(
        &mut records,
        t + 1_000,
        "180",
        "INVITE",
        call,
        "hep_proto_1_call",
    );
    sip(
        &mut records,
        t + 2_000,
        "200",
        "INVITE",
        call,
        "hep_proto_1_call",
    );
    sip(
        &mut records,
        t + 3_000,
        "INFO",
        "INFO",
        call,
        "hep_proto_1_call",
    );
    sip(
        &mut records,
        t + 4_000,
        "NOTIFY",
        "NOTIFY",
        "n@x",
        "hep_proto_1_call",
    );
    sip(
        &mut records,
        t + 5_000,
        "REGISTER",
        "REGISTER",
        "r@x",
        "hep_proto_1_registration",
    );
    sip(
        &mut records,
        t + 6_000,
        "401",
        "REGISTER",
        "r@x",
        "hep_proto_1_registration",
    );
    sip(
        &mut records,
        t + 7_000,
        "OPTIONS",
        "OPTIONS",
        "o@x",
        "hep_proto_1_default",
    );
    sip(
        &mut records,
        t + 8_000,
        "SUBSCRIBE",
        "SUBSCRIBE",
        "s@x",
        "hep_proto_1_default",
    );
    // A custom header value goes under its configured key; an A-leg Call-ID header is the
    // correlation id; a HEP correlation chunk and a node name chunk win.
    let mut custom = sip_record(t + 9_000, "MESSAGE", "MESSAGE", "m@x", "alice");
    custom.sip.as_mut().unwrap().custom_field1 = "00:11:22".into();
    custom.sip.as_mut().unwrap().callid_aleg = call.into();
    let mut dh = sip_data_header("MESSAGE", "MESSAGE", "m@x", "alice");
    dh["x_mac"] = json!("00:11:22");
    expected.push((
        "hep_proto_1_default".into(),
        "m@x".into(),
        protocol_header(t + 9_000, (5060, 5080), 1, "2001", call),
        dh,
    ));
    records.push(custom);
    let mut named = sip_record(t + 10_000, "BYE", "BYE", call, "alice");
    let hep = named.hep.as_mut().unwrap();
    hep.node_name = "sbc-east".into();
    hep.has_correlation_id = true;
    hep.correlation_id = b"leg-a@x".to_vec();
    expected.push((
        "hep_proto_1_call".into(),
        call.into(),
        protocol_header(t + 10_000, (5060, 5080), 1, "sbc-east", "leg-a@x"),
        sip_data_header("BYE", "BYE", call, "alice"),
    ));
    records.push(named);
    // Non-SIP: keyed by correlation id, data_header {node, proto}.
    for (i, (payload_type, table, proto)) in [
        (5, "hep_proto_5_default", "rtcp"),
        (100, "hep_proto_100_default", "log"),
        (53, "hep_proto_53_default", "dns"),
        (54, "hep_proto_54_default", "54"),
        (35, "hep_proto_35_default", "rtcpxr"),
        (34, "hep_proto_35_default", "rtpagent"),
        (99, "hep_proto_35_default", "99"),
    ]
    .into_iter()
    .enumerate()
    {
        let at = t + 20_000 + u64::try_from(i).unwrap();
        let mut r = report_record(at, payload_type, 0, call);
        r.hep.as_mut().unwrap().has_capture_id = true;
        r.hep.as_mut().unwrap().capture_id = 2002;
        expected.push((
            table.into(),
            call.into(),
            protocol_header(at, (5004, 5006), payload_type, "2002", call),
            json!({"node": "2002", "proto": proto}),
        ));
        records.push(r);
    }
    let total = records.len();
    let mut delivery = Delivery::open(storer.grpc, "collector-a", "stream-a")
        .await
        .unwrap();
    let ack = delivery.send(1, records.clone()).await.unwrap();
    assert_eq!(ack.stored as usize, total, "{ack:?}");
    // A resend is not stored twice.
    let again = delivery.send(1, records.clone()).await.unwrap();
    assert!(again.duplicate, "{again:?}");

    let db = test_db.connect().await.unwrap();
    let tables = table_names(&db).await.unwrap();
    for parent in HEP_TABLES {
        assert!(
            tables.iter().any(|t| t == parent),
            "{parent} missing: {tables:?}"
        );
    }
    if engine == Engine::Postgres {
        // heplify's partitions: <parent>_YYYYMMDD_HHMM, 2 h for SIP, created ahead.
        let today = chrono::Utc::now().format("%Y%m%d").to_string();
        assert!(
            tables
                .iter()
                .any(|t| t.starts_with(&format!("hep_proto_1_call_{today}_"))),
            "{tables:?}"
        );
        let partitioned = count(
            &db,
            "SELECT COUNT(*) AS n FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid \
             WHERE c.relname LIKE 'hep_proto_%'",
        )
        .await
        .unwrap();
        assert_eq!(partitioned, 8);
    }
    let mut stored = 0;
    for (table, sid, ph, dh) in &expected {
        let want_us =
            ph["timeSeconds"].as_i64().unwrap() * 1_000_000 + ph["timeUseconds"].as_i64().unwrap();
        let found = rows(&db, table, &format!("sid = '{sid}'")).await;
        let Some(row) = found.iter().find(|r| r.create_us == want_us) else {
            panic!("no row in {table} for {sid} at {want_us}: {found:?}");
        };
        assert_eq!(&row.protocol_header, ph, "{table} {sid}");
        assert_eq!(&row.data_header, dh, "{table} {sid}");
        // Exactly heplify's keys: no capturePass, nothing else.
        assert!(row.protocol_header.get("capturePass").is_none());
        stored += 1;
    }
    assert_eq!(stored, total);
    let all: u64 = {
        let mut n = 0;
        for table in HEP_TABLES {
            n += count(&db, &format!("SELECT COUNT(*) AS n FROM {table}"))
                .await
                .unwrap();
        }
        n
    };
    assert_eq!(all as usize, total, "nothing stored twice");
    // raw is the message.
    let invite = rows(&db, "hep_proto_1_call", &format!("sid = '{call}'")).await;
    assert!(
        invite[0]
            .raw
            .starts_with("INVITE sip:bob@biloxi.example.com SIP/2.0\r\n")
    );

    if engine == Engine::Postgres {
        homer_app_searches(&db, t, call).await;
    }
    drop(delivery);
    storer.process.terminate(Duration::from_secs(5)).unwrap();
    test_db.cleanup().await.unwrap();
}

/// The SQL homer-app runs, on the PostgreSQL rows written above.
async fn homer_app_searches(db: &DatabaseConnection, t: u64, call: &str) {
    let backend = db.get_database_backend();
    let from = chrono::DateTime::from_timestamp_micros(i64::try_from(t).unwrap() - 600_000_000)
        .unwrap()
        .to_rfc3339();
    let to = chrono::DateTime::from_timestamp_micros(i64::try_from(t).unwrap() + 600_000_000)
        .unwrap()
        .to_rfc3339();
    let query = |table: &str, filter: String| {
        format!(
            "SELECT id, sid, create_date, protocol_header, data_header, raw FROM \"{table}\" \
             WHERE create_date between '{from}' AND '{to}' AND ( {filter} ) LIMIT 200"
        )
    };
    let n = |sql: String| async move {
        db.query_all_raw(Statement::from_string(backend, sql))
            .await
            .unwrap()
            .len()
    };
    // SearchData, search by callid / from_user / srcIp + method (mapping fields
    // data_header.callid, data_header.from_user, protocol_header.srcIp, data_header.method).
    assert_eq!(
        n(query(
            "hep_proto_1_call",
            format!("data_header->>'callid' = '{call}'")
        ))
        .await,
        5
    );
    assert_eq!(
        n(query(
            "hep_proto_1_call",
            "data_header->>'from_user' = 'alice'".into()
        ))
        .await,
        6
    );
    assert_eq!(
        n(query(
            "hep_proto_1_registration",
            "protocol_header->>'srcIp' = '192.0.2.10' AND data_header->>'method' = '401'".into()
        ))
        .await,
        1
    );
    // GetTransactionData: the call's rows by sid, then its correlated RTCP and logs.
    let any = |table: &str, field: &str| {
        format!(
            "SELECT id FROM \"{table}\" WHERE create_date between '{from}' AND '{to}' \
             AND {field} = ANY(ARRAY['{call}','leg-a@x'])"
        )
    };
    assert_eq!(n(any("hep_proto_1_call", "sid")).await, 5);
    assert_eq!(n(any("hep_proto_5_default", "sid")).await, 1);
    assert_eq!(n(any("hep_proto_100_default", "sid")).await, 1);
    assert_eq!(
        n(any(
            "hep_proto_1_default",
            "protocol_header->>'correlation_id'"
        ))
        .await,
        1,
        "the MESSAGE correlated through its A-leg header"
    );
    // QoS and logs by correlation id, as homer-app's report/log tabs read them.
    assert_eq!(
        n(query(
            "hep_proto_5_default",
            format!(
                "protocol_header->>'correlation_id' = '{call}' AND data_header->>'proto' = 'rtcp'"
            )
        ))
        .await,
        1
    );
    assert_eq!(
        n(query("hep_proto_100_default", format!("sid = '{call}'"))).await,
        1
    );
    // The indexes homer-app's searches use exist on every partition.
    let indexed = count(
        db,
        "SELECT COUNT(*) AS n FROM pg_indexes WHERE tablename LIKE 'hep_proto_1_call_%' \
         AND indexdef LIKE '%callid%'",
    )
    .await
    .unwrap();
    assert!(indexed > 0);
}

/// Rows older than the pre-created partitions (a replay, a pcap import) are stored in the
/// partition they need; retention drops what is older than `retention_days` (partitions on
/// PostgreSQL, rows elsewhere) and keeps the rest.
async fn old_rows_stored_and_retention_drops_them(engine: Engine) {
    let sandbox = Sandbox::new().unwrap();
    let Some(test_db) = TestDb::create(engine, &sandbox, "homer7old").await.unwrap() else {
        return;
    };
    let mut storer = start_storer(&sandbox, "storer", &test_db.url, "schema = \"homer7\"\n")
        .await
        .unwrap();
    let now = now_us();
    let day = 86_400_000_000;
    let recent = sip_record(now - 3 * day, "INVITE", "INVITE", "three-days@x", "alice");
    let old = sip_record(now - 30 * day, "INVITE", "INVITE", "thirty-days@x", "alice");
    let older = report_record(now - 40 * day, 5, 0, "thirty-days@x");
    let mut delivery = Delivery::open(storer.grpc, "collector-a", "stream-old")
        .await
        .unwrap();
    let ack = delivery.send(1, vec![recent, old, older]).await.unwrap();
    assert_eq!(ack.stored, 3, "{ack:?}");
    let db = test_db.connect().await.unwrap();
    assert_eq!(rows(&db, "hep_proto_1_call", "1=1").await.len(), 2);
    assert_eq!(rows(&db, "hep_proto_5_default", "1=1").await.len(), 1);
    drop(delivery);
    storer.process.terminate(Duration::from_secs(5)).unwrap();

    // Restart with retention: the 30- and 40-day-old data goes, the 3-day-old row stays.
    let mut storer = start_storer(
        &sandbox,
        "storer2",
        &test_db.url,
        "schema = \"homer7\"\nretention_days = 7\nretention_interval = 1\n",
    )
    .await
    .unwrap();
    let left = |db: &DatabaseConnection| {
        let db = db.clone();
        async move {
            Ok(rows(&db, "hep_proto_1_call", "1=1").await.len() == 1
                && rows(&db, "hep_proto_5_default", "1=1").await.is_empty())
        }
    };
    wait_until("retention", WAIT, || left(&db)).await.unwrap();
    let kept = rows(&db, "hep_proto_1_call", "1=1").await;
    assert_eq!(kept[0].sid, "three-days@x");
    if engine == Engine::Postgres {
        let old_day =
            chrono::DateTime::from_timestamp_micros(i64::try_from(now - 30 * day).unwrap())
                .unwrap()
                .format("%Y%m%d")
                .to_string();
        let tables = table_names(&db).await.unwrap();
        assert!(
            !tables
                .iter()
                .any(|t| t.starts_with(&format!("hep_proto_1_call_{old_day}"))),
            "old partition dropped: {tables:?}"
        );
    }
    let counters = member_counters(storer.grpc).await.unwrap();
    assert_eq!(counters.get("rows_stored.sip").copied().unwrap_or(0), 0);
    storer.process.terminate(Duration::from_secs(5)).unwrap();
    test_db.cleanup().await.unwrap();
}

/// Real Kamailio 5.6 siptrace captures (HEP v1, v2, v3) replayed into `sipcapture up` with
/// `--set schema=homer7` on PostgreSQL: every packet is one row of `hep_proto_1_*`, whose
/// `protocol_header` holds the addresses, ports, time and capture id tshark's independent HEP
/// dissector reads from the packet, and whose `data_header` holds the Call-ID, CSeq and method
/// of the message in `raw`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_hep_captures_into_homer7_on_postgres() {
    let sandbox = Sandbox::new().unwrap();
    let Some(test_db) = TestDb::create(Engine::Postgres, &sandbox, "homer7up")
        .await
        .unwrap()
    else {
        return;
    };
    let up = sandbox
        .up(&["--db-url", &test_db.url, "--set", "schema=homer7"])
        .await
        .unwrap();
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut expected_lines = Vec::new();
    let sent_from = now_us();
    for name in [
        "gen_hep1_kamailio_siptrace",
        "gen_hep2_kamailio_siptrace",
        "gen_hep3_kamailio_siptrace",
    ] {
        let capture = Capture::read(&testdata.join(format!("{name}.pcap"))).unwrap();
        let payloads: Vec<Vec<u8>> = capture
            .udp_payloads()
            .into_iter()
            .map(|t| t.payload)
            .collect();
        sipcapture_integration_tests::hep::send_udp(up.hep, &payloads).unwrap();
        let text = std::fs::read_to_string(testdata.join(format!("{name}.expected.csv"))).unwrap();
        expected_lines.extend(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .map(str::to_owned),
        );
    }
    // HEP3 beyond siptrace: an IPv6 INVITE from an agent with a node name, a correlation id and
    // an auth key; its RTCP report, a log line and a vendor report (type 99).
    use sipcapture_integration_tests::hep::{Chunks, hep3_with};
    let (a6, b6): (std::net::SocketAddr, std::net::SocketAddr) = (
        "[2001:db8::1]:5060".parse().unwrap(),
        "[2001:db8::2]:5062".parse().unwrap(),
    );
    let (a4, b4): (std::net::SocketAddr, std::net::SocketAddr) = (
        "10.1.1.1:20000".parse().unwrap(),
        "10.1.1.2:20002".parse().unwrap(),
    );
    let call = "v6call@sbc-east";
    let invite = format!(
        "INVITE sip:bob@[2001:db8::2] SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1\r\n\
         From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: {call}\r\n\
         CSeq: 7 INVITE\r\nUser-Agent: agent-v6\r\nContent-Length: 0\r\n\r\n"
    );
    let ts = (1_790_000_000, 123_456);
    let extra = [
        hep3_with(
            a6,
            b6,
            ts,
            7,
            invite.as_bytes(),
            Chunks {
                correlation_id: Some(b"leg-a@x"),
                node_name: Some(b"sbc-east"),
                auth_key: Some(b"s3cret"),
                ..Chunks::default()
            },
        ),
        hep3_with(
            a4,
            b4,
            (ts.0 + 5, 0),
            7,
            br#"{"type":200,"ssrc":"0x1"}"#,
            Chunks {
                proto_type: Some(5),
                correlation_id: Some(call.as_bytes()),
                ..Chunks::default()
            },
        ),
        hep3_with(
            a4,
            b4,
            (ts.0 + 6, 0),
            7,
            b"call ended",
            Chunks {
                proto_type: Some(100),
                correlation_id: Some(call.as_bytes()),
                ..Chunks::default()
            },
        ),
        hep3_with(
            a4,
            b4,
            (ts.0 + 7, 0),
            7,
            br#"{"mos":4.2}"#,
            Chunks {
                proto_type: Some(99),
                correlation_id: Some(call.as_bytes()),
                ..Chunks::default()
            },
        ),
    ];
    sipcapture_integration_tests::hep::send_udp(up.hep, &extra).unwrap();
    let db = test_db.connect().await.unwrap();
    let total = expected_lines.len() + 1;
    let all = |db: DatabaseConnection| async move {
        let mut out = Vec::new();
        for table in [
            "hep_proto_1_call",
            "hep_proto_1_registration",
            "hep_proto_1_default",
        ] {
            out.extend(rows(&db, table, "1=1").await);
        }
        out
    };
    wait_until("every packet stored", WAIT, || {
        let db = db.clone();
        async move { Ok(all(db).await.len() >= total) }
    })
    .await
    .unwrap();
    let sent_to = now_us();
    let mut stored = all(db.clone()).await;
    assert_eq!(stored.len(), total);
    let v6 = stored
        .iter()
        .position(|r| r.sid == call)
        .expect("the IPv6 INVITE");
    let v6 = stored.swap_remove(v6);
    assert_eq!(v6.table, "hep_proto_1_call");
    assert_eq!(
        v6.protocol_header,
        json!({"protocolFamily": 10, "protocol": 17, "srcIp": "2001:db8::1",
               "dstIp": "2001:db8::2", "srcPort": 5060, "dstPort": 5062,
               "timeSeconds": ts.0, "timeUseconds": ts.1, "payloadType": 1,
               "captureId": "sbc-east", "correlation_id": "leg-a@x"}),
        "no capturePass"
    );
    assert_eq!(v6.data_header["ruri_user"], json!("bob"));
    assert_eq!(v6.data_header["user_agent"], json!("agent-v6"));
    assert_eq!(v6.data_header["cseq"], json!("7 INVITE"));
    wait_until("the reports stored", WAIT, || {
        let db = db.clone();
        async move {
            let mut n = 0;
            for table in [
                "hep_proto_5_default",
                "hep_proto_100_default",
                "hep_proto_35_default",
            ] {
                n += rows(&db, table, "1=1").await.len();
            }
            Ok(n == 3)
        }
    })
    .await
    .unwrap();
    for (table, seconds, proto, raw) in [
        (
            "hep_proto_5_default",
            ts.0 + 5,
            "rtcp",
            r#"{"type":200,"ssrc":"0x1"}"#,
        ),
        ("hep_proto_100_default", ts.0 + 6, "log", "call ended"),
        ("hep_proto_35_default", ts.0 + 7, "99", r#"{"mos":4.2}"#),
    ] {
        let found = rows(&db, table, &format!("sid = '{call}'")).await;
        assert_eq!(found.len(), 1, "{table}: {found:?}");
        let row = &found[0];
        assert_eq!(row.raw, raw);
        assert_eq!(row.data_header, json!({"node": "7", "proto": proto}));
        assert_eq!(row.protocol_header["timeSeconds"], json!(seconds));
        assert_eq!(row.protocol_header["correlation_id"], json!(call));
        assert_eq!(row.protocol_header["srcIp"], json!("10.1.1.1"));
    }
    for line in &expected_lines {
        let c: Vec<&str> = line.split(',').collect();
        let (version, src_ip, src_port, dst_ip, dst_port) = (c[0], c[1], c[2], c[3], c[4]);
        let position = stored.iter().position(|r| {
            let ph = &r.protocol_header;
            let time_ok = if c[5].is_empty() {
                // HEP v1 carries no time: the receipt time.
                let us = ph["timeSeconds"].as_u64().unwrap() * 1_000_000
                    + ph["timeUseconds"].as_u64().unwrap();
                (sent_from..=sent_to).contains(&us)
            } else {
                ph["timeSeconds"] == json!(c[5].parse::<u64>().unwrap())
                    && ph["timeUseconds"] == json!(c[6].parse::<u64>().unwrap())
            };
            ph["srcIp"] == json!(src_ip)
                && ph["srcPort"] == json!(src_port.parse::<u64>().unwrap())
                && ph["dstIp"] == json!(dst_ip)
                && ph["dstPort"] == json!(dst_port.parse::<u64>().unwrap())
                && time_ok
                && (c[7].is_empty() || ph["captureId"] == json!(c[7]))
        });
        let Some(i) = position else {
            panic!("no row for HEP v{version} packet {line}");
        };
        let row = stored.swap_remove(i);
        let ph = &row.protocol_header;
        assert_eq!(ph["protocolFamily"], json!(2), "{ph}");
        assert_eq!(ph["protocol"], json!(17), "{ph}");
        assert_eq!(ph["payloadType"], json!(1), "{ph}");
        // data_header from the message itself, read here line by line.
        let header = |name: &str| {
            row.raw
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_owned())
                })
                .unwrap_or_default()
        };
        let call_id = header("Call-ID");
        let cseq = header("CSeq");
        let first = row.raw.lines().next().unwrap();
        let method = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
            rest.split(' ').next().unwrap().to_owned()
        } else {
            first.split(' ').next().unwrap().to_owned()
        };
        let dh = &row.data_header;
        assert_eq!(dh["callid"], json!(call_id), "{dh}");
        assert_eq!(row.sid, call_id);
        assert_eq!(dh["cseq"], json!(cseq), "{dh}");
        assert_eq!(dh["method"], json!(method), "{dh}");
        assert_eq!(ph["correlation_id"], json!(call_id), "{ph}");
        let keys: Vec<&String> = dh.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 10, "{dh}");
        // The table follows the CSeq method (heplify's profiles).
        let table = match cseq.split_whitespace().nth(1).unwrap_or_default() {
            "INVITE" | "ACK" | "BYE" | "CANCEL" | "UPDATE" | "PRACK" | "REFER" | "INFO"
            | "NOTIFY" => "hep_proto_1_call",
            "REGISTER" => "hep_proto_1_registration",
            _ => "hep_proto_1_default",
        };
        assert_eq!(row.table, table, "{cseq}");
    }
    assert!(stored.is_empty());
    let counters = member_counters(up.grpc).await.unwrap();
    let drops = sipcapture_integration_tests::dropped_total(&counters);
    assert_eq!(drops, 0, "{counters:?}");
    drop(up);
    test_db.cleanup().await.unwrap();
}

/// `dedup`: the same INVITE captured at two points (two collectors, two nodes) is stored once
/// and counted; a retransmission seen at the same point is stored; a resend is not a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_stores_a_message_captured_twice_once() {
    let sandbox = Sandbox::new().unwrap();
    let test_db = TestDb::create(Engine::Sqlite, &sandbox, "dedup")
        .await
        .unwrap()
        .unwrap();
    let mut storer = start_storer(
        &sandbox,
        "storer",
        &test_db.url,
        "schema = \"homer7\"\ndedup = true\ndedup_window = 2.0\n",
    )
    .await
    .unwrap();
    let t = now_us();
    let at_sbc = sip_record(t, "INVITE", "INVITE", "dup@x", "alice");
    let mut at_core = at_sbc.clone();
    at_core.capture_time_us = t + 800;
    at_core.node = "core:2002".into();
    at_core.hep.as_mut().unwrap().capture_id = 2002;
    let mut retransmitted = at_sbc.clone();
    retransmitted.capture_time_us = t + 500_000;
    let mut a = Delivery::open(storer.grpc, "collector-sbc", "stream-sbc")
        .await
        .unwrap();
    let mut b = Delivery::open(storer.grpc, "collector-core", "stream-core")
        .await
        .unwrap();
    assert_eq!(a.send(1, vec![at_sbc]).await.unwrap().stored, 1);
    let dup = b.send(1, vec![at_core]).await.unwrap();
    assert_eq!((dup.stored, dup.discarded), (0, 1), "{dup:?}");
    assert_eq!(a.send(2, vec![retransmitted]).await.unwrap().stored, 1);
    let db = test_db.connect().await.unwrap();
    let stored = rows(&db, "hep_proto_1_call", "sid = 'dup@x'").await;
    assert_eq!(stored.len(), 2, "the first copy and the retransmission");
    assert!(
        stored
            .iter()
            .all(|r| r.protocol_header["captureId"] == json!("2001"))
    );
    let counters = member_counters(storer.grpc).await.unwrap();
    assert_eq!(
        counters.get("discarded.duplicate").copied(),
        Some(1),
        "{counters:?}"
    );
    drop((a, b));
    storer.process.terminate(Duration::from_secs(5)).unwrap();
}

/// Packet times come from the senders: a flood of rows each from another day would make a new
/// partition (a table and its 13 indexes) per row. `max_partitions` caps them; the rows over the
/// cap are refused and counted, the others (and rows for existing partitions) stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_bounded_on_postgres() {
    let sandbox = Sandbox::new().unwrap();
    let Some(test_db) = TestDb::create(Engine::Postgres, &sandbox, "homer7cap")
        .await
        .unwrap()
    else {
        return;
    };
    let mut storer = start_storer(
        &sandbox,
        "storer",
        &test_db.url,
        "schema = \"homer7\"\nmax_partitions = 200\n",
    )
    .await
    .unwrap();
    let db = test_db.connect().await.unwrap();
    let before = count(
        &db,
        "SELECT COUNT(*) AS n FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE c.relkind = 'r' AND c.relname LIKE 'hep_proto_%'",
    )
    .await
    .unwrap();
    assert!(before < 200, "pre-created {before}");
    let day = 86_400_000_000;
    let now = now_us();
    // One INVITE on each of 300 past days, then one now.
    let mut records: Vec<_> = (1..=300u64)
        .map(|d| {
            sip_record(
                now - d * day,
                "INVITE",
                "INVITE",
                &format!("d{d}@x"),
                "alice",
            )
        })
        .collect();
    records.push(sip_record(now, "INVITE", "INVITE", "now@x", "alice"));
    let mut delivery = Delivery::open(storer.grpc, "collector-a", "stream-cap")
        .await
        .unwrap();
    delivery.send(1, records).await.unwrap();
    let over = 300 - (200 - before);
    let stored = rows(&db, "hep_proto_1_call", "1=1").await.len();
    assert_eq!(stored as u64, 301 - over);
    let partitions = count(
        &db,
        "SELECT COUNT(*) AS n FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE c.relkind = 'r' AND c.relname LIKE 'hep_proto_%'",
    )
    .await
    .unwrap();
    assert_eq!(partitions, 200);
    assert_eq!(
        rows(&db, "hep_proto_1_call", "sid = 'now@x'").await.len(),
        1
    );
    let counters = member_counters(storer.grpc).await.unwrap();
    assert_eq!(
        counters.get("partitions_refused").copied(),
        Some(over),
        "{counters:?}"
    );
    assert_eq!(
        counters.get("dropped.row_rejected").copied(),
        Some(over),
        "{counters:?}"
    );
    drop(delivery);
    storer.process.terminate(Duration::from_secs(5)).unwrap();
    test_db.cleanup().await.unwrap();
}
