//! Circuit breaker: stop calling a service that keeps failing, probe it again after a pause.

use crate::error::ConfigError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls are rejected at once until the reset timeout has passed.
    Open,
    /// The reset timeout has passed: one probe call goes through, the others are rejected. The
    /// probe's success closes the breaker, its failure opens it again.
    HalfOpen,
}

impl BreakerState {
    /// Lower-case name, for logs and metric labels: `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a [`CircuitBreaker`] opens and for how long.
///
/// It opens after `failure_threshold` consecutive failures, or (if `failure_rate` is set) when
/// the share of failed calls in the sliding window reaches the rate, whichever comes first.
/// In YAML: `{ failure_threshold: 5, reset_timeout: 30s, failure_rate: { rate: 0.5, window: 60s,
/// min_calls: 20 } }`; every key is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (at least 1). Default 5.
    pub failure_threshold: u32,
    /// How long the breaker stays open before letting a probe through. Default 30 s.
    #[serde(with = "crate::human")]
    pub reset_timeout: Duration,
    /// Optional second trigger: a failure rate over a sliding time window.
    pub failure_rate: Option<FailureRate>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            reset_timeout: Duration::from_secs(30),
            failure_rate: None,
        }
    }
}

/// Open when at least `rate` of the calls that finished within `window` failed, once at least
/// `min_calls` calls finished in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureRate {
    /// Share of failed calls, in (0, 1].
    pub rate: f64,
    /// Length of the sliding window (kept as 10 buckets of a tenth each).
    #[serde(with = "crate::human")]
    pub window: Duration,
    /// Fewer finished calls than this in the window never open the breaker. Default 10.
    #[serde(default = "default_min_calls")]
    pub min_calls: u32,
}

fn default_min_calls() -> u32 {
    10
}

impl BreakerConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.failure_threshold == 0 {
            return Err(ConfigError::invalid(
                "circuit_breaker.failure_threshold",
                "at least 1",
                0,
            ));
        }
        if self.reset_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "circuit_breaker.reset_timeout",
                "a duration longer than zero",
                "0s",
            ));
        }
        if let Some(fr) = &self.failure_rate {
            if !(fr.rate > 0.0 && fr.rate <= 1.0) {
                return Err(ConfigError::invalid(
                    "circuit_breaker.failure_rate.rate",
                    "a share in (0, 1]",
                    fr.rate,
                ));
            }
            if fr.window.as_nanos() < BUCKETS as u128 {
                return Err(ConfigError::invalid(
                    "circuit_breaker.failure_rate.window",
                    "a duration longer than zero",
                    humantime::format_duration(fr.window),
                ));
            }
            if fr.min_calls == 0 {
                return Err(ConfigError::invalid(
                    "circuit_breaker.failure_rate.min_calls",
                    "at least 1",
                    0,
                ));
            }
        }
        Ok(())
    }
}

const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    epoch: u64,
    calls: u32,
    failures: u32,
}

/// Sliding window of call outcomes in `BUCKETS` time buckets.
#[derive(Debug)]
struct Window {
    bucket_len: Duration,
    buckets: [Bucket; BUCKETS],
}

impl Window {
    fn record(&mut self, epoch: u64, failed: bool) {
        let bucket = &mut self.buckets[(epoch % BUCKETS as u64) as usize];
        if bucket.epoch != epoch {
            *bucket = Bucket {
                epoch,
                ..Bucket::default()
            };
        }
        bucket.calls += 1;
        bucket.failures += u32::from(failed);
    }

    fn totals(&self, epoch: u64) -> (u32, u32) {
        self.buckets
            .iter()
            .filter(|b| b.calls > 0 && b.epoch + (BUCKETS as u64) > epoch)
            .fold((0, 0), |(c, f), b| (c + b.calls, f + b.failures))
    }

    fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

#[derive(Debug)]
struct Machine {
    state: BreakerState,
    consecutive_failures: u32,
    open_until: Instant,
    probe_in_flight: bool,
    /// Bumped on every transition; a permit's outcome only counts in the generation it was taken.
    generation: u64,
    window: Option<Window>,
}

#[derive(Debug)]
struct Shared {
    config: BreakerConfig,
    name: String,
    epoch_start: Instant,
    machine: Mutex<Machine>,
    transitions: [AtomicU64; 3],
    rejected: AtomicU64,
}

/// A circuit breaker (closed → open → half-open → closed), shared by cloning.
///
/// Every transition is logged with `tracing` (target `weir_resilience::breaker`) and counted per
/// target state in [`CircuitBreaker::transitions`]; [`CircuitBreaker::state`] tells the current
/// state. Time follows `tokio::time`, so tests can drive it with a paused clock.
///
/// Usually attached to a [`Policy`](crate::Policy); standalone use goes through
/// [`CircuitBreaker::try_acquire`]:
///
/// ```
/// use std::time::Duration;
/// use weir_resilience::{BreakerConfig, BreakerState, CircuitBreaker};
///
/// let breaker = CircuitBreaker::new(BreakerConfig {
///     failure_threshold: 2,
///     reset_timeout: Duration::from_secs(30),
///     ..BreakerConfig::default()
/// });
/// # tokio_test_rt(async {
/// for _ in 0..2 {
///     breaker.try_acquire().expect("closed").failure();
/// }
/// assert_eq!(breaker.state(), BreakerState::Open);
/// assert!(breaker.try_acquire().is_err());
/// # });
/// # fn tokio_test_rt(f: impl std::future::Future) {
/// #     tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

/// The breaker rejected a call: it is open (or half-open with its probe already out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// The state that rejected the call.
    pub state: BreakerState,
}

impl CircuitBreaker {
    /// A closed breaker. The configuration is checked when the breaker is attached to a policy
    /// ([`PolicyBuilder::build`](crate::PolicyBuilder::build)); used standalone, a
    /// `failure_threshold` of 0 behaves as 1.
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker::named("circuit_breaker", config)
    }

    /// A breaker whose log lines carry `name` (e.g. the operator or endpoint it protects).
    pub fn named(name: impl Into<String>, config: BreakerConfig) -> Self {
        let now = Instant::now();
        let window = config.failure_rate.as_ref().map(|fr| Window {
            bucket_len: (fr.window / BUCKETS as u32).max(Duration::from_nanos(1)),
            buckets: [Bucket::default(); BUCKETS],
        });
        CircuitBreaker {
            shared: Arc::new(Shared {
                config,
                name: name.into(),
                epoch_start: now,
                machine: Mutex::new(Machine {
                    state: BreakerState::Closed,
                    consecutive_failures: 0,
                    open_until: now,
                    probe_in_flight: false,
                    generation: 0,
                    window,
                }),
                transitions: Default::default(),
                rejected: AtomicU64::new(0),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.shared.config
    }

    /// The current state. An open breaker whose reset timeout has passed reports `HalfOpen`
    /// (the transition itself happens when the next call asks for a permit).
    pub fn state(&self) -> BreakerState {
        let m = self.lock();
        match m.state {
            BreakerState::Open if Instant::now() >= m.open_until => BreakerState::HalfOpen,
            s => s,
        }
    }

    /// How many times the breaker has entered `state` since it was created (a counter for a
    /// metric such as `weir_breaker_transitions_total{to="open"}`).
    pub fn transitions(&self, state: BreakerState) -> u64 {
        self.shared.transitions[state.index()].load(Ordering::Relaxed)
    }

    /// How many calls the breaker has rejected.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    /// Asks to make one call. The returned permit must be resolved with
    /// [`BreakerPermit::success`] or [`BreakerPermit::failure`]; dropping it unresolved (the call
    /// was cancelled) counts as neither and frees the half-open probe slot.
    pub fn try_acquire(&self) -> Result<BreakerPermit, Rejected> {
        let mut m = self.lock();
        let now = Instant::now();
        let probe = match m.state {
            BreakerState::Closed => false,
            BreakerState::Open if now >= m.open_until => {
                self.transition(&mut m, BreakerState::HalfOpen, now);
                m.probe_in_flight = true;
                true
            }
            BreakerState::HalfOpen if !m.probe_in_flight => {
                m.probe_in_flight = true;
                true
            }
            state => {
                drop(m);
                self.shared.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(Rejected { state });
            }
        };
        Ok(BreakerPermit {
            breaker: self.clone(),
            generation: m.generation,
            probe,
            resolved: false,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        // A panic while holding this lock cannot leave the machine inconsistent (every update is
        // a few plain assignments), so a poisoned lock is still usable.
        self.shared
            .machine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn epoch(&self, now: Instant, m: &Machine) -> u64 {
        match &m.window {
            Some(w) => {
                (now.duration_since(self.shared.epoch_start).as_nanos() / w.bucket_len.as_nanos())
                    as u64
            }
            None => 0,
        }
    }

    fn transition(&self, m: &mut Machine, to: BreakerState, now: Instant) {
        let from = m.state;
        m.state = to;
        m.generation += 1;
        m.probe_in_flight = false;
        m.consecutive_failures = 0;
        if let Some(w) = &mut m.window {
            w.clear();
        }
        if to == BreakerState::Open {
            m.open_until = now + self.shared.config.reset_timeout;
        }
        self.shared.transitions[to.index()].fetch_add(1, Ordering::Relaxed);
        let name = self.shared.name.as_str();
        match to {
            BreakerState::Open => tracing::warn!(
                target: "weir_resilience::breaker",
                breaker = name, from = from.as_str(), to = to.as_str(),
                reset_timeout = ?self.shared.config.reset_timeout,
                "circuit breaker opened"
            ),
            _ => tracing::info!(
                target: "weir_resilience::breaker",
                breaker = name, from = from.as_str(), to = to.as_str(),
                "circuit breaker state changed"
            ),
        }
    }

    fn resolve(&self, generation: u64, probe: bool, failed: Option<bool>) {
        let mut m = self.lock();
        let now = Instant::now();
        let Some(failed) = failed else {
            // Cancelled: give the probe slot back so another call can probe.
            if probe && m.generation == generation {
                m.probe_in_flight = false;
            }
            return;
        };
        if m.generation != generation {
            // The breaker changed state while this call ran; its outcome says nothing new.
            return;
        }
        match (m.state, failed) {
            (BreakerState::HalfOpen, false) if probe => {
                self.transition(&mut m, BreakerState::Closed, now)
            }
            (BreakerState::HalfOpen, true) if probe => {
                self.transition(&mut m, BreakerState::Open, now)
            }
            (BreakerState::Closed, _) => {
                let epoch = self.epoch(now, &m);
                m.consecutive_failures = if failed {
                    m.consecutive_failures + 1
                } else {
                    0
                };
                let threshold = self.shared.config.failure_threshold.max(1);
                let mut trip = m.consecutive_failures >= threshold;
                if let (Some(w), Some(fr)) = (&mut m.window, &self.shared.config.failure_rate) {
                    w.record(epoch, failed);
                    let (calls, failures) = w.totals(epoch);
                    trip |= failed
                        && calls >= fr.min_calls
                        && f64::from(failures) >= fr.rate * f64::from(calls);
                }
                if trip {
                    self.transition(&mut m, BreakerState::Open, now);
                }
            }
            _ => {}
        }
    }
}

/// Permission to make one call through a [`CircuitBreaker`]; report the outcome with
/// [`success`](BreakerPermit::success) or [`failure`](BreakerPermit::failure).
#[derive(Debug)]
pub struct BreakerPermit {
    breaker: CircuitBreaker,
    generation: u64,
    probe: bool,
    resolved: bool,
}

impl BreakerPermit {
    /// True if this call is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The call succeeded.
    pub fn success(mut self) {
        self.resolved = true;
        self.breaker
            .resolve(self.generation, self.probe, Some(false));
    }

    /// The call failed.
    pub fn failure(mut self) {
        self.resolved = true;
        self.breaker
            .resolve(self.generation, self.probe, Some(true));
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if !self.resolved {
            self.breaker.resolve(self.generation, self.probe, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: threshold,
            reset_timeout: Duration::from_secs(10),
            failure_rate: None,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_only() {
        let b = breaker(3);
        for _ in 0..2 {
            b.try_acquire().unwrap().failure();
        }
        b.try_acquire().unwrap().success(); // resets the streak
        for _ in 0..2 {
            b.try_acquire().unwrap().failure();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            b.try_acquire().unwrap_err(),
            Rejected {
                state: BreakerState::Open
            }
        );
        assert_eq!(b.transitions(BreakerState::Open), 1);
        assert_eq!(b.rejected(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_exactly_one_probe_through() {
        let b = breaker(1);
        b.try_acquire().unwrap().failure();
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.try_acquire().unwrap();
        assert!(probe.is_probe());
        assert_eq!(b.try_acquire().unwrap_err().state, BreakerState::HalfOpen);
        probe.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.transitions(BreakerState::HalfOpen), 1);
        assert_eq!(b.transitions(BreakerState::Closed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_probe_frees_the_slot() {
        let b = breaker(1);
        b.try_acquire().unwrap().failure();
        tokio::time::advance(Duration::from_secs(10)).await;
        drop(b.try_acquire().unwrap());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_acquire().unwrap().is_probe());
    }

    #[tokio::test(start_paused = true)]
    async fn stale_outcomes_are_ignored() {
        let b = breaker(1);
        let slow = b.try_acquire().unwrap();
        b.try_acquire().unwrap().failure(); // opens
        slow.success(); // started while closed: must not close the open breaker
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_rate_opens_within_the_window() {
        let b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 100,
            reset_timeout: Duration::from_secs(10),
            failure_rate: Some(FailureRate {
                rate: 0.5,
                window: Duration::from_secs(10),
                min_calls: 4,
            }),
        });
        // Alternate success and failure: 50% but below min_calls until the 4th call.
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().success();
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), BreakerState::Closed, "a success never trips");
        b.try_acquire().unwrap().failure(); // 3 of 5
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn old_outcomes_leave_the_window() {
        let b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 100,
            reset_timeout: Duration::from_secs(10),
            failure_rate: Some(FailureRate {
                rate: 0.5,
                window: Duration::from_secs(10),
                min_calls: 2,
            }),
        });
        b.try_acquire().unwrap().success();
        b.try_acquire().unwrap().success();
        b.try_acquire().unwrap().failure(); // 1 of 3
        tokio::time::advance(Duration::from_secs(11)).await;
        // The window now holds only new calls.
        b.try_acquire().unwrap().success();
        b.try_acquire().unwrap().failure(); // 1 of 2 = 50%
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn validation_names_the_key() {
        let err = BreakerConfig {
            failure_threshold: 0,
            ..BreakerConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("circuit_breaker.failure_threshold")
        );
    }
}
