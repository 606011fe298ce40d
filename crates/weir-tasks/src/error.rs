//! [`TaskError`] and [`AgentError`].

use std::time::Duration;

/// Errors of the task service (submit, get, cancel, open).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TaskError {
    /// The task store failed.
    #[error("task store {path}: {message}")]
    Store {
        /// The store's directory.
        path: String,
        /// What failed.
        message: String,
    },
    /// No configured agent has the action as a capability (or the pinned agent lacks it).
    #[error("no agent can run action {action:?}{}", pinned_note(.agent))]
    NoAgent {
        /// The task's action.
        action: String,
        /// The agent the task was pinned to.
        agent: Option<String>,
    },
    /// A request field is invalid.
    #[error("invalid task: {field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What was expected.
        message: String,
    },
    /// The service is shutting down.
    #[error("the task service is shut down")]
    ShutDown,
}

fn pinned_note(agent: &Option<String>) -> String {
    match agent {
        Some(a) => format!(" on agent {a:?}"),
        None => String::new(),
    }
}

/// Why one attempt of a task failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentError {
    /// The agent could not be reached or did not answer properly (HTTP error, spawn failure).
    #[error("{0}")]
    Unavailable(String),
    /// The agent answered with an error (a non-2xx status, a non-zero exit).
    #[error("{0}")]
    Failed(String),
    /// The attempt ran longer than its timeout (the process, if any, was killed).
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    /// The agent's answer was not valid JSON or too large.
    #[error("bad output: {0}")]
    BadOutput(String),
}
