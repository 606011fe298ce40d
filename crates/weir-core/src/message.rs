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
    Data(Vec<T>),
    Watermark(Timestamp),
    Barrier(Barrier),
    /// The sending instance has no more messages.
    End,
}

impl<T> Message<T> {
    /// Records carried (control messages carry none).
    pub fn len(&self) -> usize {
        match self {
            Message::Data(batch) => batch.len(),
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
