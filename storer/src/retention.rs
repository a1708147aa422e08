//! Retention: dated tables (`sip_capture_call_%Y%m%d`, ...) older than `retention_days` are
//! dropped, at start-up and then every `retention_interval`, on every capture mode's database.
//! A table is recognised by parsing its name with a configured pattern: only names that the
//! pattern produces exactly, with a full date, are candidates.

use chrono::format::{Parsed, StrftimeItems};
use chrono::{Days, NaiveDate};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement};
use tokio_util::sync::CancellationToken;

use crate::pipeline::route::TablePattern;
use crate::pipeline::write::Writer;

/// A dated table pattern usable for retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatedPattern {
    raw: String,
}

impl DatedPattern {
    /// Accepts a valid table pattern whose strftime sequences give a full date (year, month and
    /// day, or year and day of year).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let pattern = TablePattern::parse(raw).map_err(|e| e.to_string())?;
        let candidate = DatedPattern {
            raw: pattern.as_str().to_owned(),
        };
        let sample = NaiveDate::from_ymd_opt(2026, 11, 26)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc())
            .ok_or("bad sample date")?;
        let name = pattern.render(sample).map_err(|e| e.to_string())?;
        if candidate.date_of(&name) != sample.date_naive().into() {
            return Err(format!(
                "{raw:?} does not hold a full date (%Y%m%d, %F or %Y%j)"
            ));
        }
        Ok(candidate)
    }

    /// The pattern as configured.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The date in a table name, when the name is exactly what the pattern produces.
    pub fn date_of(&self, table: &str) -> Option<NaiveDate> {
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, table, StrftimeItems::new(&self.raw)).ok()?;
        parsed.to_naive_date().ok()
    }
}

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

/// The tables of the connection's database (schema `current_schema()` on PostgreSQL).
pub async fn list_tables(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let backend = db.get_database_backend();
    let (sql, column) = match backend {
        DatabaseBackend::Postgres => (
            "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = current_schema()",
            "name",
        ),
        DatabaseBackend::MySql => (
            "SELECT CAST(table_name AS CHAR) AS name FROM information_schema.tables \
             WHERE table_schema = DATABASE()",
            "name",
        ),
        _ => (
            "SELECT name FROM sqlite_master WHERE type = 'table'",
            "name",
        ),
    };
    let rows = db
        .query_all_raw(Statement::from_string(backend, sql.to_owned()))
        .await?;
    rows.iter()
        .map(|row| row.try_get::<String>("", column))
        .collect()
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
    fn names_match_their_pattern_only() {
        let p = DatedPattern::parse("sip_capture_call_%Y%m%d").unwrap();
        assert_eq!(
            p.date_of("sip_capture_call_20260304"),
            Some(day(2026, 3, 4))
        );
        assert_eq!(p.date_of("sip_capture_call_20260304_old"), None);
        assert_eq!(p.date_of("sip_capture_call_2026030"), None);
        assert_eq!(p.date_of("sip_capture_call_20261304"), None, "month 13");
        assert_eq!(p.date_of("sip_capture_rest_20260304"), None);
        assert_eq!(p.date_of("sip_capture_call"), None);
        let dashed = DatedPattern::parse("t_%Y_%m_%d_x").unwrap();
        assert_eq!(dashed.date_of("t_2026_03_04_x"), Some(day(2026, 3, 4)));
        let hourly = DatedPattern::parse("h_%Y%m%d%H").unwrap();
        assert_eq!(hourly.date_of("h_2026030423"), Some(day(2026, 3, 4)));
    }

    #[test]
    fn patterns_without_a_full_date_are_refused() {
        assert!(DatedPattern::parse("sip_capture").is_err());
        assert!(DatedPattern::parse("monthly_%Y%m").is_err());
        assert!(DatedPattern::parse("bad-%Y%m%d").is_err());
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
