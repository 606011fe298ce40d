//! Windows in running jobs: parallel instances, lateness, idle sources.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_connectors::SourceExt;
use weir_core::{
    Config, Environment, ManualClock, OperatorContext, OperatorError, Source, SourceStatus,
};
use weir_time::prelude::*;

fn env(parallelism: usize, batch_size: usize) -> Environment {
    Environment::with_config(Config {
        parallelism,
        batch_size,
        tick_interval: Duration::from_millis(5),
        ..Config::default()
    })
}

/// (key, value, event time): event time runs with the id, jittered by up to 78 ms.
fn event(id: u64) -> (u64, i64, i64) {
    (
        id % 50,
        (id % 13) as i64,
        id as i64 + ((id % 7) * 13) as i64,
    )
}

type Row = (u64, i64, i64, u64, i64);

fn tumbling_counts(parallelism: usize) -> (Vec<Row>, usize) {
    let env = env(parallelism, 256);
    let out = env
        .generate(20_000, event)
        .assign_timestamps(|e| e.2, Watermarks::bounded(Duration::from_millis(200)))
        .key_by(|e| e.0)
        .window(Tumbling::of(Duration::from_millis(100)))
        .aggregate((Count, Sum::of(|e: &(u64, i64, i64)| e.1)));
    let (results, late) = (out.results.collect(), out.late.collect());
    env.execute().unwrap();
    let mut rows: Vec<Row> = results
        .take()
        .into_iter()
        .map(|r| (r.key, r.window.start, r.window.end, r.value.0, r.value.1))
        .collect();
    rows.sort();
    (rows, late.take().len())
}

#[test]
fn window_results_do_not_depend_on_parallelism() {
    let mut expected: BTreeMap<(u64, i64), (u64, i64)> = BTreeMap::new();
    for id in 0..20_000 {
        let (k, v, t) = event(id);
        let acc = expected.entry((k, t - t.rem_euclid(100))).or_default();
        acc.0 += 1;
        acc.1 += v;
    }
    let expected: Vec<Row> = expected
        .into_iter()
        .map(|((k, s), (c, v))| (k, s, s + 100, c, v))
        .collect();
    for p in [1, 3] {
        let (rows, late) = tumbling_counts(p);
        assert_eq!(late, 0, "parallelism {p}");
        assert_eq!(rows, expected, "parallelism {p}");
    }
}

#[test]
fn lateness_updates_results_and_sends_the_rest_to_the_late_output() {
    // One record per batch: a watermark follows every record.
    let env = env(1, 1);
    let events = vec![
        ('a', 100),
        ('a', 1_000), // on the boundary: the window [1000, 2000)
        ('a', 1_600), // watermark 1600 - 100: [0, 1000) fires with 1 event
        ('a', 900),   // late, within 1 s of lateness: [0, 1000) again, with 2
        ('a', 3_000), // watermark 2900: [1000, 2000) fires; [0, 1000) is cleaned up
        ('a', 950),   // beyond the lateness: late output
    ];
    let out = env
        .from_iter(events)
        .assign_timestamps(|e| e.1, Watermarks::bounded(Duration::from_millis(100)))
        .key_by(|e| e.0)
        .window(Tumbling::of(Duration::from_secs(1)))
        .allowed_lateness(Duration::from_secs(1))
        .aggregate(Count);
    let (results, late) = (out.results.collect(), out.late.collect());
    env.execute().unwrap();
    let results: Vec<(i64, u64)> = results
        .take()
        .into_iter()
        .map(|r| (r.window.start, r.value))
        .collect();
    assert_eq!(results, vec![(0, 1), (0, 2), (1_000, 2), (3_000, 1)]);
    assert_eq!(late.take(), vec![Timestamped::new(950, ('a', 950))]);
}

#[test]
fn sliding_and_session_windows_in_a_job() {
    let env = env(2, 1);
    let clicks = env
        .from_iter(vec![
            (1u8, 0i64),
            (1, 400),
            (2, 450),
            (1, 1_500),
            (1, 1_000),
        ])
        .assign_timestamps(|e| e.1, Watermarks::bounded(Duration::from_secs(1)))
        .key_by(|e| e.0);
    let sliding = clicks
        .window(Sliding::of(
            Duration::from_secs(1),
            Duration::from_millis(500),
        ))
        .aggregate(Count)
        .results
        .collect();
    let sessions = clicks
        .window(Session::with_gap(Duration::from_millis(600)))
        .aggregate(Count)
        .results
        .collect();
    env.execute().unwrap();
    let mut sliding: Vec<_> = sliding
        .take()
        .into_iter()
        .map(|r| (r.key, r.window.start, r.value))
        .collect();
    sliding.sort();
    assert_eq!(
        sliding,
        vec![
            (1, -500, 2),
            (1, 0, 2),
            (1, 500, 1),
            (1, 1_000, 2),
            (1, 1_500, 1),
            (2, -500, 1),
            (2, 0, 1),
        ]
    );
    let mut sessions: Vec<_> = sessions
        .take()
        .into_iter()
        .map(|r| (r.key, r.window.start, r.window.end, r.value))
        .collect();
    sessions.sort();
    // 1000 arrives after 1500 and bridges [0, 1000) and [1500, 2100).
    assert_eq!(sessions, vec![(1, 0, 2_100, 4), (2, 450, 1_050, 1)]);
}

/// Sends `events`, then nothing (idle) until `release` says so, then `after`.
struct Scripted {
    events: Vec<(char, i64)>,
    after: Vec<(char, i64)>,
    release: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Advances while this source idles, so its idle timeout passes in clock time.
    clock: Option<Arc<ManualClock>>,
    done: Option<Arc<AtomicBool>>,
    started: Option<Instant>,
}

impl Source<(char, i64)> for Scripted {
    fn poll(
        &mut self,
        out: &mut Vec<(char, i64)>,
        _: usize,
        _: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError> {
        if !self.events.is_empty() {
            out.append(&mut self.events);
            return Ok(SourceStatus::Ready);
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        // A test that would otherwise hang fails instead (after 10 s).
        if (self.release)() || started.elapsed() > Duration::from_secs(10) {
            out.append(&mut self.after);
            if let Some(done) = &self.done {
                done.store(true, Ordering::SeqCst);
            }
            return Ok(SourceStatus::Finished);
        }
        if let Some(clock) = &self.clock {
            clock.advance(50);
        }
        Ok(SourceStatus::Idle)
    }
}

#[test]
fn an_idle_partition_does_not_hold_windows_back() {
    let clock = Arc::new(ManualClock::new(0));
    let env = Environment::with_config(Config {
        tick_interval: Duration::from_millis(5),
        clock: clock.clone(),
        ..Config::default()
    });
    let fired: Arc<Mutex<Vec<(i64, u64)>>> = Arc::default();
    let quiet_done = Arc::new(AtomicBool::new(false));

    // The quiet partition sends one event, idles until the window [0, 1000) has fired (which
    // needs its idleness), then sends an event for that window: late.
    let seen = fired.clone();
    let (c, d) = (clock.clone(), quiet_done.clone());
    let quiet = env.source("quiet", move || Scripted {
        events: vec![('q', 100)],
        after: vec![('q', 500)],
        release: {
            let seen = seen.clone();
            Arc::new(move || seen.lock().unwrap().iter().any(|r| r.0 == 0))
        },
        clock: Some(c.clone()),
        done: Some(d.clone()),
        started: None,
    });
    // The busy partition moves event time to 5 s and stays open until the quiet one is done.
    let d = quiet_done.clone();
    let busy = env.source("busy", move || Scripted {
        events: (0..50).map(|i| ('b', i * 100)).collect(),
        after: Vec::new(),
        release: {
            let d = d.clone();
            Arc::new(move || d.load(Ordering::SeqCst))
        },
        clock: None,
        done: None,
        started: None,
    });
    let quiet = quiet.assign_timestamps(
        |e| e.1,
        Watermarks::ascending().idle_after(Duration::from_secs(1)),
    );
    let busy = busy.assign_timestamps(|e| e.1, Watermarks::ascending());
    let out = quiet
        .union(&[busy])
        .key_by(|_| 0u8)
        .window(Tumbling::of(Duration::from_secs(1)))
        .aggregate(Count);
    let sink = fired.clone();
    out.results
        .for_each(move |r| sink.lock().unwrap().push((r.window.start, r.value)));
    let late = out.late.collect();
    env.execute().unwrap();

    let mut fired = fired.lock().unwrap().clone();
    fired.sort();
    assert_eq!(
        fired[0],
        (0, 11),
        "[0, 1000): 10 busy events and the quiet one"
    );
    assert_eq!(late.take(), vec![Timestamped::new(500, ('q', 500))]);
}
