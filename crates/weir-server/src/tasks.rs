//! The task routes (`/v1/tasks`, `/v1/agents`) over [`weir_tasks::TaskService`], the service's
//! opening (agents file, store at `DATA/tasks`) and its metrics on `/metrics`.

use crate::App;
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::Arc;
use weir_tasks::{
    AgentsConfig, CancelOutcome, MAX_LIST, TaskError, TaskFilter, TaskRequest, TaskService,
};

type AppState = Arc<App>;

/// Opens the task service in `data_dir/tasks` with the agents of `agents` (none without a
/// file), and exposes its metrics in `metrics`.
pub async fn open(
    data_dir: &FsPath,
    agents: Option<&FsPath>,
    metrics: &weir_telemetry::Metrics,
) -> Result<Arc<TaskService>, crate::ServeError> {
    let mut config = match agents {
        Some(path) => AgentsConfig::from_file(path)
            .map_err(|e| crate::ServeError::Config(format!("agents: {e}")))?,
        None => AgentsConfig::default(),
    };
    // `kind: pipeline` agents run on the pipeline runtime, in this process.
    config.pipelines = Some(weir_pipeline::agent::builder());
    let dir = data_dir.join("tasks");
    let service = TaskService::open(&dir, config)
        .await
        .map_err(|e| crate::ServeError::Config(format!("task service: {e}")))?;
    let service = Arc::new(service);
    // Pipelines in this process (`task:` steps without `server`) send their tasks here.
    service.register_local();
    let source = service.clone();
    metrics.register_tasks(Arc::new(move || {
        let m = source.metrics();
        weir_telemetry::TaskCounts {
            total: m
                .tasks_total
                .iter()
                .map(|(s, n)| (s.as_str(), *n))
                .collect(),
            queued: m.queued,
            duration_buckets: m.duration_buckets.clone(),
            duration_sum: m.duration_sum,
            duration_count: m.duration_count,
        }
    }));
    let names: Vec<String> = service.agents().into_iter().map(|a| a.name).collect();
    match agents {
        Some(path) => tracing::info!(
            agents = %names.join(","),
            "tasks: {} agent(s) from {} ({}), store {}",
            names.len(),
            path.display(),
            names.join(", "),
            dir.display()
        ),
        None => tracing::info!(
            "tasks: no agents (start with --agents FILE to run tasks), store {}",
            dir.display()
        ),
    }
    Ok(service)
}

fn task_error(e: TaskError) -> ApiError {
    match e {
        TaskError::Invalid { field, .. } => {
            ApiError::bad_request("invalid_task", e.to_string()).with("key", field)
        }
        TaskError::NoAgent { .. } => ApiError::bad_request("no_agent", e.to_string()),
        TaskError::ShutDown => ApiError::unavailable("shutting_down", e.to_string()),
        TaskError::Store { .. } => ApiError::internal(e.to_string()),
    }
}

/// `POST /v1/tasks`: 202 `{task_id, status}` once the task is durably queued.
pub async fn submit(State(app): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let request: TaskRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_task",
            format!(
                "task body: {e}; expected {{\"action\": ..., \"data\": ..., \"priority\"?, \"timeout\"?, \"agent\"?, \"idempotency_key\"?}}"
            ),
        )
        .with("line", e.line())
    })?;
    let action = request.action.clone();
    let accepted = app.tasks.submit(request).await.map_err(task_error)?;
    if accepted.created {
        tracing::info!(task_id = %accepted.task_id, %action, "task accepted");
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"task_id": accepted.task_id, "status": accepted.status})),
    )
        .into_response())
}

/// `GET /v1/tasks?status=&action=&limit=`: `{tasks: [...]}`, queued and running first, then
/// the most recently finished. An unknown parameter or a bad value is a 400 naming it.
pub async fn list(
    State(app): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let bad = |key: &str, message: String| {
        ApiError::bad_request("invalid_query", format!("{key}: {message}")).with("key", key)
    };
    let mut filter = TaskFilter::default();
    for (key, value) in &query {
        match key.as_str() {
            "status" if !value.is_empty() => {
                filter.status = Some(value.parse().map_err(|e| bad("status", e))?);
            }
            "action" if !value.is_empty() => filter.action = Some(value.clone()),
            "limit" => {
                let n: usize = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIST).contains(n))
                    .ok_or_else(|| {
                        bad(
                            "limit",
                            format!("expected a number from 1 to {MAX_LIST}, found {value:?}"),
                        )
                    })?;
                filter.limit = Some(n);
            }
            "status" | "action" => {}
            other => {
                return Err(bad(
                    other,
                    "unknown parameter; expected status, action or limit".into(),
                ));
            }
        }
    }
    let tasks = app.tasks.list(&filter).map_err(task_error)?;
    Ok(axum::Json(json!({ "tasks": tasks })).into_response())
}

/// `GET /v1/tasks/{id}`.
pub async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match app.tasks.get(&id).map_err(task_error)? {
        Some(view) => Ok(axum::Json(view).into_response()),
        None => Err(ApiError::not_found(format!(
            "no task {id:?} (never submitted, or removed after results_ttl)"
        ))),
    }
}

/// `POST /v1/tasks/{id}/cancel`: 200 with the task, 404 unknown, 409 already finished.
pub async fn cancel(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match app.tasks.cancel(&id).map_err(task_error)? {
        CancelOutcome::Cancelled(view) => {
            tracing::info!(task_id = %id, "task cancelled");
            Ok(axum::Json(view).into_response())
        }
        CancelOutcome::AlreadyFinished(view) => Err(ApiError::conflict(
            "already_finished",
            format!("task {id:?} has already finished ({})", view.status),
        )
        .with("status", view.status.as_str())),
        CancelOutcome::NotFound => Err(ApiError::not_found(format!("no task {id:?}"))),
    }
}

/// `GET /v1/agents`: `{agents: [{name, capabilities, health, in_flight, ...}]}`.
pub async fn agents(State(app): State<AppState>) -> Response {
    axum::Json(json!({ "agents": app.tasks.agents() })).into_response()
}
