//! `weir validate --connect`: each source and sink's connectivity check (a file readable or
//! writable, Redis answering `PING`, ClickHouse answering `SELECT 1`, an HTTP endpoint
//! accepting a connection), run after the pipeline validated.

use crate::spec::{SinkSpec, SourceSpec};
use crate::{Pipeline, PipelineError};
use std::collections::BTreeMap;
use weir_connectors::ConnectorError;
use weir_connectors::config::CheckFailure;

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
    /// The connector type of each source and sink operator of a running job of this pipeline
    /// (operator name → `redis_stream`, `clickhouse`, `file`, ...): the `connector` label of
    /// their metrics. Sinks are named by their key (`sink`, `sinks[1]`, `dead_letter`); the
    /// source of a one-source pipeline is whatever its operator is called; a named source
    /// of a multi-source pipeline is found by its connector's name when only one source has
    /// that connector (others are left without the label rather than guessed).
    pub fn connectors_of(&self, job: &weir_core::JobMetrics) -> BTreeMap<String, String> {
        let sinks = self.sink_specs();
        let sources: Vec<&'static str> = self
            .source_specs()
            .into_iter()
            .map(|(_, s)| s.kind().name())
            .collect();
        let mut out = BTreeMap::new();
        for op in job.operators() {
            let connector = match op.kind() {
                "sink" => sinks
                    .iter()
                    .find(|(key, _)| key == op.name())
                    .map(|(_, s)| s.kind().name()),
                "source" if sources.len() == 1 => Some(sources[0]),
                "source" => {
                    let same: Vec<&&str> = sources.iter().filter(|k| **k == op.name()).collect();
                    (same.len() == 1).then(|| *same[0])
                }
                _ => None,
            };
            if let Some(c) = connector {
                out.insert(op.name().to_string(), c.to_string());
            }
        }
        out
    }

    /// Checks every source and sink of the pipeline (call after [`Pipeline::validate`]).
    pub fn check_connections(&self) -> Vec<ConnectionCheck> {
        self.connector_keys()
            .into_iter()
            .map(|(key, connector)| ConnectionCheck {
                connector,
                result: self.check_connection(&key),
                key,
            })
            .collect()
    }

    /// Every source and sink: its key in the file (`source`, `sources.NAME`, `sink`,
    /// `sinks[1]`, `dead_letter`) and its connector type.
    pub fn connector_keys(&self) -> Vec<(String, &'static str)> {
        let mut keys: Vec<(String, &'static str)> = self
            .source_specs()
            .into_iter()
            .map(|(key, source)| (key, source.kind().name()))
            .collect();
        keys.extend(
            self.sink_specs()
                .into_iter()
                .map(|(key, sink)| (key, sink.kind().name())),
        );
        keys
    }

    /// The check of one source or sink, by its key (see [`connector_keys`](Self::connector_keys)):
    /// `Ok(true)` it answered, `Ok(false)` nothing to check (stdin, stdout, a generator, discard).
    pub fn check_connection(&self, key: &str) -> Result<bool, CheckError> {
        if let Some((_, source)) = self.source_specs().into_iter().find(|(k, _)| k == key) {
            return self.check_source(key, source);
        }
        match self.sink_specs().into_iter().find(|(k, _)| k == key) {
            Some((_, sink)) => self.check_sink(key, sink),
            None => Err(self
                .error_at(key, format!("no source or sink `{key}` in the pipeline"))
                .into()),
        }
    }

    fn sink_specs(&self) -> Vec<(String, &SinkSpec)> {
        let spec = &self.spec;
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
        sinks
    }

    fn check_source(&self, key: &str, source: &SourceSpec) -> Result<bool, CheckError> {
        let ctx = crate::source::PipelineContext(self);
        source
            .config
            .connector()
            .check(&ctx)
            .map_err(|e| self.check_error(key, e))
    }

    fn check_sink(&self, key: &str, sink: &SinkSpec) -> Result<bool, CheckError> {
        let ctx = crate::source::PipelineContext(self);
        sink.config
            .connector()
            .check(&ctx)
            .map_err(|e| self.check_error(key, e))
    }

    fn check_error(&self, key: &str, failure: CheckFailure) -> CheckError {
        match failure {
            CheckFailure::Config(e) => CheckError::Config(self.connector_error(key, e)),
            CheckFailure::Connector(e) => CheckError::Connector(e),
        }
    }
}
