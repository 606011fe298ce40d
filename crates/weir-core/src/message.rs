//! The protocol between tasks: data batches, watermarks, checkpoint barriers and end of stream.

/// Event time, in milliseconds since the Unix epoch.
pub type Timestamp = i64;

/// The watermark that closes everything: sent when an input ends.
pub const END_OF_TIME: Timestamp = i64::MAX;

/// Before any watermark has been seen.
pub const BEFORE_TIME: Timestamp = i64::MIN;

/// Identifies one checkpoint; strictly increasing within a job.
pub type CheckpointId = u64;

/// A checkpoint barrier: flows with the data; every record before it belongs to the
/// checkpoint, every record after it to the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Barrier {
    pub checkpoint: CheckpointId,
}

/// What travels on an edge between two tasks.
#[derive(Debug)]
pub enum Message<T> {
    /// A batch, and when its oldest record entered the pipeline (wall clock, milliseconds
    /// since the epoch; see [`batch_ingest`]): what end-to-end latency is measured from.
    Data(Vec<T>, Timestamp),
    Watermark(Timestamp),
    /// The sender has no data for now: leave it out of the minimum watermark until it sends
    /// again, so one quiet partition does not stall event time.
    Idle,
    Barrier(Barrier),
    /// The sending instance has no more messages; how its stream ended.
    End(Ending),
}

/// How a stream ends: the two ways a run can end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The input was read to its end (a bounded source), or the run was asked to drain: event
    /// time went to the end first, so every window, timer and buffer has fired.
    Drained,
    /// The run stopped reading (a stop request, `stop_after_idle`, a limit): event time stays
    /// where it was, and open windows, timers and buffers stay in the final checkpoint for a
    /// resumed run. Operators are not closed (nothing is emitted after the final checkpoint).
    Stopped,
}

impl Ending {
    /// The ending of a stream fed by several inputs: stopped if any of them stopped.
    pub fn and(self, other: Ending) -> Ending {
        if self == Ending::Stopped || other == Ending::Stopped {
            Ending::Stopped
        } else {
            Ending::Drained
        }
    }
}

impl<T> Message<T> {
    /// Records carried (control messages carry none).
    pub fn len(&self) -> usize {
        match self {
            Message::Data(batch, _) => batch.len(),
            _ => 0,
        }
    }
}

thread_local! {
    /// The ingest time of the batch this thread is pushing through its chain.
    static BATCH_INGEST: std::cell::Cell<Timestamp> = const { std::cell::Cell::new(BEFORE_TIME) };
}

/// Sets the ingest time of the batch this thread pushes next: when its oldest record arrived
/// at the source. A task sets it once per batch (a source task from its source, an inbox task
/// from the message), so operators fused in the chain need not carry it; an exchange puts it
/// on the message it sends, and sinks read it to measure end-to-end latency.
#[inline]
pub(crate) fn set_batch_ingest(ingest: Timestamp) {
    BATCH_INGEST.with(|c| c.set(ingest));
}

/// The ingest time of the batch this thread is pushing (`BEFORE_TIME`: unknown).
#[inline]
pub(crate) fn batch_ingest() -> Timestamp {
    BATCH_INGEST.with(|c| c.get())
}

/// The wall clock in milliseconds since the epoch (ingest times; not the job's clock, which a
/// test may drive by hand).
#[inline]
pub(crate) fn wall_ms() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Timestamp)
}

/// Processing time, as milliseconds since the Unix epoch. Injectable so that processing-time
/// behaviour (timers, timeouts, idleness) can be tested without waiting.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> Timestamp;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Timestamp {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Timestamp)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn new(start_ms: Timestamp) -> Self {
        ManualClock(std::sync::atomic::AtomicI64::new(start_ms))
    }

    pub fn advance(&self, ms: Timestamp) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn set(&self, ms: Timestamp) {
        self.0.store(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Timestamp {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}
