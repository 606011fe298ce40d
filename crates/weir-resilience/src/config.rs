//! [`PolicyConfig`]: the `policy` block of a pipeline step or sink, as written in YAML.

use crate::backoff::Backoff;
use crate::breaker::{BreakerConfig, CircuitBreaker};
use crate::cache::{Cache, DEFAULT_MAX_ENTRIES};
use crate::error::{ConfigError, Retryable};
use crate::policy::{Policy, PolicyBuilder};
use crate::rate::RateLimiter;
use serde::{Deserialize, Serialize};
use std::hash::Hash;
use std::time::Duration;

/// A policy as configuration. Every key is optional; unknown keys are rejected. Durations are
/// strings such as `"250ms"`, `"5s"`, `"1m"`. See `crates/weir-resilience/README.md` for the
/// reference.
///
/// ```
/// use weir_resilience::PolicyConfig;
///
/// let config: PolicyConfig = serde_json::from_str(r#"{ "retries": 2, "timeout": "2s" }"#)?;
/// let policy = config.build::<std::io::Error>()?;
/// assert_eq!(policy.retries(), 2);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Retries after the first attempt (`0` disables retrying). Default 3.
    pub retries: u32,
    /// Delays between retries. Default `{ min: 100ms, max: 30s, factor: 2.0, jitter: true }`.
    pub backoff: Backoff,
    /// Per-attempt timeout. Default none.
    #[serde(with = "crate::human::option", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Timeout of the whole call, retries and waits included. Default none.
    #[serde(with = "crate::human::option", skip_serializing_if = "Option::is_none")]
    pub overall_timeout: Option<Duration>,
    /// Rate limit on attempts. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
    /// Maximum attempts in flight. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Circuit breaker. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BreakerConfig>,
    /// Result cache. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheConfig>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            retries: 3,
            backoff: Backoff::default(),
            timeout: None,
            overall_timeout: None,
            rate_limit: None,
            concurrency: None,
            circuit_breaker: None,
            cache: None,
        }
    }
}

/// `rate_limit: { per_second: 100, per_key: false }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Attempts per second (fractions allowed, e.g. `0.5`); must be positive.
    pub per_second: f64,
    /// One schedule per key instead of one for the whole operator. Default false.
    #[serde(default)]
    pub per_key: bool,
}

/// `cache: { ttl: 60s, max_entries: 10000 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// How long a result stays cached; required, longer than zero.
    #[serde(with = "crate::human")]
    pub ttl: Duration,
    /// Bound on cached entries (oldest evicted first). Default 10000.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
}

fn default_max_entries() -> usize {
    DEFAULT_MAX_ENTRIES
}

impl PolicyConfig {
    /// Checks every value; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.limiter()?;
        if let Some(cache) = &self.cache {
            if cache.ttl.is_zero() {
                return Err(ConfigError::invalid(
                    "cache.ttl",
                    "a duration longer than zero",
                    "0s",
                ));
            }
            if cache.max_entries == 0 {
                return Err(ConfigError::invalid("cache.max_entries", "at least 1", 0));
            }
        }
        // The builder checks the rest; its state (breaker, limiter) is dropped here.
        self.builder::<std::convert::Infallible>()?
            .build()
            .map(drop)
    }

    /// A builder holding these settings, with fresh breaker and limiter state, to add a retry
    /// predicate or hooks before [`build`](PolicyBuilder::build). Every error stays retryable
    /// unless a predicate is added.
    pub fn builder<E>(&self) -> Result<PolicyBuilder<E>, ConfigError> {
        let mut builder = Policy::builder()
            .retries(self.retries)
            .backoff(self.backoff.clone());
        if let Some(limit) = self.timeout {
            builder = builder.attempt_timeout(limit);
        }
        if let Some(limit) = self.overall_timeout {
            builder = builder.overall_timeout(limit);
        }
        if let Some(limiter) = self.limiter()? {
            builder = builder.rate_limit(limiter);
        }
        if let Some(n) = self.concurrency {
            builder = builder.concurrency(n);
        }
        if let Some(breaker) = &self.circuit_breaker {
            breaker.validate()?;
            builder = builder.circuit_breaker(CircuitBreaker::new(breaker.clone()));
        }
        Ok(builder)
    }

    /// The policy, retrying the errors that say they are [`Retryable`]. Each call builds an
    /// independent policy (its own breaker, limiter and counters). The cache is separate: see
    /// [`PolicyConfig::cache`].
    pub fn build<E: Retryable>(&self) -> Result<Policy<E>, ConfigError> {
        self.builder()?.retry_when_retryable().build()
    }

    /// The configured cache, if any, empty.
    pub fn cache<K, V>(&self) -> Result<Option<Cache<K, V>>, ConfigError>
    where
        K: Hash + Eq + Clone,
        V: Clone,
    {
        let Some(config) = &self.cache else {
            return Ok(None);
        };
        if config.max_entries == 0 {
            return Err(ConfigError::invalid("cache.max_entries", "at least 1", 0));
        }
        let cache = Cache::new(config.ttl).max_entries(config.max_entries);
        cache.validate()?;
        Ok(Some(cache))
    }

    fn limiter(&self) -> Result<Option<RateLimiter>, ConfigError> {
        let Some(config) = &self.rate_limit else {
            return Ok(None);
        };
        let limiter = RateLimiter::try_per_second_f64(config.per_second)?;
        Ok(Some(if config.per_key {
            limiter.per_key()
        } else {
            limiter
        }))
    }
}
