//! The two ways a run ends, on the real runtime: a stop keeps event time and what operators
//! hold in the final checkpoint (a resumed run continues it), a drain fires everything; and
//! keyed operators run at the requested parallelism whatever the source's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_core::{
    BEFORE_TIME, Checkpointing, Config, END_OF_TIME, Environment, MemoryCheckpoints, Operator,
    OperatorContext, OperatorError, RestoredState, Source, SourceStatus, Timestamp, state,
};

const N: u64 = 1000;
const FIRST_RUN: u64 = 400;

/// Emits ids `position..until`, then waits for a stop (`until < N`) or ends (`until == N`).
/// Its position is checkpointed, so a resumed run continues after what the first one read.
struct Numbers {
    next: u64,
    until: u64,
    emitted: Arc<AtomicU64>,
}

impl Source<u64> for Numbers {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        if let Some(next) = state::restore_value::<u64>(ctx, "next")? {
            self.next = next;
        }
        Ok(())
    }

    fn poll(
        &mut self,
        out: &mut Vec<u64>,
        max: usize,
        _: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError> {
        let end = self.until.min(self.next + max as u64);
        out.extend(self.next..end);
        self.emitted.fetch_add(end - self.next, Ordering::SeqCst);
        self.next = end;
        Ok(match (self.next >= N, self.next >= self.until) {
            (true, _) => SourceStatus::Finished,
            (false, true) => SourceStatus::Idle,
            (false, false) => SourceStatus::Ready,
        })
    }

    fn snapshot(&mut self, _: u64, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        state::save_value(ctx, "next", &self.next)
    }
}

/// Passes records on and remembers the highest watermark it saw.
struct WatermarkProbe(Arc<AtomicI64>);

impl Operator<u64, u64> for WatermarkProbe {
    fn process(
        &mut self,
        input: &mut Vec<u64>,
        out: &mut Vec<u64>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        out.append(input);
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        _: &mut Vec<u64>,
        _: &mut OperatorContext,
    ) -> Result<Option<Timestamp>, OperatorError> {
        self.0.fetch_max(watermark, Ordering::SeqCst);
        Ok(Some(watermark))
    }
}

struct Run {
    counts: BTreeMap<u64, u64>,
    max_watermark: Timestamp,
}

/// numbers → watermark probe → key_by(i % 5) → count per key (emitted when the input ends).
fn run(store: &Arc<MemoryCheckpoints>, until: u64, stop_when_read: bool) -> Run {
    let mut cp = Checkpointing::new(Duration::from_millis(20), Arc::new(store.clone()));
    if let Some(latest) = store.latest() {
        cp = cp.restore_from(latest as Arc<dyn RestoredState>);
    }
    let env = Environment::with_config(Config {
        batch_size: 64,
        checkpointing: Some(cp),
        ..Config::default()
    });
    let emitted = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(AtomicI64::new(BEFORE_TIME));
    let (e, s) = (emitted.clone(), seen.clone());
    let counts = env
        .source("numbers", move || Numbers {
            next: 0,
            until,
            emitted: e.clone(),
        })
        .transform("probe", move || WatermarkProbe(s.clone()))
        .key_by(|i| i % 5)
        .count()
        .collect();
    let job = env.start().unwrap();
    if stop_when_read {
        let deadline = Instant::now() + Duration::from_secs(20);
        let restored = store.latest().map_or(0, |_| FIRST_RUN);
        while emitted.load(Ordering::SeqCst) + restored < until {
            assert!(
                Instant::now() < deadline,
                "the source did not read its input"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        job.stop();
    }
    job.wait().unwrap();
    Run {
        counts: counts.take().into_iter().collect(),
        max_watermark: seen.load(Ordering::SeqCst),
    }
}

#[test]
fn a_stopped_run_keeps_event_time_and_state_and_a_resumed_run_completes_it() {
    let store = MemoryCheckpoints::new();
    let first = run(&store, FIRST_RUN, true);
    // A stop neither advances event time nor closes the counts: nothing is emitted...
    assert!(first.counts.is_empty(), "{:?}", first.counts);
    assert!(first.max_watermark < END_OF_TIME);
    // ...and the final checkpoint says the input is not finished.
    let stopped = store.latest().unwrap();
    assert!(!stopped.finished());

    // The resumed run reads the rest, drains, and the counts cover the whole input.
    let second = run(&store, N, false);
    let expected: BTreeMap<u64, u64> = (0..5).map(|k| (k, N / 5)).collect();
    assert_eq!(second.counts, expected);
    assert_eq!(second.max_watermark, END_OF_TIME);
    assert!(store.latest().unwrap().finished());
}

#[test]
fn without_checkpoints_a_stop_drains() {
    // Nothing could resume open state: it is emitted rather than lost.
    let env = Environment::local();
    let emitted = Arc::new(AtomicU64::new(0));
    let e = emitted.clone();
    let counts = env
        .source("numbers", move || Numbers {
            next: 0,
            until: FIRST_RUN,
            emitted: e.clone(),
        })
        .key_by(|i| i % 5)
        .count()
        .collect();
    let job = env.start().unwrap();
    while emitted.load(Ordering::SeqCst) < FIRST_RUN {
        std::thread::sleep(Duration::from_millis(5));
    }
    job.stop();
    job.wait().unwrap();
    let total: u64 = counts.take().iter().map(|(_, c)| c).sum();
    assert_eq!(total, FIRST_RUN);
}

#[test]
fn keyed_operators_run_at_the_requested_parallelism_behind_a_single_instance_source() {
    let env = Environment::with_config(Config {
        parallelism: 3,
        ..Config::default()
    });
    let instances = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let seen = instances.clone();
    env.from_iter(0..3000u64)
        .key_by(|i| i % 97)
        .transform("keyed", move |_| Instances(seen.clone()))
        .count();
    let result = env.execute().unwrap();
    assert_eq!(result.operator("from_iter").unwrap().parallelism, 1);
    assert_eq!(result.operator("keyed").unwrap().parallelism, 3);
    assert_eq!(
        instances.lock().unwrap().len(),
        3,
        "every instance got keys"
    );
}

struct Instances(Arc<Mutex<std::collections::BTreeSet<usize>>>);

impl Operator<u64, u64> for Instances {
    fn process(
        &mut self,
        input: &mut Vec<u64>,
        out: &mut Vec<u64>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        if !input.is_empty() {
            self.0.lock().unwrap().insert(ctx.instance());
        }
        out.append(input);
        Ok(())
    }
}
