//! The ingestion pieces of the format: schema validation and masking steps, the Redis Streams
//! source and the ClickHouse sink.

use crate::spec::{SchemaRef, SinkSpec, SourceSpec};
use crate::steps::{Routed, reject};
use crate::{Pipeline, PipelineError};
use std::sync::Arc;
use std::time::Duration;
use weir_connectors::{
    ClickHouseConfig, ClickHouseSinkConfig, RedisStreamReaderConfig, RedisStreamSource,
    RedisStreamSourceConfig,
};
use weir_core::{Operator, OperatorContext, OperatorError};
use weir_expr::FieldTypes;
use weir_schema::{FieldType, Registry, Schema, Validator, VersionSpec};
use weir_types::{Record, ValueKind};

/// Parses a duration option (`250ms`, `5s`, `1m`), naming the key on error.
pub(crate) fn duration(p: &Pipeline, key: &str, text: &str) -> Result<Duration, PipelineError> {
    // The source and sink options still hold text (their configs move to weir-connectors);
    // the message is the one of `crate::duration`.
    crate::duration::parse(text).map_err(|message| p.error_at(key, message))
}

/// Loads a schema from the pipeline's registry.
pub(crate) fn schema(
    p: &Pipeline,
    key: &str,
    reference: &SchemaRef,
) -> Result<Arc<Schema>, PipelineError> {
    load_schema(p, key, reference.name(), reference.version())
}

fn load_schema(
    p: &Pipeline,
    key: &str,
    name: &str,
    version: Option<u32>,
) -> Result<Arc<Schema>, PipelineError> {
    let dir = p.spec.schemas.as_ref().ok_or_else(|| {
        p.error_at(
            key,
            "schemas are read from a registry: add `schemas: <directory>` at the top of the file",
        )
    })?;
    let dir = crate::build::resolve(p, dir);
    // Reading a pipeline never creates its registry: a mistyped `schemas:` is an error, not a
    // new empty directory.
    let registry =
        Registry::open_existing(&dir).map_err(|e| p.error_at("schemas", e.to_string()))?;
    let spec = version.map_or(VersionSpec::Latest, VersionSpec::Exact);
    registry
        .get(name, spec)
        .map(Arc::new)
        .map_err(|e| p.error_at(key, e.to_string()))
}

/// The field types a schema guarantees after validation.
pub(crate) fn schema_fields(schema: &Schema) -> FieldTypes {
    schema
        .def()
        .fields
        .iter()
        .map(|f| {
            let kind = match f.ty {
                FieldType::String => ValueKind::Str,
                FieldType::Int => ValueKind::Int,
                FieldType::Float => ValueKind::Float,
                FieldType::Bool => ValueKind::Bool,
                FieldType::Datetime => ValueKind::Timestamp,
                FieldType::Json => ValueKind::Json,
            };
            (f.name.as_str(), kind)
        })
        .collect()
}

/// The `validate` step.
pub(crate) struct ValidateOp {
    pub(crate) validator: Validator,
    pub(crate) stage: Arc<str>,
    pub(crate) route_errors: bool,
}

impl Operator<Record, Routed> for ValidateOp {
    fn process(
        &mut self,
        input: &mut Vec<Record>,
        out: &mut Vec<Routed>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        for (i, record) in input.drain(..).enumerate() {
            match self.validator.validate(record) {
                Ok(valid) => out.push(Ok(valid)),
                Err(e) => {
                    let position = ctx.position() + i as u64;
                    let reason = e.to_string();
                    // Sensitive fields stay protected in the dead-letter output too.
                    let mut record = e.into_record();
                    self.validator.schema().apply_privacy(&mut record);
                    reject(
                        self.route_errors,
                        &self.stage,
                        reason,
                        &record,
                        position,
                        ctx,
                        out,
                    )?;
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn redis_source(
    p: &Pipeline,
    at: &str,
    spec: &SourceSpec,
) -> Result<(RedisStreamSourceConfig, String), PipelineError> {
    let need = |value: &Option<String>, key: &str| {
        value
            .clone()
            .ok_or_else(|| p.error_at(at, format!("a redis_stream source needs `{key}`")))
    };
    let url = need(&spec.url, "url")?;
    let stream = need(&spec.stream, "stream")?;
    let group = need(&spec.group, "group")?;
    let consumer = spec.consumer.clone().unwrap_or_else(|| "weir".to_string());
    let mut reader = RedisStreamReaderConfig::new(url, stream.clone(), group.clone(), consumer);
    reader.block = Duration::from_millis(100);
    reader.ca_file = spec.ca_file.as_ref().map(|f| crate::build::resolve(p, f));
    if let Some(n) = spec.read_count {
        if n == 0 {
            return Err(p.error_at(&format!("{at}.read_count"), "must be at least 1"));
        }
        reader.batch_size = n;
    }
    if let Some(d) = &spec.claim_idle {
        reader.claim_idle = duration(p, &format!("{at}.claim_idle"), d)?;
    }
    let stop_after_idle = spec
        .stop_after_idle
        .as_ref()
        .map(|d| duration(p, &format!("{at}.stop_after_idle"), d))
        .transpose()?;
    let claim_every = (reader.claim_idle / 2).max(Duration::from_millis(100));
    Ok((
        RedisStreamSourceConfig {
            reader,
            claim_every,
            stop_after_idle,
        },
        format!("redis stream {stream} (group {group})"),
    ))
}

pub(crate) fn clickhouse_sink(
    p: &Pipeline,
    key: &str,
    spec: &SinkSpec,
) -> Result<ClickHouseSinkConfig, PipelineError> {
    let url = spec
        .url
        .clone()
        .ok_or_else(|| p.error_at(key, "a clickhouse sink needs `url`"))?;
    let table = spec
        .table
        .clone()
        .ok_or_else(|| p.error_at(key, "a clickhouse sink needs `table`"))?;
    let mut client = ClickHouseConfig::new(url);
    client.user = spec.user.clone();
    client.ca_file = spec.ca_file.as_ref().map(|f| crate::build::resolve(p, f));
    if let Some(var) = &spec.password_env {
        let at = format!("{key}.password_env");
        if !weir_schema::env::is_variable_name(var) {
            // Not echoed: it may be the secret itself, pasted here by mistake.
            return Err(p.error_at(
                &at,
                "expected the name of an environment variable (letters, digits, `_`); the value given is not one, and is not shown as it may be a secret",
            ));
        }
        let password = std::env::var(var)
            .map_err(|_| p.error_at(&at, format!("the environment variable `{var}` is not set")))?;
        client.password = Some(password);
    }
    let mut config = ClickHouseSinkConfig::new(client, table, p.name());
    if let Some(name) = &spec.schema {
        config.schema = Some(load_schema(p, &format!("{key}.schema"), name, None)?);
    }
    if let Some(create) = spec.create_table {
        config.create_table = create;
    }
    if let Some(rows) = spec.batch_rows {
        if rows == 0 {
            return Err(p.error_at(&format!("{key}.batch_rows"), "must be at least 1"));
        }
        config.batch_rows = rows;
    }
    if let Some(d) = &spec.flush_interval {
        config.flush_interval = duration(p, &format!("{key}.flush_interval"), d)?;
    }
    if let Some(r) = spec.retries {
        config.retries = r;
    }
    Ok(config)
}

/// Entries are acknowledged when a checkpoint completes: a consumer must not take over
/// another's entries before that can have happened.
pub(crate) fn check_claim_idle(
    p: &Pipeline,
    at: &str,
    config: &RedisStreamSourceConfig,
) -> Result<(), PipelineError> {
    let Some(interval) = p.checkpoint_interval()? else {
        return Ok(());
    };
    if config.reader.claim_idle <= interval {
        return Err(p.error_at(
            &format!("{at}.claim_idle"),
            format!(
                "must be longer than the checkpoint interval ({}): entries stay pending until a checkpoint completes, and a shorter claim_idle would take them from live consumers",
                humantime::format_duration(interval)
            ),
        ));
    }
    Ok(())
}

/// Factory for the source task: one reader per instance.
pub(crate) fn redis_source_factory(
    config: RedisStreamSourceConfig,
) -> impl Fn() -> RedisStreamSource {
    move || RedisStreamSource::new(config.clone())
}

#[cfg(test)]
mod tests {
    use crate::Pipeline;

    #[test]
    fn a_missing_schema_registry_is_an_error_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-registry");
        let yaml = format!(
            "schemas: {}\nsource: {{ type: stdin }}\nsteps:\n  - validate: orders\nsink: {{ type: discard }}\n",
            missing.display()
        );
        let err = Pipeline::parse(&yaml, "p.yaml")
            .and_then(|p| p.validate())
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("schemas"), "{err}");
        assert!(err.message.contains("does not exist"), "{err}");
        assert!(
            !missing.exists(),
            "validating created {}",
            missing.display()
        );
    }
}
