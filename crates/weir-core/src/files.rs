//! File and standard-stream connectors for dynamic records: JSON lines and CSV in, JSON lines out.
//!
//! Readers never drop a line silently: a line that cannot be decoded becomes a [`BadRecord`]
//! naming the file, the line and what was wrong, which the pipeline either fails on or routes
//! to a dead-letter output.

use crate::error::{ErrorKind, OperatorError};
use crate::operator::{OperatorContext, Sink, Source, SourceStatus};
use serde::Serialize;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weir_types::{Record, RecordDecoder, Value};

/// Input that could not be decoded into a record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BadRecord {
    /// The file (or `-` for standard input).
    pub source: Arc<str>,
    /// 1-based line number.
    pub line: u64,
    pub error: String,
    /// The offending input, as read.
    pub raw: String,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.source, self.line, self.error)
    }
}

/// What a reader emits per input unit.
pub type ReadResult = Result<Record, BadRecord>;

/// Input encodings understood by the file and stdin sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line.
    JsonLines,
    /// Comma-separated values with a header row; values typed as int, float, bool or string.
    Csv,
}

fn open_input(path: &Path) -> Result<Box<dyn Read + Send>, OperatorError> {
    if path == Path::new("-") {
        return Ok(Box::new(std::io::stdin()));
    }
    File::open(path)
        .map(|f| Box::new(f) as Box<dyn Read + Send>)
        .map_err(|e| OperatorError::io(format!("cannot open {}", path.display()), e))
}

/// Reads one JSON object per line. Blank lines are skipped.
pub struct JsonLinesSource {
    path: PathBuf,
    label: Arc<str>,
    reader: Option<BufReader<Box<dyn Read + Send>>>,
    line: u64,
    buf: String,
    decoder: RecordDecoder,
}

impl JsonLinesSource {
    /// `path` may be `-` for standard input.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        JsonLinesSource {
            label: path.display().to_string().into(),
            path,
            reader: None,
            line: 0,
            buf: String::new(),
            decoder: RecordDecoder::default(),
        }
    }
}

impl Source<ReadResult> for JsonLinesSource {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        // One file is read by one instance; the others have nothing to do.
        if ctx.instance() == 0 {
            self.reader = Some(BufReader::with_capacity(1 << 16, open_input(&self.path)?));
        }
        Ok(())
    }

    fn poll(
        &mut self,
        out: &mut Vec<ReadResult>,
        max: usize,
        _: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(SourceStatus::Finished);
        };
        while out.len() < max {
            self.buf.clear();
            let n = reader
                .read_line(&mut self.buf)
                .map_err(|e| OperatorError::io(format!("reading {}", self.label), e))?;
            if n == 0 {
                return Ok(SourceStatus::Finished);
            }
            self.line += 1;
            let text = self.buf.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            out.push(self.decoder.decode(text).map_err(|e| BadRecord {
                source: self.label.clone(),
                line: self.line,
                error: e.to_string(),
                raw: text.to_string(),
            }));
        }
        Ok(SourceStatus::Ready)
    }
}

/// Reads CSV with a header row. Field values are typed by their text: integers, floats,
/// `true`/`false`, empty as null, anything else a string.
pub struct CsvSource {
    path: PathBuf,
    label: Arc<str>,
    reader: Option<csv::Reader<Box<dyn Read + Send>>>,
    shape: Arc<weir_types::Shape>,
    record: csv::StringRecord,
}

impl CsvSource {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        CsvSource {
            label: path.display().to_string().into(),
            path,
            reader: None,
            shape: Arc::default(),
            record: csv::StringRecord::new(),
        }
    }
}

/// The value a CSV cell's text denotes.
pub fn infer_value(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else if let Ok(i) = text.parse::<i64>() {
        Value::Int(i)
    } else if let Ok(f) = text.parse::<f64>() {
        Value::Float(f)
    } else if text == "true" {
        Value::Bool(true)
    } else if text == "false" {
        Value::Bool(false)
    } else {
        Value::from(text)
    }
}

impl Source<ReadResult> for CsvSource {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        if ctx.instance() != 0 {
            return Ok(());
        }
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(open_input(&self.path)?);
        let headers = reader.headers().map_err(|e| {
            OperatorError::new(
                ErrorKind::Data,
                format!("{}:1: cannot read the CSV header: {e}", self.label),
            )
        })?;
        self.shape = Arc::new(weir_types::Shape::new(headers.iter()));
        self.reader = Some(reader);
        Ok(())
    }

    fn poll(
        &mut self,
        out: &mut Vec<ReadResult>,
        max: usize,
        _: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(SourceStatus::Finished);
        };
        while out.len() < max {
            match reader.read_record(&mut self.record) {
                Ok(false) => return Ok(SourceStatus::Finished),
                Ok(true) => {
                    let line = self.record.position().map_or(0, |p| p.line());
                    if self.record.len() != self.shape.len() {
                        out.push(Err(BadRecord {
                            source: self.label.clone(),
                            line,
                            error: format!(
                                "expected {} fields (as in the header), found {}",
                                self.shape.len(),
                                self.record.len()
                            ),
                            raw: self.record.iter().collect::<Vec<_>>().join(","),
                        }));
                        continue;
                    }
                    let values = self.record.iter().map(infer_value).collect();
                    let record = Record::with_shape(self.shape.clone(), values)
                        .map_err(|e| OperatorError::new(ErrorKind::Internal, e.to_string()))?;
                    out.push(Ok(record));
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    if e.is_io_error() {
                        return Err(OperatorError::io(format!("reading {}", self.label), e));
                    }
                    out.push(Err(BadRecord {
                        source: self.label.clone(),
                        line,
                        error: e.to_string(),
                        raw: String::new(),
                    }));
                }
            }
        }
        Ok(SourceStatus::Ready)
    }
}

/// Writes each record as one line of JSON to a file (or `-` for standard output).
///
/// Delivery: at-least-once; lines are flushed at every tick and at the end of input.
pub struct JsonLinesSink {
    path: PathBuf,
    writer: Option<BufWriter<Box<dyn Write + Send>>>,
    line: Vec<u8>,
}

impl JsonLinesSink {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonLinesSink {
            path: path.into(),
            writer: None,
            line: Vec::new(),
        }
    }

    fn flush(&mut self) -> Result<(), OperatorError> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()
                .map_err(|e| OperatorError::io(format!("writing {}", self.path.display()), e))?;
        }
        Ok(())
    }
}

impl<T: Serialize + Send + 'static> Sink<T> for JsonLinesSink {
    fn open(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        let out: Box<dyn Write + Send> = if self.path == Path::new("-") {
            Box::new(std::io::stdout())
        } else {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    OperatorError::io(format!("cannot create {}", dir.display()), e)
                })?;
            }
            Box::new(File::create(&self.path).map_err(|e| {
                OperatorError::io(format!("cannot create {}", self.path.display()), e)
            })?)
        };
        self.writer = Some(BufWriter::with_capacity(1 << 16, out));
        Ok(())
    }

    fn write(&mut self, batch: &mut Vec<T>, _: &mut OperatorContext) -> Result<(), OperatorError> {
        let Some(w) = self.writer.as_mut() else {
            return Err(OperatorError::new(ErrorKind::Internal, "sink not opened"));
        };
        for record in batch.drain(..) {
            self.line.clear();
            serde_json::to_writer(&mut self.line, &record)
                .map_err(|e| OperatorError::new(ErrorKind::Data, e.to_string()))?;
            self.line.push(b'\n');
            w.write_all(&self.line)
                .map_err(|e| OperatorError::io(format!("writing {}", self.path.display()), e))?;
        }
        Ok(())
    }

    fn on_tick(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        self.flush()
    }

    fn close(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        self.flush()
    }
}
