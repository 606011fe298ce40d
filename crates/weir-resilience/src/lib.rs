//! Weir's resilience toolkit: everything that protects a call to the outside world.
//!
//! This crate owns retries with backoff, fallbacks over alternatives, circuit breakers, rate
//! limits, result caches, per-attempt and overall timeouts, concurrency limits and the parallel
//! async map. Each piece works around any async function on its own; the runtime wraps them as
//! stream operators. All time follows `tokio::time`, so tests run under a paused clock.
//!
//! ```
//! use std::time::Duration;
//! use weir_resilience::{Backoff, Error, Policy, Retryable};
//!
//! #[derive(Debug, thiserror::Error)]
//! enum FetchError {
//!     #[error("server busy")]
//!     Busy,
//!     #[error("no such item")]
//!     NotFound,
//! }
//!
//! impl Retryable for FetchError {
//!     fn is_retryable(&self) -> bool { matches!(self, FetchError::Busy) }
//! }
//!
//! async fn fetch(calls: &std::sync::atomic::AtomicU32) -> Result<&'static str, FetchError> {
//!     match calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
//!         0 | 1 => Err(FetchError::Busy),
//!         _ => Ok("payload"),
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let policy = Policy::builder()
//!     .retries(3)
//!     .backoff(Backoff::exponential(Duration::from_millis(100)).max_delay(Duration::from_secs(5)))
//!     .retry_when_retryable()
//!     .attempt_timeout(Duration::from_secs(2))
//!     .build()?;
//!
//! let calls = std::sync::atomic::AtomicU32::new(0);
//! let value = policy.call(|| fetch(&calls)).await?;
//! assert_eq!(value, "payload");
//! assert_eq!(policy.stats().attempts, 3); // succeeded on the third attempt
//!
//! // A non-retryable error fails at once, with its type intact.
//! let err = policy.call(|| async { Err::<(), _>(FetchError::NotFound) }).await.unwrap_err();
//! assert!(matches!(err, Error::Operation { source: FetchError::NotFound, attempts: 1 }));
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Semantics
//!
//! - **Retries.** `retries = N` allows N + 1 attempts; `0` disables retrying; success on attempt
//!   k makes exactly k calls. Which errors are retried is explicit: a predicate
//!   ([`PolicyBuilder::retry_if`]) or the error's [`Retryable`] classification
//!   ([`PolicyBuilder::retry_when_retryable`], always used by [`PolicyConfig::build`]). A builder
//!   given neither retries every error. Other errors fail at once. When retries run out, the
//!   last error comes back as [`Error::Operation`] with its own type and the attempt count.
//!   Timed-out attempts are retried unless [`PolicyBuilder::retry_timeouts`] says otherwise.
//! - **Backoff.** The delay before retry n is `min × factorⁿ⁻¹`, capped at `max`; with jitter,
//!   each delay is uniform in `[min, that delay]`, so always inside `[min, max]`. Hooks
//!   ([`PolicyBuilder::on_retry`], [`on_success`](PolicyBuilder::on_success),
//!   [`on_failure`](PolicyBuilder::on_failure)) and counters ([`Policy::stats`]) report
//!   every outcome; tracing events go to targets `weir_resilience::{policy,breaker,fallback}`.
//! - **Fallbacks.** [`Fallback`] tries alternatives in order, each under its own policy (own
//!   retry budget, own breaker: an open one is skipped at once). When all fail,
//!   [`Error::AllFailed`] carries every alternative's error in order and displays them in one
//!   message. An empty list is [`ConfigError::NoAlternatives`].
//! - **Circuit breaker.** Closed → open after `failure_threshold` consecutive failures (or a
//!   failure rate over a window) → half-open after `reset_timeout`, letting one probe through →
//!   closed if it succeeds, open again if it fails. Every error and timed-out attempt counts as
//!   a failure. If the breaker is open before the first attempt the call fails with
//!   [`Error::CircuitOpen`]; if it opens between retries, retrying stops and the last real error
//!   is returned. Transitions are logged and counted ([`CircuitBreaker::transitions`]).
//! - **Rate limit.** N attempts at r per second take at least (N − 1) / r, the first at once;
//!   waiters are served in arrival order; per operator and optionally per key. Every attempt
//!   that reaches the service takes a token (retries too); cache hits take none.
//! - **Cache.** [`Cached`] stores successes (never failures) for a TTL under a key the caller
//!   computes (any key function); same key within the TTL → no call, same value; after → a new
//!   call.
//! - **Timeouts and concurrency.** A per-attempt timeout (the operation only) and an overall one
//!   (everything, waits included); a limit on attempts in flight.
//! - **Parallel map.** [`Parallel`] runs at most `workers` futures at once over an iterator or a
//!   stream, output in input order ([`Order::Ordered`]) or completion order.
//! - **In streams.** [`stream::AsyncStreamExt::map_async`] runs such calls as a Weir stream
//!   operator: failures go to a second stream with the record and its position, and every
//!   call of a batch finishes before the batch does, so checkpoints never miss one.

mod backoff;
mod breaker;
mod cache;
mod config;
mod error;
mod fallback;
mod human;
mod parallel;
mod policy;
mod rate;
pub mod stream;

pub use backoff::{Backoff, Delays};
pub use breaker::{
    BreakerConfig, BreakerPermit, BreakerState, CircuitBreaker, FailureRate, Rejected,
};
pub use cache::{Cache, DEFAULT_MAX_ENTRIES};
pub use config::{CacheConfig, PolicyConfig, RateLimitConfig};
pub use error::{AllFailed, AlternativeFailure, ConfigError, Error, Retryable};
pub use fallback::Fallback;
pub use parallel::{Order, Parallel};
pub use policy::{Cached, Policy, PolicyBuilder, PolicyStats, RetryEvent};
pub use rate::RateLimiter;
