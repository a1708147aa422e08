//! Readiness: the storer's gRPC health is SERVING only while its default capture mode's
//! database answers. Every [`CHECK_INTERVAL`] (and at once when a commit fails for a transient
//! reason) each capture mode's database is pinged — skipped when a commit succeeded within the
//! interval, so a busy pool is never mistaken for a dead one; `db_reachable{mode}` follows each,
//! readiness (and the `ready` gauge) follows the default mode's. A storer that cannot reach its
//! database leaves the Kubernetes Service (and the collectors' DNS discovery) until it can.
//! A database that does not answer at start-up does not stop the storer: it starts NOT_SERVING
//! and its set-up (the stream-state table) is retried at each check until it succeeds.

use std::sync::Arc;
use std::time::Duration;

use sipcapture_runtime::counters::Counters;
use sipcapture_runtime::health::ReadySender;
use tokio_util::sync::CancellationToken;

use crate::db;
use crate::events::{DatabaseReachability, InternalEvent};
use crate::pipeline::write::Writer;

/// Longest the start-up set-up of a capture mode waits for its database before the storer
/// starts without it (not ready).
pub const START_TIMEOUT: Duration = Duration::from_secs(3);
/// Time between checks.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How long a ping may take (the pool's acquire time-out: an unreachable server is retried
/// until then).
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks `writers` (the default mode first) until `shutdown`, driving `ready`. `waiting[i]`:
/// writer `i`'s database did not answer at start-up, so its set-up ([`Writer::init`]) is what
/// is retried until it succeeds.
pub async fn run(
    writers: Vec<Arc<Writer>>,
    mut waiting: Vec<bool>,
    ready: ReadySender,
    counters: Arc<Counters>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut reachable: Vec<bool> = (0..writers.len())
        .map(|i| !waiting.get(i).copied().unwrap_or(false))
        .collect();
    loop {
        for (i, writer) in writers.iter().enumerate() {
            let pending = waiting.get(i).copied().unwrap_or(false);
            let result = if pending {
                set_up(writer).await
            } else {
                check(writer, interval).await
            };
            let now = result.is_ok();
            if now && let Some(w) = waiting.get_mut(i) {
                *w = false;
            }
            let Some(before) = reachable.get_mut(i) else {
                continue;
            };
            if *before != now {
                *before = now;
                let error = result.err().map(|e| e.to_string());
                DatabaseReachability {
                    mode: writer.mode(),
                    reachable: now,
                    error: error.as_deref(),
                }
                .emit(&counters);
            }
            if i == 0 && ready.set(now) {
                counters.set_gauge("ready", "", i64::from(now));
                tracing::warn!(
                    ready = now,
                    "storer readiness changed (grpc health follows)"
                );
            }
        }
        let default_failed = async {
            match writers.first() {
                Some(w) => w.liveness().failure().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
            () = default_failed => {}
        }
    }
}

/// Why a database counts as unreachable.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The ping failed.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// The ping did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// The start-up set-up of a writer whose database did not answer then.
async fn set_up(writer: &Writer) -> Result<(), CheckError> {
    match tokio::time::timeout(PING_TIMEOUT, writer.init()).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(CheckError::Timeout(PING_TIMEOUT)),
    }
}

async fn check(writer: &Writer, interval: Duration) -> Result<(), CheckError> {
    if writer.liveness().committed_within(interval) {
        return Ok(());
    }
    match tokio::time::timeout(PING_TIMEOUT, db::ping(writer.db())).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(CheckError::Timeout(PING_TIMEOUT)),
    }
}

/// Sets the gauges at start-up: `waiting[i]` is writer `i`'s database not answering.
pub fn initial_gauges(counters: &Counters, writers: &[Arc<Writer>], waiting: &[bool]) {
    let up = |i: usize| i64::from(!waiting.get(i).copied().unwrap_or(false));
    counters.set_gauge("ready", "", up(0));
    for (i, w) in writers.iter().enumerate() {
        counters.set_gauge("db_reachable", w.mode(), up(i));
    }
}
