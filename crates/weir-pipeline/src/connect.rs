//! `weir validate --connect`: each source and sink's connectivity check (a file readable or
//! writable, Redis answering `PING`, ClickHouse answering `SELECT 1`, an HTTP endpoint
//! accepting a connection), run after the pipeline validated.

use crate::spec::{SinkSpec, SourceSpec};
use crate::{Pipeline, PipelineError};
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
    /// Checks every source and sink of the pipeline (call after [`Pipeline::validate`]).
    pub fn check_connections(&self) -> Vec<ConnectionCheck> {
        let spec = &self.spec;
        let mut checks: Vec<ConnectionCheck> = self
            .source_specs()
            .into_iter()
            .map(|(key, source)| ConnectionCheck {
                connector: source.kind().name(),
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
                connector: sink.kind().name(),
                result,
            });
        }
        checks
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
