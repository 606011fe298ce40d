//! Weir's checkpoint storage: where the state of a job's operators is kept between runs.
//!
//! A [`CheckpointStore`] is a directory holding one directory per checkpoint:
//!
//! ```text
//! DIR/chk-000012/count-0-counts     one file per (operator, instance, state) blob
//! DIR/chk-000012/source-0-offsets
//! DIR/chk-000012/join-0-left.files/  a state kept as files (an on-disk store's tables, linked)
//! DIR/chk-000012/_metadata          written last, atomically; checksums and sizes of the blobs
//! ```
//!
//! Task threads write their blobs concurrently through a shared [`PendingCheckpoint`]; the
//! checkpoint exists only once [`PendingCheckpoint::complete`] has written `_metadata` (temp file,
//! fsync, rename, fsync of the directory). An incremental checkpoint references the blobs of
//! earlier ones (a base and its deltas, in order); retention keeps the last N completed
//! checkpoints and every blob they reference. A partial checkpoint (no `_metadata`, a missing
//! blob) or a corrupt one (a checksum or size mismatch, truncated metadata) is skipped for the
//! previous good one and reported as a [`Skipped`] naming it.
//!
//! How the runtime uses it: at a barrier, [`CheckpointStore::begin`] the next id
//! ([`CheckpointStore::next_id`] after a restart); each task writes its states with
//! [`PendingCheckpoint::write_state`] (full, or incremental on the previous checkpoint's chain),
//! or, for an on-disk store, links its files into [`PendingCheckpoint::files_dir`] and records
//! them with [`PendingCheckpoint::put_files`] (with the checksums its tree already has); its
//! offsets or pending transactions go in with [`PendingCheckpoint::put_meta`]; once every task
//! acknowledged, [`PendingCheckpoint::complete`]. To recover: [`CheckpointStore::latest`]
//! (print the skipped ones), then per state `store.restore_from(checkpoint.blob_readers(..)?)`
//! and per source its offset from [`Checkpoint::meta`].
//!
//! ```
//! use weir_checkpoint::CheckpointStore;
//!
//! let dir = tempfile::tempdir()?;
//! let store = CheckpointStore::open(dir.path(), 3)?.with_job("word count");
//!
//! let pending = store.begin(1)?;
//! let base = pending.write_blob("count", 0, "counts", b"full state")?;
//! pending.put_meta("source", 0, "offset", serde_json::json!(1200))?;
//! pending.complete()?;
//!
//! let pending = store.begin(2)?;
//! pending.reuse(&base)?;
//! pending.write_blob("count", 0, "counts", b"changes")?;
//! pending.put_meta("source", 0, "offset", serde_json::json!(2400))?;
//! pending.complete()?;
//!
//! let (latest, skipped) = store.latest()?;
//! let latest = latest.expect("a completed checkpoint");
//! assert!(skipped.is_empty());
//! assert_eq!(latest.id(), 2);
//! assert!(latest.info().incremental);
//! assert_eq!(latest.blobs("count", 0, "counts")?, vec![b"full state".to_vec(), b"changes".to_vec()]);
//! assert_eq!(latest.meta("source", 0, "offset"), Some(&serde_json::json!(2400)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod meta;
mod runtime;
mod store;

pub use meta::{BlobRef, MetadataError};
pub use runtime::{DirCheckpoints, FINISHED_KEY, JOB_ENTRY};
pub use store::{
    BlobReader, BlobWriter, Checkpoint, CheckpointInfo, CheckpointStore, FilesInfo, Listing,
    PendingCheckpoint, SkipReason, Skipped, StateInfo,
};

use std::path::PathBuf;

/// Errors of checkpoint storage.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint I/O error at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode checkpoint metadata: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("checkpoint {0} already completed; a new checkpoint needs a new id")]
    AlreadyComplete(u64),
    #[error(
        "checkpoint {checkpoint} already has a blob for state '{name}' of {operator}/{instance}"
    )]
    DuplicateBlob {
        checkpoint: u64,
        operator: String,
        instance: usize,
        name: String,
    },
    #[error(
        "cannot reuse {file} of checkpoint {from} in checkpoint {into}: only blobs of earlier checkpoints can be reused"
    )]
    BadReuse { file: String, from: u64, into: u64 },
    #[error("snapshot of state '{name}' of {operator}/{instance} failed: {message}")]
    Snapshot {
        operator: String,
        instance: usize,
        name: String,
        message: String,
    },
    #[error("no checkpoint {0} in the store")]
    NotFound(u64),
    #[error("{0}")]
    Invalid(Skipped),
    #[error("invalid checkpoint store configuration: {0}")]
    Config(String),
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CheckpointError {
    let path = path.into();
    move |source| CheckpointError::Io { path, source }
}
