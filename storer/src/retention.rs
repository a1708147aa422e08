//! Retention: dated tables (`sip_capture_call_%Y%m%d`, ...) older than `retention_days` are
//! dropped, at start-up and then every `retention_interval`, on every capture mode's database.
//! A table is recognised by parsing its name with a configured [`DatedPattern`]: only names that
//! the pattern produces exactly, with a full date, are candidates. The SQL (listing, dropping)
//! is in [`crate::db::tables`].

use chrono::{Days, NaiveDate};
use tokio_util::sync::CancellationToken;

use crate::db::tables::list_tables;
use crate::pipeline::write::Writer;
use crate::table::{DatedPattern, Partitioning, TableFamily};

/// HOMER 7 upkeep of the capture modes that write `hep_proto_*` tables: their partitions are
/// created ahead and, with `retention_days`, dropped (PostgreSQL) or emptied of old rows
/// (SQLite, MySQL) when older than the retention.
#[derive(Debug, Clone)]
pub struct Homer7Upkeep {
    /// The writers of the HOMER 7 modes.
    pub writers: Vec<std::sync::Arc<Writer>>,
    /// Parent tables with their family and partition length.
    pub parents: Vec<(String, TableFamily, Partitioning)>,
    /// Days of partitions created after today's.
    pub ahead_days: u32,
}

/// One HOMER 7 sweep at `now`: partitions from now to the end of `ahead_days` after today,
/// then (when `days` > 0) everything before midnight `days` days ago goes.
pub async fn homer7_sweep(upkeep: &Homer7Upkeep, days: u32, now: chrono::DateTime<chrono::Utc>) {
    let midnight = now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
    let until = midnight + chrono::Duration::days(i64::from(upkeep.ahead_days) + 1)
        - chrono::Duration::seconds(1);
    for writer in &upkeep.writers {
        match writer.precreate(&upkeep.parents, now, until).await {
            Ok(n) => tracing::debug!(
                mode = writer.mode(),
                partitions = n,
                "HOMER 7 partitions ready"
            ),
            Err(e) => {
                tracing::warn!(mode = writer.mode(), error = %e, "creating HOMER 7 partitions failed")
            }
        }
        if days == 0 {
            continue;
        }
        let cutoff = midnight - chrono::Duration::days(i64::from(days));
        match writer.expire_homer7(&upkeep.parents, cutoff).await {
            Ok(done) => {
                for what in done {
                    tracing::info!(
                        mode = writer.mode(),
                        what,
                        "HOMER 7 data dropped by retention"
                    );
                }
            }
            Err(e) => tracing::warn!(mode = writer.mode(), error = %e, "HOMER 7 retention failed"),
        }
    }
}

/// Whether `table` is a dated table of one of `patterns` older than `days` days before
/// `today` (UTC), or dated more than `future_days` after it (a table live input can no longer
/// create, `future_horizon`: one made before that limit, e.g. by a forged HEP timestamp in
/// 2106, would otherwise stay forever). Today's table and the `days` before it are kept.
pub fn expired(
    patterns: &[DatedPattern],
    table: &str,
    days: u32,
    future_days: Option<u64>,
    today: NaiveDate,
) -> bool {
    let Some(cutoff) = today.checked_sub_days(Days::new(u64::from(days))) else {
        return false;
    };
    let latest = future_days.and_then(|n| today.checked_add_days(Days::new(n)));
    patterns
        .iter()
        .filter_map(|p| p.date_of(table))
        .any(|date| date < cutoff || latest.is_some_and(|latest| date > latest))
}

/// The days after today a live record may be dated: `future_horizon` seconds rounded up to
/// whole days (`None`: no horizon).
pub fn future_days(future_horizon: u64) -> Option<u64> {
    (future_horizon > 0).then(|| future_horizon.div_ceil(86_400))
}

/// One sweep over one database: drops the expired tables, returns their names.
pub async fn sweep(
    writer: &Writer,
    patterns: &[DatedPattern],
    days: u32,
    future_days: Option<u64>,
    today: NaiveDate,
) -> Result<Vec<String>, crate::db::DbError> {
    let mut dropped = Vec::new();
    if days == 0 {
        return Ok(dropped);
    }
    for table in list_tables(writer.db()).await? {
        if expired(patterns, &table, days, future_days, today) {
            writer.drop_table(&table).await?;
            tracing::info!(
                mode = writer.mode(),
                table,
                "dated table dropped by retention"
            );
            dropped.push(table);
        }
    }
    Ok(dropped)
}

/// The background task: a sweep over every database now and every `interval`, until
/// `shutdown`. Failures are logged and retried at the next tick.
pub async fn run(
    writers: Vec<std::sync::Arc<Writer>>,
    patterns: Vec<DatedPattern>,
    days: u32,
    future_days: Option<u64>,
    interval: std::time::Duration,
    homer7: Option<Homer7Upkeep>,
    shutdown: CancellationToken,
) {
    loop {
        let now = chrono::Utc::now();
        let today = now.date_naive();
        if let Some(upkeep) = &homer7 {
            homer7_sweep(upkeep, days, now).await;
        }
        for writer in writers.iter().filter(|_| days > 0) {
            if let Err(e) = sweep(writer, &patterns, days, future_days, today).await {
                tracing::warn!(mode = writer.mode(), error = %e, "retention sweep failed");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn keeps_today_and_the_last_n_days() {
        let p = vec![
            DatedPattern::parse("sip_capture_call_%Y%m%d").unwrap(),
            DatedPattern::parse("sip_capture_rest_%Y%m%d").unwrap(),
        ];
        let today = day(2026, 3, 10);
        assert!(!expired(&p, "sip_capture_call_20260310", 7, None, today));
        assert!(!expired(&p, "sip_capture_call_20260303", 7, None, today));
        assert!(expired(&p, "sip_capture_call_20260302", 7, None, today));
        assert!(expired(&p, "sip_capture_rest_20251231", 7, None, today));
        assert!(!expired(
            &p,
            "sip_capture_registration_20200101",
            7,
            None,
            today
        ));
        assert!(!expired(&p, "sipcapture_stream_state", 7, None, today));
        assert!(!expired(&p, "sip_capture_call_20260309", 1, None, today));
        assert!(expired(&p, "sip_capture_call_20260308", 1, None, today));
    }

    #[test]
    fn drops_tables_dated_beyond_the_future_horizon() {
        let p = vec![DatedPattern::parse("sip_capture_call_%Y%m%d").unwrap()];
        let today = day(2026, 3, 10);
        let horizon = future_days(86_400);
        assert_eq!(horizon, Some(1));
        assert_eq!(future_days(86_401), Some(2));
        assert_eq!(future_days(0), None);
        assert!(!expired(&p, "sip_capture_call_20260311", 7, horizon, today));
        assert!(expired(&p, "sip_capture_call_20260312", 7, horizon, today));
        assert!(expired(&p, "sip_capture_call_21060101", 7, horizon, today));
        assert!(!expired(&p, "sip_capture_call_21060101", 7, None, today));
    }
}
