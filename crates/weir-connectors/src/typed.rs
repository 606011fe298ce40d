//! The connectors in weir-core's typed API: [`SourceExt`] adds the file, standard-input and
//! generator sources to [`Environment`], [`SinkExt`] the file and standard-output sinks to
//! [`Stream`]. Bring them in with `use weir_connectors::{SinkExt, SourceExt};`.
//!
//! ```
//! use weir_connectors::SourceExt;
//! use weir_core::Environment;
//!
//! let env = Environment::local();
//! let squares = env.generate(5, |i| i * i).collect();
//! env.execute().unwrap();
//! let mut got = squares.take();
//! got.sort();
//! assert_eq!(got, vec![0, 1, 4, 9, 16]);
//! ```

use crate::file::{
    CsvOptions, CsvSource, FileSource, FileSourceConfig, Format, JsonLinesSink, JsonLinesSource,
    ReadResult,
};
use crate::generator::GeneratorSource;
use crate::stdout::StdoutSink;
use std::fmt::Display;
use std::path::PathBuf;
use weir_core::{Data, Environment, SinkHandle, Stream};
use weir_types::Record;

/// The connectors' sources on an [`Environment`].
pub trait SourceExt {
    /// `count` records made by `generate(id)` for `id` in `0..count`; parallel instances
    /// split the id range.
    fn generate<T: Data>(
        &self,
        count: u64,
        generate: impl Fn(u64) -> T + Clone + Send + 'static,
    ) -> Stream<T>;

    /// An endless generator (stop it with `take`, or by stopping the job).
    fn generate_unbounded<T: Data>(
        &self,
        generate: impl Fn(u64) -> T + Clone + Send + 'static,
    ) -> Stream<T>;

    /// A generator paced at `per_second` records per second over all instances.
    fn generate_paced<T: Data>(
        &self,
        count: Option<u64>,
        per_second: f64,
        generate: impl Fn(u64) -> T + Clone + Send + 'static,
    ) -> Stream<T>;

    /// Records read from a file (`-`: standard input), with undecodable input as `Err`
    /// values naming the file and line. Use [`Stream::split_result`] to route those to a
    /// dead-letter output, or [`SourceExt::read_records`] to fail on them.
    fn read_file(&self, path: impl Into<PathBuf>, format: Format) -> Stream<ReadResult>;

    /// JSON lines read by offset from one file, a followed file, or every file of a directory
    /// or glob (spread over the parallel instances), or one file split by byte ranges across
    /// them; see [`FileSourceConfig`]. Undecodable lines are `Err` values as in
    /// [`SourceExt::read_file`].
    fn read_files(&self, config: FileSourceConfig) -> Stream<ReadResult>;

    /// Records read from a CSV file (`-`: standard input), with declared column types or
    /// without type inference; undecodable rows are `Err` values as in [`SourceExt::read_file`].
    fn read_csv(&self, path: impl Into<PathBuf>, options: CsvOptions) -> Stream<ReadResult>;

    /// Records read from a file; a line that cannot be decoded fails the job, naming the file
    /// and line.
    fn read_records(&self, path: impl Into<PathBuf>, format: Format) -> Stream<Record>;
}

impl SourceExt for Environment {
    fn generate<T: Data>(
        &self,
        count: u64,
        generate: impl Fn(u64) -> T + Clone + Send + 'static,
    ) -> Stream<T> {
        generator(self, Some(count), None, generate)
    }

    fn generate_unbounded<T: Data>(
        &self,
        generate: impl Fn(u64) -> T + Clone + Send + 'static,
    ) -> Stream<T> {
        generator(self, None, None, generate)
    }

    fn generate_paced<T: Data>(
        &self,
        count: Option<u64>,
        per_second: f64,
        generate: impl Fn(u64) -> T + Clone + Send + 'static,
    ) -> Stream<T> {
        generator(self, count, Some(per_second), generate)
    }

    fn read_file(&self, path: impl Into<PathBuf>, format: Format) -> Stream<ReadResult> {
        let path = path.into();
        let stream = match format {
            Format::JsonLines => {
                self.source("json_lines", move || JsonLinesSource::new(path.clone()))
            }
            Format::Csv => self.source("csv", move || CsvSource::new(path.clone())),
        };
        stream.max_parallelism(1)
    }

    fn read_files(&self, config: FileSourceConfig) -> Stream<ReadResult> {
        let max = config.max_parallelism();
        let stream = self.source("json_lines", move || FileSource::new(config.clone()));
        match max {
            Some(max) => stream.max_parallelism(max),
            None => stream,
        }
    }

    fn read_csv(&self, path: impl Into<PathBuf>, options: CsvOptions) -> Stream<ReadResult> {
        let path = path.into();
        self.source("csv", move || {
            CsvSource::with_options(path.clone(), options.clone())
        })
        .max_parallelism(1)
    }

    fn read_records(&self, path: impl Into<PathBuf>, format: Format) -> Stream<Record> {
        self.read_file(path, format).try_map(|r| r).name("decode")
    }
}

fn generator<T: Data>(
    env: &Environment,
    count: Option<u64>,
    rate: Option<f64>,
    generate: impl Fn(u64) -> T + Clone + Send + 'static,
) -> Stream<T> {
    env.source("generator", move || {
        GeneratorSource::new(count, rate, generate.clone())
    })
}

/// The connectors' sinks on a [`Stream`].
pub trait SinkExt<T> {
    /// Writes every record to standard output, one per line.
    fn print(&self) -> SinkHandle
    where
        T: Display;

    /// Writes every record as a line of JSON to `path` (`-`: standard output).
    fn write_json_lines(&self, path: impl Into<PathBuf>) -> SinkHandle
    where
        T: serde::Serialize;
}

impl<T: Data> SinkExt<T> for Stream<T> {
    fn print(&self) -> SinkHandle
    where
        T: Display,
    {
        self.sink("stdout", StdoutSink::new)
    }

    fn write_json_lines(&self, path: impl Into<PathBuf>) -> SinkHandle
    where
        T: serde::Serialize,
    {
        let path = path.into();
        self.sink("json_lines_sink", move || JsonLinesSink::new(path.clone()))
            .max_parallelism(1)
    }
}
