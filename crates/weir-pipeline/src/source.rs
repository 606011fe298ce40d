//! Building a pipeline's source from its spec: [`SourceSpec::build`], the one entry the
//! planner calls (also per named source of a multi-source pipeline).

use crate::build::{check_options, format_name, resolve};
use crate::spec::{SourceKind, SourceSpec};
use crate::{Pipeline, PipelineError};
use std::sync::Arc;
use weir_core::{Environment, FileSelection, FileSourceConfig, Format, ReadResult, Stream};
use weir_expr::{Expr, FieldTypes, Projection};
use weir_types::{Record, Shape, Value};

/// What a source produces: lines or rows read (undecodable ones as `Err`, to fail on or route
/// to the dead-letter output), or records made directly (a generator).
pub(crate) enum SourceOutput {
    Read(Stream<ReadResult>),
    Records(Stream<Record>),
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
        let spec = self;
        let at = |option: &str| format!("{key}.{option}");
        check_options(p, key, spec.kind.name(), &spec.given(), spec.accepted())?;
        Ok(match spec.kind {
            SourceKind::File => file_source(spec, p, key, env)?,
            SourceKind::Stdin => {
                let format = spec.format.unwrap_or(Format::JsonLines);
                let read = match csv_options(spec, p, key, format)? {
                    Some(options) => env.read_csv("-", options),
                    None => env.read_file("-", format),
                };
                (
                    SourceOutput::Read(read),
                    format!("stdin ({})", format_name(format)),
                )
            }
            SourceKind::RedisStream => {
                let (config, label) = crate::ingest::redis_source(p, key, spec)?;
                crate::ingest::check_claim_idle(p, key, &config)?;
                let raw = env.source("redis_stream", crate::ingest::redis_source_factory(config));
                (SourceOutput::Read(raw), label)
            }
            SourceKind::Generator => {
                let generated = spec.fields.as_ref().ok_or_else(|| {
                    p.error_at(
                        key,
                        "a generator needs `fields`: expressions over `id`, e.g. `{ id: id, key: \"id % 10\" }`",
                    )
                })?;
                let ids = FieldTypes::default().with("id", weir_types::ValueKind::Int);
                for (name, source) in generated {
                    Expr::compile(source, &ids)
                        .map_err(|e| p.error_at(&format!("{key}.fields.{name}"), e.to_string()))?;
                }
                if let Some(r) = spec.rate.filter(|r| r.is_nan() || *r <= 0.0) {
                    return Err(p.error_at(&at("rate"), format!("must be positive, found {r}")));
                }
                let pairs: Vec<(&str, &str)> = generated
                    .iter()
                    .map(|(n, s)| (n.as_str(), s.as_str()))
                    .collect();
                let projection = Projection::compile(&pairs, &ids)
                    .map_err(|e| p.error_at(&at("fields"), e.to_string()))?;
                *fields = projection.output_types();
                let projection = Arc::new(projection);
                let id_shape = Arc::new(Shape::new(["id"]));
                let make = move |id: u64| -> Result<Record, String> {
                    let input = Record::with_shape(id_shape.clone(), vec![Value::Int(id as i64)])
                        .map_err(|e| e.to_string())?;
                    projection.apply(&input).map_err(|e| e.to_string())
                };
                let generated = match (spec.rate, spec.count) {
                    (Some(r), count) => env.generate_paced(count, r, make),
                    (None, Some(n)) => env.generate(n, make),
                    (None, None) => env.generate_unbounded(make),
                };
                let label = match spec.count {
                    Some(n) => format!("generator ({n} records)"),
                    None => "generator (endless)".to_string(),
                };
                (
                    SourceOutput::Records(generated.try_map(|r| r).name(&at("fields"))),
                    label,
                )
            }
        })
    }
}

/// A file source: one file, a followed file, a directory or a glob; JSON lines by offset
/// (split by byte ranges at a parallelism above 1), or one CSV file.
fn file_source(
    spec: &SourceSpec,
    p: &Pipeline,
    key: &str,
    env: &Environment,
) -> Result<(SourceOutput, String), PipelineError> {
    let at = |option: &str| format!("{key}.{option}");
    let path = spec
        .path
        .as_ref()
        .ok_or_else(|| p.error_at(key, "a file source needs a `path`"))?;
    let path = resolve(p, path);
    let follow = spec.follow.unwrap_or(false);
    let selection = FileSelection::from_path(&path, follow).map_err(|e| {
        let text = match e {
            weir_core::SelectionError::Missing(_) => {
                format!("no such file: {}", path.display())
            }
            e => e.to_string(),
        };
        p.error_at(&at("path"), text)
    })?;
    let stop_after_idle = match &spec.stop_after_idle {
        Some(_) if !follow => {
            return Err(p.error_at(&at("stop_after_idle"),
                    "`stop_after_idle` applies to a followed file (`follow: true`); a file read once ends at its end",
                ));
        }
        Some(d) => Some(crate::ingest::duration(p, &at("stop_after_idle"), d)?),
        None => None,
    };
    let format = spec.format.unwrap_or_else(|| match &selection {
        FileSelection::File(path) => Format::from_path(path),
        _ => Format::JsonLines,
    });
    let csv = csv_options(spec, p, key, format)?;
    if csv.is_some() && (follow || selection.is_many()) {
        let what = if follow {
            "`follow: true`"
        } else {
            "a directory or glob source"
        };
        return Err(p.error_at(
            &at("format"),
            format!("{what} reads JSON lines; CSV is read from one file without `follow`"),
        ));
    }
    let label = match &selection {
        FileSelection::File(_) if follow => {
            format!("{} (json lines, followed)", path.display())
        }
        FileSelection::File(_) => format!("{} ({})", path.display(), format_name(format)),
        _ if follow => format!("{} (json lines, every file, followed)", path.display()),
        _ => format!("{} (json lines, every file)", path.display()),
    };
    let read = match csv {
        Some(options) => {
            // A bad header is bad input: refuse it before the run starts.
            weir_core::check_csv_header(&path, &options).map_err(|e| match e.declared_field() {
                Some(name) => p.error_at(&format!("fields.{name}"), e.to_string()),
                None => p.error_at(&at("path"), e.to_string()),
            })?;
            env.read_csv(path, options)
        }
        None => {
            let mut config = FileSourceConfig::new(selection);
            config.follow = follow;
            config.stop_after_idle = stop_after_idle;
            config.split = !follow && !config.selection.is_many() && env.config().parallelism > 1;
            env.read_files(config)
        }
    };
    Ok((SourceOutput::Read(read), label))
}

/// How a CSV source types its cells (`None` for JSON lines, which refuse `infer_types`):
/// the pipeline's declared `fields` win over guessing.
fn csv_options(
    spec: &SourceSpec,
    p: &Pipeline,
    key: &str,
    format: Format,
) -> Result<Option<weir_core::CsvOptions>, PipelineError> {
    let infer_types = spec.infer_types;
    if format != Format::Csv {
        if infer_types.is_some() {
            return Err(p.error_at(&format!("{key}.infer_types"),
                    "`infer_types` applies to CSV input only (JSON values carry their types); set `format: csv` or remove it",
                ));
        }
        return Ok(None);
    }
    Ok(Some(weir_core::CsvOptions {
        types: p
            .spec
            .fields
            .iter()
            .map(|(name, t)| (name.clone(), t.kind()))
            .collect(),
        infer_types: infer_types.unwrap_or(true),
    }))
}
