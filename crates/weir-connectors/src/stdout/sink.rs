//! [`StdoutSink`]: records on standard output, one per line.

use std::fmt::Display;
use std::io::Write;
use weir_core::{OperatorContext, OperatorError, Sink};

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
