//! Weir's keyed state.
//!
//! Operators never hold per-key state in their own maps: they reach it through [`KeyedStore`],
//! so that the backend (in memory here, on disk for state larger than memory) and its
//! snapshots are the runtime's business, not each operator's. Operators are generic over the
//! store type, so a state access is a direct, inlinable call, not a virtual one.

mod memory;

pub use memory::MemoryStore;

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::hash::Hash;

/// Key types usable in keyed state. Serializable, because checkpoints and the on-disk backend
/// store them.
pub trait StateKey: Hash + Eq + Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Hash + Eq + Clone + Send + Serialize + DeserializeOwned + 'static> StateKey for T {}

/// Value types usable in keyed state.
pub trait StateValue: Send + Serialize + DeserializeOwned + 'static {}
impl<T: Send + Serialize + DeserializeOwned + 'static> StateValue for T {}

/// A map from keys to values, owned by one operator instance.
///
/// Methods take `&mut self` even to read, so that a backend may load entries from disk into
/// a cache on access.
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
    #[error("corrupt state: {0}")]
    Corrupt(String),
}
