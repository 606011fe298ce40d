//! The remote client: submits pipelines and tasks to a `weir serve` and follows them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), weir_server::client::ClientError> {
//! use weir_server::client::RemoteEnvironment;
//! let remote = RemoteEnvironment::connect("http://127.0.0.1:7878", None).await?;
//! let yaml = std::fs::read_to_string("pipeline.yaml").unwrap_or_default();
//! let submitted = remote.submit(&yaml).await?;
//! let name = submitted["name"].as_str().unwrap_or_default().to_string();
//! remote.wait_for_status(&name, &["finished", "failed"], std::time::Duration::from_secs(60)).await?;
//! # Ok(()) }
//! ```

use serde_json::Value;
use std::time::{Duration, Instant};

/// Why a remote call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The CA certificate file (`--ca-cert`, `WEIR_CA_CERT`) cannot be used (exit 2).
    #[error("--ca-cert: {0}")]
    CaCert(String),
    /// The server answered with an error (`{"error": {...}}`).
    #[error("{status}: {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
        body: Value,
    },
    #[error("pipeline `{name}` did not reach {wanted} within {seconds} s (it is `{status}`)")]
    Timeout {
        name: String,
        wanted: String,
        status: String,
        seconds: u64,
    },
}

/// A `weir serve` to submit pipelines to: the remote counterpart of `Environment::local()`.
#[derive(Debug, Clone)]
pub struct RemoteEnvironment {
    url: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl RemoteEnvironment {
    /// Connects (asks `/health`). An `https://` server must have a certificate the system
    /// trusts; see [`RemoteEnvironment::connect_with_ca`].
    pub async fn connect(url: &str, token: Option<&str>) -> Result<Self, ClientError> {
        Self::connect_with_ca(url, token, None).await
    }

    /// Connects (asks `/health`); with `ca_cert` (PEM), an `https://` server's certificate
    /// must be signed by that CA (and only the file's certificates are trusted).
    pub async fn connect_with_ca(
        url: &str,
        token: Option<&str>,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Self, ClientError> {
        let http = weir_connectors::tls::client_builder(ca_cert)
            .map_err(|e| ClientError::CaCert(e.to_string()))?
            .build()
            .map_err(|e| ClientError::CaCert(format!("cannot build the HTTP client: {e}")))?;
        let remote = RemoteEnvironment {
            url: url.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
            http,
        };
        remote.call(reqwest::Method::GET, "/health", None).await?;
        Ok(remote)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.url);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            url: self.url.clone(),
            message: match weir_connectors::tls::tls_failure(&e) {
                Some(tls) => format!(
                    "TLS failed: {tls} (is the server's CA given with --ca-cert or WEIR_CA_CERT?)"
                ),
                None => error_chain(&e),
            },
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(body);
        }
        let error = &body["error"];
        Err(ClientError::Server {
            status: status.as_u16(),
            code: error["code"].as_str().unwrap_or("unknown").to_string(),
            message: error["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| body.to_string()),
            body,
        })
    }

    /// Submits a pipeline in YAML and starts it; answers its description.
    pub async fn submit(&self, yaml: &str) -> Result<Value, ClientError> {
        self.call(
            reqwest::Method::POST,
            "/v1/pipelines",
            Some(("application/yaml", yaml.to_string())),
        )
        .await
    }

    /// Every pipeline.
    pub async fn pipelines(&self) -> Result<Value, ClientError> {
        self.call(reqwest::Method::GET, "/v1/pipelines", None).await
    }

    /// One pipeline in detail.
    pub async fn pipeline(&self, name: &str) -> Result<Value, ClientError> {
        self.call(reqwest::Method::GET, &format!("/v1/pipelines/{name}"), None)
            .await
    }

    /// Stops a pipeline with a checkpoint; returns when it has stopped.
    pub async fn stop(&self, name: &str) -> Result<Value, ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/pipelines/{name}/stop"),
            None,
        )
        .await
    }

    /// Resumes a pipeline from its latest checkpoint.
    pub async fn resume(&self, name: &str) -> Result<Value, ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/pipelines/{name}/resume"),
            None,
        )
        .await
    }

    /// Submits a task (`{action, data, priority?, timeout?, agent?, idempotency_key?}`);
    /// answers `{task_id, status}` once it is durably queued.
    pub async fn submit_task(&self, task: &Value) -> Result<Value, ClientError> {
        self.call(
            reqwest::Method::POST,
            "/v1/tasks",
            Some(("application/json", task.to_string())),
        )
        .await
    }

    /// A task: `{task_id, status, result, error, execution_time, attempts, agent}`.
    pub async fn task(&self, id: &str) -> Result<Value, ClientError> {
        self.call(reqwest::Method::GET, &format!("/v1/tasks/{id}"), None)
            .await
    }

    /// Tasks: `{tasks: [...]}`, filtered by status and action, at most `limit`.
    pub async fn tasks(
        &self,
        status: Option<&str>,
        action: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Value, ClientError> {
        let mut query = Vec::new();
        for (key, value) in [("status", status), ("action", action)] {
            if let Some(v) = value {
                query.push(format!("{key}={}", encode_query(v)));
            }
        }
        if let Some(n) = limit {
            query.push(format!("limit={n}"));
        }
        let path = if query.is_empty() {
            "/v1/tasks".to_string()
        } else {
            format!("/v1/tasks?{}", query.join("&"))
        };
        self.call(reqwest::Method::GET, &path, None).await
    }

    /// Cancels a queued or running task.
    pub async fn cancel_task(&self, id: &str) -> Result<Value, ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/tasks/{id}/cancel"),
            None,
        )
        .await
    }

    /// Every agent.
    pub async fn agents(&self) -> Result<Value, ClientError> {
        self.call(reqwest::Method::GET, "/v1/agents", None).await
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Follows a pipeline's status until it is one of `wanted`.
    pub async fn wait_for_status(
        &self,
        name: &str,
        wanted: &[&str],
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let started = Instant::now();
        loop {
            let info = self.pipeline(name).await?;
            let status = info["status"].as_str().unwrap_or_default().to_string();
            if wanted.contains(&status.as_str()) {
                return Ok(info);
            }
            if started.elapsed() > timeout {
                return Err(ClientError::Timeout {
                    name: name.to_string(),
                    wanted: wanted.join(" or "),
                    status,
                    seconds: timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// An error and its causes ("connection refused" is in reqwest's source chain).
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

/// Percent-encodes a query value (everything but unreserved characters).
fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
