//! The crate's error types: [`Error`] for the outcome of a protected call, [`ConfigError`] for a
//! configuration that cannot work.

use std::fmt;
use std::time::Duration;

/// Why a call protected by a [`Policy`](crate::Policy) or a [`Fallback`](crate::Fallback) failed.
///
/// `E` is the operation's own error type; it is kept as it is (not stringified), so a caller can
/// match on it after the retries are exhausted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error<E> {
    /// The operation itself failed: its error was not retryable, or the retries were exhausted.
    /// `attempts` is the number of calls made.
    #[error("operation failed after {attempts} attempt(s): {source}")]
    Operation {
        /// The error of the last attempt.
        source: E,
        /// How many times the operation was called.
        attempts: u32,
    },
    /// The last attempt did not finish within the per-attempt timeout.
    #[error("attempt {attempts} timed out after {}", humantime::format_duration(*.timeout))]
    AttemptTimeout {
        /// The per-attempt timeout.
        timeout: Duration,
        /// How many times the operation was called (the last one timed out).
        attempts: u32,
    },
    /// The whole call (attempts, backoff sleeps and waits for rate limits and concurrency slots)
    /// did not finish within the overall timeout.
    #[error(
        "overall timeout of {} elapsed after {attempts} attempt(s)",
        humantime::format_duration(*.timeout)
    )]
    OverallTimeout {
        /// The overall timeout.
        timeout: Duration,
        /// How many times the operation had been called when the timeout fired.
        attempts: u32,
    },
    /// The circuit breaker was open before the first attempt, so the operation was not called.
    /// (If it opens between retries, the last real error is returned instead.)
    #[error("circuit breaker is open: the call was rejected without calling the operation")]
    CircuitOpen,
    /// Every alternative of a [`Fallback`](crate::Fallback) failed.
    #[error(transparent)]
    AllFailed(AllFailed<E>),
}

impl<E> Error<E> {
    /// How many times the operation was called (summed over alternatives for a fallback).
    pub fn attempts(&self) -> u32 {
        match self {
            Error::Operation { attempts, .. }
            | Error::AttemptTimeout { attempts, .. }
            | Error::OverallTimeout { attempts, .. } => *attempts,
            Error::CircuitOpen => 0,
            Error::AllFailed(all) => all.failures.iter().map(|f| f.error.attempts()).sum(),
        }
    }

    /// The operation's own error, if this is [`Error::Operation`].
    pub fn operation_error(&self) -> Option<&E> {
        match self {
            Error::Operation { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The operation's own error by value, if this is [`Error::Operation`].
    pub fn into_operation_error(self) -> Option<E> {
        match self {
            Error::Operation { source, .. } => Some(source),
            _ => None,
        }
    }

    /// True for a per-attempt or an overall timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::AttemptTimeout { .. } | Error::OverallTimeout { .. }
        )
    }

    /// True if an open circuit breaker rejected the call.
    pub fn is_circuit_open(&self) -> bool {
        matches!(self, Error::CircuitOpen)
    }
}

/// Every alternative of a [`Fallback`](crate::Fallback) failed: one entry per alternative, in the
/// order they were tried. Displays as one message listing every failure.
#[derive(Debug)]
pub struct AllFailed<E> {
    pub(crate) failures: Vec<AlternativeFailure<E>>,
}

impl<E> AllFailed<E> {
    /// The failures, in the order the alternatives were tried.
    pub fn failures(&self) -> &[AlternativeFailure<E>] {
        &self.failures
    }

    /// The failures by value.
    pub fn into_failures(self) -> Vec<AlternativeFailure<E>> {
        self.failures
    }
}

impl<E: fmt::Display> fmt::Display for AllFailed<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "all {} alternatives failed", self.failures.len())?;
        for (i, failure) in self.failures.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}{failure}")?;
        }
        Ok(())
    }
}

impl<E: std::error::Error + 'static> std::error::Error for AllFailed<E> {
    /// The first alternative's error: `Error::source` can only follow one chain.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failures
            .first()
            .map(|f| &f.error as &(dyn std::error::Error + 'static))
    }
}

/// How one alternative of a [`Fallback`](crate::Fallback) failed.
#[derive(Debug)]
pub struct AlternativeFailure<E> {
    /// Position of the alternative in the fallback's list, from 0.
    pub index: usize,
    /// The alternative's label (its `Display`, or the label given to the fallback).
    pub label: String,
    /// What went wrong with it, after its own retries. `Error::CircuitOpen` means it was skipped.
    pub error: Error<E>,
}

impl<E: fmt::Display> fmt::Display for AlternativeFailure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.index + 1, self.label, self.error)
    }
}

/// A configuration that cannot work; `key` names the offending setting (YAML path for
/// [`PolicyConfig`](crate::PolicyConfig), builder method otherwise).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting has a value outside its valid range.
    #[error("invalid `{key}`: expected {expected}, found {found}")]
    Invalid {
        /// The setting, e.g. `backoff.factor`.
        key: &'static str,
        /// What a valid value looks like.
        expected: &'static str,
        /// The value that was given.
        found: String,
    },
    /// A fallback was built from an empty list of alternatives.
    #[error("a fallback needs at least one alternative, found none")]
    NoAlternatives,
}

impl ConfigError {
    pub(crate) fn invalid(
        key: &'static str,
        expected: &'static str,
        found: impl fmt::Display,
    ) -> Self {
        ConfigError::Invalid {
            key,
            expected,
            found: found.to_string(),
        }
    }
}

/// Classifies an error as worth retrying or not. A [`Policy`](crate::Policy) built with
/// [`PolicyBuilder::retry_when_retryable`](crate::PolicyBuilder::retry_when_retryable) (and every
/// policy built from a [`PolicyConfig`](crate::PolicyConfig)) asks the error through this trait.
pub trait Retryable {
    /// True if calling again may succeed (a transient fault: timeout, connection reset,
    /// overload). False for faults a retry cannot fix (bad input, not found, unauthorised).
    fn is_retryable(&self) -> bool;
}

impl Retryable for std::io::Error {
    fn is_retryable(&self) -> bool {
        use std::io::ErrorKind::*;
        matches!(
            self.kind(),
            Interrupted
                | WouldBlock
                | TimedOut
                | ConnectionReset
                | ConnectionAborted
                | ConnectionRefused
                | NotConnected
                | BrokenPipe
                | UnexpectedEof
        )
    }
}

/// A nested policy's error: the operation's own classification decides; timeouts are retryable;
/// an open circuit and an exhausted fallback are not (retrying at once cannot help).
impl<E: Retryable> Retryable for Error<E> {
    fn is_retryable(&self) -> bool {
        match self {
            Error::Operation { source, .. } => source.is_retryable(),
            Error::AttemptTimeout { .. } | Error::OverallTimeout { .. } => true,
            Error::CircuitOpen | Error::AllFailed(_) => false,
        }
    }
}
