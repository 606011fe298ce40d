//! Errors of operators and jobs.

use std::fmt;
use std::sync::Arc;

/// What kind of failure an operator hit; decides how the job reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A user function returned an error.
    UserFunction,
    /// A user function panicked.
    Panic,
    /// Reading or writing outside the process failed (files, network).
    Io,
    /// Input that cannot be decoded or does not fit the expected format.
    Data,
    /// Bad configuration detected while running.
    Config,
    /// A bug in Weir.
    Internal,
}

/// An operator's failure, before the runtime adds which operator and instance it was.
#[derive(Debug, Clone, thiserror::Error)]
pub struct OperatorError {
    pub kind: ErrorKind,
    pub message: String,
    /// Position of the failing record in the operator instance's input (0-based), if known.
    pub position: Option<u64>,
}

impl OperatorError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        OperatorError {
            kind,
            message: message.into(),
            position: None,
        }
    }

    pub fn user(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::UserFunction, message.to_string())
    }

    pub fn io(context: impl fmt::Display, err: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Io, format!("{context}: {err}"))
    }

    pub fn at(mut self, position: u64) -> Self {
        self.position = Some(position);
        self
    }
}

impl fmt::Display for OperatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Panic => write!(f, "panicked: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// Why a job failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JobError {
    #[error("{}", describe_operator_failure(operator, *instance, error))]
    Operator {
        operator: Arc<str>,
        instance: usize,
        error: OperatorError,
    },
    #[error("invalid job: {0}")]
    Plan(String),
    #[error("the job was cancelled")]
    Cancelled,
}

fn describe_operator_failure(operator: &str, instance: usize, error: &OperatorError) -> String {
    let at = match error.position {
        Some(p) => format!(" at record {p}"),
        None => String::new(),
    };
    format!("operator '{operator}' (instance {instance}) failed{at}: {error}")
}

impl JobError {
    /// The underlying operator error, if an operator failed.
    pub fn operator_error(&self) -> Option<&OperatorError> {
        match self {
            JobError::Operator { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Turns a panic payload into a message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}
