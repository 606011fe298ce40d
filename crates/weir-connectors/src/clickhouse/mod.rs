//! ClickHouse over its HTTP interface: a small client, the exactly-once batch inserter, and how
//! a schema maps to a table (DDL, rows, quoting).

mod client;
mod exactly_once;
mod options;
mod sink;
mod table;

pub use client::{ClickHouseClient, ClickHouseConfig, ServerVersion};
pub use exactly_once::{
    BATCH_COLUMN, BatchBuilder, BatchId, CommitMode, CommitReport, DEFAULT_MAX_BLOCK_ROWS,
    ExactlyOnceInserter, InsertBatch,
};
pub use options::ClickHouseSinkOptions;
pub use sink::{ClickHouseSink, ClickHouseSinkConfig};
pub use table::{
    ClickHouseFeatures, clickhouse_ddl, clickhouse_migration, clickhouse_row_json,
    quote_identifier, quote_string, quote_table, write_clickhouse_row,
};

/// Connectivity check: runs `SELECT 1` (with the configured user and password), within 5 s.
pub async fn check(mut config: ClickHouseConfig) -> Result<(), crate::ConnectorError> {
    config.timeout = std::time::Duration::from_secs(5);
    let client = ClickHouseClient::new(config)?;
    client.execute("SELECT 1").await
}
