//! The crate's error type and the error classification shared with other crates.

use crate::def::Compatibility;
use crate::validate::ValidationError;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// What kind of failure an error is, for callers that decide what to do next (retry, dead-letter,
/// alert) without knowing every error type of every crate.
///
/// | class | whose fault | retry? | typical action |
/// |---|---|---|---|
/// | `Validation` | the data | no | send the record to a dead-letter output |
/// | `Schema` | the configuration | no | fix the schema file or the registry, then restart |
/// | `Connection` | an external system | yes | retry with backoff, open a circuit breaker |
/// | `Internal` | this process or its machine (disk, bugs) | no | alert |
///
/// Other crates reuse this enum for their own errors so that retry policies and metrics can
/// match on one set of classes.
///
/// ```
/// use weir_schema::ErrorClass;
/// assert!(ErrorClass::Connection.is_retryable());
/// assert!(!ErrorClass::Validation.is_retryable());
/// assert_eq!(ErrorClass::Schema.to_string(), "schema");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// A record does not match its schema.
    Validation,
    /// A schema is unknown, badly defined or an incompatible change.
    Schema,
    /// An external system could not be reached or failed; trying again may succeed.
    Connection,
    /// Anything else: local I/O, broken invariants.
    Internal,
}

impl ErrorClass {
    /// The lowercase name used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Validation => "validation",
            ErrorClass::Schema => "schema",
            ErrorClass::Connection => "connection",
            ErrorClass::Internal => "internal",
        }
    }

    /// Whether trying the same operation again may succeed: only for `Connection`.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Connection)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every error of this crate.
///
/// ```
/// use weir_schema::{Error, ErrorClass, Registry, VersionSpec};
/// let dir = tempfile::tempdir().unwrap();
/// let registry = Registry::open(dir.path()).unwrap();
/// let err = registry.get("no.such.schema", VersionSpec::Latest).unwrap_err();
/// assert_eq!(err.class(), ErrorClass::Schema);
/// assert!(matches!(err, Error::Schema(_)));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A record did not match its schema.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// A schema problem: bad definition, unknown schema or version, incompatible change.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// Reading or writing the registry's files failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "read" or "create directory".
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    /// The class of this error: `Validation`, `Schema` or (for I/O) `Internal`.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Validation(_) => ErrorClass::Validation,
            Error::Schema(_) => ErrorClass::Schema,
            Error::Io { .. } => ErrorClass::Internal,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// A problem with a schema itself, as opposed to a record.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The definition (a file or a string) is not a valid schema.
    #[error("{origin}: invalid schema definition:{}", IssueList(issues))]
    Definition {
        /// Where the definition came from: a file path or a label given by the caller.
        origin: String,
        issues: Vec<DefinitionIssue>,
    },
    /// No schema of this name is registered.
    #[error("no schema named `{name}` in the registry at {}", registry.display())]
    UnknownSchema { name: String, registry: PathBuf },
    /// The schema exists but not in this version.
    #[error(
        "schema `{name}` has no version {version} (registered versions: {})",
        VersionList(available)
    )]
    UnknownVersion {
        name: String,
        version: u32,
        available: Vec<u32>,
    },
    /// The registry directory does not exist (commands that only read do not create it).
    #[error(
        "the schema registry directory {} does not exist (`weir schema register FILE` creates it; `--registry DIR` or WEIR_SCHEMAS chooses another)",
        dir.display()
    )]
    NoRegistry { dir: PathBuf },
    /// A name given to the registry is not a valid schema name.
    #[error("invalid schema name `{name}`: {reason}")]
    InvalidName { name: String, reason: String },
    /// The new version breaks the compatibility mode against the latest registered version.
    #[error(
        "schema `{name}`: the change from v{previous} is not {mode} compatible:{}",
        IncompatibilityList(problems)
    )]
    Incompatible {
        name: String,
        previous: u32,
        mode: Compatibility,
        problems: Vec<Incompatibility>,
    },
    /// The definition names a version other than the one the registry would assign.
    #[error(
        "schema `{name}`: the definition says version {requested}, but the next version is {next} (leave `version` out to get the next one)"
    )]
    VersionMismatch {
        name: String,
        requested: u32,
        next: u32,
    },
    /// The version exists with a different definition (possibly written concurrently).
    #[error("schema `{name}` v{version} is already registered with a different definition")]
    VersionExists { name: String, version: u32 },
}

/// One problem in a schema definition: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DefinitionIssue {
    /// 1-based line in the definition text, when known.
    pub line: Option<usize>,
    /// The key at fault, as a path: `fields[2].default`, `time_field`; empty when unknown.
    pub key: String,
    pub message: String,
}

impl fmt::Display for DefinitionIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// One reason a new schema version is incompatible with the previous one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Incompatibility {
    /// The field concerned; `None` for schema-wide settings such as `unknown_fields`.
    pub field: Option<String>,
    /// Which direction the change breaks: `backward` or `forward`.
    pub direction: Compatibility,
    pub reason: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "field `{field}`: {} ({})", self.reason, self.direction),
            None => write!(f, "{} ({})", self.reason, self.direction),
        }
    }
}

struct IssueList<'a>(&'a [DefinitionIssue]);

impl fmt::Display for IssueList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, " {one}"),
            many => many.iter().try_for_each(|i| write!(f, "\n  - {i}")),
        }
    }
}

struct IncompatibilityList<'a>(&'a [Incompatibility]);

impl fmt::Display for IncompatibilityList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, " {one}"),
            many => many.iter().try_for_each(|i| write!(f, "\n  - {i}")),
        }
    }
}

struct VersionList<'a>(&'a [u32]);

impl fmt::Display for VersionList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_variant() {
        let io = Error::io(
            "read",
            "/x",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        assert_eq!(io.class(), ErrorClass::Internal);
        assert_eq!(io.to_string(), "cannot read /x: gone");
        let schema: Error = SchemaError::UnknownVersion {
            name: "a.b".into(),
            version: 3,
            available: vec![1, 2],
        }
        .into();
        assert_eq!(schema.class(), ErrorClass::Schema);
        assert_eq!(
            schema.to_string(),
            "schema `a.b` has no version 3 (registered versions: 1, 2)"
        );
    }

    #[test]
    fn definition_errors_list_every_issue_with_line_and_key() {
        let e = SchemaError::Definition {
            origin: "s.yaml".into(),
            issues: vec![
                DefinitionIssue {
                    line: Some(4),
                    key: "fields[1].type".into(),
                    message: "unknown type".into(),
                },
                DefinitionIssue {
                    line: None,
                    key: "ttl".into(),
                    message: "needs time_field".into(),
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "s.yaml: invalid schema definition:\n  - line 4: fields[1].type: unknown type\n  - ttl: needs time_field"
        );
    }

    #[test]
    fn only_connection_errors_are_retryable() {
        for class in [
            ErrorClass::Validation,
            ErrorClass::Schema,
            ErrorClass::Internal,
        ] {
            assert!(!class.is_retryable(), "{class}");
        }
        assert!(ErrorClass::Connection.is_retryable());
        assert_eq!(
            serde_json::to_string(&ErrorClass::Connection).unwrap(),
            "\"connection\""
        );
    }
}
