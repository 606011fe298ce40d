//! Joins: window join and interval join of two keyed streams, and enrichment against a table
//! (loaded from a file, or kept from a keyed stream as the latest value per key).
//!
//! The two-stream joins tag both inputs into one [`Either`] stream, merge them (`union`, so the
//! join's watermark is the minimum of both sides'), partition the merged stream by key, and
//! run one keyed operator that buffers each side per key. Watermarks clean the buffers up. An
//! event later than the watermark when it arrives (its `time` is below the watermark) cannot
//! be joined reliably any more: it goes to the `late` output.

use crate::error::TimeError;
use crate::state::{Backend, JobBackend};
use crate::time::{Either, HasTime, Timestamped, Window, millis};
use crate::window::{WindowFn, WindowOperator, WindowSpec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use weir_core::{
    BEFORE_TIME, Data, END_OF_TIME, KeyedStream, Operator, OperatorContext, OperatorError, Stream,
    Timestamp,
};
use weir_state::{KeyedStore, StateKey, StateValue};

/// Which records an enrichment join emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinKind {
    /// Only records whose key is in the table; the others are left out (inner join).
    Inner,
    /// Every record; the join function gets `None` when the key is not in the table.
    Left,
}

/// The outputs of a join: the joined records, and the input events that came too late.
pub struct JoinOutput<O, L> {
    pub joined: Stream<O>,
    pub late: Stream<L>,
}

/// A read-only table for enrichment joins, shared by every parallel instance (no copy per
/// instance, no lock).
///
/// ```
/// use weir_time::Table;
///
/// let plans = Table::from_rows([(1, "free"), (2, "pro"), (1, "team")]);
/// assert_eq!(plans.get(&1), Some(&"team"), "a later row replaces an earlier one");
/// assert_eq!(plans.len(), 2);
/// ```
pub struct Table<K, V> {
    rows: Arc<HashMap<K, V>>,
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        Table {
            rows: self.rows.clone(),
        }
    }
}

impl<K: Hash + Eq, V> Table<K, V> {
    /// A table from `(key, row)` pairs; a later row replaces an earlier one with the same key.
    pub fn from_rows(rows: impl IntoIterator<Item = (K, V)>) -> Self {
        Table {
            rows: Arc::new(rows.into_iter().collect()),
        }
    }

    /// Loads a file of JSON lines, one row per line (blank lines skipped); `key_of` gives a
    /// row's key, `None` for a row without one (an error naming the line). A later row
    /// replaces an earlier one with the same key.
    ///
    /// ```
    /// use weir_time::Table;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct User { id: u32, name: String }
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("users.jsonl");
    /// std::fs::write(&path, "{\"id\":1,\"name\":\"ann\"}\n\n{\"id\":2,\"name\":\"bob\"}\n").unwrap();
    /// let users = Table::load_json_lines(&path, |u: &User| Some(u.id)).unwrap();
    /// assert_eq!(users.get(&2).map(|u| u.name.as_str()), Some("bob"));
    ///
    /// std::fs::write(&path, "{\"id\":1,\"name\":\"ann\"}\n{\"id\":\"x\"}\n").unwrap();
    /// let err = Table::load_json_lines(&path, |u: &User| Some(u.id)).err().unwrap();
    /// assert!(err.to_string().contains("line 2"), "{err}");
    /// ```
    pub fn load_json_lines(
        path: impl AsRef<Path>,
        key_of: impl Fn(&V) -> Option<K>,
    ) -> Result<Self, TimeError>
    where
        V: DeserializeOwned,
    {
        let path = path.as_ref();
        let io = |source| TimeError::TableIo {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut rows = HashMap::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            let row_error = |message: String| TimeError::TableRow {
                path: path.to_path_buf(),
                line: i as u64 + 1,
                message,
            };
            let row: V = serde_json::from_str(&line).map_err(|e| row_error(e.to_string()))?;
            let key = key_of(&row).ok_or_else(|| row_error("the row has no key".into()))?;
            rows.insert(key, row);
        }
        Ok(Table {
            rows: Arc::new(rows),
        })
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.rows.get(key)
    }

    /// Every row, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.rows.iter()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Looks every record's key up in a table.
struct Enrich<K, V, KF, J> {
    table: Table<K, V>,
    key_of: KF,
    kind: JoinKind,
    join: J,
}

impl<T, K, V, O, KF, J> Operator<T, O> for Enrich<K, V, KF, J>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    KF: Fn(&T) -> K + Send + 'static,
    J: FnMut(T, Option<&V>) -> O + Send + 'static,
{
    #[inline]
    fn process(
        &mut self,
        input: &mut Vec<T>,
        out: &mut Vec<O>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        for record in input.drain(..) {
            let row = self.table.get(&(self.key_of)(&record));
            if row.is_some() || self.kind == JoinKind::Left {
                out.push((self.join)(record, row));
            }
        }
        Ok(())
    }
}

/// Enrichment of any stream against a [`Table`].
pub trait EnrichExt<T: Data> {
    /// Joins every record with the table row of its key; `join` builds the output from the
    /// record and the row (`None` when the key is not in the table, with [`JoinKind::Left`]).
    /// Runs in the task of the operator before it; the table is shared, not copied.
    ///
    /// ```
    /// use weir_core::Environment;
    /// use weir_time::prelude::*;
    ///
    /// let plans = Table::from_rows([("ann", "pro")]);
    /// let env = Environment::local();
    /// let views = env.from_iter(vec![("ann", "/a"), ("bob", "/b")]);
    /// let left = views
    ///     .enrich(&plans, |v| v.0, JoinKind::Left, |v, plan| (v.1, plan.copied()))
    ///     .collect();
    /// let inner = views
    ///     .enrich(&plans, |v| v.0, JoinKind::Inner, |v, plan| (v.1, plan.copied()))
    ///     .collect();
    /// env.execute().unwrap();
    /// assert_eq!(left.take(), vec![("/a", Some("pro")), ("/b", None)]);
    /// assert_eq!(inner.take(), vec![("/a", Some("pro"))]);
    /// ```
    fn enrich<K, V, O, KF, J>(
        &self,
        table: &Table<K, V>,
        key_of: KF,
        kind: JoinKind,
        join: J,
    ) -> Stream<O>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Send + Sync + 'static,
        O: Data,
        KF: Fn(&T) -> K + Clone + Send + 'static,
        J: FnMut(T, Option<&V>) -> O + Clone + Send + 'static;
}

impl<T: Data> EnrichExt<T> for Stream<T> {
    fn enrich<K, V, O, KF, J>(
        &self,
        table: &Table<K, V>,
        key_of: KF,
        kind: JoinKind,
        join: J,
    ) -> Stream<O>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Send + Sync + 'static,
        O: Data,
        KF: Fn(&T) -> K + Clone + Send + 'static,
        J: FnMut(T, Option<&V>) -> O + Clone + Send + 'static,
    {
        let table = table.clone();
        self.transform("enrich", move || Enrich {
            table: table.clone(),
            key_of: key_of.clone(),
            kind,
            join: join.clone(),
        })
    }
}

/// An event of either side of a two-stream join (the type of a join's `late` output).
pub type Tagged<L, R> = Either<Timestamped<L>, Timestamped<R>>;

/// Both sides of a two-stream join as one stream, partitioned by the sides' keys.
#[allow(clippy::type_complexity)]
fn tag_both<K, L, R, FL, FR>(
    left: &KeyedStream<K, Timestamped<L>, FL>,
    right: &KeyedStream<K, Timestamped<R>, FR>,
) -> KeyedStream<K, Tagged<L, R>, impl Fn(&Tagged<L, R>) -> K + Clone + Send + 'static>
where
    K: StateKey + Hash,
    L: Data,
    R: Data,
    FL: Fn(&Timestamped<L>) -> K + Clone + Send + 'static,
    FR: Fn(&Timestamped<R>) -> K + Clone + Send + 'static,
{
    let l = left
        .stream()
        .map(Either::<Timestamped<L>, Timestamped<R>>::Left)
        .name("join_left");
    let r = right
        .stream()
        .map(Either::<Timestamped<L>, Timestamped<R>>::Right)
        .name("join_right");
    let (fl, fr) = (left.key_fn().clone(), right.key_fn().clone());
    l.union(&[r])
        .name("join_inputs")
        .key_by(move |e: &Tagged<L, R>| match e {
            Either::Left(l) => fl(l),
            Either::Right(r) => fr(r),
        })
}

/// The window join's window function: both sides' elements, paired when the window closes.
struct PairFn<J>(J);

impl<K, L, R, O, J> WindowFn<K, Tagged<L, R>> for PairFn<J>
where
    L: StateValue + Clone,
    R: StateValue + Clone,
    O: Send + 'static,
    J: FnMut(&L, &R) -> O + Send + 'static,
{
    type Acc = (Vec<Timestamped<L>>, Vec<Timestamped<R>>);
    type Out = O;
    fn init(&self) -> Self::Acc {
        (Vec::new(), Vec::new())
    }
    fn add(&self, acc: &mut Self::Acc, item: Tagged<L, R>) {
        match item {
            Either::Left(l) => acc.0.push(l),
            Either::Right(r) => acc.1.push(r),
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc) {
        acc.0.extend_from_slice(&other.0);
        acc.1.extend_from_slice(&other.1);
    }
    fn emit<Late>(&mut self, _: &K, _: Window, acc: &Self::Acc, out: &mut Vec<Result<O, Late>>) {
        for l in &acc.0 {
            for r in &acc.1 {
                out.push(Ok((self.0)(&l.item, &r.item)));
            }
        }
    }
}

/// Saves a join's keyed buffers, its pending times and its watermark in the checkpoint.
fn save_keyed_and_times<K: StateKey, V: StateValue, S: KeyedStore<K, V>>(
    store: &mut S,
    times: &BTreeMap<Timestamp, Vec<K>>,
    watermark: Timestamp,
    ctx: &mut OperatorContext,
    name: &str,
) -> Result<(), OperatorError> {
    if !ctx.checkpointing() {
        return Ok(());
    }
    weir_core::state::save_keyed(store, ctx, name)?;
    let times: Vec<(Timestamp, Vec<K>)> = times.iter().map(|(t, k)| (*t, k.clone())).collect();
    weir_core::state::save_binary(ctx, &format!("{name}_times"), &(watermark, times))
}

/// Loads what [`save_keyed_and_times`] saved (nothing on a fresh start).
fn restore_keyed_and_times<K: StateKey, V: StateValue, S: KeyedStore<K, V>>(
    store: &mut S,
    times: &mut BTreeMap<Timestamp, Vec<K>>,
    watermark: &mut Timestamp,
    ctx: &mut OperatorContext,
    name: &str,
) -> Result<(), OperatorError> {
    weir_core::state::restore_keyed(store, ctx, name)?;
    let saved = weir_core::state::restore_binary::<(Timestamp, Vec<(Timestamp, Vec<K>)>)>(
        ctx,
        &format!("{name}_times"),
    )?;
    if let Some((w, pending)) = saved {
        *watermark = w;
        *times = pending.into_iter().collect();
    }
    Ok(())
}

/// Buffers of the interval join for one key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Buffers<L, R> {
    left: Vec<Timestamped<L>>,
    right: Vec<Timestamped<R>>,
}

impl<L, R> Default for Buffers<L, R> {
    fn default() -> Self {
        Buffers {
            left: Vec::new(),
            right: Vec::new(),
        }
    }
}

/// Joins a left event at `t` with the right events in `[t - before, t + after]`.
struct IntervalJoin<K: StateKey, L: StateValue, R: StateValue, KF, J, B: Backend> {
    key_of: KF,
    join: J,
    before: Timestamp,
    after: Timestamp,
    buffers: B::Store<K, Buffers<L, R>>,
    /// When a key may have buffered events to drop.
    cleanup: BTreeMap<Timestamp, Vec<K>>,
    watermark: Timestamp,
}

impl<K, L, R, O, KF, J, B> Operator<Tagged<L, R>, Result<O, Tagged<L, R>>>
    for IntervalJoin<K, L, R, KF, J, B>
where
    K: StateKey,
    L: StateValue + Clone,
    R: StateValue + Clone,
    O: Send + 'static,
    KF: Fn(&Tagged<L, R>) -> K + Send + 'static,
    J: FnMut(&L, &R) -> O + Send + 'static,
    B: Backend,
{
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        if let Some(store) = B::open_store(ctx)? {
            self.buffers = store;
        }
        restore_keyed_and_times(
            &mut self.buffers,
            &mut self.cleanup,
            &mut self.watermark,
            ctx,
            "interval",
        )
    }

    fn snapshot(
        &mut self,
        _: weir_core::CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        save_keyed_and_times(
            &mut self.buffers,
            &self.cleanup,
            self.watermark,
            ctx,
            "interval",
        )
    }

    fn process(
        &mut self,
        input: &mut Vec<Tagged<L, R>>,
        out: &mut Vec<Result<O, Tagged<L, R>>>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let (before, after) = (self.before, self.after);
        for item in input.drain(..) {
            if item.time() < self.watermark {
                out.push(Err(item));
                continue;
            }
            let key = (self.key_of)(&item);
            let buffers = self.buffers.get_or_insert_with(&key, Buffers::default);
            let expires = match item {
                Either::Left(l) => {
                    let (lo, hi) = (l.time.saturating_sub(before), l.time.saturating_add(after));
                    for r in buffers
                        .right
                        .iter()
                        .filter(|r| lo <= r.time && r.time <= hi)
                    {
                        out.push(Ok((self.join)(&l.item, &r.item)));
                    }
                    let expires = hi.saturating_add(1);
                    buffers.left.push(l);
                    expires
                }
                Either::Right(r) => {
                    let (lo, hi) = (r.time.saturating_sub(after), r.time.saturating_add(before));
                    for l in buffers.left.iter().filter(|l| lo <= l.time && l.time <= hi) {
                        out.push(Ok((self.join)(&l.item, &r.item)));
                    }
                    let expires = hi.saturating_add(1);
                    buffers.right.push(r);
                    expires
                }
            };
            self.cleanup.entry(expires).or_default().push(key);
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        _: &mut Vec<Result<O, Tagged<L, R>>>,
        _: &mut OperatorContext,
    ) -> Result<Option<Timestamp>, OperatorError> {
        self.watermark = self.watermark.max(watermark);
        let (before, after) = (self.before, self.after);
        while let Some(entry) = self.cleanup.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            for key in entry.remove() {
                let empty = match self.buffers.get_mut(&key) {
                    None => continue,
                    Some(b) => {
                        // A left event can still meet right events up to `time + after`; a
                        // right event left events down to `time - before`... i.e. `time + before`
                        // from the left's point of view.
                        b.left
                            .retain(|l| l.time.saturating_add(after).saturating_add(1) > watermark);
                        b.right.retain(|r| {
                            r.time.saturating_add(before).saturating_add(1) > watermark
                        });
                        b.left.is_empty() && b.right.is_empty()
                    }
                };
                if empty {
                    self.buffers.remove(&key);
                }
            }
        }
        Ok(Some(watermark))
    }
}

/// Per key: records waiting for the watermark, and the table's versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Versions<T, V> {
    pending: Vec<Timestamped<T>>,
    /// Sorted by time, one per time.
    versions: Vec<Timestamped<V>>,
}

impl<T, V> Default for Versions<T, V> {
    fn default() -> Self {
        Versions {
            pending: Vec::new(),
            versions: Vec::new(),
        }
    }
}

/// Joins each record with the table value of its key as of the record's event time.
struct LatestJoin<K: StateKey, T: StateValue, V: StateValue, KF, J, B: Backend> {
    key_of: KF,
    join: J,
    kind: JoinKind,
    state: B::Store<K, Versions<T, V>>,
    /// When a key has pending records to release.
    due: BTreeMap<Timestamp, Vec<K>>,
    watermark: Timestamp,
}

/// Drops the versions no record at or after `watermark` can need: all but the last one before
/// the watermark, and the newer ones.
fn prune_versions<V>(versions: &mut Vec<Timestamped<V>>, watermark: Timestamp) {
    let before = versions.partition_point(|v| v.time < watermark);
    if before > 1 {
        versions.drain(..before - 1);
    }
}

impl<K, T, V, O, KF, J, B> Operator<Tagged<T, V>, Result<O, Timestamped<T>>>
    for LatestJoin<K, T, V, KF, J, B>
where
    K: StateKey,
    T: StateValue,
    V: StateValue,
    O: Send + 'static,
    KF: Fn(&Tagged<T, V>) -> K + Send + 'static,
    J: FnMut(T, Option<&V>) -> O + Send + 'static,
    B: Backend,
{
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        if let Some(store) = B::open_store(ctx)? {
            self.state = store;
        }
        restore_keyed_and_times(
            &mut self.state,
            &mut self.due,
            &mut self.watermark,
            ctx,
            "latest",
        )
    }

    fn snapshot(
        &mut self,
        _: weir_core::CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        save_keyed_and_times(&mut self.state, &self.due, self.watermark, ctx, "latest")
    }

    fn process(
        &mut self,
        input: &mut Vec<Tagged<T, V>>,
        out: &mut Vec<Result<O, Timestamped<T>>>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        for item in input.drain(..) {
            let key = (self.key_of)(&item);
            match item {
                Either::Left(record) => {
                    if record.time < self.watermark {
                        out.push(Err(record));
                        continue;
                    }
                    let release = record.time.saturating_add(1);
                    self.state
                        .get_or_insert_with(&key, Versions::default)
                        .pending
                        .push(record);
                    self.due.entry(release).or_default().push(key);
                }
                Either::Right(version) => {
                    let state = self.state.get_or_insert_with(&key, Versions::default);
                    let at = state.versions.partition_point(|v| v.time < version.time);
                    match state.versions.get_mut(at) {
                        Some(v) if v.time == version.time => *v = version,
                        _ => state.versions.insert(at, version),
                    }
                    prune_versions(&mut state.versions, self.watermark);
                }
            }
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Vec<Result<O, Timestamped<T>>>,
        _: &mut OperatorContext,
    ) -> Result<Option<Timestamp>, OperatorError> {
        self.watermark = self.watermark.max(watermark);
        while let Some(entry) = self.due.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            for key in entry.remove() {
                let Some(state) = self.state.get_mut(&key) else {
                    continue;
                };
                if state.pending.is_empty() {
                    continue;
                }
                state.pending.sort_by_key(|r| r.time);
                let ready = state.pending.partition_point(|r| r.time < watermark);
                for record in state.pending.drain(..ready) {
                    let at = state.versions.partition_point(|v| v.time <= record.time);
                    let version = at.checked_sub(1).map(|i| &state.versions[i].item);
                    if version.is_some() || self.kind == JoinKind::Left {
                        out.push(Ok((self.join)(record.item, version)));
                    }
                }
                prune_versions(&mut state.versions, watermark);
            }
        }
        Ok(Some(watermark))
    }

    fn close(
        &mut self,
        out: &mut Vec<Result<O, Timestamped<T>>>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        self.on_watermark(END_OF_TIME, out, ctx).map(|_| ())
    }
}

/// Joins of two keyed, timestamped streams.
pub trait KeyedJoinExt<K, L> {
    /// Pairs the left and right events of each key that fall into the same window; `join` is
    /// called for every pair when the window closes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_core::Environment;
    /// use weir_time::prelude::*;
    ///
    /// let env = Environment::local();
    /// let clicks = env
    ///     .from_iter(vec![(1u32, 100i64), (2, 200), (1, 1_500)])
    ///     .assign_timestamps(|c| c.1, Watermarks::ascending())
    ///     .key_by(|c| c.0);
    /// let views = env
    ///     .from_iter(vec![(1u32, 50i64), (3, 60)])
    ///     .assign_timestamps(|v| v.1, Watermarks::ascending())
    ///     .key_by(|v| v.0);
    /// let out = clicks.window_join(&views, Tumbling::of(Duration::from_secs(1)), |c, v| (c.0, c.1, v.1));
    /// let joined = out.joined.collect();
    /// env.execute().unwrap();
    /// // Key 1 meets in [0, 1000) only; keys 2 and 3 have one side each.
    /// assert_eq!(joined.take(), vec![(1, 100, 50)]);
    /// ```
    fn window_join<R, FR, O, J>(
        &self,
        right: &KeyedStream<K, Timestamped<R>, FR>,
        window: WindowSpec,
        join: J,
    ) -> JoinOutput<O, Tagged<L, R>>
    where
        R: Data + StateValue,
        FR: Fn(&Timestamped<R>) -> K + Clone + Send + 'static,
        O: Data,
        J: FnMut(&L, &R) -> O + Clone + Send + 'static;

    /// Pairs each left event at `t` with the right events of its key at times in
    /// `[t - before, t + after]` (both bounds included), as soon as both have arrived.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_core::Environment;
    /// use weir_time::prelude::*;
    ///
    /// let env = Environment::local();
    /// // (order id, event time)
    /// let orders = env
    ///     .from_iter(vec![(1u32, 1_000i64), (2, 5_000)])
    ///     .assign_timestamps(|o| o.1, Watermarks::ascending())
    ///     .key_by(|o| o.0);
    /// let payments = env
    ///     .from_iter(vec![(1u32, 1_800i64), (2, 9_000)])
    ///     .assign_timestamps(|p| p.1, Watermarks::ascending())
    ///     .key_by(|p| p.0);
    /// let paid = orders.interval_join(&payments, Duration::ZERO, Duration::from_secs(1), |o, p| (o.0, p.1 - o.1));
    /// let joined = paid.joined.collect();
    /// env.execute().unwrap();
    /// assert_eq!(joined.take(), vec![(1, 800)]); // order 2 was paid 4 s later: no match
    /// ```
    fn interval_join<R, FR, O, J>(
        &self,
        right: &KeyedStream<K, Timestamped<R>, FR>,
        before: Duration,
        after: Duration,
        join: J,
    ) -> JoinOutput<O, Tagged<L, R>>
    where
        R: Data + StateValue,
        FR: Fn(&Timestamped<R>) -> K + Clone + Send + 'static,
        O: Data,
        J: FnMut(&L, &R) -> O + Clone + Send + 'static;

    /// [`interval_join`](KeyedJoinExt::interval_join) with signed bounds, as Flink writes
    /// them: each left event at `t` meets the right events of its key at times in
    /// `[t + lower, t + upper]` (milliseconds, both bounds included; `lower <= upper`, either
    /// may be negative).
    fn interval_join_between<R, FR, O, J>(
        &self,
        right: &KeyedStream<K, Timestamped<R>, FR>,
        lower: Timestamp,
        upper: Timestamp,
        join: J,
    ) -> JoinOutput<O, Tagged<L, R>>
    where
        R: Data + StateValue,
        FR: Fn(&Timestamped<R>) -> K + Clone + Send + 'static,
        O: Data,
        J: FnMut(&L, &R) -> O + Clone + Send + 'static;

    /// Joins each record with the value its key had in the `table` stream at the record's event
    /// time (the latest table record of that key with a time at or before it). Records wait
    /// until the watermark passes their time, so that table updates up to then are seen
    /// whatever the arrival order; the result is the same however the two inputs interleave.
    /// `join` gets `None` when the key had no value yet ([`JoinKind::Left`]); with
    /// [`JoinKind::Inner`] those records are left out.
    ///
    /// ```
    /// use weir_core::Environment;
    /// use weir_time::prelude::*;
    ///
    /// let env = Environment::local();
    /// // (currency, price, event time) and (currency, event time)
    /// let prices = env
    ///     .from_iter(vec![('€', 100i64, 0i64), ('€', 110, 1_000)])
    ///     .assign_timestamps(|p| p.2, Watermarks::ascending())
    ///     .key_by(|p| p.0);
    /// let orders = env
    ///     .from_iter(vec![('€', 500i64), ('€', 1_500), ('$', 600)])
    ///     .assign_timestamps(|o| o.1, Watermarks::ascending())
    ///     .key_by(|o| o.0);
    /// let out = orders.enrich_latest(&prices, JoinKind::Left, |o, p| (o.1, p.map(|p| p.1)));
    /// let joined = out.joined.collect();
    /// env.execute().unwrap();
    /// let mut joined = joined.take();
    /// joined.sort();
    /// assert_eq!(joined, vec![(500, Some(100)), (600, None), (1_500, Some(110))]);
    /// ```
    fn enrich_latest<V, FV, O, J>(
        &self,
        table: &KeyedStream<K, Timestamped<V>, FV>,
        kind: JoinKind,
        join: J,
    ) -> JoinOutput<O, Timestamped<L>>
    where
        V: Data + StateValue,
        FV: Fn(&Timestamped<V>) -> K + Clone + Send + 'static,
        O: Data,
        J: FnMut(L, Option<&V>) -> O + Clone + Send + 'static;
}

impl<K, L, FL> KeyedJoinExt<K, L> for KeyedStream<K, Timestamped<L>, FL>
where
    K: StateKey + Hash,
    L: Data + StateValue,
    FL: Fn(&Timestamped<L>) -> K + Clone + Send + 'static,
{
    fn window_join<R, FR, O, J>(
        &self,
        right: &KeyedStream<K, Timestamped<R>, FR>,
        window: WindowSpec,
        join: J,
    ) -> JoinOutput<O, Tagged<L, R>>
    where
        R: Data + StateValue,
        FR: Fn(&Timestamped<R>) -> K + Clone + Send + 'static,
        O: Data,
        J: FnMut(&L, &R) -> O + Clone + Send + 'static,
    {
        let routed = tag_both(self, right).transform("window_join", move |key_of| {
            WindowOperator::<K, Tagged<L, R>, _, _, JobBackend>::new(
                key_of,
                PairFn(join.clone()),
                window,
                Duration::ZERO,
            )
        });
        let (joined, late) = routed.split_result();
        JoinOutput { joined, late }
    }

    fn interval_join<R, FR, O, J>(
        &self,
        right: &KeyedStream<K, Timestamped<R>, FR>,
        before: Duration,
        after: Duration,
        join: J,
    ) -> JoinOutput<O, Tagged<L, R>>
    where
        R: Data + StateValue,
        FR: Fn(&Timestamped<R>) -> K + Clone + Send + 'static,
        O: Data,
        J: FnMut(&L, &R) -> O + Clone + Send + 'static,
    {
        self.interval_join_between(right, -millis(before), millis(after), join)
    }

    fn interval_join_between<R, FR, O, J>(
        &self,
        right: &KeyedStream<K, Timestamped<R>, FR>,
        lower: Timestamp,
        upper: Timestamp,
        join: J,
    ) -> JoinOutput<O, Tagged<L, R>>
    where
        R: Data + StateValue,
        FR: Fn(&Timestamped<R>) -> K + Clone + Send + 'static,
        O: Data,
        J: FnMut(&L, &R) -> O + Clone + Send + 'static,
    {
        // The operator's window of a left event at `t` is `[t - before, t + after]`.
        let (before, after) = (lower.saturating_neg(), upper);
        let routed =
            tag_both(self, right).transform("interval_join", move |key_of| IntervalJoin::<
                K,
                L,
                R,
                _,
                _,
                JobBackend,
            > {
                key_of,
                join: join.clone(),
                before,
                after,
                buffers: Default::default(),
                cleanup: BTreeMap::new(),
                watermark: BEFORE_TIME,
            });
        let (joined, late) = routed.split_result();
        JoinOutput { joined, late }
    }

    fn enrich_latest<V, FV, O, J>(
        &self,
        table: &KeyedStream<K, Timestamped<V>, FV>,
        kind: JoinKind,
        join: J,
    ) -> JoinOutput<O, Timestamped<L>>
    where
        V: Data + StateValue,
        FV: Fn(&Timestamped<V>) -> K + Clone + Send + 'static,
        O: Data,
        J: FnMut(L, Option<&V>) -> O + Clone + Send + 'static,
    {
        let routed = tag_both(self, table).transform("enrich_latest", move |key_of| LatestJoin::<
            K,
            L,
            V,
            _,
            _,
            JobBackend,
        > {
            key_of,
            join: join.clone(),
            kind,
            state: Default::default(),
            due: BTreeMap::new(),
            watermark: BEFORE_TIME,
        });
        let (joined, late) = routed.split_result();
        JoinOutput { joined, late }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::Harness;

    type L = Timestamped<(u8, char)>;
    type R = Timestamped<(u8, i32)>;

    fn key(e: &Tagged<(u8, char), (u8, i32)>) -> u8 {
        match e {
            Either::Left(l) => l.item.0,
            Either::Right(r) => r.item.0,
        }
    }

    fn left(k: u8, time: Timestamp, c: char) -> Tagged<(u8, char), (u8, i32)> {
        Either::Left(L::new(time, (k, c)))
    }

    fn right(k: u8, time: Timestamp, v: i32) -> Tagged<(u8, char), (u8, i32)> {
        Either::Right(R::new(time, (k, v)))
    }

    /// Flink's bounds: `[t + lower, t + upper]`, here both after the left event (a positive
    /// `lower`), inclusive at both ends.
    #[test]
    fn interval_join_between_takes_signed_inclusive_bounds() {
        use crate::watermark::EventTimeExt;
        let env = weir_core::Environment::local();
        let left = env
            .from_iter(vec![(1u8, 1_000i64)])
            .assign_timestamps(|e| e.1, crate::Watermarks::ascending())
            .key_by(|e| e.0);
        let right = env
            .from_iter(vec![
                (1u8, 1_199i64),
                (1, 1_200),
                (1, 1_500),
                (1, 1_501),
                (1, 900),
            ])
            .assign_timestamps(|e| e.1, crate::Watermarks::bounded(Duration::from_secs(1)))
            .key_by(|e| e.0);
        let out = left.interval_join_between(&right, 200, 500, |l, r| r.1 - l.1);
        let joined = out.joined.collect();
        out.late.for_each(drop);
        env.execute().unwrap();
        let mut got = joined.take();
        got.sort_unstable();
        assert_eq!(got, vec![200, 500]);
    }

    #[test]
    fn interval_join_matches_within_bounds_and_cleans_up_by_watermark() {
        let op = IntervalJoin::<u8, (u8, char), (u8, i32), _, _, crate::InMemory> {
            key_of: key,
            join: |l: &(u8, char), r: &(u8, i32)| (l.1, r.1),
            before: 100,
            after: 200,
            buffers: Default::default(),
            cleanup: BTreeMap::new(),
            watermark: BEFORE_TIME,
        };
        let mut h = Harness::new(op);
        let out = h
            .push(vec![
                left(1, 1_000, 'a'),
                right(1, 899, 1),   // 101 before: no
                right(1, 900, 2),   // 100 before: yes
                right(1, 1_200, 3), // 200 after: yes
                right(1, 1_201, 4), // no
                right(2, 1_000, 5), // other key: no
            ])
            .unwrap();
        let joined: Vec<_> = out.into_iter().map(|r| r.ok().unwrap()).collect();
        assert_eq!(joined, vec![('a', 2), ('a', 3)]);
        // A right event first, then the left one.
        let out = h.push(vec![right(3, 500, 9), left(3, 450, 'b')]).unwrap();
        assert_eq!(
            out.into_iter().map(|r| r.ok().unwrap()).collect::<Vec<_>>(),
            vec![('b', 9)]
        );
        // The watermark drops what can no longer match; later events are late.
        h.watermark(1_201).unwrap();
        assert!(
            h.operator()
                .buffers
                .get(&1)
                .is_some_and(|b| b.left.is_empty())
        );
        let out = h.push(vec![right(1, 1_100, 7)]).unwrap();
        assert!(matches!(out.as_slice(), [Err(Either::Right(_))]), "late");
        h.watermark(10_000).unwrap();
        assert!(h.operator().buffers.is_empty());
        assert!(h.operator().cleanup.is_empty());
    }

    #[test]
    fn window_join_pairs_within_a_window_and_sends_late_events_aside() {
        let op = WindowOperator::<u8, Tagged<(u8, char), (u8, i32)>, _, _, crate::InMemory>::new(
            key,
            PairFn(|l: &(u8, char), r: &(u8, i32)| (l.1, r.1)),
            crate::Tumbling::of(Duration::from_secs(1)),
            Duration::ZERO,
        );
        let mut h = Harness::new(op);
        h.push(vec![
            left(1, 100, 'a'),
            right(1, 50, 1),
            right(1, 999, 2),
            right(1, 1_000, 3), // the next window
            left(2, 10, 'b'),   // no right side
        ])
        .unwrap();
        let out = h.watermark(1_000).unwrap();
        let joined: Vec<_> = out.into_iter().map(|r| r.ok().unwrap()).collect();
        assert_eq!(joined, vec![('a', 1), ('a', 2)]);
        let out = h.push(vec![right(1, 500, 9)]).unwrap();
        assert!(matches!(out.as_slice(), [Err(Either::Right(r))] if r.time == 500));
        assert!(
            h.close().unwrap().is_empty(),
            "[1000, 2000) has no left event"
        );
    }

    #[test]
    fn latest_join_uses_the_version_valid_at_the_record_time() {
        let op = LatestJoin::<u8, (u8, char), (u8, i32), _, _, crate::InMemory> {
            key_of: key,
            join: |l: (u8, char), v: Option<&(u8, i32)>| (l.1, v.map(|v| v.1)),
            kind: JoinKind::Inner,
            state: Default::default(),
            due: BTreeMap::new(),
            watermark: BEFORE_TIME,
        };
        let mut h = Harness::new(op);
        // The record arrives before the version it must see.
        assert!(
            h.push(vec![
                left(1, 150, 'x'),
                left(1, 50, 'w'),
                right(1, 100, 10),
                right(1, 200, 20)
            ])
            .unwrap()
            .is_empty()
        );
        let out = h.watermark(151).unwrap();
        let joined: Vec<_> = out.into_iter().map(|r| r.ok().unwrap()).collect();
        // 50 had no version yet (inner join: left out); 150 sees the version of 100.
        assert_eq!(joined, vec![('x', Some(10))]);
        let out = h.push(vec![left(1, 100, 'z')]).unwrap();
        assert!(
            matches!(out.as_slice(), [Err(_)]),
            "behind the watermark: late"
        );
        h.push(vec![left(1, 250, 'y')]).unwrap();
        let out = h.watermark(END_OF_TIME).unwrap();
        assert_eq!(
            out.into_iter().map(|r| r.ok().unwrap()).collect::<Vec<_>>(),
            vec![('y', Some(20))]
        );
    }

    #[test]
    fn old_versions_are_pruned_but_the_current_one_stays() {
        let mut versions: Vec<Timestamped<u8>> = vec![
            Timestamped::new(1, 1),
            Timestamped::new(5, 2),
            Timestamped::new(9, 3),
        ];
        prune_versions(&mut versions, 7);
        assert_eq!(
            versions.iter().map(|v| v.time).collect::<Vec<_>>(),
            vec![5, 9]
        );
        prune_versions(&mut versions, 100);
        assert_eq!(versions.iter().map(|v| v.time).collect::<Vec<_>>(), vec![9]);
    }
}
