//! Weir's agents and tasks: durable, prioritised, capability-routed work.
//!
//! This crate owns the task queue and everything below the HTTP layer of `/v1/tasks` and
//! `/v1/agents`: the durable store (fjall by default; Redis Streams when several servers share
//! the queue, `store: { type: redis }` in [`AgentsConfig`]), the priority queue with aging,
//! idempotency,
//! cancellation and result retention; agents (the in-process [`Agent`] trait and the `http`
//! and `command` kinds declared in an `agents:` YAML file, [`AgentsConfig`]; `pipeline` agents
//! are declared there too and built by the [`PipelineBuilder`] `weir-pipeline` provides); the
//! [`TaskEndpoint`] a pipeline's `task:` step sends its tasks through; the dispatcher
//! that routes a task by action to a healthy agent with free concurrency and runs it under the
//! agent's resilience policy (`weir-resilience`); supervision (health checks, breakers); and
//! the counters behind the task metrics. [`TaskService`] is the API the server calls.
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use futures::future::BoxFuture;
//! use weir_tasks::*;
//!
//! struct Double;
//! impl Agent for Double {
//!     fn run<'a>(&'a self, task: &'a TaskInput) -> BoxFuture<'a, Result<serde_json::Value, AgentError>> {
//!         Box::pin(async move { Ok(serde_json::json!(task.data.as_i64().unwrap_or(0) * 2)) })
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir()?;
//! let agents = AgentsConfig::parse("results_ttl: 10m\n", "inline")?;
//! let double = AgentSpec::in_process("double", ["double"], 4, Arc::new(Double));
//! let service = TaskService::open_with(dir.path(), agents, vec![double]).await?;
//! let accepted = service.submit(TaskRequest::new("double", serde_json::json!(21))).await?;
//! let view = service.wait(&accepted.task_id, Duration::from_secs(10)).await?.unwrap();
//! assert_eq!(view.status, TaskStatus::Succeeded);
//! assert_eq!(view.result, Some(serde_json::json!(42)));
//! service.shutdown().await;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! For the server: `submit` errors map to HTTP as [`TaskError::Invalid`] and
//! [`TaskError::NoAgent`] → 400, [`TaskError::ShutDown`] → 503, [`TaskError::Store`] → 500;
//! [`CancelOutcome::NotFound`] → 404, [`CancelOutcome::AlreadyFinished`] → 409.
//!
//! # Semantics
//!
//! - **Durability.** [`TaskService::submit`] returns once the task's record is fsynced (group
//!   commit: concurrent submits share one `fdatasync`). A `kill -9` loses no accepted task.
//!   Status changes and results are flushed to the OS as they happen (they survive `kill -9`)
//!   and fsynced with the next batch that carries a submit.
//! - **Restart.** Tasks found `queued` are queued again in their order; tasks found `running`
//!   are requeued and run again: execution is **at-least-once** for tasks running at a crash.
//!   Finished tasks keep their results. Every task reaches exactly one terminal record.
//! - **Order and aging.** A task of priority `p` submitted at time `t` is ordered by
//!   `t − p × aging` (default `aging` 10s), then by submission order. So higher priorities run
//!   first, FIFO within a priority, and a low-priority task is never starved: after waiting
//!   `Δp × aging` it is ahead of any newly submitted task `Δp` levels above it.
//! - **Routing.** A task goes to an agent that has its action as a capability (and is the
//!   task's `agent`, if pinned), is healthy, whose breaker is not open, and that has a free
//!   slot (`concurrency`); among those the least loaded (in flight / concurrency). An agent
//!   never runs more than `concurrency` attempts at once.
//! - **Attempts.** The budget is `1 + policy.retries` of the agent of the first attempt. Each
//!   attempt is limited by the task's `timeout`, else the agent policy's `timeout`, else
//!   `default_timeout`. A failed or timed-out attempt is retried after the first agent's
//!   backoff, on an agent the task has not failed on yet whenever one is routable (it waits
//!   for such an agent's free slot); only when every capable agent has been tried do retries
//!   return to one. A task that exhausts its budget ends `failed` (or `timed_out` if the last
//!   attempt timed out), its `error` listing every attempt's agent and error; every attempt is
//!   kept in `attempts`.
//! - **Idempotency.** A submit whose `idempotency_key` matches a kept task (queued, running,
//!   or finished less than `results_ttl` ago) returns that task and creates nothing.
//! - **Cancel.** A queued task is removed from the queue; a running attempt is dropped (an
//!   HTTP request abandoned; a `command` process group killed). Either ends `cancelled`.
//! - **Retention.** Finished tasks are removed `results_ttl` after they finished (default 1h).
//! - **Several servers (Redis store).** Servers with the same `store` share one queue: each
//!   takes only as many tasks as it has free agent capacity, renews what it holds, and takes
//!   over a dead server's tasks after `claim_timeout`. Execution is at-least-once; the
//!   terminal result is written exactly once (a late finisher's attempt is kept, discarded).
//! - **Supervision.** A failing health check (`unhealthy_after` in a row) takes an agent out
//!   of routing; one passing check puts it back. An open breaker does the same until its
//!   `reset_timeout`, when one probe attempt decides. `command` agents run one process per
//!   attempt (nothing long-running to crash): a crash fails that attempt, which is retried
//!   elsewhere, and repeated crashes open the breaker, whose reset timeout is the restart
//!   backoff.

mod agent;
mod config;
mod endpoint;
mod error;
mod metrics;
mod model;
mod redis_store;
mod service;
mod store;

/// An HTTP client trusting the system's roots (`weir_connectors::http_client`, which installs
/// rustls's provider first).
pub(crate) fn http_client() -> reqwest::Client {
    weir_connectors::http_client()
        .build()
        .expect("an HTTP client with the default settings builds")
}

pub use agent::{Agent, CommandAgent, HttpAgent, TaskInput};
pub use config::{
    AgentConfig, AgentKind, AgentSpec, AgentsConfig, AgentsConfigError, BuildPipelineAgent,
    CommandConfig, HealthConfig, HttpConfig, PipelineAgentSource, PipelineBuilder, StoreConfig,
    StoreType,
};
pub use endpoint::{EndpointError, TaskEndpoint};
pub use error::{AgentError, TaskError};
pub use metrics::{DURATION_BUCKETS, TaskMetrics};
pub use model::{
    Attempt, MAX_LIST, TaskAccepted, TaskFilter, TaskRequest, TaskStatus, TaskSummary, TaskView,
};
pub use service::{AgentView, CancelOutcome, TaskService};
