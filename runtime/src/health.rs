//! Readiness: whether a service can do its job now, beyond "its gRPC server runs". A service
//! that depends on something outside it (the storer on its database) owns a [`ReadySender`]
//! and flips it; the gRPC server ([`crate::server::serve_with`]) makes `grpc.health.v1` follow
//! it for the overall `""` entry and the services the [`Readiness`] names, so a Kubernetes
//! readiness probe (and a collector choosing storers) sees NOT_SERVING while it cannot.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The side that knows: flips readiness.
#[derive(Debug, Clone)]
pub struct ReadySender(watch::Sender<bool>);

impl ReadySender {
    /// Sets readiness; returns true when it changed.
    pub fn set(&self, ready: bool) -> bool {
        self.0.send_if_modified(|now| {
            let changed = *now != ready;
            *now = ready;
            changed
        })
    }

    /// The current value.
    pub fn get(&self) -> bool {
        *self.0.borrow()
    }
}

/// The side the gRPC server follows: the current readiness and the services it applies to.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// gRPC service names whose health follows readiness (the overall `""` always does); the
    /// server's other services stay SERVING while it runs.
    pub services: &'static [&'static str],
    ready: watch::Receiver<bool>,
}

impl Readiness {
    /// A readiness starting at `ready` for `services`, and its sender.
    pub fn new(ready: bool, services: &'static [&'static str]) -> (ReadySender, Readiness) {
        let (tx, rx) = watch::channel(ready);
        (
            ReadySender(tx),
            Readiness {
                services,
                ready: rx,
            },
        )
    }

    /// The current value.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }
}

fn status(ready: bool) -> ServingStatus {
    if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

/// Applies the current readiness to `reporter` (before the server accepts: no window where a
/// service that is not ready answers SERVING).
pub(crate) async fn apply(reporter: &HealthReporter, readiness: &Readiness) {
    let ready = readiness.is_ready();
    for name in readiness.services.iter().copied().chain([""]) {
        reporter.set_service_status(name, status(ready)).await;
    }
}

/// Applies `readiness` to `reporter` on every change, until `stop` is cancelled or the sender
/// is gone.
pub(crate) async fn follow(
    reporter: HealthReporter,
    mut readiness: Readiness,
    stop: CancellationToken,
) {
    loop {
        readiness.ready.borrow_and_update();
        apply(&reporter, &readiness).await;
        tokio::select! {
            () = stop.cancelled() => return,
            changed = readiness.ready.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_reports_changes_only() {
        let (tx, rx) = Readiness::new(true, &["a.B"]);
        assert!(rx.is_ready());
        assert!(!tx.set(true));
        assert!(tx.set(false));
        assert!(!rx.is_ready() && !tx.get());
    }
}
