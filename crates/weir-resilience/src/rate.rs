//! Rate limiting on `tokio::time`, fair (first come, first served), optionally per key.

use crate::error::ConfigError;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// Spaces calls `1 / rate` apart: N calls take at least `(N − 1) / rate`, the first is immediate.
///
/// Each call to [`acquire`](RateLimiter::acquire) reserves the next free slot and sleeps until it
/// (on `tokio::time`), so waiters are served in the order they arrived and no lock is held while
/// waiting. A waiter that is cancelled leaves its slot unused: the limiter errs on the slow side,
/// never the fast one.
///
/// In per-key mode every key has its own schedule: one busy key does not slow another.
/// Clones share the schedule, so one limiter can cover several operators calling one service.
///
/// ```
/// use std::time::Duration;
/// use weir_resilience::RateLimiter;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let limiter = RateLimiter::per_second(10);
/// let start = tokio::time::Instant::now();
/// for _ in 0..3 {
///     limiter.acquire().await;
/// }
/// assert_eq!(start.elapsed(), Duration::from_millis(200));
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct RateLimiter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    period: Duration,
    per_key: bool,
    /// Next free slot for the unkeyed schedule.
    next: Mutex<Option<Instant>>,
    /// Next free slot per key hash, pruned as keys fall idle.
    keyed: Mutex<KeyedSlots>,
    hasher: ahash::RandomState,
    acquired: AtomicU64,
    delayed: AtomicU64,
}

#[derive(Debug, Default)]
struct KeyedSlots {
    next: HashMap<u64, Instant>,
    prune_at: usize,
}

const PRUNE_MIN: usize = 1024;

impl RateLimiter {
    /// `calls` per second. Zero is treated as a configuration error by
    /// [`PolicyBuilder::build`](crate::PolicyBuilder::build); used standalone it means "one per
    /// second" rather than "never".
    pub fn per_second(calls: u32) -> Self {
        RateLimiter::every(Duration::from_secs(1) / calls.max(1))
    }

    /// A fractional rate (e.g. `0.5` = one call every two seconds); must be positive and finite.
    pub fn try_per_second_f64(rate: f64) -> Result<Self, ConfigError> {
        let nanos = 1e9 / rate;
        if !(rate > 0.0 && rate.is_finite() && nanos >= 1.0 && nanos < u64::MAX as f64) {
            return Err(ConfigError::invalid(
                "rate_limit.per_second",
                "a positive, finite number of calls per second",
                rate,
            ));
        }
        Ok(RateLimiter::every(Duration::from_nanos(
            nanos.round() as u64
        )))
    }

    /// One call per `period`.
    pub fn every(period: Duration) -> Self {
        RateLimiter {
            shared: Arc::new(Shared {
                period,
                per_key: false,
                next: Mutex::new(None),
                keyed: Mutex::new(KeyedSlots::default()),
                hasher: ahash::RandomState::new(),
                acquired: AtomicU64::new(0),
                delayed: AtomicU64::new(0),
            }),
        }
    }

    /// The same rate applied to each key separately (see [`acquire_key`](Self::acquire_key)).
    pub fn per_key(self) -> Self {
        let shared = &self.shared;
        RateLimiter {
            shared: Arc::new(Shared {
                period: shared.period,
                per_key: true,
                next: Mutex::new(None),
                keyed: Mutex::new(KeyedSlots::default()),
                hasher: shared.hasher.clone(),
                acquired: AtomicU64::new(0),
                delayed: AtomicU64::new(0),
            }),
        }
    }

    /// The spacing between two calls.
    pub fn period(&self) -> Duration {
        self.shared.period
    }

    /// True if each key has its own schedule.
    pub fn is_per_key(&self) -> bool {
        self.shared.per_key
    }

    /// Tokens handed out so far (one per call that reached the service).
    pub fn acquired(&self) -> u64 {
        self.shared.acquired.load(Ordering::Relaxed)
    }

    /// How many of those had to wait.
    pub fn delayed(&self) -> u64 {
        self.shared.delayed.load(Ordering::Relaxed)
    }

    /// Waits for the next slot of the shared schedule (also in per-key mode: then all calls
    /// without a key share one schedule).
    pub async fn acquire(&self) {
        let now = Instant::now();
        let slot = {
            let mut next = lock(&self.shared.next);
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.shared.period);
            slot
        };
        self.wait(slot, now).await;
    }

    /// Waits for the next slot of `key`'s schedule, or of the shared one if the limiter is not
    /// per key.
    pub async fn acquire_key<K: Hash + ?Sized>(&self, key: &K) {
        if !self.shared.per_key {
            return self.acquire().await;
        }
        self.acquire_hashed(self.shared.hasher.hash_one(key)).await;
    }

    pub(crate) async fn acquire_hashed(&self, hash: u64) {
        if !self.shared.per_key {
            return self.acquire().await;
        }
        let now = Instant::now();
        let slot = {
            let mut slots = lock(&self.shared.keyed);
            if slots.next.len() >= slots.prune_at.max(PRUNE_MIN) {
                // A key whose next slot has passed behaves like an absent key: drop it.
                slots.next.retain(|_, next| *next > now);
                slots.prune_at = slots.next.len() * 2;
            }
            let next = slots.next.entry(hash).or_insert(now);
            let slot = (*next).max(now);
            *next = slot + self.shared.period;
            slot
        };
        self.wait(slot, now).await;
    }

    /// Takes a slot of `key`'s schedule (the shared one if the limiter is not per key) now, if
    /// one is free, without waiting: up to `burst` calls may run ahead of the steady rate (the
    /// generic cell rate algorithm). Otherwise nothing is reserved and the answer is how long
    /// until a call would be let through, e.g. for a `Retry-After` header.
    pub fn try_acquire_key<K: Hash + ?Sized>(&self, key: &K, burst: u32) -> Result<(), Duration> {
        let now = Instant::now();
        let period = self.shared.period;
        // How far ahead of now the schedule may run.
        let allowance = period.saturating_mul(burst.max(1) - 1);
        let take = |next: &mut Instant| {
            let due = (*next).max(now);
            let limit = now + allowance;
            if due > limit {
                return Err(due - limit);
            }
            *next = due + period;
            Ok(())
        };
        let taken = if self.shared.per_key {
            let hash = self.shared.hasher.hash_one(key);
            let mut slots = lock(&self.shared.keyed);
            if slots.next.len() >= slots.prune_at.max(PRUNE_MIN) {
                slots.next.retain(|_, next| *next > now);
                slots.prune_at = slots.next.len() * 2;
            }
            take(slots.next.entry(hash).or_insert(now))
        } else {
            let mut next = lock(&self.shared.next);
            take(next.get_or_insert(now))
        };
        if taken.is_ok() {
            self.shared.acquired.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    pub(crate) fn hash_key<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        self.shared.hasher.hash_one(key)
    }

    async fn wait(&self, slot: Instant, now: Instant) {
        self.shared.acquired.fetch_add(1, Ordering::Relaxed);
        if slot > now {
            self.shared.delayed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep_until(slot).await;
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.shared.period.is_zero() {
            return Err(ConfigError::invalid(
                "rate_limit.per_second",
                "a finite rate (a period longer than zero)",
                "an unlimited rate",
            ));
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Updates under these locks are single assignments; a poisoned lock holds consistent data.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn n_calls_take_n_minus_one_periods() {
        let limiter = RateLimiter::per_second(4);
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..5 {
            limiter.acquire().await;
            at.push(start.elapsed());
        }
        let ms = |n| Duration::from_millis(n);
        assert_eq!(at, [ms(0), ms(250), ms(500), ms(750), ms(1000)]);
        assert_eq!(limiter.acquired(), 5);
        assert_eq!(limiter.delayed(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_is_not_banked_as_burst() {
        let limiter = RateLimiter::per_second(10);
        limiter.acquire().await;
        tokio::time::advance(Duration::from_secs(5)).await;
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn try_acquire_lets_a_burst_through_then_says_how_long_to_wait() {
        let limiter = RateLimiter::per_second(10).per_key();
        for _ in 0..3 {
            assert_eq!(limiter.try_acquire_key("a", 3), Ok(()));
        }
        // The fourth is 100 ms early; another key has its own schedule.
        assert_eq!(
            limiter.try_acquire_key("a", 3),
            Err(Duration::from_millis(100))
        );
        assert_eq!(limiter.try_acquire_key("b", 3), Ok(()));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(limiter.try_acquire_key("a", 3), Ok(()));
        assert!(limiter.try_acquire_key("a", 3).is_err());
        assert_eq!(limiter.acquired(), 5);
    }

    #[test]
    fn fractional_and_invalid_rates() {
        let half = RateLimiter::try_per_second_f64(0.5).unwrap();
        assert_eq!(half.period(), Duration::from_secs(2));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = RateLimiter::try_per_second_f64(bad).unwrap_err();
            assert!(err.to_string().contains("rate_limit.per_second"), "{err}");
        }
    }
}
