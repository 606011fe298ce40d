//! Tasks: the units that run on threads. A source task polls its source and pushes through its
//! chain; an inbox task reads a channel fed by all upstream instances and pushes through its
//! chain, keeping per-input bookkeeping: the end of every input (the stream ends only when
//! all have ended), the minimum watermark over inputs, and barrier alignment.

use crate::chain::{BoxPusher, guarded};
use crate::channel::{Received, Receiver};
use crate::checkpoint::CheckpointShared;
use crate::error::JobError;
use crate::message::{
    BEFORE_TIME, Barrier, CheckpointId, END_OF_TIME, Ending, Message, Timestamp, set_batch_ingest,
    wall_ms,
};
use crate::metrics::Counters;
use crate::operator::{OperatorContext, Source, SourceStatus};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What every task of a job shares.
pub(crate) struct JobShared {
    /// Sources finish at their next poll (graceful: everything in flight drains).
    pub(crate) stop: Arc<AtomicBool>,
    /// The job failed or was cancelled: tasks stop where they are.
    pub(crate) aborted: Arc<AtomicBool>,
    pub(crate) tick_interval: Duration,
    pub(crate) batch_size: usize,
    /// How a stop request ends the run: `Stopped` keeps event time and open windows for a
    /// resumed run; `Drained` (asked for, or without checkpoints, where nothing could resume
    /// them) fires everything first.
    pub(crate) stop_ending: Ending,
}

pub(crate) trait Task: Send {
    fn name(&self) -> &str;
    fn run(self: Box<Self>, job: &JobShared) -> Result<(), JobError>;
}

pub(crate) struct SourceTask<T, S> {
    pub(crate) source: S,
    pub(crate) ctx: OperatorContext,
    pub(crate) chain: BoxPusher<T>,
}

impl<T: Send, S: Source<T>> Task for SourceTask<T, S> {
    fn name(&self) -> &str {
        &self.ctx.name
    }

    fn run(mut self: Box<Self>, job: &JobShared) -> Result<(), JobError> {
        let this = &mut *self;
        let source = &mut this.source;
        guarded(&mut this.ctx, |ctx| source.open(ctx))?;
        this.chain.open()?;
        let checkpoints = this.ctx.checkpoints.clone();
        let mut batch = Vec::with_capacity(job.batch_size);
        let mut last_tick = Instant::now();
        let (mut injected, mut committed) = (0, 0);
        let mut reading = true;
        let mut ending = Ending::Drained;
        // Records pushed since the chain was last flushed.
        let mut unflushed = false;
        loop {
            if job.aborted.load(Ordering::Relaxed) {
                return Err(JobError::Cancelled);
            }
            if let Some(cp) = &checkpoints {
                let requested = cp.requested.load(Ordering::SeqCst);
                if requested > injected {
                    injected = requested;
                    this.inject_barrier(requested, cp)?;
                }
                let done = cp.committed.load(Ordering::SeqCst);
                if done > committed {
                    committed = done;
                    this.commit(done)?;
                }
            }
            if last_tick.elapsed() >= job.tick_interval {
                last_tick = Instant::now();
                this.chain.tick()?;
            }
            if reading && job.stop.load(Ordering::Relaxed) {
                reading = false;
                ending = job.stop_ending;
                this.finish_reading(ending, checkpoints.as_deref())?;
            }
            if !reading {
                match &checkpoints {
                    None => break,
                    Some(cp) => {
                        // Wait for the checkpoint that covers everything read.
                        let last = cp.final_id.load(Ordering::SeqCst);
                        if last != 0 && committed >= last {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                }
            }
            let started = Instant::now();
            // When this poll's records arrive, unless the source knows better (e.g. a Redis
            // stream entry's id): the batch's ingest time.
            let polled_at = wall_ms();
            this.ctx.ingest = BEFORE_TIME;
            let source = &mut this.source;
            let status = guarded(&mut this.ctx, |ctx| {
                source.poll(&mut batch, job.batch_size, ctx)
            })?;
            let counters = &this.ctx.counters;
            Counters::add(&counters.busy_ns, started.elapsed().as_nanos() as u64);
            let full = batch.len() >= job.batch_size;
            if !batch.is_empty() {
                set_batch_ingest(if this.ctx.ingest == BEFORE_TIME {
                    polled_at
                } else {
                    this.ctx.ingest
                });
                Counters::add(&counters.records_out, batch.len() as u64);
                this.ctx.position += batch.len() as u64;
                this.chain.push(&mut batch)?;
                batch.clear();
                unflushed = true;
            }
            // Less than a full batch: the input is quiet, let what was pushed out now.
            if unflushed && !full {
                unflushed = false;
                this.chain.flush()?;
            }
            match status {
                SourceStatus::Finished | SourceStatus::Stopped => {
                    reading = false;
                    ending = match status {
                        SourceStatus::Finished => Ending::Drained,
                        _ => job.stop_ending,
                    };
                    this.finish_reading(ending, checkpoints.as_deref())?;
                }
                SourceStatus::Idle => std::thread::sleep(Duration::from_millis(1)),
                SourceStatus::Ready => {}
            }
        }
        this.chain.end(ending)?;
        let source = &mut this.source;
        guarded(&mut this.ctx, |ctx| source.close(ctx))
    }
}

impl<T: Send, S: Source<T>> SourceTask<T, S> {
    /// Reading is over. A drain closes event time (every window fires now, so that the final
    /// checkpoint covers the results); a stop leaves it where it is. Then the coordinator
    /// takes the final checkpoint.
    fn finish_reading(
        &mut self,
        ending: Ending,
        checkpoints: Option<&CheckpointShared>,
    ) -> Result<(), JobError> {
        if ending == Ending::Drained {
            self.chain.watermark(END_OF_TIME)?;
        }
        self.chain.flush()?;
        if let Some(cp) = checkpoints {
            cp.source_finished(ending);
        }
        Ok(())
    }

    fn inject_barrier(&mut self, id: CheckpointId, cp: &CheckpointShared) -> Result<(), JobError> {
        self.ctx.checkpoint = id;
        let source = &mut self.source;
        guarded(&mut self.ctx, |ctx| source.snapshot(id, ctx))?;
        self.chain.barrier(Barrier { checkpoint: id })?;
        let ctx = &mut self.ctx;
        guarded(ctx, |_| cp.ack(id))
    }

    fn commit(&mut self, id: CheckpointId) -> Result<(), JobError> {
        self.ctx.checkpoint = id;
        let source = &mut self.source;
        guarded(&mut self.ctx, |ctx| source.commit(id, ctx))?;
        self.chain.commit(id)
    }
}

/// Per-input bookkeeping of an inbox task.
struct Inputs {
    watermarks: Vec<Timestamp>,
    idle: Vec<bool>,
    /// Whether `Idle` was forwarded because every live input is idle.
    all_idle: bool,
    ended: Vec<bool>,
    live: usize,
    /// How the inputs that ended so far ended.
    ending: Ending,
    current_watermark: Timestamp,
    /// The barrier being aligned, and which inputs have delivered it.
    aligning: Option<Barrier>,
    blocked: Vec<bool>,
    blocked_count: usize,
}

pub(crate) struct InboxTask<T> {
    name: Arc<str>,
    receiver: Receiver<T>,
    inputs: usize,
    chain: BoxPusher<T>,
    checkpoints: Option<Arc<CheckpointShared>>,
    committed: CheckpointId,
}

impl<T> InboxTask<T> {
    pub(crate) fn new(
        name: Arc<str>,
        receiver: Receiver<T>,
        inputs: usize,
        chain: BoxPusher<T>,
        checkpoints: Option<Arc<CheckpointShared>>,
    ) -> Self {
        InboxTask {
            name,
            receiver,
            inputs,
            chain,
            checkpoints,
            committed: 0,
        }
    }

    /// Passes on commit notifications of completed checkpoints.
    fn poll_commits(&mut self) -> Result<(), JobError>
    where
        T: Send,
    {
        if let Some(cp) = &self.checkpoints {
            let done = cp.committed.load(Ordering::SeqCst);
            if done > self.committed {
                self.committed = done;
                self.chain.commit(done)?;
            }
        }
        Ok(())
    }
}

impl<T: Send> Task for InboxTask<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(mut self: Box<Self>, job: &JobShared) -> Result<(), JobError> {
        let n = self.inputs;
        let mut state = Inputs {
            watermarks: vec![BEFORE_TIME; n],
            idle: vec![false; n],
            all_idle: false,
            ended: vec![false; n],
            live: n,
            ending: Ending::Drained,
            current_watermark: BEFORE_TIME,
            aligning: None,
            blocked: vec![false; n],
            blocked_count: 0,
        };
        // Messages from inputs that delivered the barrier, held until alignment completes.
        let mut held: Vec<VecDeque<Message<T>>> = (0..n).map(|_| VecDeque::new()).collect();
        self.chain.open()?;
        let mut queue: VecDeque<(u32, Message<T>)> = VecDeque::new();
        let mut last_tick = Instant::now();
        loop {
            match self.receiver.recv_all(&mut queue, job.tick_interval) {
                Received::Closed => return Err(JobError::Cancelled),
                Received::Timeout => self.poll_commits()?,
                Received::Messages => {
                    self.poll_commits()?;
                    let mut pushed = false;
                    while let Some((input, msg)) = queue.pop_front() {
                        let i = input as usize;
                        if state.blocked[i] {
                            held[i].push_back(msg);
                            continue;
                        }
                        if state.idle[i] && matches!(msg, Message::Data(..) | Message::Watermark(_))
                        {
                            state.idle[i] = false;
                            state.all_idle = false;
                        }
                        match msg {
                            Message::Data(mut batch, ingest) => {
                                pushed = true;
                                set_batch_ingest(ingest);
                                self.chain.push(&mut batch)?
                            }
                            Message::Watermark(w) => {
                                state.watermarks[i] = state.watermarks[i].max(w);
                                self.advance_watermark(&mut state)?;
                            }
                            Message::Idle => {
                                state.idle[i] = true;
                                self.advance_watermark(&mut state)?;
                            }
                            Message::Barrier(b) => {
                                state.aligning = Some(b);
                                state.blocked[i] = true;
                                state.blocked_count += 1;
                                self.complete_alignment(&mut state, &mut held, &mut queue)?;
                            }
                            Message::End(ending) => {
                                state.ended[i] = true;
                                state.live -= 1;
                                state.ending = state.ending.and(ending);
                                // A stopped input keeps its watermark: event time does not
                                // pass what it may still send in a resumed run.
                                if ending == Ending::Drained {
                                    state.watermarks[i] = END_OF_TIME;
                                }
                                self.advance_watermark(&mut state)?;
                                self.complete_alignment(&mut state, &mut held, &mut queue)?;
                                if state.live == 0 {
                                    if pushed {
                                        self.chain.flush()?;
                                    }
                                    // Sources end after the final checkpoint completed:
                                    // deliver its commit before closing.
                                    self.poll_commits()?;
                                    return self.chain.end(state.ending);
                                }
                            }
                        }
                    }
                    // What arrived is handled: let it out of buffering sinks.
                    if pushed {
                        self.chain.flush()?;
                    }
                }
            }
            if last_tick.elapsed() >= job.tick_interval {
                last_tick = Instant::now();
                self.chain.tick()?;
            }
        }
    }
}

impl<T: Send> InboxTask<T> {
    /// Forwards the minimum watermark over the inputs that are neither idle nor ended; when
    /// every live input is idle, forwards the idleness instead.
    fn advance_watermark(&mut self, state: &mut Inputs) -> Result<(), JobError> {
        let active = (0..state.watermarks.len()).filter(|&i| !state.idle[i] || state.ended[i]);
        let Some(min) = active.map(|i| state.watermarks[i]).min() else {
            if !state.all_idle {
                state.all_idle = true;
                self.chain.idle()?;
            }
            return Ok(());
        };
        if min > state.current_watermark {
            state.current_watermark = min;
            self.chain.watermark(min)?;
        }
        Ok(())
    }

    /// When every live input has delivered the barrier: snapshot, forward it, release the held
    /// messages (they go back to the front of the queue, in order).
    fn complete_alignment(
        &mut self,
        state: &mut Inputs,
        held: &mut [VecDeque<Message<T>>],
        queue: &mut VecDeque<(u32, Message<T>)>,
    ) -> Result<(), JobError> {
        let Some(barrier) = state.aligning else {
            return Ok(());
        };
        let aligned = (0..state.blocked.len()).all(|i| state.blocked[i] || state.ended[i]);
        if !aligned {
            return Ok(());
        }
        self.chain.barrier(barrier)?;
        if let Some(cp) = &self.checkpoints {
            cp.ack(barrier.checkpoint)
                .map_err(|error| JobError::Operator {
                    operator: self.name.clone(),
                    instance: 0,
                    error,
                })?;
        }
        state.aligning = None;
        state.blocked_count = 0;
        for (i, h) in held.iter_mut().enumerate().rev() {
            state.blocked[i] = false;
            while let Some(msg) = h.pop_back() {
                queue.push_front((i as u32, msg));
            }
        }
        Ok(())
    }
}
