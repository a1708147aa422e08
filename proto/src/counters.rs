//! Named counters that every typed event increments: kept locally (for `Check` replies and
//! tests) and mirrored to OpenTelemetry instruments (exported when an OTLP endpoint is set up; a
//! no-op otherwise). Labels are low-cardinality: a counter name and, for drops, a reason.

use std::collections::BTreeMap;
use std::sync::Mutex;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;

/// A set of counters of one service.
pub struct Counters {
    values: Mutex<hashbrown::HashMap<&'static str, u64>>,
    /// Drops by reason; reported as `dropped.<reason>`.
    drops: Mutex<hashbrown::HashMap<&'static str, u64>>,
    otel: Counter<u64>,
    otel_drops: Counter<u64>,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters")
            .field("values", &self.snapshot())
            .finish()
    }
}

impl Counters {
    /// Counters of `service` ("collector", "storer", "control"); OpenTelemetry instruments are
    /// `sipcapture.<service>.events` and `sipcapture.<service>.dropped`.
    pub fn new(service: &'static str) -> Self {
        let meter = opentelemetry::global::meter("sipcapture");
        Counters {
            values: Mutex::new(hashbrown::HashMap::new()),
            drops: Mutex::new(hashbrown::HashMap::new()),
            otel: meter
                .u64_counter(format!("sipcapture.{service}.events"))
                .with_description("events by name")
                .build(),
            otel_drops: meter
                .u64_counter(format!("sipcapture.{service}.dropped"))
                .with_description("dropped packets or records by reason")
                .build(),
        }
    }

    /// Adds `n` to counter `name`.
    pub fn add(&self, name: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        if let Ok(mut values) = self.values.lock() {
            *values.entry(name).or_insert(0) += n;
        }
        self.otel.add(n, &[KeyValue::new("event", name)]);
    }

    /// Counts one drop under `dropped.<reason>`; returns the new total of that reason (callers
    /// log the first and every power of two, so a flood cannot flood the log).
    pub fn count_drop(&self, reason: &'static str) -> u64 {
        let total = match self.drops.lock() {
            Ok(mut drops) => {
                let v = drops.entry(reason).or_insert(0);
                *v += 1;
                *v
            }
            Err(_) => 0,
        };
        self.otel_drops.add(1, &[KeyValue::new("reason", reason)]);
        total
    }

    /// Counts one drop whose local counter groups several reasons (e.g. every routing error
    /// under `dropped.route_error`), keeping the exact reason as the exported label; returns
    /// the new total of `counter`.
    pub fn drop_grouped(&self, reason: &'static str, counter: &'static str) -> u64 {
        let total = match self.values.lock() {
            Ok(mut values) => {
                let v = values.entry(counter).or_insert(0);
                *v += 1;
                *v
            }
            Err(_) => 0,
        };
        self.otel_drops.add(1, &[KeyValue::new("reason", reason)]);
        total
    }

    /// Current value of a counter (`dropped.<reason>` included).
    pub fn get(&self, name: &str) -> u64 {
        let named = self
            .values
            .lock()
            .ok()
            .and_then(|v| v.get(name).copied())
            .unwrap_or(0);
        let dropped = name
            .strip_prefix("dropped.")
            .and_then(|reason| self.drops.lock().ok().and_then(|d| d.get(reason).copied()))
            .unwrap_or(0);
        named + dropped
    }

    /// All counters, sorted by name.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let mut all: BTreeMap<String, u64> = self
            .values
            .lock()
            .map(|v| v.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect())
            .unwrap_or_default();
        if let Ok(drops) = self.drops.lock() {
            for (reason, n) in drops.iter() {
                *all.entry(format!("dropped.{reason}")).or_insert(0) += n;
            }
        }
        all
    }
}

/// True for 1, 2, 4, 8, ...: log a repeated event at these counts only.
pub fn worth_logging(total: u64) -> bool {
    total.is_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_snapshots() {
        let c = Counters::new("test");
        c.add("received", 3);
        c.add("received", 2);
        assert_eq!(c.count_drop("bad_magic"), 1);
        assert_eq!(c.count_drop("bad_magic"), 2);
        assert_eq!(c.drop_grouped("bad_table", "dropped.route_error"), 1);
        assert_eq!(c.get("dropped.bad_magic"), 2);
        assert_eq!(c.get("dropped.route_error"), 1);
        assert_eq!(c.get("received"), 5);
        let snap = c.snapshot();
        assert_eq!(snap.get("dropped.bad_magic"), Some(&2));
        assert!(worth_logging(1) && worth_logging(4) && !worth_logging(3));
    }
}
