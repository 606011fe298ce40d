//! [`HttpEnricher`]: one HTTP call per record, the JSON answer merged into the record.

use super::{HttpError, Method, build_client, header_map, read_answer};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use weir_resilience::stream::AsyncMapper;
use weir_resilience::{Cached, Error, Policy, PolicyConfig};
use weir_types::{Record, Value};

use super::UrlTemplate;

/// Settings of an [`HttpEnricher`].
#[derive(Debug, Clone)]
pub struct HttpEnrichConfig {
    /// The URL template: `{field}` placeholders take the record's values (see [`UrlTemplate`]).
    pub url: String,
    /// `GET` (default) or `POST`; a POST sends the record as a JSON object.
    pub method: Method,
    /// The field that receives the response; `None` merges a JSON object's keys into the
    /// record at the top level (replacing fields of the same name).
    pub into: Option<String>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Limit on one request, connection included, enforced by the HTTP client (default 30 s).
    /// The policy's `timeout` (per attempt) is usually the tighter one.
    pub timeout: Duration,
    /// Retries, rate limit, breaker, cache: the `policy` block. Errors are retried when
    /// [`HttpError`] says they are retryable.
    pub policy: PolicyConfig,
    /// For an `https://` URL: trust only the CA certificates of this PEM file (by default the
    /// system's roots).
    pub ca_file: Option<std::path::PathBuf>,
}

impl HttpEnrichConfig {
    /// A GET of `url`, merged at the top level, under the default policy.
    pub fn new(url: impl Into<String>) -> Self {
        HttpEnrichConfig {
            url: url.into(),
            method: Method::Get,
            into: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(30),
            policy: PolicyConfig::default(),
            ca_file: None,
        }
    }
}

/// What a successful call gives a record: one field, or the fields of a JSON object.
/// Cheap to clone (shared), so a cached answer serves many records.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrichment(Merge);

#[derive(Debug, Clone, PartialEq)]
enum Merge {
    Into(Arc<str>, Value),
    TopLevel(Arc<[(Arc<str>, Value)]>),
}

impl Enrichment {
    /// Adds the answer to `record`.
    pub fn apply(&self, record: &mut Record) {
        match &self.0 {
            Merge::Into(field, value) => record.set(field, value.clone()),
            Merge::TopLevel(fields) => {
                for (name, value) in fields.iter() {
                    record.set(name, value.clone());
                }
            }
        }
    }
}

/// Calls an HTTP service for each record and merges its JSON answer into the record.
///
/// The URL comes from a template filled from the record; the answer must be JSON (an object
/// when merged at the top level). Every call runs under the configured policy: retries of
/// retryable errors (connection failures, timeouts, 429, 5xx) with backoff, a rate limit on
/// every attempt, a circuit breaker; with `cache`, answers are cached per URL (per URL and body
/// for POST), so records sharing a key make one call within the TTL, and concurrent misses on
/// one key wait for a single call. Failures are never cached.
///
/// Clones share the client, the policy's state and the cache. In a stream it is an
/// [`AsyncMapper`]: use it with
/// [`map_async_with`](weir_resilience::stream::AsyncStreamExt::map_async_with), with
/// [`super::runtime`] as the runtime.
///
/// ```
/// use weir_connectors::http::{HttpEnrichConfig, HttpEnricher};
///
/// let mut config = HttpEnrichConfig::new("http://127.0.0.1:8080/users/{user_id}");
/// config.into = Some("user".into());
/// config.policy = serde_json::from_str(r#"{ "retries": 2, "timeout": "1s", "cache": { "ttl": "60s" } }"#)?;
/// let enricher = HttpEnricher::new(config)?;
/// assert_eq!(enricher.template().fields().collect::<Vec<_>>(), ["user_id"]);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct HttpEnricher {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    template: UrlTemplate,
    method: Method,
    into: Option<Arc<str>>,
    headers: reqwest::header::HeaderMap,
    timeout: Duration,
    calls: Calls,
}

enum Calls {
    Direct(Policy<HttpError>),
    Cached(Cached<String, Enrichment, HttpError>),
}

impl std::fmt::Debug for HttpEnricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.inner;
        f.debug_struct("HttpEnricher")
            .field("url", &i.template.to_string())
            .field("method", &i.method)
            .field("into", &i.into)
            .field("policy", self.policy())
            .finish_non_exhaustive()
    }
}

impl HttpEnricher {
    /// Checks the configuration and builds the client, the policy and the cache.
    pub fn new(config: HttpEnrichConfig) -> Result<Self, HttpError> {
        let template = UrlTemplate::parse(&config.url)?;
        let policy_error = |e: weir_resilience::ConfigError| HttpError::Config {
            key: "policy",
            reason: e.to_string(),
        };
        let policy = config.policy.build::<HttpError>().map_err(policy_error)?;
        let calls = match config
            .policy
            .cache::<String, Enrichment>()
            .map_err(policy_error)?
        {
            Some(cache) => Calls::Cached(policy.with_cache(cache)),
            None => Calls::Direct(policy),
        };
        if let Some(into) = &config.into
            && into.trim().is_empty()
        {
            return Err(HttpError::Config {
                key: "into",
                reason: "expected a field name, found an empty string".into(),
            });
        }
        Ok(HttpEnricher {
            inner: Arc::new(Inner {
                client: build_client(&config.url, config.timeout, config.ca_file.as_deref())?,
                template,
                method: config.method,
                into: config.into.map(Into::into),
                headers: header_map(&config.headers)?,
                timeout: config.timeout,
                calls,
            }),
        })
    }

    /// The URL template.
    pub fn template(&self) -> &UrlTemplate {
        &self.inner.template
    }

    /// The policy (for its counters, breaker and limiter).
    pub fn policy(&self) -> &Policy<HttpError> {
        match &self.inner.calls {
            Calls::Direct(policy) => policy,
            Calls::Cached(cached) => cached.policy(),
        }
    }

    /// The record enriched by one call (or a cached answer), under the policy.
    pub async fn enrich(&self, mut record: Record) -> Result<Record, Error<HttpError>> {
        let enrichment = self.lookup(&record).await?;
        enrichment.apply(&mut record);
        Ok(record)
    }

    /// The answer for `record`: from the cache, or one call under the policy.
    pub async fn lookup(&self, record: &Record) -> Result<Enrichment, Error<HttpError>> {
        let inner = &*self.inner;
        // A record that cannot fill the template never reaches the service.
        let not_called = |source| Error::Operation {
            source,
            attempts: 0,
        };
        let url = inner.template.render(record).map_err(not_called)?;
        let body = match inner.method {
            Method::Get => None,
            Method::Post => {
                let mut body = Vec::with_capacity(128);
                record.write_json(&mut body);
                Some(Bytes::from(body))
            }
        };
        let operation = || inner.fetch(&url, body.clone());
        match &inner.calls {
            Calls::Direct(policy) => policy.call_keyed(&url, operation).await,
            Calls::Cached(cached) => {
                let key = match &body {
                    None => url.clone(),
                    Some(body) => format!("{url}\n{}", String::from_utf8_lossy(body)),
                };
                cached.call_keyed(&key, operation).await
            }
        }
    }
}

impl Inner {
    /// One attempt.
    async fn fetch(&self, url: &str, body: Option<Bytes>) -> Result<Enrichment, HttpError> {
        let request = match body {
            None => self.client.get(url),
            Some(body) => self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body),
        };
        let request = request
            .header(reqwest::header::ACCEPT, "application/json")
            .headers(self.headers.clone());
        let answer = read_answer(url, self.timeout, request).await?;
        let unusable = |reason: String| HttpError::Response {
            url: crate::error::redact_url(url),
            reason,
        };
        let json: serde_json::Value = serde_json::from_slice(&answer)
            .map_err(|e| unusable(format!("the body is not JSON ({e})")))?;
        Ok(Enrichment(match &self.into {
            Some(field) => Merge::Into(field.clone(), Value::from_json(json)),
            None => match json {
                serde_json::Value::Object(map) => Merge::TopLevel(
                    map.into_iter()
                        .map(|(k, v)| (Arc::from(k), Value::from_json(v)))
                        .collect(),
                ),
                other => {
                    return Err(unusable(format!(
                        "expected a JSON object to merge into the record, found {}; \
                         set `into` to keep any JSON value under one field",
                        json_kind(&other)
                    )));
                }
            },
        }))
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl AsyncMapper<Record> for HttpEnricher {
    type Value = Enrichment;
    type Output = Record;
    type Error = HttpError;

    async fn call(&self, record: &Record) -> Result<Enrichment, Error<HttpError>> {
        self.lookup(record).await
    }

    fn complete(&self, mut record: Record, enrichment: Enrichment) -> Record {
        enrichment.apply(&mut record);
        record
    }

    fn policy_report(&self) -> Option<(&'static str, Arc<dyn weir_core::PolicyReport>)> {
        Some(match &self.inner.calls {
            Calls::Direct(policy) => ("http", Arc::new(policy.clone())),
            Calls::Cached(cached) => ("http", Arc::new(cached.clone())),
        })
    }
}
