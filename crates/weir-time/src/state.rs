//! Keyed state types with an optional time-to-live, over `weir-state`'s [`KeyedStore`].
//!
//! [`ValueState`], [`MapState`] and [`ListState`] hold one value, one map or one list per key.
//! The key is passed to every call (an operator usually has it at hand: the `key()` of a
//! [`KeyedContext`](crate::KeyedContext)). With a [`Ttl`], an entry expires a fixed time after
//! it was last written; an expired entry reads as absent and is removed when it is touched, or
//! by [`ValueState::purge_expired`] (and its counterparts) for entries nobody touches again.
//!
//! The clock of a TTL is chosen per state:
//! - **processing time** ([`Ttl::processing_time`], like Flink's state TTL): the entry is stamped
//!   with the processing time of the write and expires once the processing time reaches
//!   stamp + TTL;
//! - **event time** ([`Ttl::event_time`]): the entry is stamped with the event time of the write
//!   (the timestamp of the record or timer being handled) and expires once the *watermark*
//!   reaches stamp + TTL, so results do not depend on how fast the input is replayed.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::Duration;
use weir_core::{OperatorContext, OperatorError, Timestamp};
use weir_state::{AnyStore, KeyedStore, MemoryStore, StateKey, StateValue};

/// A family of keyed stores: lets an operator that needs stores of several key and value types
/// be generic over the state backend.
pub trait Backend: Send + 'static {
    type Store<K: StateKey, V: StateValue>: KeyedStore<K, V> + Default;

    /// The operator instance's store, opened in `open`: on the job's state backend for
    /// [`JobBackend`]; `None` keeps the default store.
    fn open_store<K: StateKey, V: StateValue>(
        _ctx: &OperatorContext,
    ) -> Result<Option<Self::Store<K, V>>, OperatorError> {
        Ok(None)
    }

    /// One of several named stores of the operator instance (a keyed process function's
    /// states), opened in `open`: on the job's state backend for [`JobBackend`]; `None` keeps
    /// the default store.
    fn open_named_store<K: StateKey, V: StateValue>(
        _ctx: &OperatorContext,
        _name: &str,
    ) -> Result<Option<Self::Store<K, V>>, OperatorError> {
        Ok(None)
    }
}

/// The in-memory backend ([`MemoryStore`]); the default everywhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct InMemory;

impl Backend for InMemory {
    type Store<K: StateKey, V: StateValue> = MemoryStore<K, V>;
}

/// The job's state backend (`Config::state`, the YAML's `settings.state`): an operator's
/// store is opened with [`OperatorContext::keyed_store`] (or, for each of a process
/// function's states, [`OperatorContext::keyed_store_named`]), in memory or on disk, and an
/// on-disk store is checkpointed as files.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobBackend;

impl Backend for JobBackend {
    type Store<K: StateKey, V: StateValue> = AnyStore<K, V>;

    fn open_store<K: StateKey, V: StateValue>(
        ctx: &OperatorContext,
    ) -> Result<Option<AnyStore<K, V>>, OperatorError> {
        ctx.keyed_store().map(Some)
    }

    fn open_named_store<K: StateKey, V: StateValue>(
        ctx: &OperatorContext,
        name: &str,
    ) -> Result<Option<AnyStore<K, V>>, OperatorError> {
        ctx.keyed_store_named(name).map(Some)
    }
}

/// Which clock a timer or a TTL follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeDomain {
    /// The watermark (event time).
    EventTime,
    /// The job's clock (`Config::clock`).
    ProcessingTime,
}

/// The times a state access needs to stamp and expire entries. Implemented by the keyed process
/// context, by `weir_core::OperatorContext` (event time = watermark) and by [`FixedTime`].
pub trait StateTime {
    fn processing_time(&self) -> Timestamp;
    fn watermark(&self) -> Timestamp;
    /// The event time of what is being handled (a record's timestamp, a timer's time).
    fn event_time(&self) -> Timestamp;
}

impl StateTime for OperatorContext {
    fn processing_time(&self) -> Timestamp {
        OperatorContext::processing_time(self)
    }
    fn watermark(&self) -> Timestamp {
        OperatorContext::watermark(self)
    }
    fn event_time(&self) -> Timestamp {
        OperatorContext::watermark(self)
    }
}

/// Times given explicitly (tests, code outside an operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FixedTime {
    pub processing_time: Timestamp,
    pub watermark: Timestamp,
    pub event_time: Timestamp,
}

impl StateTime for FixedTime {
    fn processing_time(&self) -> Timestamp {
        self.processing_time
    }
    fn watermark(&self) -> Timestamp {
        self.watermark
    }
    fn event_time(&self) -> Timestamp {
        self.event_time
    }
}

/// How long state entries live after their last write; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    ms: Timestamp,
    domain: TimeDomain,
}

impl Ttl {
    /// Expires `ttl` of processing time after the last write.
    pub fn processing_time(ttl: Duration) -> Self {
        Ttl {
            ms: crate::time::millis(ttl),
            domain: TimeDomain::ProcessingTime,
        }
    }

    /// Expires when the watermark passes the last write's event time + `ttl`.
    pub fn event_time(ttl: Duration) -> Self {
        Ttl {
            ms: crate::time::millis(ttl),
            domain: TimeDomain::EventTime,
        }
    }

    pub fn domain(&self) -> TimeDomain {
        self.domain
    }

    fn stamp(&self, time: &impl StateTime) -> Timestamp {
        match self.domain {
            TimeDomain::ProcessingTime => time.processing_time(),
            TimeDomain::EventTime => time.event_time(),
        }
    }

    fn now(&self, time: &impl StateTime) -> Timestamp {
        match self.domain {
            TimeDomain::ProcessingTime => time.processing_time(),
            TimeDomain::EventTime => time.watermark(),
        }
    }
}

/// A value with the time of its last write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Stamped<V> {
    value: V,
    written: Timestamp,
}

/// When entries are stamped and whether they expired.
#[derive(Debug, Clone, Copy)]
struct Expiry(Option<Ttl>);

impl Expiry {
    #[inline]
    fn stamp(&self, time: &impl StateTime) -> Timestamp {
        self.0.map_or(0, |ttl| ttl.stamp(time))
    }

    #[inline]
    fn expired(&self, written: Timestamp, time: &impl StateTime) -> bool {
        self.0
            .is_some_and(|ttl| ttl.now(time) >= written.saturating_add(ttl.ms))
    }
}

/// One value per key.
///
/// ```
/// use std::time::Duration;
/// use weir_time::{FixedTime, Ttl, ValueState};
///
/// let mut last_seen = ValueState::<String, i64>::with_ttl(Ttl::processing_time(Duration::from_secs(60)));
/// let at = |ms| FixedTime { processing_time: ms, ..FixedTime::default() };
/// last_seen.set("ann".to_string(), 7, &at(0));
/// assert_eq!(last_seen.get(&"ann".to_string(), &at(59_999)), Some(&7));
/// assert_eq!(last_seen.get(&"ann".to_string(), &at(60_000)), None, "expired");
/// ```
pub struct ValueState<K: StateKey, V: StateValue, B: Backend = InMemory> {
    store: B::Store<K, Stamped<V>>,
    expiry: Expiry,
    _k: PhantomData<fn() -> (K, V)>,
}

impl<K: StateKey, V: StateValue, B: Backend> Default for ValueState<K, V, B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: StateKey, V: StateValue, B: Backend> ValueState<K, V, B> {
    /// State whose entries never expire.
    pub fn new() -> Self {
        ValueState {
            store: Default::default(),
            expiry: Expiry(None),
            _k: PhantomData,
        }
    }

    pub fn with_ttl(ttl: Ttl) -> Self {
        ValueState {
            expiry: Expiry(Some(ttl)),
            ..Self::new()
        }
    }

    /// Removes `key`'s entry if it expired; whether an entry remains.
    fn live(&mut self, key: &K, time: &impl StateTime) -> bool {
        let expired = match self.store.get(key) {
            None => return false,
            Some(e) => self.expiry.expired(e.written, time),
        };
        if expired {
            self.store.remove(key);
        }
        !expired
    }

    pub fn get(&mut self, key: &K, time: &impl StateTime) -> Option<&V> {
        if !self.live(key, time) {
            return None;
        }
        self.store.get(key).map(|e| &e.value)
    }

    /// Sets the value (and restarts its TTL).
    pub fn set(&mut self, key: K, value: V, time: &impl StateTime) {
        let written = self.expiry.stamp(time);
        self.store.insert(key, Stamped { value, written });
    }

    /// The value for `key`, created with `default` if absent or expired; counts as a write (the
    /// TTL restarts).
    pub fn get_or_insert_with(
        &mut self,
        key: &K,
        time: &impl StateTime,
        default: impl FnOnce() -> V,
    ) -> &mut V {
        self.live(key, time);
        let written = self.expiry.stamp(time);
        let entry = self.store.get_or_insert_with(key, || Stamped {
            value: default(),
            written,
        });
        entry.written = written;
        &mut entry.value
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.store.remove(key).map(|e| e.value)
    }

    /// Removes every expired entry; returns how many.
    pub fn purge_expired(&mut self, time: &impl StateTime) -> usize {
        let mut expired = Vec::new();
        let expiry = self.expiry;
        self.store.for_each(&mut |k, e| {
            if expiry.expired(e.written, time) {
                expired.push(k.clone());
            }
        });
        for k in &expired {
            self.store.remove(k);
        }
        expired.len()
    }

    /// Keys held, including expired entries not purged yet.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }
}

/// A map per key; each map entry has its own TTL.
///
/// ```
/// use weir_time::{FixedTime, MapState};
///
/// let mut pages = MapState::<u32, String, u64>::new();
/// let now = FixedTime::default();
/// pages.insert(1, "/home".into(), 3, &now);
/// pages.insert(1, "/cart".into(), 1, &now);
/// assert_eq!(pages.get(&1, &"/home".to_string(), &now), Some(&3));
/// let mut all: Vec<_> = pages.entries(&1, &now).into_iter().map(|(k, v)| (k.clone(), *v)).collect();
/// all.sort();
/// assert_eq!(all, vec![("/cart".to_string(), 1), ("/home".to_string(), 3)]);
/// ```
pub struct MapState<K: StateKey, UK: StateKey, UV: StateValue, B: Backend = InMemory> {
    store: B::Store<K, HashMap<UK, Stamped<UV>>>,
    expiry: Expiry,
}

impl<K: StateKey, UK: StateKey, UV: StateValue, B: Backend> Default for MapState<K, UK, UV, B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: StateKey, UK: StateKey, UV: StateValue, B: Backend> MapState<K, UK, UV, B> {
    pub fn new() -> Self {
        MapState {
            store: Default::default(),
            expiry: Expiry(None),
        }
    }

    pub fn with_ttl(ttl: Ttl) -> Self {
        MapState {
            expiry: Expiry(Some(ttl)),
            ..Self::new()
        }
    }

    /// Drops the expired entries of `key`'s map (and the map when it becomes empty).
    fn prune(&mut self, key: &K, time: &impl StateTime) {
        if self.expiry.0.is_none() {
            return;
        }
        let expiry = self.expiry;
        let empty = match self.store.get_mut(key) {
            None => return,
            Some(map) => {
                map.retain(|_, e| !expiry.expired(e.written, time));
                map.is_empty()
            }
        };
        if empty {
            self.store.remove(key);
        }
    }

    pub fn get(&mut self, key: &K, user_key: &UK, time: &impl StateTime) -> Option<&UV> {
        self.prune(key, time);
        self.store
            .get(key)
            .and_then(|m| m.get(user_key))
            .map(|e| &e.value)
    }

    pub fn insert(&mut self, key: K, user_key: UK, value: UV, time: &impl StateTime) {
        let written = self.expiry.stamp(time);
        self.store
            .get_or_insert_with(&key, HashMap::new)
            .insert(user_key, Stamped { value, written });
    }

    pub fn remove(&mut self, key: &K, user_key: &UK) -> Option<UV> {
        let map = self.store.get_mut(key)?;
        let removed = map.remove(user_key).map(|e| e.value);
        if map.is_empty() {
            self.store.remove(key);
        }
        removed
    }

    /// The live entries of `key`'s map, in no particular order.
    pub fn entries(&mut self, key: &K, time: &impl StateTime) -> Vec<(&UK, &UV)> {
        self.prune(key, time);
        match self.store.get(key) {
            Some(map) => map.iter().map(|(k, e)| (k, &e.value)).collect(),
            None => Vec::new(),
        }
    }

    /// Removes `key`'s whole map.
    pub fn clear(&mut self, key: &K) {
        self.store.remove(key);
    }

    /// Removes every expired entry of every key; returns how many entries.
    pub fn purge_expired(&mut self, time: &impl StateTime) -> usize {
        let mut keys = Vec::new();
        self.store.for_each(&mut |k, _| keys.push(k.clone()));
        let mut removed = 0;
        let expiry = self.expiry;
        for k in keys {
            let empty = match self.store.get_mut(&k) {
                Some(map) => {
                    let before = map.len();
                    map.retain(|_, e| !expiry.expired(e.written, time));
                    removed += before - map.len();
                    map.is_empty()
                }
                None => false,
            };
            if empty {
                self.store.remove(&k);
            }
        }
        removed
    }
}

/// A list per key; each element has its own TTL.
///
/// ```
/// use std::time::Duration;
/// use weir_time::{FixedTime, ListState, Ttl};
///
/// let mut recent = ListState::<u32, char>::with_ttl(Ttl::event_time(Duration::from_secs(10)));
/// let at = |event_time, watermark| FixedTime { event_time, watermark, processing_time: 0 };
/// recent.push(1, 'a', &at(0, 0));
/// recent.push(1, 'b', &at(5_000, 0));
/// assert_eq!(recent.get(&1, &at(0, 9_999)), vec![&'a', &'b']);
/// // The watermark passed 0 + 10 s: 'a' expired, 'b' (written at 5 s) lives until 15 s.
/// assert_eq!(recent.get(&1, &at(0, 10_000)), vec![&'b']);
/// ```
pub struct ListState<K: StateKey, V: StateValue, B: Backend = InMemory> {
    store: B::Store<K, Vec<Stamped<V>>>,
    expiry: Expiry,
}

impl<K: StateKey, V: StateValue, B: Backend> Default for ListState<K, V, B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: StateKey, V: StateValue, B: Backend> ListState<K, V, B> {
    pub fn new() -> Self {
        ListState {
            store: Default::default(),
            expiry: Expiry(None),
        }
    }

    pub fn with_ttl(ttl: Ttl) -> Self {
        ListState {
            expiry: Expiry(Some(ttl)),
            ..Self::new()
        }
    }

    fn prune(&mut self, key: &K, time: &impl StateTime) {
        if self.expiry.0.is_none() {
            return;
        }
        let expiry = self.expiry;
        let empty = match self.store.get_mut(key) {
            None => return,
            Some(list) => {
                list.retain(|e| !expiry.expired(e.written, time));
                list.is_empty()
            }
        };
        if empty {
            self.store.remove(key);
        }
    }

    pub fn push(&mut self, key: K, value: V, time: &impl StateTime) {
        let written = self.expiry.stamp(time);
        self.store
            .get_or_insert_with(&key, Vec::new)
            .push(Stamped { value, written });
    }

    /// The live elements of `key`'s list, oldest first.
    pub fn get(&mut self, key: &K, time: &impl StateTime) -> Vec<&V> {
        self.prune(key, time);
        match self.store.get(key) {
            Some(list) => list.iter().map(|e| &e.value).collect(),
            None => Vec::new(),
        }
    }

    /// Removes and returns `key`'s live elements.
    pub fn take(&mut self, key: &K, time: &impl StateTime) -> Vec<V> {
        self.prune(key, time);
        self.store
            .remove(key)
            .map(|list| list.into_iter().map(|e| e.value).collect())
            .unwrap_or_default()
    }

    pub fn clear(&mut self, key: &K) {
        self.store.remove(key);
    }

    /// Removes every expired element of every key; returns how many.
    pub fn purge_expired(&mut self, time: &impl StateTime) -> usize {
        let mut keys = Vec::new();
        self.store.for_each(&mut |k, _| keys.push(k.clone()));
        let mut removed = 0;
        let expiry = self.expiry;
        for k in keys {
            let empty = match self.store.get_mut(&k) {
                Some(list) => {
                    let before = list.len();
                    list.retain(|e| !expiry.expired(e.written, time));
                    removed += before - list.len();
                    list.is_empty()
                }
                None => false,
            };
            if empty {
                self.store.remove(&k);
            }
        }
        removed
    }
}

/// Keyed state saved in and restored from checkpoints: a process function calls these from its
/// [`KeyedProcessFunction::snapshot`](crate::KeyedProcessFunction::snapshot) and
/// [`restore`](crate::KeyedProcessFunction::restore), with one distinct `name` per state.
///
/// A state on [`JobBackend`] is opened first, in
/// [`KeyedProcessFunction::open`](crate::KeyedProcessFunction::open), with
/// [`open`](Self::open): its store then lives on the job's state backend (on disk under that
/// name with `backend: disk`) and is checkpointed as files there.
pub trait CheckpointedStore {
    /// Opens the state's store on its backend under `name` (one per state of an operator),
    /// replacing the empty default one; a no-op for [`InMemory`]. Call it before anything is
    /// stored and before [`restore`](Self::restore).
    fn open(
        &mut self,
        ctx: &weir_core::OperatorContext,
        name: &str,
    ) -> Result<(), weir_core::OperatorError>;
    fn save(
        &mut self,
        ctx: &mut weir_core::OperatorContext,
        name: &str,
    ) -> Result<(), weir_core::OperatorError>;
    fn restore(
        &mut self,
        ctx: &mut weir_core::OperatorContext,
        name: &str,
    ) -> Result<(), weir_core::OperatorError>;
}

/// Every state type keeps its entries in one keyed store, `store`.
macro_rules! checkpointed_store {
    ($ty:ident<$($p:ident: $bound:ident),*>) => {
        impl<$($p: $bound,)* B: Backend> CheckpointedStore for $ty<$($p,)* B> {
            fn open(
                &mut self,
                ctx: &weir_core::OperatorContext,
                name: &str,
            ) -> Result<(), weir_core::OperatorError> {
                if let Some(store) = B::open_named_store(ctx, name)? {
                    self.store = store;
                }
                Ok(())
            }
            fn save(
                &mut self,
                ctx: &mut weir_core::OperatorContext,
                name: &str,
            ) -> Result<(), weir_core::OperatorError> {
                weir_core::state::save_keyed(&mut self.store, ctx, name)
            }
            fn restore(
                &mut self,
                ctx: &mut weir_core::OperatorContext,
                name: &str,
            ) -> Result<(), weir_core::OperatorError> {
                weir_core::state::restore_keyed(&mut self.store, ctx, name)
            }
        }
    };
}

checkpointed_store!(ValueState<K: StateKey, V: StateValue>);
checkpointed_store!(MapState<K: StateKey, UK: StateKey, UV: StateValue>);
checkpointed_store!(ListState<K: StateKey, V: StateValue>);

#[cfg(test)]
mod tests {
    use super::*;

    fn processing(ms: Timestamp) -> FixedTime {
        FixedTime {
            processing_time: ms,
            ..FixedTime::default()
        }
    }

    fn event(event_time: Timestamp, watermark: Timestamp) -> FixedTime {
        FixedTime {
            processing_time: 0,
            watermark,
            event_time,
        }
    }

    #[test]
    fn value_state_without_ttl_never_expires() {
        let mut s = ValueState::<u8, u8>::new();
        s.set(1, 10, &processing(0));
        assert_eq!(s.get(&1, &processing(i64::MAX)), Some(&10));
        assert_eq!(s.purge_expired(&processing(i64::MAX)), 0);
    }

    #[test]
    fn a_write_restarts_the_processing_time_ttl() {
        let mut s = ValueState::<u8, u8>::with_ttl(Ttl::processing_time(Duration::from_secs(1)));
        s.set(1, 10, &processing(0));
        *s.get_or_insert_with(&1, &processing(900), || 0) += 1;
        assert_eq!(s.get(&1, &processing(1_899)), Some(&11));
        assert_eq!(s.get(&1, &processing(1_900)), None);
        assert!(s.is_empty(), "reading an expired entry removes it");
        // After expiry the default is used again.
        assert_eq!(*s.get_or_insert_with(&1, &processing(2_000), || 5), 5);
    }

    #[test]
    fn event_time_ttl_follows_the_watermark_not_the_clock() {
        let mut s = ValueState::<u8, u8>::with_ttl(Ttl::event_time(Duration::from_secs(1)));
        s.set(1, 10, &event(5_000, 0));
        let late_clock = FixedTime {
            processing_time: i64::MAX,
            watermark: 5_999,
            event_time: 0,
        };
        assert_eq!(s.get(&1, &late_clock), Some(&10));
        assert_eq!(s.get(&1, &event(0, 6_000)), None);
    }

    #[test]
    fn purge_removes_only_expired_entries() {
        let mut s = ValueState::<u8, u8>::with_ttl(Ttl::processing_time(Duration::from_secs(1)));
        s.set(1, 1, &processing(0));
        s.set(2, 2, &processing(500));
        assert_eq!(s.purge_expired(&processing(1_000)), 1);
        assert_eq!(s.len(), 1);
        assert_eq!(s.get(&2, &processing(1_000)), Some(&2));
    }

    #[test]
    fn map_state_entries_expire_one_by_one() {
        let mut s =
            MapState::<u8, char, u8>::with_ttl(Ttl::processing_time(Duration::from_secs(1)));
        s.insert(1, 'a', 1, &processing(0));
        s.insert(1, 'b', 2, &processing(600));
        assert_eq!(s.entries(&1, &processing(999)).len(), 2);
        assert_eq!(s.get(&1, &'a', &processing(1_000)), None);
        assert_eq!(s.get(&1, &'b', &processing(1_000)), Some(&2));
        assert_eq!(s.purge_expired(&processing(1_600)), 1);
        assert!(s.entries(&1, &processing(1_600)).is_empty());
        assert_eq!(s.remove(&1, &'b'), None);
    }

    #[test]
    fn list_state_keeps_order_and_expires_old_elements() {
        let mut s = ListState::<u8, u8>::with_ttl(Ttl::processing_time(Duration::from_secs(1)));
        s.push(1, 1, &processing(0));
        s.push(1, 2, &processing(500));
        s.push(1, 3, &processing(700));
        assert_eq!(s.get(&1, &processing(600)), vec![&1, &2, &3]);
        assert_eq!(s.take(&1, &processing(1_100)), vec![2, 3]);
        assert!(s.get(&1, &processing(1_100)).is_empty());
        s.push(2, 9, &processing(0));
        assert_eq!(s.purge_expired(&processing(5_000)), 1);
    }
}
