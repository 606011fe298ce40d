//! `kind: pipeline` agents: a Weir pipeline whose source is the agent's tasks and whose
//! output completes them (a stream processor as an agent, as Sabot's `@app.agent(topic)`).
//!
//! The pipeline runs on the same runtime as `weir run` (`weir-core`), started once when the
//! task service opens and running until it closes. Each attempt becomes one record — the
//! task's `data` (an object) with the field `_task` added — read by an in-process source; the
//! steps run as in any pipeline; a sink takes each output record, removes `_task` and makes
//! the rest (a JSON object) the task's result. A record a `filter` drops ends its task with
//! the result `null`; a record a step fails on (a dead letter) fails its task with the step
//! and the error.
//!
//! The pipeline is a list of steps ([`plan_agent`](crate::build::plan_agent) lists which)
//! with optional `name`, `description`, `fields` and `settings`; it has no `source`, `sink`
//! or `dead_letter`: the agent is both.

use crate::build::plan_agent;
use crate::{Pipeline, PipelineError};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_core::{
    Environment, OperatorContext, OperatorError, RunningJob, Sink, Source, SourceStatus,
};
use weir_tasks::{Agent, AgentError, PipelineAgentSource, PipelineBuilder, TaskInput};
use weir_types::{Record, Value};

/// The field that carries a task through the agent's pipeline.
pub const TASK_FIELD: &str = "_task";

/// The builder `weir serve` gives its agents file: builds `kind: pipeline` agents.
pub fn builder() -> PipelineBuilder {
    PipelineBuilder(Arc::new(|source: &PipelineAgentSource| {
        PipelineAgent::start(source)
            .map(|agent| Arc::new(agent) as Arc<dyn Agent>)
            .map_err(|e| {
                if source.inline {
                    // The agents file and `agents[i].pipeline` are named by the caller.
                    let line = e
                        .line
                        .map(|l| format!("line {l} of the block: "))
                        .unwrap_or_default();
                    let key = e.key.map(|k| format!("{k}: ")).unwrap_or_default();
                    format!("{line}{key}{}", e.message)
                } else {
                    e.to_string()
                }
            })
    }))
}

type Reply = tokio::sync::oneshot::Sender<Result<Json, AgentError>>;
type Pending = Arc<Mutex<HashMap<i64, Reply>>>;

/// A running pipeline serving tasks.
pub struct PipelineAgent {
    name: String,
    inbox: Mutex<Option<Sender<Record>>>,
    pending: Pending,
    next: AtomicI64,
    job: Mutex<Option<RunningJob>>,
}

impl std::fmt::Debug for PipelineAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineAgent")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PipelineAgent {
    /// Parses and checks the agent's pipeline and starts it.
    pub fn start(source: &PipelineAgentSource) -> Result<PipelineAgent, PipelineError> {
        let pipeline = Pipeline::parse_named(&source.text, &source.file, &source.agent)?;
        let spec = &pipeline.spec;
        for (given, key, why) in [
            (
                spec.source.is_some(),
                "source",
                "the agent's tasks are its source",
            ),
            (
                spec.sources.is_some(),
                "sources",
                "the agent's tasks are its source",
            ),
            (
                spec.sink.is_some(),
                "sink",
                "the tasks' results are its output",
            ),
            (
                spec.sinks.is_some(),
                "sinks",
                "the tasks' results are its output",
            ),
            (
                spec.dead_letter.is_some(),
                "dead_letter",
                "a record a step fails on fails its task, with the error",
            ),
            (
                spec.settings.checkpoint.is_some(),
                "settings.checkpoint",
                "a pipeline agent keeps no state between tasks (the task store is durable)",
            ),
        ] {
            if given {
                return Err(
                    pipeline.error_at(key, format!("not available in a pipeline agent: {why}"))
                );
            }
        }
        let mut config = pipeline.config();
        // Tasks come one at a time: pass each on at once.
        config.batch_timeout = Duration::from_millis(1);
        let env = Environment::with_config(config);
        let (tx, rx) = std::sync::mpsc::channel::<Record>();
        let rx = Arc::new(Mutex::new(rx));
        let tasks = env
            .source("tasks", move || TaskSource { rx: rx.clone() })
            .parallelism(1);
        let plan = plan_agent(&pipeline, &env, tasks, TASK_FIELD)?;
        let pending: Pending = Arc::default();
        let results = pending.clone();
        plan.results.sink("results", move || Complete {
            pending: results.clone(),
            dropped: false,
        });
        let mut side = plan.dropped;
        side.extend(plan.dead);
        if let Some((first, rest)) = side.split_first() {
            let others = pending.clone();
            first
                .union(rest)
                .name("dropped_and_failed")
                .sink("dropped_and_failed", move || Complete {
                    pending: others.clone(),
                    dropped: true,
                });
        }
        let job = env.start().map_err(|e| PipelineError {
            file: source.file.clone(),
            line: None,
            key: None,
            message: format!("cannot start the agent's pipeline: {e}"),
        })?;
        Ok(PipelineAgent {
            name: source.agent.clone(),
            inbox: Mutex::new(Some(tx)),
            pending,
            next: AtomicI64::new(1),
            job: Mutex::new(Some(job)),
        })
    }

    fn send(
        &self,
        task: &TaskInput,
    ) -> Result<
        (
            i64,
            tokio::sync::oneshot::Receiver<Result<Json, AgentError>>,
        ),
        AgentError,
    > {
        let Json::Object(map) = &task.data else {
            return Err(AgentError::Failed(format!(
                "a pipeline agent takes an object as data (its fields are the record's), found {}",
                json_kind(&task.data)
            )));
        };
        if map.contains_key(TASK_FIELD) {
            return Err(AgentError::Failed(format!(
                "the data has a field `{TASK_FIELD}`, which the pipeline agent uses itself"
            )));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut record = Record::from_pairs(
            map.iter()
                .map(|(k, v)| (k.clone(), Value::from_json(v.clone()))),
        );
        record.set(TASK_FIELD, Value::Int(id));
        let (reply, wait) = tokio::sync::oneshot::channel();
        lock(&self.pending).insert(id, reply);
        let sent = lock(&self.inbox)
            .as_ref()
            .is_some_and(|tx| tx.send(record).is_ok());
        if !sent {
            lock(&self.pending).remove(&id);
            return Err(AgentError::Unavailable(format!(
                "pipeline agent {}: its pipeline has stopped{}",
                self.name,
                self.failure().map(|e| format!(": {e}")).unwrap_or_default()
            )));
        }
        Ok((id, wait))
    }

    /// The pipeline's error, if it stopped.
    fn failure(&self) -> Option<String> {
        let mut job = lock(&self.job);
        if job.as_ref().is_some_and(RunningJob::is_finished) {
            return job
                .take()
                .and_then(|j| j.wait().err())
                .map(|e| e.to_string());
        }
        None
    }
}

impl Agent for PipelineAgent {
    fn run<'a>(
        &'a self,
        task: &'a TaskInput,
    ) -> Pin<Box<dyn Future<Output = Result<Json, AgentError>> + Send + 'a>> {
        Box::pin(async move {
            let (id, wait) = self.send(task)?;
            // Removes the reply if the attempt is abandoned (timeout, cancel).
            let _guard = Forget {
                pending: &self.pending,
                id,
            };
            match wait.await {
                Ok(result) => result,
                Err(_) => Err(AgentError::Unavailable(format!(
                    "pipeline agent {}: its pipeline stopped before answering",
                    self.name
                ))),
            }
        })
    }
}

impl Drop for PipelineAgent {
    fn drop(&mut self) {
        // The source sees its channel close and ends; the job drains and stops.
        lock(&self.inbox).take();
        if let Some(job) = lock(&self.job).as_ref() {
            job.stop();
        }
    }
}

struct Forget<'a> {
    pending: &'a Pending,
    id: i64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Reads the agent's tasks (records) from its channel.
struct TaskSource {
    rx: Arc<Mutex<Receiver<Record>>>,
}

impl Source<Record> for TaskSource {
    fn poll(
        &mut self,
        out: &mut Vec<Record>,
        max: usize,
        _ctx: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError> {
        let rx = lock(&self.rx);
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(record) => out.push(record),
            Err(RecvTimeoutError::Timeout) => return Ok(SourceStatus::Idle),
            Err(RecvTimeoutError::Disconnected) => return Ok(SourceStatus::Finished),
        }
        while out.len() < max {
            match rx.try_recv() {
                Ok(record) => out.push(record),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => break,
            }
        }
        Ok(SourceStatus::Ready)
    }
}

/// Completes tasks: a result record (with `_task`) succeeds its task with the record's other
/// fields (`null` for a record a filter dropped); a dead letter (its `record` holds `_task`)
/// fails it with the step and the error.
struct Complete {
    pending: Pending,
    /// The records here with `_task` were dropped by a filter.
    dropped: bool,
}

impl Sink<Record> for Complete {
    fn write(
        &mut self,
        batch: &mut Vec<Record>,
        _ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let mut pending = lock(&self.pending);
        for mut record in batch.drain(..) {
            let (id, outcome) = match record.remove(TASK_FIELD) {
                Some(Value::Int(id)) if self.dropped => (id, Ok(Json::Null)),
                Some(Value::Int(id)) => (id, Ok(record.to_json())),
                Some(_) => continue,
                None => {
                    // A dead letter: `{stage, error, position, record}`.
                    let id = record
                        .get("record")
                        .map(Value::to_json)
                        .and_then(|r| r.get(TASK_FIELD).and_then(Json::as_i64));
                    let Some(id) = id else {
                        continue;
                    };
                    let text = |name: &str| match record.get(name) {
                        Some(Value::Str(s)) => s.to_string(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    };
                    (
                        id,
                        Err(AgentError::Failed(format!(
                            "{}: {}",
                            text("stage"),
                            text("error")
                        ))),
                    )
                }
            };
            if let Some(reply) = pending.remove(&id) {
                let _ = reply.send(outcome);
            }
        }
        Ok(())
    }
}
