//! Resilient async calls as stream operators: [`AsyncStreamExt::map_async`] on a
//! [`weir_core::Stream`].
//!
//! Every record goes through one async call wrapped in a [`Policy`] (retries, timeouts, breaker,
//! rate limit). Successes flow on; a record whose call still fails after its retries goes to a
//! second stream as a [`Failure`] carrying the record itself, the error and the record's
//! position. Nothing is dropped, and a failure never holds up the records behind it.
//!
//! # How it runs
//!
//! Weir's operators run on task threads, not in an async runtime. For each batch the operator
//! enters a tokio runtime ([`AsyncRuntime`]; by default one multi-thread runtime shared by the
//! whole process, created on first use) with `block_on`, runs up to `workers` calls of the batch
//! at once, and returns when every call of the batch has finished (succeeded or failed for
//! good). Output follows the input order ([`Order::Ordered`]) or the completion order within the
//! batch ([`Order::Unordered`]). Calls do not span batches, so the runtime's batch size bounds
//! the concurrency actually reached (`min(workers, batch length)`).
//!
//! # Checkpoints
//!
//! The operator keeps nothing in flight between two batches: `process` returns only once every
//! call of its batch has produced a result or a failure. A checkpoint barrier is handled between
//! batches, so it can never overtake a call: every record before the barrier is already enriched
//! or routed to the failure stream when the snapshot is taken, and every record after it is
//! replayed from the source after a restore. There is no operator state to snapshot.
//!
//! Give the policy a timeout (`timeout` or `overall_timeout`): a call that never answers holds
//! its batch, as any operator that never returns would.

use crate::error::Error;
use crate::parallel::Order;
use crate::policy::Policy;
use futures::stream::StreamExt as _;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use weir_core::{Data, Failure, Operator, OperatorContext, OperatorError, Stream};

/// The tokio runtime an async operator enters for each batch.
///
/// [`AsyncRuntime::shared`] (the default) is one multi-thread runtime for the whole process,
/// created on first use. Pass a handle to reuse a runtime the process already has (one runtime
/// per process), or an owned runtime, e.g. a current-thread one with a paused clock in tests.
#[derive(Clone, Default)]
pub struct AsyncRuntime(RuntimeKind);

#[derive(Clone, Default)]
enum RuntimeKind {
    #[default]
    Shared,
    Handle(tokio::runtime::Handle),
    Owned(Arc<tokio::runtime::Runtime>),
}

impl fmt::Debug for AsyncRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            RuntimeKind::Shared => "AsyncRuntime::Shared",
            RuntimeKind::Handle(_) => "AsyncRuntime::Handle",
            RuntimeKind::Owned(_) => "AsyncRuntime::Owned",
        })
    }
}

fn shared_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-async")
            .enable_all()
            .build()
            // Without a runtime no async operator can run at all; there is nothing to fall back to.
            .unwrap_or_else(|e| panic!("cannot start the async operator runtime: {e}"))
    })
}

impl AsyncRuntime {
    /// The process-wide multi-thread runtime (two worker threads), created on first use.
    pub fn shared() -> Self {
        AsyncRuntime(RuntimeKind::Shared)
    }

    /// A runtime the process already runs. It must be a multi-thread runtime (a current-thread
    /// runtime only makes progress inside its own `block_on`).
    pub fn from_handle(handle: tokio::runtime::Handle) -> Self {
        AsyncRuntime(RuntimeKind::Handle(handle))
    }

    /// A runtime owned by the operator(s) holding it (any flavour).
    pub fn from_runtime(runtime: Arc<tokio::runtime::Runtime>) -> Self {
        AsyncRuntime(RuntimeKind::Owned(runtime))
    }

    /// A handle on the runtime (creating the shared one if needed), e.g. to spawn on it.
    pub fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            RuntimeKind::Shared => shared_runtime().handle().clone(),
            RuntimeKind::Handle(handle) => handle.clone(),
            RuntimeKind::Owned(runtime) => runtime.handle().clone(),
        }
    }

    /// Runs `future` to completion on the calling thread, with the runtime's timers and I/O.
    /// Must not be called from inside an async context.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        match &self.0 {
            RuntimeKind::Shared => shared_runtime().block_on(future),
            RuntimeKind::Handle(handle) => handle.block_on(future),
            RuntimeKind::Owned(runtime) => runtime.block_on(future),
        }
    }
}

/// The async call behind [`AsyncStreamExt::map_async_with`]: what to do with one input.
///
/// [`call`](AsyncMapper::call) may borrow the input (it runs while the operator still owns it)
/// and is expected to apply its own policy, cache and so on; [`complete`](AsyncMapper::complete)
/// then turns the input and the call's value into the output record without copying the input.
pub trait AsyncMapper<T>: Send + 'static {
    /// What a successful call returns.
    type Value;
    /// What goes downstream.
    type Output: Data;
    /// The operation's own error type.
    type Error: fmt::Display + fmt::Debug + Send + Sync + 'static;

    /// The call for one input, resilience included.
    fn call<'a>(
        &'a self,
        input: &'a T,
    ) -> impl Future<Output = Result<Self::Value, Error<Self::Error>>> + 'a;

    /// The output for an input whose call succeeded.
    fn complete(&self, input: T, value: Self::Value) -> Self::Output;

    /// The policy (and cache) around the calls, to report in the operator's metrics as
    /// `(policy label, counters)`; `None` when there is nothing to report.
    fn policy_report(&self) -> Option<(&'static str, Arc<dyn weir_core::PolicyReport>)> {
        None
    }
}

/// Why a record left an async operator through its failure stream: the record itself, as it
/// came in, and the final error of its call (after retries and fallbacks).
#[derive(Debug)]
pub struct CallFailed<T, E> {
    /// The record whose call failed.
    pub input: T,
    /// The final error; shared, so that failures can be cloned like any stream data.
    pub error: Arc<Error<E>>,
}

impl<T: Clone, E> Clone for CallFailed<T, E> {
    fn clone(&self) -> Self {
        CallFailed {
            input: self.input.clone(),
            error: Arc::clone(&self.error),
        }
    }
}

impl<T, E: fmt::Display> fmt::Display for CallFailed<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

/// The failure stream of an async operator.
pub type Failures<T, E> = Stream<Failure<CallFailed<T, E>>>;

/// How an async operator runs: workers, output order, runtime and name.
#[derive(Debug, Clone)]
pub struct AsyncOptions {
    workers: usize,
    order: Order,
    runtime: AsyncRuntime,
    name: String,
}

impl AsyncOptions {
    /// Up to `workers` calls at once (0 counts as 1), input order, the shared runtime, named
    /// `map_async`.
    pub fn new(workers: usize) -> Self {
        AsyncOptions {
            workers: workers.max(1),
            order: Order::Ordered,
            runtime: AsyncRuntime::shared(),
            name: "map_async".to_string(),
        }
    }

    /// Output in input order or completion order.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// The runtime to enter for each batch.
    pub fn runtime(mut self, runtime: AsyncRuntime) -> Self {
        self.runtime = runtime;
        self
    }

    /// The operator's name (in metrics, errors and failures).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The worker count.
    pub fn workers(&self) -> usize {
        self.workers
    }
}

/// Async operators on [`Stream`]: a parallel async map whose calls run under a [`Policy`].
pub trait AsyncStreamExt<T: Data> {
    /// Calls `f` for every record, at most `workers` calls at once, each under `policy`
    /// (so retried, timed out, rate limited as it says); output in input order or in
    /// completion order. Returns the results and the records whose call failed for good, with
    /// the error and the record's position. `f` is called once per attempt.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_core::Environment;
    /// use weir_resilience::stream::AsyncStreamExt;
    /// use weir_resilience::{Order, Policy};
    ///
    /// async fn lookup(id: u64) -> Result<String, std::io::Error> {
    ///     if id == 3 {
    ///         return Err(std::io::Error::other("no such user"));
    ///     }
    ///     tokio::time::sleep(Duration::from_millis(5 - id)).await;
    ///     Ok(format!("user-{id}"))
    /// }
    ///
    /// let env = Environment::local();
    /// let policy = Policy::builder()
    ///     .retries(2)
    ///     .attempt_timeout(Duration::from_secs(1))
    ///     .retry_if(|e: &std::io::Error| e.kind() != std::io::ErrorKind::Other)
    ///     .build()?;
    /// let (users, failed) = env
    ///     .from_iter(1..=4u64)
    ///     .map_async(4, Order::Ordered, policy, |id: &u64| lookup(*id));
    /// let users = users.collect();
    /// let failed = failed.collect();
    /// env.execute()?;
    /// assert_eq!(users.take(), ["user-1", "user-2", "user-4"]);
    /// let failed = failed.take();
    /// assert_eq!((failed[0].position, failed[0].error.input), (2, 3));
    /// assert_eq!(
    ///     failed[0].error.to_string(),
    ///     "operation failed after 1 attempt(s): no such user"
    /// );
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    fn map_async<U, E, F, Fut>(
        &self,
        workers: usize,
        order: Order,
        policy: Policy<E>,
        f: F,
    ) -> (Stream<U>, Failures<T, E>)
    where
        U: Data,
        E: fmt::Display + fmt::Debug + Send + Sync + 'static,
        F: Fn(&T) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<U, E>> + 'static;

    /// The general form: any [`AsyncMapper`] (its own policy, cache, keyed rate limit, and an
    /// output built from the input and the call's value), with explicit [`AsyncOptions`].
    /// `mapper` is cloned for each parallel instance; clones of a policy share its state, so
    /// a rate limit covers the operator as a whole.
    fn map_async_with<M>(
        &self,
        options: AsyncOptions,
        mapper: M,
    ) -> (Stream<M::Output>, Failures<T, M::Error>)
    where
        M: AsyncMapper<T> + Clone;
}

impl<T: Data> AsyncStreamExt<T> for Stream<T> {
    fn map_async<U, E, F, Fut>(
        &self,
        workers: usize,
        order: Order,
        policy: Policy<E>,
        f: F,
    ) -> (Stream<U>, Failures<T, E>)
    where
        U: Data,
        E: fmt::Display + fmt::Debug + Send + Sync + 'static,
        F: Fn(&T) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<U, E>> + 'static,
    {
        let mapper = PolicyMapper {
            policy,
            f,
            _t: PhantomData,
        };
        self.map_async_with(AsyncOptions::new(workers).order(order), mapper)
    }

    fn map_async_with<M>(
        &self,
        options: AsyncOptions,
        mapper: M,
    ) -> (Stream<M::Output>, Failures<T, M::Error>)
    where
        M: AsyncMapper<T> + Clone,
    {
        let name = options.name.clone();
        self.transform(&name, move || {
            MapAsyncOp::new(mapper.clone(), options.clone())
        })
        .split_result()
    }
}

/// [`AsyncMapper`] for a closure under a policy (what [`AsyncStreamExt::map_async`] uses).
pub struct PolicyMapper<T, E, F> {
    policy: Policy<E>,
    f: F,
    _t: PhantomData<fn(&T)>,
}

impl<T, E, F: Clone> Clone for PolicyMapper<T, E, F> {
    fn clone(&self) -> Self {
        PolicyMapper {
            policy: self.policy.clone(),
            f: self.f.clone(),
            _t: PhantomData,
        }
    }
}

impl<T, E, F> PolicyMapper<T, E, F> {
    /// `f` under `policy`.
    pub fn new(policy: Policy<E>, f: F) -> Self {
        PolicyMapper {
            policy,
            f,
            _t: PhantomData,
        }
    }
}

impl<T, U, E, F, Fut> AsyncMapper<T> for PolicyMapper<T, E, F>
where
    T: 'static,
    U: Data,
    E: fmt::Display + fmt::Debug + Send + Sync + 'static,
    F: Fn(&T) -> Fut + Send + 'static,
    Fut: Future<Output = Result<U, E>> + 'static,
{
    type Value = U;
    type Output = U;
    type Error = E;

    fn call<'a>(&'a self, input: &'a T) -> impl Future<Output = Result<U, Error<E>>> + 'a {
        self.policy.call(move || (self.f)(input))
    }

    fn complete(&self, _input: T, value: U) -> U {
        value
    }

    fn policy_report(&self) -> Option<(&'static str, Arc<dyn weir_core::PolicyReport>)> {
        Some(("map_async", Arc::new(self.policy.clone())))
    }
}

/// The operator: one `block_on` per batch, at most `workers` calls in flight, every call of the
/// batch finished before `process` returns.
pub struct MapAsyncOp<T, M> {
    mapper: M,
    options: AsyncOptions,
    _t: PhantomData<fn(T)>,
}

impl<T, M> MapAsyncOp<T, M> {
    /// An operator running `mapper` as `options` say (for [`Stream::transform`] or a
    /// [`weir_core::Harness`]).
    pub fn new(mapper: M, options: AsyncOptions) -> Self {
        MapAsyncOp {
            mapper,
            options,
            _t: PhantomData,
        }
    }
}

/// What an async operator emits: the output, or the failure for the error stream.
pub type AsyncResult<T, M> =
    Result<<M as AsyncMapper<T>>::Output, Failure<CallFailed<T, <M as AsyncMapper<T>>::Error>>>;

impl<T, M> Operator<T, AsyncResult<T, M>> for MapAsyncOp<T, M>
where
    T: Data,
    M: AsyncMapper<T>,
{
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        if let Some((name, report)) = self.mapper.policy_report() {
            ctx.report_policy(name, report);
        }
        Ok(())
    }

    fn process(
        &mut self,
        input: &mut Vec<T>,
        out: &mut Vec<AsyncResult<T, M>>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        if input.is_empty() {
            return Ok(());
        }
        let mapper = &self.mapper;
        let workers = self.options.workers;
        let order = self.options.order;
        let records: &[T] = input;
        let results = self.options.runtime.block_on(async move {
            let calls = futures::stream::iter(records.iter().enumerate())
                .map(|(i, record)| async move { (i, mapper.call(record).await) });
            match order {
                Order::Ordered => calls.buffered(workers).collect::<Vec<_>>().await,
                Order::Unordered => calls.buffer_unordered(workers).collect::<Vec<_>>().await,
            }
        });
        let base = ctx.position();
        let mut failed = 0;
        let mut emit = |i: usize, record: T, result: Result<M::Value, Error<M::Error>>| match result
        {
            Ok(value) => out.push(Ok(mapper.complete(record, value))),
            Err(error) => {
                failed += 1;
                out.push(Err(Failure {
                    error: CallFailed {
                        input: record,
                        error: Arc::new(error),
                    },
                    operator: ctx.name().into(),
                    position: base + i as u64,
                    instance: ctx.instance(),
                }));
            }
        };
        match order {
            Order::Ordered => {
                for ((i, result), record) in results.into_iter().zip(input.drain(..)) {
                    emit(i, record, result);
                }
            }
            Order::Unordered => {
                let mut records: Vec<Option<T>> = input.drain(..).map(Some).collect();
                for (i, result) in results {
                    if let Some(record) = records.get_mut(i).and_then(Option::take) {
                        emit(i, record, result);
                    }
                }
            }
        }
        ctx.count_errors(failed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Retryable;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use weir_core::Harness;

    #[derive(Debug, Clone, PartialEq, thiserror::Error)]
    enum CallError {
        #[error("busy")]
        Busy,
        #[error("bad input {0}")]
        Bad(u64),
    }

    impl Retryable for CallError {
        fn is_retryable(&self) -> bool {
            matches!(self, CallError::Busy)
        }
    }

    fn paused() -> AsyncRuntime {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        AsyncRuntime::from_runtime(Arc::new(runtime))
    }

    /// Input `i` of a batch of `n` sleeps `(n - i) * 10ms`: the last finishes first.
    fn reversed_delays(
        n: u64,
        log: Arc<Mutex<Vec<u64>>>,
    ) -> impl Fn(&u64) -> std::pin::Pin<Box<dyn Future<Output = Result<u64, CallError>>>>
    + Clone
    + Send
    + 'static {
        move |x: &u64| {
            let (x, log) = (*x, log.clone());
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis((n - x) * 10)).await;
                log.lock().unwrap().push(x);
                Ok(x * 100)
            })
        }
    }

    type Op<F> = MapAsyncOp<u64, PolicyMapper<u64, CallError, F>>;

    fn op<F>(
        workers: usize,
        order: Order,
        runtime: AsyncRuntime,
        policy: Policy<CallError>,
        f: F,
    ) -> Op<F> {
        let options = AsyncOptions::new(workers).order(order).runtime(runtime);
        MapAsyncOp::new(PolicyMapper::new(policy, f), options)
    }

    fn values<U: Clone, E>(out: &[Result<U, E>]) -> Vec<U> {
        out.iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect()
    }

    #[test]
    fn ordered_output_follows_input_order_whatever_the_completion_order() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let rt = paused();
        let mut h = Harness::new(op(
            8,
            Order::Ordered,
            rt.clone(),
            Policy::default(),
            reversed_delays(8, log.clone()),
        ));
        let start = rt.block_on(async { tokio::time::Instant::now() });
        let out = h.push((0..8).collect()).unwrap();
        let elapsed = rt.block_on(async move { start.elapsed() });
        assert_eq!(values(&out), [0, 100, 200, 300, 400, 500, 600, 700]);
        assert_eq!(
            *log.lock().unwrap(),
            [7, 6, 5, 4, 3, 2, 1, 0],
            "completed in reverse"
        );
        // All 8 ran at once: the batch took as long as its slowest call (virtual time).
        assert_eq!(elapsed, Duration::from_millis(80));
    }

    #[test]
    fn unordered_output_follows_completion_order() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut h = Harness::new(op(
            8,
            Order::Unordered,
            paused(),
            Policy::default(),
            reversed_delays(8, log),
        ));
        let out = h.push((0..8).collect()).unwrap();
        assert_eq!(values(&out), [700, 600, 500, 400, 300, 200, 100, 0]);
    }

    #[test]
    fn at_most_workers_calls_run_at_once() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r, p) = (running.clone(), peak.clone());
        let f = move |x: &u64| {
            let (x, r, p) = (*x, r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, CallError>(x)
            }
        };
        let rt = paused();
        let mut h = Harness::new(op(3, Order::Unordered, rt.clone(), Policy::default(), f));
        let start = rt.block_on(async { tokio::time::Instant::now() });
        let out = h.push((0..10).collect()).unwrap();
        let elapsed = rt.block_on(async move { start.elapsed() });
        assert_eq!(out.len(), 10);
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        // 10 calls of 10 ms, 3 at a time: 4 rounds.
        assert_eq!(elapsed, Duration::from_millis(40));
        // Nothing is left in flight once `process` returned (what checkpoints rely on).
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn empty_input_makes_no_call_and_no_output() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let f = move |x: &u64| {
            c.fetch_add(1, Ordering::SeqCst);
            let x = *x;
            async move { Ok::<_, CallError>(x) }
        };
        let mut h = Harness::new(op(4, Order::Ordered, paused(), Policy::default(), f));
        assert!(h.push(Vec::new()).unwrap().is_empty());
        assert!(h.close().unwrap().is_empty());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn failures_carry_the_record_the_error_and_its_position() {
        // Busy twice for every input, then fine; input 5 and 12 are bad (not retryable).
        let attempts = Arc::new(Mutex::new(std::collections::HashMap::<u64, u32>::new()));
        let a = attempts.clone();
        let f = move |x: &u64| {
            let x = *x;
            let n = {
                let mut map = a.lock().unwrap();
                let n = map.entry(x).or_insert(0);
                *n += 1;
                *n
            };
            async move {
                tokio::time::sleep(Duration::from_millis(x % 3)).await;
                match (x, n) {
                    (5 | 12, _) => Err(CallError::Bad(x)),
                    (_, 1 | 2) => Err(CallError::Busy),
                    _ => Ok(x),
                }
            }
        };
        let policy = Policy::builder()
            .retries(2)
            .backoff(crate::Backoff::exponential(Duration::from_millis(10)))
            .retry_when_retryable()
            .build()
            .unwrap();
        let mut h = Harness::new(op(4, Order::Unordered, paused(), policy, f));
        let mut out = h.push((0..10).collect()).unwrap();
        out.extend(h.push((10..15).collect()).unwrap());
        let mut ok = values(&out);
        ok.sort();
        assert_eq!(ok, [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 13, 14]);
        let failures: Vec<_> = out.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(failures.len(), 2);
        for (failure, input) in failures.iter().zip([5u64, 12]) {
            assert_eq!(failure.error.input, input);
            // Positions count across batches: the second batch starts at 10.
            assert_eq!(failure.position, input);
            assert_eq!(failure.operator.as_ref(), "harness");
            assert_eq!(
                failure.error.error.attempts(),
                1,
                "not retryable: one attempt"
            );
            assert_eq!(
                failure.error.to_string(),
                format!("operation failed after 1 attempt(s): bad input {input}")
            );
        }
        assert_eq!(
            attempts.lock().unwrap()[&0],
            3,
            "retried twice, then succeeded"
        );
    }

    #[test]
    fn exhausted_retries_fail_the_record_with_the_last_error() {
        let f = |_: &u64| async { Err::<u64, _>(CallError::Busy) };
        let policy = Policy::builder()
            .retries(3)
            .retry_when_retryable()
            .build()
            .unwrap();
        let mut h = Harness::new(op(2, Order::Ordered, paused(), policy, f));
        let out = h.push(vec![7]).unwrap();
        let failure = out[0].as_ref().unwrap_err();
        assert_eq!(failure.error.error.attempts(), 4);
        assert_eq!(
            failure.error.error.operation_error(),
            Some(&CallError::Busy)
        );
        assert_eq!(failure.error.input, 7);
    }
}
