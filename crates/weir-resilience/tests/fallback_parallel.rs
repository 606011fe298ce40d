//! Acceptance tests of `Fallback` and `Parallel`, under tokio's paused clock.

mod common;

use common::{TestError, ms};
use futures::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use weir_resilience::{
    Backoff, BreakerConfig, BreakerState, CircuitBreaker, ConfigError, Error, Fallback, Order,
    Parallel, Policy,
};

fn two_attempts(_: &&str) -> Result<Policy<TestError>, ConfigError> {
    Policy::builder()
        .retries(1)
        .backoff(Backoff::none())
        .retry_when_retryable()
        .build()
}

// ---- fallback --------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn alternatives_are_tried_in_order_each_with_its_own_retry_budget() {
    let fallback = Fallback::new(["east", "west", "north"])
        .unwrap()
        .with_policies(two_attempts)
        .unwrap();
    let tried = Mutex::new(Vec::new());
    let value = fallback
        .call(|endpoint| {
            tried.lock().unwrap().push(*endpoint);
            let ok = *endpoint == "west" && tried.lock().unwrap().len() == 4;
            async move {
                if ok {
                    Ok(format!("{endpoint} answered"))
                } else {
                    Err(TestError::Transient(1))
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(value, "west answered");
    assert_eq!(*tried.lock().unwrap(), ["east", "east", "west", "west"]);
}

#[tokio::test(start_paused = true)]
async fn all_failed_error_carries_every_error_in_order_and_reads_as_one_message() {
    let fallback = Fallback::new(["east", "west", "north"])
        .unwrap()
        .with_policies(two_attempts)
        .unwrap();
    let err = fallback
        .call(|endpoint| async move {
            match *endpoint {
                "west" => Err::<(), _>(TestError::Fatal),
                _ => Err(TestError::Transient(7)),
            }
        })
        .await
        .unwrap_err();
    let Error::AllFailed(all) = &err else {
        panic!("expected AllFailed, got {err:?}");
    };
    let summary: Vec<_> = all
        .failures()
        .iter()
        .map(|f| {
            (
                f.index,
                f.label.as_str(),
                f.error.operation_error().cloned(),
                f.error.attempts(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (0, "east", Some(TestError::Transient(7)), 2),
            (1, "west", Some(TestError::Fatal), 1),
            (2, "north", Some(TestError::Transient(7)), 2),
        ]
    );
    assert_eq!(err.attempts(), 5);
    assert_eq!(
        err.to_string(),
        "all 3 alternatives failed: \
         [1] east: operation failed after 2 attempt(s): transient failure #7; \
         [2] west: operation failed after 1 attempt(s): fatal failure; \
         [3] north: operation failed after 2 attempt(s): transient failure #7"
    );
}

#[tokio::test(start_paused = true)]
async fn an_alternative_with_an_open_breaker_is_skipped_at_once() {
    let breakers = Mutex::new(Vec::new());
    let fallback = Fallback::labelled([("primary", 1), ("replica", 2)])
        .unwrap()
        .with_policies(|_| {
            let breaker = CircuitBreaker::new(BreakerConfig {
                failure_threshold: 1,
                reset_timeout: Duration::from_secs(30),
                ..BreakerConfig::default()
            });
            breakers.lock().unwrap().push(breaker.clone());
            Policy::builder().circuit_breaker(breaker).build()
        })
        .unwrap();
    let primary_calls = AtomicUsize::new(0);
    let call = || {
        fallback.call(|id| {
            if *id == 1 {
                primary_calls.fetch_add(1, Ordering::SeqCst);
            }
            let id = *id;
            async move {
                if id == 1 {
                    Err(TestError::Transient(1))
                } else {
                    Ok(id)
                }
            }
        })
    };
    assert_eq!(call().await.unwrap(), 2);
    let breakers = breakers.into_inner().unwrap();
    assert_eq!(breakers[0].state(), BreakerState::Open);
    assert_eq!(
        breakers[1].state(),
        BreakerState::Closed,
        "own breaker each"
    );

    let start = Instant::now();
    assert_eq!(call().await.unwrap(), 2);
    assert_eq!(
        primary_calls.load(Ordering::SeqCst),
        1,
        "open primary not called"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn skipped_alternatives_appear_as_circuit_open_in_the_all_failed_error() {
    let breaker = CircuitBreaker::new(BreakerConfig {
        failure_threshold: 1,
        ..BreakerConfig::default()
    });
    breaker.try_acquire().unwrap().failure();
    let fallback = Fallback::new(["a", "b"])
        .unwrap()
        .with_policies(|alt| match *alt {
            "a" => Policy::builder().circuit_breaker(breaker.clone()).build(),
            _ => Ok(Policy::default()),
        })
        .unwrap();
    let err = fallback
        .call(|_| async { Err::<(), _>(TestError::Fatal) })
        .await
        .unwrap_err();
    let Error::AllFailed(all) = &err else {
        panic!("{err:?}")
    };
    assert!(all.failures()[0].error.is_circuit_open());
    assert_eq!(
        err.to_string(),
        "all 2 alternatives failed: \
         [1] a: circuit breaker is open: the call was rejected without calling the operation; \
         [2] b: operation failed after 1 attempt(s): fatal failure"
    );
}

#[test]
fn an_empty_list_of_alternatives_is_a_configuration_error() {
    let err = Fallback::<&str, TestError>::new(Vec::<&str>::new()).unwrap_err();
    assert_eq!(err, ConfigError::NoAlternatives);
}

// ---- parallel map ----------------------------------------------------------------------------

/// Sleeps `item × 100 ms`, tracking the peak number of calls in flight.
fn sleeper(
    in_flight: &Arc<AtomicUsize>,
    peak: &Arc<AtomicUsize>,
) -> impl FnMut(u64) -> std::pin::Pin<Box<dyn Future<Output = u64> + Send>> {
    let (in_flight, peak) = (in_flight.clone(), peak.clone());
    move |item| {
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        Box::pin(async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(ms(100 * item)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            item
        })
    }
}

#[tokio::test(start_paused = true)]
async fn ordered_output_follows_input_order_even_when_later_items_finish_first() {
    let (in_flight, peak) = Default::default();
    let start = Instant::now();
    let out = Parallel::new(3)
        .unwrap()
        .map([5, 1, 3, 2, 4], sleeper(&in_flight, &peak))
        .await;
    assert_eq!(out, [5, 1, 3, 2, 4]);
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    // 5, 1, 3 start at 0. A finished result waiting behind a slower earlier one keeps its
    // slot (as in Flink's ordered async I/O), so 2 and 4 start when 5 is emitted at 500.
    assert_eq!(start.elapsed(), ms(900));
}

#[tokio::test(start_paused = true)]
async fn unordered_output_follows_completion_order() {
    let (in_flight, peak) = Default::default();
    let out = Parallel::new(5)
        .unwrap()
        .unordered()
        .map([5, 1, 3, 2, 4], sleeper(&in_flight, &peak))
        .await;
    assert_eq!(out, [1, 2, 3, 4, 5]);
    assert_eq!(peak.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn workers_bound_the_calls_in_flight() {
    let (in_flight, peak) = Default::default();
    let start = Instant::now();
    let out = Parallel::new(2)
        .unwrap()
        .unordered()
        .map([1; 6], sleeper(&in_flight, &peak))
        .await;
    assert_eq!(out.len(), 6);
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert_eq!(start.elapsed(), ms(300), "6 items of 100 ms, 2 at a time");
}

#[tokio::test(start_paused = true)]
async fn stream_adapter_ordered_and_unordered() {
    let (in_flight, peak) = Default::default();
    let par = Parallel::new(4).unwrap();
    let input = || futures::stream::iter(vec![4u64, 3, 2, 1]);
    let ordered: Vec<_> = par
        .map_stream(input(), sleeper(&in_flight, &peak))
        .collect()
        .await;
    assert_eq!(ordered, [4, 3, 2, 1]);
    let unordered: Vec<_> = par
        .order(Order::Unordered)
        .map_stream(input(), sleeper(&in_flight, &peak))
        .collect()
        .await;
    assert_eq!(unordered, [1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn empty_input_gives_empty_output() {
    let par = Parallel::new(3).unwrap();
    let called = AtomicUsize::new(0);
    let f = |x: u32| {
        called.fetch_add(1, Ordering::SeqCst);
        async move { x }
    };
    assert!(par.map(Vec::<u32>::new(), f).await.is_empty());
    assert!(par.unordered().map(Vec::<u32>::new(), f).await.is_empty());
    let streamed: Vec<u32> = par
        .map_stream(futures::stream::empty::<u32>(), f)
        .collect()
        .await;
    assert!(streamed.is_empty());
    assert_eq!(called.load(Ordering::SeqCst), 0);
}

#[test]
fn zero_workers_is_a_configuration_error() {
    let err = Parallel::new(0).unwrap_err();
    assert!(err.to_string().contains("workers"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn parallel_map_over_a_policy_protected_call() {
    // The shape the runtime uses for an enrichment operator: a policy inside the mapped function.
    let policy: Policy<TestError> = Policy::builder()
        .retries(1)
        .backoff(Backoff::constant(ms(50)))
        .build()
        .unwrap();
    let out = Parallel::new(4)
        .unwrap()
        .map(0..8u32, |i| {
            let policy = policy.clone();
            async move {
                // Every item fails once, then succeeds on its retry.
                let attempts = AtomicUsize::new(0);
                policy
                    .call(|| {
                        let first = attempts.fetch_add(1, Ordering::SeqCst) == 0;
                        async move {
                            if first {
                                Err(TestError::Transient(i))
                            } else {
                                Ok(i * 10)
                            }
                        }
                    })
                    .await
            }
        })
        .await;
    let values: Vec<u32> = out.into_iter().map(Result::unwrap).collect();
    assert_eq!(values, [0, 10, 20, 30, 40, 50, 60, 70]);
    assert_eq!(policy.stats().attempts, 16);
}
