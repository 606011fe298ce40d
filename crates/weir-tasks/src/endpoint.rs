//! [`TaskEndpoint`]: where a pipeline's `task:` step sends its tasks and waits for their
//! results: this process's [`TaskService`] (registered by `weir serve`), or a `weir serve`
//! over HTTP.

use crate::model::{TaskRequest, TaskStatus, TaskView};
use crate::service::TaskService;
use serde_json::Value;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The task service of this process, if one registered ([`TaskService::register_local`]).
static LOCAL: Mutex<Option<Weak<TaskService>>> = Mutex::new(None);

impl TaskService {
    /// Makes this service the one `task:` steps of pipelines in this process use when they
    /// name no `server` (`weir serve` does this). It stays registered while it lives.
    pub fn register_local(self: &Arc<Self>) {
        *LOCAL.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::downgrade(self));
    }
}

/// Why a task sent through a [`TaskEndpoint`] gave no result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EndpointError {
    /// The service refused the task (no agent for the action, a bad field): retrying will not
    /// help.
    #[error("task refused: {0}")]
    Refused(String),
    /// The service could not be reached or failed (connection refused, 5xx, shutting down).
    #[error("task service unavailable: {0}")]
    Unavailable(String),
    /// The task ran and ended without a result (`failed`, `timed_out`, `cancelled`).
    #[error("task {task_id} ended {status}: {error}")]
    Ended {
        /// The task's id.
        task_id: String,
        /// Its terminal status.
        status: TaskStatus,
        /// Its error (every attempt's).
        error: String,
    },
}

impl EndpointError {
    /// Whether trying again may succeed (the service was unavailable).
    pub fn is_transient(&self) -> bool {
        matches!(self, EndpointError::Unavailable(_))
    }
}

/// Where tasks go: this process's service, or a `weir serve` at a URL.
#[derive(Clone)]
pub enum TaskEndpoint {
    /// The service of this process.
    Local(Arc<TaskService>),
    /// A server: its base URL (`http://host:port`), its bearer token.
    Remote {
        /// `http://host:port`, without a trailing slash.
        base: String,
        /// Sent as `authorization: Bearer ...` when set.
        token: Option<String>,
        /// The client.
        client: reqwest::Client,
    },
}

impl std::fmt::Debug for TaskEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskEndpoint::Local(_) => f.write_str("TaskEndpoint::Local"),
            TaskEndpoint::Remote { base, .. } => write!(f, "TaskEndpoint::Remote({base})"),
        }
    }
}

/// How long one wait for a result lasts before it checks again (local service).
const WAIT_STEP: Duration = Duration::from_secs(3600);
/// Failed status polls in a row (remote) before the task counts as unavailable.
const MAX_POLL_FAILURES: u32 = 20;

impl TaskEndpoint {
    /// The service this process registered, if any and still running.
    pub fn local() -> Option<TaskEndpoint> {
        LOCAL
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(Weak::upgrade)
            .map(TaskEndpoint::Local)
    }

    /// A `weir serve` at `url` (`http://` or `https://`).
    pub fn remote(url: &str, token: Option<String>) -> Result<TaskEndpoint, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "expected an http:// or https:// URL of a weir serve, found {url:?}"
            ));
        }
        Ok(TaskEndpoint::Remote {
            base: url.trim_end_matches('/').to_string(),
            token,
            client: crate::http_client(),
        })
    }

    /// Submits the task and waits until it is finished: its result if it succeeded.
    pub async fn run(&self, request: TaskRequest) -> Result<Value, EndpointError> {
        let view = match self {
            TaskEndpoint::Local(service) => {
                let accepted = service.submit(request).await.map_err(|e| match e {
                    crate::TaskError::ShutDown | crate::TaskError::Store { .. } => {
                        EndpointError::Unavailable(e.to_string())
                    }
                    other => EndpointError::Refused(other.to_string()),
                })?;
                loop {
                    let view = service
                        .wait(&accepted.task_id, WAIT_STEP)
                        .await
                        .map_err(|e| EndpointError::Unavailable(e.to_string()))?
                        .ok_or_else(|| {
                            EndpointError::Unavailable(format!(
                                "task {} is gone (removed after results_ttl)",
                                accepted.task_id
                            ))
                        })?;
                    if view.status.is_terminal() {
                        break view;
                    }
                }
            }
            TaskEndpoint::Remote {
                base,
                token,
                client,
            } => remote_run(client, base, token.as_deref(), &request).await?,
        };
        match view.status {
            TaskStatus::Succeeded => Ok(view.result.unwrap_or(Value::Null)),
            status => Err(EndpointError::Ended {
                task_id: view.task_id,
                status,
                error: view.error.unwrap_or_else(|| status.to_string()),
            }),
        }
    }
}

async fn remote_run(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    request: &TaskRequest,
) -> Result<TaskView, EndpointError> {
    let authorize = |r: reqwest::RequestBuilder| match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    let body = serde_json::to_vec(request)
        .map_err(|e| EndpointError::Refused(format!("task body: {e}")))?;
    let url = format!("{base}/v1/tasks");
    let response = authorize(client.post(&url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| EndpointError::Unavailable(format!("POST {url}: {e}")))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| EndpointError::Unavailable(format!("POST {url}: {e}")))?;
    if !status.is_success() {
        let message = format!("POST {url}: HTTP {status}: {}", head(&text));
        return Err(if status.is_server_error() {
            EndpointError::Unavailable(message)
        } else {
            EndpointError::Refused(message)
        });
    }
    let accepted: Value = serde_json::from_str(&text)
        .map_err(|e| EndpointError::Unavailable(format!("POST {url}: answer is not JSON: {e}")))?;
    let Some(id) = accepted["task_id"].as_str() else {
        return Err(EndpointError::Unavailable(format!(
            "POST {url}: answer without task_id: {}",
            head(&text)
        )));
    };
    let url = format!("{base}/v1/tasks/{id}");
    let mut delay = Duration::from_millis(5);
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
        let polled = async {
            let response = authorize(client.get(&url))
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            let status = response.status();
            let text = response
                .text()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            if !status.is_success() {
                return Err(format!("GET {url}: HTTP {status}: {}", head(&text)));
            }
            serde_json::from_str::<TaskView>(&text)
                .map_err(|e| format!("GET {url}: not a task: {e}"))
        }
        .await;
        match polled {
            Ok(view) if view.status.is_terminal() => return Ok(view),
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures >= MAX_POLL_FAILURES {
                    return Err(EndpointError::Unavailable(e));
                }
            }
        }
    }
}

fn head(text: &str) -> &str {
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
