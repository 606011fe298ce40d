use crate::snapshot::{Op, SnapshotReader, SnapshotWriter, decode};
use crate::{KeyedStore, SnapshotKind, SnapshotStats, StateError, StateKey, StateValue};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use std::hash::BuildHasher;
use std::io::{Read, Write};

struct Slot<K, V> {
    key: K,
    value: V,
    /// Changed since the previous snapshot.
    dirty: bool,
}

/// The in-memory backend: an open-addressing hash table of typed entries (no serialization
/// until a snapshot).
///
/// Change tracking for incremental snapshots costs one flag write per mutable access; removed
/// keys are remembered only once a snapshot has been taken (a job that never checkpoints pays
/// nothing for them).
pub struct MemoryStore<K, V> {
    table: HashTable<Slot<K, V>>,
    hasher: hashbrown::DefaultHashBuilder,
    /// Keys removed since the previous snapshot (kept only while `tracking`).
    removed: hashbrown::HashSet<K>,
    /// Everything was drained since the previous snapshot.
    cleared: bool,
    /// A snapshot or restore happened, so incremental snapshots have a base.
    tracking: bool,
}

impl<K, V> Default for MemoryStore<K, V> {
    fn default() -> Self {
        MemoryStore {
            table: HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            removed: hashbrown::HashSet::new(),
            cleared: false,
            tracking: false,
        }
    }
}

impl<K: StateKey, V: StateValue> MemoryStore<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    fn clear_all(&mut self) {
        self.table.clear();
        self.removed.clear();
        self.cleared = false;
    }

    fn put(&mut self, key: K, value: V, dirty: bool) {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(&key);
        match self
            .table
            .entry(hash, |s| s.key == key, |s| hasher.hash_one(&s.key))
        {
            Entry::Occupied(mut e) => {
                let slot = e.get_mut();
                slot.value = value;
                slot.dirty = dirty;
            }
            Entry::Vacant(e) => {
                e.insert(Slot { key, value, dirty });
            }
        }
    }
}

impl<K: StateKey, V: StateValue> KeyedStore<K, V> for MemoryStore<K, V> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<&V> {
        let hash = self.hasher.hash_one(key);
        self.table.find(hash, |s| s.key == *key).map(|s| &s.value)
    }

    #[inline]
    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let hash = self.hasher.hash_one(key);
        self.table.find_mut(hash, |s| s.key == *key).map(|s| {
            s.dirty = true;
            &mut s.value
        })
    }

    #[inline]
    fn get_or_insert_with<F: FnOnce() -> V>(&mut self, key: &K, default: F) -> &mut V {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(key);
        let slot = match self
            .table
            .entry(hash, |s| s.key == *key, |s| hasher.hash_one(&s.key))
        {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e
                .insert(Slot {
                    key: key.clone(),
                    value: default(),
                    dirty: true,
                })
                .into_mut(),
        };
        slot.dirty = true;
        &mut slot.value
    }

    fn insert(&mut self, key: K, value: V) -> Option<V> {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(&key);
        match self
            .table
            .entry(hash, |s| s.key == key, |s| hasher.hash_one(&s.key))
        {
            Entry::Occupied(mut e) => {
                let slot = e.get_mut();
                slot.dirty = true;
                Some(std::mem::replace(&mut slot.value, value))
            }
            Entry::Vacant(e) => {
                e.insert(Slot {
                    key,
                    value,
                    dirty: true,
                });
                None
            }
        }
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        let hash = self.hasher.hash_one(key);
        match self.table.find_entry(hash, |s| s.key == *key) {
            Ok(e) => {
                let slot = e.remove().0;
                if self.tracking {
                    self.removed.insert(slot.key);
                }
                Some(slot.value)
            }
            Err(_) => None,
        }
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn drain_all(&mut self) -> Vec<(K, V)> {
        if self.tracking {
            self.cleared = true;
            self.removed.clear();
        }
        self.table.drain().map(|s| (s.key, s.value)).collect()
    }

    fn for_each(&mut self, f: &mut dyn FnMut(&K, &V)) {
        for s in self.table.iter() {
            f(&s.key, &s.value);
        }
    }

    fn snapshot(
        &mut self,
        kind: SnapshotKind,
        out: &mut dyn Write,
    ) -> Result<SnapshotStats, StateError> {
        if kind == SnapshotKind::Incremental && !self.tracking {
            return Err(StateError::NoBaseSnapshot);
        }
        let mut w = SnapshotWriter::new(out, kind);
        match kind {
            SnapshotKind::Full => {
                for s in self.table.iter() {
                    w.put(&s.key, &s.value)?;
                }
            }
            SnapshotKind::Incremental => {
                if self.cleared {
                    w.clear()?;
                }
                for key in self.removed.iter() {
                    w.delete(key)?;
                }
                for s in self.table.iter().filter(|s| s.dirty) {
                    w.put(&s.key, &s.value)?;
                }
            }
        }
        let stats = w.finish()?;
        // Only once the snapshot is written does it become the base of the next one.
        for s in self.table.iter_mut() {
            s.dirty = false;
        }
        self.removed.clear();
        self.cleared = false;
        self.tracking = true;
        Ok(stats)
    }

    fn apply_snapshot_from(&mut self, reader: &mut dyn Read) -> Result<(), StateError> {
        let mut r = SnapshotReader::open(reader)?;
        if r.kind == SnapshotKind::Full {
            self.clear_all();
        }
        while let Some(op) = r.next_op()? {
            match op {
                Op::Put => {
                    let key: K = decode(&r.key, "key")?;
                    let value: V = decode(&r.value, "value")?;
                    self.put(key, value, false);
                }
                Op::Delete => {
                    let key: K = decode(&r.key, "key")?;
                    let hash = self.hasher.hash_one(&key);
                    if let Ok(e) = self.table.find_entry(hash, |s| s.key == key) {
                        e.remove();
                    }
                }
                Op::Clear => self.table.clear(),
            }
        }
        self.removed.clear();
        self.cleared = false;
        self.tracking = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_drain() {
        let mut s = MemoryStore::<String, u64>::new();
        assert_eq!(s.insert("a".into(), 1), None);
        assert_eq!(s.insert("a".into(), 2), Some(1));
        *s.get_or_insert_with(&"b".to_string(), || 10) += 1;
        *s.get_or_insert_with(&"b".to_string(), || 100) += 1;
        assert_eq!(s.get(&"b".to_string()), Some(&12));
        assert_eq!(s.len(), 2);
        assert_eq!(s.remove(&"a".to_string()), Some(2));
        assert_eq!(s.remove(&"a".to_string()), None);
        let mut seen = Vec::new();
        s.for_each(&mut |k, v| seen.push((k.clone(), *v)));
        assert_eq!(seen, vec![("b".to_string(), 12)]);
        assert_eq!(s.drain_all(), vec![("b".to_string(), 12)]);
        assert!(s.is_empty());
    }

    fn snap(s: &mut MemoryStore<u32, u32>, kind: SnapshotKind) -> (Vec<u8>, SnapshotStats) {
        let mut out = Vec::new();
        let stats = s.snapshot(kind, &mut out).unwrap();
        (out, stats)
    }

    #[test]
    fn incremental_holds_only_changes() {
        let mut s = MemoryStore::<u32, u32>::new();
        for i in 0..100 {
            s.insert(i, i);
        }
        let (_, full) = snap(&mut s, SnapshotKind::Full);
        assert_eq!(full.entries, 100);
        // Reads do not dirty; get_mut, get_or_insert_with and insert do.
        assert_eq!(s.get(&1), Some(&1));
        *s.get_mut(&2).unwrap() += 1;
        *s.get_or_insert_with(&3, || 0) += 1;
        s.insert(4, 40);
        s.remove(&5);
        let (_, inc) = snap(&mut s, SnapshotKind::Incremental);
        assert_eq!((inc.entries, inc.removals), (3, 1));
        let (_, again) = snap(&mut s, SnapshotKind::Incremental);
        assert_eq!((again.entries, again.removals), (0, 0));
    }

    #[test]
    fn incremental_without_base_is_refused() {
        let mut s = MemoryStore::<u32, u32>::new();
        s.insert(1, 1);
        let err = s
            .snapshot(SnapshotKind::Incremental, &mut Vec::new())
            .unwrap_err();
        assert!(matches!(err, StateError::NoBaseSnapshot));
        // Removals before the first snapshot are not remembered.
        s.remove(&1);
        assert!(s.removed.is_empty());
    }

    #[test]
    fn drain_then_refill_restores_exactly() {
        let mut s = MemoryStore::<u32, u32>::new();
        for i in 0..10 {
            s.insert(i, i);
        }
        let (base, _) = snap(&mut s, SnapshotKind::Full);
        s.drain_all();
        s.insert(100, 1);
        let (delta, _) = snap(&mut s, SnapshotKind::Incremental);
        let mut r = MemoryStore::<u32, u32>::new();
        r.restore(&[base, delta]).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r.get(&100), Some(&1));
    }

    #[test]
    fn restore_needs_a_full_snapshot_first() {
        let mut s = MemoryStore::<u32, u32>::new();
        snap(&mut s, SnapshotKind::Full);
        let (delta, _) = snap(&mut s, SnapshotKind::Incremental);
        let mut r = MemoryStore::<u32, u32>::new();
        let err = r.restore(&[delta]).unwrap_err();
        assert!(err.to_string().contains("must be a full one"), "{err}");
        let empty: [Vec<u8>; 0] = [];
        assert!(matches!(r.restore(&empty), Err(StateError::BadChain(_))));
    }

    #[test]
    fn wrong_types_are_a_decode_error_not_a_panic() {
        let mut s = MemoryStore::<String, String>::new();
        s.insert("k".into(), "v".into());
        let mut out = Vec::new();
        s.snapshot(SnapshotKind::Full, &mut out).unwrap();
        let mut r = MemoryStore::<u64, u64>::new();
        let err = r.restore(&[out]).unwrap_err();
        assert!(matches!(err, StateError::Decode { .. }), "{err}");
    }
}
