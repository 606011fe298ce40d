//! The on-disk backend: an LSM tree (fjall) holding postcard-encoded entries, fronted by a
//! bounded cache of decoded hot entries.
//!
//! # Why fjall
//!
//! It is RocksDB's model (memtable, sorted tables, compaction, block cache, bulk ingestion of
//! sorted data) in pure Rust. Both were measured on the project's 2-core machine
//! (`tools/rocksdb-w5` runs benchmark w5 on RocksDB 11.8.1 through the `rocksdb` crate 0.25):
//!
//! | | fjall 3.1 (this store) | RocksDB 11.8 |
//! |---|---|---|
//! | clean release build | 43 s (fjall), about 45 s (this crate) | 19 min, and libclang |
//! | target directory | part of the workspace's | 322 MB release, 3.5 GB debug |
//! | w5 count, 1M keys, 64 MiB budget | 7 µs per word | 12.8 µs (7 µs with a bloom filter) |
//! | w5 checkpoint / incremental / restore | 24-34 / 11-12 / 20 ms | 22 / 4 / 6.5 ms |
//!
//! RocksDB checkpoints faster (native, in C++), fjall counts faster here (its bloom filters
//! and our cache of decoded entries) and builds in seconds: fjall, behind [`KeyedStore`], so a
//! RocksDB backend could still be added as a cargo feature.
//!
//! # Checkpoints
//!
//! The runtime checkpoints this store as files ([`DiskStore::checkpoint_files`], see
//! [`crate::files`]): the cache's dirty entries are written as one sorted table (bulk
//! ingestion), the memtable is flushed, and the tree's tables, which never change once
//! written, are hard-linked into the checkpoint with the checksums the tree recorded for them.
//! A checkpoint costs what changed since the previous one, not the size of the state; to keep
//! that bounded, at most one cached entry in [`DIRTY_SHARE`] stays dirty (beyond that, a slice
//! of them is written back). A restore links the files into a fresh directory and opens the
//! tree on them: it reads nothing but the tree's metadata.
//!
//! Snapshots as a byte stream remain ([`KeyedStore::snapshot`], [`DiskStore::full_snapshot_view`]):
//! a full one streams every entry (about 1 µs each here), an incremental one what changed.
//! They serve stores of other backends and checkpoint stores that keep no files.
//!
//! The directory is scratch space: the store starts empty and deletes it when dropped. The
//! durable copy of the state is what the runtime stores in a checkpoint.

use crate::files::{
    FileCheckpoint, STORE_FILE, StoreImage, TABLES, io_error, place_file, place_tree,
    read_store_image, sync_dir, write_store_image, write_synced,
};
use crate::filter::KeyFilter;
use crate::snapshot::{Op, SnapshotReader, SnapshotWriter, decode};
use crate::{KeyedStore, SnapshotKind, SnapshotStats, StateError, StateKey, StateValue};
use fjall::config::{CompressionPolicy, PartitioningPolicy, PinningPolicy};
use fjall::{AbstractTree, CompressionType, Database, Keyspace, KeyspaceCreateOptions, Readable};
use hashbrown::HashTable;
use serde::Serialize;
use std::hash::BuildHasher;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Marks a directory as a store's scratch space, which may be wiped on open.
const MARKER: &str = "WEIR_STATE_SCRATCH";

/// Deletes a store's scratch directory with its marker last, so that a process killed midway
/// leaves a directory that is still recognised (and wiped) by the next open rather than one
/// refused as someone else's.
fn wipe_scratch(path: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        if entry.file_name() == MARKER {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    std::fs::remove_dir_all(path)
}
/// The cache evicts at least this share of its capacity at once, so write-backs go to the
/// tree in batches.
const EVICT_FRACTION: usize = 32;
/// At most one cached entry in this many is dirty (see `DiskStore::dirty_limit`).
const DIRTY_SHARE: usize = 8;
/// Entries whose encoded size is measured before the estimate is trusted, and the interval
/// of later measurements of new entries.
const EARLY_SAMPLES: u64 = 64;
const SAMPLE_EVERY: u64 = 256;

/// Tuning of a [`DiskStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskStoreOptions {
    /// Memory the store may use, in bytes: half for the cache of decoded entries, a quarter
    /// for fjall's block cache and a sixteenth for its memtable (at least 512 KiB). A small
    /// memtable keeps checkpoints short: each one flushes it.
    pub memory_budget: usize,
    /// fjall's background threads (flushes and compactions).
    pub worker_threads: usize,
}

impl Default for DiskStoreOptions {
    fn default() -> Self {
        DiskStoreOptions {
            memory_budget: 64 * 1024 * 1024,
            worker_threads: 1,
        }
    }
}

struct Slot<K, V> {
    key: K,
    value: V,
    /// Changed since it was loaded or last written back.
    dirty: bool,
    /// Used since the clock hand last passed (second chance).
    hot: bool,
    /// The tree holds this key (possibly an older value).
    on_disk: bool,
}

/// Keyed state on disk, for state larger than memory.
///
/// Entries being used live decoded in a cache bounded by the memory budget; `get_mut` returns a
/// reference into it and marks the entry dirty. Dirty entries are written back when evicted
/// (second-chance clock) and at every snapshot. A full snapshot streams the tree's encoded
/// entries without decoding them; an incremental one writes the keys written back or removed
/// since the previous snapshot. Restoring a full snapshot streams it into the tree, bulk-loading
/// sorted tables directly (no memtable); memory stays bounded whatever the state's size.
///
/// ```
/// use weir_state::{DiskStore, DiskStoreOptions, KeyedStore, SnapshotKind};
///
/// let dir = tempfile::tempdir()?;
/// let options = DiskStoreOptions { memory_budget: 1 << 20, ..Default::default() };
/// let mut store = DiskStore::<String, u64>::open(dir.path().join("counts"), options.clone())?;
/// for i in 0..10_000u64 {
///     *store.get_or_insert_with(&format!("key-{i}"), || 0) += i;
/// }
/// assert_eq!(store.len(), 10_000);
/// assert_eq!(store.get(&"key-7".to_string()), Some(&7));
///
/// let mut blob = Vec::new();
/// store.snapshot(SnapshotKind::Full, &mut blob)?;
/// let mut copy = DiskStore::<String, u64>::open(dir.path().join("copy"), options)?;
/// copy.restore(&[blob])?;
/// assert_eq!(copy.get(&"key-9999".to_string()), Some(&9999));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DiskStore<K, V> {
    // Declared before `db` so it drops first.
    tree: Keyspace,
    db: Database,
    /// The tree's directory inside the scratch directory: `db-N`, N counting restores from
    /// files (each opens a new tree beside the old one, which is deleted when it drops).
    db_path: PathBuf,
    generation: u32,
    options: DiskStoreOptions,
    slots: Vec<Slot<K, V>>,
    index: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    cache_budget: usize,
    capacity: usize,
    samples: u64,
    sampled_bytes: u64,
    inserted: u64,
    hand: usize,
    /// Cached entries changed since they were loaded or written back, and the most there may
    /// be: beyond it a slice of them is written back, so that a checkpoint (which must write
    /// them all) stays short.
    dirty_entries: usize,
    dirty_limit: usize,
    /// Where the next write-back of dirty entries starts in `slots`.
    clean_hand: usize,
    len: usize,
    /// Keys ever written to the tree: a miss on a key it has never seen skips the lookup.
    filter: KeyFilter,
    /// Encoded keys written to or removed from the tree since the previous snapshot.
    touched: hashbrown::HashSet<Box<[u8]>>,
    tracking: bool,
    cleared: bool,
    kbuf: Vec<u8>,
    vbuf: Vec<u8>,
    /// The store file of the latest checkpoint as files, and the (filter, entry count) it
    /// holds: the next checkpoint links it when neither changed.
    last_image: Option<(PathBuf, (usize, usize))>,
    /// The tables of the latest checkpoint as files (or restore): the next checkpoint's new
    /// bytes are those of the other tables.
    last_tables: hashbrown::HashSet<u64>,
    /// Last: removes the scratch directory once the tree is closed (and no view needs it).
    root: Arc<ScratchRoot>,
}

/// A store's scratch directory, removed when the last owner drops.
struct ScratchRoot(PathBuf);

impl Drop for ScratchRoot {
    fn drop(&mut self) {
        let _ = wipe_scratch(&self.0);
    }
}

/// Opens (or recovers) the fjall tree of a store at `db_path`, sized from the budget.
fn open_tree(
    db_path: &Path,
    options: &DiskStoreOptions,
) -> Result<(Database, Keyspace), StateError> {
    let budget = options.memory_budget.max(64 * 1024);
    let backend = |e: fjall::Error| StateError::Backend {
        path: db_path.display().to_string(),
        message: e.to_string(),
    };
    let memtable = (budget / 16).clamp(512 * 1024, 64 * 1024 * 1024) as u64;
    // The tree needs no journal on disk for durability (checkpoints give that): it is
    // persisted only when the process exits cleanly, and deleted then.
    let db = Database::builder(db_path)
        .cache_size((budget / 4) as u64)
        .worker_threads(options.worker_threads.max(1))
        .manual_journal_persist(true)
        .temporary(true)
        .open()
        .map_err(backend)?;
    let tree = db
        .keyspace("state", || {
            KeyspaceCreateOptions::default()
                .manual_journal_persist(true)
                .max_memtable_size(memtable)
                // Every cache miss is a point read that consults filters and indexes. Tables
                // made by bulk ingestion (restores) are never pinned, and their whole-table
                // filter and index blocks were read and checksummed again on every lookup
                // (100 µs per read at 1M keys): partitioned, a lookup loads small blocks.
                .filter_block_pinning_policy(PinningPolicy::all(true))
                .index_block_pinning_policy(PinningPolicy::all(true))
                .filter_block_partitioning_policy(PartitioningPolicy::all(true))
                .index_block_partitioning_policy(PartitioningPolicy::all(true))
                // fjall leaves its first two levels uncompressed, and a store's tables mostly
                // live there: lz4 everywhere (RocksDB's default) writes, links and caches
                // several times fewer bytes of typical keys.
                .data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
        })
        .map_err(backend)?;
    Ok((db, tree))
}

impl<K: StateKey, V: StateValue> DiskStore<K, V> {
    /// Opens an empty store in `path`. A directory left there by an earlier store is wiped; any
    /// other non-empty directory is refused.
    pub fn open(path: impl AsRef<Path>, options: DiskStoreOptions) -> Result<Self, StateError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| StateError::Io {
            path: path.display().to_string(),
            source,
        };
        if path.exists() {
            let empty = std::fs::read_dir(&path).map_err(io)?.next().is_none();
            if !empty {
                if !path.join(MARKER).exists() {
                    return Err(StateError::Config(format!(
                        "{} is not empty and was not made by a weir state store; refusing to use it",
                        path.display()
                    )));
                }
                wipe_scratch(&path).map_err(io)?;
            }
        }
        std::fs::create_dir_all(&path).map_err(io)?;
        std::fs::write(path.join(MARKER), b"scratch space of a weir DiskStore\n").map_err(io)?;
        // fjall works with the absolute path; checkpoints compare paths with it.
        let path = path.canonicalize().map_err(io)?;
        let root = Arc::new(ScratchRoot(path));
        let db_path = root.0.join("db-0");
        let (db, tree) = open_tree(&db_path, &options)?;
        let budget = options.memory_budget.max(64 * 1024);
        let mut store = DiskStore {
            tree,
            db,
            db_path,
            generation: 0,
            options,
            slots: Vec::new(),
            index: HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            cache_budget: budget / 2,
            capacity: 0,
            samples: 0,
            sampled_bytes: 0,
            inserted: 0,
            hand: 0,
            dirty_entries: 0,
            dirty_limit: 0,
            clean_hand: 0,
            len: 0,
            filter: KeyFilter::default(),
            touched: hashbrown::HashSet::new(),
            tracking: false,
            cleared: false,
            kbuf: Vec::new(),
            vbuf: Vec::new(),
            last_image: None,
            last_tables: hashbrown::HashSet::new(),
            root,
        };
        store.resize();
        Ok(store)
    }

    /// Where the store keeps its files.
    pub fn path(&self) -> &Path {
        &self.root.0
    }

    /// Entries currently decoded in the cache.
    pub fn cached(&self) -> usize {
        self.slots.len()
    }

    /// How many entries the cache holds at most, from the budget and the estimated entry size.
    pub fn cache_capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of the store's files on disk.
    pub fn disk_space(&self) -> u64 {
        self.tree.disk_space()
    }

    fn backend(&self, e: fjall::Error) -> StateError {
        StateError::Backend {
            path: self.db_path.display().to_string(),
            message: e.to_string(),
        }
    }

    fn fail(&self, e: StateError) -> ! {
        panic!("on-disk keyed state failed: {e}")
    }

    /// The synchronous half of a full snapshot: writes the cache's dirty entries back and pins
    /// the tree as it is now. The returned view writes the snapshot from any thread while the
    /// store goes on working, so a checkpoint barrier pauses processing only for the
    /// write-back. The store counts as snapshotted: its next incremental snapshot holds the
    /// changes made after this call. Do not drain or restore the store while a view is being
    /// written.
    ///
    /// ```
    /// use weir_state::{DiskStore, DiskStoreOptions, KeyedStore, MemoryStore};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let mut store = DiskStore::<u32, u32>::open(dir.path().join("s"), DiskStoreOptions::default())?;
    /// store.insert(1, 10);
    /// let view = store.full_snapshot_view()?;
    /// store.insert(2, 20); // not in the view
    /// let blob = std::thread::spawn(move || {
    ///     let mut blob = Vec::new();
    ///     view.write_to(&mut blob).map(|_| blob)
    /// })
    /// .join()
    /// .unwrap()?;
    /// let mut copy = MemoryStore::<u32, u32>::new();
    /// copy.restore(&[blob])?;
    /// assert_eq!((copy.len(), copy.get(&1)), (1, Some(&10)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn full_snapshot_view(&mut self) -> Result<SnapshotView, StateError> {
        self.write_back()?;
        let view = SnapshotView {
            snapshot: self.db.snapshot(),
            tree: self.tree.clone(),
            db: self.db.clone(),
            path: self.db_path.clone(),
            _root: self.root.clone(),
        };
        self.touched.clear();
        self.cleared = false;
        self.tracking = true;
        Ok(view)
    }

    /// Writes a checkpoint of the store into the directory `dir` as files, the way RocksDB
    /// checkpoints: writes the cache's dirty entries as a sorted table, flushes the memtable,
    /// then hard-links the tree's files into `dir` (copies them where `dir` is on another file
    /// system) with its own small file (entry count, key filter). The cost is what changed
    /// since the previous checkpoint, not the size of the state. The tables' checksums come
    /// back in [`FileCheckpoint::checksums`]. Afterwards an incremental snapshot stream needs a
    /// full one first. `dir` must be empty or absent.
    pub fn checkpoint_files(&mut self, dir: &Path) -> Result<FileCheckpoint, StateError> {
        self.write_back_to_tables()?;
        self.flush_memtables()?;
        if dir.exists()
            && std::fs::read_dir(dir)
                .map_err(io_error(dir))?
                .next()
                .is_some()
        {
            return Err(StateError::Config(format!(
                "cannot checkpoint into {} as files: the directory is not empty",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut placed = FileCheckpoint {
            entries: self.len as u64,
            ..FileCheckpoint::default()
        };
        // fjall's format marker and keyspace catalogue (written once, when the tree opened).
        let version = self.db_path.join("version");
        // They never change: new only in the store's first checkpoint.
        let first = self.last_image.is_none();
        place_file(&version, &dir.join("version"), first, &mut placed)
            .map_err(io_error(&version))?;
        let state = self.tree.path().to_path_buf();
        let keyspaces = self.db_path.join("keyspaces");
        for entry in std::fs::read_dir(&keyspaces).map_err(io_error(&keyspaces))? {
            let entry = entry.map_err(io_error(&keyspaces))?;
            if entry.path() != state {
                let to = dir.join("keyspaces").join(entry.file_name());
                place_tree(&entry.path(), &to, first, &mut placed)?;
            }
        }
        let relative = state.strip_prefix(&self.db_path).map_err(|_| {
            StateError::Config(format!(
                "the state tree {} is outside the store's directory {}",
                state.display(),
                self.db_path.display()
            ))
        })?;
        self.last_tables = self.link_current_tables(&state, dir, relative, &mut placed)?;
        self.place_image(dir, &mut placed)?;
        sync_dir(&dir.join("keyspaces"))?;
        sync_dir(dir)?;
        // The next checkpoint is taken as files too: no change set to keep.
        self.touched.clear();
        self.cleared = false;
        self.tracking = false;
        Ok(placed)
    }

    /// Writes the store's own file into the checkpoint `dir`, or links the previous
    /// checkpoint's when it would hold the same (no key added, none removed).
    fn place_image(&mut self, dir: &Path, placed: &mut FileCheckpoint) -> Result<(), StateError> {
        let version = (self.filter.inserted(), self.len);
        let target = dir.join(STORE_FILE);
        let linked = match &self.last_image {
            Some((previous, v)) if *v == version => {
                place_file(previous, &target, false, placed).is_ok()
            }
            _ => false,
        };
        if !linked {
            // Never write through a link left by a failed attempt: it is the previous
            // checkpoint's file.
            let _ = std::fs::remove_file(&target);
            let image = StoreImage {
                entries: self.len as u64,
                filter: self.filter.image(),
            };
            let n = write_store_image(dir, &image)?;
            placed.count(n, n, true);
        }
        self.last_image = Some((target, version));
        Ok(())
    }

    /// Replaces the contents with a checkpoint written by
    /// [`checkpoint_files`](Self::checkpoint_files): links its files into a new tree directory
    /// and opens the tree on them. The checkpoint's files stay untouched (the tree never
    /// modifies a table; later compactions only unlink the store's own names).
    pub fn restore_files(&mut self, dir: &Path) -> Result<(), StateError> {
        let image = read_store_image(dir)?;
        let filter = KeyFilter::from_image(image.filter)?;
        let generation = self.generation + 1;
        let db_path = self.root.0.join(format!("db-{generation}"));
        if db_path.exists() {
            std::fs::remove_dir_all(&db_path).map_err(io_error(&db_path))?;
        }
        place_tree(dir, &db_path, false, &mut FileCheckpoint::default())?;
        // An empty journal: fjall then takes its sequence numbers from the tables (with no
        // journal at all it would start them at zero and hide every entry).
        write_synced(&db_path.join("0.jnl"), b"")?;
        // fjall opens an existing tree's lock file without creating it.
        write_synced(&db_path.join("lock"), b"")?;
        let (db, tree) = open_tree(&db_path, &self.options)?;
        self.drop_cache();
        self.tree = tree;
        self.db = db;
        self.db_path = db_path;
        self.generation = generation;
        self.len = usize::try_from(image.entries).unwrap_or(usize::MAX);
        self.filter = filter;
        self.last_image = Some((dir.join(STORE_FILE), (self.filter.inserted(), self.len)));
        self.last_tables = self
            .tree
            .tree
            .current_version()
            .iter_tables()
            .map(|t| t.id())
            .collect();
        self.touched.clear();
        self.cleared = false;
        self.tracking = true;
        Ok(())
    }

    /// Seals the memtable and waits until every sealed memtable is a table on disk.
    fn flush_memtables(&self) -> Result<(), StateError> {
        self.tree.rotate_memtable().map_err(|e| self.backend(e))?;
        while self.tree.sealed_memtable_count() > 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(())
    }

    /// Links the state tree's current version and its tables from `from` into
    /// `checkpoint/relative`. Compactions go on in the background; holding the version keeps
    /// its tables from being deleted, and the linked `current` must name it, else a
    /// compaction just finished and this starts over.
    fn link_current_tables(
        &self,
        from: &Path,
        checkpoint: &Path,
        relative: &Path,
        placed: &mut FileCheckpoint,
    ) -> Result<hashbrown::HashSet<u64>, StateError> {
        const ATTEMPTS: usize = 100;
        let to = checkpoint.join(relative);
        for _ in 0..ATTEMPTS {
            let version = self.tree.tree.current_version();
            if version.blob_file_count() > 0 {
                return Err(StateError::Config(
                    "checkpoints as files do not support key-value separated trees".into(),
                ));
            }
            if to.exists() {
                std::fs::remove_dir_all(&to).map_err(io_error(&to))?;
            }
            let tables = to.join(TABLES);
            std::fs::create_dir_all(&tables).map_err(io_error(&tables))?;
            let mut attempt = FileCheckpoint::default();
            let version_file = format!("v{}", version.id());
            let metadata = [version_file.as_str(), "current"]
                .into_iter()
                .try_for_each(|name| {
                    place_file(&from.join(name), &to.join(name), true, &mut attempt)
                });
            match metadata {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(from)(e)),
            }
            let current_path = to.join("current");
            let current = std::fs::read(&current_path).map_err(io_error(&current_path))?;
            if current.get(..8) != Some(&version.id().to_le_bytes()[..]) {
                continue;
            }
            let prefix = relative.join(TABLES);
            let mut linked = hashbrown::HashSet::new();
            for table in version.iter_tables() {
                let name = table.id().to_string();
                let new = !self.last_tables.contains(&table.id());
                let src = from.join(TABLES).join(&name);
                place_file(&src, &tables.join(&name), new, &mut attempt).map_err(io_error(&src))?;
                linked.insert(table.id());
                let path = prefix.join(&name).to_string_lossy().replace('\\', "/");
                attempt.checksums.push((path, table.checksum().into_u128()));
            }
            sync_dir(&tables)?;
            sync_dir(&to)?;
            placed.files += attempt.files;
            placed.bytes += attempt.bytes;
            placed.copied_bytes += attempt.copied_bytes;
            placed.new_bytes += attempt.new_bytes;
            placed.checksums.append(&mut attempt.checksums);
            return Ok(linked);
        }
        Err(StateError::Backend {
            path: from.display().to_string(),
            message: format!(
                "the tree's version changed during each of {ATTEMPTS} attempts to checkpoint it"
            ),
        })
    }

    // ---- size estimate -------------------------------------------------------------------

    fn observe(&mut self, encoded_bytes: usize) {
        self.samples += 1;
        self.sampled_bytes += encoded_bytes as u64;
        if self.samples <= EARLY_SAMPLES || self.samples.is_multiple_of(1024) {
            self.resize();
        }
    }

    /// Recomputes the capacity: the budget (less the key filter) over the estimated size of one
    /// cached entry (the slot, its index entry, and its heap data estimated by its encoded
    /// size).
    fn resize(&mut self) {
        let heap = self.sampled_bytes.checked_div(self.samples).unwrap_or(0) as usize;
        let per_entry = std::mem::size_of::<Slot<K, V>>() + 16 + heap;
        // The key filter (about 1.25 bytes per key in the tree) comes out of the cache's share.
        let budget = self.cache_budget.saturating_sub(self.filter.bytes());
        self.capacity = (budget / per_entry.max(1)).max(16);
        self.dirty_limit = (self.capacity / DIRTY_SHARE).max(16);
    }

    fn sample_new(&mut self, key: &K, value: &V) {
        self.inserted += 1;
        if self.inserted <= EARLY_SAMPLES || self.inserted.is_multiple_of(SAMPLE_EVERY) {
            let size = postcard::experimental::serialized_size(key).unwrap_or(0)
                + postcard::experimental::serialized_size(value).unwrap_or(0);
            self.observe(size);
        }
    }

    // ---- encoding ------------------------------------------------------------------------

    fn encode_into<T: Serialize>(
        buf: &mut Vec<u8>,
        value: &T,
        what: &'static str,
    ) -> Result<(), StateError> {
        buf.clear();
        Self::encode_append(buf, value, what)
    }

    /// Appends the encoding of `value` to `buf`.
    fn encode_append<T: Serialize>(
        buf: &mut Vec<u8>,
        value: &T,
        what: &'static str,
    ) -> Result<(), StateError> {
        let taken = std::mem::take(buf);
        *buf = postcard::to_extend(value, taken).map_err(|e| StateError::Encode {
            what,
            message: e.to_string(),
        })?;
        Ok(())
    }

    fn encode_key(&mut self, key: &K) -> Result<(), StateError> {
        Self::encode_into(&mut self.kbuf, key, "key")
    }

    // ---- the cache -----------------------------------------------------------------------

    #[inline]
    fn find(&self, key: &K) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        self.index
            .find(hash, |&i| slots[i as usize].key == *key)
            .map(|&i| i as usize)
    }

    fn push(&mut self, slot: Slot<K, V>) -> usize {
        let hash = self.hasher.hash_one(&slot.key);
        let i = self.slots.len();
        self.slots.push(slot);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .insert_unique(hash, i as u32, |&j| hasher.hash_one(&slots[j as usize].key));
        i
    }

    fn take_slot(&mut self, i: usize) -> Slot<K, V> {
        let hash = self.hasher.hash_one(&self.slots[i].key);
        if let Ok(e) = self.index.find_entry(hash, |&j| j as usize == i) {
            e.remove();
        }
        let last = self.slots.len() - 1;
        if i != last {
            let moved = self.hasher.hash_one(&self.slots[last].key);
            if let Some(j) = self.index.find_mut(moved, |&j| j as usize == last) {
                *j = i as u32;
            }
        }
        self.slots.swap_remove(i)
    }

    fn drop_cache(&mut self) {
        self.slots.clear();
        self.index.clear();
        self.hand = 0;
        self.clean_hand = 0;
        self.dirty_entries = 0;
    }

    /// Makes room for one more entry, evicting a batch with the clock when the cache is full.
    fn make_room(&mut self) -> Result<(), StateError> {
        if self.slots.len() < self.capacity {
            return Ok(());
        }
        let target = self.slots.len() + 1 - self.capacity + self.capacity / EVICT_FRACTION;
        let mut batch = self.db.batch();
        let mut evicted = 0;
        while evicted < target && !self.slots.is_empty() {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let slot = &mut self.slots[self.hand];
            if slot.hot {
                slot.hot = false;
                self.hand += 1;
                continue;
            }
            let slot = self.take_slot(self.hand);
            if slot.dirty {
                self.dirty_entries -= 1;
                Self::encode_into(&mut self.kbuf, &slot.key, "key")?;
                Self::encode_into(&mut self.vbuf, &slot.value, "value")?;
                batch.insert(&self.tree, &self.kbuf[..], &self.vbuf[..]);
                self.filter.insert(&self.kbuf);
                if self.tracking {
                    self.touched.insert(self.kbuf.as_slice().into());
                }
                let size = self.kbuf.len() + self.vbuf.len();
                self.observe(size);
            }
            evicted += 1;
        }
        batch.commit().map_err(|e| self.backend(e))
    }

    /// Reads `key` from the tree (the key is encoded into `kbuf`).
    fn load(&mut self, key: &K) -> Result<Option<V>, StateError> {
        self.encode_key(key)?;
        if !self.filter.may_contain(&self.kbuf) {
            return Ok(None);
        }
        match self.tree.get(&self.kbuf).map_err(|e| self.backend(e))? {
            Some(bytes) => {
                let value = decode(&bytes, "value")?;
                let size = self.kbuf.len() + bytes.len();
                self.observe(size);
                Ok(Some(value))
            }
            None => Ok(None),
        }
    }

    /// The cache position of `key`, loading it from the tree on a miss.
    fn locate(&mut self, key: &K) -> Result<Option<usize>, StateError> {
        if self.dirty_entries > self.dirty_limit {
            self.clean_some(self.dirty_limit / DIRTY_SHARE + 1)?;
        }
        if let Some(i) = self.find(key) {
            self.slots[i].hot = true;
            return Ok(Some(i));
        }
        self.make_room()?;
        Ok(self.load(key)?.map(|value| {
            self.push(Slot {
                key: key.clone(),
                value,
                dirty: false,
                hot: true,
                on_disk: true,
            })
        }))
    }

    /// The value of cached entry `i`, marked changed.
    #[inline]
    fn dirty_value(&mut self, i: usize) -> &mut V {
        let slot = &mut self.slots[i];
        if !slot.dirty {
            slot.dirty = true;
            self.dirty_entries += 1;
        }
        &mut slot.value
    }

    /// Writes back dirty entries, in slot order from where the previous call stopped, until
    /// `count` more are clean (or none is dirty). They stay cached.
    fn clean_some(&mut self, count: usize) -> Result<(), StateError> {
        let mut batch = self.db.batch();
        let mut cleaned = 0;
        let mut visited = 0;
        while cleaned < count && visited < self.slots.len() {
            if self.clean_hand >= self.slots.len() {
                self.clean_hand = 0;
            }
            let slot = &mut self.slots[self.clean_hand];
            self.clean_hand += 1;
            visited += 1;
            if !slot.dirty {
                continue;
            }
            Self::encode_into(&mut self.kbuf, &slot.key, "key")?;
            Self::encode_into(&mut self.vbuf, &slot.value, "value")?;
            batch.insert(&self.tree, &self.kbuf[..], &self.vbuf[..]);
            self.filter.insert(&self.kbuf);
            if self.tracking {
                self.touched.insert(self.kbuf.as_slice().into());
            }
            slot.dirty = false;
            slot.on_disk = true;
            cleaned += 1;
            // Values grow after they are inserted: measure them as they are written.
            let size = self.kbuf.len() + self.vbuf.len();
            self.observe(size);
        }
        self.dirty_entries -= cleaned;
        if batch.is_empty() {
            return Ok(());
        }
        batch.commit().map_err(|e| self.backend(e))
    }

    /// Writes every dirty cached entry to the tree.
    fn write_back(&mut self) -> Result<(), StateError> {
        self.clean_some(usize::MAX)
    }

    /// Writes every dirty cached entry to the tree as a new sorted table (bulk ingestion: no
    /// journal, no memtable), which also flushes the memtable: afterwards the tables hold the
    /// whole state. For checkpoints; between them, write-backs go through write batches.
    fn write_back_to_tables(&mut self) -> Result<(), StateError> {
        let mut bytes = Vec::new();
        // (key start, key end = value start, value end) in `bytes`
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        for slot in self.slots.iter().filter(|s| s.dirty) {
            let start = bytes.len();
            Self::encode_append(&mut bytes, &slot.key, "key")?;
            let middle = bytes.len();
            Self::encode_append(&mut bytes, &slot.value, "value")?;
            spans.push((start, middle, bytes.len()));
        }
        if spans.is_empty() {
            return self.flush_memtables();
        }
        spans.sort_unstable_by(|a, b| bytes[a.0..a.1].cmp(&bytes[b.0..b.1]));
        let mut ingestion = self.tree.start_ingestion().map_err(|e| self.backend(e))?;
        for &(start, middle, end) in &spans {
            ingestion
                .write(&bytes[start..middle], &bytes[middle..end])
                .map_err(|e| self.backend(e))?;
            self.filter.insert(&bytes[start..middle]);
        }
        ingestion.finish().map_err(|e| self.backend(e))?;
        for slot in self.slots.iter_mut().filter(|s| s.dirty) {
            slot.dirty = false;
            slot.on_disk = true;
        }
        self.dirty_entries = 0;
        Ok(())
    }

    /// Empties cache and tree.
    fn wipe(&mut self) -> Result<(), StateError> {
        self.drop_cache();
        self.tree.clear().map_err(|e| self.backend(e))?;
        self.filter.clear();
        self.len = 0;
        Ok(())
    }

    fn read_all(&mut self) -> Result<Vec<(K, V)>, StateError> {
        self.write_back()?;
        let mut all = Vec::with_capacity(self.len);
        for guard in self.tree.iter() {
            let (k, v) = guard.into_inner().map_err(|e| self.backend(e))?;
            all.push((decode(&k, "key")?, decode(&v, "value")?));
        }
        Ok(all)
    }

    /// Loads a full snapshot into the empty tree. While its keys ascend (as in the full
    /// snapshots of this backend) they are bulk-ingested: sorted tables written directly, no
    /// memtable or journal. From the first key out of order on (snapshots of the in-memory
    /// backend), the rest goes through write batches. A full snapshot holds each key once.
    fn load_full(&mut self, r: &mut SnapshotReader<&mut dyn Read>) -> Result<(), StateError> {
        let backend = |e: fjall::Error| StateError::Backend {
            path: self.db_path.display().to_string(),
            message: e.to_string(),
        };
        let mut entries = 0usize;
        let mut ingestion = Some(self.tree.start_ingestion().map_err(backend)?);
        let mut last: Vec<u8> = Vec::new();
        let mut batch = self.db.batch();
        while let Some(op) = r.next_op()? {
            if op != Op::Put {
                return Err(StateError::Corrupt(
                    "a full snapshot holds a removal or a clear".into(),
                ));
            }
            entries += 1;
            if let Some(ing) = ingestion.as_mut() {
                if entries == 1 || r.key > last {
                    ing.write(&r.key[..], &r.value[..]).map_err(backend)?;
                    self.filter.insert(&r.key);
                    last.clear();
                    last.extend_from_slice(&r.key);
                    continue;
                }
                if let Some(ing) = ingestion.take() {
                    ing.finish().map_err(backend)?;
                }
            }
            batch.insert(&self.tree, &r.key[..], &r.value[..]);
            self.filter.insert(&r.key);
            if batch.len() >= 8192 {
                std::mem::replace(&mut batch, self.db.batch())
                    .commit()
                    .map_err(backend)?;
            }
        }
        if let Some(ing) = ingestion {
            ing.finish().map_err(backend)?;
        }
        batch.commit().map_err(backend)?;
        self.len = entries;
        Ok(())
    }
}

/// A point-in-time view of a [`DiskStore`]'s entries, written as a full snapshot by
/// [`write_to`](Self::write_to) (see [`DiskStore::full_snapshot_view`]). `Send`; it keeps the
/// store's files alive until it is written or dropped.
pub struct SnapshotView {
    // The snapshot and the keyspace drop before the database.
    snapshot: fjall::Snapshot,
    tree: Keyspace,
    #[allow(dead_code)]
    db: Database,
    path: PathBuf,
    _root: Arc<ScratchRoot>,
}

impl SnapshotView {
    /// Writes the full snapshot.
    pub fn write_to(self, out: &mut dyn Write) -> Result<SnapshotStats, StateError> {
        let mut w = SnapshotWriter::new(out, SnapshotKind::Full);
        for guard in self.snapshot.iter(&self.tree) {
            let (k, v) = guard.into_inner().map_err(|e| StateError::Backend {
                path: self.path.display().to_string(),
                message: e.to_string(),
            })?;
            w.put_raw(&k, &v)?;
        }
        w.finish()
    }
}

impl<K: StateKey, V: StateValue> KeyedStore<K, V> for DiskStore<K, V> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<&V> {
        match self.locate(key) {
            Ok(found) => found.map(|i| &self.slots[i].value),
            Err(e) => self.fail(e),
        }
    }

    #[inline]
    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match self.try_get_mut(key) {
            Ok(v) => v,
            Err(e) => panic!("on-disk keyed state failed: {e}"),
        }
    }

    #[inline]
    fn get_or_insert_with<F: FnOnce() -> V>(&mut self, key: &K, default: F) -> &mut V {
        match self.try_get_or_insert_with(key, default) {
            Ok(v) => v,
            Err(e) => panic!("on-disk keyed state failed: {e}"),
        }
    }

    fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.try_insert(key, value).unwrap_or_else(|e| self.fail(e))
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        self.try_remove(key).unwrap_or_else(|e| self.fail(e))
    }

    fn len(&self) -> usize {
        self.len
    }

    fn drain_all(&mut self) -> Vec<(K, V)> {
        let all = self.read_all().unwrap_or_else(|e| self.fail(e));
        self.wipe().unwrap_or_else(|e| self.fail(e));
        if self.tracking {
            self.cleared = true;
            self.touched.clear();
        }
        all
    }

    /// Streams the tree (after writing back the cache), decoding one entry at a time.
    fn for_each(&mut self, f: &mut dyn FnMut(&K, &V)) {
        self.write_back().unwrap_or_else(|e| self.fail(e));
        let visit = |guard: fjall::Guard| -> Result<(), StateError> {
            let (k, v) = guard.into_inner().map_err(|e| self.backend(e))?;
            f(&decode(&k, "key")?, &decode(&v, "value")?);
            Ok(())
        };
        if let Err(e) = self.tree.iter().try_for_each(visit) {
            self.fail(e)
        }
    }

    #[inline]
    fn try_get_mut(&mut self, key: &K) -> Result<Option<&mut V>, StateError> {
        Ok(self.locate(key)?.map(|i| self.dirty_value(i)))
    }

    #[inline]
    fn try_get_or_insert_with<F: FnOnce() -> V>(
        &mut self,
        key: &K,
        default: F,
    ) -> Result<&mut V, StateError> {
        let i = match self.locate(key)? {
            Some(i) => i,
            None => {
                let value = default();
                self.sample_new(key, &value);
                self.len += 1;
                self.push(Slot {
                    key: key.clone(),
                    value,
                    dirty: false,
                    hot: true,
                    on_disk: false,
                })
            }
        };
        Ok(self.dirty_value(i))
    }

    fn try_insert(&mut self, key: K, value: V) -> Result<Option<V>, StateError> {
        if let Some(i) = self.locate(&key)? {
            return Ok(Some(std::mem::replace(self.dirty_value(i), value)));
        }
        self.sample_new(&key, &value);
        self.len += 1;
        let i = self.push(Slot {
            key,
            value,
            dirty: false,
            hot: true,
            on_disk: false,
        });
        self.dirty_value(i);
        Ok(None)
    }

    fn try_remove(&mut self, key: &K) -> Result<Option<V>, StateError> {
        let Some(i) = self.locate(key)? else {
            return Ok(None);
        };
        let slot = self.take_slot(i);
        self.len -= 1;
        if slot.dirty {
            self.dirty_entries -= 1;
        }
        if slot.on_disk {
            self.encode_key(key)?;
            self.tree
                .remove(&self.kbuf[..])
                .map_err(|e| self.backend(e))?;
            if self.tracking {
                self.touched.insert(self.kbuf.as_slice().into());
            }
        }
        Ok(Some(slot.value))
    }

    fn snapshot(
        &mut self,
        kind: SnapshotKind,
        out: &mut dyn Write,
    ) -> Result<SnapshotStats, StateError> {
        if kind == SnapshotKind::Incremental && !self.tracking {
            return Err(StateError::NoBaseSnapshot);
        }
        self.write_back()?;
        let mut w = SnapshotWriter::new(out, kind);
        match kind {
            SnapshotKind::Full => {
                for guard in self.tree.iter() {
                    let (k, v) = guard.into_inner().map_err(|e| self.backend(e))?;
                    w.put_raw(&k, &v)?;
                }
            }
            SnapshotKind::Incremental => {
                if self.cleared {
                    w.clear()?;
                }
                for k in self.touched.iter() {
                    match self.tree.get(k).map_err(|e| self.backend(e))? {
                        Some(v) => w.put_raw(k, &v)?,
                        None => w.delete_raw(k)?,
                    }
                }
            }
        }
        let stats = w.finish()?;
        self.touched.clear();
        self.cleared = false;
        self.tracking = true;
        Ok(stats)
    }

    fn checkpoints_as_files(&self) -> bool {
        true
    }

    fn size_on_disk(&self) -> Option<u64> {
        Some(self.disk_space())
    }

    fn checkpoint_files(&mut self, dir: &Path) -> Result<FileCheckpoint, StateError> {
        DiskStore::checkpoint_files(self, dir)
    }

    fn restore_files(&mut self, dir: &Path) -> Result<(), StateError> {
        DiskStore::restore_files(self, dir)
    }

    fn apply_snapshot_from(&mut self, reader: &mut dyn Read) -> Result<(), StateError> {
        let mut r = SnapshotReader::open(reader)?;
        if r.kind == SnapshotKind::Full {
            self.drop_cache();
            self.wipe()?;
            self.load_full(&mut r)?;
        } else {
            // Cached entries may be stale once the tree changes under them.
            self.write_back()?;
            self.drop_cache();
            while let Some(op) = r.next_op()? {
                match op {
                    Op::Put => {
                        if !self
                            .tree
                            .contains_key(&r.key)
                            .map_err(|e| self.backend(e))?
                        {
                            self.len += 1;
                        }
                        self.tree
                            .insert(&r.key[..], &r.value[..])
                            .map_err(|e| self.backend(e))?;
                        self.filter.insert(&r.key);
                    }
                    Op::Delete => {
                        if self
                            .tree
                            .contains_key(&r.key)
                            .map_err(|e| self.backend(e))?
                        {
                            self.len -= 1;
                            self.tree.remove(&r.key[..]).map_err(|e| self.backend(e))?;
                        }
                    }
                    Op::Clear => self.wipe()?,
                }
            }
        }
        self.touched.clear();
        self.cleared = false;
        self.tracking = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open<K: StateKey, V: StateValue>(dir: &Path, name: &str, budget: usize) -> DiskStore<K, V> {
        DiskStore::open(
            dir.join(name),
            DiskStoreOptions {
                memory_budget: budget,
                worker_threads: 1,
            },
        )
        .unwrap()
    }

    #[test]
    fn evicted_entries_come_back_with_their_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s: DiskStore<u64, u64> = open(dir.path(), "s", 64 * 1024);
        let n = 20_000u64;
        for i in 0..n {
            *s.get_or_insert_with(&i, || 0) += i;
        }
        assert!(s.cached() < n as usize, "the cache must have evicted");
        for i in 0..n {
            *s.get_mut(&i).unwrap() += 1;
        }
        for i in (0..n).rev() {
            assert_eq!(s.get(&i), Some(&(i + 1)), "key {i}");
        }
        assert_eq!(s.len(), n as usize);
        assert_eq!(s.insert(5, 50), Some(6));
        assert_eq!(s.remove(&5), Some(50));
        assert_eq!(s.remove(&5), None);
        assert_eq!(s.get(&5), None);
        assert_eq!(s.len(), n as usize - 1);
        let mut total = 0;
        s.for_each(&mut |_, v| total += *v);
        assert_eq!(
            total,
            (0..n).filter(|&i| i != 5).map(|i| i + 1).sum::<u64>()
        );
        let drained = s.drain_all();
        assert_eq!(drained.len(), n as usize - 1);
        assert!(s.is_empty());
        assert_eq!(s.get(&1), None);
    }

    #[test]
    fn a_foreign_directory_is_refused_and_a_stale_store_wiped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
        let err = DiskStore::<u64, u64>::open(dir.path(), DiskStoreOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("refusing"), "{err}");
        assert!(dir.path().join("precious.txt").exists());

        let path = dir.path().join("store");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join(MARKER), "").unwrap();
        std::fs::write(path.join("stale"), "old").unwrap();
        let mut s = DiskStore::<u64, u64>::open(&path, DiskStoreOptions::default()).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.get(&1), None);
        assert!(!path.join("stale").exists());
    }

    fn sum<S: KeyedStore<u64, u64>>(s: &mut S) -> (usize, u64) {
        let (mut n, mut total) = (0, 0);
        s.for_each(&mut |_, v| {
            n += 1;
            total += *v;
        });
        (n, total)
    }

    #[test]
    fn checkpoints_as_files_restore_what_they_saw_and_stay_put() {
        let dir = tempfile::tempdir().unwrap();
        let n = 30_000u64;
        let mut s: DiskStore<u64, u64> = open(dir.path(), "s", 256 * 1024);
        for i in 0..n {
            *s.get_or_insert_with(&i, || 0) += i;
        }
        let first = dir.path().join("chk-1");
        let stats = s.checkpoint_files(&first).unwrap();
        assert_eq!(stats.entries, n);
        assert!(stats.files >= 4 && stats.bytes > 0, "{stats:?}");
        assert!(
            stats.copied_bytes < stats.bytes / 2,
            "tables are linked, not copied: {stats:?}"
        );
        // Change 1% of the keys, remove one, add one.
        for i in (0..n).step_by(100) {
            *s.get_mut(&i).unwrap() += 1;
        }
        assert_eq!(s.remove(&7), Some(7));
        s.insert(n, 1);
        let second = dir.path().join("chk-2");
        let again = s.checkpoint_files(&second).unwrap();
        assert_eq!(
            stats.new_bytes, stats.bytes,
            "everything is new the first time"
        );
        assert!(
            again.new_bytes < again.bytes,
            "the second shares files with the first: {again:?}"
        );
        // Later changes reach neither checkpoint.
        for i in 0..n {
            s.insert(i, 0);
        }
        drop(s);

        let expected_first = (0..n).sum::<u64>();
        let mut r: DiskStore<u64, u64> = open(dir.path(), "r", 256 * 1024);
        r.restore_files(&first).unwrap();
        assert_eq!(
            (r.len(), sum(&mut r)),
            (n as usize, (n as usize, expected_first))
        );
        r.restore_files(&second).unwrap();
        let expected_second = expected_first + n / 100 - 7 + 1;
        assert_eq!(r.len(), n as usize);
        assert_eq!(sum(&mut r), (n as usize, expected_second));
        assert_eq!(r.get(&7), None);
        assert_eq!(r.get(&100), Some(&101));
        assert_eq!(r.get(&(n + 5)), None);
        // The restored store goes on working, and checkpoints again.
        for i in n..n + 1000 {
            *r.get_or_insert_with(&i, || 0) += 2;
        }
        assert_eq!(r.get(&(n + 999)), Some(&2));
        assert_eq!(r.len(), n as usize + 999);
        let third = dir.path().join("chk-3");
        r.checkpoint_files(&third).unwrap();
        drop(r);

        // The in-memory backend restores from the same files.
        let mut m = crate::MemoryStore::<u64, u64>::new();
        KeyedStore::restore_files(&mut m, &second).unwrap();
        assert_eq!(sum(&mut m), (n as usize, expected_second));
        let mut m = crate::MemoryStore::<u64, u64>::new();
        KeyedStore::restore_files(&mut m, &third).unwrap();
        assert_eq!(m.len(), n as usize + 999);
        assert!(first.join(crate::files::STORE_FILE).exists());
    }

    #[test]
    fn dirty_entries_stay_bounded_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mut s: DiskStore<u64, u64> = open(dir.path(), "s", 1 << 20);
        let n = 50_000u64;
        for round in 0..3 {
            for i in 0..n {
                *s.get_or_insert_with(&i, || 0) += round + 1;
                assert!(
                    s.dirty_entries <= s.dirty_limit + s.dirty_limit / DIRTY_SHARE + 1,
                    "{} dirty of at most {}",
                    s.dirty_entries,
                    s.dirty_limit
                );
            }
        }
        let dirty = s.slots.iter().filter(|slot| slot.dirty).count();
        assert_eq!(dirty, s.dirty_entries, "the count follows the flags");
        assert!(s.cached() > s.dirty_limit, "most cached entries are clean");
        assert_eq!(sum(&mut s), (n as usize, 6 * n));
    }

    /// Where hard links are impossible (another file system), the files are copied.
    #[test]
    fn checkpoints_to_another_file_system_are_copies() {
        let shm = Path::new("/dev/shm");
        let dir = tempfile::tempdir().unwrap();
        let Ok(elsewhere) = tempfile::tempdir_in(shm) else {
            eprintln!("no /dev/shm here: nothing to test");
            return;
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let dev = |p: &Path| std::fs::metadata(p).unwrap().dev();
            if dev(dir.path()) == dev(elsewhere.path()) {
                eprintln!("/dev/shm is on the same file system: nothing to test");
                return;
            }
        }
        let mut s: DiskStore<u64, u64> = open(dir.path(), "s", 256 * 1024);
        for i in 0..5_000u64 {
            s.insert(i, i * 2);
        }
        let chk = elsewhere.path().join("chk");
        let placed = s.checkpoint_files(&chk).unwrap();
        assert_eq!(placed.copied_bytes, placed.bytes, "{placed:?}");
        let mut r: DiskStore<u64, u64> = open(dir.path(), "r", 256 * 1024);
        r.restore_files(&chk).unwrap();
        assert_eq!(sum(&mut r), (5_000, (0..5_000u64).map(|i| i * 2).sum()));
    }

    #[test]
    fn a_checkpoint_directory_must_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut s: DiskStore<u64, u64> = open(dir.path(), "s", 1 << 20);
        s.insert(1, 1);
        std::fs::create_dir_all(dir.path().join("chk")).unwrap();
        std::fs::write(dir.path().join("chk/x"), "x").unwrap();
        let err = s.checkpoint_files(&dir.path().join("chk")).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
    }

    #[test]
    fn scratch_directory_is_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let s: DiskStore<u64, u64> = open(dir.path(), "gone", 1 << 20);
        let path = s.path().to_path_buf();
        assert!(path.exists());
        drop(s);
        assert!(!path.exists());
    }
}
