//! The `stdout` and `discard` sinks: no options. [`StdoutSink`] writes any `Display` records
//! (the typed API's `print`); the YAML `stdout` sink writes JSON lines.

mod sink;

pub use sink::StdoutSink;

use crate::config::{CheckFailure, ConfigError, Context};
use crate::typed::SinkExt;
use serde::Deserialize;
use weir_core::Stream;
use weir_types::Record;

/// `sink: { type: stdout }`: records as JSON lines on standard output.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutOptions {}

/// `sink: { type: discard }`: counts and drops the records (for measuring).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscardOptions {}

impl crate::config::SinkConnector for StdoutOptions {
    fn build(
        &self,
        _: &dyn Context,
        name: &str,
        stream: &Stream<Record>,
    ) -> Result<(), ConfigError> {
        stream.write_json_lines("-").name(name);
        Ok(())
    }

    fn check(&self, _: &dyn Context) -> Result<bool, CheckFailure> {
        Ok(false)
    }

    fn destination(&self, _: &dyn Context) -> String {
        "standard output".into()
    }
}

impl crate::config::SinkConnector for DiscardOptions {
    fn build(
        &self,
        _: &dyn Context,
        name: &str,
        stream: &Stream<Record>,
    ) -> Result<(), ConfigError> {
        stream.for_each(drop).name(name);
        Ok(())
    }

    fn check(&self, _: &dyn Context) -> Result<bool, CheckFailure> {
        Ok(false)
    }

    fn destination(&self, _: &dyn Context) -> String {
        "discarded".into()
    }
}
