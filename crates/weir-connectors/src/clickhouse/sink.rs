//! ClickHouse as a Weir sink: batched inserts, exactly once with checkpoints.
//!
//! Rows are rendered into batches of at most `batch_rows` rows as they arrive. Each batch is
//! tagged with a deterministic id, `{job}/{sink}-{instance}/{checkpoint}/{seq}`, where
//! `checkpoint` is the checkpoint the rows will belong to (checkpoint ids follow each other, so
//! the next one is known in advance).
//!
//! - With checkpoints (exactly-once): at a barrier the batches are sealed and stored in the
//!   checkpoint (pre-commit); when the checkpoint completes they are inserted
//!   ([`ExactlyOnceInserter`], one atomic block each). The insert runs on the I/O runtime while
//!   the task goes on reading and writing (one insert in flight at a time); its batches stay
//!   sealed, and so in every checkpoint taken meanwhile, until it succeeded. On a restart, the
//!   batches stored in the restored checkpoint are inserted in recovery mode, which skips those
//!   the table already has. Failed inserts are retried (recovery mode again) with backoff; an
//!   insert that still fails fails the job at the sink's next call.
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
    /// The newest checkpoint known to be complete: its batches may be inserted.
    committed: CheckpointId,
    /// With checkpoints: the insert running in the background, and how many of the oldest
    /// sealed batches it covers.
    inserting: Option<(usize, InsertTask)>,
}

type InsertTask = tokio::task::JoinHandle<Result<u64, crate::ConnectorError>>;

/// Inserts `batches` in order, retrying failures in recovery mode with backoff; returns the
/// rows inserted.
async fn insert_with_retries(
    inserter: ExactlyOnceInserter,
    batches: Vec<InsertBatch>,
    mut mode: CommitMode,
    retries: u32,
    table: String,
) -> Result<u64, crate::ConnectorError> {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        match inserter.commit(&batches, mode).await {
            Ok(report) => return Ok(report.inserted_rows as u64),
            Err(e) if e.is_retryable() && attempt < retries => {
                attempt += 1;
                tracing::warn!(table = %table, attempt, error = %e,
                    "insert failed; retrying in recovery mode");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                // The failed insert may have been applied: look before inserting again.
                mode = CommitMode::Recovery;
            }
            Err(e) => return Err(e),
        }
    }
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
            committed: 0,
            inserting: None,
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

    /// The sealed batches of checkpoints up to `upto` (all if `None`): how many, and copies
    /// to insert.
    fn ready(&self, upto: Option<CheckpointId>) -> (usize, Vec<InsertBatch>) {
        let ready = self
            .sealed
            .iter()
            .take_while(|b| upto.is_none_or(|c| b.checkpoint <= c))
            .count();
        let batches = self.sealed[..ready]
            .iter()
            .map(|b| {
                InsertBatch::from_json_rows(
                    BatchId::from_raw(b.id.clone()),
                    b.rows.clone(),
                    b.count,
                )
            })
            .collect();
        (ready, batches)
    }

    fn inserter(&self) -> Result<ExactlyOnceInserter, OperatorError> {
        self.inserter
            .clone()
            .ok_or_else(|| OperatorError::new(ErrorKind::Internal, "sink not opened"))
    }

    /// Inserts the sealed batches of checkpoints up to `upto` (all if `None`) and waits,
    /// retrying in recovery mode.
    fn insert(
        &mut self,
        upto: Option<CheckpointId>,
        mode: CommitMode,
    ) -> Result<(), OperatorError> {
        let (ready, batches) = self.ready(upto);
        if ready == 0 {
            return Ok(());
        }
        let insert = insert_with_retries(
            self.inserter()?,
            batches,
            mode,
            self.config.retries,
            self.config.table.clone(),
        );
        let rows = block_on(insert)
            .map_err(|e| connector_error(&format!("inserting into {}", self.config.table), e))?;
        self.inserted += rows;
        self.sealed.drain(..ready);
        self.last_flush = Instant::now();
        Ok(())
    }

    /// With checkpoints: takes the result of the background insert if it finished (or, with
    /// `wait`, once it finishes), then starts the next one if batches of completed
    /// checkpoints are waiting. With `wait`, returns once all of those are inserted.
    fn drive_inserts(&mut self, wait: bool) -> Result<(), OperatorError> {
        loop {
            if let Some((_, task)) = &self.inserting {
                if !wait && !task.is_finished() {
                    return Ok(());
                }
                let Some((count, task)) = self.inserting.take() else {
                    return Ok(());
                };
                let rows = block_on(task)
                    .map_err(|e| {
                        OperatorError::new(
                            ErrorKind::Internal,
                            format!("insert into {} did not finish: {e}", self.config.table),
                        )
                    })?
                    .map_err(|e| {
                        connector_error(&format!("inserting into {}", self.config.table), e)
                    })?;
                self.inserted += rows;
                // Inserted: no longer part of the next checkpoints.
                self.sealed.drain(..count);
                self.last_flush = Instant::now();
            }
            let (ready, batches) = self.ready(Some(self.committed));
            if ready == 0 {
                return Ok(());
            }
            let insert = insert_with_retries(
                self.inserter()?,
                batches,
                CommitMode::Normal,
                self.config.retries,
                self.config.table.clone(),
            );
            self.inserting = Some((ready, crate::io_runtime::spawn(insert)));
            if !wait {
                return Ok(());
            }
        }
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
        if self.checkpointing {
            self.drive_inserts(false)?;
        }
        Ok(())
    }

    fn on_tick(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        if !self.checkpointing && self.last_flush.elapsed() >= self.config.flush_interval {
            self.seal();
            self.insert(None, CommitMode::Normal)?;
        }
        if self.checkpointing {
            self.drive_inserts(false)?;
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
        // A finished insert's batches need not be stored again.
        self.drive_inserts(false)?;
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
        self.committed = self.committed.max(checkpoint);
        self.drive_inserts(false)
    }

    fn close(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        if self.checkpointing {
            // The final checkpoint committed everything: wait for its inserts.
            return self.drive_inserts(true);
        }
        self.seal();
        self.insert(None, CommitMode::Normal)
    }
}
