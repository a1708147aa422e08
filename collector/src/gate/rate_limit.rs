//! Per-source rate limit of HEP input: a token bucket per source IP (UDP datagrams and TCP/TLS
//! frames alike), `rate` packets per second with a `burst`. Excess packets are dropped by the
//! caller and counted as `dropped.rate_limited`.
//!
//! The table of sources is bounded (`max_sources`, split over shards so UDP sockets on several
//! cores rarely contend). When a shard is full, buckets that have refilled completely are
//! evicted — forgetting them loses nothing, a new bucket starts full too. If none has (every
//! tracked source is busy, e.g. a flood from many spoofed addresses), the new source shares
//! one overflow bucket with every other untracked source: tracked sources keep their state, so
//! a flood of new addresses can neither reset their limits nor grow memory.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// How often a full shard may be swept for refilled buckets (a sweep is O(shard size)).
const SWEEP_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug)]
struct Shard {
    sources: hashbrown::HashMap<IpAddr, Bucket>,
    overflow: Bucket,
    last_sweep: Option<Instant>,
}

/// What the limiter decided for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the source's rate.
    Allow,
    /// Over the source's rate: drop.
    Limited,
}

/// A per-source token-bucket limiter.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    per_shard: usize,
    shards: Vec<Mutex<Shard>>,
}

impl RateLimiter {
    /// `rate` packets per second (fractions allowed) with bursts of `burst` packets (0: the
    /// rate, at least 1), tracking up to `max_sources` sources. `None` when `rate` is 0 (off).
    pub fn new(rate: f64, burst: u32, max_sources: usize, now: Instant) -> Option<Self> {
        if rate <= 0.0 || !rate.is_finite() {
            return None;
        }
        let burst = if burst == 0 {
            rate.max(1.0)
        } else {
            f64::from(burst)
        };
        let per_shard = max_sources.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    sources: hashbrown::HashMap::with_capacity(per_shard.min(1024)),
                    overflow: Bucket {
                        tokens: burst,
                        last: now,
                    },
                    last_sweep: None,
                })
            })
            .collect();
        Some(RateLimiter {
            rate,
            burst,
            per_shard,
            shards,
        })
    }

    /// Takes one token of `source`'s bucket at `now`.
    pub fn check(&self, source: IpAddr, now: Instant) -> Verdict {
        let Some(shard) = self.shards.get(shard_of(source)) else {
            return Verdict::Allow;
        };
        let Ok(mut shard) = shard.lock() else {
            return Verdict::Allow;
        };
        let shard = &mut *shard;
        if let Some(bucket) = shard.sources.get_mut(&source) {
            return self.take(bucket, now);
        }
        if shard.sources.len() >= self.per_shard {
            self.sweep(shard, now);
        }
        if shard.sources.len() >= self.per_shard {
            return self.take(&mut shard.overflow, now);
        }
        let mut bucket = Bucket {
            tokens: self.burst,
            last: now,
        };
        let verdict = self.take(&mut bucket, now);
        shard.sources.insert(source, bucket);
        verdict
    }

    /// Sources currently tracked.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok().map(|s| s.sources.len()))
            .sum()
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.last = now;
    }

    fn take(&self, bucket: &mut Bucket, now: Instant) -> Verdict {
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Verdict::Allow
        } else {
            Verdict::Limited
        }
    }

    /// Forgets the buckets that have refilled completely (rate-limited in time, so a flood of
    /// new sources cannot make every packet pay for a full scan).
    fn sweep(&self, shard: &mut Shard, now: Instant) {
        if shard
            .last_sweep
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        shard.last_sweep = Some(now);
        shard.sources.retain(|_, b| {
            let idle = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + idle * self.rate < self.burst
        });
    }
}

fn shard_of(ip: IpAddr) -> usize {
    let folded = match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let n = u128::from(v6);
            // Fold the halves: the interface id and the prefix both spread.
            u64::try_from(n >> 64).unwrap_or(0)
                ^ u64::try_from(n & u128::from(u64::MAX)).unwrap_or(0)
        }
    };
    let mixed = folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    usize::try_from(mixed).unwrap_or(0) % SHARDS
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn off_without_a_rate() {
        assert!(RateLimiter::new(0.0, 10, 10, Instant::now()).is_none());
    }

    #[test]
    fn burst_then_rate_per_source() {
        let t0 = Instant::now();
        let l = RateLimiter::new(10.0, 5, 1000, t0).unwrap();
        let passed = (0..20)
            .filter(|_| l.check(ip(1), t0) == Verdict::Allow)
            .count();
        assert_eq!(passed, 5);
        // Another source is unaffected.
        assert_eq!(l.check(ip(2), t0), Verdict::Allow);
        // 0.5 s later, 5 more tokens for the first source.
        let t1 = t0 + Duration::from_millis(500);
        let passed = (0..20)
            .filter(|_| l.check(ip(1), t1) == Verdict::Allow)
            .count();
        assert_eq!(passed, 5);
    }

    #[test]
    fn default_burst_is_the_rate() {
        let t0 = Instant::now();
        let l = RateLimiter::new(3.0, 0, 10, t0).unwrap();
        let passed = (0..10)
            .filter(|_| l.check(ip(1), t0) == Verdict::Allow)
            .count();
        assert_eq!(passed, 3);
    }

    #[test]
    fn table_stays_bounded_and_busy_sources_keep_their_state() {
        let t0 = Instant::now();
        // 16 shards of 1 source each.
        let l = RateLimiter::new(0.001, 2, 16, t0).unwrap();
        for n in 0..10_000 {
            l.check(ip(n), t0);
        }
        assert!(l.tracked() <= 16, "{}", l.tracked());
        // A tracked, exhausted source is not reset by the flood.
        let t1 = t0 + Duration::from_secs(1);
        let tracked: Vec<IpAddr> = (0..10_000)
            .map(ip)
            .filter(|a| {
                l.shards[shard_of(*a)]
                    .lock()
                    .unwrap()
                    .sources
                    .contains_key(a)
            })
            .collect();
        let victim = tracked[0];
        l.check(victim, t1);
        assert_eq!(l.check(victim, t1), Verdict::Limited);
        // Idle sources that refilled are evicted for new ones.
        let later = t0 + Duration::from_secs(10_000);
        assert_eq!(l.check(ip(99_999), later), Verdict::Allow);
        assert!(l.tracked() <= 16);
    }
}
