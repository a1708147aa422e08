//! Logging a repeated event sparingly: the first occurrence and every power of two, with the
//! running total in the line, so a flood (bad connections, drops) writes O(log n) lines while
//! its counter stays exact.

use super::Counters;

/// True for 1, 2, 4, 8, ...: log a repeated event at these counts only.
pub fn worth_logging(total: u64) -> bool {
    total.is_power_of_two()
}

/// A per-call-site occurrence count for events that have no metric of their own (or whose
/// metrics are not wired in, as in tests): [`LogEvery::tick`] says when to log, like
/// [`worth_logging`] on a counter, so a flood of bad connections writes O(log n) lines.
#[derive(Debug, Default)]
pub struct LogEvery(std::sync::atomic::AtomicU64);

impl LogEvery {
    /// A count at zero (usable in a `static`).
    pub const fn new() -> Self {
        LogEvery(std::sync::atomic::AtomicU64::new(0))
    }

    /// Counts one occurrence; the total so far when this one should be logged.
    pub fn tick(&self) -> Option<u64> {
        let total = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        worth_logging(total).then_some(total)
    }

    /// The count from `counters` when there are counters, else this one's; the total when the
    /// occurrence should be logged.
    pub fn count(&self, counters: Option<&Counters>, name: &'static str) -> Option<u64> {
        match counters {
            Some(c) => {
                let total = c.add(name, 1);
                worth_logging(total).then_some(total)
            }
            None => self.tick(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_every_logs_first_and_powers_of_two() {
        let every = LogEvery::new();
        let logged: Vec<u64> = (0..100).filter_map(|_| every.tick()).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16, 32, 64]);
    }
}
