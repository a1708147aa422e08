//! Shared steps of the fault tests (`tests/faults_*.rs`): the table the paced load of
//! [`crate::hep::send_tcp_paced`] lands in, waiting for the first rows before a fault, and the
//! closing check that every packet is stored exactly once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use sea_orm::DatabaseConnection;

use crate::storer::count;
use crate::{count_rows, member_counters, wait_for_rows, wait_until};

/// Table of the OPTIONS that `send_tcp_paced` sends (HEP time 2026-01-15).
pub const TABLE: &str = "sip_capture_rest_20260115";

/// A member counter (0 when it has not moved).
pub fn counter(counters: &HashMap<String, u64>, key: &str) -> u64 {
    counters.get(key).copied().unwrap_or(0)
}

/// Waits until [`TABLE`] holds at least `n` rows: the load is flowing before the fault.
pub async fn wait_for_first_rows(db: &DatabaseConnection, n: u64) -> anyhow::Result<()> {
    wait_until("rows before the fault", Duration::from_secs(60), || async {
        Ok(count_rows(db, TABLE).await? >= n)
    })
    .await
}

/// Waits until [`TABLE`] holds exactly `expected` rows, then checks they carry `expected`
/// distinct Call-IDs (every packet once, no duplicates). `logs` is appended to a failure.
pub async fn stored_exactly_once(
    db: &DatabaseConnection,
    expected: u64,
    timeout: Duration,
    logs: impl Fn() -> String,
) -> anyhow::Result<()> {
    if let Err(e) = wait_for_rows(db, TABLE, expected, timeout).await {
        bail!("{e:#}\n{}", logs());
    }
    let distinct = count(
        db,
        &format!("SELECT COUNT(DISTINCT callid) AS n FROM {TABLE}"),
    )
    .await?;
    if distinct != expected {
        bail!("{expected} rows but {distinct} distinct Call-IDs: duplicates");
    }
    Ok(())
}

/// Waits until the collector at `addr` counts `n` records acknowledged (acknowledgements follow
/// the commits, so they may trail the rows by a moment); returns its counters then.
pub async fn wait_acked(addr: SocketAddr, n: u64) -> anyhow::Result<HashMap<String, u64>> {
    wait_until(
        "every record acknowledged",
        Duration::from_secs(30),
        || async { Ok(counter(&member_counters(addr).await?, "records_acked") >= n) },
    )
    .await?;
    member_counters(addr).await
}
