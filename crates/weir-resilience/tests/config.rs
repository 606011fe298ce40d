//! `PolicyConfig` from YAML: the documented block, defaults, and errors that name the key.

mod common;

use common::{Calls, TestError, ms};
use std::time::Duration;
use tokio::time::Instant;
use weir_resilience::{BreakerState, Error, PolicyConfig};

const FULL: &str = "
retries: 3
backoff: { min: 100ms, max: 5s, factor: 2.0, jitter: true }
timeout: 2s            # per attempt
overall_timeout: 10s
rate_limit: { per_second: 100, per_key: false }
concurrency: 8
circuit_breaker: { failure_threshold: 5, reset_timeout: 30s }
cache: { ttl: 60s, max_entries: 10000 }
";

fn parse(yaml: &str) -> Result<PolicyConfig, String> {
    serde_yaml::from_str(yaml).map_err(|e| e.to_string())
}

#[tokio::test(start_paused = true)]
async fn the_documented_block_parses_and_builds() {
    let config = parse(FULL).unwrap();
    assert_eq!(config.retries, 3);
    assert_eq!(config.timeout, Some(Duration::from_secs(2)));
    assert_eq!(config.overall_timeout, Some(Duration::from_secs(10)));
    assert_eq!(config.concurrency, Some(8));
    assert_eq!(config.backoff.min_delay(), ms(100));
    assert_eq!(config.backoff.max(), Duration::from_secs(5));
    let breaker = config.circuit_breaker.as_ref().unwrap();
    assert_eq!(
        (breaker.failure_threshold, breaker.reset_timeout),
        (5, Duration::from_secs(30))
    );
    let cache = config.cache.as_ref().unwrap();
    assert_eq!(
        (cache.ttl, cache.max_entries),
        (Duration::from_secs(60), 10_000)
    );

    let policy = config.build::<TestError>().unwrap();
    assert_eq!(policy.retries(), 3);
    assert_eq!(policy.rate_limiter().unwrap().period(), ms(10));
    assert_eq!(policy.in_flight(), Some(0));
    assert_eq!(
        policy.circuit_breaker().unwrap().state(),
        BreakerState::Closed
    );
    let cache = config.cache::<String, u32>().unwrap().unwrap();
    assert_eq!(
        (cache.ttl(), cache.capacity()),
        (Duration::from_secs(60), 10_000)
    );
}

#[tokio::test(start_paused = true)]
async fn built_policy_uses_the_retryable_classification_and_timeouts() {
    let config = parse("retries: 2\nbackoff: { min: 10ms, jitter: false }\ntimeout: 1s").unwrap();
    let policy = config.build::<TestError>().unwrap();
    let calls = Calls::default();
    let start = Instant::now();
    let err = policy
        .call(|| async {
            calls.hit(start);
            Err::<(), _>(TestError::Fatal)
        })
        .await
        .unwrap_err();
    assert_eq!(calls.count(), 1, "Fatal is not retryable");
    assert!(matches!(err, Error::Operation { attempts: 1, .. }));

    let calls = Calls::default();
    let err = policy
        .call(|| async {
            calls.hit(start);
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok::<_, TestError>(())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AttemptTimeout { attempts: 3, .. }));
    assert_eq!(calls.gaps(), [ms(1010), ms(1020)]);
}

#[test]
fn every_key_is_optional() {
    let config = parse("{}").unwrap();
    assert_eq!(config, PolicyConfig::default());
    assert_eq!(config.retries, 3);
    assert!(config.timeout.is_none() && config.rate_limit.is_none() && config.cache.is_none());
    config.validate().unwrap();
    let config = parse("backoff: { factor: 3 }").unwrap();
    assert_eq!(config.backoff.min_delay(), ms(100));
}

#[test]
fn unknown_keys_are_rejected() {
    let err = parse("retries: 1\nretry_count: 2").unwrap_err();
    assert!(err.contains("retry_count"), "{err}");
    let err = parse("backoff: { minimum: 1s }").unwrap_err();
    assert!(err.contains("minimum"), "{err}");
    let err = parse("circuit_breaker: { threshold: 1 }").unwrap_err();
    assert!(err.contains("threshold"), "{err}");
}

#[test]
fn bad_durations_are_rejected_with_the_text() {
    for (yaml, needle) in [
        ("timeout: 5x", "5x"),
        ("timeout: -5s", "-5s"),
        ("timeout: 5", "time unit"),
        ("cache: { ttl: soon }", "soon"),
    ] {
        let err = parse(yaml).unwrap_err();
        assert!(err.contains(needle), "{yaml}: {err}");
    }
}

#[test]
fn invalid_values_are_errors_naming_the_key() {
    let cases = [
        ("retries: -1", "retries"),
        ("concurrency: -2", "concurrency"),
        ("backoff: { factor: 0.5 }", "backoff.factor"),
        ("backoff: { min: 10s, max: 1s }", "backoff.min"),
        ("rate_limit: { per_second: 0 }", "rate_limit.per_second"),
        ("rate_limit: { per_second: -3 }", "rate_limit.per_second"),
        ("concurrency: 0", "concurrency"),
        ("timeout: 0s", "timeout"),
        ("overall_timeout: 0ms", "overall_timeout"),
        (
            "circuit_breaker: { failure_threshold: 0 }",
            "circuit_breaker.failure_threshold",
        ),
        (
            "circuit_breaker: { reset_timeout: 0s }",
            "circuit_breaker.reset_timeout",
        ),
        (
            "circuit_breaker: { failure_rate: { rate: 1.5, window: 10s } }",
            "circuit_breaker.failure_rate.rate",
        ),
        ("cache: { ttl: 0s }", "cache.ttl"),
        ("cache: { ttl: 1s, max_entries: 0 }", "cache.max_entries"),
    ];
    for (yaml, key) in cases {
        let message = match parse(yaml) {
            Err(parse_error) => parse_error,
            Ok(config) => {
                let validated = config.validate().unwrap_err().to_string();
                let built = config.build::<TestError>().map(drop);
                let built = match (built, config.cache::<u32, u32>()) {
                    (Err(e), _) | (Ok(()), Err(e)) => e.to_string(),
                    (Ok(()), Ok(_)) => panic!("{yaml}: build accepted it"),
                };
                assert_eq!(validated, built, "{yaml}");
                validated
            }
        };
        assert!(
            message.contains(key),
            "{yaml}: {message:?} does not name {key}"
        );
    }
}

#[test]
fn config_round_trips_through_yaml() {
    let config = parse(FULL).unwrap();
    let text = serde_yaml::to_string(&config).unwrap();
    assert_eq!(parse(&text).unwrap(), config, "{text}");
}
