//! Timestamps and watermarks: the operators that give records their event time and tell the
//! rest of the dataflow how far event time has progressed.

use crate::time::{Timestamped, millis};
use std::time::Duration;
use weir_core::{
    BEFORE_TIME, Data, END_OF_TIME, Operator, OperatorContext, OperatorError, Stream, Timestamp,
};

/// How a stream's watermarks are made from its timestamps.
///
/// After every batch the watermark is the largest timestamp seen so far minus the allowed
/// out-of-orderness (`bounded`): an event up to that much older than the newest one is still
/// on time. With `idle_after`, an instance that has seen no record for that long (processing
/// time, checked on every tick) declares itself idle, and downstream operators leave it out of
/// their minimum watermark until it sends again — so one quiet partition does not hold back
/// every window. Watermarks arriving from upstream are not forwarded (this stream's timestamps
/// replace them), except the end of time when the input ends.
///
/// ```
/// use std::time::Duration;
/// use weir_time::Watermarks;
///
/// let w = Watermarks::bounded(Duration::from_millis(100)).idle_after(Duration::from_secs(5));
/// assert_eq!(w.max_out_of_orderness(), Duration::from_millis(100));
/// assert_eq!(w.idle_timeout(), Some(Duration::from_secs(5)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermarks {
    delay: Timestamp,
    idle_after: Option<Timestamp>,
}

impl Watermarks {
    /// Watermark = largest timestamp seen − `max_out_of_orderness`.
    pub fn bounded(max_out_of_orderness: Duration) -> Self {
        Watermarks {
            delay: millis(max_out_of_orderness),
            idle_after: None,
        }
    }

    /// For timestamps that never decrease: the watermark is the largest timestamp seen.
    pub fn ascending() -> Self {
        Self::bounded(Duration::ZERO)
    }

    /// Declares an instance idle after `timeout` of processing time without records.
    pub fn idle_after(mut self, timeout: Duration) -> Self {
        self.idle_after = Some(millis(timeout).max(1));
        self
    }

    pub fn max_out_of_orderness(&self) -> Duration {
        Duration::from_millis(self.delay as u64)
    }

    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_after.map(|t| Duration::from_millis(t as u64))
    }
}

/// The watermark bookkeeping shared by both operators below.
#[derive(Debug)]
struct Tracker {
    watermarks: Watermarks,
    max_seen: Timestamp,
    /// Processing time of the last batch (or of the first tick).
    last_active: Option<Timestamp>,
    idle: bool,
}

impl Tracker {
    fn new(watermarks: Watermarks) -> Self {
        Tracker {
            watermarks,
            max_seen: BEFORE_TIME,
            last_active: None,
            idle: false,
        }
    }

    #[inline]
    fn observed(&mut self, batch_max: Timestamp, ctx: &mut OperatorContext) {
        if batch_max > self.max_seen {
            self.max_seen = batch_max;
        }
        if self.max_seen > BEFORE_TIME {
            ctx.emit_watermark(self.max_seen.saturating_sub(self.watermarks.delay));
        }
        if self.watermarks.idle_after.is_some() {
            self.last_active = Some(ctx.processing_time());
            self.idle = false;
        }
    }

    /// The largest timestamp seen is the assigner's state: restored, it resumes the watermark
    /// where the checkpoint left it.
    fn restore(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        if let Some(max) = weir_core::state::restore_value::<Timestamp>(ctx, "max_seen")? {
            self.max_seen = max;
        }
        Ok(())
    }

    fn save(&self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        weir_core::state::save_value(ctx, "max_seen", &self.max_seen)
    }

    fn tick(&mut self, ctx: &mut OperatorContext) {
        let Some(timeout) = self.watermarks.idle_after else {
            return;
        };
        let now = ctx.processing_time();
        let last = *self.last_active.get_or_insert(now);
        if !self.idle && now.saturating_sub(last) >= timeout {
            self.idle = true;
            ctx.emit_idle();
        }
    }
}

/// Only the end of time passes from upstream: this operator's timestamps define event time.
fn forward_only_end(watermark: Timestamp) -> Option<Timestamp> {
    (watermark == END_OF_TIME).then_some(END_OF_TIME)
}

/// The hooks both event-time operators delegate to their [`Tracker`]: its state in
/// checkpoints, only the end of time passing from upstream, idleness on ticks.
macro_rules! tracker_hooks {
    () => {
        fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
            self.tracker.restore(ctx)
        }

        fn snapshot(
            &mut self,
            _: weir_core::CheckpointId,
            ctx: &mut OperatorContext,
        ) -> Result<(), OperatorError> {
            self.tracker.save(ctx)
        }

        fn on_watermark(
            &mut self,
            watermark: Timestamp,
            _: &mut Vec<Timestamped<T>>,
            _: &mut OperatorContext,
        ) -> Result<Option<Timestamp>, OperatorError> {
            Ok(forward_only_end(watermark))
        }

        fn on_tick(
            &mut self,
            _: &mut Vec<Timestamped<T>>,
            ctx: &mut OperatorContext,
        ) -> Result<(), OperatorError> {
            self.tracker.tick(ctx);
            Ok(())
        }
    };
}

/// Gives every record its timestamp and emits watermarks; see [`EventTimeExt::assign_timestamps`].
pub struct AssignTimestamps<F> {
    time_of: F,
    tracker: Tracker,
}

impl<F> AssignTimestamps<F> {
    pub fn new(time_of: F, watermarks: Watermarks) -> Self {
        AssignTimestamps {
            time_of,
            tracker: Tracker::new(watermarks),
        }
    }
}

impl<T, F> Operator<T, Timestamped<T>> for AssignTimestamps<F>
where
    T: Send + 'static,
    F: Fn(&T) -> Timestamp + Send + 'static,
{
    tracker_hooks!();

    #[inline]
    fn process(
        &mut self,
        input: &mut Vec<T>,
        out: &mut Vec<Timestamped<T>>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        if input.is_empty() {
            return Ok(());
        }
        let mut max = BEFORE_TIME;
        let time_of = &self.time_of;
        out.extend(input.drain(..).map(|item| {
            let time = time_of(&item);
            max = max.max(time);
            Timestamped { time, item }
        }));
        self.tracker.observed(max, ctx);
        Ok(())
    }
}

/// Emits watermarks for records that already carry their timestamp; see
/// [`WatermarkExt::with_watermarks`].
pub struct GenerateWatermarks {
    tracker: Tracker,
}

impl GenerateWatermarks {
    pub fn new(watermarks: Watermarks) -> Self {
        GenerateWatermarks {
            tracker: Tracker::new(watermarks),
        }
    }
}

impl<T: Send + 'static> Operator<Timestamped<T>, Timestamped<T>> for GenerateWatermarks {
    tracker_hooks!();

    #[inline]
    fn process(
        &mut self,
        input: &mut Vec<Timestamped<T>>,
        out: &mut Vec<Timestamped<T>>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let Some(max) = input.iter().map(|e| e.time).max() else {
            return Ok(());
        };
        if out.is_empty() {
            std::mem::swap(input, out);
        } else {
            out.append(input);
        }
        self.tracker.observed(max, ctx);
        Ok(())
    }
}

/// Event time for any stream.
pub trait EventTimeExt<T: Data> {
    /// Timestamps every record with `time_of` (milliseconds since the epoch) and emits
    /// watermarks as `watermarks` says. Runs in the same task as the operator before it (no
    /// channel), once per parallel instance.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_core::Environment;
    /// use weir_time::prelude::*;
    ///
    /// let env = Environment::local();
    /// let timed = env
    ///     .from_iter(vec![(1, 500), (2, 100)])
    ///     .assign_timestamps(|e| e.1, Watermarks::bounded(Duration::from_millis(50)))
    ///     .collect();
    /// env.execute().unwrap();
    /// let times: Vec<_> = timed.take().iter().map(|e| (e.time, e.0)).collect();
    /// assert_eq!(times, vec![(500, 1), (100, 2)]);
    /// ```
    fn assign_timestamps<F>(&self, time_of: F, watermarks: Watermarks) -> Stream<Timestamped<T>>
    where
        F: Fn(&T) -> Timestamp + Clone + Send + 'static;
}

impl<T: Data> EventTimeExt<T> for Stream<T> {
    fn assign_timestamps<F>(&self, time_of: F, watermarks: Watermarks) -> Stream<Timestamped<T>>
    where
        F: Fn(&T) -> Timestamp + Clone + Send + 'static,
    {
        self.transform("assign_timestamps", move || {
            AssignTimestamps::new(time_of.clone(), watermarks)
        })
    }
}

/// Watermarks for streams whose records already carry their timestamp.
pub trait WatermarkExt<T: Data> {
    /// Emits watermarks from the records' timestamps (e.g. after a step that computed them and
    /// routed records without a valid time elsewhere).
    ///
    /// ```
    /// use weir_core::Environment;
    /// use weir_time::prelude::*;
    ///
    /// let env = Environment::local();
    /// let timed = env
    ///     .from_iter(vec![Timestamped::new(10, 'a')])
    ///     .with_watermarks(Watermarks::ascending())
    ///     .collect();
    /// env.execute().unwrap();
    /// assert_eq!(timed.take(), vec![Timestamped::new(10, 'a')]);
    /// ```
    fn with_watermarks(&self, watermarks: Watermarks) -> Stream<Timestamped<T>>;
}

impl<T: Data> WatermarkExt<T> for Stream<Timestamped<T>> {
    fn with_watermarks(&self, watermarks: Watermarks) -> Stream<Timestamped<T>> {
        self.transform("watermarks", move || GenerateWatermarks::new(watermarks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use weir_core::{Harness, ManualClock};

    #[test]
    fn watermark_is_the_max_seen_minus_the_delay_after_each_batch() {
        let mut h = Harness::new(AssignTimestamps::new(
            |e: &i64| *e,
            Watermarks::bounded(Duration::from_millis(100)),
        ));
        let out = h.push(vec![500, 300, 700]).unwrap();
        assert_eq!(
            out.iter().map(|e| e.time).collect::<Vec<_>>(),
            vec![500, 300, 700]
        );
        assert_eq!(h.forwarded_watermarks(), &[600]);
        // An older batch does not move the watermark back.
        h.push(vec![100]).unwrap();
        h.push(vec![900]).unwrap();
        assert_eq!(h.forwarded_watermarks(), &[600, 800]);
    }

    #[test]
    fn upstream_watermarks_are_replaced_except_the_end_of_time() {
        let mut h = Harness::new(AssignTimestamps::new(|e: &i64| *e, Watermarks::ascending()));
        h.push(vec![10]).unwrap();
        h.watermark(5_000).unwrap();
        assert_eq!(h.forwarded_watermarks(), &[10]);
        h.watermark(END_OF_TIME).unwrap();
        assert_eq!(h.forwarded_watermarks(), &[10, END_OF_TIME]);
    }

    #[test]
    fn an_instance_without_records_declares_itself_idle_after_the_timeout() {
        let clock = Arc::new(ManualClock::new(1_000));
        let mut h = Harness::with_clock(
            AssignTimestamps::new(
                |e: &i64| *e,
                Watermarks::ascending().idle_after(Duration::from_secs(5)),
            ),
            clock.clone(),
        );
        h.push(vec![1]).unwrap();
        clock.advance(4_999);
        h.tick().unwrap();
        assert_eq!(h.idle_signals(), 0);
        clock.advance(1);
        h.tick().unwrap();
        h.tick().unwrap();
        assert_eq!(h.idle_signals(), 1, "idle is declared once");
        // Records make it active again; the next quiet period declares it idle again.
        h.push(vec![2]).unwrap();
        clock.advance(5_000);
        h.tick().unwrap();
        assert_eq!(h.idle_signals(), 2);
    }

    #[test]
    fn without_a_timeout_an_instance_never_declares_itself_idle() {
        let clock = Arc::new(ManualClock::new(0));
        let mut h = Harness::with_clock(
            AssignTimestamps::new(|e: &i64| *e, Watermarks::ascending()),
            clock.clone(),
        );
        clock.advance(1_000_000);
        h.tick().unwrap();
        assert_eq!(h.idle_signals(), 0);
    }

    #[test]
    fn generate_watermarks_passes_records_through() {
        let mut h = Harness::new(GenerateWatermarks::new(Watermarks::bounded(
            Duration::from_millis(10),
        )));
        let out = h
            .push(vec![Timestamped::new(50, 'a'), Timestamped::new(40, 'b')])
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(h.forwarded_watermarks(), &[40]);
    }
}
