//! The checkpoint store as the runtime's storage: [`DirCheckpoints`] implements weir-core's
//! `SnapshotStore`, and a loaded [`Checkpoint`] is a `RestoredState` to resume from.

use crate::{Checkpoint, CheckpointError, CheckpointStore, PendingCheckpoint};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use weir_core::{
    CheckpointId, RestoredState, SnapshotError, SnapshotStore, SnapshotWriter, StatePart,
};

/// Metadata key under which a checkpoint records that it covers the whole input.
pub const FINISHED_KEY: &str = "finished";
/// Operator name used for job-level metadata.
pub const JOB_ENTRY: &str = "_job";

/// Checkpoints of a running job, written into a [`CheckpointStore`]. An incremental state
/// blob (`StatePart::Delta`) extends the chain its operator had in the previous completed
/// checkpoint of this run (or the one it resumed from).
pub struct DirCheckpoints {
    store: CheckpointStore,
    previous: Arc<Mutex<Option<Arc<Checkpoint>>>>,
}

impl DirCheckpoints {
    /// `resumed`: the checkpoint the run starts from, if any.
    pub fn new(store: CheckpointStore, resumed: Option<Arc<Checkpoint>>) -> Self {
        DirCheckpoints {
            store,
            previous: Arc::new(Mutex::new(resumed)),
        }
    }
}

impl SnapshotStore for DirCheckpoints {
    fn begin(&self, id: CheckpointId) -> Result<Arc<dyn SnapshotWriter>, SnapshotError> {
        let pending = self.store.begin(id).map_err(SnapshotError::store)?;
        let base = self
            .previous
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(Arc::new(DirWriter {
            id,
            store: self.store.clone(),
            pending: RwLock::new(Some(pending)),
            base,
            previous: self.previous.clone(),
        }))
    }
}

struct DirWriter {
    id: CheckpointId,
    store: CheckpointStore,
    pending: RwLock<Option<PendingCheckpoint>>,
    base: Option<Arc<Checkpoint>>,
    previous: Arc<Mutex<Option<Arc<Checkpoint>>>>,
}

impl DirWriter {
    /// Runs `f` on the checkpoint being written (an error once it is complete).
    fn with_pending<T>(
        &self,
        f: impl FnOnce(&PendingCheckpoint) -> Result<T, CheckpointError>,
    ) -> Result<T, SnapshotError> {
        let guard = self.pending.read().unwrap_or_else(|p| p.into_inner());
        let pending = guard
            .as_ref()
            .ok_or(SnapshotError::AlreadyComplete(self.id))?;
        f(pending).map_err(SnapshotError::store)
    }
}

impl SnapshotWriter for DirWriter {
    fn put(
        &self,
        operator: &str,
        instance: usize,
        name: &str,
        part: StatePart,
        bytes: Vec<u8>,
    ) -> Result<(), SnapshotError> {
        let base = match part {
            StatePart::Delta => Some(self.base.as_ref().ok_or_else(|| SnapshotError::NoBase {
                operator: operator.to_string(),
                instance,
                name: name.to_string(),
            })?),
            StatePart::Full => None,
        };
        self.with_pending(|pending| {
            for blob in base.map_or(&[][..], |b| b.chain(operator, instance, name)) {
                pending.reuse(blob)?;
            }
            pending
                .write_blob(operator, instance, name, &bytes)
                .map(|_| ())
        })
    }

    fn files_dir(
        &self,
        operator: &str,
        instance: usize,
        name: &str,
    ) -> Result<Option<PathBuf>, SnapshotError> {
        self.with_pending(|p| p.files_dir(operator, instance, name).map(Some))
    }

    fn put_files(
        &self,
        operator: &str,
        instance: usize,
        name: &str,
        known: &[(String, u128)],
        new_bytes: u64,
    ) -> Result<(), SnapshotError> {
        self.with_pending(|p| {
            p.put_files(operator, instance, name, known, new_bytes)
                .map(|_| ())
        })
    }

    fn complete(&self, finished: bool, _duration: Duration) -> Result<(), SnapshotError> {
        let pending = self
            .pending
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or(SnapshotError::AlreadyComplete(self.id))?;
        pending
            .put_meta(
                JOB_ENTRY,
                0,
                FINISHED_KEY,
                serde_json::Value::Bool(finished),
            )
            .map_err(SnapshotError::store)?;
        pending.complete().map_err(SnapshotError::store)?;
        let completed = self.store.get(self.id).map_err(SnapshotError::store)?;
        *self.previous.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(completed));
        Ok(())
    }
}

impl RestoredState for Checkpoint {
    fn checkpoint(&self) -> CheckpointId {
        self.id()
    }

    fn get(
        &self,
        operator: &str,
        instance: usize,
        name: &str,
    ) -> Result<Vec<Vec<u8>>, SnapshotError> {
        self.blobs(operator, instance, name)
            .map_err(SnapshotError::store)
    }

    fn files(&self, operator: &str, instance: usize, name: &str) -> Option<PathBuf> {
        self.files_dir(operator, instance, name)
    }
}

impl Checkpoint {
    /// Whether this checkpoint was the last of a run that read all its input.
    pub fn finished(&self) -> bool {
        self.meta(JOB_ENTRY, 0, FINISHED_KEY)
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }
}
