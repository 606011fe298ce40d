//! Files of JSON lines read by offset, for the long-running cases: a file followed as it grows
//! (across rotation and truncation, as `tail -F`), every file of a directory or glob (each read
//! once, with per-file offsets in checkpoints, spread over the parallel instances), and one
//! large file split by byte ranges across instances.
//!
//! Offsets count complete lines only: a followed file's last line without its newline yet is
//! held back until the newline arrives, and a checkpoint resumes at the start of that line.

use super::records::{BadRecord, ReadResult, escape_invalid_utf8};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_core::{CheckpointId, ErrorKind, OperatorContext, OperatorError, Source, SourceStatus};
use weir_types::RecordDecoder;

/// Which files a file source reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileSelection {
    /// One file.
    File(PathBuf),
    /// Every file directly in a directory (not in its subdirectories; hidden files skipped).
    Directory(PathBuf),
    /// The files directly in `dir` whose names match `pattern` (`*`: any run of characters,
    /// `?`: one character; hidden files only if the pattern starts with `.`).
    Glob { dir: PathBuf, pattern: String },
}

/// Why a path cannot select files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error(
        "`{0}`: wildcards (`*`, `?`) are allowed in the file name only, not in directory names"
    )]
    WildcardInDirectory(String),
    #[error("`{0}`: no such file or directory")]
    Missing(String),
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

impl FileSelection {
    /// What a source's `path` selects: a glob if its file name has a wildcard, a directory if
    /// it is one, else a file (which must exist unless `may_be_missing`, as for a followed
    /// file that its writer has not created yet).
    pub fn from_path(path: &Path, may_be_missing: bool) -> Result<FileSelection, SelectionError> {
        let text = path.to_string_lossy();
        let name = path.file_name().map(|n| n.to_string_lossy().to_string());
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if has_wildcard(&dir.to_string_lossy()) {
            return Err(SelectionError::WildcardInDirectory(text.to_string()));
        }
        match name {
            Some(name) if has_wildcard(&name) => Ok(FileSelection::Glob {
                dir: if dir.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    dir
                },
                pattern: name,
            }),
            _ if path.is_dir() => Ok(FileSelection::Directory(path.to_path_buf())),
            _ if path.is_file() || may_be_missing => Ok(FileSelection::File(path.to_path_buf())),
            _ => Err(SelectionError::Missing(text.to_string())),
        }
    }

    /// Whether more than one file may be selected.
    pub fn is_many(&self) -> bool {
        !matches!(self, FileSelection::File(_))
    }

    /// The files selected now, by checkpoint name (the file name, or the whole path for a
    /// single file), sorted by name.
    fn list(&self) -> std::io::Result<Vec<(String, PathBuf)>> {
        let (dir, pattern) = match self {
            FileSelection::File(path) => {
                return Ok(vec![(path.to_string_lossy().to_string(), path.clone())]);
            }
            FileSelection::Directory(dir) => (dir, None),
            FileSelection::Glob { dir, pattern } => (dir, Some(pattern.as_str())),
        };
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            let selected = match pattern {
                Some(p) => wildcard_match(p.as_bytes(), name.as_bytes()),
                None => !name.starts_with('.'),
            };
            // Files only (following symbolic links); the sink's own staging files never match
            // a pattern ending in the data's extension.
            if selected && entry.path().is_file() {
                found.push((name, entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }
}

/// `*` and `?` matching of a whole name; a leading `.` is matched only by a literal `.`.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pattern.first() != Some(&b'.') {
        return false;
    }
    // Iterative matching with backtracking to the last `*`.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// The instance of `parallelism` that reads the file of this checkpoint name: a hash of the
/// name, so the assignment does not depend on which other files exist, nor on when a file
/// appeared, and survives a restart at the same parallelism.
pub fn file_owner(name: &str, parallelism: usize) -> usize {
    // FNV-1a: fixed for ever (std's hasher may change between releases).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % parallelism.max(1) as u64) as usize
}

/// How a [`FileSource`] reads.
#[derive(Clone, Debug)]
pub struct FileSourceConfig {
    pub selection: FileSelection,
    /// Keep reading as files grow (and, for a directory or glob, as files are added); the
    /// source then never ends by itself.
    pub follow: bool,
    /// Stop (not drain) after this long without a new line (useful with `follow`).
    pub stop_after_idle: Option<Duration>,
    /// Split a single file (not followed) by byte ranges across the parallel instances.
    pub split: bool,
    /// How often a followed directory or glob is listed again for new files.
    pub rescan_every: Duration,
}

impl FileSourceConfig {
    pub fn new(selection: FileSelection) -> Self {
        FileSourceConfig {
            selection,
            follow: false,
            stop_after_idle: None,
            split: false,
            rescan_every: Duration::from_millis(200),
        }
    }

    /// How many instances may read: one for a followed or unsplit single file.
    pub fn max_parallelism(&self) -> Option<usize> {
        match &self.selection {
            FileSelection::File(_) if self.follow || !self.split => Some(1),
            _ => None,
        }
    }
}

/// One file being read.
struct Tracked {
    /// Checkpoint name.
    name: String,
    path: PathBuf,
    label: Arc<str>,
    reader: Option<BufReader<File>>,
    /// Device and inode of the open file: a different one at the path means rotation.
    identity: Option<(u64, u64)>,
    /// Bytes of complete lines consumed.
    offset: u64,
    line: u64,
    /// Split end: a line starting at or after it belongs to the next instance.
    end: Option<u64>,
    /// The line read so far (a partial last line waits here for its newline when following).
    pending: Vec<u8>,
    finished: bool,
}

/// What a file source stores per instance in a checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    parallelism: usize,
    files: Vec<SavedFile>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedFile {
    name: String,
    offset: u64,
    line: u64,
    #[serde(default)]
    end: Option<u64>,
    #[serde(default)]
    identity: Option<(u64, u64)>,
}

#[cfg(unix)]
fn identity(m: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
/// How long an empty-handed poll of a followed file waits at least and at most.
const QUIET_MIN: Duration = Duration::from_millis(1);
const QUIET_MAX: Duration = Duration::from_millis(20);

/// Reads JSON lines from one file, a followed file, or every file of a directory or glob.
/// Undecodable lines are [`BadRecord`]s naming the file and line.
pub struct FileSource {
    config: FileSourceConfig,
    files: Vec<Tracked>,
    /// Where the next poll starts in `files` (round robin over followed files).
    cursor: usize,
    decoder: RecordDecoder,
    instance: usize,
    parallelism: usize,
    last_data: Instant,
    last_scan: Instant,
}

/// A read problem, naming the file.
fn io_error(what: &str, path: &Path, e: std::io::Error) -> OperatorError {
    OperatorError::io(format!("{what} {}", path.display()), e)
}

impl FileSource {
    pub fn new(config: FileSourceConfig) -> Self {
        FileSource {
            config,
            files: Vec::new(),
            cursor: 0,
            decoder: RecordDecoder::default(),
            instance: 0,
            parallelism: 1,
            last_data: Instant::now(),
            last_scan: Instant::now(),
        }
    }

    fn track(&self, name: String, path: PathBuf) -> Tracked {
        Tracked {
            label: path.display().to_string().into(),
            name,
            path,
            reader: None,
            identity: None,
            offset: 0,
            line: 0,
            end: None,
            pending: Vec::new(),
            finished: false,
        }
    }

    /// Adds the selected files this instance owns and does not track yet.
    fn discover(&mut self) -> Result<(), OperatorError> {
        let listed = match self.config.selection.list() {
            Ok(listed) => listed,
            // A followed directory may come and go; a run without follow needs it.
            Err(_) if self.config.follow => return Ok(()),
            Err(e) => {
                let at = match &self.config.selection {
                    FileSelection::File(p) | FileSelection::Directory(p) => p.clone(),
                    FileSelection::Glob { dir, .. } => dir.clone(),
                };
                return Err(io_error("cannot list", &at, e));
            }
        };
        for (name, path) in listed {
            let mine = match self.config.selection {
                FileSelection::File(_) => self.config.split || self.instance == 0,
                _ => file_owner(&name, self.parallelism) == self.instance,
            };
            if mine && !self.files.iter().any(|f| f.name == name) {
                let tracked = self.track(name, path);
                self.files.push(tracked);
            }
        }
        self.last_scan = Instant::now();
        Ok(())
    }

    /// A fresh split: this instance's byte range of the single file, starting at the first
    /// line that starts at or after its share's start.
    fn place_split(&self, file: &mut Tracked) -> Result<(), OperatorError> {
        let len = std::fs::metadata(&file.path)
            .map_err(|e| io_error("cannot read", &file.path, e))?
            .len();
        let (i, p) = (self.instance as u128, self.parallelism as u128);
        let start = (i * u128::from(len) / p) as u64;
        file.end =
            (self.instance + 1 < self.parallelism).then(|| ((i + 1) * u128::from(len) / p) as u64);
        if start == 0 {
            return Ok(());
        }
        // Count the lines before the start (for line numbers), then skip to the next line.
        let f = File::open(&file.path).map_err(|e| io_error("cannot open", &file.path, e))?;
        let mut reader = BufReader::with_capacity(1 << 16, f);
        let mut lines = 0u64;
        let mut left = start - 1;
        while left > 0 {
            let chunk = reader
                .fill_buf()
                .map_err(|e| io_error("reading", &file.path, e))?;
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len().min(left as usize);
            lines += chunk[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            reader.consume(n);
            left -= n as u64;
        }
        let mut rest = Vec::new();
        let n = reader
            .read_until(b'\n', &mut rest)
            .map_err(|e| io_error("reading", &file.path, e))?;
        file.offset = start - 1 + n as u64;
        file.line = lines + u64::from(rest.ends_with(b"\n"));
        Ok(())
    }
}

/// Reads the lines of one file at a time.
struct Lines<'a> {
    follow: bool,
    decoder: &'a mut RecordDecoder,
}

impl Lines<'_> {
    /// Opens a tracked file at its offset (`false`: it does not exist yet, when following).
    fn open_file(&mut self, file: &mut Tracked) -> Result<bool, OperatorError> {
        let mut f = match File::open(&file.path) {
            Ok(f) => f,
            Err(e) if self.follow && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(false);
            }
            Err(e) => return Err(io_error("cannot open", &file.path, e)),
        };
        let meta = f
            .metadata()
            .map_err(|e| io_error("cannot read", &file.path, e))?;
        let now = identity(&meta);
        let replaced = file.identity.is_some() && now.is_some() && file.identity != now;
        if replaced || meta.len() < file.offset {
            // Rotated or truncated while the job was stopped: the new content starts over.
            tracing::warn!(file = %file.label, offset = file.offset, size = meta.len(),
                "the file was replaced or truncated since the checkpoint; reading it from the start");
            file.offset = 0;
            file.line = 0;
        }
        f.seek(SeekFrom::Start(file.offset))
            .map_err(|e| io_error("seeking in", &file.path, e))?;
        file.identity = now;
        file.pending.clear();
        file.reader = Some(BufReader::with_capacity(1 << 16, f));
        Ok(true)
    }

    /// After end of file when following: whether the file was rotated (a new file at the
    /// path) or truncated; if so, reading goes on in the new content.
    fn rotated(
        &mut self,
        file: &mut Tracked,
        out: &mut Vec<ReadResult>,
    ) -> Result<bool, OperatorError> {
        let Ok(meta) = std::fs::metadata(&file.path) else {
            // Moved away and not yet recreated: keep waiting.
            return Ok(false);
        };
        let now = identity(&meta);
        if now.is_some() && now != file.identity {
            // Lines the writer added to the old file before switching still come first.
            if let Some(reader) = file.reader.as_mut()
                && !reader
                    .fill_buf()
                    .map_err(|e| io_error("reading", &file.path, e))?
                    .is_empty()
            {
                return Ok(true);
            }
            if !file.pending.is_empty() {
                // The old file's last line never got its newline: it is complete now.
                self.emit(file, out);
            }
            tracing::info!(file = %file.label, "the file was rotated; reading the new one");
            file.offset = 0;
            file.line = 0;
            file.identity = None;
            return self.open_file(file);
        }
        if meta.len() < file.offset + file.pending.len() as u64 {
            tracing::warn!(file = %file.label, "the file was truncated; reading it from the start");
            file.offset = 0;
            file.line = 0;
            return self.open_file(file);
        }
        Ok(false)
    }

    /// Decodes the pending line (a complete one) and moves the offset past it.
    fn emit(&mut self, file: &mut Tracked, out: &mut Vec<ReadResult>) {
        let at_start = file.offset == 0;
        file.offset += file.pending.len() as u64;
        file.line += 1;
        let mut bytes = file.pending.as_slice();
        while let [rest @ .., b'\n' | b'\r'] = bytes {
            bytes = rest;
        }
        if at_start {
            bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
        }
        match std::str::from_utf8(bytes) {
            Err(e) => {
                let at = e.valid_up_to();
                out.push(Err(BadRecord {
                    source: file.label.clone(),
                    line: file.line,
                    error: format!(
                        "invalid UTF-8 at column {} (byte 0x{:02x}); the raw bytes are escaped as \\xNN",
                        at + 1,
                        bytes.get(at).copied().unwrap_or(0)
                    ),
                    raw: escape_invalid_utf8(bytes),
                }));
            }
            Ok(text) if text.trim().is_empty() => {}
            Ok(text) => out.push(self.decoder.decode(text).map_err(|e| BadRecord {
                source: file.label.clone(),
                line: file.line,
                error: e.to_string(),
                raw: text.to_string(),
            })),
        }
        file.pending.clear();
    }

    /// Reads lines of one file into `out`; `true` when `out` is full.
    fn read_file(
        &mut self,
        file: &mut Tracked,
        out: &mut Vec<ReadResult>,
        max: usize,
    ) -> Result<bool, OperatorError> {
        if file.reader.is_none() && !self.open_file(file)? {
            return Ok(false);
        }
        while out.len() < max {
            if file.pending.is_empty() && file.end.is_some_and(|end| file.offset >= end) {
                file.finished = true;
                file.reader = None;
                return Ok(false);
            }
            let Some(reader) = file.reader.as_mut() else {
                return Ok(false);
            };
            let n = reader
                .read_until(b'\n', &mut file.pending)
                .map_err(|e| io_error("reading", &file.path, e))?;
            if n > 0 && file.pending.ends_with(b"\n") {
                self.emit(file, out);
                continue;
            }
            if n > 0 {
                // A last line without its newline: complete at the end of a file read once,
                // still being written when following.
                continue;
            }
            // End of the file for now.
            if self.follow {
                if self.rotated(file, out)? {
                    continue;
                }
                return Ok(false);
            }
            if !file.pending.is_empty() {
                self.emit(file, out);
            }
            file.finished = true;
            file.reader = None;
            return Ok(false);
        }
        Ok(true)
    }
}

impl Source<ReadResult> for FileSource {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        self.instance = ctx.instance();
        self.parallelism = ctx.parallelism();
        let saved = weir_core::state::restore_value::<Saved>(ctx, "files")?;
        let per_instance = self.config.selection.is_many() || self.config.split;
        if let Some(saved) = &saved
            && per_instance
            && saved.parallelism != self.parallelism
        {
            return Err(OperatorError::new(
                ErrorKind::Config,
                format!(
                    "the checkpoint was taken at parallelism {} and this run has parallelism {}: \
                     a file source's offsets are kept per instance (files and byte ranges are \
                     assigned by parallelism), so resume at parallelism {}, or start over with \
                     --ignore-state",
                    saved.parallelism, self.parallelism, saved.parallelism
                ),
            ));
        }
        self.discover()?;
        let restored = saved.map(|s| s.files).unwrap_or_default();
        let fresh_split = self.config.split && restored.is_empty();
        for saved in restored {
            let at = match self.files.iter().position(|f| f.name == saved.name) {
                Some(at) => at,
                None => {
                    // Gone since (or not listed now): tracked, so it is read if it comes back.
                    let path = match &self.config.selection {
                        FileSelection::File(p) => p.clone(),
                        FileSelection::Directory(d) | FileSelection::Glob { dir: d, .. } => {
                            d.join(&saved.name)
                        }
                    };
                    let tracked = self.track(saved.name.clone(), path);
                    self.files.push(tracked);
                    self.files.len() - 1
                }
            };
            let file = &mut self.files[at];
            file.offset = saved.offset;
            file.line = saved.line;
            file.end = saved.end;
            file.identity = saved.identity;
        }
        if fresh_split && let Some(mut file) = self.files.pop() {
            self.place_split(&mut file)?;
            self.files.push(file);
        }
        self.files.sort_by(|a, b| a.name.cmp(&b.name));
        self.last_data = Instant::now();
        Ok(())
    }

    fn snapshot(
        &mut self,
        _: CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let saved = Saved {
            parallelism: self.parallelism,
            files: self
                .files
                .iter()
                .map(|f| SavedFile {
                    name: f.name.clone(),
                    offset: f.offset,
                    line: f.line,
                    end: f.end,
                    identity: f.identity,
                })
                .collect(),
        };
        weir_core::state::save_value(ctx, "files", &saved)
    }

    fn poll(
        &mut self,
        out: &mut Vec<ReadResult>,
        max: usize,
        ctx: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError> {
        let before = out.len();
        // Up to `max` more records.
        let max = before + max;
        let n = self.files.len();
        for step in 0..n {
            let at = (self.cursor + step) % n;
            let file = &mut self.files[at];
            let mut lines = Lines {
                follow: self.config.follow,
                decoder: &mut self.decoder,
            };
            if !file.finished && lines.read_file(file, out, max)? {
                self.cursor = at;
                self.last_data = Instant::now();
                return Ok(SourceStatus::Ready);
            }
        }
        self.cursor = 0;
        if !self.config.follow {
            // Every file was read to its end.
            return Ok(if out.len() > before {
                SourceStatus::Ready
            } else {
                SourceStatus::Finished
            });
        }
        if out.len() > before {
            self.last_data = Instant::now();
            return Ok(SourceStatus::Ready);
        }
        if self.config.selection.is_many() && self.last_scan.elapsed() >= self.config.rescan_every {
            self.discover()?;
        }
        if let Some(limit) = self.config.stop_after_idle
            && self.last_data.elapsed() >= limit
        {
            return Ok(SourceStatus::Stopped);
        }
        std::thread::sleep(ctx.batch_timeout().clamp(QUIET_MIN, QUIET_MAX));
        Ok(SourceStatus::Idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_whole_names() {
        assert!(wildcard_match(b"*.jsonl", b"a.jsonl"));
        assert!(wildcard_match(b"app-?.log", b"app-1.log"));
        assert!(!wildcard_match(b"app-?.log", b"app-12.log"));
        assert!(wildcard_match(b"*a*b", b"xaxxb"));
        assert!(!wildcard_match(b"*.jsonl", b"a.jsonl.weir-pending"));
        assert!(!wildcard_match(b"*.jsonl", b".hidden.jsonl"));
        assert!(wildcard_match(b".*.jsonl", b".hidden.jsonl"));
        assert!(wildcard_match(b"*", b"x"));
    }

    #[test]
    fn file_owners_are_fixed_and_spread() {
        let names: Vec<String> = (0..64).map(|i| format!("part-{i}.jsonl")).collect();
        let owners: Vec<usize> = names.iter().map(|n| file_owner(n, 4)).collect();
        assert_eq!(
            owners,
            names.iter().map(|n| file_owner(n, 4)).collect::<Vec<_>>()
        );
        for i in 0..4 {
            assert!(owners.contains(&i), "instance {i} owns no file of 64");
        }
        assert!(names.iter().all(|n| file_owner(n, 1) == 0));
    }

    fn context(instance: usize, parallelism: usize) -> OperatorContext {
        OperatorContext::detached_instance("file", instance, parallelism)
    }

    /// Polls until the source finishes (or, when following, has nothing more).
    fn drain(source: &mut FileSource, ctx: &mut OperatorContext) -> Vec<ReadResult> {
        let mut out = Vec::new();
        loop {
            match source.poll(&mut out, 7, ctx).unwrap() {
                SourceStatus::Ready => {}
                _ => return out,
            }
        }
    }

    fn ids(read: &[ReadResult]) -> Vec<i64> {
        read.iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|r| match r.get("id") {
                Some(weir_types::Value::Int(i)) => *i,
                other => panic!("no id: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn byte_range_splits_read_every_line_once_with_its_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let mut text = String::new();
        for i in 0..500 {
            // Lines of varied length, so split points fall mid-line and on line starts.
            if i == 377 {
                text.push_str("not json\n");
            } else {
                text.push_str(&format!(
                    "{{\"id\":{i},\"pad\":\"{}\"}}\n",
                    "x".repeat(i % 23)
                ));
            }
        }
        std::fs::write(&path, &text).unwrap();
        for p in 1..=5 {
            let mut all = Vec::new();
            let mut bad = Vec::new();
            for i in 0..p {
                let mut config = FileSourceConfig::new(FileSelection::File(path.clone()));
                config.split = true;
                let mut source = FileSource::new(config);
                let mut ctx = context(i, p);
                source.open(&mut ctx).unwrap();
                let read = drain(&mut source, &mut ctx);
                let mine = ids(&read);
                if p > 1 {
                    assert!(mine.len() < 499, "instance {i} of {p} read the whole file");
                    assert!(!mine.is_empty(), "instance {i} of {p} read nothing");
                }
                all.extend(mine);
                bad.extend(read.into_iter().filter_map(Result::err).map(|b| b.line));
            }
            all.sort_unstable();
            let expected: Vec<i64> = (0..500).filter(|i| *i != 377).collect();
            assert_eq!(all, expected, "parallelism {p}");
            assert_eq!(bad, vec![378], "parallelism {p}: the bad line's number");
        }
    }

    #[test]
    fn a_followed_file_holds_back_a_partial_line_and_survives_rotation_and_truncation() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.jsonl");
        std::fs::write(&path, "{\"id\":1}\n{\"id\":").unwrap();
        let mut config = FileSourceConfig::new(FileSelection::File(path.clone()));
        config.follow = true;
        let mut source = FileSource::new(config);
        let mut ctx = context(0, 1);
        source.open(&mut ctx).unwrap();
        assert_eq!(ids(&drain(&mut source, &mut ctx)), vec![1]);
        let mut old = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        old.write_all(b"2}\n").unwrap();
        assert_eq!(ids(&drain(&mut source, &mut ctx)), vec![2]);
        // Rotation: renamed, the old file still written to, then a new file at the path.
        std::fs::rename(&path, dir.path().join("app.jsonl.1")).unwrap();
        assert_eq!(ids(&drain(&mut source, &mut ctx)), Vec::<i64>::new());
        old.write_all(b"{\"id\":3}\n").unwrap();
        std::fs::write(&path, "{\"id\":4}\n{\"id\":5}\n").unwrap();
        assert_eq!(ids(&drain(&mut source, &mut ctx)), vec![3, 4, 5]);
        // Truncation: the new content is read from the start.
        std::fs::write(&path, "{\"id\":6}\n").unwrap();
        assert_eq!(ids(&drain(&mut source, &mut ctx)), vec![6]);
    }

    #[test]
    fn a_glob_spreads_its_files_over_instances_and_reads_each_once() {
        let dir = tempfile::tempdir().unwrap();
        for f in 0..12 {
            let lines: String = (0..10)
                .map(|l| format!("{{\"id\":{}}}\n", f * 10 + l))
                .collect();
            std::fs::write(dir.path().join(format!("part-{f}.jsonl")), lines).unwrap();
        }
        std::fs::write(dir.path().join("ignored.txt"), "{\"id\":-1}\n").unwrap();
        let selection = FileSelection::from_path(&dir.path().join("part-*.jsonl"), false).unwrap();
        let p = 3;
        let mut all = Vec::new();
        for i in 0..p {
            let mut source = FileSource::new(FileSourceConfig::new(selection.clone()));
            let mut ctx = context(i, p);
            source.open(&mut ctx).unwrap();
            let mine = ids(&drain(&mut source, &mut ctx));
            assert!(
                !mine.is_empty() && mine.len() < 120,
                "instance {i}: {} ids",
                mine.len()
            );
            all.extend(mine);
        }
        all.sort_unstable();
        assert_eq!(all, (0..120).collect::<Vec<i64>>());
    }
}
