//! Windows: tumbling, sliding and session windows over keyed, timestamped streams.
//!
//! Window assignment:
//! - a **tumbling** window of size `s` holds the events with `start <= time < start + s`, where
//!   `start` is a multiple of `s` (counted from the epoch). An event exactly on a boundary
//!   belongs to the window that *starts* there.
//! - a **sliding** window of size `s` every `d` holds the same interval for every `start` that is
//!   a multiple of `d`; an event belongs to `s / d` windows. State is kept per *pane* (the
//!   greatest common divisor of `s` and `d`): each event updates one pane, and a window's result
//!   merges the partial aggregates of its panes.
//! - a **session** window groups a key's events that are at most `gap` apart: each event opens
//!   `[time, time + gap)`, and windows that overlap or touch merge (also when a late event
//!   bridges two sessions that were already apart). A session's `end` is its last event + gap.
//!
//! A window emits its result when the watermark reaches its `end` (a session: when it
//! passes its `end`, since an event at exactly `end` still extends the session; the same for
//! `end + L` below). With an allowed lateness `L`, its state is kept until the watermark
//! reaches `end + L`; an event arriving after the
//! window fired but before then updates the window and emits the updated result at once (one
//! more result for the same key and window). An event whose windows are all past `end + L`
//! goes to the late output. Nothing is dropped silently.

use crate::TimeError;
use crate::aggregate::Aggregator;
use crate::state::{Backend, InMemory};
use crate::time::{HasTime, Timestamped, Window, floor_to, millis};
use hashbrown::HashSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::Duration;
use weir_core::{
    BEFORE_TIME, Data, END_OF_TIME, KeyedStream, Operator, OperatorContext, OperatorError, Stream,
    Timestamp,
};
use weir_state::{KeyedStore, StateKey, StateValue};

/// Which windows an event belongs to. Durations are taken in whole milliseconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    Tumbling {
        size: Duration,
    },
    /// A `slide` longer than `size` is taken as `size` (every event is in a window).
    Sliding {
        size: Duration,
        slide: Duration,
    },
    Session {
        gap: Duration,
    },
}

/// The most windows one event may belong to: a sliding window's `size / slide`. Every window
/// an event is in emits a result, so a few records with `size: 1d, slide: 1ms` would emit
/// 86,400,000 results each; [`WindowSpec::check`] refuses such windows.
pub const MAX_WINDOWS_PER_EVENT: u64 = 10_000;

impl WindowSpec {
    /// How many windows one event belongs to (for a session, one).
    pub fn windows_per_event(&self) -> u64 {
        match *self {
            WindowSpec::Tumbling { .. } | WindowSpec::Session { .. } => 1,
            WindowSpec::Sliding { size, slide } => {
                let size = millis(size).max(1) as u64;
                let slide = (millis(slide).max(1) as u64).min(size);
                size.div_ceil(slide)
            }
        }
    }

    /// Refuses windows that put an event in more than [`MAX_WINDOWS_PER_EVENT`] windows.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_time::Sliding;
    ///
    /// let day = Duration::from_secs(86_400);
    /// assert!(Sliding::of(day, Duration::from_secs(60)).check().is_ok());
    /// let e = Sliding::of(day, Duration::from_millis(1)).check().unwrap_err();
    /// assert_eq!(e.to_string(), "a sliding window of 1day every 1ms puts each event in 86400000 windows; at most 10000 are allowed (a slide of at least 8s 640ms)");
    /// ```
    pub fn check(&self) -> Result<(), TimeError> {
        let windows = self.windows_per_event();
        if windows <= MAX_WINDOWS_PER_EVENT {
            return Ok(());
        }
        let (size, slide) = match *self {
            WindowSpec::Sliding { size, slide } => (size, slide),
            _ => unreachable!("only sliding windows put an event in several windows"),
        };
        let min_slide = (millis(size) as u64).div_ceil(MAX_WINDOWS_PER_EVENT);
        Err(TimeError::TooManyWindows {
            size,
            slide,
            windows,
            min_slide: Duration::from_millis(min_slide),
        })
    }
}

/// Fixed-size, non-overlapping windows.
///
/// ```
/// use std::time::Duration;
/// use weir_time::{Tumbling, WindowSpec};
///
/// assert_eq!(
///     Tumbling::of(Duration::from_secs(1)),
///     WindowSpec::Tumbling { size: Duration::from_secs(1) }
/// );
/// ```
#[derive(Debug)]
pub struct Tumbling;

impl Tumbling {
    pub fn of(size: Duration) -> WindowSpec {
        WindowSpec::Tumbling { size }
    }
}

/// Fixed-size windows starting every `slide`.
///
/// ```
/// use std::time::Duration;
/// use weir_time::{Sliding, WindowSpec};
///
/// let w = Sliding::of(Duration::from_secs(10), Duration::from_secs(5));
/// assert!(matches!(w, WindowSpec::Sliding { .. }));
/// ```
#[derive(Debug)]
pub struct Sliding;

impl Sliding {
    pub fn of(size: Duration, slide: Duration) -> WindowSpec {
        WindowSpec::Sliding { size, slide }
    }
}

/// Windows of activity separated by at least `gap` without events.
///
/// ```
/// use std::time::Duration;
/// use weir_time::{Session, WindowSpec};
///
/// let w = Session::with_gap(Duration::from_secs(30));
/// assert_eq!(w, WindowSpec::Session { gap: Duration::from_secs(30) });
/// ```
#[derive(Debug)]
pub struct Session;

impl Session {
    pub fn with_gap(gap: Duration) -> WindowSpec {
        WindowSpec::Session { gap }
    }
}

/// One window's result for one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowResult<K, V> {
    pub key: K,
    pub window: Window,
    pub value: V,
}

/// A window operator's two outputs: results, and the events that came too late for any window.
pub struct WindowOutput<R, T> {
    pub results: Stream<R>,
    pub late: Stream<Timestamped<T>>,
}

impl<R, T> WindowOutput<R, T> {
    pub fn into_parts(self) -> (Stream<R>, Stream<Timestamped<T>>) {
        (self.results, self.late)
    }
}

/// What a window operator does with a window's elements: accumulate them, combine partial
/// accumulators, and turn an accumulator into output.
pub(crate) trait WindowFn<K, I>: Send + 'static {
    type Acc: StateValue + Clone;
    type Out;
    fn init(&self) -> Self::Acc;
    fn add(&self, acc: &mut Self::Acc, item: I);
    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc);
    fn emit<L>(
        &mut self,
        key: &K,
        window: Window,
        acc: &Self::Acc,
        out: &mut Vec<Result<Self::Out, L>>,
    );
}

/// Windows with an [`Aggregator`]: one [`WindowResult`] per key and window.
pub(crate) struct AggregateFn<A>(pub(crate) A);

impl<K, T, A> WindowFn<K, Timestamped<T>> for AggregateFn<A>
where
    K: Clone,
    A: Aggregator<T>,
{
    type Acc = A::Acc;
    type Out = WindowResult<K, A::Out>;
    #[inline]
    fn init(&self) -> A::Acc {
        self.0.init()
    }
    #[inline]
    fn add(&self, acc: &mut A::Acc, item: Timestamped<T>) {
        self.0.add(acc, &item.item);
    }
    #[inline]
    fn merge(&self, acc: &mut A::Acc, other: &A::Acc) {
        self.0.merge(acc, other);
    }
    #[inline]
    fn emit<L>(
        &mut self,
        key: &K,
        window: Window,
        acc: &A::Acc,
        out: &mut Vec<Result<Self::Out, L>>,
    ) {
        out.push(Ok(WindowResult {
            key: key.clone(),
            window,
            value: self.0.result(acc),
        }));
    }
}

/// Windows with a pairwise reduce: the result is the reduced record.
pub(crate) struct ReduceFn<F>(pub(crate) F);

impl<K, T, F> WindowFn<K, Timestamped<T>> for ReduceFn<F>
where
    K: Clone,
    T: StateValue + Clone,
    F: Fn(&T, &T) -> T + Send + 'static,
{
    type Acc = Option<T>;
    type Out = WindowResult<K, T>;
    fn init(&self) -> Option<T> {
        None
    }
    fn add(&self, acc: &mut Option<T>, item: Timestamped<T>) {
        *acc = Some(match acc.take() {
            None => item.item,
            Some(a) => (self.0)(&a, &item.item),
        });
    }
    fn merge(&self, acc: &mut Option<T>, other: &Option<T>) {
        if let Some(b) = other {
            *acc = Some(match acc.take() {
                None => b.clone(),
                Some(a) => (self.0)(&a, b),
            });
        }
    }
    fn emit<L>(
        &mut self,
        key: &K,
        window: Window,
        acc: &Option<T>,
        out: &mut Vec<Result<Self::Out, L>>,
    ) {
        if let Some(value) = acc {
            out.push(Ok(WindowResult {
                key: key.clone(),
                window,
                value: value.clone(),
            }));
        }
    }
}

/// Full-window processing: the window's elements are kept and handed to a function.
pub(crate) struct ProcessFn<P, O> {
    pub(crate) f: P,
    pub(crate) scratch: Vec<O>,
}

impl<K, T, O, P> WindowFn<K, Timestamped<T>> for ProcessFn<P, O>
where
    T: StateValue + Clone,
    O: Send + 'static,
    P: FnMut(&K, Window, &[Timestamped<T>], &mut Vec<O>) + Send + 'static,
{
    type Acc = Vec<Timestamped<T>>;
    type Out = O;
    fn init(&self) -> Self::Acc {
        Vec::new()
    }
    fn add(&self, acc: &mut Self::Acc, item: Timestamped<T>) {
        acc.push(item);
    }
    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc) {
        acc.extend_from_slice(other);
    }
    fn emit<L>(&mut self, key: &K, window: Window, acc: &Self::Acc, out: &mut Vec<Result<O, L>>) {
        (self.f)(key, window, acc, &mut self.scratch);
        out.extend(self.scratch.drain(..).map(Ok));
    }
}

/// Tumbling and sliding windows: partial accumulators per pane, one keyed store per pane. On
/// the job's backend each pane's store is opened as the named store `pane_<start>` (on disk,
/// a directory per live pane, removed when the pane is dropped), so a pane's keys are listed
/// by its own store and need no ordered scan.
struct Panes<K: StateKey, A: StateValue, B: Backend> {
    size: Timestamp,
    slide: Timestamp,
    pane: Timestamp,
    /// Sorted by pane start.
    panes: Vec<(Timestamp, B::Store<K, A>)>,
    /// Where a sliding window's panes are merged.
    scratch: B::Store<K, A>,
    /// Intervals `(lo, hi]` of the ends of the windows to fire.
    ends: Vec<(Timestamp, Timestamp)>,
}

fn gcd(a: Timestamp, b: Timestamp) -> Timestamp {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl<K: StateKey, A: StateValue + Clone, B: Backend> Panes<K, A, B> {
    fn new(size: Timestamp, slide: Timestamp) -> Self {
        Panes {
            size,
            slide,
            pane: gcd(size, slide),
            panes: Vec::new(),
            scratch: Default::default(),
            ends: Vec::new(),
        }
    }

    fn tumbling(&self) -> bool {
        self.slide == self.size
    }

    /// End of the last window that contains `time` (or the pane starting at `time`).
    #[inline]
    fn last_end(&self, time: Timestamp) -> Timestamp {
        floor_to(time, self.slide).saturating_add(self.size)
    }

    /// Index of the pane starting at `start`, created (its store opened on the backend) if
    /// needed. Recent panes are at the back, where in-order events find theirs at the first
    /// comparison.
    #[inline]
    fn pane_at(&mut self, start: Timestamp, ctx: &OperatorContext) -> Result<usize, OperatorError> {
        let mut i = self.panes.len();
        while i > 0 {
            let s = self.panes[i - 1].0;
            if s == start {
                return Ok(i - 1);
            }
            if s < start {
                break;
            }
            i -= 1;
        }
        let store = open_pane::<K, A, B>(ctx, start)?.unwrap_or_default();
        self.panes.insert(i, (start, store));
        Ok(i)
    }

    /// The accumulator of `key` in window `[start, end)`, merged from its panes.
    fn window_acc<I, W: WindowFn<K, I, Acc = A>>(
        &mut self,
        key: &K,
        start: Timestamp,
        end: Timestamp,
        func: &W,
    ) -> Option<A> {
        let mut acc: Option<A> = None;
        for (p, store) in self.panes.iter_mut() {
            if *p < start || *p >= end {
                continue;
            }
            if let Some(a) = store.get(key) {
                match &mut acc {
                    None => acc = Some(a.clone()),
                    Some(x) => func.merge(x, a),
                }
            }
        }
        acc
    }

    /// Adds `item`; `Ok(Err(item))` when it is late.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn add<I: HasTime, W: WindowFn<K, I, Acc = A>, L>(
        &mut self,
        key: K,
        item: I,
        watermark: Timestamp,
        lateness: Timestamp,
        func: &mut W,
        out: &mut Vec<Result<W::Out, L>>,
        ctx: &OperatorContext,
    ) -> Result<Result<(), I>, OperatorError> {
        let time = item.time();
        if self.last_end(time).saturating_add(lateness) <= watermark {
            return Ok(Err(item));
        }
        let i = self.pane_at(floor_to(time, self.pane), ctx)?;
        let acc = self.panes[i].1.get_or_insert_with(&key, || func.init());
        func.add(acc, item);
        if time < watermark {
            // Windows of this event may have fired already: emit their updated results.
            let mut start = floor_to(time, self.slide);
            while start > time.saturating_sub(self.size) {
                let end = start.saturating_add(self.size);
                if end <= watermark
                    && end.saturating_add(lateness) > watermark
                    && let Some(acc) = self.window_acc(&key, start, end, func)
                {
                    func.emit(&key, Window { start, end }, &acc, out);
                }
                start = start.saturating_sub(self.slide);
            }
        }
        Ok(Ok(()))
    }

    /// The watermark moved from `from` to `to`: fire the windows ending in `(from, to]`, drop
    /// the panes no window needs any more.
    fn advance<I, W: WindowFn<K, I, Acc = A>, L>(
        &mut self,
        from: Timestamp,
        to: Timestamp,
        lateness: Timestamp,
        func: &mut W,
        out: &mut Vec<Result<W::Out, L>>,
    ) {
        if self.tumbling() {
            let size = self.size;
            let fired = self
                .panes
                .partition_point(|(p, _)| p.saturating_add(size) <= to);
            if lateness == 0 {
                // Fire and forget: the accumulators move out of the store.
                for (start, mut store) in self.panes.drain(..fired) {
                    let window = Window {
                        start,
                        end: start.saturating_add(size),
                    };
                    for (key, acc) in store.drain_all() {
                        func.emit(&key, window, &acc, out);
                    }
                }
                return;
            }
            for (start, store) in self.panes[..fired].iter_mut() {
                let window = Window {
                    start: *start,
                    end: start.saturating_add(size),
                };
                if window.end > from {
                    store.for_each(&mut |key, acc| func.emit(key, window, acc, out));
                }
            }
            let expired = self
                .panes
                .partition_point(|(p, _)| p.saturating_add(size).saturating_add(lateness) <= to);
            self.panes.drain(..expired);
            return;
        }

        // Sliding: the windows to fire end in (from, to] and contain a pane; a pane `p` is in
        // the windows ending in (p, p + size]. Their union, as intervals of ends, is at most
        // one interval per pane; each end in it is a window with results (memory and time
        // follow the output, not `size / slide`).
        self.ends.clear();
        for (p, _) in &self.panes {
            let lo = (*p).max(from);
            let hi = p.saturating_add(self.size).min(to);
            if lo >= hi {
                continue;
            }
            match self.ends.last_mut() {
                Some((_, last_hi)) if lo <= *last_hi => *last_hi = (*last_hi).max(hi),
                _ => self.ends.push((lo, hi)),
            }
        }
        for i in 0..self.ends.len() {
            let (lo, hi) = self.ends[i];
            // The first window end above `lo`: ends are `k * slide + size`.
            let mut end = floor_to(lo.saturating_sub(self.size), self.slide)
                .saturating_add(self.slide)
                .saturating_add(self.size);
            while end <= hi {
                self.fire_sliding(end, func, out);
                if end == Timestamp::MAX {
                    break;
                }
                end = end.saturating_add(self.slide);
            }
        }
        let (slide, size) = (self.slide, self.size);
        self.panes.retain(|(p, _)| {
            (floor_to(*p, slide).saturating_add(size)).saturating_add(lateness) > to
        });
    }

    /// Emits the sliding window ending at `end`: its panes' accumulators merged per key.
    fn fire_sliding<I, W: WindowFn<K, I, Acc = A>, L>(
        &mut self,
        end: Timestamp,
        func: &mut W,
        out: &mut Vec<Result<W::Out, L>>,
    ) {
        let start = end.saturating_sub(self.size);
        let first = self.panes.partition_point(|(p, _)| *p < start);
        let last = self.panes.partition_point(|(p, _)| *p < end);
        if first == last {
            return;
        }
        let scratch = &mut self.scratch;
        for (_, store) in self.panes[first..last].iter_mut() {
            store.for_each(&mut |key, acc| {
                let merged = scratch.get_or_insert_with(key, || func.init());
                func.merge(merged, acc);
            });
        }
        let window = Window { start, end };
        for (key, acc) in self.scratch.drain_all() {
            func.emit(&key, window, &acc, out);
        }
    }
}

/// The store of the pane starting at `start` on the backend (`None`: the default store).
fn open_pane<K: StateKey, A: StateValue, B: Backend>(
    ctx: &OperatorContext,
    start: Timestamp,
) -> Result<Option<B::Store<K, A>>, OperatorError> {
    B::open_named_store(ctx, &pane_name(start))
}

/// A pane's name in the backend and in checkpoints.
fn pane_name(start: Timestamp) -> String {
    format!("pane_{start}")
}

/// A key's session: its bounds, accumulator, and whether its result was emitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OpenSession<A> {
    start: Timestamp,
    end: Timestamp,
    acc: A,
    fired: bool,
}

/// Times at which keys have a session due, each (time, key) at most once.
type Schedule<K> = BTreeMap<Timestamp, HashSet<K>>;

fn schedule<K: StateKey>(queue: &mut Schedule<K>, time: Timestamp, key: K) {
    queue.entry(time).or_default().insert(key);
}

fn unschedule<K: StateKey>(queue: &mut Schedule<K>, time: Timestamp, key: &K) {
    if let Some(keys) = queue.get_mut(&time) {
        keys.remove(key);
        if keys.is_empty() {
            queue.remove(&time);
        }
    }
}

/// Whether the watermark has passed `time`: it is beyond it, or at the end of time (which
/// closes everything).
#[inline]
fn passed(time: Timestamp, watermark: Timestamp) -> bool {
    time < watermark || watermark == END_OF_TIME
}

/// Session windows: each key's sessions in one entry, sorted and pairwise apart (so their
/// ends are sorted and distinct, and `(end, key)` names one session).
///
/// A session fires when the watermark *passes* its end, not when it reaches it: an event at
/// exactly `end` touches the session and extends it, and such an event is on time until the
/// watermark is beyond `end`.
///
/// The queues hold exactly one entry per session: an unfired session at its end in `fire`, a
/// fired one kept for allowed lateness at `end + lateness` in `cleanup`. A session that grows
/// or merges moves its entries, so firing is a queue pop and a binary search per session.
struct Sessions<K: StateKey, A: StateValue, B: Backend> {
    gap: Timestamp,
    lateness: Timestamp,
    store: B::Store<K, Vec<OpenSession<A>>>,
    fire: Schedule<K>,
    cleanup: Schedule<K>,
}

impl<K: StateKey, A: StateValue + Clone, B: Backend> Sessions<K, A, B> {
    fn new(gap: Timestamp, lateness: Timestamp) -> Self {
        Sessions {
            gap,
            lateness,
            store: Default::default(),
            fire: BTreeMap::new(),
            cleanup: BTreeMap::new(),
        }
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        self.fire
            .values()
            .chain(self.cleanup.values())
            .map(|k| k.len())
            .sum()
    }

    #[cfg(test)]
    fn open_sessions(&mut self) -> usize {
        let mut n = 0;
        self.store.for_each(&mut |_, s| n += s.len());
        n
    }

    /// Where a session's entry is: (fired, time).
    #[inline]
    fn slot(&self, end: Timestamp, fired: bool) -> (bool, Timestamp) {
        if fired {
            (true, end.saturating_add(self.lateness))
        } else {
            (false, end)
        }
    }

    fn unschedule_slot(&mut self, (fired, time): (bool, Timestamp), key: &K) {
        let queue = if fired {
            &mut self.cleanup
        } else {
            &mut self.fire
        };
        unschedule(queue, time, key);
    }

    fn add<I: HasTime, W: WindowFn<K, I, Acc = A>, L>(
        &mut self,
        key: K,
        item: I,
        watermark: Timestamp,
        func: &mut W,
        out: &mut Vec<Result<W::Out, L>>,
    ) -> Result<(), I> {
        let lateness = self.lateness;
        let time = item.time();
        let (mut start, mut end) = (time, time.saturating_add(self.gap));
        // The sessions the event's window overlaps or touches: a contiguous run, since the
        // sessions of a key are sorted and apart; the first is the first to end at or after
        // `start`.
        let (mut first, mut count) = (0, 0);
        if let Some(sessions) = self.store.get(&key) {
            first = sessions.partition_point(|s| s.end < start);
            for s in &sessions[first..] {
                if s.start > end {
                    break;
                }
                count += 1;
                start = start.min(s.start);
                end = end.max(s.end);
            }
        }
        if passed(end.saturating_add(lateness), watermark) {
            return Err(item);
        }
        let fired = passed(end, watermark);
        let new_slot = self.slot(end, fired);
        let sessions = self.store.get_or_insert_with(&key, Vec::new);
        // The queue entries of the sessions merged into this one (at most one per session).
        let mut old_slots: [(bool, Timestamp); 2] = [(false, 0); 2];
        let mut more_slots: Vec<(bool, Timestamp)> = Vec::new();
        let merged = if count == 0 {
            let mut acc = func.init();
            func.add(&mut acc, item);
            sessions.insert(
                first,
                OpenSession {
                    start,
                    end,
                    acc,
                    fired,
                },
            );
            &mut sessions[first]
        } else {
            let slot_of = |s: &OpenSession<A>| {
                if s.fired {
                    (true, s.end.saturating_add(lateness))
                } else {
                    (false, s.end)
                }
            };
            old_slots[0] = slot_of(&sessions[first]);
            if count > 1 {
                let others: Vec<OpenSession<A>> =
                    sessions.drain(first + 1..first + count).collect();
                for other in &others {
                    more_slots.push(slot_of(other));
                    func.merge(&mut sessions[first].acc, &other.acc);
                }
            }
            let base = &mut sessions[first];
            func.add(&mut base.acc, item);
            base.start = start;
            base.end = end;
            base.fired = fired;
            base
        };
        if fired {
            // Late but within the allowed lateness: the session already fired; emit it updated.
            func.emit(&key, Window { start, end }, &merged.acc, out);
        }
        let unchanged = count == 1 && old_slots[0] == new_slot;
        if !unchanged {
            if count >= 1 {
                self.unschedule_slot(old_slots[0], &key);
            }
            for slot in more_slots {
                self.unschedule_slot(slot, &key);
            }
            let queue = if fired {
                &mut self.cleanup
            } else {
                &mut self.fire
            };
            schedule(queue, new_slot.1, key);
        }
        Ok(())
    }

    fn advance<I, W: WindowFn<K, I, Acc = A>, L>(
        &mut self,
        to: Timestamp,
        func: &mut W,
        out: &mut Vec<Result<W::Out, L>>,
    ) {
        let lateness = self.lateness;
        while let Some(entry) = self.fire.first_entry() {
            let end = *entry.key();
            if !passed(end, to) {
                break;
            }
            for key in entry.remove() {
                let Some(sessions) = self.store.get_mut(&key) else {
                    continue;
                };
                let Ok(i) = sessions.binary_search_by_key(&end, |s| s.end) else {
                    continue;
                };
                let s = &mut sessions[i];
                let window = Window {
                    start: s.start,
                    end: s.end,
                };
                func.emit(&key, window, &s.acc, out);
                if lateness > 0 {
                    s.fired = true;
                    schedule(&mut self.cleanup, end.saturating_add(lateness), key);
                } else {
                    sessions.remove(i);
                    if sessions.is_empty() {
                        self.store.remove(&key);
                    }
                }
            }
        }
        while let Some(entry) = self.cleanup.first_entry() {
            if !passed(*entry.key(), to) {
                break;
            }
            for key in entry.remove() {
                let Some(sessions) = self.store.get_mut(&key) else {
                    continue;
                };
                // Every session ending before `to` has fired: those to drop are a prefix.
                let expired =
                    sessions.partition_point(|s| passed(s.end.saturating_add(lateness), to));
                sessions.drain(..expired);
                if sessions.is_empty() {
                    self.store.remove(&key);
                }
            }
        }
    }

    /// Rebuilds the queues from the sessions (after a restore).
    fn reschedule(&mut self) {
        let mut slots = Vec::new();
        let lateness = self.lateness;
        self.store.for_each(&mut |key, sessions| {
            for s in sessions {
                let time = if s.fired {
                    s.end.saturating_add(lateness)
                } else {
                    s.end
                };
                slots.push((s.fired, time, key.clone()));
            }
        });
        self.fire.clear();
        self.cleanup.clear();
        for (fired, time, key) in slots {
            let queue = if fired {
                &mut self.cleanup
            } else {
                &mut self.fire
            };
            schedule(queue, time, key);
        }
    }
}

/// What a window operator stores in a checkpoint: its watermark and every open window.
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize, A: Serialize",
    deserialize = "K: StateKey, A: StateValue"
))]
struct WindowState<K, A> {
    watermark: Timestamp,
    /// Tumbling and sliding: per pane start, the partial accumulators.
    panes: Vec<(Timestamp, Vec<(K, A)>)>,
    /// Sessions: written empty, as are `fire` and `cleanup` (kept so that checkpoints of
    /// earlier versions still decode): sessions are saved as their keyed store, `sessions`,
    /// and the queues are rebuilt from it.
    sessions: Vec<(K, Vec<OpenSession<A>>)>,
    fire: Vec<(Timestamp, Vec<K>)>,
    cleanup: Vec<(Timestamp, Vec<K>)>,
}

fn entries<K: StateKey, V: StateValue + Clone, S: KeyedStore<K, V>>(store: &mut S) -> Vec<(K, V)> {
    let mut all = Vec::with_capacity(store.len());
    store.for_each(&mut |k, v| all.push((k.clone(), v.clone())));
    all
}

impl<K: StateKey, A: StateValue + Clone, B: Backend> Layout<K, A, B> {
    fn save(&mut self, watermark: Timestamp) -> WindowState<K, A> {
        let mut state = WindowState {
            watermark,
            panes: Vec::new(),
            sessions: Vec::new(),
            fire: Vec::new(),
            cleanup: Vec::new(),
        };
        match self {
            Layout::Panes(p) => {
                // Panes checkpointed as files are saved on their own, under their names.
                state.panes = p
                    .panes
                    .iter_mut()
                    .filter(|(_, store)| !store.checkpoints_as_files())
                    .map(|(start, store)| (*start, entries(store)))
                    .collect();
            }
            // Sessions are in their keyed store, saved on their own (as files on disk).
            Layout::Sessions(_) => {}
        }
        state
    }

    fn load(&mut self, state: WindowState<K, A>) {
        match self {
            Layout::Panes(p) => {
                p.panes = state
                    .panes
                    .into_iter()
                    .map(|(start, items)| {
                        let mut store: B::Store<K, A> = Default::default();
                        for (k, a) in items {
                            store.insert(k, a);
                        }
                        (start, store)
                    })
                    .collect();
            }
            Layout::Sessions(s) => {
                for (k, sessions) in state.sessions {
                    s.store.insert(k, sessions);
                }
                // Checkpoints of earlier versions held the sessions here; the queues are
                // rebuilt from the store once it is restored.
            }
        }
    }
}

enum Layout<K: StateKey, A: StateValue, B: Backend> {
    Panes(Panes<K, A, B>),
    Sessions(Sessions<K, A, B>),
}

/// The window operator: input records of type `I` (timestamped), output `Ok(result)` or
/// `Err(late record)`.
pub(crate) struct WindowOperator<K: StateKey, I, KF, W: WindowFn<K, I>, B: Backend> {
    key_of: KF,
    func: W,
    layout: Layout<K, W::Acc, B>,
    lateness: Timestamp,
    watermark: Timestamp,
    _i: PhantomData<fn(I)>,
}

impl<K: StateKey, I, KF, W: WindowFn<K, I>, B: Backend> WindowOperator<K, I, KF, W, B> {
    pub(crate) fn new(key_of: KF, func: W, spec: WindowSpec, lateness: Duration) -> Self {
        let layout = match spec {
            WindowSpec::Tumbling { size } => {
                let size = millis(size).max(1);
                Layout::Panes(Panes::new(size, size))
            }
            WindowSpec::Sliding { size, slide } => {
                let size = millis(size).max(1);
                Layout::Panes(Panes::new(size, millis(slide).clamp(1, size)))
            }
            WindowSpec::Session { gap } => {
                Layout::Sessions(Sessions::new(millis(gap).max(1), millis(lateness)))
            }
        };
        WindowOperator {
            key_of,
            func,
            layout,
            lateness: millis(lateness),
            watermark: BEFORE_TIME,
            _i: PhantomData,
        }
    }
}

impl<K, I, KF, W, B> Operator<I, Result<W::Out, I>> for WindowOperator<K, I, KF, W, B>
where
    K: StateKey,
    I: HasTime + Send + 'static,
    KF: Fn(&I) -> K + Send + 'static,
    W: WindowFn<K, I>,
    W::Out: Send + 'static,
    B: Backend,
{
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        if let Layout::Sessions(s) = &mut self.layout {
            if let Some(store) = B::open_store(ctx)? {
                s.store = store;
            }
            weir_core::state::restore_keyed(&mut s.store, ctx, "sessions")?;
        }
        if let Some(state) =
            weir_core::state::restore_binary::<WindowState<K, W::Acc>>(ctx, "windows")?
        {
            self.watermark = state.watermark;
            self.layout.load(state);
        }
        // Panes checkpointed as files, after `load` (which sets the panes saved in the blob).
        if let Layout::Panes(p) = &mut self.layout
            && let Some(starts) =
                weir_core::state::restore_binary::<Vec<Timestamp>>(ctx, "pane_files")?
        {
            for start in starts {
                let i = p.pane_at(start, ctx)?;
                weir_core::state::restore_keyed(&mut p.panes[i].1, ctx, &pane_name(start))?;
            }
        }
        if let Layout::Sessions(s) = &mut self.layout {
            // The queues follow from the sessions (older checkpoints stored them, with
            // duplicates, so they are rebuilt rather than read).
            s.reschedule();
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
        if let Layout::Sessions(s) = &mut self.layout {
            weir_core::state::save_keyed(&mut s.store, ctx, "sessions")?;
        }
        if let Layout::Panes(p) = &mut self.layout {
            let mut files = Vec::new();
            for (start, store) in p.panes.iter_mut() {
                if store.checkpoints_as_files() {
                    weir_core::state::save_keyed(store, ctx, &pane_name(*start))?;
                    files.push(*start);
                }
            }
            if !files.is_empty() {
                weir_core::state::save_binary(ctx, "pane_files", &files)?;
            }
        }
        let state = self.layout.save(self.watermark);
        weir_core::state::save_binary(ctx, "windows", &state)
    }

    #[inline]
    fn process(
        &mut self,
        input: &mut Vec<I>,
        out: &mut Vec<Result<W::Out, I>>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let (watermark, lateness) = (self.watermark, self.lateness);
        match &mut self.layout {
            Layout::Panes(panes) => {
                for item in input.drain(..) {
                    let key = (self.key_of)(&item);
                    if let Err(late) =
                        panes.add(key, item, watermark, lateness, &mut self.func, out, ctx)?
                    {
                        out.push(Err(late));
                    }
                }
            }
            Layout::Sessions(sessions) => {
                for item in input.drain(..) {
                    let key = (self.key_of)(&item);
                    if let Err(late) = sessions.add(key, item, watermark, &mut self.func, out) {
                        out.push(Err(late));
                    }
                }
            }
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Vec<Result<W::Out, I>>,
        _: &mut OperatorContext,
    ) -> Result<Option<Timestamp>, OperatorError> {
        if watermark > self.watermark {
            let from = std::mem::replace(&mut self.watermark, watermark);
            match &mut self.layout {
                Layout::Panes(p) => p.advance(from, watermark, self.lateness, &mut self.func, out),
                Layout::Sessions(s) => s.advance(watermark, &mut self.func, out),
            }
        }
        Ok(Some(watermark))
    }

    fn close(
        &mut self,
        out: &mut Vec<Result<W::Out, I>>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        self.on_watermark(END_OF_TIME, out, ctx).map(|_| ())
    }
}

/// A keyed, timestamped stream with a window assignment; see [`KeyedWindowExt::window`].
pub struct WindowedStream<K, T, F, B = InMemory> {
    stream: Stream<Timestamped<T>>,
    key_of: F,
    spec: WindowSpec,
    lateness: Duration,
    name: String,
    _k: PhantomData<fn() -> (K, B)>,
}

impl<K, T, F, B> WindowedStream<K, T, F, B>
where
    K: StateKey + std::hash::Hash,
    T: Data,
    F: Fn(&Timestamped<T>) -> K + Clone + Send + 'static,
    B: Backend,
{
    /// How long after a window closed late events still update it (default: none).
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = lateness;
        self
    }

    /// Names the window operator (in metrics and errors; default `window`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Keeps window state in another backend's stores.
    pub fn backend<B2: Backend>(self) -> WindowedStream<K, T, F, B2> {
        WindowedStream {
            stream: self.stream,
            key_of: self.key_of,
            spec: self.spec,
            lateness: self.lateness,
            name: self.name,
            _k: PhantomData,
        }
    }

    fn run<W, M>(&self, make: M) -> WindowOutput<W::Out, T>
    where
        W: WindowFn<K, Timestamped<T>>,
        W::Out: Data,
        M: Fn() -> W + 'static,
    {
        let (spec, lateness) = (self.spec, self.lateness);
        let routed = self
            .stream
            .key_by(self.key_of.clone())
            .transform(&self.name, move |key_of| {
                WindowOperator::<K, Timestamped<T>, F, W, B>::new(key_of, make(), spec, lateness)
            });
        let (results, late) = routed.split_result();
        WindowOutput { results, late }
    }

    /// Aggregates each key's window incrementally: one [`WindowResult`] per key and window
    /// (more with allowed lateness, when late events update a window).
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_core::Environment;
    /// use weir_time::prelude::*;
    ///
    /// let env = Environment::local();
    /// // (sensor, reading, event time): sliding windows of 2 s every 1 s.
    /// let out = env
    ///     .from_iter(vec![('a', 10, 500), ('a', 20, 1_500), ('a', 30, 2_500)])
    ///     .assign_timestamps(|r| r.2, Watermarks::ascending())
    ///     .key_by(|r| r.0)
    ///     .window(Sliding::of(Duration::from_secs(2), Duration::from_secs(1)))
    ///     .aggregate((Count, Max::of(|r: &(char, i32, i64)| r.1)));
    /// let results = out.results.collect();
    /// env.execute().unwrap();
    /// let mut got: Vec<_> = results.take().into_iter().map(|r| (r.window.start, r.value)).collect();
    /// got.sort();
    /// assert_eq!(got, vec![
    ///     (-1_000, (1, Some(10))),
    ///     (0, (2, Some(20))),
    ///     (1_000, (2, Some(30))),
    ///     (2_000, (1, Some(30))),
    /// ]);
    /// ```
    pub fn aggregate<A: Aggregator<T>>(&self, agg: A) -> WindowOutput<WindowResult<K, A::Out>, T> {
        self.run(move || AggregateFn(agg.clone()))
    }

    /// Reduces each key's window pairwise with `f` (which should be associative).
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_core::Environment;
    /// use weir_time::prelude::*;
    ///
    /// let env = Environment::local();
    /// let out = env
    ///     .from_iter(vec![(1u8, 5i64), (1, 7), (1, 3)])
    ///     .assign_timestamps(|r| r.1, Watermarks::ascending())
    ///     .key_by(|r| r.0)
    ///     .window(Session::with_gap(Duration::from_millis(10)))
    ///     .reduce(|a, b| (a.0, a.1.max(b.1)));
    /// let results = out.results.collect();
    /// env.execute().unwrap();
    /// let r = &results.take()[0];
    /// assert_eq!((r.window.start, r.window.end, r.value), (3, 17, (1, 7)));
    /// ```
    pub fn reduce<R>(&self, f: R) -> WindowOutput<WindowResult<K, T>, T>
    where
        T: StateValue,
        R: Fn(&T, &T) -> T + Clone + Send + 'static,
    {
        self.run(move || ReduceFn(f.clone()))
    }

    /// Hands all the elements of each key's window, in arrival order, to `f` when the window
    /// closes; `f` appends any number of outputs.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_core::Environment;
    /// use weir_time::prelude::*;
    ///
    /// let env = Environment::local();
    /// let out = env
    ///     .from_iter(vec![('a', 300), ('a', 100), ('a', 200), ('a', 1_100)])
    ///     .assign_timestamps(|r| r.1, Watermarks::bounded(Duration::from_millis(500)))
    ///     .key_by(|r| r.0)
    ///     .window(Tumbling::of(Duration::from_secs(1)))
    ///     .process(|_key, window: Window, elements: &[Timestamped<(char, i64)>], out: &mut Vec<String>| {
    ///         let mut times: Vec<i64> = elements.iter().map(|e| e.time).collect();
    ///         times.sort();
    ///         out.push(format!("{}: {:?}", window.start, times));
    ///     });
    /// let results = out.results.collect();
    /// env.execute().unwrap();
    /// assert_eq!(results.take(), vec!["0: [100, 200, 300]", "1000: [1100]"]);
    /// ```
    pub fn process<O, P>(&self, f: P) -> WindowOutput<O, T>
    where
        O: Data,
        T: StateValue,
        P: FnMut(&K, Window, &[Timestamped<T>], &mut Vec<O>) + Clone + Send + 'static,
    {
        self.run(move || ProcessFn {
            f: f.clone(),
            scratch: Vec::new(),
        })
    }
}

/// Windows on keyed, timestamped streams.
pub trait KeyedWindowExt<K, T, F> {
    /// Assigns the stream's events to windows; finish with `aggregate`, `reduce` or `process`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_core::{Config, Environment};
    /// use weir_time::prelude::*;
    ///
    /// // One record per batch, so that a watermark follows every record.
    /// let env = Environment::with_config(Config { batch_size: 1, ..Config::default() });
    /// let out = env
    ///     .from_iter(vec![('a', 5_000), ('a', 100)]) // the second is 4.9 s late
    ///     .assign_timestamps(|e| e.1, Watermarks::ascending())
    ///     .key_by(|e| e.0)
    ///     .window(Tumbling::of(Duration::from_secs(1)))
    ///     .allowed_lateness(Duration::from_secs(1))
    ///     .aggregate(Count);
    /// let (results, late) = (out.results.collect(), out.late.collect());
    /// env.execute().unwrap();
    /// assert_eq!(results.take().len(), 1);
    /// assert_eq!(late.take(), vec![Timestamped::new(100, ('a', 100))]);
    /// ```
    fn window(&self, spec: WindowSpec) -> WindowedStream<K, T, F>;
}

impl<K, T, F> KeyedWindowExt<K, T, F> for KeyedStream<K, Timestamped<T>, F>
where
    K: StateKey + std::hash::Hash,
    T: Data,
    F: Fn(&Timestamped<T>) -> K + Clone + Send + 'static,
{
    fn window(&self, spec: WindowSpec) -> WindowedStream<K, T, F> {
        WindowedStream {
            stream: self.stream().clone(),
            key_of: self.key_fn().clone(),
            spec,
            lateness: Duration::ZERO,
            name: "window".to_string(),
            _k: PhantomData,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{Count, Sum};
    use weir_core::Harness;

    type Ev = Timestamped<(char, i64)>;
    type Res = WindowResult<char, (u64, i64)>;
    type Agg = (Count, Sum<fn(&(char, i64)) -> i64>);
    type Op = WindowOperator<char, Ev, fn(&Ev) -> char, AggregateFn<Agg>, InMemory>;
    /// (key, start, end, count, sum)
    type Row = (char, i64, i64, u64, i64);

    fn key(e: &Ev) -> char {
        e.item.0
    }

    fn count_sum() -> AggregateFn<Agg> {
        AggregateFn((Count, Sum::of((|e: &(char, i64)| e.1) as fn(&_) -> i64)))
    }

    fn op(spec: WindowSpec, lateness: Timestamp) -> Harness<Ev, Result<Res, Ev>, Op> {
        Harness::new(WindowOperator::new(
            key as fn(&Ev) -> char,
            count_sum(),
            spec,
            Duration::from_millis(lateness as u64),
        ))
    }

    fn ev(k: char, time: Timestamp, v: i64) -> Ev {
        Timestamped::new(time, (k, v))
    }

    /// (key, start, end, count, sum) of the results; late events as (key, time).
    fn split(out: Vec<Result<Res, Ev>>) -> (Vec<Row>, Vec<(char, i64)>) {
        let mut results = Vec::new();
        let mut late = Vec::new();
        for r in out {
            match r {
                Ok(r) => results.push((r.key, r.window.start, r.window.end, r.value.0, r.value.1)),
                Err(e) => late.push((e.item.0, e.time)),
            }
        }
        results.sort();
        (results, late)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn tumbling_fires_when_the_watermark_reaches_the_end() {
        let mut h = op(Tumbling::of(secs(1)), 0);
        let out = h
            .push(vec![
                ev('a', 999, 1),
                ev('a', 1_000, 2),
                ev('b', 0, 3),
                ev('a', 500, 4),
            ])
            .unwrap();
        assert!(out.is_empty());
        assert!(h.watermark(999).unwrap().is_empty());
        let (fired, _) = split(h.watermark(1_000).unwrap());
        assert_eq!(fired, vec![('a', 0, 1_000, 2, 5), ('b', 0, 1_000, 1, 3)]);
        // The event at 1000 is in the window starting at 1000.
        let (fired, _) = split(h.close().unwrap());
        assert_eq!(fired, vec![('a', 1_000, 2_000, 1, 2)]);
        assert_eq!(h.forwarded_watermarks(), &[999, 1_000]);
    }

    #[test]
    fn late_events_update_within_lateness_and_go_to_the_late_output_beyond() {
        let mut h = op(Tumbling::of(secs(1)), 500);
        h.push(vec![ev('a', 100, 1)]).unwrap();
        let (fired, _) = split(h.watermark(1_200).unwrap());
        assert_eq!(fired, vec![('a', 0, 1_000, 1, 1)]);
        // Within lateness (window end 1000 + 500 > watermark 1200): updated result at once.
        let (updated, late) = split(h.push(vec![ev('a', 900, 10)]).unwrap());
        assert_eq!(updated, vec![('a', 0, 1_000, 2, 11)]);
        assert!(late.is_empty());
        // A late event for a window that had no state yet also fires at once.
        let (fresh, _) = split(h.push(vec![ev('b', 950, 7)]).unwrap());
        assert_eq!(fresh, vec![('b', 0, 1_000, 1, 7)]);
        // The watermark passes 1000 + 500: the window's state is gone, the event is late.
        assert!(h.watermark(1_500).unwrap().is_empty(), "no second firing");
        let (none, late) = split(h.push(vec![ev('a', 999, 1)]).unwrap());
        assert!(none.is_empty());
        assert_eq!(late, vec![('a', 999)]);
    }

    #[test]
    fn without_lateness_a_late_event_is_never_added() {
        let mut h = op(Tumbling::of(secs(1)), 0);
        h.push(vec![ev('a', 100, 1)]).unwrap();
        h.watermark(1_000).unwrap();
        let (results, late) = split(h.push(vec![ev('a', 999, 1), ev('a', 1_000, 1)]).unwrap());
        assert!(results.is_empty());
        assert_eq!(late, vec![('a', 999)], "1000 is in the next, open window");
        let (results, _) = split(h.close().unwrap());
        assert_eq!(results, vec![('a', 1_000, 2_000, 1, 1)]);
    }

    #[test]
    fn sliding_windows_put_one_event_in_several_windows() {
        let mut h = op(Sliding::of(secs(3), secs(1)), 0);
        h.push(vec![ev('a', 2_500, 1), ev('a', 500, 10)]).unwrap();
        let (fired, _) = split(h.watermark(2_000).unwrap());
        // Windows ending at 1000 and 2000 contain only the event at 500.
        assert_eq!(
            fired,
            vec![('a', -2_000, 1_000, 1, 10), ('a', -1_000, 2_000, 1, 10)]
        );
        let (fired, _) = split(h.close().unwrap());
        assert_eq!(
            fired,
            vec![
                ('a', 0, 3_000, 2, 11),
                ('a', 1_000, 4_000, 1, 1),
                ('a', 2_000, 5_000, 1, 1),
            ]
        );
    }

    #[test]
    fn sliding_late_events_update_every_fired_window_still_kept() {
        let mut h = op(Sliding::of(secs(2), secs(1)), 1_000);
        h.push(vec![ev('a', 1_500, 1)]).unwrap();
        let (fired, _) = split(h.watermark(3_000).unwrap());
        assert_eq!(
            fired,
            vec![('a', 0, 2_000, 1, 1), ('a', 1_000, 3_000, 1, 1)]
        );
        // 1200 is in [0,2000) (cleaned at 3000: kept until the watermark reaches 3000) and
        // [1000,3000) (kept until 4000).
        let (updated, late) = split(h.push(vec![ev('a', 1_200, 5)]).unwrap());
        assert_eq!(updated, vec![('a', 1_000, 3_000, 2, 6)]);
        assert!(late.is_empty());
        h.watermark(4_000).unwrap();
        let (_, late) = split(h.push(vec![ev('a', 1_999, 5)]).unwrap());
        assert_eq!(late, vec![('a', 1_999)]);
    }

    #[test]
    fn sessions_merge_when_a_late_event_bridges_them() {
        let mut h = op(Session::with_gap(Duration::from_millis(100)), 1_000);
        h.push(vec![ev('a', 0, 1), ev('a', 50, 2), ev('a', 250, 4)])
            .unwrap();
        let (fired, _) = split(h.watermark(500).unwrap());
        assert_eq!(fired, vec![('a', 0, 150, 2, 3), ('a', 250, 350, 1, 4)]);
        // 150 is at most 100 from both sessions' events: [0,150) + [150,250) + [250,350) merge.
        let (merged, late) = split(h.push(vec![ev('a', 150, 8)]).unwrap());
        assert_eq!(merged, vec![('a', 0, 350, 4, 15)]);
        assert!(late.is_empty());
        let (rest, _) = split(h.close().unwrap());
        assert!(rest.is_empty(), "the merged session fired once");
    }

    #[test]
    fn sessions_merge_before_firing_and_close_per_key() {
        let mut h = op(Session::with_gap(Duration::from_millis(100)), 0);
        h.push(vec![ev('a', 0, 1), ev('a', 180, 1), ev('b', 0, 1)])
            .unwrap();
        h.push(vec![ev('a', 90, 1)]).unwrap(); // bridges [0,100) and [180,280)
        let (fired, _) = split(h.watermark(200).unwrap());
        assert_eq!(fired, vec![('b', 0, 100, 1, 1)]);
        // A session fires when the watermark passes its end: an event at 280 would extend it.
        assert!(h.watermark(280).unwrap().is_empty());
        let (fired, _) = split(h.watermark(281).unwrap());
        assert_eq!(fired, vec![('a', 0, 280, 3, 3)]);
        let (_, late) = split(h.push(vec![ev('a', 170, 1)]).unwrap());
        assert_eq!(late, vec![('a', 170)]);
        assert!(h.close().unwrap().is_empty());
    }

    #[test]
    fn a_session_extended_after_its_first_firing_entry_fires_at_its_new_end() {
        let mut h = op(Session::with_gap(Duration::from_millis(100)), 0);
        h.push(vec![ev('a', 0, 1)]).unwrap();
        h.push(vec![ev('a', 90, 1)]).unwrap(); // now [0,190)
        assert!(h.watermark(100).unwrap().is_empty());
        assert!(h.watermark(190).unwrap().is_empty());
        let (fired, _) = split(h.watermark(191).unwrap());
        assert_eq!(fired, vec![('a', 0, 190, 2, 2)]);
    }

    /// Entries in a session operator's fire and cleanup queues, and the sessions it holds.
    fn session_queues(h: &mut Harness<Ev, Result<Res, Ev>, Op>) -> (usize, usize) {
        match &mut h.operator().layout {
            Layout::Sessions(s) => (s.queued(), s.open_sessions()),
            Layout::Panes(_) => unreachable!("a session window"),
        }
    }

    /// Issue 11, item 7: with two open sessions per key, every fire entry re-queued all of
    /// the key's unfired sessions, so the queue grew about x2.6 per event.
    #[test]
    fn the_session_fire_queue_holds_one_entry_per_session() {
        let mut h = op(Session::with_gap(secs(3)), 0);
        for i in 0..60 {
            let time = i * 10_000;
            h.push(vec![ev('a', time, 1)]).unwrap();
            let (fired, _) = split(h.watermark(time - 10_000).unwrap());
            if i >= 2 {
                assert_eq!(fired, vec![('a', time - 20_000, time - 17_000, 1, 1)]);
            }
            let (queued, sessions) = session_queues(&mut h);
            assert!(
                queued <= sessions,
                "after event {i}: {queued} queue entries for {sessions} sessions"
            );
        }
        let (rest, _) = split(h.close().unwrap());
        assert_eq!(rest.len(), 2);
        assert_eq!(session_queues(&mut h), (0, 0));
    }

    #[test]
    fn an_event_at_a_sessions_end_extends_it_until_the_watermark_passes_the_end() {
        let mut h = op(Session::with_gap(Duration::from_millis(100)), 0);
        h.push(vec![ev('a', 0, 1)]).unwrap();
        assert!(h.watermark(100).unwrap().is_empty());
        // On time (not below the watermark) and touching [0, 100): one session [0, 200).
        let (none, late) = split(h.push(vec![ev('a', 100, 1)]).unwrap());
        assert!(none.is_empty() && late.is_empty());
        let (fired, _) = split(h.watermark(201).unwrap());
        assert_eq!(fired, vec![('a', 0, 200, 2, 2)]);
    }

    /// Each key's events sorted by time, cut where the next is more than `gap` after the
    /// previous: (key, start, end, count, sum).
    fn brute_force_sessions(events: &[Ev], gap: i64) -> Vec<Row> {
        let mut sorted: Vec<(char, i64, i64)> = events
            .iter()
            .map(|e| (e.item.0, e.time, e.item.1))
            .collect();
        sorted.sort();
        let mut rows: Vec<Row> = Vec::new();
        for (k, t, v) in sorted {
            match rows.last_mut() {
                Some(row) if row.0 == k && t <= row.2 => {
                    row.2 = row.2.max(t + gap);
                    row.3 += 1;
                    row.4 += v;
                }
                _ => rows.push((k, t, t + gap, 1, v)),
            }
        }
        rows.sort();
        rows
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// Random events (out of order by at most the watermark delay), gaps and batches: the
        /// sessions of a brute-force model, and exactly one queue entry per open session after
        /// every batch and watermark.
        #[test]
        fn sessions_match_a_brute_force_model_with_one_queue_entry_per_session(
            raw in proptest::collection::vec((0u8..3, 0i64..10, 0i64..400, 0i64..1_000), 1..300),
            gap in 1i64..300,
            delay in 0i64..1_000,
            batch in 1usize..40,
        ) {
            let mut clock = 0;
            let events: Vec<Ev> = raw
                .into_iter()
                .map(|(k, v, step, lag)| {
                    clock += step;
                    ev((b'a' + k) as char, clock - lag.min(delay), v)
                })
                .collect();
            let mut h = op(Session::with_gap(Duration::from_millis(gap as u64)), 0);
            let (mut results, mut late) = (Vec::new(), Vec::new());
            let mut newest = i64::MIN;
            for chunk in events.chunks(batch) {
                newest = chunk.iter().map(|e| e.time).fold(newest, i64::max);
                let (r, l) = split(h.push(chunk.to_vec()).unwrap());
                results.extend(r);
                late.extend(l);
                let (queued, sessions) = session_queues(&mut h);
                proptest::prop_assert_eq!(queued, sessions);
                let (r, l) = split(h.watermark(newest - delay).unwrap());
                results.extend(r);
                late.extend(l);
                let (queued, sessions) = session_queues(&mut h);
                proptest::prop_assert_eq!(queued, sessions);
            }
            let (r, _) = split(h.close().unwrap());
            results.extend(r);
            results.sort();
            proptest::prop_assert!(late.is_empty());
            proptest::prop_assert_eq!(session_queues(&mut h), (0, 0));
            proptest::prop_assert_eq!(results, brute_force_sessions(&events, gap));
        }
    }

    /// Issue 11, item 8: firing listed every window of every pane before deduplicating (panes
    /// x size/slide entries); now it keeps one interval per pane.
    #[test]
    fn firing_sliding_windows_keeps_one_interval_per_pane() {
        let mut h = op(Sliding::of(secs(10), Duration::from_millis(1)), 0);
        let events: Vec<Ev> = (0..500).map(|t| ev('a', t * 3, 1)).collect();
        h.push(events).unwrap();
        let (fired, _) = split(h.close().unwrap());
        // Windows [s, s + 10000) for s in (-10000, 1497]: every one holds an event.
        assert_eq!(fired.len(), 11_497);
        assert_eq!(fired[0], ('a', -9_999, 1, 1, 1));
        assert_eq!(fired.iter().map(|r| r.3).max(), Some(500));
        match &h.operator().layout {
            Layout::Panes(p) => assert!(p.ends.capacity() <= 500, "{}", p.ends.capacity()),
            Layout::Sessions(_) => unreachable!(),
        }
    }

    #[test]
    fn windows_per_event_are_limited() {
        let day = secs(86_400);
        assert_eq!(
            Sliding::of(day, Duration::from_millis(1)).windows_per_event(),
            86_400_000
        );
        assert!(Sliding::of(day, Duration::from_millis(1)).check().is_err());
        assert!(
            Sliding::of(secs(10), Duration::from_millis(1))
                .check()
                .is_ok()
        );
        assert!(
            Sliding::of(secs(10), Duration::from_millis(3))
                .check()
                .is_ok()
        );
        assert!(Tumbling::of(day).check().is_ok());
    }

    proptest::proptest! {
        /// Tumbling and sliding windows against a model that puts each event in each of its
        /// windows; watermarks after every batch.
        #[test]
        fn sliding_windows_match_a_brute_force_model(
            raw in proptest::collection::vec((0u8..3, 0i64..10, 0i64..50, 0i64..300), 1..200),
            size in 1i64..400,
            slide_divisor in 1i64..20,
            delay in 0i64..300,
            batch in 1usize..30,
        ) {
            let slide = (size / slide_divisor).max(1);
            let mut clock = 0;
            let events: Vec<Ev> = raw
                .into_iter()
                .map(|(k, v, step, lag)| {
                    clock += step;
                    ev((b'a' + k) as char, clock - lag.min(delay), v)
                })
                .collect();
            let mut expected: BTreeMap<(char, i64), (u64, i64)> = BTreeMap::new();
            for e in &events {
                let mut start = floor_to(e.time, slide);
                while start > e.time - size {
                    let acc = expected.entry((e.item.0, start)).or_default();
                    acc.0 += 1;
                    acc.1 += e.item.1;
                    start -= slide;
                }
            }
            let expected: Vec<Row> = expected
                .into_iter()
                .map(|((k, start), (n, sum))| (k, start, start + size, n, sum))
                .collect();
            let spec = Sliding::of(
                Duration::from_millis(size as u64),
                Duration::from_millis(slide as u64),
            );
            let mut h = op(spec, 0);
            let mut results = Vec::new();
            let mut newest = i64::MIN;
            for chunk in events.chunks(batch) {
                newest = chunk.iter().map(|e| e.time).fold(newest, i64::max);
                let (r, l) = split(h.push(chunk.to_vec()).unwrap());
                proptest::prop_assert!(l.is_empty());
                results.extend(r);
                results.extend(split(h.watermark(newest - delay).unwrap()).0);
            }
            results.extend(split(h.close().unwrap()).0);
            results.sort();
            proptest::prop_assert_eq!(results, expected);
        }
    }

    #[test]
    fn process_windows_see_every_element() {
        let f = |k: &char, w: Window, els: &[Ev], out: &mut Vec<String>| {
            out.push(format!("{k}@{}:{}", w.start, els.len()));
        };
        let mut h: Harness<Ev, Result<String, Ev>, _> =
            Harness::new(WindowOperator::<_, Ev, _, _, InMemory>::new(
                key as fn(&Ev) -> char,
                ProcessFn {
                    f,
                    scratch: Vec::new(),
                },
                Sliding::of(secs(2), secs(1)),
                Duration::ZERO,
            ));
        h.push(vec![ev('a', 1_500, 1), ev('a', 1_600, 1)]).unwrap();
        let mut out: Vec<String> = h.close().unwrap().into_iter().flatten().collect();
        out.sort();
        assert_eq!(out, vec!["a@0:2", "a@1000:2"]);
    }
}
