//! A keyed process function's state and timers survive a failure: the job resumes from its
//! last checkpoint and produces what an uninterrupted run produces.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use weir_connectors::SourceExt;
use weir_core::{
    Checkpointing, Config, Environment, MemoryCheckpoints, OperatorContext, OperatorError,
    RestoredState,
};
use weir_time::ValueState;
use weir_time::prelude::*;

/// Sums values per key; at the end of every second of event time, emits the key's sum.
#[derive(Default)]
struct SecondlySums {
    sums: ValueState<u64, i64>,
}

impl KeyedProcessFunction<u64, (u64, i64)> for SecondlySums {
    type Out = (u64, Timestamp, i64);
    fn process(
        &mut self,
        record: Timestamped<(u64, i64)>,
        ctx: &mut KeyedContext<'_, u64, Self::Out>,
    ) -> Result<(), OperatorError> {
        let key = *ctx.key();
        let sum = self.sums.get(&key, ctx).copied().unwrap_or(0) + record.item.1;
        self.sums.set(key, sum, ctx);
        ctx.register_event_timer((record.time / 1_000 + 1) * 1_000);
        Ok(())
    }
    fn on_timer(
        &mut self,
        timer: Timer,
        ctx: &mut KeyedContext<'_, u64, Self::Out>,
    ) -> Result<(), OperatorError> {
        let key = *ctx.key();
        let sum = self.sums.get(&key, ctx).copied().unwrap_or(0);
        ctx.emit((key, timer.time, sum));
        Ok(())
    }
    fn snapshot(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        self.sums.save(ctx, "sums")
    }
    fn restore(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        self.sums.restore(ctx, "sums")
    }
}

/// Event time is the id in milliseconds: 1,000 seconds, 7 keys.
const N: u64 = 1_000_000;

/// Runs the job; `fail_after`: the source side fails after that many records of this run.
fn run(
    store: &Arc<MemoryCheckpoints>,
    fail_after: Option<u64>,
) -> Result<Vec<(u64, Timestamp, i64)>, weir_core::JobError> {
    let mut cp = Checkpointing::new(Duration::from_millis(10), Arc::new(store.clone()));
    if let Some(latest) = store.latest() {
        cp = cp.restore_from(latest as Arc<dyn RestoredState>);
    }
    let env = Environment::with_config(Config {
        batch_size: 200,
        checkpointing: Some(cp),
        ..Config::default()
    });
    let seen = Arc::new(AtomicU64::new(0));
    let out = env
        // Unpaced: every poll yields exactly one batch, so batch boundaries (and with them the
        // per-batch watermarks, hence which records a timer sees) are the same in every run.
        .generate(N, |id| (id % 7, id as i64))
        .map(move |e| {
            if fail_after.is_some_and(|limit| seen.fetch_add(1, Ordering::SeqCst) >= limit) {
                panic!("simulated crash");
            }
            e
        })
        .assign_timestamps(|e| e.1, Watermarks::ascending())
        .key_by(|e| e.0)
        .process(SecondlySums::default)
        .collect();
    env.execute()?;
    let mut got = out.take();
    got.sort_unstable();
    Ok(got)
}

#[test]
fn state_and_timers_of_a_process_function_survive_a_failure() {
    let reference = run(&MemoryCheckpoints::new(), None).unwrap();
    assert_eq!(
        reference.len(),
        7 * (N as usize / 1000),
        "one sum per key and second"
    );

    let store = MemoryCheckpoints::new();
    assert!(
        run(&store, Some(600_000)).is_err(),
        "the simulated crash fails the run"
    );
    assert!(
        !store.completed().is_empty(),
        "checkpoints were taken before the crash"
    );
    let resumed = run(&store, None).unwrap();
    // The resumed run emits what came after its checkpoint (before it, an exactly-once sink
    // would have committed the first run's output): exactly the reference's tail.
    let first = resumed
        .iter()
        .map(|r| r.1)
        .min()
        .expect("the resumed run emitted");
    let mut tail: Vec<_> = reference.iter().filter(|r| r.1 >= first).cloned().collect();
    tail.sort_unstable();
    assert_eq!(resumed, tail);
    assert!(first > 0, "the run resumed mid-way, not from the start");
}

/// Orders and payments: each order `i` (key `i % 50`, time `i`) joins the payments of its key
/// within 3 ms before to 5 ms after it.
fn interval_run(
    store: &Arc<MemoryCheckpoints>,
    fail_after: Option<u64>,
) -> Result<Vec<(u64, u64)>, weir_core::JobError> {
    const M: u64 = 400_000;
    let mut cp = Checkpointing::new(Duration::from_millis(10), Arc::new(store.clone()));
    if let Some(latest) = store.latest() {
        cp = cp.restore_from(latest as Arc<dyn RestoredState>);
    }
    let env = Environment::with_config(Config {
        batch_size: 200,
        checkpointing: Some(cp),
        ..Config::default()
    });
    let seen = Arc::new(AtomicU64::new(0));
    let orders = env
        .generate(M, |i| (i % 50, i))
        .map(move |e| {
            if fail_after.is_some_and(|limit| seen.fetch_add(1, Ordering::SeqCst) >= limit) {
                panic!("simulated crash");
            }
            e
        })
        .assign_timestamps(
            |o: &(u64, u64)| o.1 as i64,
            Watermarks::bounded(Duration::from_millis(20)),
        )
        .key_by(|o| o.0);
    let payments = env
        .generate(M / 7, |j| (j * 7 % 50, j * 7 + 2))
        .assign_timestamps(
            |p: &(u64, u64)| p.1 as i64,
            Watermarks::bounded(Duration::from_millis(20)),
        )
        .key_by(|p| p.0);
    let out = orders.interval_join(
        &payments,
        Duration::from_millis(3),
        Duration::from_millis(5),
        |o, p| (o.1, p.1),
    );
    let joined = out.joined.collect();
    env.execute()?;
    let mut got = joined.take();
    got.sort_unstable();
    Ok(got)
}

#[test]
fn an_interval_join_resumes_with_its_buffers() {
    let reference = interval_run(&MemoryCheckpoints::new(), None).unwrap();
    assert!(!reference.is_empty());
    let store = MemoryCheckpoints::new();
    assert!(interval_run(&store, Some(250_000)).is_err());
    assert!(
        !store.completed().is_empty(),
        "checkpoints were taken before the crash"
    );
    let resumed = interval_run(&store, None).unwrap();
    // Everything the resumed run joined is right, and it joined every pair of the reference
    // whose order came after its restored position: no pair lost across the crash.
    assert!(
        resumed.iter().all(|r| reference.binary_search(r).is_ok()),
        "wrong pairs"
    );
    let first = resumed
        .iter()
        .map(|r| r.0)
        .min()
        .expect("the resumed run joined");
    let tail: Vec<_> = reference.iter().filter(|r| r.0 >= first).cloned().collect();
    assert_eq!(resumed, tail);
    assert!(first > 0, "the run resumed mid-way, not from the start");
}

/// Sessions of 50 keys: events every ms in bursts of 1 s with 500 ms of silence between.
fn session_run(
    store: &Arc<MemoryCheckpoints>,
    fail_after: Option<u64>,
) -> Result<Vec<(u64, Timestamp, Timestamp, u64)>, weir_core::JobError> {
    const M: u64 = 300_000;
    let mut cp = Checkpointing::new(Duration::from_millis(10), Arc::new(store.clone()));
    if let Some(latest) = store.latest() {
        cp = cp.restore_from(latest as Arc<dyn RestoredState>);
    }
    let env = Environment::with_config(Config {
        batch_size: 200,
        checkpointing: Some(cp),
        ..Config::default()
    });
    let seen = Arc::new(AtomicU64::new(0));
    let out = env
        .generate(M, |i| (i % 50, (i + i / 1000 * 500) as i64))
        .map(move |e| {
            if fail_after.is_some_and(|limit| seen.fetch_add(1, Ordering::SeqCst) >= limit) {
                panic!("simulated crash");
            }
            e
        })
        .assign_timestamps(|e| e.1, Watermarks::bounded(Duration::from_millis(20)))
        .key_by(|e| e.0)
        .window(Session::with_gap(Duration::from_millis(100)))
        .aggregate(Count);
    let results = out.results.collect();
    env.execute()?;
    let mut got: Vec<_> = results
        .take()
        .into_iter()
        .map(|r| (r.key, r.window.start, r.window.end, r.value))
        .collect();
    got.sort_unstable();
    Ok(got)
}

#[test]
fn session_windows_resume_with_their_sessions() {
    let reference = session_run(&MemoryCheckpoints::new(), None).unwrap();
    assert_eq!(reference.len(), 50 * 300, "a session per key and burst");
    let store = MemoryCheckpoints::new();
    assert!(session_run(&store, Some(150_000)).is_err());
    assert!(
        !store.completed().is_empty(),
        "checkpoints were taken before the crash"
    );
    let resumed = session_run(&store, None).unwrap();
    assert!(
        resumed.iter().all(|r| reference.binary_search(r).is_ok()),
        "wrong or partial sessions"
    );
    let first = resumed
        .iter()
        .map(|r| r.1)
        .min()
        .expect("the resumed run emitted");
    assert!(first > 0, "the run resumed mid-way, not from the start");
    // Every session of the bursts after the one in progress at the checkpoint is there.
    let later: Vec<_> = reference
        .iter()
        .filter(|r| r.1 >= first + 1_500)
        .cloned()
        .collect();
    assert!(later.iter().all(|r| resumed.binary_search(r).is_ok()));
}
