//! Readiness: the storer's gRPC health is SERVING only while its default capture mode's
//! database answers. Every [`CHECK_INTERVAL`] (and at once when a commit fails for a transient
//! reason) each capture mode's database is pinged — skipped when a commit succeeded within the
//! interval, so a busy pool is never mistaken for a dead one; `db_reachable{mode}` follows each,
//! readiness (and the `ready` gauge) follows the default mode's. A storer that cannot reach its
//! database leaves the Kubernetes Service (and the collectors' DNS discovery) until it can.

use std::sync::Arc;
use std::time::Duration;

use sipcapture_runtime::counters::Counters;
use sipcapture_runtime::health::ReadySender;
use tokio_util::sync::CancellationToken;

use crate::db;
use crate::events::{DatabaseReachability, InternalEvent};
use crate::pipeline::write::Writer;

/// Time between checks.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How long a ping may take (the pool's acquire time-out: an unreachable server is retried
/// until then).
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks `writers` (the default mode first) until `shutdown`, driving `ready`.
pub async fn run(
    writers: Vec<Arc<Writer>>,
    ready: ReadySender,
    counters: Arc<Counters>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut reachable: Vec<bool> = writers.iter().map(|_| true).collect();
    loop {
        for (i, writer) in writers.iter().enumerate() {
            let result = check(writer, interval).await;
            let now = result.is_ok();
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

async fn check(writer: &Writer, interval: Duration) -> Result<(), CheckError> {
    if writer.liveness().committed_within(interval) {
        return Ok(());
    }
    match tokio::time::timeout(PING_TIMEOUT, db::ping(writer.db())).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(CheckError::Timeout(PING_TIMEOUT)),
    }
}

/// Sets the gauges for a storer whose databases all answered at start-up.
pub fn initial_gauges(counters: &Counters, writers: &[Arc<Writer>]) {
    counters.set_gauge("ready", "", 1);
    for w in writers {
        counters.set_gauge("db_reachable", w.mode(), 1);
    }
}
