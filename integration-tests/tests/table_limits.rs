//! Table creation and payload limits against the real `sipcapture up` (SQLite always; PostgreSQL
//! and MariaDB when `TEST_PG_URL` / `TEST_MYSQL_URL` are set), reproducing the security
//! review's attacks and showing them bounded:
//!
//! - the date bomb: UDP INVITEs each dated another past day used to create a table (with its
//!   indexes) each, and the table cache lock held across that DDL delayed a valid packet by
//!   82 s. Now new tables for other days than the current ones are bounded by
//!   `max_new_tables_per_minute` (the records over it dropped and counted), a valid packet for
//!   an existing table is stored on time during the flood, records dated beyond
//!   `future_horizon` are refused and counted, and retention drops whatever dated tables
//!   exist, a 2106 one included;
//! - poison tables: a table that cannot be created or written (a view in its place, an
//!   incompatible schema) or a reserved name (`sqlite_x` from a Lua `sip_capture()`) no longer
//!   fails the whole batch on every retry: their records are dropped and counted by reason,
//!   the other tables' rows are stored, and the stream goes on; a reserved name in the config
//!   is refused at start-up with its key;
//! - inflate amplification: 40 zlib packets of about 1 KB inflating to 1 MB each are dropped
//!   by the default `max_inflated_payload` (64 KiB), and with a raised cap the stored message
//!   is still cut to `max_msg_size` (64 KiB), never a 1 MB row.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use sipcapture_integration_tests::hep::{hep3_compressed, hep3_sip, request, send_udp};
use sipcapture_integration_tests::prometheus::{Scrape, scrape};
use sipcapture_integration_tests::storer::{Engine, TestDb, count, table_names};
use sipcapture_integration_tests::{Sandbox, Up, count_rows, free_port, open_db, wait_for_rows};

/// Generous: the machine running the tests may be slow and busy.
const WAIT: Duration = Duration::from_secs(60);

const ENGINES: [Engine; 3] = [Engine::Sqlite, Engine::Postgres, Engine::MySql];

fn src() -> SocketAddr {
    "192.0.2.10:5060".parse().unwrap()
}

fn dst() -> SocketAddr {
    "192.0.2.20:5060".parse().unwrap()
}

/// A HEP3 packet of a SIP `method` at `ts` (seconds), told apart by `n`.
fn packet(method: &str, ts: u32, n: u32) -> Vec<u8> {
    let call_id = format!("limits-{method}-{n}@192.0.2.10");
    hep3_sip(
        src(),
        dst(),
        ts,
        n,
        2001,
        &request(method, &call_id, 1, &format!("t{n}"), None),
    )
}

/// Sends `packets` over UDP in small groups (a loopback burst must not overflow the socket
/// buffer: the test counts every packet).
async fn send_paced(target: SocketAddr, packets: &[Vec<u8>]) {
    for group in packets.chunks(25) {
        send_udp(target, group).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn now_secs() -> u32 {
    u32::try_from(chrono::Utc::now().timestamp()).unwrap()
}

fn day_of(ts: u32) -> String {
    chrono::DateTime::from_timestamp(i64::from(ts), 0)
        .unwrap()
        .format("%Y%m%d")
        .to_string()
}

/// `sipcapture up` on `db_url` with a Prometheus endpoint, plus `extra` arguments.
async fn up_with_metrics(
    sandbox: &Sandbox,
    db_url: &str,
    extra: &[String],
) -> anyhow::Result<(Up, SocketAddr)> {
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut args = vec![
        "--db-url".to_owned(),
        db_url.to_owned(),
        "--set".to_owned(),
        format!("metrics_listen={metrics}"),
    ];
    args.extend(extra.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let up = sandbox.up(&args).await?;
    Ok((up, metrics))
}

/// Sends REGISTERs (to today's registration table, returned; the tests do not count it) until
/// one is stored: the HEP listeners may bind a moment after gRPC health answers, and a UDP
/// packet sent before is lost.
async fn warm_up(up: &Up, db: &DatabaseConnection) -> String {
    let table = format!("sip_capture_registration_{}", day_of(now_secs()));
    let deadline = Instant::now() + WAIT;
    let mut n = 0;
    while count_rows(db, &table).await.unwrap() == 0 {
        assert!(
            Instant::now() < deadline,
            "no packet stored within {WAIT:?}\n{}",
            up.process.log_text()
        );
        send_udp(up.hep, &[packet("REGISTER", now_secs(), n)]).unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    table
}

/// The scrape once `done` holds for it; fails after `WAIT`.
async fn scrape_once(metrics: SocketAddr, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = scrape(metrics).await.unwrap();
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not within {WAIT:?}:\n{}",
            s.series
                .iter()
                .filter(|(k, v)| **v > 0.0
                    && (k.contains("dropped") || k.contains("rows_") || k.contains("discarded")))
                .map(|(k, v)| format!("{k} {v}\n"))
                .collect::<String>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn exec(db: &DatabaseConnection, sql: &str) {
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_string(backend, sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A sandbox with a fresh database of `engine` (`None`: the engine is not configured), opened
/// (SQLite: the file created) so tables can be made before `up`.
async fn fresh(engine: Engine, tag: &str) -> Option<(Sandbox, TestDb, DatabaseConnection)> {
    let sandbox = Sandbox::new().unwrap();
    let test_db = TestDb::create(engine, &sandbox, tag).await.unwrap()?;
    let db = if engine == Engine::Sqlite {
        open_db(&format!("{}?mode=rwc", test_db.url)).await.unwrap()
    } else {
        test_db.connect().await.unwrap()
    };
    Some((sandbox, test_db, db))
}

const FLOOD_DAYS: u32 = 300;
/// 2020-01-01 00:00:00 UTC: the flood's first day.
const FLOOD_START: u32 = 1_577_836_800;
const STORER_DROPPED: &str = "sipcapture_storer_dropped_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn date_bomb_is_bounded_and_a_current_packet_is_stored_on_time() {
    for engine in ENGINES {
        let Some((sandbox, test_db, db)) = fresh(engine, "datebomb").await else {
            continue;
        };
        // A future-dated table made before the limit (the review's 2106 one): retention must
        // see and drop it.
        exec(&db, "CREATE TABLE sip_capture_call_21060207 (id INTEGER)").await;

        // Default limits (60 new tables a minute, 10 at once; a horizon of 1 day); retention on (its first
        // sweep runs at start-up, the next in an hour: none during the flood).
        let (up, metrics) = up_with_metrics(
            &sandbox,
            &test_db.url,
            &["--set".into(), "storer.retention_days=30".into()],
        )
        .await
        .unwrap();
        let future_table = "sip_capture_call_21060207".to_owned();
        let deadline = Instant::now() + WAIT;
        while table_names(&db).await.unwrap().contains(&future_table) {
            assert!(Instant::now() < deadline, "{engine:?}: {future_table} kept");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // Today's call table exists before the flood.
        let now = now_secs();
        let today = format!("sip_capture_call_{}", day_of(now));
        let warm = warm_up(&up, &db).await;
        send_udp(up.hep, &[packet("INVITE", now, 1)]).unwrap();
        wait_for_rows(&db, &today, 1, WAIT).await.unwrap();
        // Rows stored before the flood: the warm-up REGISTERs (all committed before the INVITE:
        // a stream commits in order) and the INVITE.
        let before = count_rows(&db, &warm).await.unwrap() as f64 + 1.0;

        // The flood: one INVITE per past day, then three future-dated ones, then a valid one.
        let mut flood: Vec<Vec<u8>> = (0..FLOOD_DAYS)
            .map(|i| packet("INVITE", FLOOD_START + i * 86_400 + 3600, 1000 + i))
            .collect();
        let far_future = [now + 3 * 86_400, 1_893_456_000, 4_294_000_000];
        flood.extend(far_future.iter().map(|ts| packet("INVITE", *ts, 7)));
        let started = Instant::now();
        send_paced(up.hep, &flood).await;
        send_udp(up.hep, &[packet("INVITE", now_secs(), 2)]).unwrap();
        wait_for_rows(&db, &today, 2, WAIT).await.unwrap();
        let on_time = started.elapsed();
        eprintln!("{engine:?}: the valid packet sent after the flood stored after {on_time:?}");
        assert!(
            on_time < Duration::from_secs(20),
            "{engine:?}: the valid packet took {on_time:?}"
        );

        // Every flood record is either stored (its table admitted) or dropped and counted.
        let s = scrape_once(metrics, "every flood record accounted for", |s| {
            let stored = s.get("sipcapture_storer_rows_stored_total{family=\"sip\"}");
            let over = s.get(&format!("{STORER_DROPPED}{{reason=\"table_budget\"}}"));
            stored - before - 1.0 + over >= f64::from(FLOOD_DAYS)
                && s.get(&format!("{STORER_DROPPED}{{reason=\"future_date\"}}")) >= 3.0
        })
        .await;
        let elapsed = started.elapsed().as_secs_f64();
        let stored = s.get("sipcapture_storer_rows_stored_total{family=\"sip\"}") - before - 1.0;
        let over = s.get(&format!("{STORER_DROPPED}{{reason=\"table_budget\"}}"));
        let future = s.get(&format!("{STORER_DROPPED}{{reason=\"future_date\"}}"));
        eprintln!(
            "{engine:?}: {FLOOD_DAYS} days: {stored} stored in new tables, {over} over the budget, \
             {future} beyond the horizon, in {elapsed:.1} s"
        );
        assert_eq!(stored + over, f64::from(FLOOD_DAYS));
        // At most 10 at once, then 60 a minute.
        assert!(
            stored <= 10.0 + elapsed + 1.0,
            "{engine:?}: {stored} new tables in {elapsed:.1} s"
        );
        assert!(stored >= 10.0, "{engine:?}: {stored}");
        assert_eq!(future, 3.0);

        // The database holds exactly the admitted tables (each with its one row).
        let names = table_names(&db).await.unwrap();
        let old_tables = names
            .iter()
            .filter(|n| n.starts_with("sip_capture_call_20") && **n != today)
            .count();
        assert_eq!(old_tables as f64, stored, "{engine:?}: {names:?}");
        for ts in far_future {
            let future_table = format!("sip_capture_call_{}", day_of(ts));
            assert_eq!(count_rows(&db, &future_table).await.unwrap(), 0);
        }
        assert_eq!(count_rows(&db, &today).await.unwrap(), 2);
        drop(up);
        test_db.cleanup().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_of_many_past_days_keeps_every_record_and_table() {
    // 30 days of 2025, one INVITE each: beyond the burst of new tables live input gets, but an
    // import (the operator's own capture) is exempt.
    let sandbox = Sandbox::new().unwrap();
    let days = 30u32;
    let start = 1_735_732_800; // 2025-01-01 12:00:00 UTC
    let frames: Vec<(u32, Vec<u8>)> = (0..days)
        .map(|i| {
            let sip = request("INVITE", &format!("import-{i}@192.0.2.10"), 1, "t", None);
            (start + i * 86_400, sip)
        })
        .collect();
    let pcap = sandbox.path().join("days.pcap");
    sipcapture_integration_tests::pcap::write_udp(&pcap, 5060, &frames).unwrap();
    let db_url = format!("sqlite://{}", sandbox.path().join("import.db").display());
    let args = [
        "import".to_owned(),
        pcap.display().to_string(),
        "--db".to_owned(),
        db_url.clone(),
    ];
    let mut process = sandbox.spawn("import", "sipcapture", &args).unwrap();
    let deadline = Instant::now() + WAIT;
    while process.is_running() {
        assert!(Instant::now() < deadline, "import did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let db = open_db(&db_url).await.unwrap();
    let names = table_names(&db).await.unwrap();
    for (ts, _) in &frames {
        let table = format!("sip_capture_call_{}", day_of(*ts));
        assert_eq!(
            count_rows(&db, &table).await.unwrap(),
            1,
            "{table}: {names:?}\n{}",
            process.log_text()
        );
    }
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_table_does_not_poison_the_batch() {
    for engine in ENGINES {
        let Some((sandbox, test_db, db)) = fresh(engine, "poison").await else {
            continue;
        };
        // A view where a table is expected (no index, no insert) and a table of another schema.
        exec(&db, "CREATE VIEW broken_view AS SELECT 1 AS x").await;
        exec(&db, "CREATE TABLE odd_table (x INTEGER NOT NULL)").await;
        let script = write_file(
            sandbox.path(),
            "hook.lua",
            r#"
function ksr_sipcapture_event(evname, hep)
  if hep.method == "INFO" then
    sip_capture("sqlite_x")
  end
  return 1
end
"#,
        );
        let config = write_file(
            sandbox.path(),
            "up.toml",
            r#"
[[storer.route]]
match = { method = "MESSAGE" }
table = "broken_view"

[[storer.route]]
match = { method = "NOTIFY" }
table = "odd_table"
"#,
        );
        let (up, metrics) = up_with_metrics(
            &sandbox,
            &test_db.url,
            &[
                "--config".into(),
                config,
                "--set".into(),
                "collector.nonsip_hook=1".into(),
                "--set".into(),
                format!("collector.script_file={script}"),
                "--set".into(),
                "collector.event_callback=ksr_sipcapture_event".into(),
            ],
        )
        .await
        .unwrap();

        // The listeners are up once a first packet is stored.
        let now = now_secs();
        let rest = format!("sip_capture_rest_{}", day_of(now));
        let _warm = warm_up(&up, &db).await;
        send_udp(up.hep, &[packet("OPTIONS", now, 100)]).unwrap();
        wait_for_rows(&db, &rest, 1, WAIT).await.unwrap();

        // One burst (one batch or a few): good records among three kinds of poison.
        let mut burst = Vec::new();
        for n in 0..5 {
            for method in ["OPTIONS", "MESSAGE", "NOTIFY", "INFO"] {
                burst.push(packet(method, now, n));
            }
        }
        send_udp(up.hep, &burst).unwrap();
        if let Err(e) = wait_for_rows(&db, &rest, 6, WAIT).await {
            let rows = sipcapture_integration_tests::storer::text_rows(
                &db,
                &rest,
                &["method", "callid"],
                "1=1",
                "id",
            )
            .await;
            panic!("{e}: {rows:?}\n{}", up.process.log_text());
        }
        let s = scrape_once(metrics, "every poisoned record counted", |s| {
            s.get(&format!(
                "{STORER_DROPPED}{{reason=\"reserved_table_name\"}}"
            )) >= 5.0
                && s.get(&format!("{STORER_DROPPED}{{reason=\"table_failed\"}}"))
                    + s.get(&format!("{STORER_DROPPED}{{reason=\"row_rejected\"}}"))
                    >= 10.0
        })
        .await;
        eprintln!(
            "{engine:?}: reserved {}, table_failed {}, row_rejected {}",
            s.get(&format!(
                "{STORER_DROPPED}{{reason=\"reserved_table_name\"}}"
            )),
            s.get(&format!("{STORER_DROPPED}{{reason=\"table_failed\"}}")),
            s.get(&format!("{STORER_DROPPED}{{reason=\"row_rejected\"}}")),
        );
        // The odd table's rows fail on insert (its columns), counted per row.
        assert!(s.get(&format!("{STORER_DROPPED}{{reason=\"row_rejected\"}}")) >= 5.0);
        // A batch holding only a failing table's record is acknowledged too.
        let failed_before = s.get(&format!("{STORER_DROPPED}{{reason=\"table_failed\"}}"))
            + s.get(&format!("{STORER_DROPPED}{{reason=\"row_rejected\"}}"));
        send_udp(up.hep, &[packet("MESSAGE", now_secs(), 98)]).unwrap();
        scrape_once(metrics, "the lone MESSAGE counted", |s| {
            s.get(&format!("{STORER_DROPPED}{{reason=\"table_failed\"}}"))
                + s.get(&format!("{STORER_DROPPED}{{reason=\"row_rejected\"}}"))
                > failed_before
        })
        .await;
        // Nothing was retried forever: the stream goes on.
        send_udp(up.hep, &[packet("OPTIONS", now_secs(), 99)]).unwrap();
        wait_for_rows(&db, &rest, 7, WAIT).await.unwrap();
        assert_eq!(
            count(&db, "SELECT COUNT(*) AS n FROM odd_table")
                .await
                .unwrap(),
            0
        );
        let names = table_names(&db).await.unwrap();
        assert!(!names.iter().any(|n| n == "sqlite_x"), "{names:?}");
        let s = scrape(metrics).await.unwrap();
        assert_eq!(s.get("sipcapture_storer_insert_failed_total"), 0.0);
        drop(up);
        test_db.cleanup().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_table_names_are_refused_at_start_up() {
    let sandbox = Sandbox::new().unwrap();
    for (key, config) in [
        (
            "storer.route[0].table",
            "[[storer.route]]\nmatch = { method = \"INFO\" }\ntable = \"pg_evil\"\n",
        ),
        ("storer.table_name", "[storer]\ntable_name = \"sqlite_x\"\n"),
        (
            "storer.rtcp_table",
            "[storer]\nrtcp_table = \"sipcapture_stream_state\"\n",
        ),
    ] {
        let path = write_file(sandbox.path(), "bad.toml", config);
        let err = sandbox
            .up(&["--config", &path])
            .await
            .expect_err("a reserved table name must be refused");
        let text = format!("{err:#}");
        assert!(text.contains(key), "{key}: {text}");
        assert!(text.contains("reserved prefix"), "{key}: {text}");
    }
}

/// A HEP3 SIP packet whose payload is a 1 MB INVITE sent zlib-compressed (chunk 0x0010).
fn inflate_bomb(n: u32, ts: u32) -> Vec<u8> {
    let body = vec![b'a'; 1 << 20];
    let mut sip = format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKbomb{n}\r\n\
         To: Bob <sip:bob@biloxi.example.com>\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=bomb{n}\r\n\
         Call-ID: bomb-{n}@192.0.2.10\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    sip.extend_from_slice(&body);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&sip).unwrap();
    let compressed = z.finish().unwrap();
    hep3_compressed(src(), dst(), (ts, n), 2001, &compressed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inflated_payloads_are_not_stored_as_megabyte_rows() {
    let now = now_secs();
    let bombs: Vec<Vec<u8>> = (0..40).map(|n| inflate_bomb(n, now)).collect();
    let sizes: Vec<usize> = bombs.iter().map(Vec::len).collect();
    eprintln!(
        "40 packets of {}..{} bytes",
        sizes.iter().min().unwrap(),
        sizes.iter().max().unwrap()
    );
    assert!(sizes.iter().all(|s| *s < 4096));
    let call = format!("sip_capture_call_{}", day_of(now));

    // Default cap (64 KiB): every bomb is dropped by the collector and counted.
    let sandbox = Sandbox::new().unwrap();
    let db_url = format!("sqlite://{}", sandbox.path().join("a.db").display());
    let (up, metrics) = up_with_metrics(&sandbox, &db_url, &[]).await.unwrap();
    let db = open_db(&db_url).await.unwrap();
    let _warm = warm_up(&up, &db).await;
    send_udp(up.hep, &[packet("INVITE", now, 1)]).unwrap();
    wait_for_rows(&db, &call, 1, WAIT).await.unwrap();
    send_paced(up.hep, &bombs).await;
    scrape_once(metrics, "40 payload_too_large drops", |s| {
        s.get("sipcapture_collector_dropped_total{reason=\"payload_too_large\"}") >= 40.0
    })
    .await;
    send_udp(up.hep, &[packet("INVITE", now, 2)]).unwrap();
    wait_for_rows(&db, &call, 2, WAIT).await.unwrap();
    drop(up);

    // An operator raises the inflate cap to 2 MiB: the stored message is still cut to
    // max_msg_size (64 KiB), the rows kept and counted.
    for engine in ENGINES {
        let Some((sandbox, test_db, db)) = fresh(engine, "inflate").await else {
            continue;
        };
        let (up, metrics) = up_with_metrics(
            &sandbox,
            &test_db.url,
            &[
                "--set".into(),
                "collector.max_inflated_payload=2097152".into(),
            ],
        )
        .await
        .unwrap();
        let _warm = warm_up(&up, &db).await;
        send_paced(up.hep, &bombs).await;
        wait_for_rows(&db, &call, 40, WAIT).await.unwrap();
        let int = if engine == Engine::MySql {
            "SIGNED"
        } else {
            "BIGINT"
        };
        let longest = count(
            &db,
            &format!("SELECT CAST(MAX(LENGTH(msg)) AS {int}) AS n FROM {call}"),
        )
        .await
        .unwrap();
        let total = count(
            &db,
            &format!("SELECT CAST(SUM(LENGTH(msg)) AS {int}) AS n FROM {call}"),
        )
        .await
        .unwrap();
        eprintln!("{engine:?}: 40 rows, longest msg {longest} bytes, {total} bytes in all");
        assert_eq!(longest, 65_536);
        assert!(total <= 40 * 65_536);
        let s = scrape(metrics).await.unwrap();
        assert_eq!(s.get("sipcapture_storer_msg_truncated_total"), 40.0);
        drop(up);
        test_db.cleanup().await.unwrap();
    }
}
