//! Checkpoints of a [`DiskStore`](crate::DiskStore) as files, the way RocksDB checkpoints: the
//! tree's sorted tables never change once written, so a checkpoint hard-links them into the
//! checkpoint's directory instead of copying their contents (a copy where the two directories
//! are on different file systems). Consecutive checkpoints share the tables they have in common,
//! which makes every checkpoint incremental on disk: only tables written since the previous one
//! cost I/O. A restore links the files back into a fresh scratch directory and opens the tree
//! on them.
//!
//! Layout of a checkpoint directory (fjall 3.1's own layout, plus one file of ours):
//!
//! ```text
//! version                  fjall's format marker
//! keyspaces/0/...          fjall's keyspace catalogue, written once when the store opens
//! keyspaces/N/current      which version of the state tree is current
//! keyspaces/N/vID          that version: the list of its tables
//! keyspaces/N/tables/ID    the tables
//! WEIR_STORE               the store's entry count and key filter (written)
//! ```
//!
//! Every file of fjall's is linked: fjall never changes a file in place once written (it
//! replaces `current` by renaming a new file over it), and the checkpoint has no journal (the
//! memtable is flushed first). Linking needs no data to be synced, only directories.

use crate::StateError;
use crate::filter::FilterImage;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, ErrorKind};
use std::path::Path;

/// The store's own bookkeeping in a checkpoint directory.
pub(crate) const STORE_FILE: &str = "WEIR_STORE";
const STORE_HEADER: &[u8] = b"weir-disk-store 1\n";
/// The directory of a tree's tables.
pub(crate) const TABLES: &str = "tables";

/// What a checkpoint of a store as files wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileCheckpoint {
    /// Entries in the store.
    pub entries: u64,
    /// Files in the checkpoint directory.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Bytes that had to be copied (hard links were not possible: another file system) or
    /// written.
    pub copied_bytes: u64,
    /// Bytes of the files the store's previous checkpoint did not have (all of them for the
    /// first): what this checkpoint adds on disk.
    pub new_bytes: u64,
    /// Checksums known without reading the files: the tree records the xxh3-128 of every
    /// table it writes. Paths are relative to the checkpoint directory, with `/`.
    pub checksums: Vec<(String, u128)>,
}

/// The content of [`STORE_FILE`].
#[derive(Serialize, Deserialize)]
pub(crate) struct StoreImage {
    pub(crate) entries: u64,
    pub(crate) filter: FilterImage,
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub(crate) fn write_store_image(dir: &Path, image: &StoreImage) -> Result<u64, StateError> {
    let mut bytes = STORE_HEADER.to_vec();
    bytes = postcard::to_extend(image, bytes).map_err(|e| StateError::Encode {
        what: "store image",
        message: e.to_string(),
    })?;
    let path = dir.join(STORE_FILE);
    write_synced(&path, &bytes)?;
    Ok(bytes.len() as u64)
}

pub(crate) fn read_store_image(dir: &Path) -> Result<StoreImage, StateError> {
    let path = dir.join(STORE_FILE);
    let bytes = fs::read(&path).map_err(io_error(&path))?;
    let body = bytes.strip_prefix(STORE_HEADER).ok_or_else(|| {
        StateError::Corrupt(format!(
            "{} is not a weir disk store checkpoint (unknown header)",
            path.display()
        ))
    })?;
    postcard::from_bytes(body).map_err(|e| StateError::Decode {
        what: "store image",
        message: format!("{}: {e}", path.display()),
    })
}

pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    fs::write(path, bytes)
        .and_then(|()| File::open(path)?.sync_all())
        .map_err(io_error(path))
}

/// Makes `to` the same file as `from`: a hard link, or a synced copy when linking is not
/// possible (another file system). Returns the bytes copied (0 for a link). A missing `from`
/// is reported as such (`ErrorKind::NotFound`), so that callers can retry.
pub(crate) fn link_or_copy(from: &Path, to: &Path) -> io::Result<u64> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(e),
        Err(_) => copy_synced(from, to),
    }
}

/// Copies `from` to `to` and syncs the copy.
pub(crate) fn copy_synced(from: &Path, to: &Path) -> io::Result<u64> {
    let n = fs::copy(from, to)?;
    File::open(to)?.sync_all()?;
    Ok(n)
}

impl FileCheckpoint {
    /// Counts one placed file of `size` bytes, `copied` of them copied or written; `new`: the
    /// store's previous checkpoint did not have it (else only what was copied is new).
    pub(crate) fn count(&mut self, size: u64, copied: u64, new: bool) {
        self.files += 1;
        self.bytes += size;
        self.copied_bytes += copied;
        self.new_bytes += if new { size } else { copied };
    }
}

/// Places `from` at `to` ([`link_or_copy`]) and counts it in `stats` (see
/// [`FileCheckpoint::count`]). A missing `from` is `ErrorKind::NotFound`.
pub(crate) fn place_file(
    from: &Path,
    to: &Path,
    new: bool,
    stats: &mut FileCheckpoint,
) -> io::Result<()> {
    let copied = link_or_copy(from, to)?;
    stats.count(fs::metadata(to)?.len(), copied, new);
    Ok(())
}

/// Flushes a directory's entries (new names, links) to disk.
pub(crate) fn sync_dir(path: &Path) -> Result<(), StateError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_error(path))
}

/// Recreates the tree `from` at `to` with links (see the module's documentation),
/// [`STORE_FILE`] left out. Directories are synced. Adds what it placed to `stats`, counting
/// it all as new when `new` (else only what had to be copied).
pub(crate) fn place_tree(
    from: &Path,
    to: &Path,
    new: bool,
    stats: &mut FileCheckpoint,
) -> Result<(), StateError> {
    fs::create_dir_all(to).map_err(io_error(to))?;
    for entry in fs::read_dir(from).map_err(io_error(from))? {
        let entry = entry.map_err(io_error(from))?;
        let (src, name) = (entry.path(), entry.file_name());
        let dst = to.join(&name);
        let kind = entry.file_type().map_err(io_error(&src))?;
        if kind.is_dir() {
            place_tree(&src, &dst, new, stats)?;
            continue;
        }
        if name == STORE_FILE {
            continue;
        }
        place_file(&src, &dst, new, stats).map_err(io_error(&src))?;
    }
    sync_dir(to)
}
