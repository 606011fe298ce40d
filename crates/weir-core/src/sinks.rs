//! Built-in in-process sinks: collect, count, for_each.

use crate::error::OperatorError;
use crate::operator::{OperatorContext, Sink};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) struct CollectSink<T> {
    pub(crate) items: Arc<Mutex<Vec<T>>>,
}

impl<T: Send + 'static> Sink<T> for CollectSink<T> {
    fn write(&mut self, batch: &mut Vec<T>, _: &mut OperatorContext) -> Result<(), OperatorError> {
        self.items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(batch);
        Ok(())
    }
}

pub(crate) struct CountSink {
    pub(crate) count: Arc<AtomicU64>,
    pub(crate) local: u64,
}

impl<T: Send + 'static> Sink<T> for CountSink {
    fn write(&mut self, batch: &mut Vec<T>, _: &mut OperatorContext) -> Result<(), OperatorError> {
        self.local += batch.len() as u64;
        batch.clear();
        Ok(())
    }

    fn on_tick(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        self.count
            .fetch_add(std::mem::take(&mut self.local), Ordering::Relaxed);
        Ok(())
    }

    fn close(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        self.count
            .fetch_add(std::mem::take(&mut self.local), Ordering::Relaxed);
        Ok(())
    }
}

pub(crate) struct ForEachSink<F>(pub(crate) F);

impl<T: Send + 'static, F: FnMut(T) + Send + 'static> Sink<T> for ForEachSink<F> {
    fn write(&mut self, batch: &mut Vec<T>, _: &mut OperatorContext) -> Result<(), OperatorError> {
        batch.drain(..).for_each(&mut self.0);
        Ok(())
    }
}
