//! [`HttpSink`]: records POSTed in batches to a webhook.

use super::{HttpError, build_client, header_map, read_answer};
use crate::io_runtime::block_on;
use bytes::Bytes;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_core::{CheckpointId, ErrorKind, OperatorContext, OperatorError, Sink};
use weir_resilience::{Policy, PolicyConfig};
use weir_types::Record;

/// How a batch is written in the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// One JSON array of record objects (`Content-Type: application/json`).
    #[default]
    JsonArray,
    /// One JSON object per line (`Content-Type: application/x-ndjson`).
    JsonLines,
}

impl BodyFormat {
    fn content_type(self) -> &'static str {
        match self {
            BodyFormat::JsonArray => "application/json",
            BodyFormat::JsonLines => "application/x-ndjson",
        }
    }
}

/// Settings of an [`HttpSink`].
#[derive(Debug, Clone)]
pub struct HttpSinkConfig {
    /// Where batches are POSTed (`http://` or `https://`).
    pub url: String,
    pub format: BodyFormat,
    /// Most records per request (default 500).
    pub batch_rows: usize,
    /// A partial batch is sent at least this often (default 1 s).
    pub flush_interval: Duration,
    /// Extra request headers (e.g. an authorization token).
    pub headers: Vec<(String, String)>,
    /// Limit on one request, enforced by the HTTP client (default 30 s).
    pub timeout: Duration,
    /// Retries, backoff, rate limit, breaker for each request. A `cache` has no meaning here and
    /// is ignored.
    pub policy: PolicyConfig,
    /// For an `https://` URL: trust only the CA certificates of this PEM file (by default the
    /// system's roots).
    pub ca_file: Option<std::path::PathBuf>,
}

impl HttpSinkConfig {
    pub fn new(url: impl Into<String>) -> Self {
        HttpSinkConfig {
            url: url.into(),
            format: BodyFormat::JsonArray,
            batch_rows: 500,
            flush_interval: Duration::from_secs(1),
            headers: Vec::new(),
            timeout: Duration::from_secs(30),
            policy: PolicyConfig::default(),
            ca_file: None,
        }
    }
}

/// A webhook sink: records are POSTed in batches of up to `batch_rows`, as a JSON array or JSON
/// lines; a batch goes out when it is full, every `flush_interval`, at each checkpoint barrier
/// and at the end of input. Each request runs under the policy (retries of connection errors,
/// timeouts, 429 and 5xx; rate limit; breaker).
///
/// **At-least-once.** A batch that fails for good (retries spent, or a non-retryable answer
/// such as 400) fails the job, naming the URL, the batch size and the last error; nothing is
/// skipped silently. Everything written before a checkpoint barrier is delivered before the
/// sink acknowledges the barrier, so a restored job re-sends at most what followed the last
/// completed checkpoint: receivers may see a batch twice and should be idempotent.
///
/// Clones (one per parallel instance) share the client and the policy, so a rate limit covers
/// the sink as a whole; each clone has its own batch.
pub struct HttpSink {
    shared: Arc<Shared>,
    body: Vec<u8>,
    count: usize,
    last_flush: Instant,
    delivered: u64,
}

struct Shared {
    client: reqwest::Client,
    url: String,
    shown_url: String,
    format: BodyFormat,
    batch_rows: usize,
    flush_interval: Duration,
    headers: reqwest::header::HeaderMap,
    timeout: Duration,
    policy: Policy<HttpError>,
}

impl Clone for HttpSink {
    /// The same sink, sharing client and policy, with an empty batch.
    fn clone(&self) -> Self {
        HttpSink::from_shared(self.shared.clone())
    }
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("url", &self.shared.shown_url)
            .field("format", &self.shared.format)
            .field("pending", &self.count)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl HttpSink {
    /// Checks the configuration and builds the client and the policy.
    pub fn new(config: HttpSinkConfig) -> Result<Self, HttpError> {
        let template = super::UrlTemplate::parse(&config.url)?;
        if template.fields().next().is_some() {
            return Err(HttpError::Config {
                key: "url",
                reason: "a webhook URL takes no `{field}` placeholders".into(),
            });
        }
        if config.batch_rows == 0 {
            return Err(HttpError::Config {
                key: "batch_rows",
                reason: "expected at least 1, found 0".into(),
            });
        }
        if config.flush_interval.is_zero() {
            return Err(HttpError::Config {
                key: "flush_interval",
                reason: "expected a duration longer than zero".into(),
            });
        }
        let policy = config
            .policy
            .build::<HttpError>()
            .map_err(|e| HttpError::Config {
                key: "policy",
                reason: e.to_string(),
            })?;
        Ok(HttpSink::from_shared(Arc::new(Shared {
            client: build_client(&config.url, config.timeout, config.ca_file.as_deref())?,
            shown_url: crate::error::redact_url(&config.url),
            url: config.url,
            format: config.format,
            batch_rows: config.batch_rows,
            flush_interval: config.flush_interval,
            headers: header_map(&config.headers)?,
            timeout: config.timeout,
            policy,
        })))
    }

    fn from_shared(shared: Arc<Shared>) -> Self {
        HttpSink {
            shared,
            body: Vec::new(),
            count: 0,
            last_flush: Instant::now(),
            delivered: 0,
        }
    }

    /// Records this instance delivered (acknowledged with a 2xx) so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The policy shared by every clone (for its counters).
    pub fn policy(&self) -> &Policy<HttpError> {
        &self.shared.policy
    }

    fn push(&mut self, record: &Record) -> Result<(), OperatorError> {
        match self.shared.format {
            BodyFormat::JsonArray => {
                self.body.push(if self.count == 0 { b'[' } else { b',' });
                record.write_json(&mut self.body);
            }
            BodyFormat::JsonLines => {
                record.write_json(&mut self.body);
                self.body.push(b'\n');
            }
        }
        self.count += 1;
        if self.count >= self.shared.batch_rows {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the pending batch, under the policy; an error fails the job.
    fn flush(&mut self) -> Result<(), OperatorError> {
        self.last_flush = Instant::now();
        if self.count == 0 {
            return Ok(());
        }
        if self.shared.format == BodyFormat::JsonArray {
            self.body.push(b']');
        }
        let body = Bytes::from(std::mem::take(&mut self.body));
        let count = std::mem::take(&mut self.count);
        let shared = &*self.shared;
        match block_on(shared.policy.call(|| shared.post(body.clone()))) {
            Ok(()) => {
                self.delivered += count as u64;
                Ok(())
            }
            Err(error) => Err(OperatorError::new(
                ErrorKind::Io,
                format!(
                    "delivering a batch of {count} record(s) to {} failed: {error}",
                    shared.shown_url
                ),
            )),
        }
    }
}

impl Shared {
    async fn post(&self, body: Bytes) -> Result<(), HttpError> {
        let request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, self.format.content_type())
            .headers(self.headers.clone())
            .body(body);
        read_answer(&self.url, self.timeout, request)
            .await
            .map(drop)
    }
}

impl Sink<Record> for HttpSink {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        // The policy is shared by every instance: reported once in the job's metrics.
        ctx.report_policy("http", std::sync::Arc::new(self.shared.policy.clone()));
        Ok(())
    }

    fn write(
        &mut self,
        batch: &mut Vec<Record>,
        _ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        for record in batch.drain(..) {
            self.push(&record)?;
        }
        Ok(())
    }

    fn on_tick(&mut self, _ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        if self.count > 0 && self.last_flush.elapsed() >= self.shared.flush_interval {
            self.flush()?;
        }
        Ok(())
    }

    /// Delivers everything written before the barrier: the checkpoint covers it.
    fn snapshot(
        &mut self,
        _checkpoint: CheckpointId,
        _ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        self.flush()
    }

    fn close(&mut self, _ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        self.flush()
    }
}
