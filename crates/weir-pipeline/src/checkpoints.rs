//! Checkpoint settings of a pipeline: where checkpoints go and which one a run resumes from.

use crate::{Pipeline, PipelineError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weir_checkpoint::{Checkpoint, CheckpointStore, DirCheckpoints};
use weir_core::{Checkpointing, RestoredState};

/// How a run starts when the pipeline has checkpoints.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// Resume from this checkpoint instead of the latest.
    pub from: Option<u64>,
    /// Start fresh, ignoring existing checkpoints: they are abandoned (see
    /// [`CheckpointPlan::abandon`]).
    pub ignore_state: bool,
}

/// Checkpoints a run leaves behind for good: with `--ignore-state` all earlier ones, with
/// `--from-checkpoint N` those after N. Recorded (durably, in the store) by [`record`] just
/// before the run starts, so that a restart after the run dies before its first checkpoint
/// never goes back to them.
///
/// [`record`]: AbandonEarlierRuns::record
pub struct AbandonEarlierRuns {
    store: CheckpointStore,
    from: Option<u64>,
}

impl AbandonEarlierRuns {
    /// Records the abandonment; returns the completed checkpoints abandoned.
    pub fn record(&self) -> Result<Vec<u64>, weir_checkpoint::CheckpointError> {
        self.store.abandon_later_than(self.from)
    }
}

/// The checkpointing of one run.
pub struct CheckpointPlan {
    pub checkpointing: Checkpointing,
    pub dir: PathBuf,
    /// The checkpoint the run resumes from.
    pub resumed: Option<u64>,
    /// Whether that checkpoint ended a drained run (it covers the whole input read so far):
    /// this run is then a new epoch, see `Checkpointing::new_epoch`.
    pub resumed_finished: bool,
    /// Checkpoints passed over (partial or corrupt), with the reason.
    pub skipped: Vec<String>,
    /// Set for `--ignore-state` and `--from-checkpoint`: record it before starting the run.
    pub abandon: Option<AbandonEarlierRuns>,
}

impl Pipeline {
    /// The checkpoint directory of the pipeline, if it has checkpoints.
    pub fn checkpoint_dir(&self) -> Option<PathBuf> {
        let spec = self.spec.settings.checkpoint.as_ref()?;
        let dir = match &spec.dir {
            Some(dir) => crate::build::resolve(self, dir),
            None => {
                crate::build::resolve(self, &PathBuf::from(".weir/checkpoints").join(self.name()))
            }
        };
        Some(dir)
    }

    /// The checkpoint interval, if the pipeline has checkpoints.
    pub fn checkpoint_interval(&self) -> Result<Option<Duration>, PipelineError> {
        let Some(spec) = &self.spec.settings.checkpoint else {
            return Ok(None);
        };
        Ok(Some(
            spec.interval.map_or(Duration::from_secs(1), |d| d.get()),
        ))
    }

    /// Opens the pipeline's checkpoint store.
    pub fn checkpoint_store(&self) -> Result<Option<CheckpointStore>, PipelineError> {
        let Some(spec) = &self.spec.settings.checkpoint else {
            return Ok(None);
        };
        let Some(dir) = self.checkpoint_dir() else {
            return Ok(None);
        };
        let keep = spec.keep.unwrap_or(3);
        CheckpointStore::open(&dir, keep)
            .map(|s| Some(s.with_job(self.name())))
            .map_err(|e| self.error_at("settings.checkpoint", e.to_string()))
    }

    /// Plans the checkpoints of a run: the store, and the checkpoint to resume from.
    pub fn checkpoint_plan(
        &self,
        resume: &Resume,
    ) -> Result<Option<CheckpointPlan>, PipelineError> {
        let Some(spec) = &self.spec.settings.checkpoint else {
            if resume.from.is_some() {
                return Err(self.error_at(
                    "settings",
                    "--from-checkpoint needs `settings.checkpoint` in the pipeline",
                ));
            }
            return Ok(None);
        };
        let interval = self
            .checkpoint_interval()?
            .unwrap_or(Duration::from_secs(1));
        if interval.is_zero() {
            return Err(self.error_at("settings.checkpoint.interval", "must be longer than zero"));
        }
        if spec.keep == Some(0) {
            return Err(self.error_at("settings.checkpoint.keep", "must be at least 1"));
        }
        let Some(store) = self.checkpoint_store()? else {
            return Ok(None);
        };
        let dir = store.dir().to_path_buf();
        let located = |e: weir_checkpoint::CheckpointError| {
            self.error_at("settings.checkpoint", e.to_string())
        };
        let mut skipped = Vec::new();
        let resumed: Option<Checkpoint> = if resume.ignore_state {
            None
        } else if let Some(id) = resume.from {
            Some(store.get(id).map_err(located)?)
        } else {
            let (latest, passed_over) = store.latest().map_err(located)?;
            skipped = passed_over.iter().map(ToString::to_string).collect();
            latest
        };
        let next = store.next_id().map_err(located)?;
        let abandon = (resume.ignore_state || resume.from.is_some()).then(|| AbandonEarlierRuns {
            store: store.clone(),
            from: resume.from.filter(|_| !resume.ignore_state),
        });
        let resumed = resumed.map(Arc::new);
        let resumed_id = resumed.as_ref().map(|c| c.id());
        let resumed_finished = resumed.as_ref().is_some_and(|c| c.finished());
        let mut checkpointing = Checkpointing::new(
            interval,
            Arc::new(DirCheckpoints::new(store, resumed.clone())),
        );
        if let Some(cp) = resumed {
            checkpointing = checkpointing.restore_from(cp as Arc<dyn RestoredState>);
        }
        // After a drain, new input is a new epoch (see `Checkpointing::new_epoch`).
        checkpointing.new_epoch = resumed_finished;
        checkpointing.first_id = checkpointing.first_id.max(next);
        Ok(Some(CheckpointPlan {
            checkpointing,
            dir,
            resumed: resumed_id,
            resumed_finished,
            skipped,
            abandon,
        }))
    }
}
