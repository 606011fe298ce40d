//! Redis Streams as a Weir source: a consumer group, exactly once with checkpoints.
//!
//! Each parallel instance is one consumer of the group (`<consumer>-<instance>`), so Redis
//! shares the stream's entries between them — and between several `weir` processes that run
//! the same pipeline.
//!
//! Delivery: entries are acknowledged (`XACK`) only when the checkpoint that covers them
//! completes. On a restart from a checkpoint, the entries it covers are acknowledged first;
//! the entries this consumer had read after it (still pending on it) are read again and
//! processed, then reading continues with new entries. Without checkpoints, an entry is
//! acknowledged once the batch after it is read (at-least-once). Entries left pending by a
//! consumer that died are claimed (`XAUTOCLAIM`) after `claim_idle`.
//!
//! With checkpoints, while new entries keep coming, the next `XREADGROUP` is sent as soon as
//! a batch arrives and runs on the I/O runtime while the chain processes that batch (one read
//! in flight at most). Entries it reads that the run never emits stay pending on this consumer
//! and are read first on restart, like any entry read after the last checkpoint.

use super::{RedisStreamReader, RedisStreamReaderConfig, StreamBatch, StreamId};
use crate::ConnectorError;
use crate::io_runtime::block_on;
use crate::{BadRecord, ReadResult};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_core::{CheckpointId, ErrorKind, OperatorContext, OperatorError, Source, SourceStatus};

/// Settings of a [`RedisStreamSource`].
#[derive(Debug, Clone)]
pub struct RedisStreamSourceConfig {
    /// The reader settings; `consumer` is a base name, suffixed with the instance index.
    pub reader: RedisStreamReaderConfig,
    /// How often to look for entries left pending by dead consumers.
    pub claim_every: Duration,
    /// End the stream after this long without new entries (for bounded runs and tests);
    /// `None`: read forever.
    pub stop_after_idle: Option<Duration>,
}

pub struct RedisStreamSource {
    config: RedisStreamSourceConfig,
    label: Arc<str>,
    reader: Option<RedisStreamReader>,
    checkpointing: bool,
    /// Ids emitted since the last barrier.
    unacked: Vec<StreamId>,
    /// Ids per checkpoint, acknowledged when it completes.
    staged: Vec<(CheckpointId, Vec<StreamId>)>,
    /// Every id emitted and not yet acknowledged: `XAUTOCLAIM` may hand this consumer's own
    /// entries back when they wait longer than `claim_idle`; they must not be emitted twice.
    held: std::collections::HashSet<StreamId>,
    /// While replaying this consumer's own pending entries: where the next read starts.
    replay_from: Option<StreamId>,
    last_claim: Instant,
    last_data: Instant,
    last_lag: Instant,
    lost: u64,
    /// With checkpoints: the next read, started when the previous one returned entries, so
    /// that Redis answers while the chain processes them.
    prefetch: Option<tokio::task::JoinHandle<Result<StreamBatch, ConnectorError>>>,
}

/// How often the source asks Redis for the group's lag.
const LAG_EVERY: Duration = Duration::from_secs(2);

impl RedisStreamSource {
    pub fn new(config: RedisStreamSourceConfig) -> Self {
        let label = format!("redis stream {}", config.reader.stream).into();
        RedisStreamSource {
            config,
            label,
            reader: None,
            checkpointing: false,
            unacked: Vec::new(),
            staged: Vec::new(),
            held: std::collections::HashSet::new(),
            replay_from: None,
            last_claim: Instant::now(),
            last_data: Instant::now(),
            last_lag: Instant::now() - LAG_EVERY,
            lost: 0,
            prefetch: None,
        }
    }

    fn reader(&mut self) -> Result<&mut RedisStreamReader, OperatorError> {
        self.reader
            .as_mut()
            .ok_or_else(|| OperatorError::new(ErrorKind::Internal, "source not opened"))
    }

    fn ack(&mut self, ids: &[StreamId]) -> Result<(), OperatorError> {
        if ids.is_empty() {
            return Ok(());
        }
        for id in ids {
            self.held.remove(id);
        }
        self.retrying("XACK", |reader| block_on(reader.ack(ids)))?;
        Ok(())
    }

    /// Runs a command, retrying it within the reconnect budget while it fails because the
    /// connection dropped or Redis is away. After such a failure this consumer's pending
    /// entries are read again: a reply lost with the connection left entries pending here that
    /// were never emitted (those already emitted are skipped by `held`).
    fn retrying<T>(
        &mut self,
        command: &str,
        mut run: impl FnMut(&mut RedisStreamReader) -> Result<T, ConnectorError>,
    ) -> Result<T, OperatorError> {
        let budget = self.config.reader.reconnect;
        let started = Instant::now();
        let mut retry = 0;
        loop {
            let reader = self.reader()?;
            match run(reader) {
                Ok(value) => {
                    if retry > 0 {
                        tracing::info!(stream = %self.config.reader.stream, retries = retry,
                            "reconnected to Redis; resuming from the consumer group");
                        self.replay_from = Some(StreamId::ZERO);
                    }
                    return Ok(value);
                }
                Err(e) if e.is_retryable() && retry < budget.attempts => {
                    let delay = budget.delay(retry);
                    tracing::warn!(stream = %self.config.reader.stream, error = %e,
                        retry = retry + 1, of = budget.attempts, ?delay,
                        "Redis command failed; reconnecting");
                    std::thread::sleep(delay);
                    retry += 1;
                }
                Err(e) if e.is_retryable() => {
                    return Err(OperatorError::new(
                        weir_core::ErrorKind::Io,
                        format!(
                            "{e}; gave up after {retry} reconnect attempts over {:.1}s \
                             (the reconnect budget of the {command} command: {} attempts, \
                             {:?} doubling up to {:?})",
                            started.elapsed().as_secs_f64(),
                            budget.attempts,
                            budget.first_delay,
                            budget.max_delay,
                        ),
                    ));
                }
                Err(e) => return Err(OperatorError::from(e)),
            }
        }
    }

    /// Emits a batch; returns how many entries were new (not already held).
    fn emit(&mut self, batch: StreamBatch, out: &mut Vec<ReadResult>) -> usize {
        self.lost += batch.deleted.len() as u64;
        let before = out.len();
        for entry in batch.entries {
            if !self.held.insert(entry.id) {
                continue;
            }
            self.unacked.push(entry.id);
            out.push(Ok(entry.record));
        }
        for bad in batch.invalid {
            if !self.held.insert(bad.id) {
                continue;
            }
            self.unacked.push(bad.id);
            out.push(Err(BadRecord {
                source: self.label.clone(),
                line: 0,
                error: format!("entry {}: {}", bad.id, bad.reason),
                raw: bad.raw,
            }));
        }
        out.len() - before
    }
}

impl Source<ReadResult> for RedisStreamSource {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        let mut config = self.config.reader.clone();
        config.consumer = format!("{}-{}", config.consumer, ctx.instance());
        // The first connection is not retried: a wrong URL or a Redis that is not there at
        // start is reported at once.
        let reader = block_on(RedisStreamReader::connect(config)).map_err(OperatorError::from)?;
        self.reader = Some(reader);
        self.checkpointing = ctx.checkpointing();
        if self.checkpointing {
            let staged: Vec<(CheckpointId, Vec<StreamId>)> =
                weir_core::state::restore_value::<Vec<(CheckpointId, Vec<String>)>>(ctx, "acks")?
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(c, ids)| (c, ids.iter().filter_map(|i| i.parse().ok()).collect()))
                    .collect();
            // The restored checkpoint covers these entries: acknowledge them now.
            let covered: Vec<StreamId> = staged.into_iter().flat_map(|(_, ids)| ids).collect();
            self.ack(&covered)?;
            // What this consumer read after that checkpoint is still pending on it.
            self.replay_from = Some(StreamId::ZERO);
        }
        Ok(())
    }

    fn poll(
        &mut self,
        out: &mut Vec<ReadResult>,
        _max: usize,
        ctx: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError> {
        if self.last_lag.elapsed() >= LAG_EVERY {
            self.last_lag = Instant::now();
            let reader = self.reader()?;
            // Lag is informational: a failed query must not stop the reading.
            if let Ok(lag) = block_on(reader.lag()) {
                // Every instance sees the whole group: report it once.
                if ctx.instance() == 0 {
                    ctx.set_gauge("consumer_lag", (lag.undelivered + lag.pending) as i64);
                }
            }
        }
        if !self.checkpointing {
            // At-least-once: the previous batch has gone through the chain.
            let done = std::mem::take(&mut self.unacked);
            self.ack(&done)?;
        }
        let mut fresh = false;
        let batch = if let Some(read) = self.prefetch.take() {
            match block_on(read) {
                Ok(Ok(batch)) => {
                    fresh = true;
                    batch
                }
                Ok(Err(e)) if e.is_retryable() => {
                    // The reply may have been lost with entries left pending here: read this
                    // consumer's pending entries again (with the reconnect budget).
                    tracing::warn!(stream = %self.config.reader.stream, error = %e,
                        "prefetched Redis read failed; reading pending entries again");
                    self.replay_from = Some(StreamId::ZERO);
                    StreamBatch::default()
                }
                Ok(Err(e)) => return Err(OperatorError::from(e)),
                Err(e) => {
                    return Err(OperatorError::new(
                        ErrorKind::Internal,
                        format!("prefetched Redis read did not finish: {e}"),
                    ));
                }
            }
        } else if let Some(after) = self.replay_from {
            let batch = self.retrying("XREADGROUP", |r| block_on(r.read_own_pending(after)))?;
            // A reconnect during the read starts the replay over; otherwise it moves on.
            if self.replay_from == Some(after) {
                self.replay_from = batch.last_id().filter(|_| !batch.is_empty());
            }
            batch
        } else if self.last_claim.elapsed() >= self.config.claim_every {
            self.last_claim = Instant::now();
            let claimed = self.retrying("XAUTOCLAIM", |r| block_on(r.claim_idle()))?;
            if claimed.is_empty() {
                fresh = true;
                self.retrying("XREADGROUP", |r| block_on(r.read_batch()))?
            } else {
                tracing::info!(stream = %self.config.reader.stream, claimed = claimed.len(),
                    "took over entries left pending by another consumer");
                claimed
            }
        } else {
            fresh = true;
            self.retrying("XREADGROUP", |r| block_on(r.read_batch()))?
        };
        // New entries keep coming: ask for the next ones now. Only with checkpoints, where
        // entries read but never emitted (the job stops or dies first) are read again on
        // restart; without, they would wait for `claim_idle`.
        if self.checkpointing && fresh && !batch.is_empty() && self.replay_from.is_none() {
            let read = self.reader()?.read_batch_detached();
            self.prefetch = Some(crate::io_runtime::spawn(read));
        }
        // Entries come in id order: the first ones are the oldest. An entry id is the time
        // Redis appended it: the batch's ingest time, for end-to-end latency.
        let oldest = [
            batch.entries.first().map(|e| e.id.ms),
            batch.invalid.first().map(|b| b.id.ms),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(ms) = oldest {
            ctx.set_ingest_time(ms.min(i64::MAX as u64) as i64);
        }
        if self.emit(batch, out) == 0 {
            if let Some(limit) = self.config.stop_after_idle
                && self.last_data.elapsed() >= limit
                && self.replay_from.is_none()
            {
                // A quiet stream is not the end of it: the run stops (event time stays, open
                // windows stay in the final checkpoint) rather than drains.
                return Ok(SourceStatus::Stopped);
            }
            return Ok(SourceStatus::Idle);
        }
        self.last_data = Instant::now();
        Ok(SourceStatus::Ready)
    }

    fn snapshot(
        &mut self,
        checkpoint: CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let ids = std::mem::take(&mut self.unacked);
        self.staged.push((checkpoint, ids));
        let state: Vec<(CheckpointId, Vec<String>)> = self
            .staged
            .iter()
            .map(|(c, ids)| (*c, ids.iter().map(StreamId::to_string).collect()))
            .collect();
        weir_core::state::save_value(ctx, "acks", &state)
    }

    fn commit(
        &mut self,
        checkpoint: CheckpointId,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let ready = self
            .staged
            .iter()
            .take_while(|(c, _)| *c <= checkpoint)
            .count();
        let ids: Vec<StreamId> = self
            .staged
            .drain(..ready)
            .flat_map(|(_, ids)| ids)
            .collect();
        self.ack(&ids)
    }

    fn close(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        if let Some(read) = self.prefetch.take() {
            // What it read stays pending on this consumer, for the next run to read first.
            let _ = block_on(read);
        }
        if !self.checkpointing {
            let done = std::mem::take(&mut self.unacked);
            self.ack(&done)?;
        }
        if self.lost > 0 {
            tracing::warn!(stream = %self.config.reader.stream, lost = self.lost,
                "entries were trimmed from the stream before they could be processed");
        }
        Ok(())
    }
}
