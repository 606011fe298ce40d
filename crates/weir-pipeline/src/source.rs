//! Building a pipeline's sources and sinks from their specs: [`SourceSpec::build`] and
//! [`SinkSpec::build`], the entries the planner calls. Each connector's options, build and
//! check live in its folder in weir-connectors; this module gives them the pipeline's
//! [`Context`] and turns their errors into located [`PipelineError`]s.

use crate::spec::{SinkSpec, SourceSpec};
use crate::{Pipeline, PipelineError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
pub(crate) use weir_connectors::config::SourceOutput;
use weir_connectors::config::{ConfigError, Context, ErrorKey};
use weir_core::{Environment, Stream};
use weir_expr::FieldTypes;
use weir_types::{Record, ValueKind};

/// What the connectors see of the pipeline.
pub(crate) struct PipelineContext<'p>(pub(crate) &'p Pipeline);

impl Context for PipelineContext<'_> {
    fn resolve(&self, path: &Path) -> PathBuf {
        crate::build::resolve(self.0, path)
    }

    fn declared_fields(&self) -> Vec<(String, ValueKind)> {
        self.0
            .spec
            .fields
            .iter()
            .map(|(name, t)| (name.clone(), t.kind()))
            .collect()
    }

    fn pipeline_name(&self) -> String {
        self.0.name()
    }

    fn schema(&self, option: &str, name: &str) -> Result<Arc<weir_schema::Schema>, ConfigError> {
        crate::ingest::load_schema(self.0, name, None).map_err(|e| match e {
            crate::ingest::SchemaError::Registry(message) => ConfigError::root("schemas", message),
            crate::ingest::SchemaError::Schema(message) => ConfigError::option(option, message),
        })
    }

    fn checkpoint_interval(&self) -> Result<Option<std::time::Duration>, ConfigError> {
        self.0.checkpoint_interval().map_err(|e| ConfigError {
            key: ErrorKey::Root(e.key.unwrap_or_default()),
            message: e.message,
        })
    }
}

impl Pipeline {
    /// A connector's error, located: `at` is the connector's key (`source`, `sinks[1]`).
    pub(crate) fn connector_error(&self, at: &str, error: ConfigError) -> PipelineError {
        match error.key {
            ErrorKey::Connector => self.error_at(at, error.message),
            ErrorKey::Option(option) => self.error_at(&format!("{at}.{option}"), error.message),
            ErrorKey::Root(key) => self.error_at(&key, error.message),
        }
    }
}

impl SourceSpec {
    /// Builds this source into `env`: its records (or what was read, with undecodable input
    /// as `Err` values to route), and a label for display. `key` is where the source is in
    /// the file (`source`), for error messages; `fields` receives the record's field types
    /// when the source knows them (a generator).
    pub(crate) fn build(
        &self,
        p: &Pipeline,
        key: &str,
        env: &Environment,
        fields: &mut FieldTypes,
    ) -> Result<(SourceOutput, String), PipelineError> {
        let built = self
            .config
            .connector()
            .build(&PipelineContext(p), env, key, fields)
            .map_err(|e| p.connector_error(key, e))?;
        Ok((built.output, built.label))
    }
}

impl SinkSpec {
    /// Attaches this sink to `stream`. `name` is where the sink is in the file (`sink`,
    /// `sinks[1]`, `dead_letter`): the operator's name and the key of error messages.
    pub(crate) fn build(
        &self,
        p: &Pipeline,
        name: &str,
        stream: &Stream<Record>,
    ) -> Result<(), PipelineError> {
        self.config
            .connector()
            .build(&PipelineContext(p), name, stream)
            .map_err(|e| p.connector_error(name, e))
    }
}
