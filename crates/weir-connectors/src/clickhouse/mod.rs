//! ClickHouse over its HTTP interface: a small client and the exactly-once batch inserter.

mod client;
mod exactly_once;
mod sink;

pub use client::{ClickHouseClient, ClickHouseConfig, ServerVersion};
pub use exactly_once::{
    BATCH_COLUMN, BatchBuilder, BatchId, CommitMode, CommitReport, DEFAULT_MAX_BLOCK_ROWS,
    ExactlyOnceInserter, InsertBatch,
};
pub use sink::{ClickHouseSink, ClickHouseSinkConfig};
