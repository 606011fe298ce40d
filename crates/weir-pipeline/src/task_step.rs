//! The `task:` step: submits a task per record to Weir's task service and puts the task's
//! result in a field, through the same async map as `enrich_http` (`workers` calls in flight,
//! input order by default); records whose task fails go to the dead-letter output.
//!
//! Each task carries an `idempotency_key` that a replay of the same record gives again (after a
//! restore from a checkpoint): `PIPELINE/STAGE/` and the value of the step's
//! `idempotency_key` expression, or else a SHA-256 of the action and the task's data. So a
//! replayed record finds its task (queued, running or kept for `results_ttl`) instead of
//! submitting another.
//!
//! Where the tasks go: `server: URL` (a `weir serve`, with `token`), else the task service of
//! this process (`weir serve` registers its own, so a pipeline submitted to it, or a pipeline
//! agent, needs no `server`).

use crate::steps::dead_letter;
use crate::{Pipeline, PipelineError};
use indexmap::IndexMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};
use weir_core::Stream;
use weir_expr::{CompiledExpr, Expr, FieldTypes, Projection};
use weir_resilience::Order;
use weir_resilience::stream::{AsyncMapper, AsyncOptions, AsyncStreamExt};
use weir_tasks::{EndpointError, TaskEndpoint, TaskRequest};
use weir_types::{Record, Value};

/// Default for `workers`.
const DEFAULT_WORKERS: usize = 8;
/// Tries of a task whose service was unavailable (connection refused, 5xx).
const UNAVAILABLE_TRIES: u32 = 3;

/// `- task: { action, data, into, priority, timeout, agent, server, token, workers, ordered }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskStepSpec {
    /// The task's action (routed to an agent with this capability).
    pub action: String,
    /// The task's data: `name: expression` over the record; default the whole record.
    #[serde(default, deserialize_with = "crate::unique::optional_keys")]
    pub data: Option<IndexMap<String, String>>,
    /// The field that receives the task's result.
    pub into: String,
    /// The task's priority (default 0).
    pub priority: Option<i32>,
    /// Limit of each attempt of the task.
    pub timeout: Option<crate::duration::Duration>,
    /// Run only on this agent.
    pub agent: Option<String>,
    /// A `weir serve` (`http://host:port`) to send the tasks to; default this process's task
    /// service (in `weir serve`).
    pub server: Option<String>,
    /// Bearer token for `server`.
    pub token: Option<String>,
    /// Tasks in flight at once per instance (default 8).
    pub workers: Option<usize>,
    /// Output in input order (default true) or in completion order.
    pub ordered: Option<bool>,
    /// An expression naming the record's task for deduplication (e.g. `order_id`); default a
    /// hash of the action and the task's data. Prefixed with the pipeline and step.
    pub idempotency_key: Option<String>,
}

/// Sends one record's task and waits for its result.
#[derive(Clone)]
struct TaskCaller {
    /// Resolved at the first call when the plan had none (the service of this process may
    /// register after the pipeline is planned, e.g. for a pipeline agent).
    endpoint: OnceLock<TaskEndpoint>,
    action: String,
    data: Option<Arc<Projection>>,
    into: Arc<str>,
    priority: i32,
    timeout: Option<std::time::Duration>,
    agent: Option<String>,
    /// `PIPELINE/STAGE/`: the start of every idempotency key of this step.
    key_prefix: Arc<str>,
    /// The `idempotency_key` expression, if any.
    key: Option<Arc<CompiledExpr>>,
}

impl TaskCaller {
    fn endpoint(&self) -> Result<&TaskEndpoint, EndpointError> {
        if let Some(e) = self.endpoint.get() {
            return Ok(e);
        }
        let local = TaskEndpoint::local().ok_or_else(|| {
            EndpointError::Refused(
                "no task service in this process: set `server:` to a weir serve URL, or run the pipeline in `weir serve --agents FILE`".into(),
            )
        })?;
        Ok(self.endpoint.get_or_init(|| local))
    }

    fn request(&self, record: &Record) -> Result<TaskRequest, EndpointError> {
        let data = match &self.data {
            Some(projection) => projection
                .apply(record)
                .map_err(|e| EndpointError::Refused(format!("data: {e}")))?
                .to_json(),
            None => record.to_json(),
        };
        let key = match &self.key {
            Some(expr) => {
                let value = expr
                    .eval(record)
                    .map_err(|e| EndpointError::Refused(format!("idempotency_key: {e}")))?;
                match value.to_json() {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                }
            }
            None => {
                let mut hash = Sha256::new();
                hash.update(self.action.as_bytes());
                hash.update([0]);
                hash.update(data.to_string().as_bytes());
                hash.finalize()
                    .iter()
                    .take(16)
                    .map(|b| format!("{b:02x}"))
                    .collect()
            }
        };
        let mut request = TaskRequest::new(self.action.clone(), data).priority(self.priority);
        request.timeout = self.timeout;
        request.agent = self.agent.clone();
        request.idempotency_key = Some(format!("{}{key}", self.key_prefix));
        Ok(request)
    }
}

impl AsyncMapper<Record> for TaskCaller {
    type Value = serde_json::Value;
    type Output = Record;
    type Error = EndpointError;

    async fn call(
        &self,
        record: &Record,
    ) -> Result<serde_json::Value, weir_resilience::Error<EndpointError>> {
        let fail = |source: EndpointError, attempts: u32| weir_resilience::Error::Operation {
            source,
            attempts,
        };
        let endpoint = self.endpoint().map_err(|e| fail(e, 1))?;
        let request = self.request(record).map_err(|e| fail(e, 1))?;
        let mut attempt = 1;
        loop {
            match endpoint.run(request.clone()).await {
                Ok(result) => return Ok(result),
                Err(e) if e.is_transient() && attempt < UNAVAILABLE_TRIES => {
                    tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(fail(e, attempt)),
            }
        }
    }

    fn complete(&self, mut record: Record, value: serde_json::Value) -> Record {
        record.set(&self.into, Value::from_json(value));
        record
    }
}

/// Plans `task:`: the records with their results, and (with a dead-letter output) the dead
/// letters of the records whose task failed; without one such a record fails the job.
pub(crate) fn plan(
    p: &Pipeline,
    stage: &str,
    spec: &TaskStepSpec,
    stream: &Stream<Record>,
    fields: &FieldTypes,
    route_errors: bool,
) -> Result<(Stream<Record>, Option<Stream<Record>>), PipelineError> {
    if spec.action.trim().is_empty() {
        return Err(p.error_at(&format!("{stage}.action"), "expected an action name"));
    }
    if spec.into.trim().is_empty() {
        return Err(p.error_at(&format!("{stage}.into"), "expected a field name"));
    }
    if spec.workers == Some(0) {
        return Err(p.error_at(&format!("{stage}.workers"), "must be at least 1"));
    }
    if spec.timeout.is_some_and(|t| t.get().is_zero()) {
        return Err(p.error_at(&format!("{stage}.timeout"), "must be longer than zero"));
    }
    if spec.token.is_some() && spec.server.is_none() {
        return Err(p.error_at(
            &format!("{stage}.token"),
            "`token` is for `server`; the task service of this process needs none",
        ));
    }
    let data = match &spec.data {
        None => None,
        Some(exprs) => {
            for (name, source) in exprs {
                Expr::compile(source, fields)
                    .map_err(|e| p.error_at(&format!("{stage}.data.{name}"), e.to_string()))?;
            }
            let pairs: Vec<(&str, &str)> = exprs
                .iter()
                .map(|(n, s)| (n.as_str(), s.as_str()))
                .collect();
            Some(Arc::new(Projection::compile(&pairs, fields).map_err(
                |e| p.error_at(&format!("{stage}.data"), e.to_string()),
            )?))
        }
    };
    let key = match &spec.idempotency_key {
        Some(source) => Some(Arc::new(Expr::compile(source, fields).map_err(|e| {
            p.error_at(&format!("{stage}.idempotency_key"), e.to_string())
        })?)),
        None => None,
    };
    let endpoint = OnceLock::new();
    if let Some(server) = &spec.server {
        let remote = TaskEndpoint::remote(server, spec.token.clone())
            .map_err(|e| p.error_at(&format!("{stage}.server"), e))?;
        let _ = endpoint.set(remote);
    } else if let Some(local) = TaskEndpoint::local() {
        let _ = endpoint.set(local);
    }
    let caller = TaskCaller {
        endpoint,
        action: spec.action.clone(),
        data,
        into: spec.into.as_str().into(),
        priority: spec.priority.unwrap_or(0),
        timeout: spec.timeout.map(|t| t.get()),
        agent: spec.agent.clone(),
        key_prefix: format!("{}/{stage}/", p.name()).into(),
        key,
    };
    let order = if spec.ordered.unwrap_or(true) {
        Order::Ordered
    } else {
        Order::Unordered
    };
    let options = AsyncOptions::new(spec.workers.unwrap_or(DEFAULT_WORKERS))
        .order(order)
        .runtime(weir_connectors::http::runtime())
        .name(stage);
    let (done, failed) = stream.map_async_with(options, caller);
    let stage_name: Arc<str> = stage.into();
    let dead = failed
        .map(move |f| dead_letter(&stage_name, &f.error, &f.error.input, f.position))
        .name(&format!("{stage}.failed"));
    if route_errors {
        return Ok((done, Some(dead)));
    }
    dead.sink(&format!("{stage}.failed"), || crate::enrich::FailJob);
    Ok((done, None))
}

/// Field types after the step: the result's field is untyped.
pub(crate) fn fields_after(spec: &TaskStepSpec, mut fields: FieldTypes) -> FieldTypes {
    if !fields.is_dynamic() {
        fields.insert(&spec.into, None);
    }
    fields
}
