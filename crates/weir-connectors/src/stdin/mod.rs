//! The stdin source: `source: { type: stdin, format, infer_types }`. Standard input is read by
//! the file readers (path `-`) through [`pipe`], which lets them wait with a timeout.

pub(crate) mod pipe;

use crate::config::{BuiltSource, CheckFailure, ConfigError, Context, SourceOutput};
use crate::file::{Format, csv_options, format_name};
use crate::typed::SourceExt;
use serde::Deserialize;
use weir_core::Environment;
use weir_expr::FieldTypes;

/// `source: { type: stdin }`: JSON lines or CSV on standard input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinOptions {
    /// `json_lines` (default) or `csv`.
    pub format: Option<Format>,
    /// CSV only: guess the types of undeclared columns (default true); false keeps every
    /// undeclared cell as its text.
    pub infer_types: Option<bool>,
}

impl crate::config::SourceConnector for StdinOptions {
    fn build(
        &self,
        ctx: &dyn Context,
        env: &Environment,
        _at: &str,
        _fields: &mut FieldTypes,
    ) -> Result<BuiltSource, ConfigError> {
        let format = self.format.unwrap_or(Format::JsonLines);
        let read = match csv_options(ctx, format, self.infer_types)? {
            Some(options) => env.read_csv("-", options),
            None => env.read_file("-", format),
        };
        Ok(BuiltSource {
            output: SourceOutput::Read(read),
            label: format!("stdin ({})", format_name(format)),
        })
    }

    fn check(&self, _: &dyn Context) -> Result<bool, CheckFailure> {
        Ok(false)
    }

    fn single_reader(&self, _: &dyn Context) -> bool {
        true
    }
}
