//! Group commit (`Batcher::commit_group`): batches of a stream that arrive together commit in one
//! transaction, each gets its own acknowledgement in order, resends are recognised, and a group
//! that another storer partly committed meanwhile falls back to one batch at a time — nothing
//! lost, nothing stored twice. SQLite in a temporary file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use sea_orm::{ConnectionTrait, Statement};
use sipcapture_proto::v1::{CaptureRecord, HepMeta, RecordBatch, RecordKind, SipFields};
use sipcapture_runtime::status::CaptureSwitch;
use sipcapture_storer::Storer;
use sipcapture_storer::config::StorerConfig;
use tokio_util::sync::CancellationToken;

const PER_BATCH: usize = 3;

fn batch(sequence: u64) -> RecordBatch {
    let records = (0..PER_BATCH)
        .map(|i| {
            let call_id = format!("group-{sequence}-{i}@example.com");
            CaptureRecord {
                capture_time_us: 1_782_900_000_000_000 + sequence * 1000 + i as u64,
                time_from_packet: true,
                family: 2,
                transport: 1,
                src_ip: vec![192, 0, 2, 10],
                src_port: 5060,
                dst_ip: vec![192, 0, 2, 20],
                dst_port: 5060,
                node: "group:1".into(),
                kind: RecordKind::Sip as i32,
                hep: Some(HepMeta {
                    version: 3,
                    payload_type: 1,
                    ..Default::default()
                }),
                payload: format!("OPTIONS sip:b@example.com SIP/2.0\r\nCall-ID: {call_id}\r\n\r\n")
                    .into_bytes(),
                sip: Some(SipFields {
                    msg_type: 1,
                    method: "OPTIONS".into(),
                    callid: call_id.clone(),
                    cseq: "1 OPTIONS".into(),
                    cseq_method: "OPTIONS".into(),
                    correlation_id: call_id,
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    RecordBatch {
        sequence,
        records,
        ..Default::default()
    }
}

async fn storer(dir: &tempfile::TempDir) -> Storer {
    let config = StorerConfig {
        db_url: format!("sqlite://{}", dir.path().join("group.db").display()),
        homer5_split: Some(false),
        table_name: Some("group_rows".into()),
        ..StorerConfig::default()
    };
    Storer::build(
        &config,
        Arc::new(CaptureSwitch::new(true)),
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

async fn rows(storer: &Storer) -> i64 {
    let writer = storer.intake.batcher.default_writer().unwrap();
    let db = writer.db();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM group_rows",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

#[tokio::test]
async fn a_group_commits_together_and_acks_each_batch_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let storer = storer(&dir).await;
    let batcher = &storer.intake.batcher;
    let group: Vec<RecordBatch> = (1..=5).map(batch).collect();
    let acks = batcher.commit_group("s1", "c1", 0, &group).await.unwrap();
    let sequences: Vec<u64> = acks.iter().map(|a| a.sequence).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5]);
    assert!(acks.iter().all(|a| !a.duplicate && a.stored == 3));
    assert_eq!(rows(&storer).await, 15);
    let writer = batcher.default_writer().unwrap();
    assert_eq!(writer.last_committed("s1").await.unwrap(), 5);

    // Resends at the head of a group are recognised; the rest commit.
    let group: Vec<RecordBatch> = (4..=7).map(batch).collect();
    let acks = batcher.commit_group("s1", "c1", 5, &group).await.unwrap();
    let seen: Vec<(u64, bool)> = acks.iter().map(|a| (a.sequence, a.duplicate)).collect();
    assert_eq!(seen, [(4, true), (5, true), (6, false), (7, false)]);
    assert_eq!(rows(&storer).await, 21);
    assert_eq!(writer.last_committed("s1").await.unwrap(), 7);
}

#[tokio::test]
async fn a_group_partly_committed_elsewhere_commits_batch_by_batch() {
    let dir = tempfile::tempdir().unwrap();
    let storer = storer(&dir).await;
    let batcher = &storer.intake.batcher;
    // Another storer took this stream over and committed up to 9 after our Welcome said 7.
    let taken: Vec<RecordBatch> = (1..=9).map(batch).collect();
    batcher.commit_group("s2", "c1", 0, &taken).await.unwrap();
    assert_eq!(rows(&storer).await, 27);
    let group: Vec<RecordBatch> = (8..=11).map(batch).collect();
    let acks = batcher.commit_group("s2", "c1", 7, &group).await.unwrap();
    let seen: Vec<(u64, u32)> = acks.iter().map(|a| (a.sequence, a.stored)).collect();
    assert_eq!(
        seen,
        [(8, 0), (9, 0), (10, 3), (11, 3)],
        "8 and 9 not stored twice"
    );
    assert_eq!(rows(&storer).await, 33);
    let writer = batcher.default_writer().unwrap();
    assert_eq!(writer.last_committed("s2").await.unwrap(), 11);
}
