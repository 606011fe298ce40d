//! Acceptance tests of `Policy`: retries, backoff, hooks, breaker, rate limit, timeouts,
//! concurrency and cache. All run under tokio's paused clock.

mod common;

use common::{Calls, TestError, ms};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use weir_resilience::{
    Backoff, BreakerConfig, BreakerState, Cache, CircuitBreaker, Error, Policy, RateLimiter,
};

fn retrying(retries: u32) -> Policy<TestError> {
    Policy::builder()
        .retries(retries)
        .backoff(Backoff::none())
        .retry_when_retryable()
        .build()
        .unwrap()
}

/// An operation that fails with `Transient(n)` on its first `failures` calls, then succeeds.
async fn flaky(calls: &Calls, start: Instant, failures: u32) -> Result<u32, TestError> {
    let n = calls.hit(start);
    if n <= failures {
        Err(TestError::Transient(n))
    } else {
        Ok(n)
    }
}

// ---- retries -------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn success_on_attempt_k_makes_exactly_k_calls() {
    for k in 1..=4 {
        let policy = retrying(3);
        let calls = Calls::default();
        let start = Instant::now();
        let value = policy.call(|| flaky(&calls, start, k - 1)).await.unwrap();
        assert_eq!(value, k);
        assert_eq!(calls.count(), k, "success on attempt {k}");
        assert_eq!(policy.stats().attempts, u64::from(k));
        assert_eq!(policy.stats().retries, u64::from(k - 1));
    }
}

#[tokio::test(start_paused = true)]
async fn zero_retries_means_one_attempt() {
    let policy = retrying(0);
    let calls = Calls::default();
    let start = Instant::now();
    let err = policy.call(|| flaky(&calls, start, 5)).await.unwrap_err();
    assert_eq!(calls.count(), 1);
    assert!(matches!(
        err,
        Error::Operation {
            source: TestError::Transient(1),
            attempts: 1
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_return_the_last_error_with_its_type() {
    let policy = retrying(2);
    let calls = Calls::default();
    let start = Instant::now();
    let err = policy.call(|| flaky(&calls, start, 10)).await.unwrap_err();
    assert_eq!(calls.count(), 3, "retries = 2 means 3 attempts");
    assert_eq!(err.attempts(), 3);
    assert_eq!(err.operation_error(), Some(&TestError::Transient(3)));
    // The cause chain keeps the concrete type.
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(
        source.downcast_ref::<TestError>(),
        Some(&TestError::Transient(3))
    );
    assert_eq!(
        err.to_string(),
        "operation failed after 3 attempt(s): transient failure #3"
    );
}

#[tokio::test(start_paused = true)]
async fn non_retryable_errors_fail_at_once() {
    let policy = retrying(5);
    let calls = Calls::default();
    let err = policy
        .call(|| async {
            calls.hit(Instant::now());
            Err::<(), _>(TestError::Fatal)
        })
        .await
        .unwrap_err();
    assert_eq!(calls.count(), 1);
    assert_eq!(err.into_operation_error(), Some(TestError::Fatal));
}

#[tokio::test(start_paused = true)]
async fn a_predicate_decides_what_is_retried() {
    // Retry only the first two transient errors: the predicate sees the error value.
    let policy = Policy::builder()
        .retries(10)
        .backoff(Backoff::none())
        .retry_if(|e: &TestError| matches!(e, TestError::Transient(n) if *n < 3))
        .build()
        .unwrap();
    let calls = Calls::default();
    let start = Instant::now();
    let err = policy.call(|| flaky(&calls, start, 10)).await.unwrap_err();
    assert_eq!(calls.count(), 3);
    assert_eq!(err.operation_error(), Some(&TestError::Transient(3)));
}

// ---- backoff ---------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn backoff_delays_follow_the_exact_capped_sequence() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook_seen = Arc::clone(&seen);
    let policy = Policy::builder()
        .retries(5)
        .backoff(
            Backoff::exponential(ms(100))
                .factor(2.0)
                .max_delay(ms(500))
                .jitter(false),
        )
        .on_retry(move |event| hook_seen.lock().unwrap().push((event.attempt, event.delay)))
        .build()
        .unwrap();
    let calls = Calls::default();
    let start = Instant::now();
    policy.call(|| flaky(&calls, start, 10)).await.unwrap_err();
    assert_eq!(calls.gaps(), [ms(100), ms(200), ms(400), ms(500), ms(500)]);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (1, ms(100)),
            (2, ms(200)),
            (3, ms(400)),
            (4, ms(500)),
            (5, ms(500))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn jittered_delays_stay_between_min_and_cap() {
    let policy = Policy::builder()
        .retries(8)
        .backoff(Backoff::exponential(ms(50)).max_delay(ms(400)).jitter(true))
        .build()
        .unwrap();
    let mut all = Vec::new();
    for _ in 0..20 {
        let calls = Calls::default();
        let start = Instant::now();
        policy.call(|| flaky(&calls, start, 100)).await.unwrap_err();
        let gaps = calls.gaps();
        assert_eq!(gaps.len(), 8);
        for (i, gap) in gaps.iter().enumerate() {
            let uncapped = ms(50 << i).min(ms(400));
            assert!(
                *gap >= ms(50) && *gap <= uncapped,
                "delay {i}: {gap:?} outside [50ms, {uncapped:?}]"
            );
        }
        all.extend(gaps);
    }
    assert!(all.iter().any(|g| *g > ms(50) && *g < ms(400)), "no jitter");
}

// ---- hooks and counters ----------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn hooks_and_counters_report_retries_successes_and_failures() {
    let retries = Arc::new(AtomicU32::new(0));
    let successes = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let (r, s, f) = (retries.clone(), successes.clone(), failures.clone());
    let policy = Policy::builder()
        .retries(2)
        .backoff(Backoff::none())
        .retry_when_retryable()
        .on_retry(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .on_success(move |attempts| s.lock().unwrap().push(attempts))
        .on_failure(move |err: &Error<TestError>| f.lock().unwrap().push(err.to_string()))
        .build()
        .unwrap();
    let start = Instant::now();
    let calls = Calls::default();
    policy.call(|| flaky(&calls, start, 1)).await.unwrap();
    let calls = Calls::default();
    policy.call(|| flaky(&calls, start, 9)).await.unwrap_err();

    assert_eq!(retries.load(Ordering::SeqCst), 1 + 2);
    assert_eq!(*successes.lock().unwrap(), [2]);
    assert_eq!(
        *failures.lock().unwrap(),
        ["operation failed after 3 attempt(s): transient failure #3"]
    );
    let stats = policy.stats();
    assert_eq!(
        (
            stats.calls,
            stats.successes,
            stats.failures,
            stats.attempts,
            stats.retries
        ),
        (2, 1, 1, 5, 3)
    );
}

// ---- circuit breaker -------------------------------------------------------------------------

fn with_breaker(threshold: u32, retries: u32) -> (Policy<TestError>, CircuitBreaker) {
    let breaker = CircuitBreaker::named(
        "test",
        BreakerConfig {
            failure_threshold: threshold,
            reset_timeout: Duration::from_secs(10),
            ..BreakerConfig::default()
        },
    );
    let policy = Policy::builder()
        .retries(retries)
        .backoff(Backoff::none())
        .circuit_breaker(breaker.clone())
        .build()
        .unwrap();
    (policy, breaker)
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_rejects_then_half_open_probe_success_closes_it() {
    let (policy, breaker) = with_breaker(2, 0);
    let calls = Calls::default();
    let start = Instant::now();
    for _ in 0..2 {
        policy.call(|| flaky(&calls, start, 100)).await.unwrap_err();
    }
    assert_eq!(breaker.state(), BreakerState::Open);

    // Open: rejected without calling the operation.
    let err = policy.call(|| flaky(&calls, start, 0)).await.unwrap_err();
    assert!(err.is_circuit_open(), "{err:?}");
    assert_eq!(calls.count(), 2);

    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    // The probe goes through and succeeds: closed again.
    policy.call(|| flaky(&calls, start, 0)).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(calls.count(), 3);

    assert_eq!(breaker.transitions(BreakerState::Open), 1);
    assert_eq!(breaker.transitions(BreakerState::HalfOpen), 1);
    assert_eq!(breaker.transitions(BreakerState::Closed), 1);
    assert_eq!(policy.stats().rejected_by_breaker, 1);
}

#[tokio::test(start_paused = true)]
async fn half_open_probe_failure_reopens_and_only_one_probe_runs() {
    let (policy, breaker) = with_breaker(1, 0);
    let start = Instant::now();
    let calls = Calls::default();
    policy.call(|| flaky(&calls, start, 100)).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(10)).await;

    // A slow probe is in flight; a second call meanwhile is rejected.
    let probe_policy = policy.clone();
    let probe_calls = calls.clone();
    let probe = tokio::spawn(async move {
        probe_policy
            .call(|| async {
                probe_calls.hit(start);
                tokio::time::sleep(ms(500)).await;
                Err::<(), _>(TestError::Transient(0))
            })
            .await
    });
    tokio::time::sleep(ms(100)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    let err = policy.call(|| flaky(&calls, start, 0)).await.unwrap_err();
    assert!(err.is_circuit_open());

    let probe_err = probe.await.unwrap().unwrap_err();
    assert_eq!(probe_err.attempts(), 1);
    assert_eq!(breaker.state(), BreakerState::Open, "failed probe reopens");
    assert_eq!(calls.count(), 2, "first failure + probe");
    assert_eq!(breaker.transitions(BreakerState::Open), 2);
    assert_eq!(breaker.transitions(BreakerState::Closed), 0);

    // It waits a full reset timeout again before the next probe.
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(breaker.state(), BreakerState::Open);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn breaker_opening_between_retries_stops_with_the_last_real_error() {
    let (policy, breaker) = with_breaker(2, 5);
    let calls = Calls::default();
    let start = Instant::now();
    let err = policy.call(|| flaky(&calls, start, 100)).await.unwrap_err();
    assert_eq!(calls.count(), 2, "retrying stops when the breaker opens");
    assert_eq!(breaker.state(), BreakerState::Open);
    assert!(matches!(
        err,
        Error::Operation {
            source: TestError::Transient(2),
            attempts: 2
        }
    ));
}

// ---- rate limit ------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn n_calls_at_rate_r_take_n_minus_one_over_r_first_immediate() {
    let policy: Policy<TestError> = Policy::builder()
        .rate_limit(RateLimiter::per_second(10))
        .build()
        .unwrap();
    let calls = Calls::default();
    let start = Instant::now();
    for _ in 0..6 {
        policy.call(|| flaky(&calls, start, 0)).await.unwrap();
    }
    assert_eq!(calls.times()[0], Duration::ZERO, "first call is immediate");
    assert_eq!(start.elapsed(), ms(500), "(6 - 1) / 10 s");
    assert!(calls.gaps().iter().all(|g| *g >= ms(100)));
}

#[tokio::test(start_paused = true)]
async fn rate_limited_waiters_are_served_in_arrival_order() {
    let policy: Policy<TestError> = Policy::builder()
        .rate_limit(RateLimiter::per_second(10))
        .build()
        .unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    // Eight callers arrive 10 ms apart, much faster than the 100 ms spacing, so they queue.
    for i in 0..8u32 {
        let (policy, order) = (policy.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(ms(10) * i).await;
            policy
                .call(|| async {
                    order.lock().unwrap().push((i, start.elapsed()));
                    Ok::<_, TestError>(())
                })
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let order = order.lock().unwrap();
    let served: Vec<u32> = order.iter().map(|(i, _)| *i).collect();
    assert_eq!(served, (0..8).collect::<Vec<_>>());
    let times: Vec<Duration> = order.iter().map(|(_, t)| *t).collect();
    assert_eq!(times, (0..8).map(|i| ms(100 * i)).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn per_key_limits_are_independent() {
    let policy: Policy<TestError> = Policy::builder()
        .rate_limit(RateLimiter::per_second(1).per_key())
        .build()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for key in ["a", "a", "b", "b", "a"] {
        let (policy, log) = (policy.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            policy
                .call_keyed(key, || async {
                    log.lock().unwrap().push((key, start.elapsed()));
                    Ok::<_, TestError>(())
                })
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let mut log = log.lock().unwrap().clone();
    log.sort();
    let secs = Duration::from_secs;
    assert_eq!(
        log,
        [
            ("a", secs(0)),
            ("a", secs(1)),
            ("a", secs(2)),
            ("b", secs(0)),
            ("b", secs(1))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn every_retry_takes_a_rate_limit_token() {
    let limiter = RateLimiter::per_second(10);
    let policy = Policy::builder()
        .retries(3)
        .backoff(Backoff::none())
        .rate_limit(limiter.clone())
        .build()
        .unwrap();
    let calls = Calls::default();
    let start = Instant::now();
    policy.call(|| flaky(&calls, start, 2)).await.unwrap();
    assert_eq!(limiter.acquired(), 3);
    assert_eq!(calls.times(), [ms(0), ms(100), ms(200)]);
}

// ---- cache -----------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn cache_hits_misses_and_expiry() {
    let cached = retrying(0).with_cache(Cache::new(Duration::from_secs(60)));
    let calls = Calls::default();
    let start = Instant::now();
    let get = |key: &'static str| {
        let calls = calls.clone();
        let cached = cached.clone();
        async move {
            cached
                .call_keyed(&key.to_string(), || async {
                    Ok::<_, TestError>(format!("{key}#{}", calls.hit(start)))
                })
                .await
        }
    };
    assert_eq!(get("a").await.unwrap(), "a#1");
    assert_eq!(get("a").await.unwrap(), "a#1", "hit: same value, no call");
    assert_eq!(get("b").await.unwrap(), "b#2", "other key: miss");
    assert_eq!(calls.count(), 2);
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(get("a").await.unwrap(), "a#1");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(get("a").await.unwrap(), "a#3", "expired: new call");
    assert_eq!((cached.cache().hits(), cached.cache().misses()), (2, 3));
}

#[tokio::test(start_paused = true)]
async fn cache_key_comes_from_a_custom_key_function() {
    let cached = retrying(0).with_cache(Cache::new(Duration::from_secs(60)));
    let calls = Calls::default();
    let start = Instant::now();
    let mut results = Vec::new();
    for user in ["Alice", "ALICE", "alice ", "Bob"] {
        let value = cached
            .call_with(
                user,
                |u: &str| u.trim().to_lowercase(),
                |u: &str| {
                    let calls = calls.clone();
                    async move { Ok::<_, TestError>(format!("{u}:{}", calls.hit(start))) }
                },
            )
            .await
            .unwrap();
        results.push(value);
    }
    assert_eq!(results, ["Alice:1", "Alice:1", "Alice:1", "Bob:2"]);
}

#[tokio::test(start_paused = true)]
async fn failures_are_never_cached() {
    let cached = retrying(0).with_cache(Cache::new(Duration::from_secs(60)));
    let calls = Calls::default();
    let start = Instant::now();
    let key = 7u64;
    assert!(
        cached
            .call_keyed(&key, || flaky(&calls, start, 1))
            .await
            .is_err()
    );
    assert_eq!(
        cached
            .call_keyed(&key, || flaky(&calls, start, 1))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        cached
            .call_keyed(&key, || flaky(&calls, start, 1))
            .await
            .unwrap(),
        2
    );
    assert_eq!(calls.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn cache_hits_take_no_rate_limit_token() {
    let limiter = RateLimiter::per_second(1);
    let policy = Policy::builder()
        .rate_limit(limiter.clone())
        .build()
        .unwrap();
    let cached = policy.with_cache(Cache::new(Duration::from_secs(60)));
    let calls = Calls::default();
    let start = Instant::now();
    for _ in 0..5 {
        cached
            .call_keyed(&1, || flaky(&calls, start, 0))
            .await
            .unwrap();
    }
    assert_eq!(limiter.acquired(), 1);
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "hits never wait for a token"
    );
    cached
        .call_keyed(&2, || flaky(&calls, start, 0))
        .await
        .unwrap();
    assert_eq!(limiter.acquired(), 2);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

// ---- timeouts and concurrency ----------------------------------------------------------------

async fn slow(calls: &Calls, start: Instant, delay: Duration) -> Result<&'static str, TestError> {
    calls.hit(start);
    tokio::time::sleep(delay).await;
    Ok("late")
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_cuts_each_attempt_and_is_retried() {
    let policy = Policy::builder()
        .retries(2)
        .backoff(Backoff::none())
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let calls = Calls::default();
    let start = Instant::now();
    let err = policy
        .call(|| slow(&calls, start, Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::AttemptTimeout {
            attempts: 3,
            timeout
        } if timeout == Duration::from_secs(1)
    ));
    assert_eq!(
        calls.times(),
        [
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(2)
        ]
    );
    assert_eq!(policy.stats().attempt_timeouts, 3);
    assert_eq!(err.to_string(), "attempt 3 timed out after 1s");

    // A fast attempt is unaffected.
    let ok = policy.call(|| slow(&calls, start, ms(999))).await.unwrap();
    assert_eq!(ok, "late");
}

#[tokio::test(start_paused = true)]
async fn timeouts_can_be_made_non_retryable() {
    let policy = Policy::builder()
        .retries(2)
        .attempt_timeout(Duration::from_secs(1))
        .retry_timeouts(false)
        .build()
        .unwrap();
    let calls = Calls::default();
    let err = policy
        .call(|| slow(&calls, Instant::now(), Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!((calls.count(), err.attempts()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn overall_timeout_covers_retries_and_backoff() {
    let policy = Policy::builder()
        .retries(10)
        .backoff(Backoff::constant(Duration::from_secs(1)))
        .overall_timeout(ms(2500))
        .build()
        .unwrap();
    let calls = Calls::default();
    let start = Instant::now();
    let err = policy.call(|| flaky(&calls, start, 100)).await.unwrap_err();
    assert_eq!(start.elapsed(), ms(2500));
    assert!(
        matches!(err, Error::OverallTimeout { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(err.is_timeout());
    assert_eq!(policy.stats().overall_timeouts, 1);
    assert_eq!(
        err.to_string(),
        "overall timeout of 2s 500ms elapsed after 3 attempt(s)"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrency_limit_caps_calls_in_flight() {
    let policy: Policy<TestError> = Policy::builder().concurrency(2).build().unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (policy, in_flight, peak) = (policy.clone(), in_flight.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            policy
                .call(|| async {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, TestError>(())
                })
                .await
        }));
    }
    tokio::time::sleep(ms(10)).await;
    assert_eq!(policy.in_flight(), Some(2));
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(3),
        "6 calls, 2 at a time"
    );
    assert_eq!(policy.in_flight(), Some(0));
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_on_one_key_make_one_call() {
    let cached = retrying(0).with_cache(Cache::new(Duration::from_secs(60)));
    let calls = Calls::default();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for key in ["hot", "hot", "hot", "hot", "cold"] {
        let (cached, calls) = (cached.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            cached
                .call_keyed(&key, || async {
                    let n = calls.hit(start);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok::<_, TestError>(format!("{key}#{n}"))
                })
                .await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert_eq!(results, ["hot#1", "hot#1", "hot#1", "hot#1", "cold#2"]);
    assert_eq!(calls.count(), 2, "one call per key");
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "keys do not wait for each other"
    );
    // Each lookup is a hit or a miss: two calls (misses), three answered by them (hits).
    assert_eq!((cached.cache().hits(), cached.cache().misses()), (3, 2));
}

#[tokio::test(start_paused = true)]
async fn waiters_on_a_failed_miss_call_in_turn() {
    let cached = retrying(0).with_cache(Cache::new(Duration::from_secs(60)));
    let calls = Calls::default();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (cached, calls) = (cached.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            cached
                .call_keyed(&1u8, || async {
                    let n = calls.hit(start);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if n == 1 {
                        Err(TestError::Transient(n))
                    } else {
                        Ok(n)
                    }
                })
                .await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().ok());
    }
    // The first call fails (not cached); the second waiter calls and succeeds; the third hits.
    assert_eq!(results, [None, Some(2), Some(2)]);
    assert_eq!(calls.times(), [Duration::ZERO, Duration::from_secs(1)]);
}
