//! Keyed process functions: user code called per record with its key, with event-time and
//! processing-time timers per key.
//!
//! Timers are kept per key and time: registering the same (key, time) twice sets one timer,
//! and a timer fires exactly once. An event-time timer for `t` fires when the watermark
//! reaches `t` (at the latest at the end of the input, when the watermark becomes the end of
//! time); a processing-time timer fires on the first tick (see `Config::tick_interval`) at
//! which the job's clock reads `t` or later. Processing-time timers still pending when the
//! input ends do not fire.

use crate::state::{StateTime, TimeDomain};
use crate::time::Timestamped;
use std::collections::{BTreeMap, VecDeque};
use weir_core::{
    BEFORE_TIME, Data, END_OF_TIME, KeyedStream, Operator, OperatorContext, OperatorError, Stream,
    Timestamp,
};
use weir_state::{KeyedStore, MemoryStore, StateKey};

/// A timer that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    pub time: Timestamp,
    pub domain: TimeDomain,
}

/// Pending timers of one domain.
pub(crate) struct TimerQueue<K: StateKey> {
    by_time: BTreeMap<Timestamp, VecDeque<K>>,
    /// The timers set (deleting a timer removes it here; `by_time` is cleaned lazily).
    registered: MemoryStore<(K, Timestamp), ()>,
}

impl<K: StateKey> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue {
            by_time: BTreeMap::new(),
            registered: MemoryStore::new(),
        }
    }
}

impl<K: StateKey> TimerQueue<K> {
    fn register(&mut self, key: &K, time: Timestamp) {
        if self.registered.insert((key.clone(), time), ()).is_none() {
            self.by_time.entry(time).or_default().push_back(key.clone());
        }
    }

    fn delete(&mut self, key: &K, time: Timestamp) {
        self.registered.remove(&(key.clone(), time));
    }

    /// The earliest timer due at `now`, removed; timers of the same time in registration order.
    fn pop_due(&mut self, now: Timestamp) -> Option<(K, Timestamp)> {
        loop {
            let mut entry = self.by_time.first_entry()?;
            let time = *entry.key();
            if time > now {
                return None;
            }
            match entry.get_mut().pop_front() {
                Some(key) => {
                    let timer = (key, time);
                    if self.registered.remove(&timer).is_some() {
                        return Some(timer);
                    }
                }
                None => {
                    entry.remove();
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.registered.len()
    }

    /// The pending timers, in firing order.
    fn pending(&mut self) -> Vec<(K, Timestamp)> {
        let mut all = Vec::with_capacity(self.registered.len());
        for (time, keys) in &self.by_time {
            for key in keys {
                if self.registered.get(&(key.clone(), *time)).is_some() {
                    all.push((key.clone(), *time));
                }
            }
        }
        all
    }
}

/// The timers and watermark of a process operator, as stored in a checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound(serialize = "K: serde::Serialize", deserialize = "K: StateKey"))]
struct TimerState<K> {
    watermark: Timestamp,
    event: Vec<(K, Timestamp)>,
    processing: Vec<(K, Timestamp)>,
}

/// The timers of a keyed process operator.
pub(crate) struct Timers<K: StateKey> {
    pub(crate) event: TimerQueue<K>,
    pub(crate) processing: TimerQueue<K>,
}

impl<K: StateKey> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            event: TimerQueue::default(),
            processing: TimerQueue::default(),
        }
    }
}

/// What a keyed process function sees and may do while handling one record or timer.
pub struct KeyedContext<'a, K: StateKey, O> {
    key: &'a K,
    time: Timestamp,
    watermark: Timestamp,
    processing_time: Timestamp,
    timers: &'a mut Timers<K>,
    out: &'a mut Vec<O>,
}

impl<K: StateKey, O> KeyedContext<'_, K, O> {
    /// The key of the record or timer being handled.
    pub fn key(&self) -> &K {
        self.key
    }

    /// The event time of the record, or the time of the timer, being handled.
    pub fn timestamp(&self) -> Timestamp {
        self.time
    }

    /// The current watermark (every record with a smaller timestamp has arrived).
    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The job clock's time when the current batch or tick started.
    pub fn processing_time(&self) -> Timestamp {
        self.processing_time
    }

    /// Sends a record downstream.
    pub fn emit(&mut self, record: O) {
        self.out.push(record);
    }

    /// Sets an event-time timer for the current key: fires when the watermark reaches `time`.
    pub fn register_event_timer(&mut self, time: Timestamp) {
        self.timers.event.register(self.key, time);
    }

    /// Sets a processing-time timer for the current key: fires on the first tick at or after
    /// `time` by the job's clock.
    pub fn register_processing_timer(&mut self, time: Timestamp) {
        self.timers.processing.register(self.key, time);
    }

    pub fn delete_event_timer(&mut self, time: Timestamp) {
        self.timers.event.delete(self.key, time);
    }

    pub fn delete_processing_timer(&mut self, time: Timestamp) {
        self.timers.processing.delete(self.key, time);
    }
}

impl<K: StateKey, O> StateTime for KeyedContext<'_, K, O> {
    fn processing_time(&self) -> Timestamp {
        self.processing_time
    }
    fn watermark(&self) -> Timestamp {
        self.watermark
    }
    fn event_time(&self) -> Timestamp {
        self.time
    }
}

/// User code run per record of a keyed, timestamped stream, with timers per key.
///
/// State lives in the function's own fields, typically [`ValueState`](crate::ValueState),
/// [`MapState`](crate::MapState) or [`ListState`](crate::ListState) addressed by `ctx.key()`.
/// An error fails the job, naming the operator and the record's position.
pub trait KeyedProcessFunction<K: StateKey, T>: Send + 'static {
    type Out: Data;

    fn process(
        &mut self,
        record: Timestamped<T>,
        ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<(), OperatorError>;

    /// A timer of the current key (`ctx.key()`) fired.
    fn on_timer(
        &mut self,
        _timer: Timer,
        _ctx: &mut KeyedContext<'_, K, Self::Out>,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The operator instance starts, before any record and before
    /// [`restore`](Self::restore): open states kept on the job's backend
    /// ([`JobBackend`](crate::JobBackend)) with
    /// [`CheckpointedStore::open`](crate::CheckpointedStore::open), one name per state.
    fn open(&mut self, _ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        Ok(())
    }

    /// A checkpoint is being taken: save the function's state (e.g. `self.count.save(ctx,
    /// "count")` for each [`CheckpointedStore`](crate::CheckpointedStore)). Timers are saved by
    /// the runtime.
    fn snapshot(&mut self, _ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The job resumes from a checkpoint: load what [`snapshot`](Self::snapshot) saved.
    fn restore(&mut self, _ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        Ok(())
    }
}

/// Runs a [`KeyedProcessFunction`] and its timers.
pub(crate) struct ProcessOperator<K: StateKey, KF, P> {
    key_of: KF,
    func: P,
    timers: Timers<K>,
    watermark: Timestamp,
}

impl<K: StateKey, KF, P> ProcessOperator<K, KF, P> {
    pub(crate) fn new(key_of: KF, func: P) -> Self {
        ProcessOperator {
            key_of,
            func,
            timers: Timers::default(),
            watermark: BEFORE_TIME,
        }
    }

    #[cfg(test)]
    pub(crate) fn pending_timers(&self) -> (usize, usize) {
        (self.timers.event.len(), self.timers.processing.len())
    }
}

impl<K: StateKey, KF, P> ProcessOperator<K, KF, P> {
    fn fire<T>(
        &mut self,
        domain: TimeDomain,
        now: Timestamp,
        processing_time: Timestamp,
        out: &mut Vec<P::Out>,
    ) -> Result<(), OperatorError>
    where
        P: KeyedProcessFunction<K, T>,
    {
        loop {
            let due = match domain {
                TimeDomain::EventTime => self.timers.event.pop_due(now),
                TimeDomain::ProcessingTime => self.timers.processing.pop_due(now),
            };
            let Some((key, time)) = due else {
                return Ok(());
            };
            let mut ctx = KeyedContext {
                key: &key,
                time,
                watermark: self.watermark,
                processing_time,
                timers: &mut self.timers,
                out,
            };
            self.func.on_timer(Timer { time, domain }, &mut ctx)?;
        }
    }
}

impl<K, T, KF, P> Operator<Timestamped<T>, P::Out> for ProcessOperator<K, KF, P>
where
    K: StateKey,
    T: Send + 'static,
    KF: Fn(&Timestamped<T>) -> K + Send + 'static,
    P: KeyedProcessFunction<K, T>,
{
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        self.func.open(ctx)?;
        if let Some(state) = weir_core::state::restore_binary::<TimerState<K>>(ctx, "timers")? {
            self.watermark = state.watermark;
            for (key, time) in state.event {
                self.timers.event.register(&key, time);
            }
            for (key, time) in state.processing {
                self.timers.processing.register(&key, time);
            }
        }
        if ctx.restored_checkpoint().is_some() {
            self.func.restore(ctx)?;
        }
        Ok(())
    }

    fn snapshot(
        &mut self,
        _: weir_core::CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        if !ctx.checkpointing() {
            return Ok(());
        }
        let state = TimerState {
            watermark: self.watermark,
            event: self.timers.event.pending(),
            processing: self.timers.processing.pending(),
        };
        weir_core::state::save_binary(ctx, "timers", &state)?;
        self.func.snapshot(ctx)
    }

    fn process(
        &mut self,
        input: &mut Vec<Timestamped<T>>,
        out: &mut Vec<P::Out>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let processing_time = ctx.processing_time();
        for (i, record) in input.drain(..).enumerate() {
            let key = (self.key_of)(&record);
            let mut kc = KeyedContext {
                key: &key,
                time: record.time,
                watermark: self.watermark,
                processing_time,
                timers: &mut self.timers,
                out,
            };
            self.func
                .process(record, &mut kc)
                .map_err(|e| e.at(ctx.position() + i as u64))?;
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Vec<P::Out>,
        ctx: &mut OperatorContext,
    ) -> Result<Option<Timestamp>, OperatorError> {
        self.watermark = self.watermark.max(watermark);
        let processing_time = ctx.processing_time();
        self.fire::<T>(TimeDomain::EventTime, watermark, processing_time, out)?;
        Ok(Some(watermark))
    }

    fn on_tick(
        &mut self,
        out: &mut Vec<P::Out>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let now = ctx.processing_time();
        self.fire::<T>(TimeDomain::ProcessingTime, now, now, out)
    }

    fn close(
        &mut self,
        out: &mut Vec<P::Out>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        if self.watermark < END_OF_TIME {
            self.on_watermark(END_OF_TIME, out, ctx)?;
        }
        Ok(())
    }
}

/// Keyed process functions on keyed, timestamped streams.
pub trait KeyedProcessExt<K: StateKey, T: Data> {
    /// Runs a [`KeyedProcessFunction`]; `make` builds one per parallel instance.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_core::{Environment, OperatorError};
    /// use weir_time::prelude::*;
    /// use weir_time::ValueState;
    ///
    /// /// Counts each user's clicks and reports the count one second (event time) after the
    /// /// user's first click.
    /// #[derive(Default)]
    /// struct Report {
    ///     counts: ValueState<String, u64>,
    /// }
    ///
    /// impl KeyedProcessFunction<String, (&'static str, i64)> for Report {
    ///     type Out = (String, u64);
    ///     fn process(
    ///         &mut self,
    ///         click: Timestamped<(&'static str, i64)>,
    ///         ctx: &mut KeyedContext<'_, String, Self::Out>,
    ///     ) -> Result<(), OperatorError> {
    ///         let key = ctx.key().clone();
    ///         let n = self.counts.get_or_insert_with(&key, ctx, || 0);
    ///         *n += 1;
    ///         if *n == 1 {
    ///             ctx.register_event_timer(click.time + 1_000);
    ///         }
    ///         Ok(())
    ///     }
    ///     fn on_timer(
    ///         &mut self,
    ///         _timer: Timer,
    ///         ctx: &mut KeyedContext<'_, String, Self::Out>,
    ///     ) -> Result<(), OperatorError> {
    ///         let key = ctx.key().clone();
    ///         if let Some(n) = self.counts.remove(&key) {
    ///             ctx.emit((key, n));
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let env = Environment::local();
    /// let reports = env
    ///     .from_iter(vec![("ann", 0), ("ann", 400), ("bob", 500), ("ann", 1_200)])
    ///     .assign_timestamps(|c| c.1, Watermarks::ascending())
    ///     .key_by(|c| c.0.to_string())
    ///     .process(Report::default)
    ///     .collect();
    /// env.execute().unwrap();
    /// let mut reports = reports.take();
    /// reports.sort();
    /// assert_eq!(reports, vec![("ann".to_string(), 3), ("bob".to_string(), 1)]);
    /// ```
    fn process<P>(&self, make: impl Fn() -> P + 'static) -> Stream<P::Out>
    where
        P: KeyedProcessFunction<K, T>;
}

impl<K, T, F> KeyedProcessExt<K, T> for KeyedStream<K, Timestamped<T>, F>
where
    K: StateKey + std::hash::Hash,
    T: Data,
    F: Fn(&Timestamped<T>) -> K + Clone + Send + 'static,
{
    fn process<P>(&self, make: impl Fn() -> P + 'static) -> Stream<P::Out>
    where
        P: KeyedProcessFunction<K, T>,
    {
        self.transform("process", move |key_of| {
            ProcessOperator::new(key_of, make())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use weir_core::{Harness, ManualClock};

    /// Records every timer it sees; sets the timers its records ask for.
    #[derive(Default)]
    struct Timed;

    enum Ask {
        Event(Timestamp),
        Processing(Timestamp),
        DeleteEvent(Timestamp),
    }

    impl KeyedProcessFunction<u8, (u8, Ask)> for Timed {
        type Out = (u8, Timer);
        fn process(
            &mut self,
            record: Timestamped<(u8, Ask)>,
            ctx: &mut KeyedContext<'_, u8, Self::Out>,
        ) -> Result<(), OperatorError> {
            match record.item.1 {
                Ask::Event(t) => ctx.register_event_timer(t),
                Ask::Processing(t) => ctx.register_processing_timer(t),
                Ask::DeleteEvent(t) => ctx.delete_event_timer(t),
            }
            Ok(())
        }
        fn on_timer(
            &mut self,
            timer: Timer,
            ctx: &mut KeyedContext<'_, u8, Self::Out>,
        ) -> Result<(), OperatorError> {
            let key = *ctx.key();
            ctx.emit((key, timer));
            Ok(())
        }
    }

    type Op = ProcessOperator<u8, fn(&Timestamped<(u8, Ask)>) -> u8, Timed>;

    fn op() -> Op {
        ProcessOperator::new(|r: &Timestamped<(u8, Ask)>| r.item.0, Timed)
    }

    fn rec(key: u8, ask: Ask) -> Timestamped<(u8, Ask)> {
        Timestamped::new(0, (key, ask))
    }

    fn event(time: Timestamp) -> Timer {
        Timer {
            time,
            domain: TimeDomain::EventTime,
        }
    }

    #[test]
    fn event_timers_fire_exactly_once_when_the_watermark_passes() {
        let mut h = Harness::new(op());
        h.push(vec![
            rec(1, Ask::Event(1_000)),
            rec(1, Ask::Event(1_000)),
            rec(2, Ask::Event(1_000)),
            rec(1, Ask::Event(2_000)),
        ])
        .unwrap();
        assert!(h.watermark(999).unwrap().is_empty());
        assert_eq!(
            h.watermark(1_000).unwrap(),
            vec![(1, event(1_000)), (2, event(1_000))],
            "one timer per key and time, even when set twice"
        );
        assert!(h.watermark(1_500).unwrap().is_empty(), "fired only once");
        assert_eq!(h.watermark(5_000).unwrap(), vec![(1, event(2_000))]);
        assert_eq!(h.operator().pending_timers(), (0, 0));
        assert!(h.close().unwrap().is_empty());
    }

    #[test]
    fn a_deleted_timer_does_not_fire_and_the_end_of_input_fires_the_rest() {
        let mut h = Harness::new(op());
        h.push(vec![
            rec(1, Ask::Event(100)),
            rec(1, Ask::DeleteEvent(100)),
            rec(1, Ask::Event(i64::MAX - 1)),
        ])
        .unwrap();
        assert!(h.watermark(200).unwrap().is_empty());
        assert_eq!(h.close().unwrap(), vec![(1, event(i64::MAX - 1))]);
    }

    #[test]
    fn processing_time_timers_fire_on_the_tick_when_the_clock_says_so() {
        let clock = Arc::new(ManualClock::new(10_000));
        let mut h = Harness::with_clock(op(), clock.clone());
        h.push(vec![rec(3, Ask::Processing(10_500))]).unwrap();
        assert!(h.tick().unwrap().is_empty());
        clock.advance(499);
        assert!(h.tick().unwrap().is_empty());
        clock.advance(1);
        let fired = h.tick().unwrap();
        assert_eq!(
            fired,
            vec![(
                3,
                Timer {
                    time: 10_500,
                    domain: TimeDomain::ProcessingTime
                }
            )]
        );
        assert!(h.tick().unwrap().is_empty());
        // Watermarks do not fire processing-time timers.
        h.push(vec![rec(3, Ask::Processing(20_000))]).unwrap();
        assert!(h.watermark(END_OF_TIME).unwrap().is_empty());
    }
}
