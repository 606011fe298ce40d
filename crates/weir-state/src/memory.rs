use crate::{KeyedStore, StateKey, StateValue};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use std::hash::BuildHasher;

/// The in-memory backend: an open-addressing hash table of typed entries (no serialization).
pub struct MemoryStore<K, V> {
    table: HashTable<(K, V)>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl<K, V> Default for MemoryStore<K, V> {
    fn default() -> Self {
        MemoryStore {
            table: HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
        }
    }
}

impl<K: StateKey, V: StateValue> MemoryStore<K, V> {
    pub fn new() -> Self {
        Self::default()
    }
}

impl<K: StateKey, V: StateValue> KeyedStore<K, V> for MemoryStore<K, V> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<&V> {
        let hash = self.hasher.hash_one(key);
        self.table.find(hash, |(k, _)| k == key).map(|(_, v)| v)
    }

    #[inline]
    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let hash = self.hasher.hash_one(key);
        self.table.find_mut(hash, |(k, _)| k == key).map(|(_, v)| v)
    }

    #[inline]
    fn get_or_insert_with<F: FnOnce() -> V>(&mut self, key: &K, default: F) -> &mut V {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(key);
        match self
            .table
            .entry(hash, |(k, _)| k == key, |(k, _)| hasher.hash_one(k))
        {
            Entry::Occupied(e) => &mut e.into_mut().1,
            Entry::Vacant(e) => &mut e.insert((key.clone(), default())).into_mut().1,
        }
    }

    fn insert(&mut self, key: K, value: V) -> Option<V> {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(&key);
        match self
            .table
            .entry(hash, |(k, _)| *k == key, |(k, _)| hasher.hash_one(k))
        {
            Entry::Occupied(mut e) => Some(std::mem::replace(&mut e.get_mut().1, value)),
            Entry::Vacant(e) => {
                e.insert((key, value));
                None
            }
        }
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        let hash = self.hasher.hash_one(key);
        match self.table.find_entry(hash, |(k, _)| k == key) {
            Ok(e) => Some(e.remove().0.1),
            Err(_) => None,
        }
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn drain_all(&mut self) -> Vec<(K, V)> {
        self.table.drain().collect()
    }

    fn for_each(&mut self, f: &mut dyn FnMut(&K, &V)) {
        for (k, v) in self.table.iter() {
            f(k, v);
        }
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
}
