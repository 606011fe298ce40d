use std::time::Duration;

/// Whose fault an error is: what a user reads first, and what decides who has to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The configuration, the SQL or the data given to the connector.
    User,
    /// The external system or the network between us.
    External,
    /// A bug in Weir (an impossible state, a reply we do not understand).
    Internal,
}

/// Everything that can go wrong in this crate.
///
/// Each error names where it happened (stream, command, query, batch) and tells, through
/// [`ConnectorError::is_retryable`] and [`ConnectorError::fault`], whether trying again may help
/// and who has to act. Connection strings in messages never carry a password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A connectivity check (`weir validate --connect`) could not reach a service.
    #[error("cannot connect to {connector} at {target}: {reason}")]
    Unreachable {
        connector: &'static str,
        target: String,
        reason: String,
    },

    /// A connectivity check found a path that cannot be read or written.
    #[error("{path}: {reason}")]
    FileAccess { path: String, reason: String },

    /// A configuration value is invalid; `key` names it.
    #[error("invalid connector configuration `{key}`: {reason}")]
    Config { key: &'static str, reason: String },

    /// The TLS handshake failed: the server's certificate is not trusted (not signed by the
    /// `ca_file`'s CA, or by a system root without one), not for this host, or expired.
    #[error(
        "TLS with {connector} at {url} failed: {reason} (check `ca_file` and the server's certificate)"
    )]
    Tls {
        connector: &'static str,
        url: String,
        reason: String,
    },

    /// Redis could not be reached or refused the connection.
    #[error("cannot connect to Redis at {url}: {source}")]
    RedisConnect {
        url: String,
        #[source]
        source: redis::RedisError,
    },

    /// A Redis command failed (connection lost, timeout, or an error reply).
    #[error("Redis {command} on stream `{stream}` failed: {source}")]
    Redis {
        command: &'static str,
        stream: String,
        #[source]
        source: redis::RedisError,
    },

    /// Redis answered something this crate does not understand.
    #[error("unexpected Redis reply to {command} on stream `{stream}`: {reason}")]
    RedisReply {
        command: &'static str,
        stream: String,
        reason: String,
    },

    /// A stream id could not be parsed or is not allowed.
    #[error("invalid stream id `{id}`: {reason}")]
    InvalidStreamId { id: String, reason: &'static str },

    /// ClickHouse could not be reached, or the connection broke before an answer.
    #[error("cannot reach ClickHouse at {url} ({query}): {source}")]
    ClickHouseConnection {
        url: String,
        query: String,
        #[source]
        source: reqwest::Error,
    },

    /// A ClickHouse request took longer than the configured timeout.
    #[error("ClickHouse request timed out after {after:?} at {url} ({query})")]
    ClickHouseTimeout {
        url: String,
        query: String,
        after: Duration,
    },

    /// ClickHouse refused the query and said why, with its error code
    /// (62: syntax error, 60: unknown table, 81: unknown database, ...).
    #[error("ClickHouse error {code} in `{query}`: {message}")]
    ClickHouseServer {
        code: u32,
        message: String,
        query: String,
    },

    /// ClickHouse answered with an HTTP error that carries no ClickHouse error code.
    #[error("ClickHouse answered HTTP {status} to `{query}`: {body}")]
    ClickHouseHttp {
        status: u16,
        body: String,
        query: String,
    },

    /// ClickHouse answered, but not in the expected shape.
    #[error("unexpected ClickHouse response to `{query}`: {reason}")]
    ClickHouseResponse { query: String, reason: String },

    /// A batch handed to the exactly-once inserter cannot be inserted atomically or is malformed.
    #[error("batch `{batch}`: {reason}")]
    Batch { batch: String, reason: String },
}

/// ClickHouse error codes that describe a passing condition of the server rather than a fault
/// of the query: trying again later may succeed.
const RETRYABLE_CLICKHOUSE_CODES: &[u32] = &[
    3,   // UNEXPECTED_END_OF_FILE (body cut by the network)
    159, // TIMEOUT_EXCEEDED
    164, // READONLY (replica temporarily read-only)
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    203, // NO_FREE_CONNECTION
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    241, // MEMORY_LIMIT_EXCEEDED
    242, // TABLE_IS_READ_ONLY
    252, // TOO_MANY_PARTS
    319, // UNKNOWN_STATUS_OF_INSERT
    425, // SYSTEM_ERROR
];

impl ConnectorError {
    /// Whether the same request may succeed if tried again later (a lost connection, a timeout,
    /// an overloaded server). Syntax errors, unknown tables and bad configuration are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectorError::RedisConnect { source, .. } | ConnectorError::Redis { source, .. } => {
                redis_is_retryable(source)
            }
            ConnectorError::ClickHouseConnection { .. }
            | ConnectorError::ClickHouseTimeout { .. }
            | ConnectorError::Unreachable { .. } => true,
            ConnectorError::ClickHouseServer { code, .. } => {
                RETRYABLE_CLICKHOUSE_CODES.contains(code)
            }
            ConnectorError::ClickHouseHttp { status, .. } => *status >= 500,
            ConnectorError::Config { .. }
            | ConnectorError::RedisReply { .. }
            | ConnectorError::InvalidStreamId { .. }
            | ConnectorError::ClickHouseResponse { .. }
            | ConnectorError::Batch { .. }
            | ConnectorError::Tls { .. }
            | ConnectorError::FileAccess { .. } => false,
        }
    }

    /// Who has to act on this error.
    pub fn fault(&self) -> Fault {
        match self {
            ConnectorError::Config { .. }
            | ConnectorError::Tls { .. }
            | ConnectorError::InvalidStreamId { .. }
            | ConnectorError::Batch { .. }
            | ConnectorError::FileAccess { .. } => Fault::User,
            ConnectorError::RedisConnect { source, .. } | ConnectorError::Redis { source, .. } => {
                match source.kind() {
                    redis::ErrorKind::InvalidClientConfig
                    | redis::ErrorKind::AuthenticationFailed => Fault::User,
                    _ => Fault::External,
                }
            }
            ConnectorError::ClickHouseServer { code, .. } => {
                if RETRYABLE_CLICKHOUSE_CODES.contains(code) {
                    Fault::External
                } else {
                    // Syntax errors, unknown tables or columns, unparsable rows: the query or data.
                    Fault::User
                }
            }
            ConnectorError::ClickHouseConnection { .. }
            | ConnectorError::ClickHouseTimeout { .. }
            | ConnectorError::ClickHouseHttp { .. }
            | ConnectorError::Unreachable { .. } => Fault::External,
            ConnectorError::RedisReply { .. } | ConnectorError::ClickHouseResponse { .. } => {
                Fault::Internal
            }
        }
    }

    /// ClickHouse's error code, when ClickHouse refused a query.
    pub fn clickhouse_code(&self) -> Option<u32> {
        match self {
            ConnectorError::ClickHouseServer { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn redis(command: &'static str, stream: &str, source: redis::RedisError) -> Self {
        ConnectorError::Redis {
            command,
            stream: stream.to_string(),
            source,
        }
    }

    pub(crate) fn reply(command: &'static str, stream: &str, reason: impl Into<String>) -> Self {
        ConnectorError::RedisReply {
            command,
            stream: stream.to_string(),
            reason: reason.into(),
        }
    }
}

fn redis_is_retryable(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        return true;
    }
    matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ClusterDown
        )
    )
}

/// A URL as it may appear in messages and logs: without user name or password.
pub(crate) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() || !parsed.username().is_empty() {
                let _ = parsed.set_password(None);
                let _ = parsed.set_username("");
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable url>".to_string(),
    }
}

/// Shortens SQL for an error message; row data is never part of it.
pub(crate) fn short_query(sql: &str) -> String {
    const MAX: usize = 200;
    let sql = sql.trim();
    if sql.len() <= MAX {
        return sql.to_string();
    }
    let mut end = MAX;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &sql[..end])
}

impl From<ConnectorError> for weir_core::OperatorError {
    /// For the runtime: a failure that may pass on retry is an I/O error; the rest is the
    /// configuration's (or the data's) fault.
    fn from(e: ConnectorError) -> Self {
        let kind = if e.is_retryable() {
            weir_core::ErrorKind::Io
        } else {
            weir_core::ErrorKind::Config
        };
        weir_core::OperatorError::new(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_url("redis://user:secret@127.0.0.1:6390/0"),
            "redis://127.0.0.1:6390/0"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:8124/"),
            "http://127.0.0.1:8124/"
        );
        assert!(!redact_url("not a url :secret@").contains("secret"));
    }

    #[test]
    fn shortens_long_queries_on_char_boundaries() {
        let long = "é".repeat(300);
        let short = short_query(&long);
        assert!(short.ends_with("..."));
        assert!(short.len() <= 203);
    }

    #[test]
    fn clickhouse_codes_are_classified() {
        let syntax = ConnectorError::ClickHouseServer {
            code: 62,
            message: "Syntax error".into(),
            query: "SELEC 1".into(),
        };
        assert!(!syntax.is_retryable());
        assert_eq!(syntax.fault(), Fault::User);
        let parts = ConnectorError::ClickHouseServer {
            code: 252,
            message: "Too many parts".into(),
            query: "INSERT".into(),
        };
        assert!(parts.is_retryable());
        assert_eq!(parts.fault(), Fault::External);
    }
}
