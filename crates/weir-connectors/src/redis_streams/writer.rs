use super::decode::{bytes_of, parse_id};
use super::{StreamId, connect, ping};
use crate::ConnectorError;
use redis::Value as RedisValue;
use redis::aio::ConnectionManager;
use std::time::Duration;
use weir_types::Record;

/// What Redis answers to an `XADD` whose explicit id is not above the stream's last id.
const REPLAY_ERROR: &str = "equal or smaller than the target stream top item";

/// Configuration of a [`RedisStreamWriter`].
#[derive(Debug, Clone)]
pub struct RedisStreamWriterConfig {
    /// `redis://[:password@]host:port[/db]`.
    pub url: String,
    pub stream: String,
    /// The entry field that holds the record as JSON. Default `data`, what
    /// [`RedisStreamReader`](super::RedisStreamReader) reads by default.
    pub field: String,
    /// Trim the stream to about this many entries on every write (`MAXLEN ~ n`).
    pub max_len: Option<usize>,
    /// Timeout for one pipelined write. Default 10 s.
    pub command_timeout: Duration,
    /// For a `rediss://` URL: trust only the CA certificates of this PEM file (by default the
    /// system's roots).
    pub ca_file: Option<std::path::PathBuf>,
}

impl RedisStreamWriterConfig {
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Self {
        RedisStreamWriterConfig {
            url: url.into(),
            stream: stream.into(),
            field: "data".to_string(),
            max_len: None,
            command_timeout: Duration::from_secs(10),
            ca_file: None,
        }
    }
}

/// The outcome of [`RedisStreamWriter::write_idempotent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdempotentWrite {
    /// Entries added by this call.
    pub written: usize,
    /// Entries whose id the stream already had passed: written by an earlier attempt.
    pub skipped: usize,
}

/// Appends records to a Redis stream as JSON in one field, one pipelined round trip per batch.
///
/// # Exactly-once writes
///
/// [`write_idempotent`](Self::write_idempotent) gives every record an explicit id derived from
/// a caller-given `(epoch, sequence)` pair: record `i` of a call with `first_sequence = s` gets
/// the id `<epoch>-<s + i>`. Weir uses the checkpoint id as the epoch and counts the records of
/// that checkpoint in the sequence, so a replay after a crash produces exactly the ids of the
/// first attempt. Redis refuses an explicit id that is not greater than the stream's last id
/// ("equal or smaller than the target stream top item"); such a refusal means the entry was
/// already written, and it is skipped and counted instead of failing the batch.
///
/// Limits of the scheme:
/// - **One writer per stream.** The "already written" conclusion holds only if nobody else
///   adds entries: a foreign entry with a larger id would make this writer skip records it
///   never wrote. Give each sink instance its own stream.
/// - Ids are `(epoch, sequence)`, not timestamps: `XRANGE` by time does not apply to them.
/// - Epochs and sequences must grow: a replay must use the same numbers as the first attempt,
///   and later epochs must be larger. `0-0` is not a valid id, so start epochs at 1.
/// - Redis remembers the last id even when trimming removes every entry, but not when the key
///   is deleted: deleting the stream forgets what was written.
///
/// ```no_run
/// # async fn run() -> Result<(), weir_connectors::ConnectorError> {
/// use weir_connectors::{RedisStreamWriter, RedisStreamWriterConfig};
/// use weir_types::{Record, Value};
/// let config = RedisStreamWriterConfig::new("redis://127.0.0.1:6390", "out");
/// let mut writer = RedisStreamWriter::connect(config).await?;
/// let records = vec![Record::from_pairs([("n", Value::Int(1))])];
/// let first = writer.write_idempotent(7, 0, &records).await?;
/// let replay = writer.write_idempotent(7, 0, &records).await?;
/// assert_eq!((first.written, replay.skipped), (1, 1));
/// # Ok(()) }
/// ```
pub struct RedisStreamWriter {
    config: RedisStreamWriterConfig,
    conn: ConnectionManager,
    json: Vec<u8>,
    id_buf: String,
    skipped_total: u64,
}

impl std::fmt::Debug for RedisStreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamWriter")
            .field("stream", &self.config.stream)
            .field("skipped_total", &self.skipped_total)
            .finish_non_exhaustive()
    }
}

impl RedisStreamWriter {
    pub async fn connect(config: RedisStreamWriterConfig) -> Result<Self, ConnectorError> {
        if config.stream.is_empty() {
            return Err(ConnectorError::Config {
                key: "stream",
                reason: "must not be empty".into(),
            });
        }
        if config.field.is_empty() {
            return Err(ConnectorError::Config {
                key: "field",
                reason: "must not be empty".into(),
            });
        }
        if config.max_len == Some(0) {
            return Err(ConnectorError::Config {
                key: "max_len",
                reason: "must be at least 1 (leave it unset to keep every entry)".into(),
            });
        }
        let conn = connect(
            &config.url,
            config.ca_file.as_deref(),
            config.command_timeout,
        )
        .await?;
        Ok(RedisStreamWriter {
            config,
            conn,
            json: Vec::with_capacity(256),
            id_buf: String::with_capacity(42),
            skipped_total: 0,
        })
    }

    pub fn config(&self) -> &RedisStreamWriterConfig {
        &self.config
    }

    /// Health check: `PING`.
    pub async fn ping(&mut self) -> Result<(), ConnectorError> {
        ping(&mut self.conn, &self.config.stream).await
    }

    /// Entries skipped as already written, over this writer's life.
    pub fn skipped_total(&self) -> u64 {
        self.skipped_total
    }

    /// Appends `records` with ids chosen by Redis (`XADD ... *`), in one pipeline. Returns the
    /// new ids in order. At least once: a retry after an error may add some records twice.
    pub async fn write(&mut self, records: &[Record]) -> Result<Vec<StreamId>, ConnectorError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for record in records {
            self.push_xadd(&mut pipe, "*", record);
        }
        let replies: Vec<RedisValue> = pipe
            .query_async(&mut self.conn)
            .await
            .map_err(|e| ConnectorError::redis("XADD", &self.config.stream, e))?;
        replies
            .iter()
            .map(|v| parse_id(v).map_err(|r| ConnectorError::reply("XADD", &self.config.stream, r)))
            .collect()
    }

    /// Appends `records` with ids `<epoch>-<first_sequence + i>`, skipping those the stream
    /// already has (see the type's docs). Safe to call again with the same arguments after an
    /// error or a crash: nothing is written twice.
    pub async fn write_idempotent(
        &mut self,
        epoch: u64,
        first_sequence: u64,
        records: &[Record],
    ) -> Result<IdempotentWrite, ConnectorError> {
        if records.is_empty() {
            return Ok(IdempotentWrite::default());
        }
        if epoch == 0 && first_sequence == 0 {
            return Err(ConnectorError::InvalidStreamId {
                id: "0-0".into(),
                reason: "Redis refuses the id 0-0; start epochs at 1",
            });
        }
        let last = u64::try_from(records.len() - 1)
            .ok()
            .and_then(|n| first_sequence.checked_add(n));
        if last.is_none() {
            return Err(ConnectorError::InvalidStreamId {
                id: format!("{epoch}-{first_sequence}+{}", records.len()),
                reason: "the sequence overflows a 64-bit integer",
            });
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (seq, record) in (first_sequence..).zip(records) {
            let mut id = std::mem::take(&mut self.id_buf);
            StreamId::new(epoch, seq).write_to(&mut id);
            self.push_xadd(&mut pipe, &id, record);
            self.id_buf = id;
        }
        let replies: Vec<RedisValue> = pipe
            .query_async(&mut self.conn)
            .await
            .map_err(|e| ConnectorError::redis("XADD", &self.config.stream, e))?;
        let mut outcome = IdempotentWrite::default();
        let mut first_error = None;
        for reply in &replies {
            match reply {
                RedisValue::ServerError(e) => {
                    if e.details().is_some_and(|d| d.contains(REPLAY_ERROR)) {
                        outcome.skipped += 1;
                    } else if first_error.is_none() {
                        first_error = Some(e.clone());
                    }
                }
                _ => outcome.written += 1,
            }
        }
        self.skipped_total += outcome.skipped as u64;
        if let Some(e) = first_error {
            return Err(ConnectorError::redis(
                "XADD",
                &self.config.stream,
                redis::RedisError::from(e),
            ));
        }
        if outcome.skipped > 0 {
            tracing::debug!(stream = %self.config.stream, epoch, skipped = outcome.skipped,
                "skipped entries written by an earlier attempt");
        }
        Ok(outcome)
    }

    /// The last id the stream ever generated (survives trimming), or `None` when the stream
    /// does not exist. With idempotent writes: the last `(epoch, sequence)` written.
    pub async fn last_id(&mut self) -> Result<Option<StreamId>, ConnectorError> {
        let reply: Result<RedisValue, _> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&self.config.stream)
            .query_async(&mut self.conn)
            .await;
        let info = match reply {
            Ok(info) => info,
            Err(e) if e.detail().is_some_and(|d| d.contains("no such key")) => return Ok(None),
            Err(e) => {
                return Err(ConnectorError::redis(
                    "XINFO STREAM",
                    &self.config.stream,
                    e,
                ));
            }
        };
        let last = match &info {
            RedisValue::Array(flat) => flat
                .chunks_exact(2)
                .find(|p| bytes_of(&p[0]) == Some(b"last-generated-id"))
                .map(|p| &p[1]),
            RedisValue::Map(map) => map
                .iter()
                .find(|(k, _)| bytes_of(k) == Some(b"last-generated-id"))
                .map(|(_, v)| v),
            _ => None,
        };
        let last = last.ok_or_else(|| {
            ConnectorError::reply("XINFO STREAM", &self.config.stream, "no last-generated-id")
        })?;
        let id = parse_id(last)
            .map_err(|r| ConnectorError::reply("XINFO STREAM", &self.config.stream, r))?;
        Ok((id != StreamId::ZERO).then_some(id))
    }

    fn push_xadd(&mut self, pipe: &mut redis::Pipeline, id: &str, record: &Record) {
        self.json.clear();
        record.write_json(&mut self.json);
        let cmd = pipe.cmd("XADD").arg(&self.config.stream);
        if let Some(n) = self.config.max_len {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg(id).arg(&self.config.field).arg(&self.json[..]);
    }
}
