//! [`Policy`]: retries, timeouts, circuit breaker, rate limit and concurrency limit around one
//! async operation.

use crate::backoff::Backoff;
use crate::breaker::CircuitBreaker;
use crate::cache::Cache;
use crate::error::{ConfigError, Error, Retryable};
use crate::rate::RateLimiter;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

type Predicate<E> = Arc<dyn Fn(&E) -> bool + Send + Sync>;
type RetryHook<E> = Arc<dyn Fn(&RetryEvent<'_, E>) + Send + Sync>;
type SuccessHook = Arc<dyn Fn(u32) + Send + Sync>;
type FailureHook<E> = Arc<dyn Fn(&Error<E>) + Send + Sync>;

/// A resilience policy around async operations returning `Result<T, E>`.
///
/// Each [`call`](Policy::call) goes through, per attempt and in this order: the circuit breaker
/// (an open breaker rejects at once), the concurrency limit (waits for a free slot), the rate
/// limiter (waits for a token; every attempt takes one, retries too), then the operation under
/// the per-attempt timeout. A failed attempt is retried if the error is retryable and the retry
/// budget is not spent, after the backoff delay. The overall timeout covers all of it.
///
/// Cloning is cheap and clones share everything stateful (breaker, limiter, concurrency slots,
/// counters). Build a new policy for an independent one.
pub struct Policy<E> {
    inner: Arc<Inner<E>>,
}

struct Inner<E> {
    retries: u32,
    backoff: Backoff,
    retry_if: Option<Predicate<E>>,
    retry_timeouts: bool,
    attempt_timeout: Option<Duration>,
    overall_timeout: Option<Duration>,
    breaker: Option<CircuitBreaker>,
    limiter: Option<RateLimiter>,
    concurrency: Option<(usize, Semaphore)>,
    on_retry: Vec<RetryHook<E>>,
    on_success: Vec<SuccessHook>,
    on_failure: Vec<FailureHook<E>>,
    stats: Counters,
}

/// Passed to [`PolicyBuilder::on_retry`] hooks before each backoff sleep.
#[derive(Debug)]
#[non_exhaustive]
pub struct RetryEvent<'a, E> {
    /// The attempt that just failed, from 1.
    pub attempt: u32,
    /// How long the policy will sleep before the next attempt.
    pub delay: Duration,
    /// Why the attempt failed (`Error::Operation` or `Error::AttemptTimeout`).
    pub error: &'a Error<E>,
}

/// A snapshot of a policy's counters, for metrics. Every counter only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyStats {
    /// Calls started.
    pub calls: u64,
    /// Calls that returned a value.
    pub successes: u64,
    /// Calls that returned an error (any kind).
    pub failures: u64,
    /// Times the operation was called (attempts, retries included).
    pub attempts: u64,
    /// Retries scheduled (attempts after the first of a call).
    pub retries: u64,
    /// Attempts that hit the per-attempt timeout.
    pub attempt_timeouts: u64,
    /// Calls that hit the overall timeout.
    pub overall_timeouts: u64,
    /// Attempts rejected by the open circuit breaker.
    pub rejected_by_breaker: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    attempts: AtomicU64,
    retries: AtomicU64,
    attempt_timeouts: AtomicU64,
    overall_timeouts: AtomicU64,
    rejected_by_breaker: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl<E> Clone for Policy<E> {
    fn clone(&self) -> Self {
        Policy {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<E> Default for Policy<E> {
    /// A transparent policy: one attempt, no timeout, no limits.
    fn default() -> Self {
        Policy {
            inner: Arc::new(PolicyBuilder::new().into_inner()),
        }
    }
}

impl<E> fmt::Debug for Policy<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Policy")
            .field("retries", &i.retries)
            .field("backoff", &i.backoff)
            .field("attempt_timeout", &i.attempt_timeout)
            .field("overall_timeout", &i.overall_timeout)
            .field("breaker", &i.breaker.as_ref().map(|b| b.state()))
            .field("rate_limit", &i.limiter.as_ref().map(|l| l.period()))
            .field("concurrency", &i.concurrency.as_ref().map(|c| c.0))
            .finish_non_exhaustive()
    }
}

impl<E> Policy<E> {
    /// Starts a policy; see [`PolicyBuilder`] for the defaults.
    pub fn builder() -> PolicyBuilder<E> {
        PolicyBuilder::new()
    }

    /// Runs `operation` under the policy. It is called once per attempt, so it must build a new
    /// future each time. Success on attempt k means exactly k calls.
    pub async fn call<T, F, Fut>(&self, operation: F) -> Result<T, Error<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.execute(None, operation).await
    }

    /// Like [`call`](Policy::call), with a key for a per-key rate limiter (ignored otherwise).
    pub async fn call_keyed<K, T, F, Fut>(&self, key: &K, operation: F) -> Result<T, Error<E>>
    where
        K: Hash + ?Sized,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let hash = (self.inner.limiter.as_ref())
            .filter(|l| l.is_per_key())
            .map(|l| l.hash_key(key));
        self.execute(hash, operation).await
    }

    /// The same policy with a result cache in front: see [`Cached`].
    pub fn with_cache<K, V>(&self, cache: Cache<K, V>) -> Cached<K, V, E> {
        Cached {
            policy: self.clone(),
            cache,
            in_flight: Arc::default(),
        }
    }

    /// The circuit breaker, if any (to read its state and transition counters).
    pub fn circuit_breaker(&self) -> Option<&CircuitBreaker> {
        self.inner.breaker.as_ref()
    }

    /// The rate limiter, if any.
    pub fn rate_limiter(&self) -> Option<&RateLimiter> {
        self.inner.limiter.as_ref()
    }

    /// The number of retries after the first attempt.
    pub fn retries(&self) -> u32 {
        self.inner.retries
    }

    /// Calls currently holding a concurrency slot, if a limit is set.
    pub fn in_flight(&self) -> Option<usize> {
        (self.inner.concurrency.as_ref()).map(|(max, sem)| max - sem.available_permits())
    }

    /// The counters so far.
    pub fn stats(&self) -> PolicyStats {
        let c = &self.inner.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PolicyStats {
            calls: get(&c.calls),
            successes: get(&c.successes),
            failures: get(&c.failures),
            attempts: get(&c.attempts),
            retries: get(&c.retries),
            attempt_timeouts: get(&c.attempt_timeouts),
            overall_timeouts: get(&c.overall_timeouts),
            rejected_by_breaker: get(&c.rejected_by_breaker),
        }
    }

    async fn execute<T, F, Fut>(&self, key: Option<u64>, mut operation: F) -> Result<T, Error<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let inner = &*self.inner;
        bump(&inner.stats.calls);
        let attempts = AtomicU32::new(0);
        let run = self.attempts(key, &mut operation, &attempts);
        let result = match inner.overall_timeout {
            None => run.await,
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(result) => result,
                Err(_) => {
                    bump(&inner.stats.overall_timeouts);
                    Err(Error::OverallTimeout {
                        timeout: limit,
                        attempts: attempts.load(Ordering::Relaxed),
                    })
                }
            },
        };
        match &result {
            Ok(_) => {
                bump(&inner.stats.successes);
                let n = attempts.load(Ordering::Relaxed);
                inner.on_success.iter().for_each(|hook| hook(n));
            }
            Err(error) => {
                bump(&inner.stats.failures);
                tracing::debug!(
                    target: "weir_resilience::policy",
                    attempts = error.attempts(),
                    timeout = error.is_timeout(),
                    circuit_open = error.is_circuit_open(),
                    "call failed"
                );
                inner.on_failure.iter().for_each(|hook| hook(error));
            }
        }
        result
    }

    async fn attempts<T, F, Fut>(
        &self,
        key: Option<u64>,
        operation: &mut F,
        count: &AtomicU32,
    ) -> Result<T, Error<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let inner = &*self.inner;
        let mut delays = inner.backoff.delays();
        let mut last_error = None;
        let mut attempt = 0u32;
        loop {
            let permit = match &inner.breaker {
                None => None,
                Some(breaker) => match breaker.try_acquire() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        bump(&inner.stats.rejected_by_breaker);
                        return Err(last_error.unwrap_or(Error::CircuitOpen));
                    }
                },
            };
            let slot = match &inner.concurrency {
                // The semaphore is never closed, so acquiring cannot fail.
                Some((_, semaphore)) => semaphore.acquire().await.ok(),
                None => None,
            };
            match (&inner.limiter, key) {
                (Some(limiter), Some(hash)) => limiter.acquire_hashed(hash).await,
                (Some(limiter), None) => limiter.acquire().await,
                (None, _) => {}
            }
            attempt += 1;
            count.store(attempt, Ordering::Relaxed);
            bump(&inner.stats.attempts);
            let outcome = match inner.attempt_timeout {
                None => Some(operation().await),
                Some(limit) => tokio::time::timeout(limit, operation()).await.ok(),
            };
            drop(slot);
            let (error, retryable) = match outcome {
                Some(Ok(value)) => {
                    if let Some(permit) = permit {
                        permit.success();
                    }
                    return Ok(value);
                }
                Some(Err(source)) => {
                    let retryable = inner.retry_if.as_ref().is_none_or(|p| p(&source));
                    let error = Error::Operation {
                        source,
                        attempts: attempt,
                    };
                    (error, retryable)
                }
                None => {
                    bump(&inner.stats.attempt_timeouts);
                    let error = Error::AttemptTimeout {
                        timeout: inner.attempt_timeout.unwrap_or_default(),
                        attempts: attempt,
                    };
                    (error, inner.retry_timeouts)
                }
            };
            if let Some(permit) = permit {
                permit.failure();
            }
            if !retryable || attempt > inner.retries {
                return Err(error);
            }
            let delay = delays.next().unwrap_or_default();
            bump(&inner.stats.retries);
            tracing::debug!(
                target: "weir_resilience::policy",
                attempt,
                delay = ?delay,
                timeout = error.is_timeout(),
                "attempt failed, retrying"
            );
            let event = RetryEvent {
                attempt,
                delay,
                error: &error,
            };
            inner.on_retry.iter().for_each(|hook| hook(&event));
            last_error = Some(error);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Builds a [`Policy`]. Defaults: no retries (`retries(0)`), [`Backoff::default`] between
/// retries once enabled, every error retryable until [`retry_if`](Self::retry_if) or
/// [`retry_when_retryable`](Self::retry_when_retryable) says otherwise, timed-out attempts
/// retryable, no timeouts, no breaker, no rate limit, no concurrency limit.
pub struct PolicyBuilder<E> {
    inner: Inner<E>,
    concurrency: Option<usize>,
}

impl<E> fmt::Debug for PolicyBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyBuilder")
            .field("retries", &self.inner.retries)
            .field("backoff", &self.inner.backoff)
            .finish_non_exhaustive()
    }
}

impl<E> Default for PolicyBuilder<E> {
    fn default() -> Self {
        PolicyBuilder::new()
    }
}

impl<E> PolicyBuilder<E> {
    /// The defaults listed on [`PolicyBuilder`].
    pub fn new() -> Self {
        PolicyBuilder {
            inner: Inner {
                retries: 0,
                backoff: Backoff::default(),
                retry_if: None,
                retry_timeouts: true,
                attempt_timeout: None,
                overall_timeout: None,
                breaker: None,
                limiter: None,
                concurrency: None,
                on_retry: Vec::new(),
                on_success: Vec::new(),
                on_failure: Vec::new(),
                stats: Counters::default(),
            },
            concurrency: None,
        }
    }

    /// Retries after the first attempt: `n` allows `n + 1` attempts; `0` disables retrying.
    pub fn retries(mut self, n: u32) -> Self {
        self.inner.retries = n;
        self
    }

    /// Delays between retries.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.inner.backoff = backoff;
        self
    }

    /// Retry only errors for which `predicate` is true; others fail at once.
    pub fn retry_if(mut self, predicate: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        self.inner.retry_if = Some(Arc::new(predicate));
        self
    }

    /// Retry only errors whose [`Retryable::is_retryable`] is true; others fail at once.
    pub fn retry_when_retryable(self) -> Self
    where
        E: Retryable,
    {
        self.retry_if(|e: &E| e.is_retryable())
    }

    /// Whether an attempt that hit the per-attempt timeout is retried (default: yes).
    pub fn retry_timeouts(mut self, retry: bool) -> Self {
        self.inner.retry_timeouts = retry;
        self
    }

    /// Limit on each attempt (the operation's own future; not the waits before it).
    pub fn attempt_timeout(mut self, limit: Duration) -> Self {
        self.inner.attempt_timeout = Some(limit);
        self
    }

    /// Limit on the whole call: attempts, backoff sleeps, waits for slots and tokens.
    pub fn overall_timeout(mut self, limit: Duration) -> Self {
        self.inner.overall_timeout = Some(limit);
        self
    }

    /// Circuit breaker consulted before every attempt. Pass a clone to keep a handle on it.
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.inner.breaker = Some(breaker);
        self
    }

    /// Rate limiter: every attempt takes a token.
    pub fn rate_limit(mut self, limiter: RateLimiter) -> Self {
        self.inner.limiter = Some(limiter);
        self
    }

    /// At most `max_in_flight` attempts of this policy (and its clones) run at once; others wait
    /// in arrival order.
    pub fn concurrency(mut self, max_in_flight: usize) -> Self {
        self.concurrency = Some(max_in_flight);
        self
    }

    /// Called before each retry's backoff sleep; several hooks may be added.
    pub fn on_retry(mut self, hook: impl Fn(&RetryEvent<'_, E>) + Send + Sync + 'static) -> Self {
        self.inner.on_retry.push(Arc::new(hook));
        self
    }

    /// Called when a call succeeds, with the number of attempts it took.
    pub fn on_success(mut self, hook: impl Fn(u32) + Send + Sync + 'static) -> Self {
        self.inner.on_success.push(Arc::new(hook));
        self
    }

    /// Called when a call fails, with the error it returns.
    pub fn on_failure(mut self, hook: impl Fn(&Error<E>) + Send + Sync + 'static) -> Self {
        self.inner.on_failure.push(Arc::new(hook));
        self
    }

    /// Checks the settings and builds the policy. Errors name the setting as in
    /// [`PolicyConfig`](crate::PolicyConfig).
    pub fn build(self) -> Result<Policy<E>, ConfigError> {
        let i = &self.inner;
        i.backoff.validate()?;
        for (key, limit) in [
            ("timeout", i.attempt_timeout),
            ("overall_timeout", i.overall_timeout),
        ] {
            if limit.is_some_and(|l| l.is_zero()) {
                return Err(ConfigError::invalid(
                    key,
                    "a duration longer than zero",
                    "0s",
                ));
            }
        }
        if self.concurrency == Some(0) {
            return Err(ConfigError::invalid("concurrency", "at least 1", 0));
        }
        if let Some(breaker) = &i.breaker {
            breaker.config().validate()?;
        }
        if let Some(limiter) = &i.limiter {
            limiter.validate()?;
        }
        Ok(Policy {
            inner: Arc::new(self.into_inner()),
        })
    }

    fn into_inner(self) -> Inner<E> {
        let mut inner = self.inner;
        inner.concurrency = self.concurrency.map(|n| (n, Semaphore::new(n)));
        inner
    }
}

/// A [`Policy`] with a result [`Cache`] in front, from [`Policy::with_cache`].
///
/// A call whose key holds a live value returns it without calling the operation and without
/// taking a rate-limit token. Otherwise the policy runs, and only a success is stored.
///
/// Concurrent misses on one key are coalesced: one caller runs the operation while the others
/// wait, then take its cached result (a hit each). If it fails, the next waiter calls in turn,
/// so a failing key is not hammered by all its waiters at once. Different keys never wait for
/// each other. Clones share the cache and the coalescing.
pub struct Cached<K, V, E> {
    policy: Policy<E>,
    cache: Cache<K, V>,
    in_flight: Arc<InFlight<K>>,
}

/// One async gate per key with a miss being resolved.
type InFlight<K> = std::sync::Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>, ahash::RandomState>>;

impl<K, V, E> Clone for Cached<K, V, E> {
    fn clone(&self) -> Self {
        Cached {
            policy: self.policy.clone(),
            cache: self.cache.clone(),
            in_flight: Arc::clone(&self.in_flight),
        }
    }
}

/// Holds a key's gate; the last holder removes it from the map, also when the call is cancelled.
struct GateRef<'a, K: Hash + Eq> {
    in_flight: &'a InFlight<K>,
    key: &'a K,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl<K: Hash + Eq> Drop for GateRef<'_, K> {
    fn drop(&mut self) {
        let mut map = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Clones are only made under this lock, so the count is exact: the map's and ours.
        if Arc::strong_count(&self.gate) == 2 {
            map.remove(self.key);
        }
    }
}

impl<K, V, E> fmt::Debug for Cached<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cached")
            .field("policy", &self.policy)
            .field("cache", &self.cache)
            .finish()
    }
}

impl<K, V, E> Cached<K, V, E>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// The cached value under `key`, or the operation's result under the policy (cached if
    /// it succeeded). The key also selects the per-key rate limit, if there is one.
    pub async fn call_keyed<F, Fut>(&self, key: &K, operation: F) -> Result<V, Error<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some(value) = self.cache.get(key) {
            return Ok(value);
        }
        let gate = GateRef {
            in_flight: &self.in_flight,
            key,
            gate: Arc::clone(
                self.in_flight
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .entry(key.clone())
                    .or_default(),
            ),
        };
        let _turn = gate.gate.lock().await;
        if let Some(value) = self.cache.peek(key) {
            // Another caller resolved this miss while we waited.
            self.cache.count_hit();
            return Ok(value);
        }
        let value = self.policy.call_keyed(key, operation).await?;
        self.cache.insert(key.clone(), value.clone());
        Ok(value)
    }

    /// Like [`call_keyed`](Self::call_keyed) for an operation over an input, with the key
    /// computed from the input by `key_fn` (e.g. a normalised field of a record).
    pub async fn call_with<'i, I, KF, F, Fut>(
        &self,
        input: &'i I,
        key_fn: KF,
        mut operation: F,
    ) -> Result<V, Error<E>>
    where
        I: ?Sized,
        KF: FnOnce(&I) -> K,
        F: FnMut(&'i I) -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let key = key_fn(input);
        self.call_keyed(&key, || operation(input)).await
    }

    /// The policy.
    pub fn policy(&self) -> &Policy<E> {
        &self.policy
    }

    /// The cache.
    pub fn cache(&self) -> &Cache<K, V> {
        &self.cache
    }
}

/// 0 closed, 1 half-open, 2 open (the order of `weir_circuit_breaker_state`).
fn breaker_level(state: crate::breaker::BreakerState) -> u8 {
    match state {
        crate::breaker::BreakerState::Closed => 0,
        crate::breaker::BreakerState::HalfOpen => 1,
        crate::breaker::BreakerState::Open => 2,
    }
}

/// A policy reports its counters to the metrics of the operator it runs in
/// ([`weir_core::OperatorContext::report_policy`]); they are read when metrics are scraped.
impl<E: 'static> weir_core::PolicyReport for Policy<E> {
    fn policy_metrics(&self) -> weir_core::PolicyMetrics {
        weir_core::PolicyMetrics {
            retries: self.inner.stats.retries.load(Ordering::Relaxed),
            breaker_state: self.circuit_breaker().map(|b| breaker_level(b.state())),
            rate_limited: self.rate_limiter().map(RateLimiter::delayed),
            cache_hits: None,
            cache_misses: None,
        }
    }

    fn shared_id(&self) -> usize {
        Arc::as_ptr(&self.inner) as *const () as usize
    }
}

/// The policy's counters and the cache's hits and misses.
impl<K, V, E> weir_core::PolicyReport for Cached<K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: 'static,
{
    fn policy_metrics(&self) -> weir_core::PolicyMetrics {
        weir_core::PolicyMetrics {
            cache_hits: Some(self.cache.hits()),
            cache_misses: Some(self.cache.misses()),
            ..self.policy.policy_metrics()
        }
    }

    fn shared_id(&self) -> usize {
        self.policy.shared_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight_keys<K, V, E>(cached: &Cached<K, V, E>) -> usize {
        cached.in_flight.lock().unwrap().len()
    }

    #[tokio::test(start_paused = true)]
    async fn coalescing_gates_are_removed_when_done_or_cancelled() {
        let cached =
            Policy::<std::io::Error>::default().with_cache(Cache::new(Duration::from_secs(60)));
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(1u8)
        };
        let (a, b) = tokio::join!(cached.call_keyed(&1, slow), cached.call_keyed(&1, slow));
        assert_eq!((a.unwrap(), b.unwrap()), (1, 1));
        assert_eq!(in_flight_keys(&cached), 0);

        // Cancelled while the miss is being resolved, and while waiting behind it.
        let first = cached.call_keyed(&2, slow);
        let second = cached.call_keyed(&2, slow);
        let timed_out = tokio::time::timeout(Duration::from_millis(10), async {
            tokio::join!(first, second)
        })
        .await;
        assert!(timed_out.is_err());
        assert_eq!(in_flight_keys(&cached), 0);
        assert_eq!(cached.call_keyed(&2, slow).await.unwrap(), 1);
    }
}
