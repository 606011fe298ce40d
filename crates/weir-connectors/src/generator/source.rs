//! [`GeneratorSource`]: records made from ids, split over the parallel instances.

use std::time::Instant;
use weir_core::{CheckpointId, OperatorContext, OperatorError, Source, SourceStatus};

/// Makes records from ids. Instance `i` of `p` produces the ids `[i*n/p, (i+1)*n/p)`, so the
/// union over instances is exactly `0..n` whatever the parallelism. Optionally paced.
pub struct GeneratorSource<F> {
    count: Option<u64>,
    next: u64,
    end: u64,
    rate: Option<f64>,
    started: Option<Instant>,
    emitted: u64,
    generate: F,
}

impl<F> GeneratorSource<F> {
    /// `count`: `None` for endless. `rate`: records per second over all instances.
    pub fn new(count: Option<u64>, rate: Option<f64>, generate: F) -> Self {
        GeneratorSource {
            count,
            next: 0,
            end: u64::MAX,
            rate,
            started: None,
            emitted: 0,
            generate,
        }
    }
}

impl<T: Send + 'static, F: Fn(u64) -> T + Send + 'static> Source<T> for GeneratorSource<F> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        let (i, p) = (ctx.instance() as u128, ctx.parallelism() as u128);
        let total = self.count.map_or(u64::MAX as u128, u128::from);
        self.next = (i * total / p) as u64;
        self.end = ((i + 1) * total / p) as u64;
        if let Some(rate) = self.rate {
            self.rate = Some(rate / p as f64);
        }
        if let Some(next) = weir_core::state::restore_value::<u64>(ctx, "next_id")? {
            self.next = next;
        }
        Ok(())
    }

    fn snapshot(
        &mut self,
        _: CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        weir_core::state::save_value(ctx, "next_id", &self.next)
    }

    #[inline]
    fn poll(
        &mut self,
        out: &mut Vec<T>,
        max: usize,
        _: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError> {
        let mut n = (self.end - self.next).min(max as u64);
        if let Some(rate) = self.rate {
            let started = *self.started.get_or_insert_with(Instant::now);
            let due = (started.elapsed().as_secs_f64() * rate) as u64;
            n = n.min(due.saturating_sub(self.emitted));
            if n == 0 {
                return Ok(SourceStatus::Idle);
            }
        }
        let start = self.next;
        out.extend((start..start + n).map(&self.generate));
        self.next += n;
        self.emitted += n;
        Ok(if self.next >= self.end {
            SourceStatus::Finished
        } else {
            SourceStatus::Ready
        })
    }
}
