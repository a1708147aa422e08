//! The table of SIP records no routing rule matches, with the real storer on SQLite: an
//! explicit `table_name` list (with `mt_mode = hash`) is used unless `homer5_split = true` is set
//! explicitly; with neither key set the HOMER 5 split applies. The start-up log names the choice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sipcapture_integration_tests::Sandbox;
use sipcapture_integration_tests::storer::{
    Delivery, Engine, TestDb, count, micros, sip_record, start_storer, table_names,
};

/// Stores six INVITEs (distinct Call-IDs) through a storer with `extra` config; returns the
/// SIP tables holding rows and the storer's log.
async fn store_with(tag: &str, extra: &str) -> (Vec<(String, u64)>, String) {
    let sandbox = Sandbox::new().unwrap();
    let db = TestDb::create(Engine::Sqlite, &sandbox, tag)
        .await
        .unwrap()
        .unwrap();
    let mut storer = start_storer(&sandbox, tag, &db.url, extra).await.unwrap();
    let mut delivery = Delivery::open(storer.grpc, "it-collector", "it-stream")
        .await
        .unwrap();
    let time = micros(2026, 12, 6, 3, 0, 0);
    let records = (0..6)
        .map(|i| sip_record(time, "INVITE", "INVITE", &format!("call-{i}@it"), "alice"))
        .collect();
    delivery
        .send(delivery.last_committed + 1, records)
        .await
        .unwrap();
    let conn = db.connect().await.unwrap();
    let mut tables = Vec::new();
    for table in table_names(&conn).await.unwrap() {
        if table.starts_with("shard_") || table.starts_with("sip_capture") {
            let rows = count(&conn, &format!("SELECT COUNT(*) AS n FROM {table}"))
                .await
                .unwrap();
            if rows > 0 {
                tables.push((table, rows));
            }
        }
    }
    tables.sort();
    let log = storer.process.log_text();
    storer.process.terminate(Duration::from_secs(10)).unwrap();
    (tables, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_table_name_is_used_unless_homer5_split_is_set() {
    // Kamailio's sharding: table_name=a|b|c with mt_mode=hash, no homer5_split.
    let (tables, log) = store_with(
        "shards",
        "table_name = \"shard_a|shard_b|shard_c\"\nmt_mode = \"hash\"\n",
    )
    .await;
    assert!(
        tables.iter().all(|(t, _)| t.starts_with("shard_")),
        "{tables:?}"
    );
    assert_eq!(tables.iter().map(|(_, n)| n).sum::<u64>(), 6, "{tables:?}");
    assert!(tables.len() >= 2, "hashing spreads six calls: {tables:?}");
    assert!(
        log.contains("table_name \"shard_a|shard_b|shard_c\" (mt_mode hash)"),
        "{log}"
    );

    // homer5_split = true set explicitly: the split wins over the list.
    let (tables, log) = store_with(
        "split",
        "table_name = \"shard_a|shard_b|shard_c\"\nmt_mode = \"hash\"\nhomer5_split = 1\n",
    )
    .await;
    assert_eq!(
        tables,
        vec![("sip_capture_call_20261206".to_owned(), 6)],
        "{log}"
    );
    assert!(log.contains("HOMER 5 split"), "{log}");
    assert!(log.contains("because homer5_split is set"), "{log}");

    // Neither key: the HOMER 5 split, as before.
    let (tables, log) = store_with("default", "").await;
    assert_eq!(tables, vec![("sip_capture_call_20261206".to_owned(), 6)]);
    assert!(
        log.contains("because default: neither table_name nor homer5_split is set"),
        "{log}"
    );
}
