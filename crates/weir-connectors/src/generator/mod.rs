//! The generator source: `source: { type: generator, count, rate, fields }`, deterministic
//! records made from a counter ([`GeneratorSource`], which the typed API's `generate*` use).

mod source;

pub use source::GeneratorSource;

use crate::config::{BuiltSource, CheckFailure, ConfigError, Context, SourceOutput};
use crate::typed::SourceExt;
use indexmap::IndexMap;
use serde::Deserialize;
use std::sync::Arc;
use weir_core::Environment;
use weir_expr::{Expr, FieldTypes, Projection};
use weir_types::{Record, Shape, Value};

/// `source: { type: generator }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorOptions {
    /// Records to make; endless when absent.
    pub count: Option<u64>,
    /// Records per second; as fast as possible when absent.
    pub rate: Option<f64>,
    /// Each field is an expression over `id` (0, 1, 2, ...).
    #[serde(deserialize_with = "crate::unique::keys")]
    pub fields: IndexMap<String, String>,
}

impl crate::config::SourceConnector for GeneratorOptions {
    fn build(
        &self,
        _: &dyn Context,
        env: &Environment,
        at: &str,
        fields: &mut FieldTypes,
    ) -> Result<BuiltSource, ConfigError> {
        let ids = FieldTypes::default().with("id", weir_types::ValueKind::Int);
        for (name, source) in &self.fields {
            Expr::compile(source, &ids)
                .map_err(|e| ConfigError::option(format!("fields.{name}"), e.to_string()))?;
        }
        if let Some(r) = self.rate.filter(|r| r.is_nan() || *r <= 0.0) {
            return Err(ConfigError::option(
                "rate",
                format!("must be positive, found {r}"),
            ));
        }
        let pairs: Vec<(&str, &str)> = self
            .fields
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_str()))
            .collect();
        let projection = Projection::compile(&pairs, &ids)
            .map_err(|e| ConfigError::option("fields", e.to_string()))?;
        *fields = projection.output_types();
        let projection = Arc::new(projection);
        // One `{id}` record per generator instance, overwritten for each id: making a record
        // costs the output record only.
        let id_record = Record::with_shape(Arc::new(Shape::new(["id"])), vec![Value::Int(0)])
            .map_err(|e| ConfigError::option("fields", e.to_string()))?;
        let scratch = std::cell::RefCell::new(id_record);
        let make = move |id: u64| -> Result<Record, String> {
            let mut input = scratch.borrow_mut();
            input.values_mut()[0] = Value::Int(id as i64);
            projection.apply(&input).map_err(|e| e.to_string())
        };
        let generated = match (self.rate, self.count) {
            (Some(r), count) => env.generate_paced(count, r, make),
            (None, Some(n)) => env.generate(n, make),
            (None, None) => env.generate_unbounded(make),
        };
        let label = match self.count {
            Some(n) => format!("generator ({n} records)"),
            None => "generator (endless)".to_string(),
        };
        Ok(BuiltSource {
            output: SourceOutput::Records(generated.try_map(|r| r).name(&format!("{at}.fields"))),
            label,
        })
    }

    fn check(&self, _: &dyn Context) -> Result<bool, CheckFailure> {
        Ok(false)
    }
}
