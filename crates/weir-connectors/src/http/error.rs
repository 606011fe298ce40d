//! [`HttpError`]: what can go wrong calling an HTTP service, classified for retries.

use crate::Fault;
use std::time::Duration;
use weir_resilience::Retryable;

/// Everything that can go wrong in an HTTP enrichment call or a webhook delivery.
///
/// Connection failures, timeouts, `429 Too Many Requests` and `5xx` answers are retryable
/// ([`Retryable::is_retryable`]); other `4xx` answers, unusable responses and records that cannot
/// fill the URL template are not. URLs in messages never carry credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// A configuration value is invalid; `key` names it.
    #[error("invalid HTTP configuration `{key}`: {reason}")]
    Config { key: &'static str, reason: String },

    /// The record has no usable value for a placeholder of the URL template.
    #[error("cannot fill the URL template: field `{field}` is {found}")]
    MissingField { field: String, found: &'static str },

    /// The TLS handshake failed: the service's certificate is not trusted (not signed by the
    /// `ca_file`'s CA, or by a system root without one), not for this host, or expired. Not
    /// retried: only a new certificate or CA file helps.
    #[error("TLS with {url} failed: {reason} (check `ca_file` and the service's certificate)")]
    Tls { url: String, reason: String },

    /// The service could not be reached (connection refused or reset, DNS).
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },

    /// The request did not complete within the client's timeout.
    #[error("request to {url} timed out after {}", humantime::format_duration(*.after))]
    Timeout { url: String, after: Duration },

    /// The connection broke while sending the request or reading the answer.
    #[error("request to {url} failed: {reason}")]
    Transport { url: String, reason: String },

    /// The service answered with a non-success status.
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },

    /// The service answered 2xx, but not with what the step needs.
    #[error("unusable response from {url}: {reason}")]
    Response { url: String, reason: String },
}

impl HttpError {
    /// Who has to act on this error.
    pub fn fault(&self) -> Fault {
        match self {
            HttpError::Config { .. } | HttpError::MissingField { .. } | HttpError::Tls { .. } => {
                Fault::User
            }
            HttpError::Status { status, .. } if (400..500).contains(status) && *status != 429 => {
                Fault::User
            }
            _ => Fault::External,
        }
    }

    /// The HTTP status, if the service answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Sorts a `reqwest` error: timeouts, connection failures, then everything else on the wire.
    pub(crate) fn from_reqwest(url: &str, timeout: Duration, error: reqwest::Error) -> Self {
        let url = crate::error::redact_url(url);
        if error.is_timeout() {
            HttpError::Timeout {
                url,
                after: timeout,
            }
        } else if let Some(reason) = crate::tls::tls_failure(&error) {
            HttpError::Tls { url, reason }
        } else if error.is_connect() {
            HttpError::Connect {
                url,
                reason: error_chain(&error),
            }
        } else if error.is_builder() {
            HttpError::Config {
                key: "url",
                reason: format!("{url}: {}", error_chain(&error)),
            }
        } else {
            HttpError::Transport {
                url,
                reason: error_chain(&error),
            }
        }
    }
}

impl Retryable for HttpError {
    fn is_retryable(&self) -> bool {
        match self {
            HttpError::Connect { .. } | HttpError::Timeout { .. } | HttpError::Transport { .. } => {
                true
            }
            HttpError::Status { status, .. } => *status == 429 || *status >= 500,
            HttpError::Config { .. }
            | HttpError::MissingField { .. }
            | HttpError::Tls { .. }
            | HttpError::Response { .. } => false,
        }
    }
}

/// `reqwest` puts the useful part (e.g. "Connection refused") in the source chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// At most `max` bytes of an answer's body for a message, cut on a character boundary.
pub(crate) fn snippet(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> HttpError {
        HttpError::Status {
            url: "http://127.0.0.1/x".into(),
            status: code,
            body: String::new(),
        }
    }

    #[test]
    fn statuses_are_classified() {
        for code in [429, 500, 502, 503, 504] {
            assert!(status(code).is_retryable(), "{code}");
            assert_eq!(status(code).fault(), Fault::External);
        }
        for code in [400, 401, 403, 404, 409, 422] {
            assert!(!status(code).is_retryable(), "{code}");
            assert_eq!(status(code).fault(), Fault::User);
        }
    }

    #[test]
    fn transport_problems_are_retryable_and_data_problems_are_not() {
        let url = "http://127.0.0.1/x".to_string();
        let timeout = HttpError::Timeout {
            url: url.clone(),
            after: Duration::from_millis(1500),
        };
        assert!(timeout.is_retryable());
        assert_eq!(
            timeout.to_string(),
            "request to http://127.0.0.1/x timed out after 1s 500ms"
        );
        assert!(
            HttpError::Connect {
                url: url.clone(),
                reason: "refused".into()
            }
            .is_retryable()
        );
        assert!(
            !HttpError::Response {
                url,
                reason: "not JSON".into()
            }
            .is_retryable()
        );
        let missing = HttpError::MissingField {
            field: "user_id".into(),
            found: "missing",
        };
        assert!(!missing.is_retryable());
        assert_eq!(
            missing.to_string(),
            "cannot fill the URL template: field `user_id` is missing"
        );
    }

    #[test]
    fn snippets_are_cut_on_char_boundaries() {
        assert_eq!(snippet(b"  short  ", 10), "short");
        let long = "é".repeat(10);
        assert_eq!(snippet(long.as_bytes(), 5), "éé...");
    }
}
