//! File and standard-stream connectors for dynamic records: JSON lines and CSV in, JSON lines out.
//!
//! Readers never drop a line silently: a line that cannot be decoded becomes a [`BadRecord`]
//! naming the file, the line and what was wrong, which the pipeline either fails on or routes
//! to a dead-letter output.

use crate::stdin::pipe::{CsvRowPipe, Input, StdinPipe};
use serde::Serialize;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weir_core::{
    CheckpointId, ErrorKind, OperatorContext, OperatorError, Sink, Source, SourceStatus,
};
use weir_types::{Record, RecordDecoder, Value};

/// Input that could not be decoded into a record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BadRecord {
    /// The file (or `-` for standard input).
    pub source: Arc<str>,
    /// 1-based line number.
    pub line: u64,
    pub error: String,
    /// The offending input, as read. Input that is not valid UTF-8 is escaped by
    /// [`escape_invalid_utf8`]: each invalid byte as `\xNN`, each backslash doubled.
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

impl Format {
    /// The format a file's name suggests: `.csv` (any case) is CSV, anything else JSON lines.
    pub fn from_path(path: &Path) -> Format {
        match path.extension() {
            Some(ext) if ext.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::JsonLines,
        }
    }
}

/// Bytes as text for a dead letter: valid UTF-8 is kept, each invalid byte becomes `\xNN` and
/// each backslash `\\`, so the original bytes can be told apart and recovered.
pub fn escape_invalid_utf8(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Why bytes are not UTF-8, for a dead letter: the 1-based column (in bytes) and the byte.
fn utf8_problem(bytes: &[u8], e: std::str::Utf8Error) -> String {
    let at = e.valid_up_to();
    format!(
        "invalid UTF-8 at column {} (byte 0x{:02x}); the raw bytes are escaped as \\xNN",
        at + 1,
        bytes.get(at).copied().unwrap_or(0)
    )
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

fn open_input(path: &Path) -> Result<Box<dyn Read + Send>, OperatorError> {
    if path == Path::new("-") {
        return Ok(Box::new(std::io::stdin()));
    }
    File::open(path)
        .map(|f| Box::new(f) as Box<dyn Read + Send>)
        .map_err(|e| OperatorError::io(format!("cannot open {}", path.display()), e))
}

/// Opens a line source's input: standard input is read by a thread, so that a batch can be
/// returned when the input goes quiet (see `crate::stdin::pipe`).
fn open_lines(path: &Path) -> Result<Input, OperatorError> {
    if path == Path::new("-") {
        return StdinPipe::spawn()
            .map(Input::Stdin)
            .map_err(|e| OperatorError::io("cannot read standard input", e));
    }
    File::open(path)
        .map(Input::File)
        .map_err(|e| OperatorError::io(format!("cannot open {}", path.display()), e))
}

/// Reads one JSON object per line. Blank lines are skipped, as is a UTF-8 byte-order mark at
/// the start of the input. A line that is not valid UTF-8 is a bad record like any other. A
/// partial batch is returned when the input has had nothing more for the job's batch timeout.
pub struct JsonLinesSource {
    path: PathBuf,
    label: Arc<str>,
    reader: Option<BufReader<Input>>,
    line: u64,
    /// Bytes consumed so far: where a restart resumes.
    offset: u64,
    /// The current line's bytes; reused, so the good path allocates nothing per line.
    buf: Vec<u8>,
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
            offset: 0,
            buf: Vec::new(),
            decoder: RecordDecoder::default(),
        }
    }
}

/// How long an empty-handed poll waits for input at least and at most.
const QUIET_POLL_MIN: std::time::Duration = std::time::Duration::from_millis(1);
const QUIET_POLL_MAX: std::time::Duration = std::time::Duration::from_millis(20);

/// Where a line reader stands, for checkpoints.
#[derive(serde::Serialize, serde::Deserialize)]
struct ReadPosition {
    offset: u64,
    line: u64,
}

impl Source<ReadResult> for JsonLinesSource {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        // One file is read by one instance; the others have nothing to do.
        if ctx.instance() != 0 {
            return Ok(());
        }
        let mut input = open_lines(&self.path)?;
        if let Some(pos) = weir_core::state::restore_value::<ReadPosition>(ctx, "position")? {
            if self.path == Path::new("-") {
                return Err(OperatorError::new(
                    ErrorKind::Config,
                    "cannot resume standard input from a checkpoint; run with --ignore-state",
                ));
            }
            let mut file = File::open(&self.path)
                .map_err(|e| OperatorError::io(format!("cannot open {}", self.label), e))?;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(pos.offset))
                .map_err(|e| OperatorError::io(format!("seeking in {}", self.label), e))?;
            input = Input::File(file);
            self.offset = pos.offset;
            self.line = pos.line;
        }
        self.reader = Some(BufReader::with_capacity(1 << 16, input));
        Ok(())
    }

    fn snapshot(
        &mut self,
        _: CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let position = ReadPosition {
            offset: self.offset,
            line: self.line,
        };
        weir_core::state::save_value(ctx, "position", &position)
    }

    fn poll(
        &mut self,
        out: &mut Vec<ReadResult>,
        max: usize,
        ctx: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(SourceStatus::Finished);
        };
        let started = std::time::Instant::now();
        while out.len() < max {
            if reader.buffer().is_empty() {
                // Nothing buffered: wait for input at most until the batch times out (and
                // briefly when empty-handed, so the task stays responsive).
                let wait = if out.is_empty() {
                    ctx.batch_timeout().clamp(QUIET_POLL_MIN, QUIET_POLL_MAX)
                } else {
                    ctx.batch_timeout().saturating_sub(started.elapsed())
                };
                if !reader.get_mut().wait_readable(wait) {
                    return Ok(if out.is_empty() {
                        SourceStatus::Idle
                    } else {
                        SourceStatus::Ready
                    });
                }
            }
            self.buf.clear();
            let n = reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| OperatorError::io(format!("reading {}", self.label), e))?;
            if n == 0 {
                return Ok(SourceStatus::Finished);
            }
            let at_start = self.offset == 0;
            self.offset += n as u64;
            self.line += 1;
            let mut bytes = self.buf.as_slice();
            while let [rest @ .., b'\n' | b'\r'] = bytes {
                bytes = rest;
            }
            if at_start {
                bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
            }
            let text = match std::str::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) => {
                    out.push(Err(BadRecord {
                        source: self.label.clone(),
                        line: self.line,
                        error: utf8_problem(bytes, e),
                        raw: escape_invalid_utf8(bytes),
                    }));
                    continue;
                }
            };
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

/// How a CSV source types its cells.
#[derive(Clone, Debug)]
pub struct CsvOptions {
    /// Declared types of columns, by name: such a column's cells are parsed as that type (a
    /// cell that is not one makes its row a bad record), whatever they look like. Every name
    /// must be a column of the header.
    pub types: Vec<(String, weir_types::ValueKind)>,
    /// Guess the type of the other columns' cells from their text (the default); when false,
    /// they are strings, exactly as written.
    pub infer_types: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            types: Vec::new(),
            infer_types: true,
        }
    }
}

/// A CSV header that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CsvHeaderError {
    #[error("{file}:1: cannot read the CSV header: {reason}")]
    Unreadable { file: Arc<str>, reason: String },
    #[error("{file}:1: column {column} of the CSV header is not valid UTF-8: `{raw}`")]
    NotUtf8 {
        file: Arc<str>,
        column: usize,
        raw: String,
    },
    #[error(
        "{file}:1: the CSV header names `{name}` twice (columns {first} and {second}); a record cannot have two fields of one name, rename one of them"
    )]
    Duplicate {
        file: Arc<str>,
        name: String,
        first: usize,
        second: usize,
    },
    #[error(
        "the field `{name}` is declared with a type, but the CSV header of {file} has no such column (its columns: {columns})"
    )]
    UndeclaredColumn {
        file: Arc<str>,
        name: String,
        columns: String,
    },
}

impl CsvHeaderError {
    /// The declared field that is not a column, if that is the problem.
    pub fn declared_field(&self) -> Option<&str> {
        match self {
            CsvHeaderError::UndeclaredColumn { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// How one column's cells become values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CellType {
    Infer,
    Declared(weir_types::ValueKind),
}

/// The record shape and cell types a header gives, or why it cannot be used.
fn read_header(
    file: &Arc<str>,
    header: &csv::ByteRecord,
    options: &CsvOptions,
) -> Result<(Arc<weir_types::Shape>, Vec<CellType>), CsvHeaderError> {
    let mut names: Vec<&str> = Vec::with_capacity(header.len());
    for (i, raw) in header.iter().enumerate() {
        let name = std::str::from_utf8(raw).map_err(|_| CsvHeaderError::NotUtf8 {
            file: file.clone(),
            column: i + 1,
            raw: escape_invalid_utf8(raw),
        })?;
        if let Some(first) = names.iter().position(|n| *n == name) {
            return Err(CsvHeaderError::Duplicate {
                file: file.clone(),
                name: name.to_string(),
                first: first + 1,
                second: i + 1,
            });
        }
        names.push(name);
    }
    let default = if options.infer_types {
        CellType::Infer
    } else {
        CellType::Declared(weir_types::ValueKind::Str)
    };
    let mut types = vec![default; names.len()];
    for (name, kind) in &options.types {
        let Some(i) = names.iter().position(|n| n == name) else {
            return Err(CsvHeaderError::UndeclaredColumn {
                file: file.clone(),
                name: name.clone(),
                columns: names.join(", "),
            });
        };
        types[i] = CellType::Declared(*kind);
    }
    Ok((Arc::new(weir_types::Shape::new(names)), types))
}

/// Reads a CSV file's header and checks it as the CSV source will (UTF-8, no duplicate names,
/// every declared column present), so a bad header is refused before a run starts.
pub fn check_csv_header(path: &Path, options: &CsvOptions) -> Result<(), CsvHeaderError> {
    let file: Arc<str> = path.display().to_string().into();
    let unreadable = |reason: String| CsvHeaderError::Unreadable {
        file: file.clone(),
        reason,
    };
    let input = File::open(path).map_err(|e| unreadable(e.to_string()))?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let header = reader
        .byte_headers()
        .map_err(|e| unreadable(e.to_string()))?
        .clone();
    read_header(&file, &header, options).map(|_| ())
}

/// Keeps the bytes the CSV parser reads, so that a bad row's dead letter can carry its raw
/// text (the parser only hands out unquoted fields). Trimmed in large steps, not per row.
struct RecordingReader {
    inner: CsvInput,
    kept: Vec<u8>,
    /// Input offset of `kept[0]`.
    kept_from: u64,
}

/// Kept input beyond which the bytes before the current row are dropped.
const KEEP_LIMIT: usize = 1 << 16;

/// What a CSV source reads: a file, or standard input cut at row boundaries.
enum CsvInput {
    File(Box<dyn Read + Send>),
    Stdin(CsvRowPipe),
}

impl Read for CsvInput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            CsvInput::File(f) => f.read(buf),
            CsvInput::Stdin(pipe) => pipe.read(buf),
        }
    }
}

impl Read for RecordingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.kept.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl RecordingReader {
    /// The input between two offsets, if still kept.
    fn bytes(&self, from: u64, to: u64) -> &[u8] {
        let start = usize::try_from(from.saturating_sub(self.kept_from)).unwrap_or(usize::MAX);
        let end = usize::try_from(to.saturating_sub(self.kept_from)).unwrap_or(usize::MAX);
        self.kept
            .get(start.min(self.kept.len())..end.min(self.kept.len()))
            .unwrap_or(&[])
    }

    /// Forgets the input before `offset` once enough has piled up.
    fn release(&mut self, offset: u64) {
        if self.kept.len() > KEEP_LIMIT {
            let n = usize::try_from(offset.saturating_sub(self.kept_from))
                .unwrap_or(usize::MAX)
                .min(self.kept.len());
            self.kept.drain(..n);
            self.kept_from += n as u64;
        }
    }
}

/// Reads CSV with a header row. Cells of columns with a declared type are parsed as that
/// type; the others are typed by their text (integers, finite floats, `true`/`false`, empty
/// as null, anything else a string) or, without type inference, kept as strings.
pub struct CsvSource {
    path: PathBuf,
    label: Arc<str>,
    options: CsvOptions,
    reader: Option<csv::Reader<RecordingReader>>,
    shape: Arc<weir_types::Shape>,
    types: Vec<CellType>,
    record: csv::ByteRecord,
    /// Rows consumed (good or bad): a resumed run skips this many.
    rows: u64,
}

impl CsvSource {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_options(path, CsvOptions::default())
    }

    pub fn with_options(path: impl Into<PathBuf>, options: CsvOptions) -> Self {
        let path = path.into();
        CsvSource {
            label: path.display().to_string().into(),
            path,
            options,
            reader: None,
            shape: Arc::default(),
            types: Vec::new(),
            record: csv::ByteRecord::new(),
            rows: 0,
        }
    }

    /// The row just read as a record, or why it is not one.
    fn decode_row(&self) -> Result<Record, String> {
        // UTF-8 is checked before the field count, so that a row whose raw text had to be
        // escaped always says why.
        let columns_match = self.record.len() == self.shape.len();
        let mut values = Vec::with_capacity(if columns_match { self.shape.len() } else { 0 });
        for (i, cell) in self.record.iter().enumerate() {
            let name = self.shape.names().get(i).map_or("", |n| &**n);
            let text = std::str::from_utf8(cell).map_err(|e| {
                format!(
                    "column `{name}` (field {}): {}",
                    i + 1,
                    utf8_problem(cell, e).replace("at column", "at byte")
                )
            })?;
            if !columns_match {
                continue;
            }
            let value = match self.types[i] {
                CellType::Infer => infer_value(text),
                CellType::Declared(kind) => parse_cell(kind, text).map_err(|expected| {
                    format!("column `{name}`: expected {expected}, found `{text}`")
                })?,
            };
            values.push(value);
        }
        if !columns_match {
            return Err(format!(
                "expected {} fields (as in the header), found {}",
                self.shape.len(),
                self.record.len()
            ));
        }
        Record::with_shape(self.shape.clone(), values).map_err(|e| e.to_string())
    }
}

/// A bad CSV row's error and `raw`: the row's text itself, or escaped when it is not UTF-8 —
/// and then the error says so, also when the row failed for another reason (its cells may be
/// valid UTF-8 once unquoted while the row's bytes are not).
fn bad_row_text(error: String, bytes: &[u8]) -> (String, String) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (error, text.to_string()),
        Err(_) if error.contains("invalid UTF-8") => (error, escape_invalid_utf8(bytes)),
        Err(e) => (
            format!("{error}; the row has {}", utf8_problem(bytes, e)),
            escape_invalid_utf8(bytes),
        ),
    }
}

/// Whether `text` is an optionally signed run of ASCII digits.
fn is_integer_literal(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `text` starts like a number (a digit, or a sign or dot before one): keeps words
/// that Rust's float parser accepts (`inf`, `NaN`, `infinity`) strings.
fn starts_like_a_number(text: &str) -> bool {
    let rest = text.strip_prefix(['-', '+']).unwrap_or(text);
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    rest.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

/// A finite float written as a number, if `text` is one.
fn parse_finite_float(text: &str) -> Option<f64> {
    if !starts_like_a_number(text) {
        return None;
    }
    text.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// The value a CSV cell's text denotes, guessed: an integer that fits 64 bits, a finite
/// float, `true`/`false`, null for an empty cell, and otherwise the text as a string (so an
/// integer too wide for 64 bits, `inf` or `NaN` stay exactly as written).
pub fn infer_value(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else if let Ok(i) = text.parse::<i64>() {
        Value::Int(i)
    } else if is_integer_literal(text) {
        // Too wide for an i64: a float would round it.
        Value::from(text)
    } else if let Some(f) = parse_finite_float(text) {
        Value::Float(f)
    } else if text == "true" {
        Value::Bool(true)
    } else if text == "false" {
        Value::Bool(false)
    } else {
        Value::from(text)
    }
}

/// A cell of a column declared `kind`, or what was expected. Empty cells are null, except in
/// string columns, where they are the empty string.
fn parse_cell(kind: weir_types::ValueKind, text: &str) -> Result<Value, &'static str> {
    use weir_types::ValueKind as K;
    if text.is_empty() {
        return Ok(if kind == K::Str {
            Value::from("")
        } else {
            Value::Null
        });
    }
    match kind {
        K::Str => Ok(Value::from(text)),
        K::Int => text
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| "an integer (64-bit)"),
        K::Float => parse_finite_float(text)
            .map(Value::Float)
            .ok_or("a finite number"),
        K::Bool => {
            if text.eq_ignore_ascii_case("true") {
                Ok(Value::Bool(true))
            } else if text.eq_ignore_ascii_case("false") {
                Ok(Value::Bool(false))
            } else {
                Err("true or false")
            }
        }
        K::Timestamp => weir_types::parse_datetime(text)
            .map(Value::Timestamp)
            .ok_or("a datetime (RFC 3339, `YYYY-MM-DD hh:mm:ss` or `YYYY-MM-DD`)"),
        K::Json => weir_types::parse_json_value(text).map_err(|_| "a JSON value"),
        K::Null => Ok(Value::Null),
    }
}

impl Source<ReadResult> for CsvSource {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        if ctx.instance() != 0 {
            return Ok(());
        }
        let inner = if self.path == Path::new("-") {
            CsvInput::Stdin(
                CsvRowPipe::spawn()
                    .map_err(|e| OperatorError::io("cannot read standard input", e))?,
            )
        } else {
            CsvInput::File(open_input(&self.path)?)
        };
        let input = RecordingReader {
            inner,
            kept: Vec::new(),
            kept_from: 0,
        };
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
        let header = reader.byte_headers().map_err(|e| {
            if e.is_io_error() {
                OperatorError::io(format!("reading {}", self.label), e)
            } else {
                OperatorError::new(
                    ErrorKind::Data,
                    format!("{}:1: cannot read the CSV header: {e}", self.label),
                )
            }
        })?;
        let (shape, types) = read_header(&self.label, header, &self.options)
            .map_err(|e| OperatorError::new(ErrorKind::Data, e.to_string()))?;
        self.shape = shape;
        self.types = types;
        if let Some(rows) = weir_core::state::restore_value::<u64>(ctx, "rows")? {
            // CSV rows may span lines: re-read and skip the rows the checkpoint covers.
            let mut skip = csv::ByteRecord::new();
            for _ in 0..rows {
                match reader.read_byte_record(&mut skip) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => return Err(OperatorError::io(format!("reading {}", self.label), e)),
                }
                let end = reader.position().byte();
                reader.get_mut().release(end);
            }
            self.rows = rows;
        }
        self.reader = Some(reader);
        Ok(())
    }

    fn snapshot(
        &mut self,
        _: CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        weir_core::state::save_value(ctx, "rows", &self.rows)
    }

    fn poll(
        &mut self,
        out: &mut Vec<ReadResult>,
        max: usize,
        ctx: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError> {
        let Some(mut reader) = self.reader.take() else {
            return Ok(SourceStatus::Finished);
        };
        let status = self.poll_rows(&mut reader, out, max, ctx.batch_timeout());
        self.reader = Some(reader);
        status
    }
}

impl CsvSource {
    fn poll_rows(
        &mut self,
        reader: &mut csv::Reader<RecordingReader>,
        out: &mut Vec<ReadResult>,
        max: usize,
        batch_timeout: std::time::Duration,
    ) -> Result<SourceStatus, OperatorError> {
        let started = std::time::Instant::now();
        while out.len() < max {
            // Standard input: wait for the next row at most until the batch times out (and
            // briefly when empty-handed), then return what there is.
            if matches!(reader.get_ref().inner, CsvInput::Stdin(_)) {
                let at = reader.position().byte();
                let recorder = reader.get_ref();
                let read = recorder.kept_from + recorder.kept.len() as u64;
                let parsed_all = recorder
                    .bytes(at, read)
                    .iter()
                    .all(|b| matches!(b, b'\n' | b'\r'));
                if parsed_all {
                    let wait = if out.is_empty() {
                        batch_timeout.clamp(QUIET_POLL_MIN, QUIET_POLL_MAX)
                    } else {
                        batch_timeout.saturating_sub(started.elapsed())
                    };
                    if let CsvInput::Stdin(pipe) = &mut reader.get_mut().inner
                        && !pipe.wait_row(wait)
                    {
                        return Ok(if out.is_empty() {
                            SourceStatus::Idle
                        } else {
                            SourceStatus::Ready
                        });
                    }
                }
            }
            // With a flexible reader and byte records, only I/O can fail.
            let more = reader
                .read_byte_record(&mut self.record)
                .map_err(|e| OperatorError::io(format!("reading {}", self.label), e))?;
            if !more {
                return Ok(SourceStatus::Finished);
            }
            self.rows += 1;
            let end = reader.position().byte();
            match self.decode_row() {
                Ok(record) => out.push(Ok(record)),
                Err(error) => {
                    let start = self.record.position().map_or(end, |p| p.byte());
                    let mut line = self.record.position().map_or(0, |p| p.line());
                    let mut raw = reader.get_ref().bytes(start, end);
                    // The span starts after the previous row: skip the blank lines before this one.
                    while let [first @ (b'\n' | b'\r'), rest @ ..] = raw {
                        line += u64::from(*first == b'\n');
                        raw = rest;
                    }
                    while let [rest @ .., b'\n' | b'\r'] = raw {
                        raw = rest;
                    }
                    let (error, raw) = bad_row_text(error, raw);
                    out.push(Err(BadRecord {
                        source: self.label.clone(),
                        line,
                        error,
                        raw,
                    }));
                }
            }
            reader.get_mut().release(end);
        }
        Ok(SourceStatus::Ready)
    }
}

/// Writes each record as one line of JSON to a file (or `-` for standard output).
///
/// Delivery: without checkpoints, lines are flushed at every tick and at the end
/// (at-least-once across crashes). With checkpoints the sink is exactly-once, by two-phase
/// commit: records go to a pending file; at a barrier the pending file is renamed to a staged
/// file for that checkpoint (pre-commit); when the checkpoint completes, staged files are
/// appended to the output in order (commit). Readers of the output never see records of a
/// checkpoint that did not complete. After a crash, the restored checkpoint says how long the
/// output was and which staged files were not yet appended: the output is cut back to that
/// length and the staged files appended again, so nothing is lost or doubled.
pub struct JsonLinesSink {
    path: PathBuf,
    writer: Option<BufWriter<Box<dyn Write + Send>>>,
    line: Vec<u8>,
    /// Exactly-once mode: staged files not yet appended, oldest first.
    transaction: Option<Transaction>,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Transaction {
    /// Staged checkpoints not yet committed, with their sizes.
    staged: Vec<(CheckpointId, u64)>,
}

/// What the sink stores in a checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
struct SinkState {
    /// Length of the output when the checkpoint was taken.
    output_len: u64,
    staged: Vec<(CheckpointId, u64)>,
}

fn io(context: &str, path: &Path, e: std::io::Error) -> OperatorError {
    OperatorError::io(format!("{context} {}", path.display()), e)
}

impl JsonLinesSink {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonLinesSink {
            path: path.into(),
            writer: None,
            line: Vec::new(),
            transaction: None,
        }
    }

    fn flush(&mut self) -> Result<(), OperatorError> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()
                .map_err(|e| OperatorError::io(format!("writing {}", self.path.display()), e))?;
        }
        Ok(())
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        self.path.with_file_name(name)
    }

    fn pending_path(&self) -> PathBuf {
        self.sibling(".weir-pending")
    }

    fn staged_path(&self, checkpoint: CheckpointId) -> PathBuf {
        self.sibling(&format!(".weir-staged-{checkpoint}"))
    }

    fn create_pending(&mut self) -> Result<(), OperatorError> {
        let path = self.pending_path();
        let file = File::create(&path).map_err(|e| io("cannot create", &path, e))?;
        self.writer = Some(BufWriter::with_capacity(1 << 16, Box::new(file)));
        Ok(())
    }

    /// Appends a staged file to the output, durably, then removes it.
    fn append_staged(&self, checkpoint: CheckpointId) -> Result<(), OperatorError> {
        let staged = self.staged_path(checkpoint);
        let mut from = File::open(&staged).map_err(|e| io("cannot open", &staged, e))?;
        let mut to = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| io("cannot open", &self.path, e))?;
        std::io::copy(&mut from, &mut to).map_err(|e| io("appending to", &self.path, e))?;
        to.sync_all().map_err(|e| io("syncing", &self.path, e))?;
        std::fs::remove_file(&staged).map_err(|e| io("cannot remove", &staged, e))
    }

    /// Brings the output back to what the restored checkpoint committed (or will commit).
    fn recover(&mut self, state: Option<SinkState>) -> Result<(), OperatorError> {
        let kept: Vec<CheckpointId> = match state {
            None => {
                // A fresh start: a new, empty output.
                File::create(&self.path).map_err(|e| io("cannot create", &self.path, e))?;
                Vec::new()
            }
            Some(state) => {
                // Staged files are appended in order and removed after: those still present
                // were not (fully) appended when the process stopped.
                let first_present = state
                    .staged
                    .iter()
                    .position(|(id, _)| self.staged_path(*id).exists())
                    .unwrap_or(state.staged.len());
                let committed: u64 = state.staged[..first_present].iter().map(|(_, n)| n).sum();
                let expected = state.output_len + committed;
                let found = std::fs::metadata(&self.path).map_or(0, |m| m.len());
                if found < expected {
                    // Cut by hand or replaced by an older copy: the checkpoint does not hold
                    // the missing bytes, and padding would write bytes no record produced.
                    return Err(OperatorError::new(
                        ErrorKind::Config,
                        format!(
                            "{} has {found} bytes but the checkpoint it resumes from committed \
                             {expected}: the output was shortened or replaced since; restore \
                             it, or start over with --ignore-state",
                            self.path.display()
                        ),
                    ));
                }
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&self.path)
                    .map_err(|e| io("cannot open", &self.path, e))?;
                file.set_len(expected)
                    .map_err(|e| io("cannot truncate", &self.path, e))?;
                file.sync_all().map_err(|e| io("syncing", &self.path, e))?;
                let rest = &state.staged[first_present..];
                self.transaction = Some(Transaction {
                    staged: rest.to_vec(),
                });
                rest.iter().map(|(id, _)| *id).collect()
            }
        };
        // Leftovers of checkpoints that never completed.
        let prefix = self.sibling(".weir-staged-");
        let prefix = prefix
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if let Some(dir) = self.path.parent().map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        }) && let Ok(entries) = std::fs::read_dir(dir)
        {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let stray = name
                    .strip_prefix(&prefix)
                    .and_then(|id| id.parse::<CheckpointId>().ok())
                    .is_some_and(|id| !kept.contains(&id));
                if stray {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }
}

impl<T: Serialize + Send + 'static> Sink<T> for JsonLinesSink {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        if self.path == Path::new("-") {
            self.writer = Some(BufWriter::with_capacity(
                1 << 16,
                Box::new(std::io::stdout()),
            ));
            return Ok(());
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        }
        if ctx.checkpointing() {
            self.transaction = Some(Transaction::default());
            let state = weir_core::state::restore_value::<SinkState>(ctx, "transaction")?;
            self.recover(state)?;
            // Commit what the restored checkpoint staged: it completed.
            let staged: Vec<_> = self
                .transaction
                .as_ref()
                .map(|t| t.staged.iter().map(|(id, _)| *id).collect())
                .unwrap_or_default();
            for id in staged {
                self.append_staged(id)?;
            }
            if let Some(t) = self.transaction.as_mut() {
                t.staged.clear();
            }
            return self.create_pending();
        }
        let file = File::create(&self.path).map_err(|e| io("cannot create", &self.path, e))?;
        self.writer = Some(BufWriter::with_capacity(1 << 16, Box::new(file)));
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
        if self.transaction.is_some() {
            // Pending data only becomes visible through a commit.
            return Ok(());
        }
        self.flush()
    }

    fn flush(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        // The input went quiet: the same as a tick.
        Sink::<T>::on_tick(self, ctx)
    }

    fn snapshot(
        &mut self,
        checkpoint: CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        if self.transaction.is_none() {
            return Ok(());
        }
        // Pre-commit: the pending file becomes this checkpoint's staged file.
        let writer = self.writer.take();
        let mut size = 0;
        if let Some(w) = writer {
            let mut file = w.into_inner().map_err(|e| {
                OperatorError::io(format!("writing {}", self.path.display()), e.error())
            })?;
            file.flush().map_err(|e| io("writing", &self.path, e))?;
            drop(file);
            let pending = self.pending_path();
            let staged = self.staged_path(checkpoint);
            let f = File::open(&pending).map_err(|e| io("cannot open", &pending, e))?;
            f.sync_all().map_err(|e| io("syncing", &pending, e))?;
            size = f.metadata().map_err(|e| io("reading", &pending, e))?.len();
            std::fs::rename(&pending, &staged).map_err(|e| io("cannot rename", &pending, e))?;
        }
        let output_len = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let transaction = self.transaction.get_or_insert_with(Transaction::default);
        transaction.staged.push((checkpoint, size));
        let state = SinkState {
            output_len,
            staged: transaction.staged.clone(),
        };
        weir_core::state::save_value(ctx, "transaction", &state)?;
        self.create_pending()
    }

    fn commit(
        &mut self,
        checkpoint: CheckpointId,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let Some(transaction) = self.transaction.as_mut() else {
            return Ok(());
        };
        let ready: Vec<_> = transaction
            .staged
            .iter()
            .take_while(|(id, _)| *id <= checkpoint)
            .map(|(id, _)| *id)
            .collect();
        transaction.staged.drain(..ready.len());
        for id in ready {
            self.append_staged(id)?;
        }
        Ok(())
    }

    fn close(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        if self.transaction.is_some() {
            // Everything was committed by the final checkpoint; the empty pending file goes.
            self.writer = None;
            let _ = std::fs::remove_file(self.pending_path());
            return Ok(());
        }
        self.flush()
    }
}
