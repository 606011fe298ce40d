//! W2 — keyed tumbling window: event time `ts_ms`, watermark = max seen − 100 ms, key_by `key`,
//! tumbling 1 s windows, per (key, window) count and sum of `value`.

use crate::digest::Digest;
use crate::workloads::{Event, event};
use crate::{BenchOptions, BenchReport};
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_connectors::SourceExt;
use weir_core::{Config, Environment, JobError, OperatorContext, OperatorError, Sink};
use weir_time::prelude::*;

const WINDOW_MS: i64 = 1_000;
const DELAY_MS: i64 = 100;

/// Per key of one window: (count, sum).
type Accs = hashbrown::HashMap<u64, (u64, i64)>;

/// One result of the digest: (key, window start, count, sum).
#[inline]
pub(crate) fn add_result(digest: &mut Digest, key: u64, start: i64, count: u64, sum: i64) {
    digest.add(&[key, start as u64, count, sum as u64]);
}

/// Counts and digests window results per sink instance; merged into `shared` at the end.
struct DigestSink {
    local: (u64, Digest),
    shared: Arc<Mutex<(u64, Digest)>>,
}

impl Sink<WindowResult<u64, (u64, i64)>> for DigestSink {
    #[inline]
    fn write(
        &mut self,
        batch: &mut Vec<WindowResult<u64, (u64, i64)>>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        for r in batch.drain(..) {
            self.local.0 += 1;
            add_result(
                &mut self.local.1,
                r.key,
                r.window.start,
                r.value.0,
                r.value.1,
            );
        }
        Ok(())
    }

    fn close(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.0 += self.local.0;
        shared.1.merge(self.local.1);
        Ok(())
    }
}

/// The plain loop: the open windows (at most two at a time for this input) each hold a hash
/// map (hashbrown, as the engine's in-memory state) from key to (count, sum); a window is
/// emitted when the watermark reaches its end.
fn baseline(n: u64) -> (u64, Digest) {
    let mut open: Vec<(i64, Accs)> = Vec::new();
    let mut results = 0u64;
    let mut digest = Digest::default();
    let mut max_seen = i64::MIN;
    let mut emit = |start: i64, window: Accs| {
        for (key, (count, sum)) in window {
            results += 1;
            add_result(&mut digest, key, start, count, sum);
        }
    };
    for id in 0..n {
        let e: Event = black_box(event(id));
        let start = e.ts_ms - e.ts_ms.rem_euclid(WINDOW_MS);
        let i = match open.iter().rposition(|(s, _)| *s == start) {
            Some(i) => i,
            None => {
                let at = open.partition_point(|(s, _)| *s < start);
                open.insert(at, (start, Accs::with_capacity(16 * 1024)));
                at
            }
        };
        let acc = open[i].1.entry(e.key).or_insert((0, 0));
        acc.0 += 1;
        acc.1 += e.value;
        if e.ts_ms > max_seen {
            max_seen = e.ts_ms;
            let watermark = max_seen - DELAY_MS;
            let closed = open.partition_point(|(s, _)| s + WINDOW_MS <= watermark);
            for (start, window) in open.drain(..closed) {
                emit(start, window);
            }
        }
    }
    for (start, window) in open.drain(..) {
        emit(start, window);
    }
    (results, digest)
}

/// W2's default size: a run of about a second or more on a 2-core machine.
pub const W2_EVENTS: u64 = 30_000_000;

/// W2 on the engine, or with `baseline` as a plain loop.
pub fn w2(o: &BenchOptions) -> Result<BenchReport, JobError> {
    let n = o.events.unwrap_or(W2_EVENTS);
    let started;
    let (results, digest) = if o.baseline {
        started = Instant::now();
        baseline(n)
    } else {
        let env = Environment::with_config(Config {
            parallelism: o.parallelism,
            ..Config::default()
        });
        let windows = env
            .generate(n, event)
            .assign_timestamps(
                |e: &Event| e.ts_ms,
                Watermarks::bounded(Duration::from_millis(DELAY_MS as u64)),
            )
            .key_by(|e: &Timestamped<Event>| e.key)
            .window(Tumbling::of(Duration::from_millis(WINDOW_MS as u64)))
            .aggregate((Count, Sum::of(|e: &Event| e.value)));
        let shared = Arc::new(Mutex::new((0u64, Digest::default())));
        let s = shared.clone();
        windows.results.sink("bench_sink", move || DigestSink {
            local: (0, Digest::default()),
            shared: s.clone(),
        });
        started = Instant::now();
        env.execute()?;
        *shared.lock().unwrap_or_else(|p| p.into_inner())
    };
    let elapsed = started.elapsed();
    Ok(BenchReport::new("w2", o, n, elapsed, results, digest.hex()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events: u64, parallelism: usize, baseline: bool) -> BenchReport {
        w2(&BenchOptions {
            events: Some(events),
            parallelism,
            baseline,
            ..BenchOptions::default()
        })
        .unwrap()
    }

    #[test]
    fn w2_engine_matches_baseline() {
        let baseline = run(200_000, 1, true);
        // 200 ms of event time per 200k events: one window, 10,000 keys.
        assert_eq!(baseline.results, 10_000);
        for p in [1, 2] {
            let engine = run(200_000, p, false);
            assert_eq!(engine.results, baseline.results, "parallelism {p}");
            assert_eq!(engine.checksum, baseline.checksum, "parallelism {p}");
        }
    }

    #[test]
    fn w2_counts_one_result_per_key_and_window() {
        // 2,500 ms of event time: windows 0, 1000 and 2000.
        let engine = run(2_500_000, 2, false);
        let baseline = run(2_500_000, 1, true);
        assert_eq!(baseline.results, 30_000);
        assert_eq!(engine.results, 30_000);
        assert_eq!(engine.checksum, baseline.checksum);
    }
}
