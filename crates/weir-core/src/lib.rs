//! Weir's dataflow runtime.
//!
//! Owns the typed stream API ([`Environment`], [`Stream`], [`KeyedStream`]), the operator seams
//! ([`Operator`], [`Source`], [`Sink`]), and the runtime that plans a dataflow into tasks:
//! consecutive forward operators fused into one chain, bounded channels with a buffer policy
//! on every exchange, micro-batches between tasks, and a message protocol that carries data,
//! watermarks, checkpoint barriers and end of stream.
//!
//! It reads and writes nothing outside the process: the connectors (files, standard input and
//! output, the generator, Redis, ClickHouse, HTTP) are in weir-connectors, whose `SourceExt`
//! and `SinkExt` add `env.read_file(..)`, `env.generate(..)`, `stream.print()` and the like to
//! this API. Only in-process sources and sinks live here (`from_iter`, `collect`, `count`,
//! `for_each`).
//!
//! ```
//! use weir_core::Environment;
//!
//! let env = Environment::local();
//! let evens = env
//!     .from_iter(1..=10)
//!     .filter(|x| x % 2 == 0)
//!     .map(|x| x * 10)
//!     .collect();
//! env.execute().unwrap();
//! assert_eq!(evens.take(), vec![20, 40, 60, 80, 100]);
//! ```

mod chain;
mod channel;
mod checkpoint;
mod error;
mod graph;
mod harness;
mod message;
mod metrics;
mod operator;
mod ops;
mod runtime;
mod sinks;
mod sources;
pub mod state;
mod stream;
mod task;

pub use chain::{KEY_GROUPS, instance_of_group, key_group};
pub use channel::BufferPolicy;
pub use checkpoint::{
    Checkpointing, MemoryCheckpoint, MemoryCheckpoints, RestoredState, SnapshotError,
    SnapshotStore, SnapshotWriter, StatePart,
};
pub use error::{ErrorKind, JobError, OperatorError};
pub use harness::Harness;
pub use message::{
    BEFORE_TIME, Barrier, CheckpointId, Clock, END_OF_TIME, Ending, ManualClock, SystemClock,
    Timestamp,
};
pub use metrics::{
    CHECKPOINT_BUCKETS, CheckpointMetrics, InstanceMetrics, JobMetrics, LATENCY_BUCKETS,
    LatencyMetrics, OperatorHandle, OperatorMetrics, PolicyMetrics, PolicyReport,
};
pub use operator::{Operator, OperatorContext, Sink, Source, SourceStatus};
pub use ops::Failure;
pub use runtime::{Config, JobResult, RunningJob};
pub use stream::{Collected, Counted, Data, Environment, KeyedStream, SinkHandle, Stream};
