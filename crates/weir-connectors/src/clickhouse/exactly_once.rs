use super::client::ClickHouseClient;
use super::table::{quote_string, quote_table};
use crate::ConnectorError;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;
use weir_types::Record;

/// The column Weir adds to every table for its exactly-once ClickHouse sink: each row carries the
/// id of the batch (checkpoint) that inserted it, so that after a crash the sink can find and
/// discard the rows of a batch whose checkpoint never completed, and skip a batch it already
/// inserted. Rows written by other tools leave it empty. The target table must have it
/// (`String`; [`crate::clickhouse_ddl`] adds it).
pub const BATCH_COLUMN: &str = "_weir_batch";

/// ClickHouse's default `max_insert_block_size`: the most rows one insert turns into one block.
pub const DEFAULT_MAX_BLOCK_ROWS: usize = 1_048_576;

/// How many batch ids one presence query names.
const IDS_PER_QUERY: usize = 500;

/// A deterministic batch id: the same batch of the same checkpoint gets the same id when it is
/// replayed after a crash.
///
/// ```
/// use weir_connectors::BatchId;
/// assert_eq!(BatchId::new("clicks", "sink-0", 42, 3).as_str(), "clicks/sink-0/42/3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchId(String);

impl BatchId {
    /// `{job}/{sink_instance}/{checkpoint}/{seq}`.
    pub fn new(job: &str, sink_instance: &str, checkpoint: u64, seq: u64) -> Self {
        BatchId(format!("{job}/{sink_instance}/{checkpoint}/{seq}"))
    }

    /// An id built by the caller; it must be unique per batch and stable across replays.
    pub fn from_raw(id: impl Into<String>) -> Self {
        BatchId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Rows of one batch in `JSONEachRow`, each carrying the batch id in [`BATCH_COLUMN`].
#[derive(Debug, Clone, PartialEq)]
pub struct InsertBatch {
    id: BatchId,
    rows: Vec<u8>,
    row_count: usize,
}

impl InsertBatch {
    /// A batch from rows serialized by the caller. Every row must already hold
    /// `"_weir_batch": "<id>"`, and `row_count` must be the number of rows: the inserter
    /// compares it with what the table holds after a crash.
    pub fn from_json_rows(id: BatchId, rows: Vec<u8>, row_count: usize) -> Self {
        InsertBatch {
            id,
            rows,
            row_count,
        }
    }

    pub fn id(&self) -> &BatchId {
        &self.id
    }

    /// The rows, taking them out of the batch.
    pub fn into_rows(self) -> Vec<u8> {
        self.rows
    }

    pub fn rows(&self) -> &[u8] {
        &self.rows
    }

    pub fn row_count(&self) -> usize {
        self.row_count
    }
}

/// Builds an [`InsertBatch`] from records, adding the batch id to every row, without
/// allocating per record.
///
/// ```
/// use weir_connectors::{BatchBuilder, BatchId};
/// use weir_types::{Record, Value};
/// let mut builder = BatchBuilder::new(BatchId::new("job", "s0", 1, 0));
/// builder.push(&Record::from_pairs([("n", Value::Int(1))])).unwrap();
/// let batch = builder.finish();
/// assert_eq!(batch.rows(), br#"{"_weir_batch":"job/s0/1/0","n":1}
/// "#);
/// ```
#[derive(Debug)]
pub struct BatchBuilder {
    id: BatchId,
    prefix: Vec<u8>,
    rows: Vec<u8>,
    row_count: usize,
}

impl BatchBuilder {
    pub fn new(id: BatchId) -> Self {
        let mut prefix = Vec::with_capacity(id.0.len() + 20);
        prefix.extend_from_slice(b"{\"");
        prefix.extend_from_slice(BATCH_COLUMN.as_bytes());
        prefix.extend_from_slice(b"\":");
        // Serializing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut prefix, id.as_str());
        BatchBuilder {
            id,
            prefix,
            rows: Vec::new(),
            row_count: 0,
        }
    }

    /// Appends one record as a row. Refuses records that already have a `_weir_batch` field.
    pub fn push(&mut self, record: &Record) -> Result<(), ConnectorError> {
        if record.get(BATCH_COLUMN).is_some() {
            return Err(ConnectorError::Batch {
                batch: self.id.0.clone(),
                reason: format!("record already has the reserved field `{BATCH_COLUMN}`"),
            });
        }
        self.rows.extend_from_slice(&self.prefix);
        let start = self.rows.len();
        record.write_json(&mut self.rows);
        // `{"a":1}` becomes `,"a":1}` after the prefix; `{}` becomes `}`.
        if self.rows.len() - start == 2 {
            self.rows.truncate(start);
            self.rows.push(b'}');
        } else {
            self.rows[start] = b',';
        }
        self.rows.push(b'\n');
        self.row_count += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.row_count
    }

    pub fn is_empty(&self) -> bool {
        self.row_count == 0
    }

    pub fn finish(self) -> InsertBatch {
        InsertBatch {
            id: self.id,
            rows: self.rows,
            row_count: self.row_count,
        }
    }
}

/// Whether the caller is replaying batches after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// First attempt at these batches: insert them without looking.
    Normal,
    /// After a crash, a restore or a failed commit: look which batches the table already has
    /// and insert only the others.
    Recovery,
}

/// What [`ExactlyOnceInserter::commit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitReport {
    pub inserted_batches: usize,
    pub inserted_rows: usize,
    /// Batches the table already held completely.
    pub skipped_batches: usize,
    /// Batches the table held only in part (see the type docs), deleted and inserted again.
    pub repaired_batches: usize,
}

/// Inserts checkpointed batches into a ClickHouse MergeTree table exactly once.
///
/// # The scheme
///
/// 1. The runtime stages a sink's rows per checkpoint and, when the checkpoint completes
///    (phase two of the two-phase commit), hands them over as batches, each with a
///    deterministic [`BatchId`] (`{job}/{sink_instance}/{checkpoint}/{seq}`).
/// 2. Every row carries its batch id in the column [`BATCH_COLUMN`] (`_weir_batch String`).
/// 3. A batch is sent as ONE `INSERT ... FORMAT JSONEachRow` of at most `max_block_rows` rows,
///    with `max_insert_block_size` set to that limit. ClickHouse turns it into a single block,
///    and a MergeTree writes a block as a new data part that becomes visible at once, by
///    renaming it into the table, or not at all: a failed or interrupted insert leaves nothing.
/// 4. After a crash (or any failed commit), the runtime replays the batches of the checkpoints
///    it cannot prove committed, in [`CommitMode::Recovery`]. The inserter then asks
///    `SELECT _weir_batch, count() FROM t WHERE _weir_batch IN (...) GROUP BY _weir_batch`
///    and inserts only the batches the table does not have. Each row lands once.
///
/// One caveat: a block whose rows fall into several partitions (`PARTITION BY`) is written
/// as one part per partition, each committed on its own, so a crash in the middle of such an
/// insert can leave part of a batch. Recovery detects it (fewer rows than the batch holds),
/// deletes the batch's rows (`ALTER TABLE ... DELETE`, waiting for the mutation) and inserts it
/// again. Keeping each batch within one partition avoids the cost.
///
/// The scheme holds for local MergeTree-family tables, not for `Distributed` or `Buffer`
/// tables (their inserts are asynchronous), and needs each batch id to be unique per table.
///
/// ```no_run
/// # async fn run() -> Result<(), weir_connectors::ConnectorError> {
/// use weir_connectors::*;
/// use weir_types::{Record, Value};
/// let client = ClickHouseClient::new(ClickHouseConfig::new("http://127.0.0.1:8124"))?;
/// let inserter = ExactlyOnceInserter::new(client, "events");
/// let mut builder = BatchBuilder::new(BatchId::new("job", "sink-0", 7, 0));
/// builder.push(&Record::from_pairs([("n", Value::Int(1))]))?;
/// let batches = vec![builder.finish()];
/// inserter.commit(&batches, CommitMode::Normal).await?;
/// // after a crash, the same batches again: nothing is inserted twice
/// let report = inserter.commit(&batches, CommitMode::Recovery).await?;
/// assert_eq!(report.skipped_batches, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ExactlyOnceInserter {
    client: ClickHouseClient,
    table: String,
    max_block_rows: usize,
    mutation_timeout: Duration,
}

impl ExactlyOnceInserter {
    /// An inserter into `table` (`name` or `db.name`) with ClickHouse's default block size.
    pub fn new(client: ClickHouseClient, table: impl Into<String>) -> Self {
        ExactlyOnceInserter {
            client,
            table: table.into(),
            max_block_rows: DEFAULT_MAX_BLOCK_ROWS,
            mutation_timeout: Duration::from_secs(60),
        }
    }

    /// The most rows in one batch (and the `max_insert_block_size` sent with each insert).
    pub fn with_max_block_rows(mut self, rows: usize) -> Self {
        self.max_block_rows = rows.max(1);
        self
    }

    /// How long a repair waits for ClickHouse to finish deleting a partial batch.
    pub fn with_mutation_timeout(mut self, timeout: Duration) -> Self {
        self.mutation_timeout = timeout;
        self
    }

    pub fn max_block_rows(&self) -> usize {
        self.max_block_rows
    }

    /// Inserts `batches` in order, one insert each. In [`CommitMode::Recovery`] it first
    /// skips the batches the table already holds. After an error, call again with the same
    /// batches in `Recovery` mode: an insert whose answer was lost may have been applied.
    pub async fn commit(
        &self,
        batches: &[InsertBatch],
        mode: CommitMode,
    ) -> Result<CommitReport, ConnectorError> {
        for batch in batches {
            if batch.row_count > self.max_block_rows {
                return Err(ConnectorError::Batch {
                    batch: batch.id.0.clone(),
                    reason: format!(
                        "{} rows exceed max_block_rows {}: one insert would not be one block; \
                         split it into smaller batches",
                        batch.row_count, self.max_block_rows
                    ),
                });
            }
        }
        let present = match mode {
            CommitMode::Normal => HashMap::new(),
            CommitMode::Recovery => self.present_batches(batches).await?,
        };
        let block_size = self.max_block_rows.to_string();
        let settings = [("max_insert_block_size", block_size.as_str())];
        let mut report = CommitReport::default();
        for batch in batches {
            if batch.row_count == 0 {
                continue;
            }
            match present.get(batch.id.as_str()).copied() {
                Some(rows) if rows == batch.row_count as u64 => {
                    report.skipped_batches += 1;
                    continue;
                }
                Some(rows) => {
                    tracing::warn!(table = %self.table, batch = %batch.id, found = rows,
                        expected = batch.row_count, "partial batch in table; repairing");
                    self.delete_batch(&batch.id).await?;
                    report.repaired_batches += 1;
                }
                None => {}
            }
            self.client
                .insert_with_settings(&self.table, &batch.rows, &settings)
                .await?;
            report.inserted_batches += 1;
            report.inserted_rows += batch.row_count;
        }
        Ok(report)
    }

    /// Rows per batch id already in the table, for the given batches.
    pub async fn present_batches(
        &self,
        batches: &[InsertBatch],
    ) -> Result<HashMap<String, u64>, ConnectorError> {
        let mut present = HashMap::new();
        let table = quote_table(&self.table);
        for chunk in batches.chunks(IDS_PER_QUERY) {
            let ids: Vec<String> = chunk.iter().map(|b| quote_string(b.id.as_str())).collect();
            let sql = format!(
                "SELECT {BATCH_COLUMN} AS batch, count() AS n FROM {table} \
                 WHERE {BATCH_COLUMN} IN ({}) GROUP BY {BATCH_COLUMN}",
                ids.join(", ")
            );
            for row in self.client.query_json(&sql).await? {
                let batch = row.get("batch").and_then(|v| v.as_str());
                let n = row.get("n").and_then(|v| v.as_i64());
                match (batch, n) {
                    (Some(batch), Some(n)) => {
                        present.insert(batch.to_string(), u64::try_from(n).unwrap_or(0));
                    }
                    _ => {
                        return Err(ConnectorError::ClickHouseResponse {
                            query: crate::error::short_query(&sql),
                            reason: format!("expected {{batch, n}}, found {row}"),
                        });
                    }
                }
            }
        }
        Ok(present)
    }

    /// Deletes a batch's rows and waits until ClickHouse has applied the deletion.
    async fn delete_batch(&self, id: &BatchId) -> Result<(), ConnectorError> {
        let table = quote_table(&self.table);
        self.client
            .execute(&format!(
                "ALTER TABLE {table} DELETE WHERE {BATCH_COLUMN} = {}",
                quote_string(id.as_str())
            ))
            .await?;
        let (database, name) = match self.table.split_once('.') {
            Some((db, name)) => (quote_string(db), quote_string(name)),
            None => ("currentDatabase()".to_string(), quote_string(&self.table)),
        };
        let sql = format!(
            "SELECT count() AS n FROM system.mutations \
             WHERE database = {database} AND table = {name} AND is_done = 0"
        );
        let deadline = tokio::time::Instant::now() + self.mutation_timeout;
        loop {
            let rows = self.client.query_json(&sql).await?;
            let running = rows
                .first()
                .and_then(|r| r.get("n"))
                .and_then(|v| v.as_i64());
            if running == Some(0) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ConnectorError::Batch {
                    batch: id.0.clone(),
                    reason: format!(
                        "deleting the partial batch from {} did not finish within {:?}",
                        self.table, self.mutation_timeout
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_types::Value;

    #[test]
    fn builder_prefixes_every_row_with_the_batch_id() {
        let mut b = BatchBuilder::new(BatchId::from_raw("a\"b"));
        b.push(&Record::from_pairs([
            ("x", Value::Int(1)),
            ("s", Value::from("q")),
        ]))
        .unwrap();
        b.push(&Record::new()).unwrap();
        assert_eq!(b.len(), 2);
        let batch = b.finish();
        let text = std::str::from_utf8(batch.rows()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"{"_weir_batch":"a\"b","x":1,"s":"q"}"#);
        assert_eq!(lines[1], r#"{"_weir_batch":"a\"b"}"#);
        for line in lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v[BATCH_COLUMN], "a\"b");
        }
    }

    #[test]
    fn builder_refuses_the_reserved_field() {
        let mut b = BatchBuilder::new(BatchId::from_raw("x"));
        let e = b
            .push(&Record::from_pairs([(BATCH_COLUMN, Value::from("y"))]))
            .unwrap_err();
        assert!(e.to_string().contains("_weir_batch"), "{e}");
        assert!(b.is_empty());
    }
}
