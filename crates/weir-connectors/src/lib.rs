//! Weir's connectors: every way data enters or leaves a job. Files (JSON lines and CSV, read
//! once, followed, by directory or glob, split by byte ranges; [`file`]), standard input and
//! output ([`stdin`], [`stdout`]) and the generator ([`generator`]) as runtime sources and
//! sinks, added to weir-core's typed API by [`SourceExt`] and [`SinkExt`]; and at the client
//! level: reading Redis Streams through consumer groups,
//! writing them (idempotently, for exactly-once), inserting into ClickHouse over HTTP,
//! exactly once per checkpoint, and calling HTTP services ([`http`]: per-record enrichment and
//! a webhook sink, under a resilience policy).
//!
//! The runtime wraps these building blocks as sources and sinks; this crate owns the wire
//! protocol, the decoding of entries into [`weir_types::Record`]s, error classification
//! ([`ConnectorError::is_retryable`], [`ConnectorError::fault`]) and the two exactly-once
//! schemes:
//!
//! - Redis: [`RedisStreamWriter::write_idempotent`] writes explicit, strictly increasing ids
//!   derived from `(epoch, sequence)` and skips those the stream already has.
//! - ClickHouse: [`ExactlyOnceInserter`] inserts each checkpoint batch as one atomic block
//!   tagged with a deterministic batch id, and skips present batches on recovery.
//!
//! The ClickHouse connector also owns how a schema maps to a table: [`clickhouse_ddl`] and
//! [`clickhouse_migration`] (adapted to the server's version, [`ClickHouseFeatures`]), the
//! JSONEachRow rows ([`clickhouse_row_json`], [`write_clickhouse_row`]) and the SQL quoting.
//!
//! TLS ([`tls`]): `rediss://` and `https://` URLs with rustls (ring), verified against the
//! system's roots or the CA file of a `ca_file` option; verification is never turned off.
//!
//! It also owns every connector's YAML configuration, one folder per connector (`file`,
//! `stdin`, `generator`, `stdout` (with `discard`), `redis_streams`, `clickhouse`, `http`):
//! the typed options struct, its build onto the runtime and its connectivity `check()`;
//! [`config`] lists them ([`SourceConfig`], [`SinkConfig`]) and reads them from YAML with
//! errors that keep their line. The format's one [`duration`] type lives here too.
//!
//! The integration tests run against real servers started by `scripts/services.sh` (and, for
//! TLS, against a Redis and a ClickHouse the tests start with certificates they make).

mod clickhouse;
pub mod config;
pub mod duration;
mod error;
pub mod file;
pub mod generator;
pub mod http;
mod io_runtime;
mod producer;
mod redis_streams;
pub mod stdin;
pub mod stdout;
#[doc(hidden)]
pub mod testing;
pub mod tls;
mod typed;
pub mod unique;

pub use clickhouse::check as check_clickhouse;
pub use clickhouse::{
    BATCH_COLUMN, BatchBuilder, BatchId, ClickHouseClient, ClickHouseConfig, ClickHouseFeatures,
    ClickHouseSink, ClickHouseSinkConfig, ClickHouseSinkOptions, CommitMode, CommitReport,
    DEFAULT_MAX_BLOCK_ROWS, ExactlyOnceInserter, InsertBatch, ServerVersion, clickhouse_ddl,
    clickhouse_migration, clickhouse_row_json, quote_identifier, quote_string, quote_table,
    write_clickhouse_row,
};
pub use config::{SinkConfig, SinkKind, SourceConfig, SourceKind};
pub use error::{ConnectorError, Fault};
pub use file::{
    BadRecord, CsvHeaderError, CsvOptions, CsvSource, FileSelection, FileSource, FileSourceConfig,
    Format, JsonLinesSink, JsonLinesSource, ReadResult, SelectionError, check_csv_header,
    escape_invalid_utf8, file_owner, infer_value,
};
pub use generator::GeneratorSource;
pub use stdout::StdoutSink;
pub use typed::{SinkExt, SourceExt};

/// A `reqwest` client builder with rustls's ring provider installed: build every HTTP client
/// of the workspace from it. reqwest has no provider of its own here (`rustls-no-provider`),
/// and building a client without one installed panics.
pub fn http_client() -> reqwest::ClientBuilder {
    tls::install_provider();
    reqwest::Client::builder()
}
pub use io_runtime::block_on;
pub use producer::{BackgroundProducer, Event, Producer, ProducerConfig, ProducerError};
pub use redis_streams::check as check_redis;
pub use redis_streams::check_with_ca as check_redis_with_ca;
pub use redis_streams::client as redis_client;
pub use redis_streams::connect as connect_redis;
pub use redis_streams::{
    ConsumerLag, FieldEncoding, GroupStart, IdempotentWrite, InvalidEntry, ReconnectBudget,
    RedisStreamReader, RedisStreamReaderConfig, RedisStreamSink, RedisStreamSinkOptions,
    RedisStreamSource, RedisStreamSourceConfig, RedisStreamSourceOptions, RedisStreamWriter,
    RedisStreamWriterConfig, StreamAcker, StreamBatch, StreamEntry, StreamId,
};
