//! Fused operator chains: how a batch moves from one operator to the next inside a task.
//!
//! A task is a head (a source, or a channel receiver) followed by a tree of [`Pusher`]s:
//! operators, tees (one stream read by several operators), splitters (side outputs) and, at the
//! leaves, sinks or exchanges into channels. A batch crosses a chain with one virtual call per
//! node, never one per record.

use crate::channel::{Closed, Sender};
use crate::error::{ErrorKind, JobError, OperatorError, panic_message};
use crate::message::{
    BEFORE_TIME, Barrier, CheckpointId, Ending, Message, Timestamp, batch_ingest,
};
use crate::metrics::Counters;
use crate::operator::{Emitted, Operator, OperatorContext, Sink};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

/// Receives what an upstream node emits.
pub(crate) trait Pusher<T>: Send {
    fn open(&mut self) -> Result<(), JobError>;
    /// Takes the records out of `batch`.
    fn push(&mut self, batch: &mut Vec<T>) -> Result<(), JobError>;
    fn watermark(&mut self, watermark: Timestamp) -> Result<(), JobError>;
    /// The upstream has no data for now (see `Message::Idle`).
    fn idle(&mut self) -> Result<(), JobError>;
    fn tick(&mut self) -> Result<(), JobError>;
    fn barrier(&mut self, barrier: Barrier) -> Result<(), JobError>;
    fn commit(&mut self, checkpoint: CheckpointId) -> Result<(), JobError>;
    /// The input is quiet for now (a source returned less than a full batch): sinks make what
    /// they buffered visible, so records arrive within the batch timeout.
    fn flush(&mut self) -> Result<(), JobError>;
    /// The stream ended; operators are closed (emitting what they hold) only when it drained.
    fn end(&mut self, ending: Ending) -> Result<(), JobError>;
}

pub(crate) type BoxPusher<T> = Box<dyn Pusher<T>>;

fn fail(ctx: &OperatorContext, error: OperatorError) -> JobError {
    ctx.counters
        .errors
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    JobError::Operator {
        operator: ctx.name.clone(),
        instance: ctx.instance,
        error,
    }
}

/// Runs user code, turning a panic into an operator error at the batch's position.
#[inline]
pub(crate) fn guarded<R>(
    ctx: &mut OperatorContext,
    f: impl FnOnce(&mut OperatorContext) -> Result<R, OperatorError>,
) -> Result<R, JobError> {
    let position = ctx.position;
    match catch_unwind(AssertUnwindSafe(|| f(ctx))) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(fail(ctx, e)),
        Err(payload) => Err(fail(
            ctx,
            OperatorError::new(ErrorKind::Panic, panic_message(&*payload)).at(position),
        )),
    }
}

/// An operator inside a chain.
pub(crate) struct OpNode<In, Out, O> {
    pub(crate) op: O,
    pub(crate) ctx: OperatorContext,
    pub(crate) out: Vec<Out>,
    pub(crate) next: BoxPusher<Out>,
    /// The last watermark sent downstream: only advancing ones are forwarded.
    pub(crate) forwarded: Timestamp,
    pub(crate) _in: std::marker::PhantomData<fn(In)>,
}

impl<In, Out, O: Operator<In, Out>> OpNode<In, Out, O> {
    pub(crate) fn new(op: O, ctx: OperatorContext, next: BoxPusher<Out>) -> Self {
        OpNode {
            op,
            ctx,
            out: Vec::new(),
            next,
            forwarded: BEFORE_TIME,
            _in: std::marker::PhantomData,
        }
    }

    /// Sends the records produced so far, then whatever watermark or idleness the operator
    /// emitted during the call.
    #[inline]
    fn send_out(&mut self) -> Result<(), JobError> {
        if !self.out.is_empty() {
            Counters::add(&self.ctx.counters.records_out, self.out.len() as u64);
            self.next.push(&mut self.out)?;
            self.out.clear();
        }
        match std::mem::take(&mut self.ctx.emitted) {
            Emitted::Nothing => Ok(()),
            Emitted::Watermark(w) => self.forward_watermark(w),
            Emitted::Idle => self.next.idle(),
        }
    }

    fn forward_watermark(&mut self, w: Timestamp) -> Result<(), JobError> {
        if w > self.forwarded {
            self.forwarded = w;
            self.next.watermark(w)?;
        }
        Ok(())
    }
}

impl<In: Send, Out: Send, O: Operator<In, Out>> Pusher<In> for OpNode<In, Out, O> {
    fn open(&mut self) -> Result<(), JobError> {
        let op = &mut self.op;
        guarded(&mut self.ctx, |ctx| op.open(ctx))?;
        self.next.open()
    }

    #[inline]
    fn push(&mut self, batch: &mut Vec<In>) -> Result<(), JobError> {
        let n = batch.len() as u64;
        Counters::add(&self.ctx.counters.records_in, n);
        let started = Instant::now();
        let (op, out) = (&mut self.op, &mut self.out);
        guarded(&mut self.ctx, |ctx| op.process(batch, out, ctx))?;
        batch.clear();
        Counters::add(
            &self.ctx.counters.busy_ns,
            started.elapsed().as_nanos() as u64,
        );
        self.ctx.position += n;
        self.send_out()
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<(), JobError> {
        self.ctx.watermark = watermark;
        self.ctx.counters.set_watermark(watermark);
        let (op, out) = (&mut self.op, &mut self.out);
        let forward = guarded(&mut self.ctx, |ctx| op.on_watermark(watermark, out, ctx))?;
        self.send_out()?;
        match forward {
            Some(w) => self.forward_watermark(w),
            None => Ok(()),
        }
    }

    fn idle(&mut self) -> Result<(), JobError> {
        self.next.idle()
    }

    fn tick(&mut self) -> Result<(), JobError> {
        let (op, out) = (&mut self.op, &mut self.out);
        guarded(&mut self.ctx, |ctx| op.on_tick(out, ctx))?;
        self.send_out()?;
        self.next.tick()
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<(), JobError> {
        self.ctx.checkpoint = barrier.checkpoint;
        let op = &mut self.op;
        guarded(&mut self.ctx, |ctx| op.snapshot(barrier.checkpoint, ctx))?;
        self.next.barrier(barrier)
    }

    fn commit(&mut self, checkpoint: CheckpointId) -> Result<(), JobError> {
        self.ctx.checkpoint = checkpoint;
        let op = &mut self.op;
        guarded(&mut self.ctx, |ctx| op.commit(checkpoint, ctx))?;
        self.next.commit(checkpoint)
    }

    fn flush(&mut self) -> Result<(), JobError> {
        self.next.flush()
    }

    fn end(&mut self, ending: Ending) -> Result<(), JobError> {
        if ending == Ending::Drained {
            let (op, out) = (&mut self.op, &mut self.out);
            guarded(&mut self.ctx, |ctx| op.close(out, ctx))?;
            self.send_out()?;
        }
        self.next.end(ending)
    }
}

/// A sink at the end of a chain.
///
/// It also measures end-to-end latency: the oldest ingest time of the records written since
/// the last delivery is kept, and observed when they count as delivered. Without checkpoints,
/// that is when the sink is told to make its output visible (a tick, a quiet input, the end);
/// with checkpoints, when the checkpoint covering them completes (their output is final then:
/// exactly-once sinks make it visible, and a restart does not replay it).
pub(crate) struct SinkNode<T, S> {
    pub(crate) sink: S,
    pub(crate) ctx: OperatorContext,
    pub(crate) _t: std::marker::PhantomData<fn(T)>,
    /// The oldest ingest time of the records written since the last delivery.
    pub(crate) pending: Timestamp,
    /// With checkpoints: the oldest ingest time of the records each pre-committed
    /// checkpoint covers, oldest checkpoint first.
    pub(crate) precommitted: Vec<(CheckpointId, Timestamp)>,
}

impl<T, S> SinkNode<T, S> {
    pub(crate) fn new(sink: S, ctx: OperatorContext) -> Self {
        SinkNode {
            sink,
            ctx,
            _t: std::marker::PhantomData,
            pending: BEFORE_TIME,
            precommitted: Vec::new(),
        }
    }

    /// Without checkpoints: what was written so far counts as delivered.
    fn delivered(&mut self) {
        if self.pending != BEFORE_TIME && !self.ctx.checkpointing() {
            self.ctx.counters.latency.observe(self.pending);
            self.pending = BEFORE_TIME;
        }
    }
}

impl<T: Send, S: Sink<T>> Pusher<T> for SinkNode<T, S> {
    fn open(&mut self) -> Result<(), JobError> {
        let sink = &mut self.sink;
        guarded(&mut self.ctx, |ctx| sink.open(ctx))
    }

    #[inline]
    fn push(&mut self, batch: &mut Vec<T>) -> Result<(), JobError> {
        let n = batch.len() as u64;
        Counters::add(&self.ctx.counters.records_in, n);
        let started = Instant::now();
        let sink = &mut self.sink;
        guarded(&mut self.ctx, |ctx| sink.write(batch, ctx))?;
        batch.clear();
        Counters::add(
            &self.ctx.counters.busy_ns,
            started.elapsed().as_nanos() as u64,
        );
        self.ctx.position += n;
        let ingest = batch_ingest();
        if ingest != BEFORE_TIME && (self.pending == BEFORE_TIME || ingest < self.pending) {
            self.pending = ingest;
        }
        Ok(())
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<(), JobError> {
        self.ctx.watermark = watermark;
        self.ctx.counters.set_watermark(watermark);
        Ok(())
    }

    fn idle(&mut self) -> Result<(), JobError> {
        Ok(())
    }

    fn tick(&mut self) -> Result<(), JobError> {
        let sink = &mut self.sink;
        guarded(&mut self.ctx, |ctx| sink.on_tick(ctx))?;
        self.delivered();
        Ok(())
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<(), JobError> {
        self.ctx.checkpoint = barrier.checkpoint;
        let sink = &mut self.sink;
        guarded(&mut self.ctx, |ctx| sink.snapshot(barrier.checkpoint, ctx))?;
        if self.pending != BEFORE_TIME {
            self.precommitted.push((
                barrier.checkpoint,
                std::mem::replace(&mut self.pending, BEFORE_TIME),
            ));
        }
        Ok(())
    }

    fn commit(&mut self, checkpoint: CheckpointId) -> Result<(), JobError> {
        self.ctx.checkpoint = checkpoint;
        let sink = &mut self.sink;
        guarded(&mut self.ctx, |ctx| sink.commit(checkpoint, ctx))?;
        let covered = self
            .precommitted
            .iter()
            .take_while(|(id, _)| *id <= checkpoint)
            .count();
        for (_, ingest) in self.precommitted.drain(..covered) {
            self.ctx.counters.latency.observe(ingest);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), JobError> {
        let sink = &mut self.sink;
        guarded(&mut self.ctx, |ctx| sink.flush(ctx))?;
        self.delivered();
        Ok(())
    }

    fn end(&mut self, _: Ending) -> Result<(), JobError> {
        let sink = &mut self.sink;
        guarded(&mut self.ctx, |ctx| sink.close(ctx))?;
        self.delivered();
        Ok(())
    }
}

/// Output nobody reads.
pub(crate) struct Discard;

impl<T> Pusher<T> for Discard {
    fn open(&mut self) -> Result<(), JobError> {
        Ok(())
    }
    fn push(&mut self, batch: &mut Vec<T>) -> Result<(), JobError> {
        batch.clear();
        Ok(())
    }
    fn watermark(&mut self, _: Timestamp) -> Result<(), JobError> {
        Ok(())
    }
    fn idle(&mut self) -> Result<(), JobError> {
        Ok(())
    }
    fn tick(&mut self) -> Result<(), JobError> {
        Ok(())
    }
    fn barrier(&mut self, _: Barrier) -> Result<(), JobError> {
        Ok(())
    }
    fn commit(&mut self, _: CheckpointId) -> Result<(), JobError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), JobError> {
        Ok(())
    }
    fn end(&mut self, _: Ending) -> Result<(), JobError> {
        Ok(())
    }
}

/// One stream read by several downstream nodes: each gets every record.
pub(crate) struct Tee<T> {
    pub(crate) outputs: Vec<BoxPusher<T>>,
    pub(crate) scratch: Vec<T>,
}

/// Applies `$call` to every output of a fan-out node.
macro_rules! for_all {
    ($self:ident, $out:ident => $call:expr) => {{
        for $out in $self.outputs.iter_mut() {
            $call?;
        }
        Ok(())
    }};
}

/// The control methods of a fan-out node: each forwards to every output, through `$each`
/// (`for_all` over `self.outputs`, or `both` over `self.ok` and `self.err`).
macro_rules! fan_out_control {
    ($each:ident) => {
        fn open(&mut self) -> Result<(), JobError> {
            $each!(self, o => o.open())
        }
        fn watermark(&mut self, w: Timestamp) -> Result<(), JobError> {
            $each!(self, o => o.watermark(w))
        }
        fn idle(&mut self) -> Result<(), JobError> {
            $each!(self, o => o.idle())
        }
        fn tick(&mut self) -> Result<(), JobError> {
            $each!(self, o => o.tick())
        }
        fn barrier(&mut self, b: Barrier) -> Result<(), JobError> {
            $each!(self, o => o.barrier(b))
        }
        fn commit(&mut self, c: CheckpointId) -> Result<(), JobError> {
            $each!(self, o => o.commit(c))
        }
        fn flush(&mut self) -> Result<(), JobError> {
            $each!(self, o => o.flush())
        }
        fn end(&mut self, ending: Ending) -> Result<(), JobError> {
            $each!(self, o => o.end(ending))
        }
    };
}

impl<T: Clone + Send> Pusher<T> for Tee<T> {
    fan_out_control!(for_all);

    fn push(&mut self, batch: &mut Vec<T>) -> Result<(), JobError> {
        let (last, rest) = match self.outputs.split_last_mut() {
            Some(split) => split,
            None => return Ok(()),
        };
        for o in rest {
            self.scratch.clear();
            self.scratch.extend_from_slice(batch);
            o.push(&mut self.scratch)?;
        }
        last.push(batch)
    }
}

/// Splits a stream of `Result`s into its `Ok` and `Err` streams, moving (not cloning) records.
pub(crate) struct ResultSplit<A, E> {
    pub(crate) ok: BoxPusher<A>,
    pub(crate) err: BoxPusher<E>,
    pub(crate) ok_buf: Vec<A>,
    pub(crate) err_buf: Vec<E>,
}

macro_rules! both {
    ($self:ident, $p:ident => $call:expr) => {{
        {
            let $p = &mut $self.ok;
            $call?;
        }
        let $p = &mut $self.err;
        $call
    }};
}

impl<A: Send, E: Send> Pusher<Result<A, E>> for ResultSplit<A, E> {
    fan_out_control!(both);

    fn push(&mut self, batch: &mut Vec<Result<A, E>>) -> Result<(), JobError> {
        for r in batch.drain(..) {
            match r {
                Ok(a) => self.ok_buf.push(a),
                Err(e) => self.err_buf.push(e),
            }
        }
        if !self.ok_buf.is_empty() {
            self.ok.push(&mut self.ok_buf)?;
            self.ok_buf.clear();
        }
        if !self.err_buf.is_empty() {
            self.err.push(&mut self.err_buf)?;
            self.err_buf.clear();
        }
        Ok(())
    }
}

/// Chooses the downstream instance of a record on an exchange edge.
pub(crate) trait Partitioner<T>: Send + 'static {
    fn partition(&mut self, record: &T, targets: usize) -> usize;
}

/// Sends batches into the channels of all instances of a downstream operator.
///
/// A key exchange into blocking channels gathers what it sends each target: the records of
/// consecutive batches in one message, and the messages (data, watermarks, idleness) in order
/// in one list, sent under one lock with one wake-up once [`GATHER_RECORDS`] records are
/// waiting, and at once at a barrier, a tick, a flush (the input went quiet) or the end. The
/// order of data and control messages is kept exactly (a record that arrived after a
/// watermark still arrives after it, so lateness does not change); only consecutive
/// watermarks with nothing between them collapse into the last one. Control messages with no
/// records held before them go at once.
pub(crate) struct Exchange<T, P> {
    pub(crate) targets: Vec<Sender<T>>,
    pub(crate) buffers: Vec<Vec<T>>,
    pub(crate) partitioner: P,
    /// Upstream instance index, for forward edges between equal parallelism.
    pub(crate) mode: ExchangeMode,
    pub(crate) next_target: usize,
    /// Per target, when gathering: the messages not sent yet (the records of `buffers[t]`
    /// come after them), and the ingest time of the oldest record in `buffers[t]`.
    gathered: Option<Vec<Gathered<T>>>,
}

/// What a gathering exchange holds for one target.
struct Gathered<T> {
    queued: Vec<Message<T>>,
    /// Records in `queued`.
    queued_records: usize,
    /// The ingest time of the buffer's oldest record (`BEFORE_TIME`: unknown).
    ingest: Timestamp,
    /// The buffer's length before the batch being partitioned (did it get records?).
    ingest_len: usize,
}

/// Records a gathering exchange holds per target before it sends them.
pub(crate) const GATHER_RECORDS: usize = 4096;

/// Control messages a gathering exchange holds per target (between records) before it sends
/// them.
const GATHER_MESSAGES: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExchangeMode {
    /// Same parallelism, no re-partitioning: instance i feeds instance i.
    Forward(usize),
    /// Whole batches in turn to each instance.
    RoundRobin,
    /// Every record to the instance its partitioner picks.
    Partitioned,
}

/// The older of two ingest times, where `BEFORE_TIME` means unknown.
#[inline]
fn oldest(a: Timestamp, b: Timestamp) -> Timestamp {
    match (a, b) {
        (BEFORE_TIME, x) | (x, BEFORE_TIME) => x,
        (a, b) => a.min(b),
    }
}

impl<T, P> Exchange<T, P> {
    pub(crate) fn new(targets: Vec<Sender<T>>, partitioner: P, mode: ExchangeMode) -> Self {
        let n = targets.len();
        let gather = mode == ExchangeMode::Partitioned && targets.iter().all(Sender::blocks);
        Exchange {
            gathered: gather.then(|| {
                (0..n)
                    .map(|_| Gathered {
                        queued: Vec::new(),
                        queued_records: 0,
                        ingest: BEFORE_TIME,
                        ingest_len: 0,
                    })
                    .collect()
            }),
            targets,
            buffers: (0..n).map(|_| Vec::new()).collect(),
            partitioner,
            mode,
            next_target: 0,
        }
    }

    fn send(&self, target: usize, msg: Message<T>) -> Result<(), JobError> {
        self.targets[target]
            .send(msg)
            .map_err(|Closed| JobError::Cancelled)
    }

    /// Sends a control message to every target; a gathering exchange queues it behind what
    /// it holds (and sends everything now if `now`).
    fn broadcast(&mut self, msg: impl Fn() -> Message<T>, now: bool) -> Result<(), JobError> {
        if self.gathered.is_none() {
            for t in 0..self.targets.len() {
                self.send(t, msg())?;
            }
            return Ok(());
        }
        for t in 0..self.targets.len() {
            self.seal(t);
            let g = &mut self.gathered.as_mut().expect("gathering")[t];
            match (g.queued.last_mut(), msg()) {
                // Nothing between two watermarks: only the later one matters.
                (Some(Message::Watermark(last)), Message::Watermark(w)) => *last = w,
                (_, m) => g.queued.push(m),
            }
            // Control messages with no records to wait for go at once: gathering them would
            // only delay event time (a task whose input brings just watermarks does not flush).
            if now || g.queued_records == 0 || g.queued.len() >= GATHER_MESSAGES {
                self.send_gathered(t)?;
            }
        }
        Ok(())
    }

    /// Moves a gathering target's buffered records into its queue as one data message.
    fn seal(&mut self, t: usize) {
        let Some(gathered) = self.gathered.as_mut() else {
            return;
        };
        let buffer = &mut self.buffers[t];
        if buffer.is_empty() {
            return;
        }
        let g = &mut gathered[t];
        let data = std::mem::replace(buffer, Vec::with_capacity(GATHER_RECORDS));
        g.queued_records += data.len();
        g.queued.push(Message::Data(
            data,
            std::mem::replace(&mut g.ingest, BEFORE_TIME),
        ));
    }

    /// Sends everything a gathering target holds, in one go.
    fn send_gathered(&mut self, t: usize) -> Result<(), JobError> {
        self.seal(t);
        let Some(gathered) = self.gathered.as_mut() else {
            return Ok(());
        };
        let g = &mut gathered[t];
        g.queued_records = 0;
        self.targets[t]
            .send_all(&mut g.queued)
            .map_err(|Closed| JobError::Cancelled)
    }

    fn send_all_gathered(&mut self) -> Result<(), JobError> {
        for t in 0..self.targets.len() {
            self.send_gathered(t)?;
        }
        Ok(())
    }
}

impl<T: Send, P: Partitioner<T>> Pusher<T> for Exchange<T, P> {
    fn open(&mut self) -> Result<(), JobError> {
        Ok(())
    }

    fn push(&mut self, batch: &mut Vec<T>) -> Result<(), JobError> {
        let n = self.targets.len();
        let ingest = batch_ingest();
        let target = match self.mode {
            ExchangeMode::Forward(i) => i,
            ExchangeMode::RoundRobin => {
                self.next_target = (self.next_target + 1) % n;
                self.next_target
            }
            ExchangeMode::Partitioned => {
                if let Some(gathered) = self.gathered.as_mut() {
                    for (g, buffer) in gathered.iter_mut().zip(&self.buffers) {
                        g.ingest_len = buffer.len();
                    }
                }
                for record in batch.drain(..) {
                    let t = self.partitioner.partition(&record, n);
                    self.buffers[t].push(record);
                }
                if self.gathered.is_some() {
                    for t in 0..n {
                        let buffered = self.buffers[t].len();
                        let g = &mut self.gathered.as_mut().expect("gathering")[t];
                        if buffered == g.ingest_len {
                            continue;
                        }
                        g.ingest = oldest(g.ingest, ingest);
                        if g.queued_records + buffered >= GATHER_RECORDS {
                            self.send_gathered(t)?;
                        }
                    }
                    return Ok(());
                }
                for t in 0..n {
                    if !self.buffers[t].is_empty() {
                        let cap = self.buffers[t].len();
                        let full = std::mem::replace(&mut self.buffers[t], Vec::with_capacity(cap));
                        self.send(t, Message::Data(full, ingest))?;
                    }
                }
                return Ok(());
            }
        };
        let cap = batch.len();
        let full = std::mem::replace(batch, Vec::with_capacity(cap));
        self.send(target, Message::Data(full, ingest))
    }

    fn watermark(&mut self, w: Timestamp) -> Result<(), JobError> {
        self.broadcast(|| Message::Watermark(w), false)
    }
    fn idle(&mut self) -> Result<(), JobError> {
        // The input went quiet: what is held goes out with the idleness.
        self.broadcast(|| Message::Idle, true)
    }
    fn tick(&mut self) -> Result<(), JobError> {
        // Bounds how long a busy but slow input's records wait for company.
        self.send_all_gathered()
    }
    fn barrier(&mut self, b: Barrier) -> Result<(), JobError> {
        self.broadcast(|| Message::Barrier(b), true)
    }
    fn commit(&mut self, _: CheckpointId) -> Result<(), JobError> {
        // Commit notifications reach every task from the coordinator, not through channels.
        Ok(())
    }
    fn flush(&mut self) -> Result<(), JobError> {
        // Ungathered batches went into the channels at once; the receiving task flushes its
        // own chain.
        self.send_all_gathered()
    }
    fn end(&mut self, ending: Ending) -> Result<(), JobError> {
        self.broadcast(|| Message::End(ending), true)
    }
}

/// The partitioner of edges that do not look at records.
pub(crate) struct NoPartitioner;

impl<T> Partitioner<T> for NoPartitioner {
    fn partition(&mut self, _: &T, _: usize) -> usize {
        0
    }
}

/// Hash partitioning by key, through key groups so that keyed state can be re-sharded when
/// the parallelism changes: key → one of [`KEY_GROUPS`] groups → an instance owning a range.
pub(crate) struct KeyPartitioner<F> {
    pub(crate) key_of: F,
}

/// Number of key groups: the maximum useful parallelism of a keyed operator.
pub const KEY_GROUPS: usize = 128;

/// The key group of a key: stable across runs, processes and machines.
#[inline]
pub fn key_group<K: std::hash::Hash + ?Sized>(key: &K) -> usize {
    use std::hash::BuildHasher;
    // A fixed seed: partitioning must not change between a checkpoint and its restore.
    let h = foldhash::fast::FixedState::with_seed(0x5745_4952).hash_one(key);
    ((h as u128 * KEY_GROUPS as u128) >> 64) as usize
}

/// The instance that owns a key group.
#[inline]
pub fn instance_of_group(group: usize, parallelism: usize) -> usize {
    group * parallelism / KEY_GROUPS
}

impl<T: 'static, K: std::hash::Hash, F: Fn(&T) -> K + Send + 'static> Partitioner<T>
    for KeyPartitioner<F>
{
    #[inline]
    fn partition(&mut self, record: &T, targets: usize) -> usize {
        instance_of_group(key_group(&(self.key_of)(record)), targets)
    }
}

/// Sends each `(output, record)` to the output it names; see `Stream::split`.
pub(crate) struct Router<T> {
    pub(crate) outputs: Vec<BoxPusher<T>>,
    pub(crate) buffers: Vec<Vec<T>>,
}

impl<T: Send> Pusher<(usize, T)> for Router<T> {
    fan_out_control!(for_all);

    fn push(&mut self, batch: &mut Vec<(usize, T)>) -> Result<(), JobError> {
        let last = self.buffers.len() - 1;
        for (route, record) in batch.drain(..) {
            // Out-of-range routes go to the last output rather than vanish.
            self.buffers[route.min(last)].push(record);
        }
        for (o, buf) in self.outputs.iter_mut().zip(self.buffers.iter_mut()) {
            if !buf.is_empty() {
                o.push(buf)?;
                buf.clear();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{BufferPolicy, Received, Receiver, channel};
    use crate::message::set_batch_ingest;
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::time::Duration;

    /// Even numbers to target 0, odd ones to target 1.
    struct Parity;

    impl Partitioner<u64> for Parity {
        fn partition(&mut self, record: &u64, _: usize) -> usize {
            (*record % 2) as usize
        }
    }

    fn exchange(policy: BufferPolicy) -> (Exchange<u64, Parity>, Vec<Receiver<u64>>) {
        let (mut senders, mut receivers) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let (factory, receiver) = channel(1 << 20, policy, Arc::default());
            senders.push(factory.sender(0));
            receivers.push(receiver);
        }
        (
            Exchange::new(senders, Parity, ExchangeMode::Partitioned),
            receivers,
        )
    }

    /// What a receiver holds now, as text: `[records]@ingest`, `W(t)`, `B(id)`, `I`, `E`.
    fn received(receiver: &Receiver<u64>) -> Vec<String> {
        let mut queue = VecDeque::new();
        if let Received::Timeout = receiver.recv_all(&mut queue, Duration::ZERO) {
            return Vec::new();
        }
        queue
            .into_iter()
            .map(|(_, m)| match m {
                Message::Data(batch, ingest) => format!("{batch:?}@{ingest}"),
                Message::Watermark(w) => format!("W({w})"),
                Message::Barrier(b) => format!("B({})", b.checkpoint),
                Message::Idle => "I".into(),
                Message::End(_) => "E".into(),
            })
            .collect()
    }

    #[test]
    fn a_key_exchange_gathers_in_order_and_sends_at_a_flush() {
        let (mut ex, rx) = exchange(BufferPolicy::Block);
        set_batch_ingest(100);
        ex.push(&mut vec![1, 2, 3]).unwrap();
        ex.watermark(10).unwrap();
        ex.watermark(11).unwrap();
        set_batch_ingest(70);
        ex.push(&mut vec![4, 5]).unwrap();
        set_batch_ingest(50);
        ex.push(&mut vec![6]).unwrap();
        // Nothing is sent until there is enough, or a reason to send.
        assert!(received(&rx[0]).is_empty());
        assert!(received(&rx[1]).is_empty());
        ex.flush().unwrap();
        // Records after a watermark stay after it (lateness unchanged); consecutive
        // watermarks collapse; consecutive batches share a message with the oldest ingest.
        assert_eq!(received(&rx[0]), ["[2]@100", "W(11)", "[4, 6]@50"]);
        assert_eq!(received(&rx[1]), ["[1, 3]@100", "W(11)", "[5]@70"]);
    }

    #[test]
    fn a_key_exchange_sends_full_gathers_and_barriers_at_once() {
        let (mut ex, rx) = exchange(BufferPolicy::Block);
        // A watermark with no records held for the target does not wait.
        ex.watermark(5).unwrap();
        assert_eq!(received(&rx[0]), ["W(5)"]);
        assert_eq!(received(&rx[1]), ["W(5)"]);
        set_batch_ingest(1);
        let mut evens: Vec<u64> = (0..GATHER_RECORDS as u64).map(|i| i * 2).collect();
        ex.push(&mut evens).unwrap();
        let got = received(&rx[0]);
        assert_eq!(got.len(), 1, "a full gather goes out at once");
        assert!(received(&rx[1]).is_empty());
        ex.push(&mut vec![7]).unwrap();
        ex.barrier(Barrier { checkpoint: 3 }).unwrap();
        assert_eq!(received(&rx[0]), ["B(3)"]);
        assert_eq!(received(&rx[1]), ["[7]@1", "B(3)"]);
        ex.push(&mut vec![9]).unwrap();
        ex.end(Ending::Drained).unwrap();
        assert_eq!(received(&rx[1]), ["[9]@1", "E"]);
        assert_eq!(received(&rx[0]), ["E"]);
    }

    #[test]
    fn an_exchange_into_dropping_channels_sends_every_batch_at_once() {
        let (mut ex, rx) = exchange(BufferPolicy::DropNewest);
        set_batch_ingest(5);
        ex.push(&mut vec![1, 2]).unwrap();
        ex.watermark(4).unwrap();
        assert_eq!(received(&rx[0]), ["[2]@5", "W(4)"]);
        assert_eq!(received(&rx[1]), ["[1]@5", "W(4)"]);
    }
}
