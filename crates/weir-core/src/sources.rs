//! The built-in in-process source: an iterator.

use crate::error::OperatorError;
use crate::operator::{OperatorContext, Source, SourceStatus};

pub(crate) struct IterSource<I> {
    pub(crate) items: Option<I>,
    /// Items emitted: where a resumed run continues (the iterator is replayed up to there).
    pub(crate) emitted: u64,
}

impl<T: Send + 'static, I: Iterator<Item = T> + Send + 'static> Source<T> for IterSource<I> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        if let Some(done) = crate::state::restore_value::<u64>(ctx, "emitted")?
            && let Some(items) = self.items.as_mut()
        {
            items.by_ref().take(done as usize).for_each(drop);
            self.emitted = done;
        }
        Ok(())
    }

    fn snapshot(
        &mut self,
        _: crate::CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        crate::state::save_value(ctx, "emitted", &self.emitted)
    }

    fn poll(
        &mut self,
        out: &mut Vec<T>,
        max: usize,
        _: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError> {
        let Some(items) = self.items.as_mut() else {
            return Ok(SourceStatus::Finished);
        };
        let before = out.len();
        out.extend(items.by_ref().take(max));
        self.emitted += (out.len() - before) as u64;
        Ok(if out.len() < max {
            SourceStatus::Finished
        } else {
            SourceStatus::Ready
        })
    }
}
