//! Timers and state TTL in running jobs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_connectors::SourceExt;
use weir_core::{
    Config, Environment, ManualClock, OperatorContext, OperatorError, Source, SourceStatus,
};
use weir_time::prelude::*;
use weir_time::{TimeDomain, ValueState};

/// Sets an event-time timer one second after every record (many records share one timer).
struct EveryRecordSetsATimer;

impl KeyedProcessFunction<u64, (u64, i64)> for EveryRecordSetsATimer {
    type Out = (u64, Timestamp, Timestamp);
    fn process(
        &mut self,
        record: Timestamped<(u64, i64)>,
        ctx: &mut KeyedContext<'_, u64, Self::Out>,
    ) -> Result<(), OperatorError> {
        // Round up to the next second: all records of a key in one second share the timer.
        let at = (record.time / 1_000 + 1) * 1_000;
        ctx.register_event_timer(at);
        Ok(())
    }
    fn on_timer(
        &mut self,
        timer: Timer,
        ctx: &mut KeyedContext<'_, u64, Self::Out>,
    ) -> Result<(), OperatorError> {
        assert_eq!(timer.domain, TimeDomain::EventTime);
        assert!(
            ctx.watermark() >= timer.time,
            "fired before the watermark passed"
        );
        let key = *ctx.key();
        ctx.emit((key, timer.time, ctx.watermark()));
        Ok(())
    }
}

#[test]
fn event_time_timers_fire_exactly_once_when_the_watermark_passes() {
    for parallelism in [1, 2] {
        let env = Environment::with_config(Config {
            parallelism,
            batch_size: 100,
            ..Config::default()
        });
        // 10 keys, event time 0..10 s.
        let fired = env
            .generate(10_000, |id| (id % 10, id as i64))
            .assign_timestamps(|e| e.1, Watermarks::ascending())
            .key_by(|e| e.0)
            .process(|| EveryRecordSetsATimer)
            .collect();
        env.execute().unwrap();
        let mut counts: BTreeMap<(u64, Timestamp), usize> = BTreeMap::new();
        for (key, time, _) in fired.take() {
            *counts.entry((key, time)).or_default() += 1;
        }
        // One timer per key and second, each fired once.
        assert_eq!(counts.len(), 10 * 10, "parallelism {parallelism}");
        assert!(
            counts.values().all(|&n| n == 1),
            "parallelism {parallelism}"
        );
        assert!(counts.contains_key(&(9, 10_000)));
    }
}

/// Sends its records, then advances the job's clock while idling, until `done` is set.
struct ClockDriver {
    records: Vec<(u8, i64)>,
    clock: Arc<ManualClock>,
    step_ms: i64,
    done: Arc<AtomicBool>,
    started: Option<Instant>,
}

impl Source<(u8, i64)> for ClockDriver {
    fn poll(
        &mut self,
        out: &mut Vec<(u8, i64)>,
        _: usize,
        _: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError> {
        if !self.records.is_empty() {
            out.append(&mut self.records);
            return Ok(SourceStatus::Ready);
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        if self.done.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(10) {
            return Ok(SourceStatus::Finished);
        }
        self.clock.advance(self.step_ms);
        Ok(SourceStatus::Idle)
    }
}

/// Sets a processing-time timer 5 s (job clock) after each record.
struct Reminder;

impl KeyedProcessFunction<u8, (u8, i64)> for Reminder {
    type Out = (u8, Timestamp, Timestamp);
    fn process(
        &mut self,
        _: Timestamped<(u8, i64)>,
        ctx: &mut KeyedContext<'_, u8, Self::Out>,
    ) -> Result<(), OperatorError> {
        let at = ctx.processing_time() + 5_000;
        ctx.register_processing_timer(at);
        Ok(())
    }
    fn on_timer(
        &mut self,
        timer: Timer,
        ctx: &mut KeyedContext<'_, u8, Self::Out>,
    ) -> Result<(), OperatorError> {
        assert_eq!(timer.domain, TimeDomain::ProcessingTime);
        let key = *ctx.key();
        ctx.emit((key, timer.time, ctx.processing_time()));
        Ok(())
    }
}

#[test]
fn processing_time_timers_fire_when_the_controllable_clock_passes_them() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let done = Arc::new(AtomicBool::new(false));
    let env = Environment::with_config(Config {
        tick_interval: Duration::from_millis(2),
        clock: clock.clone(),
        ..Config::default()
    });
    let (c, d) = (clock.clone(), done.clone());
    let fired: Arc<Mutex<Vec<(u8, Timestamp, Timestamp)>>> = Arc::default();
    let sink = fired.clone();
    env.source("clock_driver", move || ClockDriver {
        records: vec![(1, 0), (2, 0), (1, 0)],
        clock: c.clone(),
        step_ms: 100,
        done: d.clone(),
        started: None,
    })
    .assign_timestamps(|e| e.1, Watermarks::ascending())
    .key_by(|e| e.0)
    .process(|| Reminder)
    .for_each(move |t| {
        let mut all = sink.lock().unwrap();
        all.push(t);
        if all.len() == 2 {
            done.store(true, Ordering::SeqCst);
        }
    });
    env.execute().unwrap();
    let mut fired = fired.lock().unwrap().clone();
    fired.sort();
    assert_eq!(
        fired.len(),
        2,
        "one timer per key (set twice for key 1): {fired:?}"
    );
    for (i, (key, time, now)) in fired.into_iter().enumerate() {
        assert_eq!((key, time), (i as u8 + 1, 1_005_000));
        assert!(now >= time, "fired at {now}, before its time {time}");
    }
}

/// Sends one record per poll, advancing the job's clock by `gaps[i]` before record `i`.
struct Paced {
    records: Vec<(char, i64, i64)>,
    next: usize,
    clock: Arc<ManualClock>,
}

impl Source<(char, i64, i64)> for Paced {
    fn poll(
        &mut self,
        out: &mut Vec<(char, i64, i64)>,
        _: usize,
        _: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError> {
        let Some(&record) = self.records.get(self.next) else {
            return Ok(SourceStatus::Finished);
        };
        self.clock.advance(record.2);
        out.push(record);
        self.next += 1;
        Ok(SourceStatus::Ready)
    }
}

/// Emits, for each record, whether its key's previous record was still remembered.
struct Remember {
    last: ValueState<char, i64>,
}

impl KeyedProcessFunction<char, (char, i64, i64)> for Remember {
    type Out = (char, i64, Option<i64>);
    fn process(
        &mut self,
        record: Timestamped<(char, i64, i64)>,
        ctx: &mut KeyedContext<'_, char, Self::Out>,
    ) -> Result<(), OperatorError> {
        let key = *ctx.key();
        let previous = self.last.get(&key, ctx).copied();
        self.last.set(key, record.time, ctx);
        ctx.emit((key, record.time, previous));
        Ok(())
    }
}

fn remembered(ttl: Ttl, records: Vec<(char, i64, i64)>) -> Vec<(char, i64, Option<i64>)> {
    let clock = Arc::new(ManualClock::new(0));
    let env = Environment::with_config(Config {
        clock: clock.clone(),
        ..Config::default()
    });
    let out = env
        .source("paced", move || Paced {
            records: records.clone(),
            next: 0,
            clock: clock.clone(),
        })
        .assign_timestamps(|e| e.1, Watermarks::ascending())
        .key_by(|e| e.0)
        .process(move || Remember {
            last: ValueState::with_ttl(ttl),
        })
        .collect();
    env.execute().unwrap();
    out.take()
}

#[test]
fn processing_time_ttl_expires_state_by_the_job_clock() {
    // (key, event time, clock advance before the record)
    let seen = remembered(
        Ttl::processing_time(Duration::from_secs(1)),
        vec![
            ('a', 1, 0),
            ('a', 2, 999),   // 999 ms later: still there
            ('a', 3, 1_000), // 1 s after the last write: expired
            ('b', 4, 0),
        ],
    );
    assert_eq!(
        seen,
        vec![
            ('a', 1, None),
            ('a', 2, Some(1)),
            ('a', 3, None),
            ('b', 4, None)
        ]
    );
}

#[test]
fn event_time_ttl_expires_state_by_the_watermark() {
    let seen = remembered(
        Ttl::event_time(Duration::from_secs(1)),
        vec![
            ('a', 0, 0),
            // The clock jumps an hour: event time, not processing time, counts.
            ('a', 500, 3_600_000),
            ('b', 1_600, 0), // watermark 1600: a's entry (written at 500) has expired
            ('a', 1_700, 0),
        ],
    );
    assert_eq!(
        seen,
        vec![
            ('a', 0, None),
            ('a', 500, Some(0)),
            ('b', 1_600, None),
            ('a', 1_700, None)
        ]
    );
}
