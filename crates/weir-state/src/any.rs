//! Choosing the backend at run time: configuration, a factory, and an enum store.

use crate::{
    DiskStore, DiskStoreOptions, FileCheckpoint, KeyedStore, MemoryStore, SnapshotKind,
    SnapshotStats, StateError, StateKey, StateValue,
};
use serde::{Deserialize, Deserializer, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const DEFAULT_BUDGET: u64 = 64 * 1024 * 1024;

fn default_budget() -> u64 {
    DEFAULT_BUDGET
}

/// Where a job keeps its keyed state.
///
/// ```
/// use weir_state::StateBackend;
///
/// let disk: StateBackend =
///     serde_json::from_str(r#"{"kind": "disk", "path": "/var/lib/weir/state", "memory_budget": "256 MiB"}"#)?;
/// assert_eq!(disk, StateBackend::Disk { path: "/var/lib/weir/state".into(), memory_budget: 256 << 20 });
/// let memory: StateBackend = serde_json::from_str(r#"{"kind": "memory"}"#)?;
/// assert_eq!(memory, StateBackend::Memory {});
/// assert!(serde_json::from_str::<StateBackend>(r#"{"kind": "disk", "path": "x", "budget": 1}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StateBackend {
    /// In memory (the default): fastest, for state that fits in memory.
    Memory {},
    /// On disk, for state larger than memory: each operator instance gets a store in
    /// `path/<operator>-<instance>`.
    Disk {
        path: PathBuf,
        /// Memory per store (one per operator instance, one per named state of a keyed
        /// process function), in bytes; in configuration files also a string such as
        /// `"256 MiB"` (units B, KB, MB, GB, KiB, MiB, GiB). Default 64 MiB.
        #[serde(default = "default_budget", deserialize_with = "byte_size")]
        memory_budget: u64,
    },
}

impl Default for StateBackend {
    fn default() -> Self {
        StateBackend::Memory {}
    }
}

/// Reads a byte count from a number or a string with a unit.
fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(text) => parse_bytes(&text).map_err(serde::de::Error::custom),
    }
}

fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("memory_budget: expected a size like \"256 MiB\", found {text:?}"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        other => {
            return Err(format!(
                "memory_budget: unknown unit {other:?} in {text:?} (expected B, KB, MB, GB, KiB, MiB or GiB)"
            ));
        }
    };
    Ok((number * scale as f64) as u64)
}

/// Builds the stores of operator instances from a [`StateBackend`].
///
/// ```
/// use weir_state::{KeyedStore, StateBackend, StoreFactory};
///
/// let dir = tempfile::tempdir()?;
/// let factory = StoreFactory::new(StateBackend::Disk { path: dir.path().into(), memory_budget: 1 << 20 });
/// let mut counts = factory.create::<String, u64>("count words", 0)?;
/// *counts.get_or_insert_with(&"w1".to_string(), || 0) += 1;
/// assert!(dir.path().join("count%20words-0").is_dir());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct StoreFactory {
    backend: StateBackend,
}

impl StoreFactory {
    pub fn new(backend: StateBackend) -> Self {
        StoreFactory { backend }
    }

    pub fn backend(&self) -> &StateBackend {
        &self.backend
    }

    /// An empty store for one operator instance.
    pub fn create<K: StateKey, V: StateValue>(
        &self,
        operator: &str,
        instance: usize,
    ) -> Result<AnyStore<K, V>, StateError> {
        self.open(format!("{}-{instance}", file_name(operator)))
    }

    /// An empty store for one of several states of one operator instance (a keyed process
    /// function's value, map and list states): on disk in `path/<operator>-<instance>~<state>`,
    /// a directory no other operator or state shares (`~` is escaped in names).
    ///
    /// ```
    /// use weir_state::{KeyedStore, StateBackend, StoreFactory};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let factory = StoreFactory::new(StateBackend::Disk { path: dir.path().into(), memory_budget: 1 << 20 });
    /// let mut seen = factory.create_named::<String, u64>("dedup", "seen", 1)?;
    /// seen.insert("a".to_string(), 1);
    /// assert!(dir.path().join("dedup-1~seen").is_dir());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_named<K: StateKey, V: StateValue>(
        &self,
        operator: &str,
        state: &str,
        instance: usize,
    ) -> Result<AnyStore<K, V>, StateError> {
        self.open(format!(
            "{}-{instance}~{}",
            file_name(operator),
            file_name(state)
        ))
    }

    fn open<K: StateKey, V: StateValue>(
        &self,
        dir_name: String,
    ) -> Result<AnyStore<K, V>, StateError> {
        match &self.backend {
            StateBackend::Memory {} => Ok(AnyStore::Memory(MemoryStore::new())),
            StateBackend::Disk {
                path,
                memory_budget,
            } => {
                let dir = path.join(dir_name);
                let options = DiskStoreOptions {
                    memory_budget: usize::try_from(*memory_budget).unwrap_or(usize::MAX),
                    ..DiskStoreOptions::default()
                };
                Ok(AnyStore::Disk(DiskStore::open(dir, options)?))
            }
        }
    }
}

/// An operator name as a file name: letters, digits, `-`, `_` and `.` stay; other bytes
/// become `%XX`, so distinct names stay distinct.
fn file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// A store whose backend is chosen at run time. Each call is one `match` (predictable, so
/// nearly free) and then the backend's inlined method.
// One per operator instance and never moved in bulk: boxing the larger variant would only add
// an indirection to every access.
#[allow(clippy::large_enum_variant)]
pub enum AnyStore<K, V> {
    Memory(MemoryStore<K, V>),
    Disk(DiskStore<K, V>),
}

/// An empty in-memory store, until an operator opens its store on the job's backend.
impl<K: StateKey, V: StateValue> Default for AnyStore<K, V> {
    fn default() -> Self {
        AnyStore::Memory(MemoryStore::new())
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Memory($s) => $e,
            AnyStore::Disk($s) => $e,
        }
    };
}

impl<K: StateKey, V: StateValue> KeyedStore<K, V> for AnyStore<K, V> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<&V> {
        each!(self, s => s.get(key))
    }
    #[inline]
    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        each!(self, s => s.get_mut(key))
    }
    #[inline]
    fn get_or_insert_with<F: FnOnce() -> V>(&mut self, key: &K, default: F) -> &mut V {
        each!(self, s => s.get_or_insert_with(key, default))
    }
    #[inline]
    fn insert(&mut self, key: K, value: V) -> Option<V> {
        each!(self, s => s.insert(key, value))
    }
    #[inline]
    fn remove(&mut self, key: &K) -> Option<V> {
        each!(self, s => s.remove(key))
    }
    fn len(&self) -> usize {
        each!(self, s => s.len())
    }
    fn drain_all(&mut self) -> Vec<(K, V)> {
        each!(self, s => s.drain_all())
    }
    fn for_each(&mut self, f: &mut dyn FnMut(&K, &V)) {
        each!(self, s => s.for_each(f))
    }
    #[inline]
    fn try_get_mut(&mut self, key: &K) -> Result<Option<&mut V>, StateError> {
        each!(self, s => s.try_get_mut(key))
    }
    #[inline]
    fn try_get_or_insert_with<F: FnOnce() -> V>(
        &mut self,
        key: &K,
        default: F,
    ) -> Result<&mut V, StateError> {
        each!(self, s => s.try_get_or_insert_with(key, default))
    }
    fn try_insert(&mut self, key: K, value: V) -> Result<Option<V>, StateError> {
        each!(self, s => s.try_insert(key, value))
    }
    fn try_remove(&mut self, key: &K) -> Result<Option<V>, StateError> {
        each!(self, s => s.try_remove(key))
    }
    fn snapshot(
        &mut self,
        kind: SnapshotKind,
        out: &mut dyn Write,
    ) -> Result<SnapshotStats, StateError> {
        each!(self, s => s.snapshot(kind, out))
    }
    fn apply_snapshot_from(&mut self, reader: &mut dyn Read) -> Result<(), StateError> {
        each!(self, s => s.apply_snapshot_from(reader))
    }
    fn checkpoints_as_files(&self) -> bool {
        each!(self, s => s.checkpoints_as_files())
    }
    fn size_on_disk(&self) -> Option<u64> {
        each!(self, s => s.size_on_disk())
    }
    fn checkpoint_files(&mut self, dir: &Path) -> Result<FileCheckpoint, StateError> {
        each!(self, s => s.checkpoint_files(dir))
    }
    fn restore_files(&mut self, dir: &Path) -> Result<(), StateError> {
        each!(self, s => s.restore_files(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("256 MiB").unwrap(), 256 << 20);
        assert_eq!(parse_bytes("1.5GB").unwrap(), 1_500_000_000);
        let err = parse_bytes("12 parsecs").unwrap_err();
        assert!(err.contains("unknown unit"), "{err}");
    }

    #[test]
    fn backend_defaults_and_rejects_unknown_fields() {
        let b: StateBackend = serde_json::from_str(r#"{"kind":"disk","path":"p"}"#).unwrap();
        assert_eq!(
            b,
            StateBackend::Disk {
                path: "p".into(),
                memory_budget: DEFAULT_BUDGET
            }
        );
        let err = serde_json::from_str::<StateBackend>(r#"{"kind":"memory","path":"p"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
        let err = serde_json::from_str::<StateBackend>(r#"{"kind":"rocksdb"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rocksdb"), "{err}");
        assert_eq!(StateBackend::default(), StateBackend::Memory {});
    }

    #[test]
    fn names_become_distinct_file_names() {
        assert_eq!(file_name("count_words-2.x"), "count_words-2.x");
        assert_eq!(file_name("a b"), "a%20b");
        assert_ne!(file_name("a b"), file_name("a_b"));
        assert_eq!(file_name("../etc"), "%2E.%2Fetc");
        assert_eq!(file_name(""), "%00");
    }

    #[test]
    fn factory_builds_the_configured_backend() {
        let memory = StoreFactory::default().create::<u32, u32>("op", 0).unwrap();
        assert!(matches!(memory, AnyStore::Memory(_)));
        let dir = tempfile::tempdir().unwrap();
        let f = StoreFactory::new(StateBackend::Disk {
            path: dir.path().into(),
            memory_budget: 1 << 20,
        });
        let mut a = f.create::<u32, u32>("op", 0).unwrap();
        let mut b = f.create::<u32, u32>("op", 1).unwrap();
        assert!(matches!(a, AnyStore::Disk(_)));
        a.insert(1, 1);
        assert_eq!(b.get(&1), None, "instances do not share state");
        assert!(dir.path().join("op-0").is_dir() && dir.path().join("op-1").is_dir());
    }
}
