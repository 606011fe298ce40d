//! The pipeline manager: any number of pipelines, each a job of the runtime `weir run` uses
//! (started by [`weir_pipeline::lifecycle`]), with its checkpoints under the data dir.
//!
//! Layout of the data dir:
//! - `pipelines/NAME.yaml`: the pipeline as submitted; relative paths in it resolve against
//!   `pipelines/`.
//! - `pipelines/NAME.state.json`: `{"desired": "running" | "stopped" | "finished" | "failed"}`;
//!   on start the server resumes every pipeline whose desired state is `running`.
//! - `checkpoints/NAME/`: the pipeline's checkpoints (a `dir` in the file is refused).
//! - `schemas/`: the schema registry; a pipeline without `schemas` uses it.

use crate::error::ApiError;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use weir_core::{JobMetrics, OperatorMetrics, RunningJob};
use weir_pipeline::lifecycle::{self, StartError, StartOptions};
use weir_pipeline::spec::CheckpointSpec;
use weir_pipeline::{Pipeline, PipelineError};

/// What a pipeline is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Being started (its name is taken).
    Starting,
    Running,
    Stopped,
    Finished,
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Finished => "finished",
            Status::Failed => "failed",
        }
    }
}

struct Entry {
    text: String,
    status: Status,
    job: Option<RunningJob>,
    /// Live counters of the current (or last) run.
    metrics: Option<JobMetrics>,
    /// Final per-operator counts of the last run.
    last_operators: Vec<OperatorMetrics>,
    last_error: Option<String>,
    resumed_from: Option<u64>,
    started: Instant,
    checkpoint_interval: Option<Duration>,
    /// Checkpoints completed by this run, and when that count last grew.
    checkpoints_completed: u64,
    checkpoint_progress: Instant,
    notices: Vec<String>,
}

/// The pipelines of one server.
pub struct Manager {
    data_dir: PathBuf,
    metrics: weir_telemetry::Metrics,
    entries: Mutex<BTreeMap<String, Entry>>,
}

/// Why a pipeline did not start, for the HTTP answer.
fn start_error(e: StartError) -> ApiError {
    match e {
        StartError::BadInput(p) => ApiError::pipeline(&p),
        other => ApiError::internal(other.to_string()),
    }
}

impl Manager {
    /// Opens (creates) the data dir.
    pub fn open(
        data_dir: &Path,
        metrics: weir_telemetry::Metrics,
    ) -> std::io::Result<Arc<Manager>> {
        std::fs::create_dir_all(data_dir.join("pipelines"))?;
        std::fs::create_dir_all(data_dir.join("checkpoints"))?;
        std::fs::create_dir_all(data_dir.join("schemas"))?;
        let data_dir = std::path::absolute(data_dir)?;
        Ok(Arc::new(Manager {
            data_dir,
            metrics,
            entries: Mutex::new(BTreeMap::new()),
        }))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn registry_dir(&self) -> PathBuf {
        self.data_dir.join("schemas")
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn yaml_path(&self, name: &str) -> PathBuf {
        self.data_dir.join("pipelines").join(format!("{name}.yaml"))
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.data_dir
            .join("pipelines")
            .join(format!("{name}.state.json"))
    }

    fn checkpoint_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join("checkpoints").join(name)
    }

    /// Parses pipeline text as the server runs it: checkpoints under the data dir, the
    /// server's registry unless the pipeline names one.
    fn prepare(&self, text: &str, file: &Path) -> Result<Pipeline, PipelineError> {
        let mut pipeline = Pipeline::parse(text, &file.display().to_string())?;
        if pipeline.spec.name.is_none() {
            return Err(PipelineError {
                file: file.display().to_string(),
                line: None,
                key: Some("name".into()),
                message: "a pipeline submitted to the server needs a `name`".into(),
            });
        }
        let name = pipeline.name();
        let dir = self.checkpoint_dir(&name);
        match &mut pipeline.spec.settings.checkpoint {
            Some(cp) if cp.dir.is_some() => {
                return Err(pipeline.error_at(
                    "settings.checkpoint.dir",
                    format!(
                        "the server keeps each pipeline's checkpoints in its data dir ({}): remove `dir`",
                        dir.display()
                    ),
                ));
            }
            Some(cp) => cp.dir = Some(dir),
            None => {
                pipeline.spec.settings.checkpoint = Some(CheckpointSpec {
                    interval: None,
                    dir: Some(dir),
                    keep: None,
                })
            }
        }
        if pipeline.spec.schemas.is_none() {
            pipeline.spec.schemas = Some(self.registry_dir());
        }
        Ok(pipeline)
    }

    /// Submits a new pipeline: 201 and started; 400 on a bad one; 409 if the name is taken.
    pub async fn submit(self: &Arc<Self>, text: String) -> Result<Value, ApiError> {
        let submitted = self.data_dir.join("pipelines").join("submitted.yaml");
        let pipeline = self
            .prepare(&text, &submitted)
            .map_err(|e| ApiError::pipeline(&e))?;
        let name = pipeline.name();
        {
            let mut entries = self.lock();
            if entries.contains_key(&name) {
                return Err(ApiError::conflict(
                    "name_taken",
                    format!("a pipeline named `{name}` exists (DELETE it first)"),
                ));
            }
            entries.insert(name.clone(), Entry::new(text.clone()));
        }
        let result = self.start(&name, &text).await;
        if let Err(e) = result {
            self.lock().remove(&name);
            return Err(e);
        }
        let persisted = write_atomic(&self.yaml_path(&name), text.as_bytes())
            .and_then(|()| self.persist_desired(&name, Status::Running));
        if let Err(e) = persisted {
            tracing::error!(pipeline = %name, "cannot persist the pipeline: {e}");
            return Err(ApiError::internal(format!(
                "pipeline `{name}` started but could not be saved in the data dir: {e}"
            )));
        }
        self.describe(&name)
    }

    /// Starts the run of an entry (new, resumed or restarted): the lifecycle of `weir run` on
    /// a blocking thread (the environment lives on one thread).
    async fn start(self: &Arc<Self>, name: &str, text: &str) -> Result<(), ApiError> {
        let file = self.yaml_path(name);
        let pipeline = self
            .prepare(text, &file)
            .map_err(|e| ApiError::pipeline(&e))?;
        let interval = pipeline
            .checkpoint_interval()
            .map_err(|e| ApiError::pipeline(&e))?;
        // The job's task threads enter spans under this one: their events carry `pipeline`
        // (and the `request_id` of the request that started it), and `operator`.
        let span = tracing::info_span!("pipeline", pipeline = %name);
        let started = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut notices = Vec::new();
            let started = lifecycle::start(&pipeline, &StartOptions::default(), &mut |n| {
                notices.push(n.to_string())
            });
            let connectors = match &started {
                Ok(s) => pipeline.connectors_of(s.job.metrics()),
                Err(_) => BTreeMap::new(),
            };
            (started, notices, connectors)
        })
        .await
        .map_err(|e| ApiError::internal(format!("the start task failed: {e}")))?;
        let (started, notices, connectors) = started;
        for n in &notices {
            tracing::info!(pipeline = %name, "{n}");
        }
        let started = started.map_err(start_error)?;
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(name) else {
            // Deleted meanwhile.
            started.job.cancel();
            return Err(ApiError::not_found(format!(
                "pipeline `{name}` was deleted"
            )));
        };
        entry.metrics = Some(started.job.metrics().clone());
        // `/metrics` shows the counters of the current run, added to those of the earlier
        // runs of this pipeline in this process (stopped and resumed).
        self.metrics
            .register_job_with_connectors(name, started.job.metrics().clone(), connectors);
        entry.job = Some(started.job);
        entry.status = Status::Running;
        entry.last_error = None;
        entry.resumed_from = started.resumed;
        entry.started = Instant::now();
        entry.checkpoint_interval = interval;
        entry.checkpoints_completed = 0;
        entry.checkpoint_progress = Instant::now();
        entry.notices = notices;
        tracing::info!(pipeline = %name, "running");
        Ok(())
    }

    /// Resumes every pipeline of the data dir whose desired state is `running`; loads the
    /// others as they were.
    pub async fn restore(self: &Arc<Self>) -> Vec<String> {
        let mut problems = Vec::new();
        let dir = self.data_dir.join("pipelines");
        let Ok(read) = std::fs::read_dir(&dir) else {
            return problems;
        };
        let mut names: Vec<String> = read
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.strip_suffix(".yaml").map(str::to_string)
            })
            .filter(|n| weir_pipeline::is_pipeline_name(n))
            .collect();
        names.sort();
        for name in names {
            let text = match std::fs::read_to_string(self.yaml_path(&name)) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(format!("{name}: cannot read: {e}"));
                    continue;
                }
            };
            let desired = std::fs::read_to_string(self.state_path(&name))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v["desired"].as_str().map(str::to_string))
                .unwrap_or_else(|| "running".into());
            let mut entry = Entry::new(text.clone());
            entry.status = match desired.as_str() {
                "stopped" => Status::Stopped,
                "finished" => Status::Finished,
                "failed" => Status::Failed,
                _ => Status::Starting,
            };
            self.lock().insert(name.clone(), entry);
            if desired == "running" {
                tracing::info!(pipeline = %name, "resuming after the server's restart");
                if let Err(e) = self.start(&name, &text).await {
                    let message = e.message.clone();
                    if let Some(entry) = self.lock().get_mut(&name) {
                        entry.status = Status::Failed;
                        entry.last_error = Some(message.clone());
                    }
                    problems.push(format!("{name}: {message}"));
                }
            }
        }
        problems
    }

    fn persist_desired(&self, name: &str, desired: Status) -> std::io::Result<()> {
        let body = json!({ "desired": desired.as_str() }).to_string();
        write_atomic(&self.state_path(name), body.as_bytes())
    }

    /// Stops a pipeline with a checkpoint (not a drain) and waits until it has stopped.
    pub async fn stop(self: &Arc<Self>, name: &str) -> Result<Value, ApiError> {
        self.halt(name).await?;
        self.persist_desired(name, Status::Stopped)
            .map_err(|e| ApiError::internal(format!("cannot save the state: {e}")))?;
        self.describe(name)
    }

    /// Stops the job if it runs; the entry ends `stopped` (or `failed`).
    async fn halt(self: &Arc<Self>, name: &str) -> Result<(), ApiError> {
        let job = {
            let mut entries = self.lock();
            let entry = entries
                .get_mut(name)
                .ok_or_else(|| ApiError::not_found(format!("no pipeline named `{name}`")))?;
            if entry.status == Status::Starting {
                return Err(ApiError::conflict(
                    "starting",
                    format!("pipeline `{name}` is starting; try again"),
                ));
            }
            entry.job.take()
        };
        let Some(job) = job else {
            return Ok(());
        };
        job.stop();
        let result = tokio::task::spawn_blocking(move || job.wait())
            .await
            .map_err(|e| ApiError::internal(format!("the stop task failed: {e}")))?;
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(name) {
            match result {
                Ok(done) => {
                    entry.status = Status::Stopped;
                    entry.last_operators = done.operators;
                }
                Err(e) => {
                    entry.status = Status::Failed;
                    entry.last_error = Some(e.to_string());
                }
            }
        }
        tracing::info!(pipeline = %name, "stopped");
        Ok(())
    }

    /// Resumes a stopped, finished or failed pipeline from its latest checkpoint.
    pub async fn resume(self: &Arc<Self>, name: &str) -> Result<Value, ApiError> {
        let text = {
            let mut entries = self.lock();
            let entry = entries
                .get_mut(name)
                .ok_or_else(|| ApiError::not_found(format!("no pipeline named `{name}`")))?;
            match entry.status {
                Status::Running => return self.describe_locked(name, entry),
                Status::Starting => {
                    return Err(ApiError::conflict(
                        "starting",
                        format!("pipeline `{name}` is starting"),
                    ));
                }
                _ => {}
            }
            entry.status = Status::Starting;
            entry.text.clone()
        };
        if let Err(e) = self.start(name, &text).await {
            if let Some(entry) = self.lock().get_mut(name) {
                entry.status = Status::Failed;
                entry.last_error = Some(e.message.clone());
            }
            return Err(e);
        }
        self.persist_desired(name, Status::Running)
            .map_err(|e| ApiError::internal(format!("cannot save the state: {e}")))?;
        self.describe(name)
    }

    /// Stops and forgets a pipeline; its checkpoints are kept unless `purge`.
    pub async fn delete(self: &Arc<Self>, name: &str, purge: bool) -> Result<Value, ApiError> {
        self.halt(name).await?;
        self.lock().remove(name);
        self.metrics.unregister_job(name);
        let mut removed = vec![];
        for path in [self.yaml_path(name), self.state_path(name)] {
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path.display().to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ApiError::internal(format!("{}: {e}", path.display()))),
            }
        }
        let checkpoints = self.checkpoint_dir(name);
        if purge && checkpoints.exists() {
            std::fs::remove_dir_all(&checkpoints)
                .map_err(|e| ApiError::internal(format!("{}: {e}", checkpoints.display())))?;
        }
        Ok(json!({
            "name": name,
            "deleted": true,
            "checkpoints": if purge { Value::Null } else { json!(checkpoints.display().to_string()) },
        }))
    }

    /// Stops every running pipeline with a checkpoint; their desired state stays `running`,
    /// so the next start resumes them.
    pub async fn shutdown(self: &Arc<Self>) {
        let names: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.job.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        let mut tasks = Vec::new();
        for name in names {
            let me = self.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = me.halt(&name).await {
                    tracing::warn!(pipeline = %name, "{}", e.message);
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Notices jobs that ended on their own (input finished, failure) and checkpoint
    /// progress. Called periodically.
    pub fn poll(&self) {
        let mut entries = self.lock();
        for (name, entry) in entries.iter_mut() {
            let Some(job) = &entry.job else { continue };
            let completed = job.checkpoints_completed();
            if completed != entry.checkpoints_completed {
                entry.checkpoints_completed = completed;
                entry.checkpoint_progress = Instant::now();
            }
            if !job.is_finished() {
                continue;
            }
            let Some(job) = entry.job.take() else {
                continue;
            };
            let (status, desired) = match job.wait() {
                Ok(done) => {
                    entry.last_operators = done.operators;
                    (Status::Finished, Status::Finished)
                }
                Err(e) => {
                    entry.last_error = Some(e.to_string());
                    tracing::error!(pipeline = %name, error = %e, "failed: {e}");
                    (Status::Failed, Status::Failed)
                }
            };
            entry.status = status;
            let body = json!({ "desired": desired.as_str() }).to_string();
            if let Err(e) = write_atomic(&self.state_path(name), body.as_bytes()) {
                tracing::error!(pipeline = %name, "cannot save the state: {e}");
            }
        }
    }

    /// Every pipeline: name, status, records in/out.
    pub fn list(&self) -> Value {
        let entries = self.lock();
        let list: Vec<Value> = entries
            .iter()
            .map(|(name, e)| {
                let (records_in, records_out) = e.counts();
                json!({
                    "name": name,
                    "status": e.status,
                    "records_in": records_in,
                    "records_out": records_out,
                })
            })
            .collect();
        json!({ "pipelines": list })
    }

    /// One pipeline in detail.
    pub fn describe(&self, name: &str) -> Result<Value, ApiError> {
        let entries = self.lock();
        let entry = entries
            .get(name)
            .ok_or_else(|| ApiError::not_found(format!("no pipeline named `{name}`")))?;
        self.describe_locked(name, entry)
    }

    fn describe_locked(&self, name: &str, e: &Entry) -> Result<Value, ApiError> {
        let (records_in, records_out) = e.counts();
        let operators = e.operators();
        let lag: Option<i64> = operators
            .iter()
            .filter_map(|m| m.gauges.get("consumer_lag"))
            .copied()
            .reduce(|a, b| a + b);
        let graph: Vec<Value> = operators
            .iter()
            .map(|m| json!({"name": m.name, "kind": m.kind, "parallelism": m.parallelism}))
            .collect();
        Ok(json!({
            "name": name,
            "status": e.status,
            "records_in": records_in,
            "records_out": records_out,
            "graph": graph,
            "operators": operators,
            "checkpoints": {
                "dir": self.checkpoint_dir(name).display().to_string(),
                "resumed_from": e.resumed_from,
                "completed_this_run": e.checkpoints_completed,
                "completed": self.checkpoint_ids(e, name),
            },
            "consumer_lag": lag,
            "last_error": e.last_error,
            "seconds_since_start": e.started.elapsed().as_secs_f64(),
            "notices": e.notices,
        }))
    }

    /// The completed checkpoints of a pipeline, oldest first.
    fn checkpoint_ids(&self, e: &Entry, name: &str) -> Vec<u64> {
        let Ok(pipeline) = self.prepare(&e.text, &self.yaml_path(name)) else {
            return Vec::new();
        };
        match pipeline.checkpoint_store() {
            Ok(Some(store)) => store
                .list()
                .map(|l| l.checkpoints.iter().map(|c| c.id()).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The checkpoint history of a pipeline from its checkpoint directory, newest first, at
    /// most `limit`: each retained checkpoint's id, start time, duration, sizes and outcome
    /// (`completed`; `in_progress` for the newest while the job writes it; `incomplete` or
    /// `corrupt` with the reason it cannot be restored; `abandoned` by a later
    /// `--ignore-state` run). Read from each checkpoint's `_metadata` (its checksum checked;
    /// blobs only by size). Retention (`settings.checkpoint.keep`) bounds how far back it goes.
    pub fn checkpoints(&self, name: &str, limit: usize) -> Result<Value, ApiError> {
        let (text, running, resumed_from, failed) = {
            let entries = self.lock();
            let e = entries
                .get(name)
                .ok_or_else(|| ApiError::not_found(format!("no pipeline named `{name}`")))?;
            let failed = e
                .metrics
                .as_ref()
                .and_then(|m| m.checkpoints())
                .map(|c| c.failed);
            (e.text.clone(), e.job.is_some(), e.resumed_from, failed)
        };
        let pipeline = self
            .prepare(&text, &self.yaml_path(name))
            .map_err(|e| ApiError::pipeline(&e))?;
        let store = pipeline
            .checkpoint_store()
            .map_err(|e| ApiError::pipeline(&e))?
            .ok_or_else(|| ApiError::internal("the server always keeps checkpoints"))?;
        let listing = store
            .list()
            .map_err(|e| ApiError::internal(format!("{}: {e}", store.dir().display())))?;
        let newest_id = listing
            .checkpoints
            .iter()
            .map(|c| c.id())
            .chain(listing.skipped.iter().map(|s| s.id))
            .chain(listing.abandoned.iter().copied())
            .max();
        let mut rows: Vec<(u64, Value)> = Vec::new();
        for c in &listing.checkpoints {
            let i = c.info();
            rows.push((
                i.id,
                json!({
                    "id": i.id,
                    "outcome": "completed",
                    "started_at": i.started_at,
                    "started_at_ms": i.started_at_ms,
                    "duration_ms": i.duration_ms,
                    "bytes_written": i.bytes_written,
                    "total_bytes": i.total_bytes,
                    "incremental": i.incremental,
                    "resumed_from": resumed_from == Some(i.id),
                }),
            ));
        }
        for s in &listing.skipped {
            let outcome = match s.reason {
                // The job writes `_metadata` last: the newest one of a running job is being
                // written now.
                weir_checkpoint::SkipReason::NoMetadata if running && newest_id == Some(s.id) => {
                    "in_progress"
                }
                weir_checkpoint::SkipReason::NoMetadata => "incomplete",
                _ => "corrupt",
            };
            let mut row = json!({"id": s.id, "outcome": outcome});
            if outcome != "in_progress" {
                row["reason"] = json!(s.reason.to_string());
            }
            rows.push((s.id, row));
        }
        for &id in &listing.abandoned {
            rows.push((
                id,
                json!({
                    "id": id,
                    "outcome": "abandoned",
                    "reason": "a later run started without this state (--ignore-state or --from-checkpoint); it is never resumed from",
                }),
            ));
        }
        rows.sort_by_key(|row| std::cmp::Reverse(row.0));
        let total = rows.len();
        let list: Vec<Value> = rows.into_iter().take(limit).map(|(_, v)| v).collect();
        Ok(json!({
            "name": name,
            "dir": store.dir().display().to_string(),
            "keep": store.keep(),
            "total": total,
            "failed_this_run": failed,
            "checkpoints": list,
        }))
    }

    /// The text of a pipeline as submitted.
    pub fn text(&self, name: &str) -> Option<String> {
        self.lock().get(name).map(|e| e.text.clone())
    }

    /// The newest dead letters of a pipeline whose dead-letter output is a file.
    pub fn dead_letters(&self, name: &str, limit: usize) -> Result<Value, ApiError> {
        let text = self
            .text(name)
            .ok_or_else(|| ApiError::not_found(format!("no pipeline named `{name}`")))?;
        let pipeline = self
            .prepare(&text, &self.yaml_path(name))
            .map_err(|e| ApiError::pipeline(&e))?;
        let Some(dead) = &pipeline.spec.dead_letter else {
            return Ok(json!({ "dead_letters": [], "destination": Value::Null }));
        };
        let weir_pipeline::spec::SinkConfig::File(file) = &dead.config else {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_IMPLEMENTED,
                "not_supported",
                "dead letters can be listed for a `file` dead-letter output only",
            ));
        };
        let path = &file.path;
        let path = if path.is_relative() {
            self.data_dir.join("pipelines").join(path)
        } else {
            path.clone()
        };
        let content = match std::fs::read_to_string(&path) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(ApiError::internal(format!("{}: {e}", path.display()))),
        };
        let lines: Vec<&str> = content.lines().filter(|l| !l.trim().is_empty()).collect();
        let newest: Vec<Value> = lines
            .iter()
            .rev()
            .take(limit)
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| json!({ "raw": l })))
            .collect();
        Ok(json!({
            "destination": path.display().to_string(),
            "total": lines.len(),
            "dead_letters": newest,
        }))
    }

    /// Every running pipeline (as it runs, to check its connectors) and the problems of
    /// their checkpoints, for `/ready`.
    pub fn readiness_inputs(&self) -> (Vec<(String, Pipeline)>, Vec<String>) {
        let entries = self.lock();
        let mut targets = Vec::new();
        let mut problems = Vec::new();
        for (name, e) in entries.iter() {
            if e.status != Status::Running {
                continue;
            }
            match self.prepare(&e.text, &self.yaml_path(name)) {
                Ok(p) => targets.push((name.clone(), p)),
                Err(e) => problems.push(format!("pipeline `{name}`: {e}")),
            }
            if let Some(interval) = e.checkpoint_interval {
                let allowed = (interval * 5).max(Duration::from_secs(5));
                let since = e.checkpoint_progress.elapsed();
                if since > allowed {
                    problems.push(format!(
                        "pipeline `{name}`: no checkpoint completed for {:.0}s (interval {:?})",
                        since.as_secs_f64(),
                        interval
                    ));
                }
            }
        }
        (targets, problems)
    }
}

impl Entry {
    fn new(text: String) -> Self {
        Entry {
            text,
            status: Status::Starting,
            job: None,
            metrics: None,
            last_operators: Vec::new(),
            last_error: None,
            resumed_from: None,
            started: Instant::now(),
            checkpoint_interval: None,
            checkpoints_completed: 0,
            checkpoint_progress: Instant::now(),
            notices: Vec::new(),
        }
    }

    fn counts(&self) -> (u64, u64) {
        match &self.metrics {
            Some(m) => (m.source_records(), m.sink_records()),
            None => (0, 0),
        }
    }

    fn operators(&self) -> Vec<OperatorMetrics> {
        match (&self.job, &self.metrics) {
            (Some(_), Some(m)) => m.snapshot(),
            _ if !self.last_operators.is_empty() => self.last_operators.clone(),
            (_, Some(m)) => m.snapshot(),
            _ => Vec::new(),
        }
    }
}

/// Writes a file so that a crash leaves the old or the new content, never a mix.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
