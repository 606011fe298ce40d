//! Starting a pipeline on the runtime: the one lifecycle shared by `weir run` and `weir serve`.
//!
//! load → checkpoint plan (resume from the latest checkpoint, or the one asked for) → build on
//! an [`Environment`] → record abandoned checkpoints → start. The returned [`Started`] holds
//! the [`RunningJob`]: [`RunningJob::stop`] stops with a checkpoint (not a drain, unless
//! [`StartOptions::drain`]), [`RunningJob::cancel`] aborts, [`RunningJob::wait`] ends it.

use crate::{Pipeline, PipelineError, Resume};
use std::fmt;
use weir_core::{Environment, RunningJob};

/// How to start a pipeline.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Override the pipeline's parallelism.
    pub parallelism: Option<usize>,
    /// Drain when the run stops (event time to the end, every window fires).
    pub drain: bool,
    /// Which checkpoint to resume from.
    pub resume: Resume,
}

/// Something worth telling whoever started the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A warning (a checkpoint passed over, a questionable setting).
    Warning(String),
    /// What the run does (resumes from a checkpoint, abandons some).
    Info(String),
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Warning(w) => write!(f, "warning: {w}"),
            Notice::Info(i) => f.write_str(i),
        }
    }
}

/// Why a pipeline did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The pipeline or its settings are wrong (exit 2, HTTP 400).
    #[error("{0}")]
    BadInput(#[from] PipelineError),
    /// Recording abandoned checkpoints failed.
    #[error("{0}")]
    Checkpoint(#[from] weir_checkpoint::CheckpointError),
    /// The runtime refused to start the job.
    #[error("{0}")]
    Job(#[from] weir_core::JobError),
}

/// A started pipeline.
pub struct Started {
    pub job: RunningJob,
    /// The checkpoint the run resumed from.
    pub resumed: Option<u64>,
}

/// Plans checkpoints, builds and starts `pipeline` on a new [`Environment`]. `notify` hears
/// each [`Notice`] as it happens (also those before an error).
pub fn start(
    pipeline: &Pipeline,
    options: &StartOptions,
    notify: &mut dyn FnMut(Notice),
) -> Result<Started, StartError> {
    let mut config = pipeline.config();
    if let Some(p) = options.parallelism {
        config.parallelism = p;
    }
    config.drain_on_stop = options.drain;
    let mut abandon = None;
    let mut resumed = None;
    if let Some(mut plan) = pipeline.checkpoint_plan(&options.resume)? {
        for skipped in &plan.skipped {
            notify(Notice::Warning(skipped.clone()));
        }
        match plan.resumed {
            Some(id) if plan.resumed_finished => notify(Notice::Info(format!(
                "{}: checkpoint {id} ended a drained run: new input is a new epoch (sources continue where it ended; windows, aggregates and event time start empty; --ignore-state starts over)",
                pipeline.name()
            ))),
            Some(id) => notify(Notice::Info(format!(
                "{}: resuming from checkpoint {id} in {}",
                pipeline.name(),
                plan.dir.display()
            ))),
            None => {}
        }
        resumed = plan.resumed;
        abandon = plan.abandon.take();
        config.checkpointing = Some(plan.checkpointing);
    }
    let env = Environment::with_config(config);
    let built = pipeline.build(&env)?;
    built
        .warnings()
        .iter()
        .for_each(|w| notify(Notice::Warning(w.to_string())));
    let name = pipeline.name();
    // Recorded only now that the run is about to start: a pipeline refused above abandons
    // nothing.
    if let Some(abandon) = abandon {
        let ids = abandon.record()?;
        if !ids.is_empty() {
            notify(Notice::Info(format!(
                "{name}: checkpoints {} abandoned: no later run resumes from them",
                ids.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let job = env.start()?;
    Ok(Started { job, resumed })
}
