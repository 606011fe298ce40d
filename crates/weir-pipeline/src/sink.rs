//! Building a pipeline's sinks from their specs: [`SinkSpec::build`], the one entry the
//! planner calls for every sink and the dead-letter output.

use crate::build::resolve;
use crate::spec::{SinkKind, SinkSpec};
use crate::{Pipeline, PipelineError};
use weir_core::Stream;
use weir_types::Record;

impl SinkSpec {
    /// Attaches this sink to `stream`. `name` is where the sink is in the file (`sink`,
    /// `sinks[1]`, `dead_letter`): the operator's name and the key of error messages.
    pub(crate) fn build(
        &self,
        p: &Pipeline,
        name: &str,
        stream: &Stream<Record>,
    ) -> Result<(), PipelineError> {
        let sink = self;
        match sink.kind {
            SinkKind::Stdout => {
                stream.write_json_lines("-").name(name);
            }
            SinkKind::File => {
                let path = sink
                    .path
                    .as_ref()
                    .ok_or_else(|| p.error_at(name, "a file sink needs a `path`"))?;
                stream.write_json_lines(resolve(p, path)).name(name);
            }
            SinkKind::Discard => {
                stream.for_each(drop).name(name);
            }
            SinkKind::RedisStream => {
                let need = |v: &Option<String>, key: &str| {
                    v.clone().ok_or_else(|| {
                        p.error_at(name, format!("a redis_stream sink needs `{key}`"))
                    })
                };
                let mut config = weir_connectors::RedisStreamWriterConfig::new(
                    need(&sink.url, "url")?,
                    need(&sink.stream, "stream")?,
                );
                config.max_len = sink.max_len;
                config.ca_file = sink.ca_file.as_ref().map(|f| resolve(p, f));
                // Explicit, growing ids need a single writer per stream.
                stream
                    .sink(name, move || {
                        weir_connectors::RedisStreamSink::new(config.clone())
                    })
                    .parallelism(1);
            }
            SinkKind::Clickhouse => {
                let config = crate::ingest::clickhouse_sink(p, name, sink)?;
                stream.sink(name, move || {
                    weir_connectors::ClickHouseSink::new(config.clone())
                });
            }
            SinkKind::Http => {
                let webhook = crate::enrich::http_sink(p, name, sink)?;
                stream.sink(name, move || webhook.clone());
            }
        }
        Ok(())
    }
}
