//! ClickHouse as a Weir sink: batched inserts, exactly once with checkpoints.
//!
//! Rows are rendered into batches of at most `batch_rows` rows as they arrive. Each batch is
//! tagged with a deterministic id, `{job}/{sink}-{instance}/{checkpoint}/{seq}`, where
//! `checkpoint` is the checkpoint the rows will belong to (checkpoint ids follow each other, so
//! the next one is known in advance).
//!
//! - With checkpoints (exactly-once): at a barrier the batches are sealed and stored in the
//!   checkpoint (pre-commit); when the checkpoint completes they are inserted
//!   ([`ExactlyOnceInserter`], one atomic block each). On a restart, the batches stored in the
//!   restored checkpoint are inserted in recovery mode, which skips those the table already
//!   has. Failed inserts are retried (recovery mode again) with backoff.
//! - Without checkpoints (at-least-once): a batch is inserted when it is full or every
//!   `flush_interval`, and at the end of input.

use super::table::{ClickHouseFeatures, clickhouse_ddl, write_clickhouse_row};
use super::{
    BatchBuilder, BatchId, ClickHouseClient, ClickHouseConfig, CommitMode, ExactlyOnceInserter,
    InsertBatch,
};
use crate::io_runtime::block_on;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_core::{CheckpointId, ErrorKind, OperatorContext, OperatorError, Sink};
use weir_schema::Schema;
use weir_types::Record;

/// Settings of a [`ClickHouseSink`].
#[derive(Debug, Clone)]
pub struct ClickHouseSinkConfig {
    pub client: ClickHouseConfig,
    pub table: String,
    /// Renders rows by the schema (datetimes, booleans, JSON fields as ClickHouse expects) and
    /// lets the sink create the table; without one, records are written as plain JSON.
    pub schema: Option<Arc<Schema>>,
    /// Create the table from the schema if it does not exist.
    pub create_table: bool,
    /// Most rows per insert.
    pub batch_rows: usize,
    /// Without checkpoints: insert at least this often.
    pub flush_interval: Duration,
    /// Names the job in batch ids (unique per table).
    pub job: String,
    /// Attempts after the first for a failed insert.
    pub retries: u32,
}

impl ClickHouseSinkConfig {
    pub fn new(client: ClickHouseConfig, table: impl Into<String>, job: impl Into<String>) -> Self {
        ClickHouseSinkConfig {
            client,
            table: table.into(),
            schema: None,
            create_table: true,
            batch_rows: 50_000,
            flush_interval: Duration::from_secs(1),
            job: job.into(),
            retries: 5,
        }
    }
}

/// A batch stored in a checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredBatch {
    checkpoint: CheckpointId,
    id: String,
    rows: Vec<u8>,
    count: usize,
}

pub struct ClickHouseSink {
    config: ClickHouseSinkConfig,
    inserter: Option<ExactlyOnceInserter>,
    features: Option<ClickHouseFeatures>,
    checkpointing: bool,
    sink_name: String,
    /// The checkpoint the rows being written will belong to.
    epoch: CheckpointId,
    seq: u64,
    /// The id of the batch being filled (`epoch`, `seq`); empty until first needed.
    batch: String,
    /// Rows of the batch being filled, rendered by the schema...
    rows: Vec<u8>,
    /// ...or, without a schema, as plain JSON with the batch id added.
    builder: Option<BatchBuilder>,
    count: usize,
    /// Sealed batches not yet inserted, oldest first.
    sealed: Vec<StoredBatch>,
    last_flush: Instant,
    /// Rows inserted so far (for tests and metrics).
    inserted: u64,
}

fn connector_error(context: &str, e: crate::ConnectorError) -> OperatorError {
    let mut error = OperatorError::from(e);
    error.message = format!("{context}: {}", error.message);
    error
}

impl ClickHouseSink {
    pub fn new(config: ClickHouseSinkConfig) -> Self {
        ClickHouseSink {
            config,
            inserter: None,
            features: None,
            checkpointing: false,
            sink_name: String::new(),
            epoch: 1,
            seq: 0,
            batch: String::new(),
            rows: Vec::new(),
            builder: None,
            count: 0,
            sealed: Vec::new(),
            last_flush: Instant::now(),
            inserted: 0,
        }
    }

    /// The id of the batch being filled, made once per batch.
    fn batch_id(&mut self) -> &str {
        if self.batch.is_empty() {
            self.batch = BatchId::new(&self.config.job, &self.sink_name, self.epoch, self.seq)
                .as_str()
                .to_string();
        }
        &self.batch
    }

    fn push_row(&mut self, record: &Record) -> Result<(), OperatorError> {
        self.batch_id();
        match (&self.config.schema, &self.features) {
            (Some(schema), Some(features)) => {
                write_clickhouse_row(schema, record, features, &self.batch, &mut self.rows)
            }
            _ => {
                let id = &self.batch;
                let builder = self
                    .builder
                    .get_or_insert_with(|| BatchBuilder::new(BatchId::from_raw(id.clone())));
                let has_json = record
                    .values()
                    .iter()
                    .any(|v| matches!(v, weir_types::Value::Json(_)));
                let pushed = if has_json {
                    // ClickHouse reads nested JSON into String columns only as text.
                    let mut row = record.clone();
                    for value in row.values_mut() {
                        if let weir_types::Value::Json(j) = value {
                            *value = weir_types::Value::from(j.to_string());
                        }
                    }
                    builder.push(&row)
                } else {
                    builder.push(record)
                };
                pushed.map_err(OperatorError::from)?;
            }
        }
        self.count += 1;
        if self.count >= self.config.batch_rows {
            self.seal();
        }
        Ok(())
    }

    fn seal(&mut self) {
        if self.count == 0 {
            return;
        }
        let rows = match self.builder.take() {
            Some(builder) => builder.finish().into_rows(),
            None => std::mem::take(&mut self.rows),
        };
        let batch = StoredBatch {
            checkpoint: self.epoch,
            id: self.batch_id().to_string(),
            rows,
            count: std::mem::take(&mut self.count),
        };
        self.sealed.push(batch);
        self.seq += 1;
        self.batch.clear();
    }

    /// Inserts the sealed batches of checkpoints up to `upto` (all if `None`), retrying in
    /// recovery mode.
    fn insert(
        &mut self,
        upto: Option<CheckpointId>,
        mut mode: CommitMode,
    ) -> Result<(), OperatorError> {
        let ready = self
            .sealed
            .iter()
            .take_while(|b| upto.is_none_or(|c| b.checkpoint <= c))
            .count();
        if ready == 0 {
            return Ok(());
        }
        let batches: Vec<InsertBatch> = self.sealed[..ready]
            .iter()
            .map(|b| {
                InsertBatch::from_json_rows(
                    BatchId::from_raw(b.id.clone()),
                    b.rows.clone(),
                    b.count,
                )
            })
            .collect();
        let inserter = self
            .inserter
            .as_ref()
            .ok_or_else(|| OperatorError::new(ErrorKind::Internal, "sink not opened"))?;
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            match block_on(inserter.commit(&batches, mode)) {
                Ok(report) => {
                    self.inserted += report.inserted_rows as u64;
                    break;
                }
                Err(e) if e.is_retryable() && attempt < self.config.retries => {
                    attempt += 1;
                    tracing::warn!(table = %self.config.table, attempt, error = %e,
                        "insert failed; retrying in recovery mode");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                    // The failed insert may have been applied: look before inserting again.
                    mode = CommitMode::Recovery;
                }
                Err(e) => {
                    return Err(connector_error(
                        &format!("inserting into {}", self.config.table),
                        e,
                    ));
                }
            }
        }
        self.sealed.drain(..ready);
        self.last_flush = Instant::now();
        Ok(())
    }
}

impl Sink<Record> for ClickHouseSink {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        self.sink_name = format!("{}-{}", ctx.name(), ctx.instance());
        let client = ClickHouseClient::new(self.config.client.clone())
            .map_err(|e| connector_error("connecting to ClickHouse", e))?;
        let version = block_on(client.version())
            .map_err(|e| connector_error("asking ClickHouse its version", e))?;
        let features = ClickHouseFeatures::from_version(&version.text).ok_or_else(|| {
            OperatorError::new(
                ErrorKind::Config,
                format!("unsupported ClickHouse version {}", version.text),
            )
        })?;
        if let (Some(schema), true) = (&self.config.schema, self.config.create_table) {
            // The generated DDL is `CREATE TABLE IF NOT EXISTS`.
            let ddl = clickhouse_ddl(schema, &self.config.table, &features);
            block_on(client.execute(&ddl)).map_err(|e| {
                connector_error(&format!("creating table {}", self.config.table), e)
            })?;
        }
        self.features = Some(features);
        self.inserter = Some(ExactlyOnceInserter::new(client, self.config.table.clone()));
        self.checkpointing = ctx.checkpointing();
        if self.checkpointing {
            self.sealed = weir_core::state::restore_binary::<Vec<StoredBatch>>(ctx, "batches")?
                .unwrap_or_default();
            // The restored checkpoint completed: its batches are (or are now) committed.
            self.insert(None, CommitMode::Recovery)?;
            self.epoch = ctx.first_checkpoint_id();
        }
        Ok(())
    }

    fn write(
        &mut self,
        batch: &mut Vec<Record>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        for record in batch.drain(..) {
            self.push_row(&record)?;
        }
        if !self.checkpointing && !self.sealed.is_empty() {
            self.insert(None, CommitMode::Normal)?;
        }
        Ok(())
    }

    fn on_tick(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        if !self.checkpointing && self.last_flush.elapsed() >= self.config.flush_interval {
            self.seal();
            self.insert(None, CommitMode::Normal)?;
        }
        Ok(())
    }

    fn snapshot(
        &mut self,
        checkpoint: CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        if !self.checkpointing {
            return Ok(());
        }
        self.epoch = checkpoint;
        self.seal();
        weir_core::state::save_binary(ctx, "batches", &self.sealed)?;
        self.epoch = checkpoint + 1;
        self.seq = 0;
        Ok(())
    }

    fn commit(
        &mut self,
        checkpoint: CheckpointId,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        self.insert(Some(checkpoint), CommitMode::Normal)
    }

    fn close(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        if self.checkpointing {
            // The final checkpoint committed everything.
            return Ok(());
        }
        self.seal();
        self.insert(None, CommitMode::Normal)
    }
}
