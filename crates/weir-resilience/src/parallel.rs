//! Parallel async map: at most `workers` futures at once, ordered or unordered output.

use crate::error::ConfigError;
use futures::future::Either;
use futures::stream::{self, Stream, StreamExt};
use std::future::Future;

/// Whether results follow the input order or completion order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Output i is the result for input i, whatever finished first. A finished result waiting
    /// behind a slower earlier one keeps its worker slot until it is emitted, so memory stays
    /// bounded by `workers` (as in Flink's ordered async I/O).
    #[default]
    Ordered,
    /// Results as they complete.
    Unordered,
}

/// Runs an async function over many inputs with at most `workers` calls in flight.
///
/// The futures run concurrently on the task that polls the result (I/O concurrency, the usual
/// need around network calls); spawn inside the function for CPU-heavy work.
///
/// ```
/// use weir_resilience::{Order, Parallel};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let squares = Parallel::new(4)?.map(1..=5, |x| async move { x * x }).await;
/// assert_eq!(squares, [1, 4, 9, 16, 25]);
/// # Ok::<_, weir_resilience::ConfigError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallel {
    workers: usize,
    order: Order,
}

impl Parallel {
    /// `workers` calls at once (at least 1), results in input order.
    pub fn new(workers: usize) -> Result<Self, ConfigError> {
        if workers == 0 {
            return Err(ConfigError::invalid("workers", "at least 1", 0));
        }
        Ok(Parallel {
            workers,
            order: Order::Ordered,
        })
    }

    /// The same with the given output order.
    pub fn order(self, order: Order) -> Self {
        Parallel { order, ..self }
    }

    /// Results in completion order.
    pub fn unordered(self) -> Self {
        self.order(Order::Unordered)
    }

    /// The worker count.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Maps every input and collects the results (empty input gives an empty vector).
    pub async fn map<I, F, Fut>(&self, inputs: I, f: F) -> Vec<Fut::Output>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future,
    {
        let inputs = inputs.into_iter();
        let mut out = Vec::with_capacity(inputs.size_hint().0);
        let mut results = std::pin::pin!(self.map_stream(stream::iter(inputs), f));
        while let Some(result) = results.next().await {
            out.push(result);
        }
        out
    }

    /// The stream adapter: maps each item of `inputs`, with at most `workers` in flight.
    pub fn map_stream<S, F, Fut>(&self, inputs: S, f: F) -> impl Stream<Item = Fut::Output>
    where
        S: Stream,
        F: FnMut(S::Item) -> Fut,
        Fut: Future,
    {
        let futures = inputs.map(f);
        match self.order {
            Order::Ordered => Either::Left(futures.buffered(self.workers)),
            Order::Unordered => Either::Right(futures.buffer_unordered(self.workers)),
        }
    }
}
