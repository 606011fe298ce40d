//! The task as submitted, stored and shown: requests, records, statuses, views.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// Where a task is in its life. The last four are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Accepted and durable, waiting for an agent (also between attempts).
    Queued,
    /// An attempt is running on an agent.
    Running,
    /// An attempt returned a result.
    Succeeded,
    /// Every attempt of the budget failed (the last one with an error).
    Failed,
    /// The last attempt of the budget ran longer than the task's timeout.
    TimedOut,
    /// Cancelled before it finished.
    Cancelled,
}

impl TaskStatus {
    /// Every status, in the order of the metrics' labels.
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::TimedOut,
        TaskStatus::Cancelled,
    ];

    /// The name used in JSON and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::TimedOut => "timed_out",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the task is finished (its record only waits for `results_ttl`).
    pub fn is_terminal(self) -> bool {
        !matches!(self, TaskStatus::Queued | TaskStatus::Running)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task as submitted (`POST /v1/tasks`): `{action, data, priority?, timeout?, agent?,
/// idempotency_key?}`. `timeout` is seconds (a number) or a duration string such as `"250ms"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRequest {
    /// The action; routed to an agent with this capability.
    pub action: String,
    /// The task's input, given to the agent as JSON.
    #[serde(default)]
    pub data: Value,
    /// Higher runs first (default 0); see the aging rule in the crate docs.
    #[serde(default)]
    pub priority: i32,
    /// Limit of each attempt; default the agent policy's `timeout`, else the service default.
    #[serde(
        default,
        deserialize_with = "deserialize_timeout",
        serialize_with = "serialize_timeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Run only on this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// A resubmit with the same key returns the existing task (while it is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl TaskRequest {
    /// A request for `action` with `data`, priority 0 and the defaults.
    pub fn new(action: impl Into<String>, data: Value) -> Self {
        TaskRequest {
            action: action.into(),
            data,
            priority: 0,
            timeout: None,
            agent: None,
            idempotency_key: None,
        }
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Pins the task to one agent.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

fn deserialize_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(f64),
        Text(String),
    }
    let raw: Option<Raw> = Option::deserialize(d)?;
    let duration = match raw {
        None => return Ok(None),
        Some(Raw::Seconds(s)) => {
            if !(s.is_finite() && s > 0.0) {
                return Err(serde::de::Error::custom(format!(
                    "timeout: expected a positive number of seconds, found {s}"
                )));
            }
            Duration::from_secs_f64(s)
        }
        Some(Raw::Text(text)) => humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "timeout: expected a duration such as \"5s\", found {text:?} ({e})"
            ))
        })?,
    };
    if duration.is_zero() {
        return Err(serde::de::Error::custom(
            "timeout: expected a duration longer than zero",
        ));
    }
    Ok(Some(duration))
}

fn serialize_timeout<S: serde::Serializer>(t: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// The answer to a submit (202): `{task_id, status}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskAccepted {
    /// The task's id (the existing task's on an idempotent resubmit).
    pub task_id: String,
    /// Its status now.
    pub status: TaskStatus,
    /// False when an `idempotency_key` matched an existing task (nothing was created).
    #[serde(skip)]
    pub created: bool,
}

/// One attempt of a task on an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The agent that ran it.
    pub agent: String,
    /// `succeeded`, `failed`, `timed_out` or `cancelled`.
    pub status: TaskStatus,
    /// The error, when it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds the attempt ran.
    pub execution_time: f64,
}

/// A task as `GET /v1/tasks/{id}` shows it: `{task_id, status, result, error, execution_time,
/// attempts, agent}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    /// The id.
    pub task_id: String,
    /// The status.
    pub status: TaskStatus,
    /// The result, once succeeded.
    pub result: Option<Value>,
    /// The error of a failed or timed-out task: every attempt's error, numbered.
    pub error: Option<String>,
    /// Seconds from the start of the first attempt to the end, once finished.
    pub execution_time: Option<f64>,
    /// Every finished attempt, in order.
    pub attempts: Vec<Attempt>,
    /// The agent of the latest attempt.
    pub agent: Option<String>,
}

/// A task in a list (`GET /v1/tasks`): who, what, where it is; without data and result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSummary {
    /// The id.
    pub task_id: String,
    /// The action.
    pub action: String,
    /// The status.
    pub status: TaskStatus,
    /// The priority.
    pub priority: i32,
    /// The agent of the latest attempt.
    pub agent: Option<String>,
    /// Finished attempts.
    pub attempts: usize,
    /// Submission time, seconds since the Unix epoch.
    pub submitted_at: f64,
    /// Finish time, seconds since the Unix epoch, once finished.
    pub finished_at: Option<f64>,
    /// The error of a failed or timed-out task.
    pub error: Option<String>,
}

/// Which tasks [`TaskService::list`](crate::TaskService::list) returns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskFilter {
    /// Only tasks in this status.
    pub status: Option<TaskStatus>,
    /// Only tasks of this action.
    pub action: Option<String>,
    /// At most this many (default and most: [`MAX_LIST`]).
    pub limit: Option<usize>,
}

/// The most tasks one list returns.
pub const MAX_LIST: usize = 1000;

impl TaskFilter {
    pub(crate) fn matches(&self, rec: &TaskRecord) -> bool {
        self.status.is_none_or(|s| s == rec.status)
            && self.action.as_ref().is_none_or(|a| *a == rec.action)
    }
}

impl std::str::FromStr for TaskStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        TaskStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "expected one of {}, found {text:?}",
                    TaskStatus::ALL.map(|s| s.as_str()).join(", ")
                )
            })
    }
}

/// The stored record of a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TaskRecord {
    pub task_id: String,
    pub action: String,
    pub data: Value,
    pub priority: i32,
    pub timeout_ms: Option<u64>,
    pub pin: Option<String>,
    pub idempotency_key: Option<String>,
    pub status: TaskStatus,
    /// Wall-clock milliseconds since the Unix epoch.
    pub submitted_ms: u64,
    /// Submission order (FIFO within a priority), unique per store.
    pub seq: u64,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub attempts: Vec<Attempt>,
    pub agent: Option<String>,
    /// Attempts allowed, fixed by the first attempt's agent (1 + its policy's retries).
    pub budget: Option<u32>,
    /// How many times the task was requeued after a restart found it running.
    #[serde(default)]
    pub recovered: u32,
}

impl TaskRecord {
    pub fn summary(&self) -> TaskSummary {
        TaskSummary {
            task_id: self.task_id.clone(),
            action: self.action.clone(),
            status: self.status,
            priority: self.priority,
            agent: self.agent.clone(),
            attempts: self.attempts.len(),
            submitted_at: self.submitted_ms as f64 / 1000.0,
            finished_at: self.finished_ms.map(|f| f as f64 / 1000.0),
            error: self.error.clone(),
        }
    }

    pub fn view(&self) -> TaskView {
        let execution_time = match (self.started_ms, self.finished_ms) {
            (Some(s), Some(f)) => Some(f.saturating_sub(s) as f64 / 1000.0),
            _ => None,
        };
        TaskView {
            task_id: self.task_id.clone(),
            status: self.status,
            result: self.result.clone(),
            error: self.error.clone(),
            execution_time,
            attempts: self.attempts.clone(),
            agent: self.agent.clone(),
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_parses_seconds_and_duration_strings_and_rejects_unknown_keys() {
        let r: TaskRequest =
            serde_json::from_str(r#"{"action":"echo","data":{"x":1},"timeout":1.5}"#).unwrap();
        assert_eq!(r.timeout, Some(Duration::from_millis(1500)));
        let r: TaskRequest = serde_json::from_str(r#"{"action":"a","timeout":"250ms"}"#).unwrap();
        assert_eq!(r.timeout, Some(Duration::from_millis(250)));
        assert_eq!(r.data, Value::Null);
        let e = serde_json::from_str::<TaskRequest>(r#"{"action":"a","prio":1}"#).unwrap_err();
        assert!(e.to_string().contains("prio"), "{e}");
        let e = serde_json::from_str::<TaskRequest>(r#"{"action":"a","timeout":0}"#).unwrap_err();
        assert!(e.to_string().contains("timeout"), "{e}");
    }

    #[test]
    fn statuses_serialise_with_the_names_of_serve_md() {
        let names: Vec<String> = TaskStatus::ALL
            .iter()
            .map(|s| serde_json::to_string(s).unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "\"queued\"",
                "\"running\"",
                "\"succeeded\"",
                "\"failed\"",
                "\"timed_out\"",
                "\"cancelled\""
            ]
        );
    }
}
