//! Weir's keyed state.
//!
//! Operators never hold per-key state in their own maps: they reach it through [`KeyedStore`],
//! so that the backend and its snapshots are the runtime's business, not each operator's.
//! Operators are generic over the store type, so a state access is a direct, inlinable call,
//! not a virtual one.
//!
//! This crate owns:
//! - the [`KeyedStore`] trait, with full and incremental snapshots and their restore;
//! - [`MemoryStore`], the default in-memory backend (a hash table of typed entries);
//! - [`DiskStore`], the on-disk backend for state larger than memory, on the fjall LSM tree,
//!   with a bounded cache of decoded hot entries;
//! - [`StateBackend`] (configuration), [`StoreFactory`] and [`AnyStore`], which let the
//!   runtime choose the backend per job at run time.
//!
//! # Why fjall for the on-disk backend
//!
//! fjall 3.1 is RocksDB's model (memtable, sorted tables, compaction, block cache, bulk
//! ingestion) in pure Rust: it builds clean in 22 s debug / 43 s release with one job on the
//! project's 2-core machine, where the RocksDB crate costs about 15 minutes of CI per clean
//! profile and needs libclang. It has no checkpoint API of its own; [`DiskStore`] builds
//! RocksDB's (hard-linked table files) on fjall's tables and versions, so a checkpoint of an
//! on-disk store costs what changed since the previous one and a restore reads no entries. The
//! backend sits behind [`KeyedStore`], so RocksDB could be added as a cargo feature.
//!
//! # Snapshots
//!
//! A snapshot is a byte stream (see [`SnapshotKind`]): a full one holds every entry, an
//! incremental one only the entries changed and the keys removed since the store's previous
//! snapshot. Stores track changes with a dirty flag per entry, set by the accessors, so the
//! hot path does no other work. A store is restored from the last full snapshot followed by the
//! incremental ones taken after it, in order:
//!
//! ```
//! use weir_state::{KeyedStore, MemoryStore, SnapshotKind};
//!
//! let mut store = MemoryStore::<String, u64>::new();
//! *store.get_or_insert_with(&"a".to_string(), || 0) += 1;
//! *store.get_or_insert_with(&"b".to_string(), || 0) += 5;
//! let mut base = Vec::new();
//! store.snapshot(SnapshotKind::Full, &mut base)?;
//!
//! *store.get_mut(&"a".to_string()).unwrap() += 1;
//! store.remove(&"b".to_string());
//! let mut delta = Vec::new();
//! let stats = store.snapshot(SnapshotKind::Incremental, &mut delta)?;
//! assert_eq!((stats.entries, stats.removals), (1, 1));
//!
//! let mut restored = MemoryStore::<String, u64>::new();
//! restored.restore(&[base, delta])?;
//! assert_eq!(restored.get(&"a".to_string()), Some(&2));
//! assert_eq!(restored.len(), 1);
//! # Ok::<(), weir_state::StateError>(())
//! ```

mod any;
mod disk;
mod files;
mod filter;
mod memory;
mod snapshot;

pub use any::{AnyStore, StateBackend, StoreFactory};
pub use disk::{DiskStore, DiskStoreOptions, SnapshotView};
pub use files::FileCheckpoint;
pub use memory::MemoryStore;
pub use snapshot::{SnapshotKind, SnapshotStats};

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::hash::Hash;
use std::io::{Read, Write};
use std::path::Path;

/// Key types usable in keyed state. Serializable, because snapshots and the on-disk backend
/// store them. Equal keys must serialize to equal bytes (true of strings, integers, tuples and
/// vectors of them) for the on-disk backend to find them.
pub trait StateKey: Hash + Eq + Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Hash + Eq + Clone + Send + Serialize + DeserializeOwned + 'static> StateKey for T {}

/// Value types usable in keyed state.
pub trait StateValue: Send + Serialize + DeserializeOwned + 'static {}
impl<T: Send + Serialize + DeserializeOwned + 'static> StateValue for T {}

/// A map from keys to values, owned by one operator instance.
///
/// Methods take `&mut self` even to read, so that a backend may load entries from disk into
/// a cache on access.
///
/// The accessors without `try_` cannot report an I/O failure of the on-disk backend; it panics
/// with a message naming the failure instead (the task fails and the job recovers from its last
/// checkpoint). The `try_` variants return the error.
pub trait KeyedStore<K: StateKey, V: StateValue>: Send + 'static {
    fn get(&mut self, key: &K) -> Option<&V>;
    fn get_mut(&mut self, key: &K) -> Option<&mut V>;
    /// The value under `key`, inserting `default()` first if there is none. The key is cloned
    /// only when it is inserted.
    fn get_or_insert_with<F: FnOnce() -> V>(&mut self, key: &K, default: F) -> &mut V;
    fn insert(&mut self, key: K, value: V) -> Option<V>;
    fn remove(&mut self, key: &K) -> Option<V>;
    /// Number of keys held.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Removes and returns every entry, in no particular order.
    fn drain_all(&mut self) -> Vec<(K, V)>;
    /// Visits every entry without removing it.
    fn for_each(&mut self, f: &mut dyn FnMut(&K, &V));

    /// [`get_mut`](Self::get_mut), reporting backend failures.
    fn try_get_mut(&mut self, key: &K) -> Result<Option<&mut V>, StateError> {
        Ok(self.get_mut(key))
    }
    /// [`get_or_insert_with`](Self::get_or_insert_with), reporting backend failures.
    fn try_get_or_insert_with<F: FnOnce() -> V>(
        &mut self,
        key: &K,
        default: F,
    ) -> Result<&mut V, StateError> {
        Ok(self.get_or_insert_with(key, default))
    }
    /// [`insert`](Self::insert), reporting backend failures.
    fn try_insert(&mut self, key: K, value: V) -> Result<Option<V>, StateError> {
        Ok(self.insert(key, value))
    }
    /// [`remove`](Self::remove), reporting backend failures.
    fn try_remove(&mut self, key: &K) -> Result<Option<V>, StateError> {
        Ok(self.remove(key))
    }

    /// Writes a snapshot to `out`: every entry ([`SnapshotKind::Full`]) or what changed since
    /// the previous snapshot ([`SnapshotKind::Incremental`]). Either starts a new change set.
    /// An incremental snapshot needs a previous snapshot or restore, else
    /// [`StateError::NoBaseSnapshot`]. It is relative to the previous snapshot whether or not
    /// that one was stored: after a checkpoint that did not complete, take a full one.
    fn snapshot(
        &mut self,
        kind: SnapshotKind,
        out: &mut dyn Write,
    ) -> Result<SnapshotStats, StateError>;

    /// Applies one snapshot read from a stream: a full one replaces the contents, an
    /// incremental one applies its changes. Afterwards the store counts as just snapshotted
    /// (no changes pending). Memory use does not grow with the snapshot's size.
    fn apply_snapshot_from(&mut self, reader: &mut dyn Read) -> Result<(), StateError>;

    /// [`apply_snapshot_from`](Self::apply_snapshot_from) for a snapshot in memory.
    fn apply_snapshot(&mut self, blob: &[u8]) -> Result<(), StateError> {
        self.apply_snapshot_from(&mut &blob[..])
    }

    /// The space the backend's data takes, when the backend can tell cheaply (the on-disk
    /// backend: its files on disk). `None`: the caller estimates it (the in-memory backend,
    /// from the size of its snapshots).
    fn size_on_disk(&self) -> Option<u64> {
        None
    }

    /// Whether this store checkpoints as files ([`checkpoint_files`](Self::checkpoint_files)):
    /// the on-disk backend does, linking its immutable tables instead of streaming every entry.
    fn checkpoints_as_files(&self) -> bool {
        false
    }

    /// Writes a checkpoint of the store into the directory `dir` as files, when
    /// [`checkpoints_as_files`](Self::checkpoints_as_files). Afterwards the store counts as
    /// snapshotted.
    fn checkpoint_files(&mut self, dir: &Path) -> Result<FileCheckpoint, StateError> {
        Err(StateError::Config(format!(
            "cannot checkpoint into {} as files: this backend keeps its state in memory and is checkpointed as a snapshot",
            dir.display()
        )))
    }

    /// Replaces the contents with a checkpoint written as files by the on-disk backend. Any
    /// backend can: the default opens the files as a temporary on-disk store and copies its
    /// entries.
    fn restore_files(&mut self, dir: &Path) -> Result<(), StateError>
    where
        Self: Sized,
    {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scratch = std::env::temp_dir().join(format!("weir-restore-{}-{n}", std::process::id()));
        let mut disk = DiskStore::<K, V>::open(&scratch, DiskStoreOptions::default())?;
        disk.restore_files(dir)?;
        let mut blob = Vec::new();
        disk.snapshot(SnapshotKind::Full, &mut blob)?;
        self.apply_snapshot(&blob)
    }

    /// Replaces the contents with a full snapshot followed by the incremental snapshots taken
    /// after it, in order.
    fn restore<B: AsRef<[u8]>>(&mut self, chain: &[B]) -> Result<(), StateError>
    where
        Self: Sized,
    {
        self.restore_from(chain.iter().map(|b| b.as_ref()))
    }

    /// [`restore`](Self::restore) from streams (files of a checkpoint, read as they are
    /// applied).
    fn restore_from<R: Read>(
        &mut self,
        chain: impl IntoIterator<Item = R>,
    ) -> Result<(), StateError>
    where
        Self: Sized,
    {
        let mut applied = 0;
        for (i, mut reader) in chain.into_iter().enumerate() {
            if i == 0 {
                // Peek at the header: the chain must start with a full snapshot.
                let mut header = [0u8; snapshot::HEADER_LEN];
                let n = snapshot::read_up_to(&mut reader, &mut header)?;
                if snapshot::kind_of_header(&header[..n])? != SnapshotKind::Full {
                    return Err(StateError::BadChain(
                        "the first snapshot of a restore chain must be a full one, found an incremental one"
                            .into(),
                    ));
                }
                let mut whole = (&header[..n]).chain(reader);
                self.apply_snapshot_from(&mut whole)
                    .map_err(|e| e.in_chain(i))?;
            } else {
                self.apply_snapshot_from(&mut reader)
                    .map_err(|e| e.in_chain(i))?;
            }
            applied += 1;
        }
        if applied == 0 {
            return Err(StateError::BadChain(
                "no snapshot to restore from (the chain is empty)".into(),
            ));
        }
        Ok(())
    }
}

/// Errors of state backends.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state I/O error at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading a snapshot failed at byte {at}: {source}")]
    Read {
        at: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("writing a snapshot failed: {source}")]
    Write {
        #[source]
        source: std::io::Error,
    },
    #[error("on-disk state at {path}: {message}")]
    Backend { path: String, message: String },
    #[error("cannot encode a state {what}: {message}")]
    Encode { what: &'static str, message: String },
    #[error("cannot decode a state {what}: {message}")]
    Decode { what: &'static str, message: String },
    #[error("corrupt state: {0}")]
    Corrupt(String),
    #[error("an incremental snapshot needs a previous snapshot or restore of this store")]
    NoBaseSnapshot,
    #[error("bad restore chain: {0}")]
    BadChain(String),
    #[error("invalid state configuration: {0}")]
    Config(String),
}

impl StateError {
    fn in_chain(self, index: usize) -> StateError {
        match self {
            StateError::Corrupt(m) => {
                StateError::Corrupt(format!("snapshot {} of the chain: {m}", index + 1))
            }
            StateError::Decode { what, message } => StateError::Decode {
                what,
                message: format!("{message} (snapshot {} of the chain)", index + 1),
            },
            other => other,
        }
    }
}
