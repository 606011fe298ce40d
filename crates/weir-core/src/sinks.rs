//! Built-in in-process sinks: collect, count, for_each, stdout.

use crate::error::OperatorError;
use crate::operator::{OperatorContext, Sink};
use std::fmt::Display;
use std::io::Write;
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

/// Writes records to standard output, one per line (`Display`), flushed every tick and at end.
pub struct StdoutSink {
    buffer: Vec<u8>,
}

impl StdoutSink {
    pub fn new() -> Self {
        StdoutSink { buffer: Vec::new() }
    }

    fn flush(&mut self) -> Result<(), OperatorError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buffer)
            .and_then(|_| out.flush())
            .map_err(|e| OperatorError::io("writing to standard output", e))?;
        self.buffer.clear();
        Ok(())
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Display + Send + 'static> Sink<T> for StdoutSink {
    fn write(&mut self, batch: &mut Vec<T>, _: &mut OperatorContext) -> Result<(), OperatorError> {
        for record in batch.drain(..) {
            // Writing into a Vec<u8> cannot fail.
            let _ = writeln!(self.buffer, "{record}");
        }
        if self.buffer.len() > 1 << 16 {
            self.flush()?;
        }
        Ok(())
    }

    fn on_tick(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        self.flush()
    }

    fn close(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        self.flush()
    }
}
