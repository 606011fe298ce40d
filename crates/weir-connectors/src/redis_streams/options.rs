//! The YAML options of the Redis Streams source and sink, their build and their checks.

use super::RedisStreamWriterConfig;
use super::{RedisStreamReaderConfig, RedisStreamSink, RedisStreamSource, RedisStreamSourceConfig};
use crate::config::{BuiltSource, CheckFailure, ConfigError, Context, SourceOutput};
use crate::duration::Duration;
use serde::Deserialize;
use std::path::PathBuf;
use weir_core::{Environment, Stream};
use weir_expr::FieldTypes;
use weir_types::Record;

/// `source: { type: redis_stream, url, stream, group, ... }`: entries read through a consumer
/// group, acknowledged when a checkpoint completes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisStreamSourceOptions {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// The stream key.
    pub stream: String,
    /// The consumer group (created if missing).
    pub group: String,
    /// This reader's consumer name (default `weir`; suffixed with the instance).
    pub consumer: Option<String>,
    /// Entries per read (default 500).
    pub read_count: Option<usize>,
    /// Take over entries pending this long on a dead consumer (default 60s).
    pub claim_idle: Option<Duration>,
    /// Stop (not drain) after this long without new input (default: never).
    pub stop_after_idle: Option<Duration>,
    /// With a `rediss://` URL: trust only the CA certificates of this PEM file (relative to
    /// the pipeline file; by default the system's roots).
    pub ca_file: Option<PathBuf>,
}

/// `sink: { type: redis_stream, url, stream, max_len }`: entries appended with explicit,
/// growing ids (exactly once with checkpoints).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisStreamSinkOptions {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// The stream key.
    pub stream: String,
    /// Trim the stream to about this many entries (`MAXLEN ~`).
    pub max_len: Option<usize>,
    /// With a `rediss://` URL: trust only the CA certificates of this PEM file (relative to
    /// the pipeline file; by default the system's roots).
    pub ca_file: Option<PathBuf>,
}

impl RedisStreamSourceOptions {
    /// The reader's configuration (`ca_file` resolved by `ctx`).
    pub fn config(&self, ctx: &dyn Context) -> Result<RedisStreamSourceConfig, ConfigError> {
        let consumer = self.consumer.clone().unwrap_or_else(|| "weir".to_string());
        let mut reader = RedisStreamReaderConfig::new(
            self.url.clone(),
            self.stream.clone(),
            self.group.clone(),
            consumer,
        );
        reader.block = std::time::Duration::from_millis(100);
        reader.ca_file = self.ca_file.as_deref().map(|f| ctx.resolve(f));
        if let Some(n) = self.read_count {
            if n == 0 {
                return Err(ConfigError::option("read_count", "must be at least 1"));
            }
            reader.batch_size = n;
        }
        if let Some(d) = self.claim_idle {
            reader.claim_idle = d.get();
        }
        let claim_every = (reader.claim_idle / 2).max(std::time::Duration::from_millis(100));
        Ok(RedisStreamSourceConfig {
            reader,
            claim_every,
            stop_after_idle: self.stop_after_idle.map(Duration::get),
        })
    }
}

impl crate::config::SourceConnector for RedisStreamSourceOptions {
    fn build(
        &self,
        ctx: &dyn Context,
        env: &Environment,
        _at: &str,
        _fields: &mut FieldTypes,
    ) -> Result<BuiltSource, ConfigError> {
        let config = self.config(ctx)?;
        // Entries are acknowledged when a checkpoint completes: a consumer must not take over
        // another's entries before that can have happened.
        if let Some(interval) = ctx.checkpoint_interval()?
            && config.reader.claim_idle <= interval
        {
            return Err(ConfigError::option(
                "claim_idle",
                format!(
                    "must be longer than the checkpoint interval ({}): entries stay pending until a checkpoint completes, and a shorter claim_idle would take them from live consumers",
                    humantime::format_duration(interval)
                ),
            ));
        }
        let read = env.source("redis_stream", move || {
            RedisStreamSource::new(config.clone())
        });
        Ok(BuiltSource {
            output: SourceOutput::Read(read),
            label: format!("redis stream {} (group {})", self.stream, self.group),
        })
    }

    fn check(&self, ctx: &dyn Context) -> Result<bool, CheckFailure> {
        let config = self.config(ctx)?;
        crate::block_on(super::check_with_ca(
            &self.url,
            config.reader.ca_file.as_deref(),
        ))?;
        Ok(true)
    }
}

impl crate::config::SinkConnector for RedisStreamSinkOptions {
    fn build(
        &self,
        ctx: &dyn Context,
        name: &str,
        stream: &Stream<Record>,
    ) -> Result<(), ConfigError> {
        let mut config = RedisStreamWriterConfig::new(self.url.clone(), self.stream.clone());
        config.max_len = self.max_len;
        config.ca_file = self.ca_file.as_deref().map(|f| ctx.resolve(f));
        // Explicit, growing ids need a single writer per stream.
        stream
            .sink(name, move || RedisStreamSink::new(config.clone()))
            .parallelism(1);
        Ok(())
    }

    fn check(&self, ctx: &dyn Context) -> Result<bool, CheckFailure> {
        let ca_file = self.ca_file.as_deref().map(|f| ctx.resolve(f));
        crate::block_on(super::check_with_ca(&self.url, ca_file.as_deref()))?;
        Ok(true)
    }

    fn destination(&self, _: &dyn Context) -> String {
        format!(
            "Redis stream {} at {}",
            self.stream,
            crate::config::without_credentials(&self.url)
        )
    }
}
