//! `weir validate --connect`: each source and sink's connectivity check (a file readable or
//! writable, Redis answering `PING`, ClickHouse answering `SELECT 1`, an HTTP endpoint
//! accepting a connection), run after the pipeline validated.

use crate::build::resolve;
use crate::spec::{SinkKind, SinkSpec, SourceKind, SourceSpec};
use crate::{Pipeline, PipelineError};
use weir_connectors::{ConnectorError, block_on};
use weir_core::FileSelection;

/// Why a connector's check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Config(#[from] PipelineError),
    #[error(transparent)]
    Connector(#[from] ConnectorError),
}

/// One connector's check: where it is in the file, which connector, and the outcome.
#[derive(Debug)]
pub struct ConnectionCheck {
    /// The key of the connector in the file: `source`, `sink`, `sinks[1]`, `dead_letter`.
    pub key: String,
    /// The connector type (`file`, `redis_stream`, ...).
    pub connector: &'static str,
    /// `Ok(false)`: nothing to check (stdin, stdout, generator, discard).
    pub result: Result<bool, CheckError>,
}

impl Pipeline {
    /// Checks every source and sink of the pipeline (call after [`Pipeline::validate`]).
    pub fn check_connections(&self) -> Vec<ConnectionCheck> {
        let spec = &self.spec;
        let mut checks: Vec<ConnectionCheck> = self
            .source_specs()
            .into_iter()
            .map(|(key, source)| ConnectionCheck {
                connector: source.kind.name(),
                result: self.check_source(&key, source),
                key,
            })
            .collect();
        let mut sinks: Vec<(String, &SinkSpec)> = Vec::new();
        if let Some(s) = &spec.sink {
            sinks.push(("sink".into(), s));
        }
        for (i, s) in spec.sinks.iter().flatten().enumerate() {
            sinks.push((format!("sinks[{i}]"), s));
        }
        if let Some(s) = &spec.dead_letter {
            sinks.push(("dead_letter".into(), s));
        }
        for (key, sink) in sinks {
            let result = self.check_sink(&key, sink);
            checks.push(ConnectionCheck {
                key,
                connector: sink.kind.name(),
                result,
            });
        }
        checks
    }

    fn check_source(&self, key: &str, source: &SourceSpec) -> Result<bool, CheckError> {
        match source.kind {
            SourceKind::Stdin | SourceKind::Generator => Ok(false),
            SourceKind::File => {
                let path = source
                    .path
                    .as_ref()
                    .ok_or_else(|| self.error_at(key, "a file source needs a `path`"))?;
                let follow = source.follow.unwrap_or(false);
                let selection = FileSelection::from_path(&resolve(self, path), follow)
                    .map_err(|e| self.error_at(&format!("{key}.path"), e.to_string()))?;
                weir_connectors::file::check_readable(&selection, follow)?;
                Ok(true)
            }
            SourceKind::RedisStream => {
                let (config, _) = crate::ingest::redis_source(self, key, source)?;
                block_on(weir_connectors::check_redis_with_ca(
                    &config.reader.url,
                    config.reader.ca_file.as_deref(),
                ))?;
                Ok(true)
            }
        }
    }

    fn check_sink(&self, key: &str, sink: &SinkSpec) -> Result<bool, CheckError> {
        let need = |value: &Option<String>, option: &str| {
            value.clone().ok_or_else(|| {
                self.error_at(key, format!("a {} sink needs `{option}`", sink.kind.name()))
            })
        };
        match sink.kind {
            SinkKind::Stdout | SinkKind::Discard => Ok(false),
            SinkKind::File => {
                let path = sink
                    .path
                    .as_ref()
                    .ok_or_else(|| self.error_at(key, "a file sink needs a `path`"))?;
                weir_connectors::file::check_writable(&resolve(self, path))?;
                Ok(true)
            }
            SinkKind::RedisStream => {
                let ca_file = sink.ca_file.as_ref().map(|f| resolve(self, f));
                block_on(weir_connectors::check_redis_with_ca(
                    &need(&sink.url, "url")?,
                    ca_file.as_deref(),
                ))?;
                Ok(true)
            }
            SinkKind::Clickhouse => {
                let config = crate::ingest::clickhouse_sink(self, key, sink)?;
                block_on(weir_connectors::check_clickhouse(config.client))?;
                Ok(true)
            }
            SinkKind::Http => {
                weir_connectors::http::check(&need(&sink.url, "url")?)?;
                Ok(true)
            }
        }
    }
}
