//! The seams user code and connectors plug into: [`Operator`], [`Source`] and [`Sink`].
//!
//! Each has one required method working on a whole batch, and defaulted hooks for everything
//! the runtime drives: start, watermarks, processing-time ticks, checkpoint barriers (snapshot),
//! checkpoint completion (commit, phase two of two-phase commit) and end of input.

use crate::checkpoint::{CheckpointShared, StatePart};
use crate::error::OperatorError;
use crate::message::{BEFORE_TIME, CheckpointId, Clock, SystemClock, Timestamp};
use crate::metrics::Counters;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use weir_state::{StateKey, StateValue};

/// Where an operator instance runs and what it may ask of the job.
pub struct OperatorContext {
    pub(crate) name: Arc<str>,
    pub(crate) instance: usize,
    pub(crate) parallelism: usize,
    /// Records this instance received before the current batch.
    pub(crate) position: u64,
    pub(crate) watermark: Timestamp,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) clock: Arc<dyn Clock>,
    /// What the operator asked to send downstream besides records.
    pub(crate) emitted: Emitted,
    pub(crate) checkpoints: Option<Arc<CheckpointShared>>,
    /// The checkpoint whose barrier is being handled.
    pub(crate) checkpoint: CheckpointId,
    /// Per state name: blobs in its current chain (a full snapshot and the deltas after it).
    pub(crate) chains: std::collections::HashMap<String, usize>,
    pub(crate) state: weir_state::StoreFactory,
    /// How long a source may wait to fill a batch before it returns a partial one.
    pub(crate) batch_timeout: std::time::Duration,
    /// Whether this instance restores its state from the checkpoint the job resumes from
    /// (operators do not when that checkpoint ended a drained run: a new epoch).
    pub(crate) restores: bool,
    /// A source's batch: when its oldest record entered the outside system, if the source
    /// says (`BEFORE_TIME`: the poll's own time is used).
    pub(crate) ingest: Timestamp,
    /// Per keyed state: its size in bytes when last saved, the average size of an entry in
    /// its latest full snapshot, and the checkpoint it was last saved in (see
    /// `state::save_keyed`).
    pub(crate) state_sizes: std::collections::HashMap<String, (u64, f64, CheckpointId)>,
}

/// Watermark or idleness an operator emitted during a call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Emitted {
    #[default]
    Nothing,
    Watermark(Timestamp),
    Idle,
}

impl OperatorContext {
    pub(crate) fn new(
        name: Arc<str>,
        instance: usize,
        parallelism: usize,
        stop: Arc<AtomicBool>,
        counters: Arc<Counters>,
    ) -> Self {
        OperatorContext {
            name,
            instance,
            parallelism,
            position: 0,
            watermark: BEFORE_TIME,
            stop,
            counters,
            clock: Arc::new(SystemClock),
            emitted: Emitted::Nothing,
            checkpoints: None,
            checkpoint: 0,
            chains: std::collections::HashMap::new(),
            state: weir_state::StoreFactory::default(),
            batch_timeout: std::time::Duration::from_millis(5),
            restores: true,
            ingest: BEFORE_TIME,
            state_sizes: std::collections::HashMap::new(),
        }
    }

    pub(crate) fn with_batch_timeout(mut self, batch_timeout: std::time::Duration) -> Self {
        self.batch_timeout = batch_timeout;
        self
    }

    pub(crate) fn without_restore(mut self) -> Self {
        self.restores = false;
        self
    }

    /// How long a source may wait for more input to fill a batch: once it has records and
    /// this has passed since the batch started, it returns what it has.
    pub fn batch_timeout(&self) -> std::time::Duration {
        self.batch_timeout
    }

    /// The checkpoint this instance restores from, if any.
    fn restore(&self) -> Option<&Arc<dyn crate::checkpoint::RestoredState>> {
        if !self.restores {
            return None;
        }
        self.checkpoints
            .as_ref()
            .and_then(|c| c.config.restore.as_ref())
    }

    pub(crate) fn with_state(mut self, state: weir_state::StoreFactory) -> Self {
        self.state = state;
        self
    }

    /// A keyed store for this operator instance on the job's state backend (in memory, or on
    /// disk under `<path>/<operator>-<instance>` for state larger than memory).
    pub fn keyed_store<K: StateKey, V: StateValue>(
        &self,
    ) -> Result<weir_state::AnyStore<K, V>, OperatorError> {
        self.state.create(&self.name, self.instance).map_err(|e| {
            OperatorError::new(
                crate::error::ErrorKind::Io,
                format!("opening the state store: {e}"),
            )
        })
    }

    /// One of several keyed stores of this operator instance, told apart by `state` (a keyed
    /// process function's value, map and list states): in memory, or on disk under
    /// `<path>/<operator>-<instance>~<state>`. Save and restore it with
    /// [`save_keyed`](crate::state::save_keyed) under a checkpoint name of its own.
    pub fn keyed_store_named<K: StateKey, V: StateValue>(
        &self,
        state: &str,
    ) -> Result<weir_state::AnyStore<K, V>, OperatorError> {
        self.state
            .create_named(&self.name, state, self.instance)
            .map_err(|e| {
                OperatorError::new(
                    crate::error::ErrorKind::Io,
                    format!("opening the state store '{state}': {e}"),
                )
            })
    }

    pub(crate) fn with_checkpoints(mut self, checkpoints: Option<Arc<CheckpointShared>>) -> Self {
        self.checkpoints = checkpoints;
        self
    }

    /// Whether the job takes checkpoints (so sinks should pre-commit and commit).
    pub fn checkpointing(&self) -> bool {
        self.checkpoints.is_some()
    }

    /// In `snapshot`: stores this instance's state under `name` for the checkpoint being taken.
    pub fn save_state(
        &self,
        name: &str,
        part: StatePart,
        bytes: Vec<u8>,
    ) -> Result<(), OperatorError> {
        match &self.checkpoints {
            Some(c) => c.put(
                self.checkpoint,
                &self.name,
                self.instance,
                name,
                part,
                bytes,
            ),
            None => Ok(()),
        }
    }

    /// In `snapshot`: a fresh directory for state `name` kept as files in the checkpoint being
    /// taken, or `None` when the checkpoint keeps only blobs (or the job takes none).
    pub fn state_files_dir(&self, name: &str) -> Result<Option<PathBuf>, OperatorError> {
        match &self.checkpoints {
            Some(c) => c.files_dir(self.checkpoint, &self.name, self.instance, name),
            None => Ok(None),
        }
    }

    /// In `snapshot`: records the files placed in [`state_files_dir`](Self::state_files_dir)
    /// as state `name`; `known` are xxh3-128 checksums already known, by relative path, and
    /// `new_bytes` what the store wrote for this checkpoint.
    pub fn save_state_files(
        &self,
        name: &str,
        known: &[(String, u128)],
        new_bytes: u64,
    ) -> Result<(), OperatorError> {
        match &self.checkpoints {
            Some(c) => c.put_files(
                self.checkpoint,
                &self.name,
                self.instance,
                name,
                known,
                new_bytes,
            ),
            None => Ok(()),
        }
    }

    /// The directory of state `name` in the checkpoint the job resumed from, if it was kept
    /// as files.
    pub fn restored_state_files(&self, name: &str) -> Option<PathBuf> {
        self.restore()
            .and_then(|r| r.files(&self.name, self.instance, name))
    }

    /// The id of the checkpoint whose barrier is being handled (in `snapshot` and `commit`).
    pub fn checkpoint_id(&self) -> CheckpointId {
        self.checkpoint
    }

    /// In `open`: the state this instance stored under `name` in the checkpoint the job
    /// resumes from (a full blob then deltas, in order); empty on a fresh start.
    pub fn restored_state(&self, name: &str) -> Result<Vec<Vec<u8>>, OperatorError> {
        match self.restore() {
            Some(r) => r.get(&self.name, self.instance, name).map_err(|e| {
                OperatorError::new(
                    crate::error::ErrorKind::Io,
                    format!("reading checkpoint {}: {e}", r.checkpoint()),
                )
            }),
            None => Ok(Vec::new()),
        }
    }

    /// The id the first checkpoint of this run will have (ids then follow each other): lets a
    /// sink tag output with the checkpoint it will belong to before the barrier arrives.
    pub fn first_checkpoint_id(&self) -> CheckpointId {
        self.checkpoints.as_ref().map_or(1, |c| c.config.first_id)
    }

    /// The checkpoint the job resumed from, if any.
    pub fn restored_checkpoint(&self) -> Option<CheckpointId> {
        self.restore().map(|r| r.checkpoint())
    }

    pub(crate) fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// A context for driving an operator by hand (tests, embedding).
    pub fn detached(name: &str) -> Self {
        Self::detached_instance(name, 0, 1)
    }

    /// A detached context of instance `instance` of `parallelism` (for a source that splits its
    /// input between instances).
    pub fn detached_instance(name: &str, instance: usize, parallelism: usize) -> Self {
        Self::new(
            name.into(),
            instance,
            parallelism,
            Arc::new(AtomicBool::new(false)),
            Arc::default(),
        )
    }

    /// A detached context whose processing time comes from `clock`.
    pub fn detached_with_clock(name: &str, clock: Arc<dyn Clock>) -> Self {
        Self::detached(name).with_clock(clock)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// This instance's index, `0..parallelism`.
    pub fn instance(&self) -> usize {
        self.instance
    }

    pub fn parallelism(&self) -> usize {
        self.parallelism
    }

    /// Position of the first record of the current batch in this instance's input.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The current event-time watermark at this operator's input.
    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// Asks every source of the job to finish; what is in flight still drains.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether the job has been asked to stop.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// In a source's `poll`: the records of this batch entered the outside system at
    /// `ingest_ms` or later (wall clock, milliseconds since the epoch; e.g. the oldest Redis
    /// stream entry id's time). End-to-end latency is measured from it; without it, from the
    /// poll. Call once per batch, not per record.
    pub fn set_ingest_time(&mut self, ingest_ms: Timestamp) {
        self.ingest = if self.ingest == BEFORE_TIME {
            ingest_ms
        } else {
            self.ingest.min(ingest_ms)
        };
    }

    /// Reports a level (e.g. `consumer_lag`), shown in progress output and metrics.
    pub fn set_gauge(&self, name: &'static str, value: i64) {
        self.counters.set_gauge(name, value);
    }

    /// Counts records routed to an error output.
    pub fn count_errors(&self, n: u64) {
        self.counters.add_errors(n);
    }

    /// Makes a resilience policy around this operator's calls visible in metrics under
    /// `name` (replacing one reported before under that name). Call it once, e.g. in `open`.
    pub fn report_policy(&self, name: &str, report: Arc<dyn crate::metrics::PolicyReport>) {
        self.counters.add_policy(name, report);
    }

    /// Processing time, in milliseconds since the epoch, from the job's clock.
    pub fn processing_time(&self) -> Timestamp {
        self.clock.now_ms()
    }

    /// Emits a watermark downstream (after the records of the current call). Only advancing
    /// watermarks are forwarded. Operators that assign event time use this.
    pub fn emit_watermark(&mut self, watermark: Timestamp) {
        self.emitted = match self.emitted {
            Emitted::Watermark(w) => Emitted::Watermark(w.max(watermark)),
            _ => Emitted::Watermark(watermark),
        };
    }

    /// Declares this instance idle: downstream operators leave it out of their minimum
    /// watermark until it emits records or a watermark again.
    pub fn emit_idle(&mut self) {
        self.emitted = Emitted::Idle;
    }
}

/// A transformation from batches of `In` to batches of `Out`.
pub trait Operator<In, Out>: Send + 'static {
    /// Called once before the first batch.
    fn open(&mut self, _ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Processes a batch. The operator takes the records it needs out of `input` (whatever is
    /// left is discarded) and appends its results to `out`.
    fn process(
        &mut self,
        input: &mut Vec<In>,
        out: &mut Vec<Out>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError>;

    /// The watermark at this operator's input advanced to `watermark`. Returns the watermark to
    /// forward downstream (by default the same one), or `None` to hold it back.
    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        _out: &mut Vec<Out>,
        _ctx: &mut OperatorContext,
    ) -> Result<Option<Timestamp>, OperatorError> {
        Ok(Some(watermark))
    }

    /// Called periodically (processing time), also when no data arrives.
    fn on_tick(
        &mut self,
        _out: &mut Vec<Out>,
        _ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// A checkpoint barrier passed: snapshot the state that the checkpoint covers.
    fn snapshot(
        &mut self,
        _checkpoint: CheckpointId,
        _ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The checkpoint completed everywhere: make its effects final.
    fn commit(
        &mut self,
        _checkpoint: CheckpointId,
        _ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// End of input: emit whatever is still held. Called once, after the last batch, when the
    /// stream drained; not when a job with checkpoints stopped (what the operator holds is in
    /// the final checkpoint, and a resumed run continues it).
    fn close(
        &mut self,
        _out: &mut Vec<Out>,
        _ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        Ok(())
    }
}

/// Where a stream ends.
pub trait Sink<T>: Send + 'static {
    fn open(&mut self, _ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Writes a batch; the sink takes the records out of `batch`.
    fn write(&mut self, batch: &mut Vec<T>, ctx: &mut OperatorContext)
    -> Result<(), OperatorError>;

    /// Called periodically (processing time): flush on an interval here.
    fn on_tick(&mut self, _ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The input went quiet (a source returned less than a full batch, within the job's batch
    /// timeout): make buffered output visible now, unless a transaction holds it back.
    fn flush(&mut self, _ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        Ok(())
    }

    /// A checkpoint barrier passed: pre-commit what was written before it.
    fn snapshot(
        &mut self,
        _checkpoint: CheckpointId,
        _ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The checkpoint completed everywhere: make the pre-committed output visible.
    fn commit(
        &mut self,
        _checkpoint: CheckpointId,
        _ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// End of input: flush everything. Called once.
    fn close(&mut self, _ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        Ok(())
    }
}

/// What a [`Source::poll`] call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// More may be available right away.
    Ready,
    /// Nothing available now; poll again later.
    Idle,
    /// The source is exhausted: the run drains (event time goes to the end, everything
    /// fires).
    Finished,
    /// This instance stops reading although the input may go on (e.g. `stop_after_idle`): the
    /// run stops without advancing event time, as on a stop request.
    Stopped,
}

/// Where a stream begins. One instance per parallel source task.
pub trait Source<T>: Send + 'static {
    fn open(&mut self, _ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Appends up to `max` records to `out`.
    fn poll(
        &mut self,
        out: &mut Vec<T>,
        max: usize,
        ctx: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError>;

    /// A checkpoint starts at this source: record the read position.
    fn snapshot(
        &mut self,
        _checkpoint: CheckpointId,
        _ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The checkpoint completed everywhere (e.g. acknowledge what it covers).
    fn commit(
        &mut self,
        _checkpoint: CheckpointId,
        _ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    fn close(&mut self, _ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        Ok(())
    }
}
