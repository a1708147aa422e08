//! The storer end to end on SQLite, PostgreSQL and MariaDB/MySQL: the same scenarios run on every
//! engine available (SQLite always; `TEST_PG_URL` / `TEST_MYSQL_URL` when set, required in CI).
//! Each test gets fresh databases (a new SQLite file, or `CREATE DATABASE` on the server), so
//! reruns and parallel tests never collide. The real `sipcapture-storer` binary runs with a TOML
//! config; batches go in through a gRPC client that speaks the Deliver stream like a collector.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sipcapture_integration_tests::storer::{
    Delivery, Engine, TestDb, count, micros, report_record, sip_record, start_storer, table_names,
    text_rows,
};
use sipcapture_integration_tests::{Sandbox, member_counters, on_every_engine, wait_for_rows};
use sipcapture_proto::v1::Routing;

const WAIT: Duration = Duration::from_secs(15);

on_every_engine!(
    tables_columns_modes_rules_and_resend,
    two_storers_create_the_same_dated_table,
    retention_drops_old_dated_tables,
    a_refused_row_is_isolated
);

/// Dated tables, Kamailio's column values, truncation instead of loss, report tables, a named
/// capture mode on a second database (rows grouped per mode, one ack), routing rules (drop,
/// mode, table), a routing hint, an unknown mode counted, and resends never stored twice.
async fn tables_columns_modes_rules_and_resend(engine: Engine) {
    let sandbox = Sandbox::new().unwrap();
    let Some(main_db) = TestDb::create(engine, &sandbox, "main").await.unwrap() else {
        return;
    };
    let mode_db = TestDb::create(engine, &sandbox, "cap1")
        .await
        .unwrap()
        .unwrap();
    let extra = format!(
        r#"
insert_retries = 3
insert_retry_timeout = 10

[capture_mode.cap1]
db_url = "{}"
table_name = "mode1_a_%Y%m%d|mode1_b_%Y%m%d"
mt_mode = "hash"
hash_source = "call_id"

[[route]]
match = {{ header = {{ name = "user_agent", prefix = "friendly-scanner" }} }}
drop = true

[[route]]
match = {{ header = {{ name = "from_user", regex = "^mode1-" }} }}
capture_mode = "cap1"

[[route]]
match = {{ reply_code = "400-499", cseq_method = "INVITE" }}
table = "failed_calls_%Y%m%d"
"#,
        mode_db.url
    );
    let mut storer = start_storer(&sandbox, "storer", &main_db.url, &extra)
        .await
        .unwrap();

    // 2026-03-04 23:59:59 UTC, then 2026-03-05 00:00:01 UTC: the table follows the packet's
    // UTC date.
    let t1 = micros(2026, 3, 4, 23, 59, 59) + 500_000;
    let t2 = micros(2026, 3, 5, 0, 0, 1);
    let long_ua = "u".repeat(300);
    let long_callid = format!("long-{}", "c".repeat(200));
    let mut options_long = sip_record(t2, "OPTIONS", "OPTIONS", &long_callid, "alice");
    options_long.sip.as_mut().unwrap().user_agent = long_ua.clone();
    let mut scanner = sip_record(t2, "OPTIONS", "OPTIONS", "scan@x", "100");
    scanner.sip.as_mut().unwrap().user_agent = "friendly-scanner 0.1".into();
    let mut hinted = sip_record(t2, "MESSAGE", "MESSAGE", "hint@x", "alice");
    hinted.routing = Some(Routing {
        table: "hinted_%Y".into(),
        capture_mode: String::new(),
    });
    let invite = sip_record(t1, "INVITE", "INVITE", "c1@atlanta.example.com", "alice");
    let invite_msg_len = invite.payload.len();
    assert!(invite_msg_len > 700, "{invite_msg_len}");
    let batch1 = vec![
        invite,
        sip_record(t1, "200", "INVITE", "c1@atlanta.example.com", "alice"),
        sip_record(t2, "BYE", "BYE", "c1@atlanta.example.com", "alice"),
        sip_record(
            t2,
            "REGISTER",
            "REGISTER",
            "r1@atlanta.example.com",
            "alice",
        ),
        options_long,
        sip_record(t2, "486", "INVITE", "c2@atlanta.example.com", "alice"),
        sip_record(
            t2,
            "INVITE",
            "INVITE",
            "m1@atlanta.example.com",
            "mode1-carol",
        ),
        sip_record(
            t2,
            "INVITE",
            "INVITE",
            "m2@atlanta.example.com",
            "mode1-dave",
        ),
        scanner,
        report_record(t2, 5, 3, "c1@atlanta.example.com"),
        report_record(t2, 32, 2, "c1@atlanta.example.com"),
        report_record(t2, 100, 5, "c1@atlanta.example.com"),
        report_record(t2, 34, 34, "c1@atlanta.example.com"),
        hinted,
    ];

    let mut delivery = Delivery::open(storer.grpc, "it-collector", "it-stream-1")
        .await
        .unwrap();
    assert_eq!(delivery.last_committed, 0);
    let ack = delivery.send(1, batch1.clone()).await.unwrap();
    assert_eq!((ack.stored, ack.discarded, ack.duplicate), (13, 1, false));

    let db = main_db.connect().await.unwrap();
    for (table, n) in [
        ("sip_capture_call_20260304", 2),
        ("sip_capture_call_20260305", 1),
        ("sip_capture_registration_20260305", 1),
        ("sip_capture_rest_20260305", 1),
        ("failed_calls_20260305", 1),
        ("rtcp_capture", 1),
        ("report_capture", 2),
        ("logs_capture", 1),
        ("hinted_2026", 1),
    ] {
        wait_for_rows(&db, table, n, WAIT).await.unwrap();
    }
    let tables = table_names(&db).await.unwrap();
    assert!(
        !tables.iter().any(|t| t.starts_with("mode1_")),
        "mode rows in the default database: {tables:?}"
    );

    // Kamailio's column values, as stored by each engine.
    let cols = [
        "method",
        "reply_reason",
        "ruri_user",
        "from_user",
        "to_user",
        "callid",
        "cseq",
        "source_ip",
        "source_port",
        "destination_ip",
        "destination_port",
        "proto",
        "family",
        "type",
        "node",
        "micro_ts",
        "user_agent",
    ];
    let rows = text_rows(
        &db,
        "sip_capture_call_20260304",
        &cols,
        "1=1",
        "micro_ts, id",
    )
    .await
    .unwrap();
    assert_eq!(
        rows[0],
        [
            "INVITE",
            "",
            "bob",
            "alice",
            "bob",
            "c1@atlanta.example.com",
            "314159 INVITE",
            "192.0.2.10",
            "5060",
            "192.0.2.20",
            "5080",
            "1",
            "2",
            "1",
            "it-node:2001",
            &t1.to_string(),
            "sipcapture-it/1.0",
        ]
    );
    assert_eq!(rows[1][0], "200");
    assert_eq!(rows[1][1], "OK");
    assert_eq!(rows[1][13], "2");
    let date = text_rows(&db, "sip_capture_call_20260304", &["date"], "1=1", "id")
        .await
        .unwrap();
    assert!(
        date[0][0].starts_with("2026-03-04 23:59:59"),
        "date is UTC whole seconds: {:?}",
        date[0][0]
    );
    let msg_ok = count(
        &db,
        &format!(
            "SELECT COUNT(*) AS n FROM sip_capture_call_20260304 \
             WHERE callid = 'c1@atlanta.example.com' AND LENGTH(msg) = {invite_msg_len}"
        ),
    )
    .await
    .unwrap();
    assert_eq!(msg_ok, 1, "msg stored whole");

    // A too-long value is cut to its column, the row is kept.
    let long = text_rows(
        &db,
        "sip_capture_rest_20260305",
        &["user_agent", "callid"],
        "1=1",
        "id",
    )
    .await
    .unwrap();
    assert_eq!(long[0][0], "u".repeat(256));
    assert_eq!(
        long[0][1],
        long_callid.chars().take(120).collect::<String>()
    );

    // Report tables: Kamailio's 12 columns.
    let rtcp = text_rows(
        &db,
        "rtcp_capture",
        &[
            "correlation_id",
            "type",
            "source_port",
            "destination_port",
            "proto",
            "family",
            "node",
        ],
        "1=1",
        "id",
    )
    .await
    .unwrap();
    assert_eq!(
        rtcp[0],
        [
            "c1@atlanta.example.com",
            "3",
            "5004",
            "5006",
            "1",
            "2",
            "it-node:2001"
        ]
    );
    let logs = text_rows(&db, "logs_capture", &["type"], "1=1", "id")
        .await
        .unwrap();
    assert_eq!(logs[0][0], "5");
    let reports = text_rows(&db, "report_capture", &["type"], "1=1", "type")
        .await
        .unwrap();
    assert_eq!(reports, [["2"], ["34"]]);

    // The named mode's rows are in its own database, split over its two tables.
    let mdb = mode_db.connect().await.unwrap();
    let mode_tables: Vec<String> = table_names(&mdb)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.starts_with("mode1_"))
        .collect();
    assert!(!mode_tables.is_empty());
    let mut in_mode = 0;
    for t in &mode_tables {
        assert!(t.ends_with("_20260305"), "{t}");
        in_mode += count(&mdb, &format!("SELECT COUNT(*) AS n FROM {t}"))
            .await
            .unwrap();
    }
    assert_eq!(in_mode, 2);
    let mode_state = count(
        &mdb,
        "SELECT COUNT(*) AS n FROM sipcapture_stream_state WHERE stream_id = 'it-stream-1@cap1' AND last_sequence = 1",
    )
    .await
    .unwrap();
    assert_eq!(
        mode_state, 1,
        "the mode's part records its own stream state"
    );

    // Resend on the same stream, then after a reconnect: recognised, nothing stored twice.
    let again = delivery.send(1, batch1.clone()).await.unwrap();
    assert!(again.duplicate);
    drop(delivery);
    let mut delivery = Delivery::open(storer.grpc, "it-collector", "it-stream-1")
        .await
        .unwrap();
    assert_eq!(delivery.last_committed, 1);
    assert!(delivery.send(1, batch1).await.unwrap().duplicate);

    // Batch 2: one row, plus a record naming a mode this storer does not have (counted drop).
    let mut unknown = sip_record(t2, "INVITE", "INVITE", "u@x", "alice");
    unknown.routing = Some(Routing {
        table: String::new(),
        capture_mode: "nope".into(),
    });
    let ack = delivery
        .send(
            2,
            vec![
                sip_record(t2, "CANCEL", "CANCEL", "c1@atlanta.example.com", "alice"),
                unknown,
            ],
        )
        .await
        .unwrap();
    assert_eq!((ack.stored, ack.duplicate), (1, false));
    wait_for_rows(&db, "sip_capture_call_20260305", 2, WAIT)
        .await
        .unwrap();
    for (table, n) in [
        ("sip_capture_call_20260304", 2),
        ("sip_capture_rest_20260305", 1),
        ("rtcp_capture", 1),
    ] {
        wait_for_rows(&db, table, n, WAIT).await.unwrap();
    }
    let mut in_mode_after = 0;
    for t in &mode_tables {
        in_mode_after += count(&mdb, &format!("SELECT COUNT(*) AS n FROM {t}"))
            .await
            .unwrap();
    }
    assert_eq!(in_mode_after, 2);

    let counters = member_counters(storer.grpc).await.unwrap();
    assert_eq!(counters.get("discarded.rule"), Some(&1), "{counters:?}");
    assert_eq!(
        counters.get("dropped.unknown_capture_mode"),
        Some(&1),
        "{counters:?}"
    );
    assert!(
        counters.get("rows_truncated").copied().unwrap_or(0) >= 1,
        "{counters:?}"
    );
    assert_eq!(counters.get("batches_duplicate"), Some(&2), "{counters:?}");

    assert!(storer.process.terminate(Duration::from_secs(20)).unwrap());
    db.close().await.unwrap();
    mdb.close().await.unwrap();
    main_db.cleanup().await.unwrap();
    mode_db.cleanup().await.unwrap();
}

/// Two storers on one database create the same new dated table at the same moment: both
/// succeed and every row is there.
async fn two_storers_create_the_same_dated_table(engine: Engine) {
    let sandbox = Sandbox::new().unwrap();
    let Some(test_db) = TestDb::create(engine, &sandbox, "twice").await.unwrap() else {
        return;
    };
    let extra = "insert_retries = 50\ninsert_retry_timeout = 30\n";
    let a = start_storer(&sandbox, "storer-a", &test_db.url, extra)
        .await
        .unwrap();
    let b = start_storer(&sandbox, "storer-b", &test_db.url, extra)
        .await
        .unwrap();
    let t = micros(2026, 6, 1, 12, 0, 0);
    let run = |addr, stream: &'static str| async move {
        let mut d = Delivery::open(addr, "it-collector", stream).await.unwrap();
        for seq in 1..=5u64 {
            let records = (0..40)
                .map(|i| {
                    sip_record(
                        t + seq * 1000 + i,
                        "INVITE",
                        "INVITE",
                        &format!("{stream}-{seq}-{i}@x"),
                        "alice",
                    )
                })
                .collect();
            let ack = d.send(seq, records).await.unwrap();
            assert_eq!(ack.stored, 40);
        }
    };
    tokio::join!(run(a.grpc, "stream-a"), run(b.grpc, "stream-b"));
    let db = test_db.connect().await.unwrap();
    wait_for_rows(&db, "sip_capture_call_20260601", 400, WAIT)
        .await
        .unwrap();
    let distinct = count(
        &db,
        "SELECT COUNT(DISTINCT callid) AS n FROM sip_capture_call_20260601",
    )
    .await
    .unwrap();
    assert_eq!(distinct, 400);
    drop((a, b));
    db.close().await.unwrap();
    test_db.cleanup().await.unwrap();
}

/// `retention_days`: dated tables older than N days are dropped by the background task; recent
/// ones and undated tables stay.
async fn retention_drops_old_dated_tables(engine: Engine) {
    let sandbox = Sandbox::new().unwrap();
    let Some(test_db) = TestDb::create(engine, &sandbox, "ret").await.unwrap() else {
        return;
    };
    let extra = "retention_days = 2\nretention_interval = 1\n";
    let storer = start_storer(&sandbox, "storer", &test_db.url, extra)
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let day = |days_ago: i64| now - chrono::Duration::days(days_ago);
    let us = |t: chrono::DateTime<chrono::Utc>| u64::try_from(t.timestamp_micros()).unwrap();
    let name =
        |prefix: &str, t: chrono::DateTime<chrono::Utc>| format!("{prefix}{}", t.format("%Y%m%d"));
    let mut d = Delivery::open(storer.grpc, "it-collector", "ret-stream")
        .await
        .unwrap();
    let ack = d
        .send(
            1,
            vec![
                sip_record(us(day(10)), "INVITE", "INVITE", "old@x", "alice"),
                sip_record(us(day(3)), "OPTIONS", "OPTIONS", "old2@x", "alice"),
                sip_record(us(day(1)), "INVITE", "INVITE", "recent@x", "alice"),
                sip_record(us(day(0)), "REGISTER", "REGISTER", "today@x", "alice"),
                report_record(us(day(10)), 5, 3, "old@x"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(ack.stored, 5);
    let db = test_db.connect().await.unwrap();
    let old = [
        name("sip_capture_call_", day(10)),
        name("sip_capture_rest_", day(3)),
    ];
    let kept = [
        name("sip_capture_call_", day(1)),
        name("sip_capture_registration_", day(0)),
        "rtcp_capture".to_owned(),
        "sipcapture_stream_state".to_owned(),
    ];
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let tables = table_names(&db).await.unwrap();
        if old.iter().all(|t| !tables.contains(t)) {
            for t in &kept {
                assert!(tables.contains(t), "{t} dropped: {tables:?}");
            }
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "old tables still there: {tables:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(storer);
    db.close().await.unwrap();
    test_db.cleanup().await.unwrap();
}

/// A row the database refuses for its content (here a trigger's error, on every engine) fails
/// the fast multi-row path; the batch is then written row by row, the refused row is counted as
/// `dropped.row_rejected`, and the others commit with the stream state (a resend stores nothing).
async fn a_refused_row_is_isolated(engine: Engine) {
    use sea_orm::{ConnectionTrait, Statement};
    let sandbox = Sandbox::new().unwrap();
    let Some(test_db) = TestDb::create(engine, &sandbox, "poison").await.unwrap() else {
        return;
    };
    let storer = start_storer(&sandbox, "storer", &test_db.url, "")
        .await
        .unwrap();
    let t = micros(2026, 6, 2, 12, 0, 0);
    let table = "sip_capture_call_20260602";
    let mut d = Delivery::open(storer.grpc, "it-collector", "poison-stream")
        .await
        .unwrap();
    let first = vec![sip_record(t, "INVITE", "INVITE", "before@x", "alice")];
    assert_eq!(d.send(1, first).await.unwrap().stored, 1);
    let db = test_db.connect().await.unwrap();
    wait_for_rows(&db, table, 1, WAIT).await.unwrap();
    let backend = db.get_database_backend();
    let triggers: Vec<String> = match engine {
        Engine::Sqlite => vec![format!(
            "CREATE TRIGGER poison BEFORE INSERT ON {table} WHEN NEW.callid = 'poison@x' \
             BEGIN SELECT RAISE(ABORT, 'poison row refused'); END"
        )],
        Engine::Postgres => vec![
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.callid = 'poison@x' THEN RAISE EXCEPTION 'poison row refused'; END IF; \
             RETURN NEW; END $$"
                .to_owned(),
            format!(
                "CREATE TRIGGER poison BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION poison()"
            ),
        ],
        Engine::MySql => vec![format!(
            "CREATE TRIGGER poison BEFORE INSERT ON {table} FOR EACH ROW BEGIN \
             IF NEW.callid = 'poison@x' THEN \
             SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poison row refused'; END IF; END"
        )],
    };
    for sql in triggers {
        db.execute_raw(Statement::from_string(backend, sql))
            .await
            .unwrap();
    }
    let mut batch: Vec<_> = (0..9)
        .map(|i| sip_record(t + i, "INVITE", "INVITE", &format!("good-{i}@x"), "alice"))
        .collect();
    batch.insert(
        4,
        sip_record(t + 100, "INVITE", "INVITE", "poison@x", "alice"),
    );
    let ack = d.send(2, batch.clone()).await.unwrap();
    assert!(!ack.duplicate);
    wait_for_rows(&db, table, 10, WAIT).await.unwrap();
    let counters = member_counters(storer.grpc).await.unwrap();
    assert_eq!(
        counters.get("dropped.row_rejected"),
        Some(&1),
        "{counters:?}"
    );
    let poisoned = count(
        &db,
        &format!("SELECT COUNT(*) AS n FROM {table} WHERE callid = 'poison@x'"),
    )
    .await
    .unwrap();
    assert_eq!(poisoned, 0);
    // The stream state committed with the good rows: a resend is a duplicate, stores nothing.
    let resend = d.send(2, batch).await.unwrap();
    assert!(resend.duplicate);
    let total = count(&db, &format!("SELECT COUNT(*) AS n FROM {table}"))
        .await
        .unwrap();
    assert_eq!(total, 10);
    drop(storer);
    db.close().await.unwrap();
    test_db.cleanup().await.unwrap();
}

/// A forged batch far ahead of the stream's committed sequence (issue 21: 2^64 − 1 set the
/// state to i64::MAX and every later batch was acknowledged as already committed, silently
/// unstored) is refused: the stream ends with INVALID_ARGUMENT, nothing is stored, the state
/// stays, and the collector's next batches are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_far_ahead_is_refused_not_saturated() {
    let sandbox = Sandbox::new().unwrap();
    let test_db = TestDb::create(Engine::Sqlite, &sandbox, "seq")
        .await
        .unwrap()
        .unwrap();
    let storer = start_storer(&sandbox, "storer", &test_db.url, "")
        .await
        .unwrap();
    let t = micros(2026, 6, 3, 12, 0, 0);
    let table = "sip_capture_call_20260603";
    let record = |i: u64| sip_record(t + i, "INVITE", "INVITE", &format!("seq-{i}@x"), "alice");
    let mut real = Delivery::open(storer.grpc, "sbc1", "sbc1-stream")
        .await
        .unwrap();
    assert_eq!(real.send(1, vec![record(1)]).await.unwrap().stored, 1);
    drop(real);
    for forged in [u64::MAX, 1 + 1_000_001] {
        let mut attacker = Delivery::open(storer.grpc, "sbc1", "sbc1-stream")
            .await
            .unwrap();
        let refused = attacker
            .send(forged, vec![record(forged % 1000 + 100)])
            .await;
        let text = format!("{refused:?}");
        assert!(refused.is_err(), "{forged}: {text}");
        assert!(
            text.contains("InvalidArgument") || text.contains("beyond"),
            "{text}"
        );
    }
    let mut real = Delivery::open(storer.grpc, "sbc1", "sbc1-stream")
        .await
        .unwrap();
    assert_eq!(real.last_committed, 1, "the state was not moved");
    let ack = real.send(2, vec![record(2), record(3)]).await.unwrap();
    assert_eq!((ack.stored, ack.duplicate), (2, false));
    // Within the window (a collector restarted with a newly reserved block) is accepted.
    let ack = real.send(2 + 10_000, vec![record(4)]).await.unwrap();
    assert_eq!((ack.stored, ack.duplicate), (1, false));
    let db = test_db.connect().await.unwrap();
    wait_for_rows(&db, table, 4, WAIT).await.unwrap();
    let total = count(&db, &format!("SELECT COUNT(*) AS n FROM {table}"))
        .await
        .unwrap();
    assert_eq!(total, 4);
    drop(storer);
    db.close().await.unwrap();
}
