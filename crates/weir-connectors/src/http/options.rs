//! The YAML options of the `http` (webhook) sink, its build and its check.

use super::{BodyFormat, HttpError, HttpSink, HttpSinkConfig};
use crate::config::{CheckFailure, ConfigError, Context};
use crate::duration::Duration;
use indexmap::IndexMap;
use serde::Deserialize;
use weir_core::Stream;
use weir_resilience::PolicyConfig;
use weir_types::Record;

/// `sink: { type: http, url, ... }`: batches of records POSTed to a webhook, at least once.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkOptions {
    /// Where batches are POSTed.
    pub url: String,
    /// `json_array` (default) or `json_lines`.
    pub format: Option<BodyFormat>,
    /// Most records per request (default 500).
    pub batch_rows: Option<usize>,
    /// A partial batch is sent at least this often (default 1s).
    pub flush_interval: Option<Duration>,
    /// Extra request headers.
    #[serde(default, deserialize_with = "crate::unique::optional_keys")]
    pub headers: Option<IndexMap<String, String>>,
    /// Retries, backoff, timeouts, rate limit, circuit breaker of each request.
    pub policy: Option<PolicyConfig>,
    /// With an `https://` URL: trust only the CA certificates of this PEM file (relative to
    /// the pipeline file; by default the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
}

/// A policy error at its option, e.g. `policy.rate_limit.per_second`.
pub fn policy_error(error: weir_resilience::ConfigError) -> ConfigError {
    let key = match &error {
        weir_resilience::ConfigError::Invalid { key, .. } => format!("policy.{key}"),
        _ => "policy".to_string(),
    };
    ConfigError::option(key, error.to_string())
}

/// An HTTP configuration error at its option.
pub fn http_error(error: HttpError) -> ConfigError {
    match error {
        HttpError::Config { key, reason } => ConfigError::option(key, reason),
        other => ConfigError::here(other.to_string()),
    }
}

impl HttpSinkOptions {
    /// The webhook sink (`ca_file` resolved by `ctx`).
    pub fn sink(&self, ctx: &dyn Context) -> Result<HttpSink, ConfigError> {
        let mut config = HttpSinkConfig::new(self.url.clone());
        config.ca_file = self.ca_file.as_deref().map(|f| ctx.resolve(f));
        if let Some(format) = self.format {
            config.format = format;
        }
        if let Some(rows) = self.batch_rows {
            config.batch_rows = rows;
        }
        if let Some(d) = self.flush_interval {
            config.flush_interval = d.get();
        }
        config.headers = self
            .headers
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(policy) = &self.policy {
            policy.validate().map_err(policy_error)?;
            if policy.cache.is_some() {
                return Err(ConfigError::option(
                    "policy.cache",
                    "a sink delivers every batch; `cache` applies to `enrich_http` only",
                ));
            }
            config.policy = policy.clone();
        }
        HttpSink::new(config).map_err(http_error)
    }
}

impl crate::config::SinkConnector for HttpSinkOptions {
    fn build(
        &self,
        ctx: &dyn Context,
        name: &str,
        stream: &Stream<Record>,
    ) -> Result<(), ConfigError> {
        let webhook = self.sink(ctx)?;
        stream.sink(name, move || webhook.clone());
        Ok(())
    }

    fn check(&self, _: &dyn Context) -> Result<bool, CheckFailure> {
        super::check(&self.url)?;
        Ok(true)
    }

    fn destination(&self, _: &dyn Context) -> String {
        format!("POST {}", crate::config::without_credentials(&self.url))
    }
}
