//! HTTP: an enrichment client ([`HttpEnricher`]: one call per record, its JSON answer merged
//! into the record) and a webhook sink ([`HttpSink`]: records POSTed in batches), both under a
//! [`weir_resilience::PolicyConfig`]. Errors are [`HttpError`]s, classified for retries.
//!
//! `http://` and `https://` (rustls with the ring provider); an `https://` service is verified
//! against the system's roots, or with `ca_file` only against that file's CA ([`crate::tls`]).

mod enrich;
mod error;
mod options;
mod sink;
mod template;
#[doc(hidden)]
pub mod test_server;

pub use enrich::{Enrichment, HttpEnrichConfig, HttpEnricher};
pub use error::HttpError;
pub use options::{HttpSinkOptions, http_error, policy_error};
pub use sink::{BodyFormat, HttpSink, HttpSinkConfig};
pub use template::UrlTemplate;

use serde::Deserialize;
use std::sync::OnceLock;
use std::time::Duration;
use weir_resilience::stream::AsyncRuntime;

/// The request method of an enrichment call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Method {
    /// `GET` the URL.
    #[default]
    #[serde(rename = "GET", alias = "get")]
    Get,
    /// `POST` the record, as a JSON object, to the URL.
    #[serde(rename = "POST", alias = "post")]
    Post,
}

/// The runtime for async operators that call the connectors: the process's shared I/O runtime
/// (the one [`crate::block_on`] uses), so a process runs one tokio runtime for all of them.
pub fn runtime() -> AsyncRuntime {
    static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    let handle = HANDLE.get_or_init(|| {
        // On a thread of its own, so that this also works when called from async code.
        let fetch = || crate::block_on(async { tokio::runtime::Handle::current() });
        std::thread::scope(|s| s.spawn(fetch).join())
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    AsyncRuntime::from_handle(handle.clone())
}

/// The client of a step or sink: `ca_file` (for an `https://` URL only) is the one CA trusted.
fn build_client(
    url: &str,
    timeout: Duration,
    ca_file: Option<&std::path::Path>,
) -> Result<reqwest::Client, HttpError> {
    if timeout.is_zero() {
        return Err(HttpError::Config {
            key: "timeout",
            reason: "expected a duration longer than zero".into(),
        });
    }
    if ca_file.is_some()
        && !url
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("https://")
    {
        return Err(HttpError::Config {
            key: "ca_file",
            reason: format!(
                "a CA file applies to https:// URLs only, and the URL is `{}`",
                crate::error::redact_url(url)
            ),
        });
    }
    crate::tls::client_builder(ca_file)
        .map_err(|e| HttpError::Config {
            key: "ca_file",
            reason: e.to_string(),
        })?
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(|e| HttpError::Config {
            key: "url",
            reason: format!("cannot build an HTTP client: {e}"),
        })
}

fn header_map(headers: &[(String, String)]) -> Result<reqwest::header::HeaderMap, HttpError> {
    use reqwest::header::{HeaderName, HeaderValue};
    let mut map = reqwest::header::HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let bad = |what: &str| HttpError::Config {
            key: "headers",
            reason: format!("{what} in header `{name}`"),
        };
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("invalid name"))?;
        let value = HeaderValue::from_str(value).map_err(|_| bad("invalid value"))?;
        map.insert(header, value);
    }
    Ok(map)
}

/// Sends a request and reads the whole answer; a non-2xx status is an error carrying the start
/// of the body.
async fn read_answer(
    url: &str,
    timeout: Duration,
    request: reqwest::RequestBuilder,
) -> Result<bytes::Bytes, HttpError> {
    let wire = |e| HttpError::from_reqwest(url, timeout, e);
    let response = request.send().await.map_err(wire)?;
    let status = response.status();
    // Read the body also on errors: it says why, and a drained connection can be reused.
    let body = response.bytes().await.map_err(wire)?;
    if !status.is_success() {
        return Err(HttpError::Status {
            url: crate::error::redact_url(url),
            status: status.as_u16(),
            body: error::snippet(&body, 200),
        });
    }
    Ok(body)
}

/// Connectivity check: opens a TCP connection to the URL's host and port (within 5 s); no
/// request is sent (a webhook may not be idempotent).
pub fn check(url: &str) -> Result<(), crate::ConnectorError> {
    use std::net::ToSocketAddrs;
    let target = crate::error::redact_url(url);
    let unreachable = |reason: String| crate::ConnectorError::Unreachable {
        connector: "HTTP",
        target: target.clone(),
        reason,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| crate::ConnectorError::Config {
        key: "url",
        reason: format!("`{target}` is not a URL: {e}"),
    })?;
    let host = parsed
        .host_str()
        .ok_or_else(|| unreachable("the URL has no host".into()))?;
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| unreachable("the URL has no port".into()))?;
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut last = String::from("no address");
    for addr in addrs {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5)) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(unreachable(last))
}
