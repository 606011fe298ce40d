//! The `enrich_http` step: its YAML options and its planning onto `weir-connectors`' HTTP
//! client and `weir-resilience`'s async stream operator (the `http` sink is a connector, in
//! weir-connectors).

use crate::steps::dead_letter;
use crate::{Pipeline, PipelineError};
use indexmap::IndexMap;
use serde::Deserialize;
use weir_connectors::http::{HttpEnrichConfig, HttpEnricher, HttpError, Method};
use weir_core::{ErrorKind, OperatorContext, OperatorError, Sink, Stream};
use weir_expr::FieldTypes;
use weir_resilience::stream::{AsyncOptions, AsyncStreamExt};
use weir_resilience::{ConfigError, Order, PolicyConfig};
use weir_types::Record;

/// Default for `workers`.
const DEFAULT_WORKERS: usize = 8;

/// `- enrich_http: { url, method, into, workers, ordered, headers, policy }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichHttpSpec {
    /// URL template; `{field}` takes the record's value (percent-encoded).
    pub url: String,
    /// `GET` (default) or `POST` (sends the record as a JSON object).
    #[serde(default)]
    pub method: Method,
    /// Field that receives the JSON answer; absent: the answer's keys are merged at the top
    /// level.
    pub into: Option<String>,
    /// Calls in flight at once per instance (default 8).
    pub workers: Option<usize>,
    /// Output in input order (default true) or in completion order.
    pub ordered: Option<bool>,
    /// Extra request headers.
    pub headers: Option<IndexMap<String, String>>,
    /// Retries, backoff, timeouts, rate limit, circuit breaker, cache.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// For an `https://` URL: trust only the CA certificates of this PEM file (relative to the
    /// pipeline file; by default the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
}

/// A policy error at its key, e.g. `steps[1].enrich_http.policy.rate_limit.per_second`.
fn policy_error(p: &Pipeline, at: &str, error: ConfigError) -> PipelineError {
    p.connector_error(at, weir_connectors::http::policy_error(error))
}

/// An HTTP configuration error at its key.
fn http_error(p: &Pipeline, at: &str, error: HttpError) -> PipelineError {
    p.connector_error(at, weir_connectors::http::http_error(error))
}

fn headers(map: Option<&IndexMap<String, String>>) -> Vec<(String, String)> {
    map.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Plans `enrich_http`: returns the enriched stream and, when the pipeline has a dead-letter
/// output, the dead letters of the records whose call failed for good. Without one, such a
/// record fails the job (as in every other step), naming the step, the position and the error.
pub(crate) fn plan(
    p: &Pipeline,
    stage: &str,
    spec: &EnrichHttpSpec,
    stream: &Stream<Record>,
    fields: &FieldTypes,
    route_errors: bool,
) -> Result<(Stream<Record>, Option<Stream<Record>>), PipelineError> {
    spec.policy
        .validate()
        .map_err(|e| policy_error(p, stage, e))?;
    if spec.workers == Some(0) {
        return Err(p.error_at(&format!("{stage}.workers"), "must be at least 1"));
    }
    let mut config = HttpEnrichConfig::new(spec.url.clone());
    config.method = spec.method;
    config.into = spec.into.clone();
    config.headers = headers(spec.headers.as_ref());
    config.policy = spec.policy.clone();
    config.ca_file = spec.ca_file.as_ref().map(|f| crate::build::resolve(p, f));
    let enricher = HttpEnricher::new(config).map_err(|e| http_error(p, stage, e))?;
    if !fields.is_dynamic() {
        for field in enricher.template().fields() {
            if fields.get(field).is_none() {
                let known: Vec<&str> = fields.names().collect();
                return Err(p.error_at(
                    &format!("{stage}.url"),
                    format!(
                        "unknown field `{field}` in the URL; the records here have: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    let order = if spec.ordered.unwrap_or(true) {
        Order::Ordered
    } else {
        Order::Unordered
    };
    let options = AsyncOptions::new(spec.workers.unwrap_or(DEFAULT_WORKERS))
        .order(order)
        .runtime(weir_connectors::http::runtime())
        .name(stage);
    let (enriched, failed) = stream.map_async_with(options, enricher);
    let stage_name: std::sync::Arc<str> = stage.into();
    let dead = failed
        .map(move |f| dead_letter(&stage_name, &f.error, &f.error.input, f.position))
        .name(&format!("{stage}.failed"));
    if route_errors {
        return Ok((enriched, Some(dead)));
    }
    dead.sink(&format!("{stage}.failed"), || FailJob);
    Ok((enriched, None))
}

/// Field types after the step: the answer's field is untyped; a top-level merge may add any.
pub(crate) fn fields_after(spec: &EnrichHttpSpec, mut fields: FieldTypes) -> FieldTypes {
    match &spec.into {
        Some(into) if !fields.is_dynamic() => {
            fields.insert(into, None);
            fields
        }
        _ => FieldTypes::dynamic(),
    }
}

/// Fails the job with the first dead letter it sees (no dead-letter output configured).
pub(crate) struct FailJob;

impl Sink<Record> for FailJob {
    fn write(
        &mut self,
        batch: &mut Vec<Record>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        match batch.first() {
            None => Ok(()),
            Some(dead) => {
                let field =
                    |name: &str| dead.get(name).map(ToString::to_string).unwrap_or_default();
                let position = dead.get("position").and_then(|v| v.as_i64()).unwrap_or(0);
                Err(OperatorError::new(
                    ErrorKind::UserFunction,
                    format!("{}: {}", field("stage"), field("error")),
                )
                .at(position as u64))
            }
        }
    }
}
