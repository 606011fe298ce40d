//! Event-time values: records with their timestamp, windows, and the two-sided tag of joins.

use serde::{Deserialize, Serialize};
use std::ops::{Deref, DerefMut};
use std::time::Duration;
use weir_core::Timestamp;

/// A record with its event time.
///
/// Derefs to the record, so key functions and filters read its fields directly
/// (`|e| e.user`). The wrapper's own fields are `time` and `item`; a record field with one of
/// those names is reached through `e.item.time`.
///
/// ```
/// use weir_time::Timestamped;
///
/// struct Click { user: &'static str }
/// let e = Timestamped::new(1_000, Click { user: "ann" });
/// assert_eq!(e.user, "ann");
/// assert_eq!(e.time, 1_000);
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Timestamped<T> {
    /// Event time, in milliseconds since the Unix epoch.
    pub time: Timestamp,
    pub item: T,
}

impl<T> Timestamped<T> {
    pub fn new(time: Timestamp, item: T) -> Self {
        Timestamped { time, item }
    }

    /// The record, without its timestamp.
    pub fn into_item(self) -> T {
        self.item
    }

    /// Transforms the record and keeps the timestamp.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Timestamped<U> {
        Timestamped {
            time: self.time,
            item: f(self.item),
        }
    }
}

impl<T> Deref for Timestamped<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.item
    }
}

impl<T> DerefMut for Timestamped<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.item
    }
}

/// A window of event time: `[start, end)`, milliseconds since the epoch. An event exactly at
/// `end` belongs to the next window.
///
/// ```
/// use weir_time::Window;
///
/// let w = Window { start: 0, end: 1_000 };
/// assert!(w.contains(0) && w.contains(999) && !w.contains(1_000));
/// assert_eq!(w.max_timestamp(), 999);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window {
    pub fn contains(&self, time: Timestamp) -> bool {
        self.start <= time && time < self.end
    }

    /// The last instant inside the window: a natural event time for the window's result.
    pub fn max_timestamp(&self) -> Timestamp {
        self.end.saturating_sub(1)
    }
}

/// One of two sides: the tag joins put on their inputs before merging them into one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Either<L, R> {
    Left(L),
    Right(R),
}

/// Things that carry an event time (the inputs of window and join operators).
pub(crate) trait HasTime {
    fn time(&self) -> Timestamp;
}

impl<T> HasTime for Timestamped<T> {
    #[inline]
    fn time(&self) -> Timestamp {
        self.time
    }
}

impl<L, R> HasTime for Either<Timestamped<L>, Timestamped<R>> {
    #[inline]
    fn time(&self) -> Timestamp {
        match self {
            Either::Left(l) => l.time,
            Either::Right(r) => r.time,
        }
    }
}

/// A duration in whole milliseconds (saturating).
pub(crate) fn millis(d: Duration) -> Timestamp {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The largest multiple of `step` that is `<= t` (saturating at the smallest timestamp).
#[inline]
pub(crate) fn floor_to(t: Timestamp, step: Timestamp) -> Timestamp {
    t.saturating_sub(t.rem_euclid(step))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_to_rounds_toward_minus_infinity() {
        assert_eq!(floor_to(1_999, 1_000), 1_000);
        assert_eq!(floor_to(2_000, 1_000), 2_000);
        assert_eq!(floor_to(-1, 1_000), -1_000);
        assert_eq!(floor_to(i64::MIN, 1_000), i64::MIN);
    }

    #[test]
    fn either_reports_the_time_of_its_side() {
        let l: Either<Timestamped<u8>, Timestamped<u8>> = Either::Left(Timestamped::new(5, 1));
        let r: Either<Timestamped<u8>, Timestamped<u8>> = Either::Right(Timestamped::new(7, 1));
        assert_eq!((l.time(), r.time()), (5, 7));
    }
}
