//! Retention: dated tables (`sip_capture_call_%Y%m%d`, ...) older than `retention_days` are
//! dropped, at start-up and then every `retention_interval`, on every capture mode's database.
//! A table is recognised by parsing its name with a configured [`DatedPattern`]: only names that
//! the pattern produces exactly, with a full date, are candidates. The SQL (listing, dropping)
//! is in [`crate::db::tables`].

use chrono::{Days, NaiveDate};
use tokio_util::sync::CancellationToken;

use crate::db::tables::list_tables;
use crate::pipeline::write::Writer;
use crate::table::DatedPattern;

/// Whether `table` is a dated table of one of `patterns` older than `days` days before
/// `today` (UTC). Today's table and the `days` before it are kept.
pub fn expired(patterns: &[DatedPattern], table: &str, days: u32, today: NaiveDate) -> bool {
    let Some(cutoff) = today.checked_sub_days(Days::new(u64::from(days))) else {
        return false;
    };
    patterns
        .iter()
        .filter_map(|p| p.date_of(table))
        .any(|date| date < cutoff)
}

/// One sweep over one database: drops the expired tables, returns their names.
pub async fn sweep(
    writer: &Writer,
    patterns: &[DatedPattern],
    days: u32,
    today: NaiveDate,
) -> Result<Vec<String>, crate::db::DbError> {
    let mut dropped = Vec::new();
    if days == 0 {
        return Ok(dropped);
    }
    for table in list_tables(writer.db()).await? {
        if expired(patterns, &table, days, today) {
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
    interval: std::time::Duration,
    shutdown: CancellationToken,
) {
    loop {
        let today = chrono::Utc::now().date_naive();
        for writer in &writers {
            if let Err(e) = sweep(writer, &patterns, days, today).await {
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
        assert!(!expired(&p, "sip_capture_call_20260310", 7, today));
        assert!(!expired(&p, "sip_capture_call_20260303", 7, today));
        assert!(expired(&p, "sip_capture_call_20260302", 7, today));
        assert!(expired(&p, "sip_capture_rest_20251231", 7, today));
        assert!(!expired(&p, "sip_capture_registration_20200101", 7, today));
        assert!(!expired(&p, "sipcapture_stream_state", 7, today));
        assert!(!expired(&p, "sip_capture_call_20260309", 1, today));
        assert!(expired(&p, "sip_capture_call_20260308", 1, today));
    }
}
