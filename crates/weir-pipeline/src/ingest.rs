//! The ingestion pieces of the format: the schema validation and masking steps, and the
//! schemas of the pipeline's registry (which the ClickHouse sink also reads).

use crate::spec::SchemaRef;
use crate::steps::{Routed, reject};
use crate::{Pipeline, PipelineError};
use std::sync::Arc;
use weir_core::{Operator, OperatorContext, OperatorError};
use weir_expr::FieldTypes;
use weir_schema::{FieldType, Registry, Schema, Validator, VersionSpec};
use weir_types::{Record, ValueKind};

/// Loads a schema from the pipeline's registry.
pub(crate) fn schema(
    p: &Pipeline,
    key: &str,
    reference: &SchemaRef,
) -> Result<Arc<Schema>, PipelineError> {
    load_schema(p, reference.name(), reference.version()).map_err(|e| match e {
        SchemaError::Registry(message) => p.error_at("schemas", message),
        SchemaError::Schema(message) => p.error_at(key, message),
    })
}

/// Why a schema could not be loaded: the registry (at `schemas`), or the schema (at the key
/// that names it).
pub(crate) enum SchemaError {
    Registry(String),
    Schema(String),
}

pub(crate) fn load_schema(
    p: &Pipeline,
    name: &str,
    version: Option<u32>,
) -> Result<Arc<Schema>, SchemaError> {
    let dir = p.spec.schemas.as_ref().ok_or_else(|| {
        SchemaError::Schema(
            "schemas are read from a registry: add `schemas: <directory>` at the top of the file"
                .to_string(),
        )
    })?;
    let dir = crate::build::resolve(p, dir);
    // Reading a pipeline never creates its registry: a mistyped `schemas:` is an error, not a
    // new empty directory.
    let registry =
        Registry::open_existing(&dir).map_err(|e| SchemaError::Registry(e.to_string()))?;
    let spec = version.map_or(VersionSpec::Latest, VersionSpec::Exact);
    registry
        .get(name, spec)
        .map(Arc::new)
        .map_err(|e| SchemaError::Schema(e.to_string()))
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
