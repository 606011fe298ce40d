//! A TTL cache of successful results on `tokio::time`.
//!
//! Why not moka: moka's expiry reads its own clock (quanta / `std::time`), which tokio's paused
//! test clock cannot drive, so TTL behaviour could only be tested with real sleeps. With one TTL
//! for all entries, insertion order is expiry order, so a FIFO queue per shard gives both expiry
//! and the size bound in O(1) amortised.

use crate::error::ConfigError;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// Results cached for a fixed time-to-live, at most `max_entries` of them (oldest evicted
/// first). Clones share the entries.
///
/// Attach it to a policy with [`Policy::with_cache`](crate::Policy::with_cache); only successful
/// results are stored, and a hit neither calls the operation nor takes a rate-limit token.
///
/// ```
/// use std::time::Duration;
/// use weir_resilience::Cache;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let cache: Cache<String, u32> = Cache::new(Duration::from_secs(60));
/// cache.insert("a".to_string(), 1);
/// assert_eq!(cache.get("a"), Some(1));
/// tokio::time::advance(Duration::from_secs(60)).await;
/// assert_eq!(cache.get("a"), None);
/// # });
/// ```
pub struct Cache<K, V> {
    shared: Arc<Shared<K, V>>,
}

impl<K, V> Clone for Cache<K, V> {
    fn clone(&self) -> Self {
        Cache {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<K, V> {
    ttl: Duration,
    max_entries: usize,
    per_shard: usize,
    shards: Box<[Mutex<Shard<K, V>>]>,
    hasher: ahash::RandomState,
    hits: AtomicU64,
    misses: AtomicU64,
}

struct Shard<K, V> {
    map: HashMap<K, Entry<V>, ahash::RandomState>,
    /// Insertion (= expiry) order; an item whose generation differs from the map entry's is stale.
    order: VecDeque<(K, u64)>,
    generation: u64,
}

struct Entry<V> {
    value: V,
    expires: Instant,
    generation: u64,
}

/// Default bound on the number of entries.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// A cache whose entries live for `ttl`, with at most 10 000 entries.
    pub fn new(ttl: Duration) -> Self {
        Self::build(ttl, DEFAULT_MAX_ENTRIES)
    }

    /// The same cache bounded to `max_entries` (at least 1) instead; entries already cached are
    /// dropped.
    pub fn max_entries(self, max_entries: usize) -> Self {
        Self::build(self.shared.ttl, max_entries)
    }

    fn build(ttl: Duration, max_entries: usize) -> Self {
        let max_entries = max_entries.max(1);
        // Small caches get one shard so the bound is exact; large ones spread lock contention.
        let shards = (max_entries / 1024).clamp(1, 16);
        let per_shard = max_entries.div_ceil(shards);
        let hasher = ahash::RandomState::new();
        Cache {
            shared: Arc::new(Shared {
                ttl,
                max_entries,
                per_shard,
                shards: (0..shards)
                    .map(|_| {
                        Mutex::new(Shard {
                            map: HashMap::with_hasher(hasher.clone()),
                            order: VecDeque::new(),
                            generation: 0,
                        })
                    })
                    .collect(),
                hasher,
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
            }),
        }
    }

    /// The time-to-live.
    pub fn ttl(&self) -> Duration {
        self.shared.ttl
    }

    /// The bound on entries.
    pub fn capacity(&self) -> usize {
        self.shared.max_entries
    }

    /// The live value under `key`, if any (counts a hit or a miss).
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let found = self.peek(key);
        let counter = if found.is_some() {
            &self.shared.hits
        } else {
            &self.shared.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The live value under `key`, without counting a hit or a miss.
    pub(crate) fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = Instant::now();
        let mut shard = self.shard(key);
        match shard.map.get(key) {
            Some(entry) if entry.expires > now => Some(entry.value.clone()),
            Some(_) => {
                shard.map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Counts a lookup answered from the cache (or by another caller's result it waited for).
    pub(crate) fn count_hit(&self) {
        self.shared.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a lookup the cache could not answer (a call is made).
    pub(crate) fn count_miss(&self) {
        self.shared.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Stores `value` under `key` for the TTL, replacing any earlier value.
    pub fn insert(&self, key: K, value: V) {
        let now = Instant::now();
        let per_shard = self.shared.per_shard;
        let mut guard = self.shard(&key);
        let shard = &mut *guard;
        // Drop expired entries from the front (the queue is in expiry order).
        while let Some((k, generation)) = shard.order.front() {
            match shard.map.get(k) {
                Some(e) if e.generation == *generation && e.expires > now => break,
                Some(e) if e.generation == *generation => {
                    shard.map.remove(k);
                }
                _ => {}
            }
            shard.order.pop_front();
        }
        // Make room by evicting the oldest live entries.
        let replacing = shard.map.contains_key(&key);
        while !replacing && shard.map.len() >= per_shard {
            let Some((k, generation)) = shard.order.pop_front() else {
                break;
            };
            if shard
                .map
                .get(&k)
                .is_some_and(|e| e.generation == generation)
            {
                shard.map.remove(&k);
            }
        }
        shard.generation += 1;
        let generation = shard.generation;
        shard.order.push_back((key.clone(), generation));
        shard.map.insert(
            key,
            Entry {
                value,
                expires: now + self.shared.ttl,
                generation,
            },
        );
    }

    /// Removes `key`'s entry.
    pub fn invalidate<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).map.remove(key);
    }

    /// Number of entries held, live or expired-but-not-yet-dropped.
    pub fn len(&self) -> usize {
        self.shared.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// True if no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups that found a live value.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::Relaxed)
    }

    /// Lookups that found nothing (or an expired value).
    pub fn misses(&self) -> u64 {
        self.shared.misses.load(Ordering::Relaxed)
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> MutexGuard<'_, Shard<K, V>> {
        let shards = &self.shared.shards;
        let index = if shards.len() == 1 {
            0
        } else {
            (self.shared.hasher.hash_one(key) % shards.len() as u64) as usize
        };
        lock(&shards[index])
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.shared.ttl.is_zero() {
            return Err(ConfigError::invalid(
                "cache.ttl",
                "a duration longer than zero",
                "0s",
            ));
        }
        Ok(())
    }
}

impl<K, V> std::fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("ttl", &self.shared.ttl)
            .field("max_entries", &self.shared.max_entries)
            .field("hits", &self.shared.hits.load(Ordering::Relaxed))
            .field("misses", &self.shared.misses.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves the shard consistent between statements that can panic (none do
    // except allocation), so a poisoned lock still holds usable data.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let cache = Cache::new(Duration::from_secs(10));
        cache.insert(1, "one");
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(cache.get(&1), Some("one"));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(cache.get(&1), None);
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn oldest_entry_is_evicted_at_capacity() {
        let cache = Cache::new(Duration::from_secs(10)).max_entries(2);
        cache.insert(1, 1);
        cache.insert(2, 2);
        cache.insert(1, 10); // replacing does not evict
        assert_eq!(cache.len(), 2);
        // Key 1's first queue item is stale, so the oldest live entry is key 2.
        cache.insert(3, 3);
        assert_eq!(cache.get(&2), None);
        assert_eq!(cache.get(&1), Some(10));
        assert_eq!(cache.get(&3), Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_dropped_on_insert() {
        // One shard (small bound), so the insert below sees every expired entry.
        let cache = Cache::new(Duration::from_secs(1)).max_entries(500);
        for i in 0..100 {
            cache.insert(i, i);
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        cache.insert(1000, 0);
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn large_caches_keep_their_bound() {
        let cache = Cache::new(Duration::from_secs(60)).max_entries(4096);
        for i in 0..20_000u32 {
            cache.insert(i, i);
        }
        assert!(cache.len() <= 4096, "{} entries", cache.len());
        assert!(cache.len() > 3000, "{} entries", cache.len());
    }
}
