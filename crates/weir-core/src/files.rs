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

/// Opens a line source's input: standard input is read by a thread, so that a batch can be
/// returned when the input goes quiet (see `crate::pipe`).
fn open_lines(path: &Path) -> Result<crate::pipe::Input, OperatorError> {
    if path == Path::new("-") {
        return crate::pipe::StdinPipe::spawn()
            .map(crate::pipe::Input::Stdin)
            .map_err(|e| OperatorError::io("cannot read standard input", e));
    }
    File::open(path)
        .map(crate::pipe::Input::File)
        .map_err(|e| OperatorError::io(format!("cannot open {}", path.display()), e))
}

/// Reads one JSON object per line. Blank lines are skipped. A partial batch is returned when
/// the input has had nothing more for the job's batch timeout.
pub struct JsonLinesSource {
    path: PathBuf,
    label: Arc<str>,
    reader: Option<BufReader<crate::pipe::Input>>,
    line: u64,
    /// Bytes consumed so far: where a restart resumes.
    offset: u64,
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
            offset: 0,
            buf: String::new(),
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
        if let Some(pos) = crate::state::restore_value::<ReadPosition>(ctx, "position")? {
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
            input = crate::pipe::Input::File(file);
            self.offset = pos.offset;
            self.line = pos.line;
        }
        self.reader = Some(BufReader::with_capacity(1 << 16, input));
        Ok(())
    }

    fn snapshot(
        &mut self,
        _: crate::CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let position = ReadPosition {
            offset: self.offset,
            line: self.line,
        };
        crate::state::save_value(ctx, "position", &position)
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
                .read_line(&mut self.buf)
                .map_err(|e| OperatorError::io(format!("reading {}", self.label), e))?;
            if n == 0 {
                return Ok(SourceStatus::Finished);
            }
            self.offset += n as u64;
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
    /// Rows consumed (good or bad): a resumed run skips this many.
    rows: u64,
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
            rows: 0,
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
        if let Some(rows) = crate::state::restore_value::<u64>(ctx, "rows")? {
            // CSV rows may span lines: re-read and skip the rows the checkpoint covers.
            let mut skip = csv::StringRecord::new();
            for _ in 0..rows {
                match reader.read_record(&mut skip) {
                    Ok(true) | Err(_) => {}
                    Ok(false) => break,
                }
            }
            self.rows = rows;
        }
        self.reader = Some(reader);
        Ok(())
    }

    fn snapshot(
        &mut self,
        _: crate::CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        crate::state::save_value(ctx, "rows", &self.rows)
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
            let read = reader.read_record(&mut self.record);
            if !matches!(read, Ok(false)) {
                self.rows += 1;
            }
            match read {
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
    staged: Vec<(crate::CheckpointId, u64)>,
}

/// What the sink stores in a checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
struct SinkState {
    /// Length of the output when the checkpoint was taken.
    output_len: u64,
    staged: Vec<(crate::CheckpointId, u64)>,
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

    fn staged_path(&self, checkpoint: crate::CheckpointId) -> PathBuf {
        self.sibling(&format!(".weir-staged-{checkpoint}"))
    }

    fn create_pending(&mut self) -> Result<(), OperatorError> {
        let path = self.pending_path();
        let file = File::create(&path).map_err(|e| io("cannot create", &path, e))?;
        self.writer = Some(BufWriter::with_capacity(1 << 16, Box::new(file)));
        Ok(())
    }

    /// Appends a staged file to the output, durably, then removes it.
    fn append_staged(&self, checkpoint: crate::CheckpointId) -> Result<(), OperatorError> {
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
        let kept: Vec<crate::CheckpointId> = match state {
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
                    .and_then(|id| id.parse::<crate::CheckpointId>().ok())
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
            let state = crate::state::restore_value::<SinkState>(ctx, "transaction")?;
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
        checkpoint: crate::CheckpointId,
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
        crate::state::save_value(ctx, "transaction", &state)?;
        self.create_pending()
    }

    fn commit(
        &mut self,
        checkpoint: crate::CheckpointId,
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
