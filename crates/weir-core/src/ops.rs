//! The built-in operators behind the stream API. Each processes a whole batch in one tight loop.

use crate::error::OperatorError;
use crate::message::{END_OF_TIME, Timestamp};
use crate::operator::{Operator, OperatorContext};
use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use weir_state::{KeyedStore, StateKey, StateValue};

pub(crate) struct Map<F>(pub(crate) F);

impl<T, U, F: FnMut(T) -> U + Send + 'static> Operator<T, U> for Map<F> {
    #[inline]
    fn process(
        &mut self,
        input: &mut Vec<T>,
        out: &mut Vec<U>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        out.extend(input.drain(..).map(&mut self.0));
        Ok(())
    }
}

pub(crate) struct Filter<F>(pub(crate) F);

impl<T, F: FnMut(&T) -> bool + Send + 'static> Operator<T, T> for Filter<F> {
    #[inline]
    fn process(
        &mut self,
        input: &mut Vec<T>,
        out: &mut Vec<T>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let f = &mut self.0;
        if out.is_empty() {
            // Filter in place and hand the same buffer on: no copy of the survivors.
            input.retain(|x| f(x));
            std::mem::swap(input, out);
        } else {
            out.extend(input.drain(..).filter(|x| f(x)));
        }
        Ok(())
    }
}

pub(crate) struct FlatMap<F>(pub(crate) F);

impl<T, U, I, F> Operator<T, U> for FlatMap<F>
where
    I: IntoIterator<Item = U>,
    F: FnMut(T) -> I + Send + 'static,
{
    #[inline]
    fn process(
        &mut self,
        input: &mut Vec<T>,
        out: &mut Vec<U>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        for x in input.drain(..) {
            out.extend((self.0)(x));
        }
        Ok(())
    }
}

pub(crate) struct Inspect<F>(pub(crate) F);

impl<T, F: FnMut(&T) + Send + 'static> Operator<T, T> for Inspect<F> {
    fn process(
        &mut self,
        input: &mut Vec<T>,
        out: &mut Vec<T>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        input.iter().for_each(&mut self.0);
        std::mem::swap(input, out);
        Ok(())
    }
}

/// A failed record routed to an error output.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure<E> {
    pub error: E,
    /// The operator that failed.
    pub operator: Arc<str>,
    /// Position of the record in that operator instance's input.
    pub position: u64,
    pub instance: usize,
}

impl<E: Display> Display for Failure<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "operator '{}' (instance {}) failed at record {}: {}",
            self.operator, self.instance, self.position, self.error
        )
    }
}

/// A fallible map whose errors fail the job (with the record's position).
pub(crate) struct TryMap<F>(pub(crate) F);

impl<T, U, E, F> Operator<T, U> for TryMap<F>
where
    E: Display,
    F: FnMut(T) -> Result<U, E> + Send + 'static,
{
    fn process(
        &mut self,
        input: &mut Vec<T>,
        out: &mut Vec<U>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        for (i, x) in input.drain(..).enumerate() {
            match (self.0)(x) {
                Ok(u) => out.push(u),
                Err(e) => return Err(OperatorError::user(e).at(ctx.position + i as u64)),
            }
        }
        Ok(())
    }
}

/// A fallible map whose errors go to an error output, with the record's position.
pub(crate) struct TryMapRouted<F>(pub(crate) F);

impl<T, U, E, F> Operator<T, Result<U, Failure<E>>> for TryMapRouted<F>
where
    F: FnMut(T) -> Result<U, E> + Send + 'static,
{
    fn process(
        &mut self,
        input: &mut Vec<T>,
        out: &mut Vec<Result<U, Failure<E>>>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let mut failed = 0;
        for (i, x) in input.drain(..).enumerate() {
            out.push((self.0)(x).map_err(|error| {
                failed += 1;
                Failure {
                    error,
                    operator: ctx.name.clone(),
                    position: ctx.position + i as u64,
                    instance: ctx.instance,
                }
            }));
        }
        ctx.count_errors(failed);
        Ok(())
    }
}

/// Groups consecutive records into batches of `size` (the last one may be shorter).
pub(crate) struct Batch<T> {
    pub(crate) size: usize,
    pub(crate) pending: Vec<T>,
}

impl<T: Send + 'static> Operator<T, Vec<T>> for Batch<T> {
    fn process(
        &mut self,
        input: &mut Vec<T>,
        out: &mut Vec<Vec<T>>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        for x in input.drain(..) {
            self.pending.push(x);
            if self.pending.len() == self.size {
                out.push(std::mem::replace(
                    &mut self.pending,
                    Vec::with_capacity(self.size),
                ));
            }
        }
        Ok(())
    }

    fn close(
        &mut self,
        out: &mut Vec<Vec<T>>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        if !self.pending.is_empty() {
            out.push(std::mem::take(&mut self.pending));
        }
        Ok(())
    }
}

/// Passes the first `limit` records (over all instances) and then asks the sources to stop.
pub(crate) struct Take {
    pub(crate) limit: u64,
    pub(crate) taken: Arc<AtomicU64>,
}

impl<T: Send + 'static> Operator<T, T> for Take {
    fn process(
        &mut self,
        input: &mut Vec<T>,
        out: &mut Vec<T>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let n = input.len() as u64;
        let before = self.taken.fetch_add(n, Ordering::Relaxed);
        let allowed = self.limit.saturating_sub(before).min(n) as usize;
        out.extend(input.drain(..allowed));
        if before + n >= self.limit {
            ctx.request_stop();
        }
        Ok(())
    }
}

/// Routes records to one of several outputs; see `Stream::split`.
pub(crate) struct Route<F>(pub(crate) F);

impl<T, F: FnMut(&T) -> usize + Send + 'static> Operator<T, (usize, T)> for Route<F> {
    fn process(
        &mut self,
        input: &mut Vec<T>,
        out: &mut Vec<(usize, T)>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        out.extend(input.drain(..).map(|x| ((self.0)(&x), x)));
        Ok(())
    }
}

/// Rolling reduce per key: every input emits the key's new accumulated value.
pub(crate) struct KeyedReduce<KF, F, S> {
    pub(crate) key_of: KF,
    pub(crate) reduce: F,
    /// Replaced in `open` by a store on the job's state backend.
    pub(crate) state: S,
}

impl<K, T, KF, F, S> Operator<T, T> for KeyedReduce<KF, F, S>
where
    K: StateKey,
    T: Clone + StateValue,
    KF: FnMut(&T) -> K + Send + 'static,
    F: FnMut(&T, T) -> T + Send + 'static,
    S: KeyedStore<K, T> + From<weir_state::AnyStore<K, T>>,
{
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        self.state = ctx.keyed_store::<K, T>()?.into();
        crate::state::restore_keyed(&mut self.state, ctx, "reduce")
    }

    fn snapshot(
        &mut self,
        _: crate::CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        crate::state::save_keyed(&mut self.state, ctx, "reduce")
    }

    fn process(
        &mut self,
        input: &mut Vec<T>,
        out: &mut Vec<T>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        for x in input.drain(..) {
            let key = (self.key_of)(&x);
            let value = match self.state.get_mut(&key) {
                Some(acc) => {
                    let next = (self.reduce)(acc, x);
                    *acc = next.clone();
                    next
                }
                None => {
                    self.state.insert(key, x.clone());
                    x
                }
            };
            out.push(value);
        }
        Ok(())
    }
}

/// Per-key accumulation. `emit_every_record`: emit `(key, accumulator)` after each input (a
/// rolling fold); otherwise emit each key's final accumulator once the input ends.
pub(crate) struct KeyedFold<KF, I, F, S> {
    pub(crate) key_of: KF,
    pub(crate) init: I,
    pub(crate) fold: F,
    pub(crate) state: S,
    pub(crate) emit_every_record: bool,
}

impl<K, T, A, KF, I, F, S> Operator<T, (K, A)> for KeyedFold<KF, I, F, S>
where
    K: StateKey,
    A: Clone + StateValue,
    KF: FnMut(&T) -> K + Send + 'static,
    I: FnMut() -> A + Send + 'static,
    F: FnMut(&mut A, T) + Send + 'static,
    S: KeyedStore<K, A> + From<weir_state::AnyStore<K, A>>,
{
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        self.state = ctx.keyed_store::<K, A>()?.into();
        crate::state::restore_keyed(&mut self.state, ctx, "fold")
    }

    fn snapshot(
        &mut self,
        _: crate::CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        crate::state::save_keyed(&mut self.state, ctx, "fold")
    }

    #[inline]
    fn process(
        &mut self,
        input: &mut Vec<T>,
        out: &mut Vec<(K, A)>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        let init = &mut self.init;
        for x in input.drain(..) {
            let key = (self.key_of)(&x);
            let acc = self.state.get_or_insert_with(&key, &mut *init);
            (self.fold)(acc, x);
            if self.emit_every_record {
                let acc = acc.clone();
                out.push((key, acc));
            }
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Vec<(K, A)>,
        _: &mut OperatorContext,
    ) -> Result<Option<Timestamp>, OperatorError> {
        if watermark == END_OF_TIME && !self.emit_every_record {
            out.extend(self.state.drain_all());
        }
        Ok(Some(watermark))
    }

    fn close(
        &mut self,
        out: &mut Vec<(K, A)>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        if !self.emit_every_record {
            out.extend(self.state.drain_all());
        }
        Ok(())
    }
}

/// Passes records through unchanged (unions, rebalancing).
pub(crate) struct Identity;

impl<T: Send + 'static> Operator<T, T> for Identity {
    #[inline]
    fn process(
        &mut self,
        input: &mut Vec<T>,
        out: &mut Vec<T>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        if out.is_empty() {
            std::mem::swap(input, out);
        } else {
            out.append(input);
        }
        Ok(())
    }
}
