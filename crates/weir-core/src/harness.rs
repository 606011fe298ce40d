//! Drives one operator by hand, without a runtime: for unit tests of operators (and for
//! embedding an operator in other code). The harness forwards watermarks as the runtime does:
//! what `on_watermark` returns and what the operator emits, only when advancing.

use crate::error::OperatorError;
use crate::message::{BEFORE_TIME, Clock, Timestamp};
use crate::operator::{Emitted, Operator, OperatorContext};
use std::marker::PhantomData;
use std::sync::Arc;

pub struct Harness<In, Out, O> {
    op: O,
    ctx: OperatorContext,
    opened: bool,
    forwarded: Vec<Timestamp>,
    idle_signals: usize,
    _t: PhantomData<fn(In) -> Out>,
}

impl<In, Out, O: Operator<In, Out>> Harness<In, Out, O> {
    pub fn new(op: O) -> Self {
        Self::with_context(op, OperatorContext::detached("harness"))
    }

    /// A harness whose operator sees processing time from `clock`.
    pub fn with_clock(op: O, clock: Arc<dyn Clock>) -> Self {
        Self::with_context(op, OperatorContext::detached_with_clock("harness", clock))
    }

    fn with_context(op: O, ctx: OperatorContext) -> Self {
        Harness {
            op,
            ctx,
            opened: false,
            forwarded: Vec::new(),
            idle_signals: 0,
            _t: PhantomData,
        }
    }

    fn open(&mut self) -> Result<(), OperatorError> {
        if !self.opened {
            self.opened = true;
            self.op.open(&mut self.ctx)?;
        }
        Ok(())
    }

    fn settle(&mut self) {
        match std::mem::take(&mut self.ctx.emitted) {
            Emitted::Watermark(w) => self.forward(w),
            Emitted::Idle => self.idle_signals += 1,
            Emitted::Nothing => {}
        }
    }

    fn forward(&mut self, w: Timestamp) {
        if w > self.forwarded.last().copied().unwrap_or(BEFORE_TIME) {
            self.forwarded.push(w);
        }
    }

    /// Processes a batch; returns what the operator emitted.
    pub fn push(&mut self, mut records: Vec<In>) -> Result<Vec<Out>, OperatorError> {
        self.open()?;
        let mut out = Vec::new();
        let n = records.len() as u64;
        self.op.process(&mut records, &mut out, &mut self.ctx)?;
        self.ctx.position += n;
        self.settle();
        Ok(out)
    }

    /// Advances the input watermark.
    pub fn watermark(&mut self, watermark: Timestamp) -> Result<Vec<Out>, OperatorError> {
        self.open()?;
        self.ctx.watermark = watermark;
        let mut out = Vec::new();
        let forward = self.op.on_watermark(watermark, &mut out, &mut self.ctx)?;
        self.settle();
        if let Some(w) = forward {
            self.forward(w);
        }
        Ok(out)
    }

    /// One processing-time tick.
    pub fn tick(&mut self) -> Result<Vec<Out>, OperatorError> {
        self.open()?;
        let mut out = Vec::new();
        self.op.on_tick(&mut out, &mut self.ctx)?;
        self.settle();
        Ok(out)
    }

    /// End of input.
    pub fn close(&mut self) -> Result<Vec<Out>, OperatorError> {
        self.open()?;
        let mut out = Vec::new();
        self.op.close(&mut out, &mut self.ctx)?;
        self.settle();
        Ok(out)
    }

    /// Watermarks forwarded downstream so far, in order.
    pub fn forwarded_watermarks(&self) -> &[Timestamp] {
        &self.forwarded
    }

    /// How many times the operator declared itself idle.
    pub fn idle_signals(&self) -> usize {
        self.idle_signals
    }

    pub fn operator(&mut self) -> &mut O {
        &mut self.op
    }

    pub fn context(&mut self) -> &mut OperatorContext {
        &mut self.ctx
    }
}
