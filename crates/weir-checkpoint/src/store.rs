use crate::meta::{FORMAT, Metadata, MetadataError, OperatorEntry};
use crate::{BlobRef, CheckpointError, io};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const METADATA: &str = "_metadata";
const METADATA_TMP: &str = "_metadata.tmp";
/// Marks an expired checkpoint directory kept only for blobs that newer checkpoints reference.
const RETIRED: &str = "_retired";
/// The ranges of checkpoint ids that belong to runs the user abandoned.
const ABANDONED: &str = "_abandoned.json";
const ABANDONED_TMP: &str = "_abandoned.json.tmp";
const PREFIX: &str = "chk-";

/// Checkpoints a new run abandoned: every id strictly between `after` and `before`. A run
/// started with `--ignore-state` abandons all earlier checkpoints (`after` 0); one started
/// from checkpoint N abandons those after N. `before` is the first id the new run may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct AbandonedRange {
    after: u64,
    before: u64,
}

impl AbandonedRange {
    fn contains(&self, id: u64) -> bool {
        self.after < id && id < self.before
    }
}

fn dir_name(id: u64) -> String {
    format!("{PREFIX}{id:06}")
}

fn parse_dir_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A name as part of a file name: letters, digits, `_` and `.` stay; other bytes (`-`, the
/// separator, included) become `%XX`, so distinct (operator, instance, name) stay distinct.
fn encode_name(name: &str, out: &mut String) {
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The directory of a state kept as files.
fn files_dir_name(operator: &str, instance: usize, name: &str) -> String {
    format!("{}.files", blob_file(operator, instance, name))
}

fn blob_file(operator: &str, instance: usize, name: &str) -> String {
    let mut file = String::new();
    encode_name(operator, &mut file);
    file.push_str(&format!("-{instance}-"));
    encode_name(name, &mut file);
    file
}

fn sync_dir(path: &Path) -> Result<(), CheckpointError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io(path))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a checkpoint cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// `_metadata` was never written: the job stopped while writing the checkpoint.
    NoMetadata,
    /// `_metadata` is truncated, fails its checksum, or does not parse.
    BadMetadata(MetadataError),
    MissingBlob {
        checkpoint: u64,
        file: String,
    },
    BlobSize {
        checkpoint: u64,
        file: String,
        expected: u64,
        found: u64,
    },
    BlobChecksum {
        checkpoint: u64,
        file: String,
        expected: u32,
        found: u32,
    },
    FileChecksum {
        checkpoint: u64,
        file: String,
        expected: String,
        found: String,
    },
    Unreadable {
        file: String,
        message: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NoMetadata => write!(
                f,
                "no {METADATA}: it was never completed (the job stopped while writing it)"
            ),
            SkipReason::BadMetadata(m) => write!(f, "{METADATA} is unusable: {m}"),
            SkipReason::MissingBlob { checkpoint, file } => {
                write!(f, "blob {}/{file} is missing", dir_name(*checkpoint))
            }
            SkipReason::BlobSize {
                checkpoint,
                file,
                expected,
                found,
            } => write!(
                f,
                "blob {}/{file} has {found} bytes, expected {expected} (truncated or overwritten)",
                dir_name(*checkpoint)
            ),
            SkipReason::BlobChecksum {
                checkpoint,
                file,
                expected,
                found,
            } => write!(
                f,
                "blob {}/{file} is corrupt: crc32 {found:08x}, expected {expected:08x}",
                dir_name(*checkpoint)
            ),
            SkipReason::FileChecksum {
                checkpoint,
                file,
                expected,
                found,
            } => write!(
                f,
                "file {}/{file} is corrupt: xxh3-128 {found}, expected {expected}",
                dir_name(*checkpoint)
            ),
            SkipReason::Unreadable { file, message } => {
                write!(f, "{file} cannot be read: {message}")
            }
        }
    }
}

/// A checkpoint that was passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub id: u64,
    pub path: PathBuf,
    pub reason: SkipReason,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "checkpoint {} ({}) skipped: {}",
            dir_name(self.id),
            self.path.display(),
            self.reason
        )
    }
}

/// What `weir checkpoints list|show` prints about a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointInfo {
    pub id: u64,
    pub job: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub started_at_ms: i64,
    pub duration_ms: u64,
    /// Bytes of the blobs this checkpoint wrote.
    pub bytes_written: u64,
    /// Bytes of every blob needed to restore it (its own and earlier ones it references).
    pub total_bytes: u64,
    /// The operator instances covered, as `operator/instance`.
    pub operators: Vec<String>,
    /// Whether it references blobs of earlier checkpoints.
    pub incremental: bool,
    /// Per operator instance (`operator/instance`), its metadata: source offsets, pending
    /// transactions.
    pub meta: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// Every state stored, in operator order.
    pub states: Vec<StateInfo>,
}

/// One state of an operator instance in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateInfo {
    /// `operator/instance`.
    pub operator: String,
    pub name: String,
    /// Kept as files (an on-disk store's tables, linked), rather than as blobs.
    pub as_files: bool,
    /// Blobs in its chain, or files.
    pub parts: usize,
    pub bytes: u64,
}

/// The checkpoints of a store, oldest first, and the directories that are not usable.
#[derive(Debug)]
pub struct Listing {
    pub checkpoints: Vec<Checkpoint>,
    pub skipped: Vec<Skipped>,
    /// Checkpoints of runs abandoned by a later `--ignore-state` or `--from-checkpoint` run:
    /// a restart never resumes from them; `restore` can still pick one until retention
    /// removes them (when the newer run completes a checkpoint).
    pub abandoned: Vec<u64>,
}

/// A directory of checkpoints. Cheap to clone; clones share the record of checkpoints in
/// progress.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    keep: usize,
    job: String,
    in_progress: Arc<Mutex<BTreeSet<u64>>>,
}

/// Reads `r` to its end in 1 MiB chunks, passing each to `each`; returns the bytes read.
fn read_chunks(r: &mut impl Read, mut each: impl FnMut(&[u8])) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(size);
        }
        each(&buf[..n]);
        size += n as u64;
    }
}

/// The xxh3-128 and size of a file's contents.
fn xxh3_file(path: &Path) -> std::io::Result<(u128, u64)> {
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    let size = read_chunks(&mut File::open(path)?, |chunk| hasher.update(chunk))?;
    Ok((hasher.digest128(), size))
}

/// What [`PendingCheckpoint::put_files`] recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilesInfo {
    pub files: u64,
    pub bytes: u64,
    /// Bytes read to checksum them (files whose checksum the caller did not know).
    pub read_bytes: u64,
}

struct Entry {
    id: u64,
    path: PathBuf,
    retired: bool,
    /// Belongs to a run that a later run abandoned.
    abandoned: bool,
}

impl CheckpointStore {
    /// Opens (creating it if needed) a checkpoint directory that keeps the last `keep`
    /// completed checkpoints.
    pub fn open(dir: impl AsRef<Path>, keep: usize) -> Result<Self, CheckpointError> {
        if keep == 0 {
            return Err(CheckpointError::Config(
                "keep must be at least 1 (the checkpoint to recover from)".into(),
            ));
        }
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(CheckpointStore {
            dir,
            keep,
            job: String::new(),
            in_progress: Arc::default(),
        })
    }

    /// Names the job (or pipeline) recorded in the checkpoints written from now on.
    pub fn with_job(mut self, job: impl Into<String>) -> Self {
        self.job = job.into();
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn keep(&self) -> usize {
        self.keep
    }

    /// One more than the highest checkpoint id with a directory (1 for an empty store): an id
    /// that no earlier run used, complete or not.
    pub fn next_id(&self) -> Result<u64, CheckpointError> {
        Ok(self.entries()?.last().map_or(1, |e| e.id + 1))
    }

    /// Checkpoint directories, oldest first, retired ones included.
    fn entries(&self) -> Result<Vec<Entry>, CheckpointError> {
        let abandoned = self.abandoned_ranges()?;
        let mut entries = Vec::new();
        for item in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let item = item.map_err(io(&self.dir))?;
            let Some(id) = item.file_name().to_str().and_then(parse_dir_name) else {
                continue;
            };
            let path = item.path();
            if !path.is_dir() {
                continue;
            }
            let retired = path.join(RETIRED).exists();
            let abandoned = abandoned.iter().any(|r| r.contains(id));
            entries.push(Entry {
                id,
                path,
                retired,
                abandoned,
            });
        }
        entries.sort_by_key(|e| e.id);
        Ok(entries)
    }

    /// Starts checkpoint `id`. A directory left under that id by a checkpoint that never
    /// completed is replaced; a completed one is refused.
    pub fn begin(&self, id: u64) -> Result<PendingCheckpoint, CheckpointError> {
        if !lock(&self.in_progress).insert(id) {
            return Err(CheckpointError::Config(format!(
                "checkpoint {id} is already being written"
            )));
        }
        let registered = Registered {
            ids: self.in_progress.clone(),
            id,
        };
        let path = self.dir.join(dir_name(id));
        if path.exists() {
            if self.load(id, &path).is_ok() {
                return Err(CheckpointError::AlreadyComplete(id));
            }
            if path.join(RETIRED).exists() {
                return Err(CheckpointError::Config(format!(
                    "checkpoint {id} expired but holds blobs that kept checkpoints reference; \
                     start new checkpoints at next_id()"
                )));
            }
            fs::remove_dir_all(&path).map_err(io(&path))?;
        }
        fs::create_dir(&path).map_err(io(&path))?;
        sync_dir(&self.dir)?;
        let started_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Ok(PendingCheckpoint {
            store: self.clone(),
            id,
            path,
            started_at_ms,
            started: Instant::now(),
            state: Mutex::default(),
            _registered: registered,
        })
    }

    /// Reads and checks a checkpoint's metadata, and that its blobs exist with their sizes
    /// (without reading them).
    fn load(&self, id: u64, path: &Path) -> Result<Checkpoint, SkipReason> {
        let file = path.join(METADATA);
        let bytes = match fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SkipReason::NoMetadata);
            }
            Err(e) => {
                return Err(SkipReason::Unreadable {
                    file: file.display().to_string(),
                    message: e.to_string(),
                });
            }
        };
        let meta = Metadata::decode(&bytes).map_err(SkipReason::BadMetadata)?;
        if meta.id != id {
            return Err(SkipReason::BadMetadata(MetadataError::WrongId {
                expected: id,
                found: meta.id,
            }));
        }
        for blob in meta.blobs() {
            let file = self.dir.join(dir_name(blob.checkpoint)).join(&blob.file);
            match fs::metadata(&file) {
                Ok(m) if m.len() == blob.size => {}
                Ok(m) => {
                    return Err(SkipReason::BlobSize {
                        checkpoint: blob.checkpoint,
                        file: blob.file.clone(),
                        expected: blob.size,
                        found: m.len(),
                    });
                }
                Err(_) => {
                    return Err(SkipReason::MissingBlob {
                        checkpoint: blob.checkpoint,
                        file: blob.file.clone(),
                    });
                }
            }
        }
        Ok(Checkpoint {
            root: self.dir.clone(),
            path: path.to_path_buf(),
            meta,
        })
    }

    /// Completed checkpoints (metadata checked, blob sizes checked, contents not read), oldest
    /// first, and the directories that are not usable checkpoints.
    pub fn list(&self) -> Result<Listing, CheckpointError> {
        let mut listing = Listing {
            checkpoints: Vec::new(),
            skipped: Vec::new(),
            abandoned: Vec::new(),
        };
        for e in self.entries()?.into_iter().filter(|e| !e.retired) {
            if lock(&self.in_progress).contains(&e.id) {
                continue;
            }
            if e.abandoned {
                if self.load(e.id, &e.path).is_ok() {
                    listing.abandoned.push(e.id);
                }
                continue;
            }
            match self.load(e.id, &e.path) {
                Ok(c) => listing.checkpoints.push(c),
                Err(reason) => listing.skipped.push(Skipped {
                    id: e.id,
                    path: e.path,
                    reason,
                }),
            }
        }
        Ok(listing)
    }

    /// The newest checkpoint that is complete and intact (every blob read and its checksum
    /// verified), and the newer ones skipped on the way, newest first, with the reason.
    pub fn latest(&self) -> Result<(Option<Checkpoint>, Vec<Skipped>), CheckpointError> {
        let mut skipped = Vec::new();
        for e in self
            .entries()?
            .into_iter()
            .rev()
            .filter(|e| !e.retired && !e.abandoned)
        {
            if lock(&self.in_progress).contains(&e.id) {
                continue;
            }
            match self
                .load(e.id, &e.path)
                .and_then(|c| c.verify().map(|()| c))
            {
                Ok(c) => return Ok((Some(c), skipped)),
                Err(reason) => skipped.push(Skipped {
                    id: e.id,
                    path: e.path,
                    reason,
                }),
            }
        }
        Ok((None, skipped))
    }

    /// Checkpoint `id`, verified like [`latest`](Self::latest).
    pub fn get(&self, id: u64) -> Result<Checkpoint, CheckpointError> {
        let path = self.dir.join(dir_name(id));
        if !path.is_dir() || path.join(RETIRED).exists() {
            return Err(CheckpointError::NotFound(id));
        }
        self.load(id, &path)
            .and_then(|c| c.verify().map(|()| c))
            .map_err(|reason| CheckpointError::Invalid(Skipped { id, path, reason }))
    }

    /// Makes checkpoint `id` the latest: the directories of every later checkpoint (complete
    /// or not) are removed, so the next run resumes from `id`. Blobs only ever reference older
    /// checkpoints, so `id` and its chain stay intact. Returns the removed ids. Output that the
    /// removed checkpoints committed to external systems is not taken back.
    pub fn rollback_to(&self, id: u64) -> Result<Vec<u64>, CheckpointError> {
        // Refuse an id that is missing, retired or unusable.
        self.get(id)?.verify().map_err(|reason| {
            CheckpointError::Invalid(Skipped {
                id,
                path: self.dir.join(dir_name(id)),
                reason,
            })
        })?;
        let mut removed = Vec::new();
        for e in self.entries()?.into_iter().filter(|e| e.id > id) {
            fs::remove_dir_all(&e.path).map_err(io(&e.path))?;
            removed.push(e.id);
        }
        sync_dir(&self.dir)?;
        // An abandoned checkpoint chosen explicitly is the latest again.
        let mut ranges = self.abandoned_ranges()?;
        let before = ranges.len();
        ranges.retain(|r| !r.contains(id));
        if ranges.len() != before {
            self.write_abandoned(&ranges)?;
        }
        Ok(removed)
    }

    /// Starts a new line of runs that must never go back to the checkpoints of the runs it
    /// replaces: with `from` = `None` (`--ignore-state`) every existing checkpoint is
    /// abandoned; with `Some(n)` (`--from-checkpoint n`) those after `n`. Recorded durably
    /// before the new run starts, so that a restart after it dies before its first checkpoint
    /// resumes from `n` (or starts fresh), never from the abandoned ones. They stay on disk
    /// (`restore` can still choose one) until the new run completes a checkpoint. Returns the
    /// ids of the completed checkpoints abandoned.
    pub fn abandon_later_than(&self, from: Option<u64>) -> Result<Vec<u64>, CheckpointError> {
        let range = AbandonedRange {
            after: from.unwrap_or(0),
            before: self.next_id()?,
        };
        let listing = self.list()?;
        let mut abandoned: Vec<u64> = (listing.checkpoints.iter().map(Checkpoint::id))
            .chain(listing.abandoned)
            .filter(|id| range.contains(*id))
            .collect();
        abandoned.sort_unstable();
        let mut ranges = self.abandoned_ranges()?;
        // Ranges whose checkpoints retention has removed say nothing any more.
        let ids: Vec<u64> = self.entries()?.iter().map(|e| e.id).collect();
        ranges.retain(|r| ids.iter().any(|id| r.contains(*id)));
        // The checkpoint chosen to resume from is no longer abandoned, whatever went before.
        if let Some(n) = from {
            ranges.retain(|r| !r.contains(n));
        }
        if range.after + 1 < range.before {
            ranges.push(range);
        }
        self.write_abandoned(&ranges)?;
        Ok(abandoned)
    }

    fn abandoned_ranges(&self) -> Result<Vec<AbandonedRange>, CheckpointError> {
        let file = self.dir.join(ABANDONED);
        match fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                CheckpointError::Config(format!(
                    "{} is unreadable ({e}); it lists the checkpoints of abandoned runs: \
                     fix or remove it",
                    file.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io(&file)(e)),
        }
    }

    /// Replaces the abandoned ranges (temp file, fsync, rename, fsync of the directory).
    fn write_abandoned(&self, ranges: &[AbandonedRange]) -> Result<(), CheckpointError> {
        let target = self.dir.join(ABANDONED);
        if ranges.is_empty() {
            fs::remove_file(&target).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(io(&target)(e))
                }
            })?;
            return sync_dir(&self.dir);
        }
        let bytes = serde_json::to_vec(ranges).map_err(CheckpointError::Encode)?;
        let tmp = self.dir.join(ABANDONED_TMP);
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        fs::rename(&tmp, &target).map_err(io(&target))?;
        sync_dir(&self.dir)
    }

    /// Applies retention: keeps the last `keep` completed checkpoints and every blob they
    /// reference; removes older checkpoints, and directories of checkpoints that never
    /// completed older than the newest completed one. Returns the ids whose directories were
    /// removed or retired. [`PendingCheckpoint::complete`] calls this.
    pub fn retain(&self) -> Result<Vec<u64>, CheckpointError> {
        let entries = self.entries()?;
        let mut complete: Vec<(u64, Metadata)> = Vec::new();
        // Abandoned checkpoints count as never completed: garbage once a newer one completes.
        for e in entries.iter().filter(|e| !e.retired && !e.abandoned) {
            if let Ok(c) = self.load(e.id, &e.path) {
                complete.push((e.id, c.meta));
            }
        }
        let Some(&(newest, _)) = complete.last() else {
            return Ok(Vec::new());
        };
        let kept = &complete[complete.len().saturating_sub(self.keep)..];
        let oldest_kept = kept[0].0;
        let kept_ids: HashSet<u64> = kept.iter().map(|(id, _)| *id).collect();
        let referenced: HashSet<(u64, &str)> = kept
            .iter()
            .flat_map(|(_, m)| m.blobs())
            .map(|b| (b.checkpoint, b.file.as_str()))
            .collect();
        let in_progress = lock(&self.in_progress).clone();
        let completed: HashSet<u64> = complete.iter().map(|(id, _)| *id).collect();
        let mut removed = Vec::new();
        for e in &entries {
            if kept_ids.contains(&e.id) || in_progress.contains(&e.id) {
                continue;
            }
            let expired = if completed.contains(&e.id) || e.retired {
                e.id < oldest_kept
            } else {
                // Never completed (or unreadable): garbage once a newer one completed.
                e.id < newest
            };
            if !expired {
                continue;
            }
            let keep_files: Vec<&str> = referenced
                .iter()
                .filter(|(id, _)| *id == e.id)
                .map(|(_, f)| *f)
                .collect();
            if keep_files.is_empty() {
                fs::remove_dir_all(&e.path).map_err(io(&e.path))?;
            } else {
                if !e.retired {
                    let marker = e.path.join(RETIRED);
                    fs::write(
                        &marker,
                        b"expired; kept for blobs newer checkpoints reference\n",
                    )
                    .map_err(io(&marker))?;
                    sync_dir(&e.path)?;
                }
                for item in fs::read_dir(&e.path).map_err(io(&e.path))? {
                    let item = item.map_err(io(&e.path))?;
                    let name = item.file_name();
                    let name = name.to_string_lossy();
                    if name == RETIRED || keep_files.contains(&&*name) {
                        continue;
                    }
                    let p = item.path();
                    if p.is_dir() {
                        fs::remove_dir_all(&p).map_err(io(&p))?;
                    } else {
                        fs::remove_file(&p).map_err(io(&p))?;
                    }
                }
            }
            if !e.retired || keep_files.is_empty() {
                removed.push(e.id);
            }
        }
        Ok(removed)
    }
}

/// Takes a checkpoint id out of the in-progress set when its pending checkpoint goes away.
#[derive(Debug)]
struct Registered {
    ids: Arc<Mutex<BTreeSet<u64>>>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.ids).remove(&self.id);
    }
}

#[derive(Debug, Default)]
struct PendingState {
    operators: BTreeMap<(String, usize), OperatorEntry>,
    files: HashSet<String>,
    bytes_written: u64,
}

impl PendingState {
    fn entry(&mut self, operator: &str, instance: usize) -> &mut OperatorEntry {
        self.operators
            .entry((operator.to_string(), instance))
            .or_insert_with(|| OperatorEntry {
                operator: operator.to_string(),
                instance,
                ..OperatorEntry::default()
            })
    }
}

/// A checkpoint being written. `Send + Sync`: task threads share it (by reference or in an
/// `Arc`) and write their blobs concurrently; it becomes a checkpoint when
/// [`complete`](Self::complete) writes its metadata. Dropped without completing, it leaves a
/// directory that [`CheckpointStore::latest`] skips and retention removes.
#[derive(Debug)]
pub struct PendingCheckpoint {
    store: CheckpointStore,
    id: u64,
    path: PathBuf,
    started_at_ms: i64,
    started: Instant,
    state: Mutex<PendingState>,
    _registered: Registered,
}

impl PendingCheckpoint {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one blob of state `name` of an operator instance (fsynced), appending it to
    /// that state's chain in this checkpoint.
    pub fn write_blob(
        &self,
        operator: &str,
        instance: usize,
        name: &str,
        bytes: &[u8],
    ) -> Result<BlobRef, CheckpointError> {
        let mut w = self.blob_writer(operator, instance, name)?;
        w.write_all(bytes).map_err(io(&w.path))?;
        w.finish()
    }

    /// A writer for a blob too large to hold in memory: stream into it, then
    /// [`finish`](BlobWriter::finish) it. A state's snapshot can be written straight into it.
    pub fn blob_writer(
        &self,
        operator: &str,
        instance: usize,
        name: &str,
    ) -> Result<BlobWriter<'_>, CheckpointError> {
        let file = blob_file(operator, instance, name);
        self.claim(&file, operator, instance, name)?;
        let path = self.path.join(&file);
        let out = File::create(&path).map_err(io(&path))?;
        Ok(BlobWriter {
            pending: self,
            out: BufWriter::with_capacity(1 << 20, out),
            path,
            hasher: crc32fast::Hasher::new(),
            size: 0,
            blob: BlobRef {
                checkpoint: self.id,
                operator: operator.to_string(),
                instance,
                name: name.to_string(),
                file,
                size: 0,
                crc32: 0,
                xxh3_128: None,
            },
        })
    }

    /// Reserves the file name of a state in this checkpoint: each state is written once.
    fn claim(
        &self,
        file: &str,
        operator: &str,
        instance: usize,
        name: &str,
    ) -> Result<(), CheckpointError> {
        if lock(&self.state).files.insert(file.to_string()) {
            return Ok(());
        }
        Err(CheckpointError::DuplicateBlob {
            checkpoint: self.id,
            operator: operator.to_string(),
            instance,
            name: name.to_string(),
        })
    }

    /// An empty directory in this checkpoint for state `name` of an operator instance kept as
    /// files (an on-disk store hard-links its tables there). Once the files are in place,
    /// [`put_files`](Self::put_files) records them.
    pub fn files_dir(
        &self,
        operator: &str,
        instance: usize,
        name: &str,
    ) -> Result<PathBuf, CheckpointError> {
        let file = files_dir_name(operator, instance, name);
        self.claim(&file, operator, instance, name)?;
        let path = self.path.join(file);
        fs::create_dir(&path).map_err(io(&path))?;
        Ok(path)
    }

    /// Records every file under [`files_dir`](Self::files_dir) as state `name`, with its size
    /// and xxh3-128 checksum, so that [`CheckpointStore::latest`] detects a missing, truncated
    /// or corrupt file. `known` gives checksums the caller already has (an LSM tree records
    /// one for every table it writes), by path relative to the directory with `/`; other
    /// files are read. A wrong known checksum makes the checkpoint fail verification.
    /// `new_bytes`: how much of it the store wrote for this checkpoint (the rest are links to
    /// files earlier checkpoints have), counted as the checkpoint's written bytes.
    pub fn put_files(
        &self,
        operator: &str,
        instance: usize,
        name: &str,
        known: &[(String, u128)],
        new_bytes: u64,
    ) -> Result<FilesInfo, CheckpointError> {
        let dir = files_dir_name(operator, instance, name);
        let known: HashMap<&str, u128> = known.iter().map(|(p, c)| (p.as_str(), *c)).collect();
        let root = self.path.join(&dir);
        let mut refs = Vec::new();
        let mut info = FilesInfo::default();
        let mut pending = vec![root.clone()];
        while let Some(at) = pending.pop() {
            for item in fs::read_dir(&at).map_err(io(&at))? {
                let item = item.map_err(io(&at))?;
                let path = item.path();
                let m = item.metadata().map_err(io(&path))?;
                if m.is_dir() {
                    pending.push(path);
                    continue;
                }
                let inside = path
                    .strip_prefix(&root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                let (checksum, size) = match known.get(inside.as_str()) {
                    Some(&c) => (c, m.len()),
                    None => {
                        let (c, size) = xxh3_file(&path).map_err(io(&path))?;
                        info.read_bytes += size;
                        (c, size)
                    }
                };
                refs.push(BlobRef {
                    checkpoint: self.id,
                    operator: operator.to_string(),
                    instance,
                    name: name.to_string(),
                    file: format!("{dir}/{inside}"),
                    size,
                    crc32: 0,
                    xxh3_128: Some(format!("{checksum:032x}")),
                });
                info.files += 1;
                info.bytes += size;
            }
        }
        refs.sort_by(|a, b| a.file.cmp(&b.file));
        let mut state = lock(&self.state);
        state.bytes_written += new_bytes;
        state
            .entry(operator, instance)
            .files
            .insert(name.to_string(), refs);
        Ok(info)
    }

    /// Appends a blob of an earlier checkpoint to its state's chain in this one (an incremental
    /// checkpoint: a base, then deltas). The blob stays as long as a kept checkpoint references
    /// it.
    pub fn reuse(&self, blob: &BlobRef) -> Result<(), CheckpointError> {
        if blob.checkpoint >= self.id {
            return Err(CheckpointError::BadReuse {
                file: blob.file.clone(),
                from: blob.checkpoint,
                into: self.id,
            });
        }
        let path = self
            .store
            .dir
            .join(dir_name(blob.checkpoint))
            .join(&blob.file);
        fs::metadata(&path).map_err(io(&path))?;
        let mut state = lock(&self.state);
        state
            .entry(&blob.operator, blob.instance)
            .states
            .entry(blob.name.clone())
            .or_default()
            .push(blob.clone());
        Ok(())
    }

    /// Writes state `name` of an operator instance as a full snapshot, or as an incremental
    /// one on top of `base`'s chain for it (reused): incremental when `base` (the checkpoint
    /// the state's previous snapshot went into) has a chain for this state shorter than
    /// `max_chain`. `snapshot(incremental, writer)` writes the snapshot (for a keyed store:
    /// `store.snapshot(kind, writer)`).
    ///
    /// An incremental snapshot holds the changes since the store's previous snapshot, so
    /// `base` must be the checkpoint that holds that previous snapshot. If it did not complete,
    /// pass `None` (a full snapshot).
    pub fn write_state<E: fmt::Display>(
        &self,
        operator: &str,
        instance: usize,
        name: &str,
        base: Option<&Checkpoint>,
        max_chain: usize,
        snapshot: impl FnOnce(bool, &mut BlobWriter<'_>) -> Result<(), E>,
    ) -> Result<BlobRef, CheckpointError> {
        let chain = base.map_or(&[][..], |b| b.chain(operator, instance, name));
        let incremental = !chain.is_empty() && chain.len() < max_chain;
        if incremental {
            for blob in chain {
                self.reuse(blob)?;
            }
        }
        let mut w = self.blob_writer(operator, instance, name)?;
        snapshot(incremental, &mut w).map_err(|e| CheckpointError::Snapshot {
            operator: operator.to_string(),
            instance,
            name: name.to_string(),
            message: e.to_string(),
        })?;
        w.finish()
    }

    /// Records free-form metadata of an operator instance (a source's offset, a sink's
    /// pending transaction); a repeated key replaces the value.
    pub fn put_meta(
        &self,
        operator: &str,
        instance: usize,
        key: &str,
        value: serde_json::Value,
    ) -> Result<(), CheckpointError> {
        lock(&self.state)
            .entry(operator, instance)
            .meta
            .insert(key.to_string(), value);
        Ok(())
    }

    /// Writes the metadata (temp file, fsync, rename, fsync of the directory), which makes
    /// this the latest checkpoint, then applies retention.
    pub fn complete(self) -> Result<CheckpointInfo, CheckpointError> {
        let state = std::mem::take(&mut *lock(&self.state));
        let operators: Vec<OperatorEntry> = state.operators.into_values().collect();
        let total_bytes = operators
            .iter()
            .flat_map(|o| o.states.values().chain(o.files.values()).flatten())
            .map(|b| b.size)
            .sum();
        let meta = Metadata {
            format: FORMAT,
            id: self.id,
            job: self.store.job.clone(),
            started_at_ms: self.started_at_ms,
            duration_ms: self.started.elapsed().as_millis() as u64,
            bytes_written: state.bytes_written,
            total_bytes,
            operators,
        };
        let bytes = meta.encode()?;
        // The blobs' directory entries must be durable before the metadata names them.
        sync_dir(&self.path)?;
        let tmp = self.path.join(METADATA_TMP);
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        let target = self.path.join(METADATA);
        fs::rename(&tmp, &target).map_err(io(&target))?;
        sync_dir(&self.path)?;
        let checkpoint = Checkpoint {
            root: self.store.dir.clone(),
            path: self.path.clone(),
            meta,
        };
        let info = checkpoint.info();
        let store = self.store.clone();
        drop(self);
        store.retain()?;
        Ok(info)
    }
}

/// Streams one blob into a pending checkpoint, checksumming as it goes.
pub struct BlobWriter<'a> {
    pending: &'a PendingCheckpoint,
    out: BufWriter<File>,
    path: PathBuf,
    hasher: crc32fast::Hasher,
    size: u64,
    blob: BlobRef,
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.out.write_all(buf)?;
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter<'_> {
    /// Flushes and fsyncs the blob and adds it to its state's chain in the checkpoint.
    pub fn finish(self) -> Result<BlobRef, CheckpointError> {
        let BlobWriter {
            pending,
            out,
            path,
            hasher,
            size,
            mut blob,
        } = self;
        let file = out.into_inner().map_err(|e| CheckpointError::Io {
            path: path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io(&path))?;
        blob.size = size;
        blob.crc32 = hasher.finalize();
        let mut state = lock(&pending.state);
        state.bytes_written += size;
        state
            .entry(&blob.operator, blob.instance)
            .states
            .entry(blob.name.clone())
            .or_default()
            .push(blob.clone());
        Ok(blob)
    }
}

/// A completed checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    root: PathBuf,
    path: PathBuf,
    meta: Metadata,
}

impl Checkpoint {
    pub fn id(&self) -> u64 {
        self.meta.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn job(&self) -> &str {
        &self.meta.job
    }

    /// The operator instances covered, in order.
    pub fn operators(&self) -> Vec<(&str, usize)> {
        self.meta
            .operators
            .iter()
            .map(|o| (o.operator.as_str(), o.instance))
            .collect()
    }

    fn operator(&self, operator: &str, instance: usize) -> Option<&OperatorEntry> {
        self.meta
            .operators
            .iter()
            .find(|o| o.operator == operator && o.instance == instance)
    }

    /// The state names of an operator instance.
    pub fn states(&self, operator: &str, instance: usize) -> Vec<&str> {
        self.operator(operator, instance)
            .map(|o| {
                o.states
                    .keys()
                    .chain(o.files.keys())
                    .map(String::as_str)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The blobs of a state, in restore order (empty if the checkpoint has none). Pass them to
    /// [`PendingCheckpoint::reuse`] to build the next incremental checkpoint on them.
    pub fn chain(&self, operator: &str, instance: usize, name: &str) -> &[BlobRef] {
        self.operator(operator, instance)
            .and_then(|o| o.states.get(name))
            .map_or(&[], Vec::as_slice)
    }

    /// The contents of a state's blobs, in restore order, each checked against its size and
    /// checksum.
    pub fn blobs(
        &self,
        operator: &str,
        instance: usize,
        name: &str,
    ) -> Result<Vec<Vec<u8>>, CheckpointError> {
        self.chain(operator, instance, name)
            .iter()
            .map(|b| {
                read_blob(&self.root, b).map_err(|reason| {
                    CheckpointError::Invalid(Skipped {
                        id: self.id(),
                        path: self.path.clone(),
                        reason,
                    })
                })
            })
            .collect()
    }

    /// Readers over a state's blobs, in restore order, for state too large to hold in memory:
    /// each checks its blob's size and checksum when it reaches the end, and fails the read
    /// (an `InvalidData` I/O error naming the blob) on a mismatch.
    pub fn blob_readers(
        &self,
        operator: &str,
        instance: usize,
        name: &str,
    ) -> Result<Vec<BlobReader>, CheckpointError> {
        self.chain(operator, instance, name)
            .iter()
            .map(|b| {
                let path = self.root.join(dir_name(b.checkpoint)).join(&b.file);
                let file = File::open(&path).map_err(io(&path))?;
                Ok(BlobReader {
                    inner: std::io::BufReader::with_capacity(1 << 20, file),
                    hasher: crc32fast::Hasher::new(),
                    size: 0,
                    blob: b.clone(),
                })
            })
            .collect()
    }

    /// The directory of state `name` of an operator instance if it was stored as files
    /// ([`PendingCheckpoint::put_files`]).
    pub fn files_dir(&self, operator: &str, instance: usize, name: &str) -> Option<PathBuf> {
        self.operator(operator, instance)
            .filter(|o| o.files.contains_key(name))
            .map(|_| self.path.join(files_dir_name(operator, instance, name)))
    }

    /// A metadata value of an operator instance.
    pub fn meta(&self, operator: &str, instance: usize, key: &str) -> Option<&serde_json::Value> {
        self.operator(operator, instance)
            .and_then(|o| o.meta.get(key))
    }

    /// Reads every blob and checks its size and checksum.
    pub fn verify(&self) -> Result<(), SkipReason> {
        let mut seen = HashSet::new();
        for blob in self.meta.blobs() {
            if seen.insert((blob.checkpoint, blob.file.as_str())) {
                check_blob(&self.root, blob, None)?;
            }
        }
        Ok(())
    }

    /// The summary the CLI prints.
    pub fn info(&self) -> CheckpointInfo {
        let m = &self.meta;
        let started_at = chrono::DateTime::from_timestamp_millis(m.started_at_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        CheckpointInfo {
            id: m.id,
            job: m.job.clone(),
            started_at,
            started_at_ms: m.started_at_ms,
            duration_ms: m.duration_ms,
            bytes_written: m.bytes_written,
            total_bytes: m.total_bytes,
            operators: m
                .operators
                .iter()
                .map(|o| format!("{}/{}", o.operator, o.instance))
                .collect(),
            incremental: m.blobs().any(|b| b.checkpoint != m.id),
            meta: m
                .operators
                .iter()
                .filter(|o| !o.meta.is_empty())
                .map(|o| (format!("{}/{}", o.operator, o.instance), o.meta.clone()))
                .collect(),
            states: m
                .operators
                .iter()
                .flat_map(|o| {
                    let blobs = o.states.iter().map(|s| (s, false));
                    let files = o.files.iter().map(|s| (s, true));
                    blobs
                        .chain(files)
                        .map(|((name, parts), as_files)| StateInfo {
                            operator: format!("{}/{}", o.operator, o.instance),
                            name: name.clone(),
                            as_files,
                            parts: parts.len(),
                            bytes: parts.iter().map(|b| b.size).sum(),
                        })
                })
                .collect(),
        }
    }
}

/// The checksum a blob is verified with: crc32 for blobs, xxh3-128 for the files of a state
/// kept as files (the checksum LSM trees record for their tables).
enum Hasher {
    Crc32(crc32fast::Hasher),
    /// With the expected value.
    Xxh3(Box<xxhash_rust::xxh3::Xxh3Default>, String),
}

impl Hasher {
    fn for_blob(blob: &BlobRef) -> Hasher {
        match &blob.xxh3_128 {
            Some(expected) => Hasher::Xxh3(Box::default(), expected.clone()),
            None => Hasher::Crc32(crc32fast::Hasher::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Crc32(h) => h.update(bytes),
            Hasher::Xxh3(h, _) => h.update(bytes),
        }
    }

    /// Compares with the checksum the blob records.
    fn check(self, blob: &BlobRef) -> Result<(), SkipReason> {
        match self {
            Hasher::Xxh3(h, expected) => {
                let found = format!("{:032x}", h.digest128());
                if found == expected {
                    return Ok(());
                }
                Err(SkipReason::FileChecksum {
                    checkpoint: blob.checkpoint,
                    file: blob.file.clone(),
                    expected,
                    found,
                })
            }
            Hasher::Crc32(h) => {
                let found = h.finalize();
                if found == blob.crc32 {
                    return Ok(());
                }
                Err(SkipReason::BlobChecksum {
                    checkpoint: blob.checkpoint,
                    file: blob.file.clone(),
                    expected: blob.crc32,
                    found,
                })
            }
        }
    }
}

/// Reads one blob, verifying it at its end (see [`Checkpoint::blob_readers`]).
pub struct BlobReader {
    inner: std::io::BufReader<File>,
    hasher: crc32fast::Hasher,
    size: u64,
    blob: BlobRef,
}

impl BlobReader {
    pub fn blob(&self) -> &BlobRef {
        &self.blob
    }

    fn invalid(&self, reason: SkipReason) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, reason.to_string())
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        let b = &self.blob;
        if self.size > b.size || (n == 0 && self.size < b.size) {
            return Err(self.invalid(SkipReason::BlobSize {
                checkpoint: b.checkpoint,
                file: b.file.clone(),
                expected: b.size,
                found: self.size,
            }));
        }
        if n == 0 || (self.size == b.size && !buf.is_empty()) {
            let found = self.hasher.clone().finalize();
            if found != b.crc32 {
                return Err(self.invalid(SkipReason::BlobChecksum {
                    checkpoint: b.checkpoint,
                    file: b.file.clone(),
                    expected: b.crc32,
                    found,
                }));
            }
        }
        Ok(n)
    }
}

fn read_blob(root: &Path, blob: &BlobRef) -> Result<Vec<u8>, SkipReason> {
    let mut out = Vec::with_capacity(blob.size as usize);
    check_blob(root, blob, Some(&mut out))?;
    Ok(out)
}

/// Reads a blob, checking size and checksum; keeps the bytes in `keep` if given.
fn check_blob(root: &Path, blob: &BlobRef, keep: Option<&mut Vec<u8>>) -> Result<(), SkipReason> {
    let path = root.join(dir_name(blob.checkpoint)).join(&blob.file);
    let unreadable = |e: std::io::Error| SkipReason::Unreadable {
        file: path.display().to_string(),
        message: e.to_string(),
    };
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SkipReason::MissingBlob {
                checkpoint: blob.checkpoint,
                file: blob.file.clone(),
            });
        }
        Err(e) => return Err(unreadable(e)),
    };
    let mut hasher = Hasher::for_blob(blob);
    let size = match keep {
        Some(out) => {
            f.read_to_end(out).map_err(unreadable)?;
            hasher.update(out);
            out.len() as u64
        }
        None => read_chunks(&mut f, |chunk| hasher.update(chunk)).map_err(unreadable)?,
    };
    if size != blob.size {
        return Err(SkipReason::BlobSize {
            checkpoint: blob.checkpoint,
            file: blob.file.clone(),
            expected: blob.size,
            found: size,
        });
    }
    hasher.check(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_safe() {
        assert_eq!(blob_file("count", 0, "counts"), "count-0-counts");
        assert_ne!(blob_file("a-1", 0, "x"), blob_file("a", 1, "0-x"));
        assert_eq!(blob_file("../x", 2, "s"), "%2E.%2Fx-2-s");
        assert_eq!(parse_dir_name("chk-000012"), Some(12));
        assert_eq!(parse_dir_name("chk-12x"), None);
        assert_eq!(parse_dir_name("chk-"), None);
        assert_eq!(dir_name(12), "chk-000012");
    }

    #[test]
    fn keep_zero_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = CheckpointStore::open(dir.path(), 0).unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
    }
}
