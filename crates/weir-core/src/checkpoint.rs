//! Barrier checkpoints: the coordinator and the interface to checkpoint storage.
//!
//! A checkpoint runs like this (aligned Chandy-Lamport, as in Flink):
//! 1. The coordinator asks every source task for barrier `n`.
//! 2. Each source records its read position (`Source::snapshot`) and sends the barrier down its
//!    chain, right after the records it has already emitted; every operator on the way
//!    snapshots its state (`Operator::snapshot`), sinks pre-commit (`Sink::snapshot`).
//! 3. A task behind a channel handles the barrier once it has arrived from every input
//!    (holding back the inputs that delivered it early), then forwards it.
//! 4. Every task acknowledges once its whole chain has handled the barrier. With the last
//!    acknowledgement the checkpoint's metadata is written and it is complete.
//! 5. Every task is told, and calls `commit` on its operators, sinks and sources (phase two of
//!    two-phase commit: files become visible, inserts are made, stream entries acknowledged).
//!
//! When every source has read all its input, the sources wait for one last checkpoint, whose
//! commit covers everything, before they end the stream. A job that completes has therefore
//! committed all its output in a checkpoint, and a restart from that checkpoint reads nothing
//! twice.

use crate::error::{ErrorKind, OperatorError};
use crate::message::CheckpointId;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether a state blob replaces what came before or adds to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatePart {
    /// The complete state.
    Full,
    /// Changes since the previous checkpoint; applied after the blobs before it.
    Delta,
}

/// Where checkpoints are stored.
pub trait SnapshotStore: Send + Sync + 'static {
    /// Starts writing checkpoint `id`. The writer is shared by all task threads.
    fn begin(&self, id: CheckpointId) -> Result<Arc<dyn SnapshotWriter>, String>;
}

/// One checkpoint being written.
pub trait SnapshotWriter: Send + Sync {
    /// Stores a state blob of an operator instance.
    fn put(
        &self,
        operator: &str,
        instance: usize,
        name: &str,
        part: StatePart,
        bytes: Vec<u8>,
    ) -> Result<(), String>;
    /// A fresh directory for state `name` of an operator instance kept as files (an on-disk
    /// store links its tables there), or `None` when this checkpoint keeps only blobs (the
    /// state is then saved as a snapshot blob).
    fn files_dir(
        &self,
        _operator: &str,
        _instance: usize,
        _name: &str,
    ) -> Result<Option<PathBuf>, String> {
        Ok(None)
    }
    /// Records the files placed in [`files_dir`](Self::files_dir) as state `name`. `known`:
    /// xxh3-128 checksums the caller already has, by path relative to the directory;
    /// `new_bytes`: what the store wrote for this checkpoint (the rest is linked).
    fn put_files(
        &self,
        operator: &str,
        instance: usize,
        name: &str,
        _known: &[(String, u128)],
        _new_bytes: u64,
    ) -> Result<(), String> {
        Err(format!(
            "this checkpoint store keeps no files (state '{name}' of {operator}/{instance})"
        ))
    }
    /// Makes the checkpoint complete (durably). `finished`: it is the final checkpoint of a
    /// drained run, covering the whole input (not set when the run stopped).
    fn complete(&self, finished: bool, duration: Duration) -> Result<(), String>;
}

/// A completed checkpoint to resume from.
pub trait RestoredState: Send + Sync {
    fn checkpoint(&self) -> CheckpointId;
    /// The blobs stored under `name` for an operator instance: a full one, then the deltas
    /// after it, in order. Empty when the instance stored nothing under that name.
    fn get(&self, operator: &str, instance: usize, name: &str) -> Result<Vec<Vec<u8>>, String>;
    /// The directory of state `name` of an operator instance if it was kept as files.
    fn files(&self, _operator: &str, _instance: usize, _name: &str) -> Option<PathBuf> {
        None
    }
}

/// Checkpointing settings of a job.
#[derive(Clone)]
pub struct Checkpointing {
    pub interval: Duration,
    pub store: Arc<dyn SnapshotStore>,
    /// Resume from this checkpoint.
    pub restore: Option<Arc<dyn RestoredState>>,
    /// The id of the first checkpoint this run takes (after the restored one).
    pub first_id: CheckpointId,
    /// The restored checkpoint ended a drained run, and this run is a new epoch of it: sources
    /// and sinks continue where it ended, operators (windows, aggregates, joins, event time)
    /// start empty, so new input is neither late nor merged into results already emitted.
    pub new_epoch: bool,
}

impl Checkpointing {
    pub fn new(interval: Duration, store: Arc<dyn SnapshotStore>) -> Self {
        Checkpointing {
            interval,
            store,
            restore: None,
            first_id: 1,
            new_epoch: false,
        }
    }

    pub fn restore_from(mut self, restored: Arc<dyn RestoredState>) -> Self {
        self.first_id = restored.checkpoint() + 1;
        self.restore = Some(restored);
        self
    }
}

struct Pending {
    id: CheckpointId,
    writer: Arc<dyn SnapshotWriter>,
    acks_left: usize,
    started: Instant,
    is_final: bool,
}

/// The error of a failed write into checkpoint `id`.
fn writing(id: CheckpointId) -> impl FnOnce(String) -> OperatorError {
    move |e| OperatorError::new(ErrorKind::Io, format!("writing checkpoint {id}: {e}"))
}

/// Checkpoint state shared by the coordinator and every task of a job.
pub(crate) struct CheckpointShared {
    pub(crate) config: Checkpointing,
    /// Latest barrier the sources are asked for (0: none yet).
    pub(crate) requested: AtomicU64,
    /// Latest completed checkpoint (0: none in this run).
    pub(crate) committed: AtomicU64,
    /// The checkpoint after which the sources end (0: not yet decided).
    pub(crate) final_id: AtomicU64,
    pending: Mutex<Option<Pending>>,
    sources_finished: AtomicUsize,
    /// Sources that stopped rather than drained: the final checkpoint then does not cover the
    /// whole input.
    sources_stopped: AtomicUsize,
    pub(crate) total_sources: AtomicUsize,
    pub(crate) total_tasks: AtomicUsize,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
    /// Outcomes, durations and sizes, for metrics.
    pub(crate) stats: Arc<crate::metrics::CheckpointCounters>,
}

impl CheckpointShared {
    pub(crate) fn new(config: Checkpointing) -> Self {
        CheckpointShared {
            config,
            requested: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            final_id: AtomicU64::new(0),
            pending: Mutex::new(None),
            sources_finished: AtomicUsize::new(0),
            sources_stopped: AtomicUsize::new(0),
            total_sources: AtomicUsize::new(0),
            total_tasks: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            stats: Arc::default(),
        }
    }

    fn writer(&self, id: CheckpointId) -> Result<Arc<dyn SnapshotWriter>, OperatorError> {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.as_ref() {
            Some(p) if p.id == id => Ok(p.writer.clone()),
            _ => Err(OperatorError::new(
                ErrorKind::Internal,
                format!("no checkpoint {id} in progress"),
            )),
        }
    }

    /// Stores a blob for the checkpoint in progress.
    pub(crate) fn put(
        &self,
        id: CheckpointId,
        operator: &str,
        instance: usize,
        name: &str,
        part: StatePart,
        bytes: Vec<u8>,
    ) -> Result<(), OperatorError> {
        let len = bytes.len() as u64;
        self.writer(id)?
            .put(operator, instance, name, part, bytes)
            .map_err(writing(id))?;
        self.stats.wrote(len);
        Ok(())
    }

    /// A directory for state kept as files in the checkpoint in progress (see
    /// [`SnapshotWriter::files_dir`]).
    pub(crate) fn files_dir(
        &self,
        id: CheckpointId,
        operator: &str,
        instance: usize,
        name: &str,
    ) -> Result<Option<PathBuf>, OperatorError> {
        self.writer(id)?
            .files_dir(operator, instance, name)
            .map_err(writing(id))
    }

    /// Records the files of a state kept as files (see [`SnapshotWriter::put_files`]).
    pub(crate) fn put_files(
        &self,
        id: CheckpointId,
        operator: &str,
        instance: usize,
        name: &str,
        known: &[(String, u128)],
        new_bytes: u64,
    ) -> Result<(), OperatorError> {
        self.writer(id)?
            .put_files(operator, instance, name, known, new_bytes)
            .map_err(writing(id))?;
        self.stats.wrote(new_bytes);
        Ok(())
    }

    /// A task handled barrier `id`; the last acknowledgement completes the checkpoint.
    pub(crate) fn ack(&self, id: CheckpointId) -> Result<(), OperatorError> {
        // Completion happens under the lock: the coordinator must not begin the next
        // checkpoint (which may build on this one) before this one is durable.
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let last = match pending.as_mut() {
            Some(p) if p.id == id => {
                p.acks_left = p.acks_left.saturating_sub(1);
                p.acks_left == 0
            }
            _ => false,
        };
        if !last {
            return Ok(());
        }
        let Some(p) = pending.take() else {
            return Ok(());
        };
        // A final checkpoint after a stop leaves input (and open windows) for a later run.
        let drained = p.is_final && self.sources_stopped.load(Ordering::SeqCst) == 0;
        let duration = p.started.elapsed();
        let completed = p.writer.complete(drained, duration);
        if let Err(e) = completed {
            self.stats.failed();
            tracing::error!(checkpoint = id, error = %e, "checkpoint failed");
            // Keep the slot taken: no further checkpoint starts; the job fails.
            *pending = Some(p);
            return Err(OperatorError::new(
                ErrorKind::Io,
                format!("completing checkpoint {id}: {e}"),
            ));
        }
        drop(pending);
        self.stats.completed(duration);
        tracing::info!(
            checkpoint = id,
            final_checkpoint = p.is_final,
            seconds = duration.as_secs_f64(),
            "checkpoint completed"
        );
        self.committed.store(id, Ordering::SeqCst);
        Ok(())
    }

    /// A source read its last record; `ending` says whether it drained or stopped.
    pub(crate) fn source_finished(&self, ending: crate::message::Ending) {
        if ending == crate::message::Ending::Stopped {
            self.sources_stopped.fetch_add(1, Ordering::SeqCst);
        }
        self.sources_finished.fetch_add(1, Ordering::SeqCst);
    }

    fn all_sources_finished(&self) -> bool {
        self.sources_finished.load(Ordering::SeqCst) >= self.total_sources.load(Ordering::SeqCst)
    }

    fn start(&self, id: CheckpointId, is_final: bool) -> Result<(), String> {
        let writer = self.config.store.begin(id)?;
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(Pending {
            id,
            writer,
            acks_left: self.total_tasks.load(Ordering::SeqCst),
            started: Instant::now(),
            is_final,
        });
        if is_final {
            self.final_id.store(id, Ordering::SeqCst);
        }
        self.requested.store(id, Ordering::SeqCst);
        Ok(())
    }

    fn in_progress(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Stops the coordinator (the job is aborting).
    pub(crate) fn abort(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    pub(crate) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The coordinator loop: one checkpoint at a time, every `interval`, and a final one once
    /// every source has read all its input.
    pub(crate) fn coordinate(&self) {
        let mut next = self.config.first_id;
        let mut last_start = Instant::now();
        let tick = self.config.interval.min(Duration::from_millis(20));
        loop {
            std::thread::sleep(tick);
            if self.failed.load(Ordering::SeqCst) {
                return;
            }
            let f = self.final_id.load(Ordering::SeqCst);
            if f != 0 {
                if self.committed.load(Ordering::SeqCst) >= f {
                    return;
                }
                continue;
            }
            if self.in_progress() {
                continue;
            }
            let is_final = self.all_sources_finished();
            if !is_final && last_start.elapsed() < self.config.interval {
                continue;
            }
            if let Err(e) = self.start(next, is_final) {
                self.stats.failed();
                tracing::error!(checkpoint = next, error = %e, "checkpoint failed: cannot start it");
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(format!("cannot start checkpoint {next}: {e}"));
                return;
            }
            last_start = Instant::now();
            next += 1;
        }
    }
}

/// Checkpoints kept in memory: for tests and for embedding where durability is not needed.
#[derive(Default)]
pub struct MemoryCheckpoints {
    completed: Mutex<Vec<Arc<MemoryCheckpoint>>>,
}

type BlobKey = (String, usize, String);
type Blobs = std::collections::HashMap<BlobKey, Vec<Arc<Vec<u8>>>>;

/// One checkpoint held by [`MemoryCheckpoints`].
pub struct MemoryCheckpoint {
    id: CheckpointId,
    blobs: Mutex<Blobs>,
    finished: AtomicBool,
}

impl MemoryCheckpoints {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The latest completed checkpoint.
    pub fn latest(&self) -> Option<Arc<MemoryCheckpoint>> {
        self.completed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .cloned()
    }

    /// Ids of the completed checkpoints, oldest first.
    pub fn completed(&self) -> Vec<CheckpointId> {
        self.completed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|c| c.id)
            .collect()
    }
}

impl MemoryCheckpoint {
    /// Whether this checkpoint covers the whole input.
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }
}

struct MemoryWriter {
    store: Arc<MemoryCheckpoints>,
    checkpoint: Arc<MemoryCheckpoint>,
    /// The previous completed checkpoint: deltas extend its chains.
    base: Option<Arc<MemoryCheckpoint>>,
}

impl SnapshotStore for Arc<MemoryCheckpoints> {
    fn begin(&self, id: CheckpointId) -> Result<Arc<dyn SnapshotWriter>, String> {
        Ok(Arc::new(MemoryWriter {
            store: self.clone(),
            base: self.latest(),
            checkpoint: Arc::new(MemoryCheckpoint {
                id,
                blobs: Mutex::default(),
                finished: AtomicBool::new(false),
            }),
        }))
    }
}

impl SnapshotWriter for MemoryWriter {
    fn put(
        &self,
        operator: &str,
        instance: usize,
        name: &str,
        part: StatePart,
        bytes: Vec<u8>,
    ) -> Result<(), String> {
        let key = (operator.to_string(), instance, name.to_string());
        let mut chain = match (part, &self.base) {
            (StatePart::Delta, Some(base)) => base
                .blobs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned()
                .unwrap_or_default(),
            (StatePart::Delta, None) => {
                return Err(format!(
                    "a delta for {operator}/{instance}/{name} has no base"
                ));
            }
            (StatePart::Full, _) => Vec::new(),
        };
        chain.push(Arc::new(bytes));
        self.checkpoint
            .blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, chain);
        Ok(())
    }

    fn complete(&self, finished: bool, _: Duration) -> Result<(), String> {
        self.checkpoint.finished.store(finished, Ordering::SeqCst);
        self.store
            .completed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(self.checkpoint.clone());
        Ok(())
    }
}

impl RestoredState for MemoryCheckpoint {
    fn checkpoint(&self) -> CheckpointId {
        self.id
    }

    fn get(&self, operator: &str, instance: usize, name: &str) -> Result<Vec<Vec<u8>>, String> {
        let blobs = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        Ok(blobs
            .get(&(operator.to_string(), instance, name.to_string()))
            .map(|chain| chain.iter().map(|b| b.to_vec()).collect())
            .unwrap_or_default())
    }
}
