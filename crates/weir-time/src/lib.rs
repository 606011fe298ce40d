//! Weir's event time.
//!
//! Owns everything that depends on *when* events happened rather than when they arrived:
//! timestamps and watermarks ([`Watermarks`], with bounded out-of-orderness and an idle-source
//! timeout), windows (tumbling, sliding, session; incremental [`Aggregator`]s and full-window
//! functions; allowed lateness and a late-data side output), keyed state types with TTL
//! ([`ValueState`], [`MapState`], [`ListState`]) over `weir-state`'s `KeyedStore`, keyed
//! process functions with event-time and processing-time timers, and joins (window join,
//! interval join, enrichment against a table or against the latest value of a keyed stream).
//!
//! Everything is built on `weir-core`'s public operator API and offered as extension traits:
//!
//! ```
//! use std::time::Duration;
//! use weir_core::Environment;
//! use weir_time::prelude::*;
//!
//! let env = Environment::local();
//! // (user, event time in ms)
//! let clicks = env.from_iter(vec![("ann", 100), ("bob", 200), ("ann", 900), ("ann", 1_000)]);
//! let out = clicks
//!     .assign_timestamps(|c| c.1, Watermarks::bounded(Duration::from_millis(100)))
//!     .key_by(|c| c.0.to_string())
//!     .window(Tumbling::of(Duration::from_secs(1)))
//!     .aggregate(Count);
//! let results = out.results.collect();
//! env.execute().unwrap();
//! let mut counts: Vec<_> = results
//!     .take()
//!     .into_iter()
//!     .map(|r| (r.key, r.window.start, r.value))
//!     .collect();
//! counts.sort();
//! // 1000 is the first instant of the second window: windows include their start.
//! assert_eq!(
//!     counts,
//!     vec![("ann".into(), 0, 2), ("ann".into(), 1000, 1), ("bob".into(), 0, 1)]
//! );
//! ```
//!
//! # Event time and watermarks
//! A [`Timestamp`] is milliseconds since the Unix epoch. A watermark `W` says that every event
//! with a timestamp *below* `W` has arrived: an event with `time < W` is late. A window
//! `[start, end)` closes (emits its result) when the watermark reaches `end`; an event-time timer
//! set for `t` fires when the watermark reaches `t`. At the end of the input the watermark
//! becomes [`END_OF_TIME`], which closes every window and fires every event-time timer.

mod aggregate;
mod error;
mod join;
mod process;
mod state;
mod time;
mod watermark;
mod window;

pub use aggregate::{Aggregator, Avg, Count, Max, Min, Number, Reduce, Sum};
pub use error::TimeError;
pub use join::{JoinKind, JoinOutput, Table, Tagged};
pub use process::{KeyedContext, KeyedProcessFunction, Timer};
pub use state::{
    Backend, CheckpointedStore, FixedTime, InMemory, JobBackend, ListState, MapState, StateTime,
    TimeDomain, Ttl, ValueState,
};
pub use time::{Either, Timestamped, Window};
pub use watermark::{AssignTimestamps, GenerateWatermarks, Watermarks};
pub use weir_core::{BEFORE_TIME, END_OF_TIME, Timestamp};
pub use window::{
    MAX_WINDOWS_PER_EVENT, Session, Sliding, Tumbling, WindowOutput, WindowResult, WindowSpec,
    WindowedStream,
};

/// The extension traits and the types most pipelines need: `use weir_time::prelude::*`.
pub mod prelude {
    pub use crate::join::{EnrichExt, KeyedJoinExt};
    pub use crate::process::KeyedProcessExt;
    pub use crate::watermark::{EventTimeExt, WatermarkExt};
    pub use crate::window::KeyedWindowExt;
    pub use crate::{
        Aggregator, Avg, CheckpointedStore, Count, Either, JoinKind, KeyedContext,
        KeyedProcessFunction, Max, Min, Reduce, Session, Sliding, Sum, Table, Timer, Timestamp,
        Timestamped, Ttl, Tumbling, Watermarks, Window, WindowResult,
    };
}
