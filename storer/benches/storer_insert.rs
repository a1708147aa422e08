//! Rows/s from the storer alone into each database: batches of 500 realistic SIP records
//! (~800-byte messages, every column source filled) through `Batcher::commit_batch` — routing,
//! row building, one transaction per batch with the stream state — without gRPC.
//!
//! ```sh
//! TEST_PG_URL=postgres://postgres@127.0.0.1:5432/test \
//! TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test \
//!   cargo bench -p sipcapture-storer --bench storer_insert
//! ```
//! Each database runs twice: HOMER 5 (`sip_capture` columns) and `schema = "homer7"` (heplify-
//! server's JSON rows into a partitioned `hep_proto_1_call`-shaped table on PostgreSQL).
//! SQLite always runs (a temporary file); PostgreSQL and MySQL when their URL is set. Each run
//! writes into a table of its own (`bench_<random>`) and drops it at the end. On PostgreSQL the
//! same rows also go through a raw `COPY … FROM STDIN` (text format, prepared before the clock
//! starts, one COPY per batch: one transaction each, like ours) into a twin table with the same
//! indexes — the practical limit our path is measured against.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Statement};
use sipcapture_proto::v1::{CaptureRecord, HepMeta, RecordBatch, RecordKind, Routing, SipFields};
use sipcapture_runtime::status::CaptureSwitch;
use sipcapture_storer::Storer;
use sipcapture_storer::config::StorerConfig;
use sipcapture_storer::pipeline::mode::StorageSchema;
use tokio_util::sync::CancellationToken;

const BATCH: usize = 500;
const BATCHES: u64 = 40;

fn record(seq: u64, i: usize) -> CaptureRecord {
    let call_id = format!("{seq:08x}{i:04x}-a84b4c76e66710@pc33.atlanta.example.com");
    let payload = format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\nMax-Forwards: 70\r\n\
         To: Bob <sip:bob@biloxi.example.com>\r\nFrom: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         Call-ID: {call_id}\r\nCSeq: 314159 INVITE\r\nContact: <sip:alice@pc33.atlanta.example.com>\r\n\
         Content-Type: application/sdp\r\nUser-Agent: bench/1.0\r\nContent-Length: 300\r\n\r\n\
         v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\ns=-\r\n\
         c=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0 8 97 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\na=rtpmap:97 iLBC/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\na=x:{}\r\n",
        "p".repeat(150)
    );
    CaptureRecord {
        capture_time_us: 1_782_900_000_000_000 + seq * 1000 + i as u64,
        time_from_packet: true,
        family: 2,
        transport: 1,
        src_ip: vec![192, 0, 2, 10],
        src_port: 5060,
        dst_ip: vec![192, 0, 2, 20],
        dst_port: 5080,
        node: "bench:1".into(),
        kind: RecordKind::Sip as i32,
        hep: Some(HepMeta {
            version: 3,
            payload_type: 1,
            ..Default::default()
        }),
        payload: payload.into_bytes(),
        sip: Some(SipFields {
            msg_type: 1,
            method: "INVITE".into(),
            ruri: "sip:bob@biloxi.example.com".into(),
            ruri_user: "bob".into(),
            ruri_domain: "biloxi.example.com".into(),
            from_user: "alice".into(),
            from_domain: "atlanta.example.com".into(),
            from_tag: "1928301774".into(),
            to_user: "bob".into(),
            to_domain: "biloxi.example.com".into(),
            contact_user: "alice".into(),
            callid: call_id.clone(),
            via_1: "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds".into(),
            via_1_branch: "z9hG4bK776asdhds".into(),
            cseq: "314159 INVITE".into(),
            cseq_method: "INVITE".into(),
            content_type: "application/sdp".into(),
            user_agent: "bench/1.0".into(),
            contact_ip: "pc33.atlanta.example.com".into(),
            correlation_id: call_id,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn bench(label: &str, db_url: &str, schema: StorageSchema) {
    let table = format!("bench_{:08x}", rand::random::<u32>());
    let config = StorerConfig {
        db_url: db_url.to_owned(),
        homer5_split: Some(false),
        table_name: Some(table.clone()),
        schema,
        ..StorerConfig::default()
    };
    let homer7 = schema == StorageSchema::Homer7;
    let label = if homer7 {
        format!("{label} h7")
    } else {
        label.to_owned()
    };
    let storer = Storer::build(
        &config,
        Arc::new(CaptureSwitch::new(true)),
        CancellationToken::new(),
    )
    .await
    .expect("storer");
    let batches: Vec<RecordBatch> = (1..=BATCHES)
        .map(|seq| RecordBatch {
            sequence: seq,
            records: (0..BATCH)
                .map(|i| {
                    let mut r = record(seq, i);
                    // HOMER 7: the bench's own partitioned table (hep_proto_1_call's schema).
                    if homer7 {
                        r.routing = Some(Routing {
                            table: table.clone(),
                            ..Default::default()
                        });
                    }
                    r
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    let msg_bytes = batches[0].records[0].payload.len();
    let stream = format!("bench-{table}");
    // One warm-up batch creates the table.
    storer
        .intake
        .batcher
        .commit_batch(&stream, "bench", 0, &batches[0])
        .await
        .unwrap();
    let start = Instant::now();
    let mut rows = 0u64;
    for (i, batch) in batches.iter().enumerate().skip(1) {
        let ack = storer
            .intake
            .batcher
            .commit_batch(&stream, "bench", i as u64, batch)
            .await
            .unwrap();
        rows += u64::from(ack.stored);
    }
    let elapsed: Duration = start.elapsed();
    println!(
        "{label:<11} {rows} rows in {:>6.2} s = {:>7.0} rows/s ({} batches of {BATCH}, msg {msg_bytes} B, {:.1} ms/batch)",
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64(),
        BATCHES - 1,
        elapsed.as_secs_f64() * 1000.0 / (BATCHES - 1) as f64
    );
    let db = storer.intake.batcher.writers[0].db();
    let backend = db.get_database_backend();
    if backend == sea_orm::DbBackend::Postgres {
        copy_rate(db, &table, &batches[1..], homer7).await;
    }
    let _ignored = db
        .execute_raw(Statement::from_string(
            backend,
            format!("DROP TABLE IF EXISTS {table}"),
        ))
        .await;
}

/// The same rows through `COPY … FROM STDIN` into a twin of `table` (same columns and indexes);
/// HOMER 7: into `table` itself (the same partitioned parent, partitions and indexes).
async fn copy_rate(
    db: &sea_orm::DatabaseConnection,
    table: &str,
    batches: &[RecordBatch],
    homer7: bool,
) {
    use sea_orm::sqlx::postgres::PgPoolCopyExt;
    use sipcapture_storer::table::{TableFamily, columns};
    let family = if homer7 {
        TableFamily::HepSip
    } else {
        TableFamily::Sip
    };
    let twin = if homer7 {
        table.to_owned()
    } else {
        let twin = format!("{table}_copy");
        db.execute_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("CREATE TABLE {twin} (LIKE {table} INCLUDING ALL)"),
        ))
        .await
        .unwrap();
        twin
    };
    let cols = columns(family);
    let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
    let statement = format!("COPY {twin} ({}) FROM STDIN", names.join(", "));
    let texts: Vec<String> = batches
        .iter()
        .map(|batch| {
            let mut text = String::new();
            for record in &batch.records {
                let mut cells = Vec::new();
                let cut = sipcapture_storer::pipeline::rows::Cut {
                    custom_keys: &[],
                    max_msg_size: usize::MAX,
                };
                sipcapture_storer::pipeline::rows::row(record, family, &cut, &mut cells);
                let fields: Vec<String> = cells
                    .iter()
                    .map(|c| copy_text(&sipcapture_storer::db::insert::value(c)))
                    .collect();
                text.push_str(&fields.join("\t"));
                text.push('\n');
            }
            text
        })
        .collect();
    let pool = db.get_postgres_connection_pool();
    let start = Instant::now();
    let mut rows = 0u64;
    for text in &texts {
        let mut copy = pool.copy_in_raw(&statement).await.unwrap();
        copy.send(text.as_bytes()).await.unwrap();
        rows += copy.finish().await.unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "{:<11} {rows} rows in {:>6.2} s = {:>7.0} rows/s (raw COPY, one per batch, same rows and indexes)",
        if homer7 { "pg COPY h7" } else { "pg COPY" },
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64(),
    );
    let _ignored = db
        .execute_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("DROP TABLE IF EXISTS {twin}"),
        ))
        .await;
}

/// A value in COPY's text format: `\N` for NULL, backslash escapes for the special bytes.
fn copy_text(value: &sea_orm::Value) -> String {
    use sea_orm::Value;
    let escape = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
    };
    match value {
        Value::String(Some(s)) => escape(s),
        Value::Int(Some(n)) => n.to_string(),
        Value::BigInt(Some(n)) => n.to_string(),
        Value::ChronoDateTime(Some(dt)) => dt.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        Value::Bytes(Some(b)) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("\\\\x{hex}")
        }
        _ => "\\N".to_owned(),
    }
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    for schema in [StorageSchema::Homer5, StorageSchema::Homer7] {
        bench("sqlite", &sqlite, schema).await;
        for (label, var) in [("postgres", "TEST_PG_URL"), ("mysql", "TEST_MYSQL_URL")] {
            match std::env::var(var) {
                Ok(url) if !url.is_empty() => bench(label, &url, schema).await,
                _ => println!("{label:<10} skipped: {var} is not set"),
            }
        }
    }
}
