//! `map_async` inside real jobs: parallel instances, small batches, a cached keyed mapper, and
//! every record accounted for (output or failure stream, never both, never neither).

mod common;

use common::TestError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_connectors::SourceExt;
use weir_core::{
    CheckpointId, Checkpointing, Config, Environment, MemoryCheckpoints, OperatorContext,
    OperatorError, Sink, Source, SourceStatus,
};
use weir_resilience::stream::{AsyncMapper, AsyncOptions, AsyncStreamExt};
use weir_resilience::{Backoff, Cache, Cached, Error, Fallback, Order, Policy};

fn env(parallelism: usize, batch_size: usize) -> Environment {
    Environment::with_config(Config {
        parallelism,
        batch_size,
        ..Config::default()
    })
}

#[test]
fn every_record_ends_in_exactly_one_of_the_two_streams() {
    let env = env(2, 7);
    let attempts = Arc::new(Mutex::new(HashMap::<u64, u32>::new()));
    let a = attempts.clone();
    let policy = Policy::builder()
        .retries(2)
        .backoff(Backoff::exponential(Duration::from_millis(1)))
        .retry_when_retryable()
        .build()
        .unwrap();
    let (ok, failed) =
        env.generate(500, |id| id)
            .map_async(4, Order::Unordered, policy, move |x: &u64| {
                let x = *x;
                let attempt = {
                    let mut attempts = a.lock().unwrap();
                    let n = attempts.entry(x).or_insert(0);
                    *n += 1;
                    *n
                };
                async move {
                    tokio::time::sleep(Duration::from_micros(x % 5 * 100)).await;
                    match x % 10 {
                        3 => Err(TestError::Fatal),
                        // Two transient failures, then success on the third (last) attempt.
                        7 if attempt < 3 => Err(TestError::Transient(attempt)),
                        _ => Ok(x * 2),
                    }
                }
            });
    let ok = ok.collect();
    let failed = failed.collect();
    env.execute().unwrap();

    let mut ok = ok.take();
    ok.sort();
    let failed = failed.take();
    assert_eq!(ok.len() + failed.len(), 500);
    let mut failed_inputs: Vec<u64> = failed.iter().map(|f| f.error.input).collect();
    failed_inputs.sort();
    assert_eq!(
        failed_inputs,
        (0..500).filter(|x| x % 10 == 3).collect::<Vec<_>>()
    );
    assert!(
        failed
            .iter()
            .all(|f| f.error.to_string().contains("fatal failure"))
    );
    let expected: Vec<u64> = (0..500).filter(|x| x % 10 != 3).map(|x| x * 2).collect();
    assert_eq!(ok, expected);
    assert!(
        attempts
            .lock()
            .unwrap()
            .iter()
            .all(|(x, n)| *n == if x % 10 == 7 { 3 } else { 1 })
    );
}

#[test]
fn ordered_output_survives_small_batches_and_jittered_calls() {
    let env = env(1, 5);
    let (ok, failed) = env.from_iter(0..200u64).map_async(
        8,
        Order::Ordered,
        Policy::<TestError>::default(),
        |x: &u64| {
            let x = *x;
            async move {
                // Later records of a batch tend to finish first.
                tokio::time::sleep(Duration::from_micros((10 - x % 10) * 200)).await;
                Ok(x)
            }
        },
    );
    let ok = ok.collect();
    let failed = failed.count();
    env.execute().unwrap();
    assert_eq!(ok.take(), (0..200).collect::<Vec<_>>());
    assert_eq!(failed.get(), 0);
}

/// A mapper that looks a key up through a cached policy and builds the output from the input
/// and the looked-up value: the shape the HTTP enrichment uses.
#[derive(Clone)]
struct Lookup {
    cached: Cached<u64, String, TestError>,
    calls: Arc<Mutex<HashMap<u64, u32>>>,
}

impl AsyncMapper<(u64, u64)> for Lookup {
    type Value = String;
    type Output = (u64, String);
    type Error = TestError;

    async fn call(&self, input: &(u64, u64)) -> Result<String, Error<TestError>> {
        let key = input.1;
        let operation = || {
            let calls = self.calls.clone();
            async move {
                let n = {
                    let mut calls = calls.lock().unwrap();
                    let n = calls.entry(key).or_insert(0);
                    *n += 1;
                    *n
                };
                match (key, n) {
                    (13, _) => Err(TestError::Fatal),
                    (_, 1) => Err(TestError::Transient(1)),
                    _ => Ok(format!("value-{key}")),
                }
            }
        };
        self.cached.call_keyed(&key, operation).await
    }

    fn complete(&self, input: (u64, u64), value: String) -> (u64, String) {
        (input.0, value)
    }
}

#[test]
fn a_cached_keyed_mapper_calls_each_key_until_it_succeeds_once() {
    let env = env(1, 64);
    let policy = Policy::builder()
        .retries(1)
        .backoff(Backoff::none())
        .retry_when_retryable()
        .build()
        .unwrap();
    let calls = Arc::new(Mutex::new(HashMap::new()));
    let lookup = Lookup {
        cached: policy.with_cache(Cache::new(Duration::from_secs(60))),
        calls: calls.clone(),
    };
    let records = (0..2000u64).map(|i| (i, i % 20));
    let (ok, failed) = env
        .from_iter(records)
        .map_async_with(AsyncOptions::new(8).name("lookup"), lookup);
    let ok = ok.collect();
    let failed = failed.collect();
    env.execute().unwrap();

    let ok = ok.take();
    let failed = failed.take();
    assert_eq!(ok.len(), 1900);
    assert!(ok.iter().all(|(i, v)| *v == format!("value-{}", i % 20)));
    assert_eq!(failed.len(), 100);
    assert!(failed.iter().all(|f| f.error.input.1 == 13
        && f.position == f.error.input.0
        && &*f.operator == "lookup"));
    let calls = calls.lock().unwrap();
    // Each good key: one transient failure, one success, then cache hits only.
    assert!((0..20).filter(|k| *k != 13).all(|k| calls[&k] == 2));
    // Failures are never cached: every record of key 13 called (once: fatal is not retried).
    assert_eq!(calls[&13], 100);
}

/// Endpoints tried in order for each record: a record goes to the failure stream only once every
/// endpoint failed, with every endpoint's error.
#[derive(Clone)]
struct Endpoints(Arc<Fallback<&'static str, TestError>>);

impl AsyncMapper<u64> for Endpoints {
    type Value = String;
    type Output = String;
    type Error = TestError;

    async fn call(&self, input: &u64) -> Result<String, Error<TestError>> {
        let x = *input;
        self.0
            .call(|endpoint| async move {
                match (*endpoint, x % 4) {
                    ("primary", 0) => Ok(format!("primary:{x}")),
                    ("replica", 1) => Ok(format!("replica:{x}")),
                    (_, 3) => Err(TestError::Fatal),
                    _ => Err(TestError::Transient(x as u32)),
                }
            })
            .await
    }

    fn complete(&self, _input: u64, value: String) -> String {
        value
    }
}

#[test]
fn records_fail_only_after_every_fallback_failed() {
    let env = env(1, 16);
    let fallback = Fallback::new(["primary", "replica"]).unwrap();
    let (ok, failed) = env.from_iter(0..40u64).map_async_with(
        AsyncOptions::new(4).name("endpoints"),
        Endpoints(Arc::new(fallback)),
    );
    let ok = ok.collect();
    let failed = failed.collect();
    env.execute().unwrap();
    let ok = ok.take();
    assert_eq!(ok.len(), 20);
    assert_eq!(ok[0], "primary:0");
    assert_eq!(ok[1], "replica:1");
    let failed = failed.take();
    assert_eq!(failed.len(), 20);
    let third = failed.iter().find(|f| f.error.input == 3).unwrap();
    assert_eq!(third.position, 3);
    assert_eq!(
        third.error.to_string(),
        "all 2 alternatives failed: [1] primary: operation failed after 1 attempt(s): fatal \
         failure; [2] replica: operation failed after 1 attempt(s): fatal failure"
    );
}

// ---- checkpoints -----------------------------------------------------------------------------

/// Emits 0..n, `per_poll` at a time, and notes its position at every checkpoint.
struct Counting {
    next: u64,
    n: u64,
    positions: Arc<Mutex<HashMap<CheckpointId, u64>>>,
}

impl Source<u64> for Counting {
    fn poll(
        &mut self,
        out: &mut Vec<u64>,
        max: usize,
        _: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError> {
        if self.next == self.n {
            return Ok(SourceStatus::Finished);
        }
        let end = (self.next + max.min(10) as u64).min(self.n);
        out.extend(self.next..end);
        self.next = end;
        // Slow enough for several checkpoints to happen during the run.
        std::thread::sleep(Duration::from_millis(1));
        Ok(SourceStatus::Ready)
    }

    fn snapshot(&mut self, id: CheckpointId, _: &mut OperatorContext) -> Result<(), OperatorError> {
        self.positions.lock().unwrap().insert(id, self.next);
        Ok(())
    }
}

/// Counts what arrives and notes the count at every checkpoint.
struct Tally {
    seen: u64,
    counts: Arc<Mutex<HashMap<CheckpointId, u64>>>,
}

impl Sink<u64> for Tally {
    fn write(
        &mut self,
        batch: &mut Vec<u64>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        self.seen += batch.drain(..).count() as u64;
        Ok(())
    }

    fn snapshot(&mut self, id: CheckpointId, _: &mut OperatorContext) -> Result<(), OperatorError> {
        self.counts.lock().unwrap().insert(id, self.seen);
        Ok(())
    }
}

#[test]
fn a_checkpoint_barrier_never_overtakes_a_call_in_flight() {
    let store = MemoryCheckpoints::new();
    let env = Environment::with_config(Config {
        checkpointing: Some(Checkpointing::new(
            Duration::from_millis(5),
            Arc::new(store.clone()),
        )),
        ..Config::default()
    });
    let positions = Arc::new(Mutex::new(HashMap::new()));
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let p = positions.clone();
    let source = env.source("counting", move || Counting {
        next: 0,
        n: 2000,
        positions: p.clone(),
    });
    let (ok, failed) = source.map_async(
        8,
        Order::Unordered,
        Policy::<TestError>::default(),
        |x: &u64| {
            let x = *x;
            async move {
                // Calls outlive the moment their batch arrives: a barrier right behind the
                // batch must wait for them.
                tokio::time::sleep(Duration::from_millis(2)).await;
                if x.is_multiple_of(5) {
                    Err(TestError::Fatal)
                } else {
                    Ok(x)
                }
            }
        },
    );
    let c = counts.clone();
    ok.union(&[failed.map(|f| f.error.input)])
        .sink("tally", move || Tally {
            seen: 0,
            counts: c.clone(),
        });
    env.execute().unwrap();

    let completed = store.completed();
    assert!(completed.len() >= 2, "checkpoints ran: {completed:?}");
    let positions = positions.lock().unwrap();
    let counts = counts.lock().unwrap();
    for id in completed {
        // Every record the source had emitted before the barrier had finished its call (either
        // way) and reached the sink before the sink saw the barrier.
        assert_eq!(counts[&id], positions[&id], "checkpoint {id}");
    }
}
