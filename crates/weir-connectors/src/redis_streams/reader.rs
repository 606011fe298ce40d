use super::decode::{EntryDecoder, FieldEncoding, StreamBatch, bytes_of, parse_id};
use super::{StreamId, connect, ping};
use crate::ConnectorError;
use redis::Value as RedisValue;
use redis::aio::ConnectionManager;
use std::time::Duration;

/// Where a newly created consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupStart {
    /// From the first entry still in the stream (`0`): nothing already in the stream is missed.
    #[default]
    Beginning,
    /// Only entries added after the group was created (`$`).
    End,
}

/// Configuration of a [`RedisStreamReader`].
#[derive(Debug, Clone)]
pub struct RedisStreamReaderConfig {
    /// `redis://[:password@]host:port[/db]`.
    pub url: String,
    pub stream: String,
    pub group: String,
    /// This reader's consumer name; must be stable across restarts to find its own pending
    /// entries again.
    pub consumer: String,
    /// Most entries returned by one read (`COUNT`). Default 500.
    pub batch_size: usize,
    /// How long `read_batch` waits for new entries (`BLOCK`); zero does not wait. Default 1 s.
    pub block: Duration,
    /// Entries pending longer than this on any consumer are taken over by `claim_idle`.
    /// Must exceed the longest time a live consumer holds an entry before acknowledging it
    /// (for Weir: the checkpoint interval plus processing time). Default 60 s.
    pub claim_idle: Duration,
    pub encoding: FieldEncoding,
    /// Where the group starts when this reader creates it.
    pub start: GroupStart,
    /// Timeout for every command except the blocking read. Default 10 s.
    pub command_timeout: Duration,
    /// How long [`RedisStreamSource`](super::RedisStreamSource) keeps retrying after a
    /// dropped connection (a killed client, a Redis restart) before it fails the job.
    pub reconnect: ReconnectBudget,
    /// For a `rediss://` URL: trust only the CA certificates of this PEM file (by default the
    /// system's roots).
    pub ca_file: Option<std::path::PathBuf>,
}

/// Retries of a command that failed because the connection dropped or Redis could not be
/// reached: up to `attempts` more tries, waiting `first_delay`, doubling up to `max_delay`.
/// The default (10 retries, 100 ms up to 5 s) rides out about 25 s of Redis being away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectBudget {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for ReconnectBudget {
    fn default() -> Self {
        ReconnectBudget {
            attempts: 10,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl ReconnectBudget {
    /// The wait before retry number `retry` (0-based).
    pub fn delay(&self, retry: u32) -> Duration {
        self.first_delay
            .saturating_mul(2u32.saturating_pow(retry.min(20)))
            .min(self.max_delay)
    }
}

impl RedisStreamReaderConfig {
    /// A configuration with the defaults above.
    pub fn new(
        url: impl Into<String>,
        stream: impl Into<String>,
        group: impl Into<String>,
        consumer: impl Into<String>,
    ) -> Self {
        RedisStreamReaderConfig {
            url: url.into(),
            stream: stream.into(),
            group: group.into(),
            consumer: consumer.into(),
            batch_size: 500,
            block: Duration::from_secs(1),
            claim_idle: Duration::from_secs(60),
            encoding: FieldEncoding::default(),
            start: GroupStart::Beginning,
            command_timeout: Duration::from_secs(10),
            reconnect: ReconnectBudget::default(),
            ca_file: None,
        }
    }

    fn validate(&self) -> Result<(), ConnectorError> {
        let empty = |key, value: &str| {
            if value.is_empty() {
                Err(ConnectorError::Config {
                    key,
                    reason: "must not be empty".into(),
                })
            } else {
                Ok(())
            }
        };
        empty("stream", &self.stream)?;
        empty("group", &self.group)?;
        empty("consumer", &self.consumer)?;
        if self.batch_size == 0 {
            return Err(ConnectorError::Config {
                key: "batch_size",
                reason: "must be at least 1".into(),
            });
        }
        if self.claim_idle.is_zero() {
            return Err(ConnectorError::Config {
                key: "claim_idle",
                reason: "must be longer than zero, or live consumers lose their entries".into(),
            });
        }
        if let FieldEncoding::Json { field } = &self.encoding {
            empty("encoding.field", field)?;
        }
        Ok(())
    }
}

/// Consumer lag of a group, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerLag {
    /// Entries in the stream not yet delivered to the group.
    pub undelivered: u64,
    /// `true` when Redis could not say (entries deleted in the middle of the stream, or a
    /// Redis older than 7.0) and `undelivered` is the stream length, an upper bound.
    pub estimated: bool,
    /// Entries delivered but not acknowledged, all consumers together.
    pub pending: u64,
    /// Pending entries per consumer, as `XPENDING` reports them.
    pub pending_by_consumer: Vec<(String, u64)>,
}

/// Reads a Redis stream as one consumer of a consumer group.
///
/// Delivery is at least once: an entry stays pending for this consumer until [`ack`]ed.
/// Weir acknowledges after the checkpoint that covers the entry, so a crash re-delivers it:
/// on restart, [`read_own_pending`] returns this consumer's unacknowledged entries, and
/// [`claim_idle`] takes over those of consumers that died.
///
/// Uses two connections: one for the blocking read, one for everything else, so an ack is
/// never queued behind a read that waits for new entries. Both reconnect by themselves after a
/// dropped connection; the command that saw the drop fails with a retryable error
/// ([`ConnectorError::is_retryable`]), and the caller retries it. [`RedisStreamSource`] does so
/// within the config's [`ReconnectBudget`], then reads this consumer's pending entries again
/// (an answer lost with the connection leaves them pending here), so nothing is lost.
///
/// [`RedisStreamSource`]: super::RedisStreamSource
///
/// ```no_run
/// # async fn run() -> Result<(), weir_connectors::ConnectorError> {
/// use weir_connectors::{RedisStreamReader, RedisStreamReaderConfig};
/// let config = RedisStreamReaderConfig::new("redis://127.0.0.1:6390", "events", "weir", "worker-1");
/// let mut reader = RedisStreamReader::connect(config).await?;
/// let batch = reader.read_batch().await?;
/// for entry in &batch.entries {
///     println!("{} {}", entry.id, entry.record);
/// }
/// reader.ack(&batch.ids()).await?; // after the checkpoint covering them
/// # Ok(()) }
/// ```
///
/// [`ack`]: RedisStreamReader::ack
/// [`read_own_pending`]: RedisStreamReader::read_own_pending
/// [`claim_idle`]: RedisStreamReader::claim_idle
pub struct RedisStreamReader {
    config: RedisStreamReaderConfig,
    blocking: ConnectionManager,
    acker: StreamAcker,
    decoder: EntryDecoder,
    claim_cursor: StreamId,
    id_buf: String,
}

impl std::fmt::Debug for RedisStreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamReader")
            .field("stream", &self.config.stream)
            .field("group", &self.config.group)
            .field("consumer", &self.config.consumer)
            .finish_non_exhaustive()
    }
}

impl RedisStreamReader {
    /// Connects and creates the group (and the stream) if missing.
    pub async fn connect(config: RedisStreamReaderConfig) -> Result<Self, ConnectorError> {
        config.validate()?;
        let commands = connect(
            &config.url,
            config.ca_file.as_deref(),
            config.command_timeout,
        )
        .await?;
        let blocking = connect(
            &config.url,
            config.ca_file.as_deref(),
            config.block + config.command_timeout,
        )
        .await?;
        let reader = RedisStreamReader {
            decoder: EntryDecoder::new(config.encoding.clone()),
            acker: StreamAcker {
                conn: commands,
                stream: config.stream.clone(),
                group: config.group.clone(),
            },
            blocking,
            claim_cursor: StreamId::ZERO,
            id_buf: String::new(),
            config,
        };
        reader.ensure_group().await?;
        Ok(reader)
    }

    pub fn config(&self) -> &RedisStreamReaderConfig {
        &self.config
    }

    /// Creates the consumer group (`XGROUP CREATE ... MKSTREAM`); an existing group is fine.
    pub async fn ensure_group(&self) -> Result<(), ConnectorError> {
        let start = match self.config.start {
            GroupStart::Beginning => "0",
            GroupStart::End => "$",
        };
        let result: Result<RedisValue, _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(start)
            .arg("MKSTREAM")
            .query_async(&mut self.acker.conn.clone())
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(ConnectorError::redis(
                "XGROUP CREATE",
                &self.config.stream,
                e,
            )),
        }
    }

    /// Reads entries never delivered to the group (`XREADGROUP ... >`), waiting up to `block`
    /// for some to arrive. An empty batch means none arrived in time.
    ///
    /// If the connection breaks after Redis delivered entries but before the answer arrived,
    /// those entries are pending on this consumer without having been seen: they come back
    /// through [`read_own_pending`](Self::read_own_pending) after a restart, or through
    /// [`claim_idle`](Self::claim_idle) once idle. Nothing is lost.
    pub async fn read_batch(&mut self) -> Result<StreamBatch, ConnectorError> {
        let mut cmd = self.xreadgroup_cmd();
        if !self.config.block.is_zero() {
            let ms = self.config.block.as_millis().max(1) as u64;
            cmd.arg("BLOCK").arg(ms);
        }
        cmd.arg("STREAMS").arg(&self.config.stream).arg(">");
        let reply = match cmd.query_async(&mut self.blocking).await {
            Err(e) if e.code() == Some("NOGROUP") => {
                // The stream or the group was deleted under us: recreate and read again.
                tracing::warn!(stream = %self.config.stream, group = %self.config.group,
                    "consumer group vanished; recreating it");
                self.ensure_group().await?;
                cmd.query_async(&mut self.blocking).await
            }
            other => other,
        }
        .map_err(|e| ConnectorError::redis("XREADGROUP", &self.config.stream, e))?;
        self.decode_read_reply(reply)
    }

    /// A read like [`read_batch`](Self::read_batch) that does not borrow the reader: it can
    /// run on the I/O runtime while the task thread processes the previous batch (a
    /// prefetch). It uses the reader's blocking connection, so at most one such read (and no
    /// `read_batch`) may be in flight at a time. Entries it delivers are pending on this
    /// consumer like those of any read: if they are never processed, a restart from a
    /// checkpoint reads them again ([`read_own_pending`](Self::read_own_pending)).
    pub fn read_batch_detached(
        &self,
    ) -> impl std::future::Future<Output = Result<StreamBatch, ConnectorError>> + Send + 'static
    {
        let mut reader = RedisStreamReader {
            decoder: EntryDecoder::new(self.config.encoding.clone()),
            acker: self.acker.clone(),
            blocking: self.blocking.clone(),
            claim_cursor: StreamId::ZERO,
            id_buf: String::new(),
            config: self.config.clone(),
        };
        async move { reader.read_batch().await }
    }

    /// Reads this consumer's pending entries with ids greater than `after` (`XREADGROUP` with
    /// an id instead of `>`): what it received before a crash but never acknowledged. Start
    /// with [`StreamId::ZERO`] and call again with the batch's `last_id()` until a batch is
    /// empty. Entries deleted from the stream meanwhile are acknowledged (nothing is left to
    /// process) and reported in `deleted`.
    pub async fn read_own_pending(
        &mut self,
        after: StreamId,
    ) -> Result<StreamBatch, ConnectorError> {
        let mut cmd = self.xreadgroup_cmd();
        cmd.arg("STREAMS")
            .arg(&self.config.stream)
            .arg(after.write_to(&mut self.id_buf));
        let reply = cmd
            .query_async(&mut self.acker.conn)
            .await
            .map_err(|e| ConnectorError::redis("XREADGROUP", &self.config.stream, e))?;
        let batch = self.decode_read_reply(reply)?;
        if !batch.deleted.is_empty() {
            self.acker.ack(&batch.deleted).await?;
        }
        Ok(batch)
    }

    /// Takes over entries pending on any consumer of the group for longer than `claim_idle`
    /// (`XAUTOCLAIM`), following Redis's cursor across calls. Returns at most about
    /// `batch_size` entries; call again (periodically) for more. Claimed entries now belong to
    /// this consumer: process and acknowledge them like any other.
    pub async fn claim_idle(&mut self) -> Result<StreamBatch, ConnectorError> {
        let mut batch = StreamBatch::default();
        let min_idle = self.config.claim_idle.as_millis() as u64;
        loop {
            let count = self.config.batch_size.saturating_sub(batch.len()).max(1);
            let reply: RedisValue = redis::cmd("XAUTOCLAIM")
                .arg(&self.config.stream)
                .arg(&self.config.group)
                .arg(&self.config.consumer)
                .arg(min_idle)
                .arg(self.claim_cursor.write_to(&mut self.id_buf))
                .arg("COUNT")
                .arg(count)
                .query_async(&mut self.acker.conn)
                .await
                .map_err(|e| ConnectorError::redis("XAUTOCLAIM", &self.config.stream, e))?;
            let RedisValue::Array(mut parts) = reply else {
                return Err(ConnectorError::reply(
                    "XAUTOCLAIM",
                    &self.config.stream,
                    format!("expected [cursor, entries, deleted], found {reply:?}"),
                ));
            };
            if parts.len() < 2 {
                return Err(ConnectorError::reply(
                    "XAUTOCLAIM",
                    &self.config.stream,
                    format!("expected [cursor, entries, deleted], found {parts:?}"),
                ));
            }
            // Redis 7 adds the ids it dropped from the pending list because their entry is gone.
            if parts.len() >= 3
                && let RedisValue::Array(ids) = parts.remove(2)
            {
                for id in &ids {
                    let id = parse_id(id).map_err(|reason| {
                        ConnectorError::reply("XAUTOCLAIM", &self.config.stream, reason)
                    })?;
                    batch.deleted.push(id);
                }
            }
            let entries = parts.remove(1);
            self.claim_cursor = parse_id(&parts[0]).map_err(|reason| {
                ConnectorError::reply("XAUTOCLAIM", &self.config.stream, reason)
            })?;
            self.decoder
                .push_entries(entries, &mut batch)
                .map_err(|reason| {
                    ConnectorError::reply("XAUTOCLAIM", &self.config.stream, reason)
                })?;
            if self.claim_cursor == StreamId::ZERO || batch.len() >= self.config.batch_size {
                break;
            }
        }
        if !batch.deleted.is_empty() {
            tracing::warn!(stream = %self.config.stream, group = %self.config.group,
                lost = batch.deleted.len(),
                "pending entries were deleted from the stream before being processed");
        }
        Ok(batch)
    }

    /// Acknowledges entries (`XACK`, one round trip). Returns how many were pending.
    pub async fn ack(&mut self, ids: &[StreamId]) -> Result<u64, ConnectorError> {
        self.acker.ack(ids).await
    }

    /// Health check: `PING` on the command connection.
    pub async fn ping(&mut self) -> Result<(), ConnectorError> {
        ping(&mut self.acker.conn, &self.config.stream).await
    }

    /// A handle that acknowledges entries of this reader's group from another task.
    pub fn acker(&self) -> StreamAcker {
        self.acker.clone()
    }

    /// Entries not yet delivered to the group and entries pending, in one round trip
    /// (`XINFO GROUPS`, `XPENDING`, and `XLEN` for the fallback).
    pub async fn lag(&mut self) -> Result<ConsumerLag, ConnectorError> {
        let stream = &self.config.stream;
        let (groups, pending, len): (RedisValue, RedisValue, u64) = redis::pipe()
            .cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .cmd("XPENDING")
            .arg(stream)
            .arg(&self.config.group)
            .cmd("XLEN")
            .arg(stream)
            .query_async(&mut self.acker.conn)
            .await
            .map_err(|e| ConnectorError::redis("XINFO GROUPS", stream, e))?;
        let group = find_group(&groups, &self.config.group).ok_or_else(|| {
            ConnectorError::reply(
                "XINFO GROUPS",
                stream,
                format!("group `{}` not found", self.config.group),
            )
        })?;
        let (pending_total, pending_by_consumer) = parse_pending_summary(&pending)
            .map_err(|reason| ConnectorError::reply("XPENDING", stream, reason))?;
        let lag = group.iter().find(|(k, _)| *k == "lag").map(|(_, v)| *v);
        let last_delivered = group
            .iter()
            .find(|(k, _)| *k == "last-delivered-id")
            .and_then(|(_, v)| bytes_of(v))
            .and_then(StreamId::from_bytes);
        let (undelivered, estimated) = match lag {
            Some(RedisValue::Int(n)) => (u64::try_from(*n).unwrap_or(0), false),
            _ if last_delivered == Some(StreamId::ZERO) => (len, false),
            _ => (len, true),
        };
        Ok(ConsumerLag {
            undelivered,
            estimated,
            pending: pending_total,
            pending_by_consumer,
        })
    }

    fn xreadgroup_cmd(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.config.group)
            .arg(&self.config.consumer)
            .arg("COUNT")
            .arg(self.config.batch_size);
        cmd
    }

    /// `XREADGROUP` answers nil (timeout), `[[stream, entries]]` (RESP2) or
    /// `{stream: entries}` (RESP3).
    fn decode_read_reply(&mut self, reply: RedisValue) -> Result<StreamBatch, ConnectorError> {
        let mut batch = StreamBatch::default();
        let entries = match reply {
            RedisValue::Nil => return Ok(batch),
            RedisValue::Array(mut streams) => match streams.pop() {
                Some(RedisValue::Array(mut pair)) if pair.len() == 2 => pair.pop(),
                None => None,
                Some(other) => {
                    return Err(ConnectorError::reply(
                        "XREADGROUP",
                        &self.config.stream,
                        format!("expected [stream, entries], found {other:?}"),
                    ));
                }
            },
            RedisValue::Map(mut streams) => streams.pop().map(|(_, entries)| entries),
            other => {
                return Err(ConnectorError::reply(
                    "XREADGROUP",
                    &self.config.stream,
                    format!("expected a list of streams, found {other:?}"),
                ));
            }
        };
        if let Some(entries) = entries {
            self.decoder
                .push_entries(entries, &mut batch)
                .map_err(|reason| {
                    ConnectorError::reply("XREADGROUP", &self.config.stream, reason)
                })?;
        }
        Ok(batch)
    }
}

/// Acknowledges entries of one stream and group; cheap to clone and send to another task.
#[derive(Clone)]
pub struct StreamAcker {
    conn: ConnectionManager,
    stream: String,
    group: String,
}

impl std::fmt::Debug for StreamAcker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamAcker")
            .field("stream", &self.stream)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl StreamAcker {
    /// `XACK` for all `ids` in one round trip; returns how many were pending.
    pub async fn ack(&mut self, ids: &[StreamId]) -> Result<u64, ConnectorError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.stream).arg(&self.group);
        let mut buf = String::with_capacity(24);
        for id in ids {
            cmd.arg(id.write_to(&mut buf));
        }
        cmd.query_async(&mut self.conn)
            .await
            .map_err(|e| ConnectorError::redis("XACK", &self.stream, e))
    }
}

/// The `XINFO GROUPS` entry of `group` as (field, value) pairs.
fn find_group<'a>(groups: &'a RedisValue, group: &str) -> Option<Vec<(&'a str, &'a RedisValue)>> {
    let RedisValue::Array(groups) = groups else {
        return None;
    };
    groups.iter().find_map(|g| {
        let pairs: Vec<(&str, &RedisValue)> = match g {
            RedisValue::Array(flat) => flat
                .chunks_exact(2)
                .filter_map(|p| Some((std::str::from_utf8(bytes_of(&p[0])?).ok()?, &p[1])))
                .collect(),
            RedisValue::Map(map) => map
                .iter()
                .filter_map(|(k, v)| Some((std::str::from_utf8(bytes_of(k)?).ok()?, v)))
                .collect(),
            _ => return None,
        };
        let name = pairs.iter().find(|(k, _)| *k == "name")?.1;
        (bytes_of(name)? == group.as_bytes()).then_some(pairs)
    })
}

/// `XPENDING key group` → `[count, min-id, max-id, [[consumer, count], ...]]`.
fn parse_pending_summary(value: &RedisValue) -> Result<(u64, Vec<(String, u64)>), String> {
    let RedisValue::Array(parts) = value else {
        return Err(format!("expected a summary list, found {value:?}"));
    };
    let total = match parts.first() {
        Some(RedisValue::Int(n)) => u64::try_from(*n).unwrap_or(0),
        other => return Err(format!("expected the pending count, found {other:?}")),
    };
    let mut consumers = Vec::new();
    if let Some(RedisValue::Array(list)) = parts.get(3) {
        for item in list {
            let RedisValue::Array(pair) = item else {
                return Err(format!("expected [consumer, count], found {item:?}"));
            };
            let name = pair
                .first()
                .and_then(bytes_of)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .ok_or_else(|| format!("expected a consumer name, found {pair:?}"))?;
            let count = pair
                .get(1)
                .and_then(|v| match v {
                    RedisValue::Int(n) => u64::try_from(*n).ok(),
                    other => std::str::from_utf8(bytes_of(other)?).ok()?.parse().ok(),
                })
                .ok_or_else(|| format!("expected a pending count for `{name}`, found {pair:?}"))?;
            consumers.push((name, count));
        }
    }
    Ok((total, consumers))
}
