//! Turns a logical graph into tasks on threads and runs them.
//!
//! Planning: every node gets a parallelism (explicit; else the environment's after a key
//! exchange or a rebalance, which redistribute records whatever the upstream's parallelism;
//! else its first input's; else the environment's); an edge is fused (no channel, same thread) when it is a forward edge between
//! equal parallelism into a node with a single input and no explicit buffer; every other edge
//! gets a bounded channel per downstream instance. Each source instance and each instance of a
//! node behind a channel becomes one task on its own thread.

use crate::chain::ExchangeMode;
use crate::channel::{BufferPolicy, Close};
use crate::checkpoint::{CheckpointShared, Checkpointing};
use crate::error::JobError;
use crate::graph::{AnyBox, Build, Graph, NodeId, NodeKind, Routing};
use crate::message::{Clock, SystemClock};
use crate::metrics::{Counters, JobMetrics, OperatorHandle, OperatorMetrics};
use crate::operator::OperatorContext;
use crate::task::{JobShared, Task};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runtime settings of an environment.
#[derive(Clone)]
pub struct Config {
    /// Parallelism of sources and of operators that do not inherit one from their input.
    pub parallelism: usize,
    /// Records per batch produced by sources.
    pub batch_size: usize,
    /// Capacity of each channel, in records.
    pub buffer_size: usize,
    /// What a full channel does.
    pub buffer_policy: BufferPolicy,
    /// How often processing-time hooks (`on_tick`) run: idleness is declared, processing-time
    /// timers fire and sinks flush on this interval, also when no data arrives.
    pub tick_interval: Duration,
    /// How long a source waits to fill a batch: once it has records, it returns a partial
    /// batch after this long rather than wait for more (bounded latency for slow input).
    pub batch_timeout: Duration,
    /// A stop request (`RunningJob::stop`, `stop_after_idle`, a limit) drains the run like the
    /// end of a bounded input: event time goes to the end and every window fires. Off by
    /// default: with checkpoints a stop keeps open windows in the final checkpoint for a
    /// resumed run. (Without checkpoints nothing could resume them, so a stop always drains.)
    pub drain_on_stop: bool,
    /// Processing time as operators see it.
    pub clock: Arc<dyn Clock>,
    /// Periodic barrier checkpoints (off when `None`).
    pub checkpointing: Option<Checkpointing>,
    /// Where keyed state lives (in memory by default).
    pub state: weir_state::StoreFactory,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("parallelism", &self.parallelism)
            .field("batch_size", &self.batch_size)
            .field("buffer_size", &self.buffer_size)
            .field("buffer_policy", &self.buffer_policy)
            .field("tick_interval", &self.tick_interval)
            .field("batch_timeout", &self.batch_timeout)
            .field("drain_on_stop", &self.drain_on_stop)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            parallelism: 1,
            batch_size: 1024,
            buffer_size: 16 * 1024,
            buffer_policy: BufferPolicy::Block,
            tick_interval: Duration::from_millis(100),
            batch_timeout: Duration::from_millis(5),
            drain_on_stop: false,
            clock: Arc::new(SystemClock),
            checkpointing: None,
            state: weir_state::StoreFactory::default(),
        }
    }
}

/// What a finished job reports.
#[derive(Debug, Clone)]
pub struct JobResult {
    pub operators: Vec<OperatorMetrics>,
    pub elapsed: Duration,
}

impl JobResult {
    /// The metrics of the operator with this name (summed over instances).
    pub fn operator(&self, name: &str) -> Option<&OperatorMetrics> {
        self.operators.iter().find(|m| m.name == name)
    }
}

/// A job running on its own threads.
pub struct RunningJob {
    metrics: JobMetrics,
    stop: Arc<AtomicBool>,
    aborted: Arc<AtomicBool>,
    checkpoints: Option<Arc<CheckpointShared>>,
    closers: Vec<Arc<dyn Close>>,
    threads: Vec<JoinHandle<()>>,
    failure: Arc<Mutex<Option<JobError>>>,
    started: Instant,
}

impl RunningJob {
    /// Live counters, for progress displays.
    pub fn metrics(&self) -> &JobMetrics {
        &self.metrics
    }

    /// Asks the sources to stop reading; everything already read still flows through. With
    /// checkpoints the final checkpoint keeps event time where it was and open windows in
    /// state (unless `Config::drain_on_stop`); without, the run drains.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Aborts the job: channels close, tasks stop where they are.
    pub fn cancel(&self) {
        self.abort(JobError::Cancelled);
    }

    fn abort(&self, error: JobError) {
        if let Some(cp) = &self.checkpoints {
            cp.abort();
        }
        record_failure(&self.failure, &self.aborted, &self.closers, error);
    }

    /// Checkpoints completed in this run so far.
    pub fn checkpoints_completed(&self) -> u64 {
        self.checkpoints
            .as_ref()
            .map_or(0, |c| c.stats.completed.load(Ordering::Relaxed))
    }

    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Waits for every task and returns the job's result.
    pub fn wait(self) -> Result<JobResult, JobError> {
        for t in self.threads {
            // Task threads catch panics themselves; a join error cannot carry more.
            let _ = t.join();
        }
        let failure = self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match failure {
            Some(e) => Err(e),
            None => Ok(JobResult {
                operators: self.metrics.snapshot(),
                elapsed: self.started.elapsed(),
            }),
        }
    }
}

/// The first real failure wins; `Cancelled` (a consequence of aborting) never replaces one.
fn record_failure(
    slot: &Mutex<Option<JobError>>,
    aborted: &AtomicBool,
    closers: &[Arc<dyn Close>],
    error: JobError,
) {
    {
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        match (&*slot, &error) {
            (None, _) => *slot = Some(error),
            (Some(JobError::Cancelled), e) if !matches!(e, JobError::Cancelled) => {
                *slot = Some(error)
            }
            _ => {}
        }
    }
    aborted.store(true, Ordering::Relaxed);
    for c in closers {
        c.close();
    }
}

struct Plan<'g> {
    graph: &'g Graph,
    parallelism: Vec<usize>,
    counters: Vec<Vec<Arc<Counters>>>,
    /// Per node, per instance: the `SenderFactory` of its input channel (heads only).
    channels: Vec<Vec<AnyBox>>,
    /// Per edge: index of the first upstream instance among the downstream node's inputs.
    input_offset: Vec<u32>,
    stop: Arc<AtomicBool>,
    clock: Arc<dyn Clock>,
    checkpoints: Option<Arc<CheckpointShared>>,
    state: weir_state::StoreFactory,
    batch_timeout: Duration,
}

impl Plan<'_> {
    fn fused(&self, edge: usize) -> bool {
        let e = &self.graph.edges[edge];
        let to = &self.graph.nodes[e.to];
        let same = self.parallelism[e.from] == self.parallelism[e.to];
        // A hash exchange between single instances has nothing to partition.
        let local = e.routing == Routing::Forward
            || (e.routing == Routing::Hash && self.parallelism[e.from] == 1);
        local && same && to.inputs.len() == 1 && to.buffer.is_none()
    }

    fn is_head(&self, node: NodeId) -> bool {
        let n = &self.graph.nodes[node];
        n.kind == NodeKind::Source || n.inputs.iter().any(|&e| !self.fused(e))
    }

    fn context(&self, node: NodeId, instance: usize) -> OperatorContext {
        let n = &self.graph.nodes[node];
        let ctx = OperatorContext::new(
            n.name.clone(),
            instance,
            self.parallelism[node],
            self.stop.clone(),
            self.counters[node][instance].clone(),
        )
        .with_clock(self.clock.clone())
        .with_checkpoints(self.checkpoints.clone())
        .with_state(self.state.clone())
        .with_batch_timeout(self.batch_timeout);
        // A new epoch: sources and sinks continue the drained run, operators start empty.
        let new_epoch = self
            .checkpoints
            .as_ref()
            .is_some_and(|c| c.config.new_epoch);
        if new_epoch && n.kind == NodeKind::Operator {
            ctx.without_restore()
        } else {
            ctx
        }
    }

    /// The already-combined pushers of each output port of `node`'s instance.
    fn outputs(&self, node: NodeId, instance: usize) -> Result<Vec<AnyBox>, JobError> {
        let n = &self.graph.nodes[node];
        let mut ports = Vec::with_capacity(n.ports.len());
        for (port, edges) in n.outputs.iter().enumerate() {
            let mut consumers = Vec::with_capacity(edges.len());
            for &edge in edges {
                let e = &self.graph.edges[edge];
                if self.fused(edge) {
                    consumers.push(self.pusher(e.to, instance)?);
                    continue;
                }
                let to = &self.graph.nodes[e.to];
                let kit = to
                    .input
                    .as_ref()
                    .ok_or_else(|| JobError::Plan(format!("'{}' cannot take input", to.name)))?;
                let senders = self.channels[e.to]
                    .iter()
                    .map(|f| kit.sender(f, self.input_offset[edge] + instance as u32))
                    .collect::<Result<Vec<_>, _>>()?;
                let mode = match e.routing {
                    Routing::Hash => ExchangeMode::Partitioned,
                    Routing::Forward if self.parallelism[e.from] == self.parallelism[e.to] => {
                        ExchangeMode::Forward(instance)
                    }
                    _ => ExchangeMode::RoundRobin,
                };
                consumers.push(n.ports[port].exchange(&e.exchange, senders, mode)?);
            }
            ports.push(n.ports[port].fan_out(consumers));
        }
        Ok(ports)
    }

    fn pusher(&self, node: NodeId, instance: usize) -> Result<AnyBox, JobError> {
        let outputs = self.outputs(node, instance)?;
        match &self.graph.nodes[node].build {
            Build::Pusher(build) => Ok(build(self.context(node, instance), outputs)),
            Build::Source(_) => Err(JobError::Plan("internal: a source has no input".into())),
        }
    }
}

/// Plans and starts a job.
pub(crate) fn start(graph: Graph, config: &Config) -> Result<RunningJob, JobError> {
    if graph.nodes.is_empty() {
        return Err(JobError::Plan("the job has no sources".into()));
    }
    let sinks = graph
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Sink)
        .count();
    if sinks == 0 {
        return Err(JobError::Plan(
            "the job has no sink: add .sink(), .collect(), .print() or .for_each()".into(),
        ));
    }

    // Nodes are created in topological order (a node's inputs exist before it).
    let mut parallelism = Vec::with_capacity(graph.nodes.len());
    for n in &graph.nodes {
        // Behind a key exchange or a rebalance the records are redistributed anyway: run at
        // the requested parallelism, not at a single-instance source's.
        let inherited = n.inputs.first().map(|&e| {
            let edge = &graph.edges[e];
            match edge.routing {
                Routing::Hash | Routing::Rebalance => config.parallelism,
                Routing::Forward => parallelism[edge.from],
            }
        });
        let p: usize = n
            .parallelism
            .or(inherited)
            .unwrap_or(config.parallelism)
            .max(1);
        parallelism.push(n.max_parallelism.map_or(p, |m| p.min(m)));
    }

    let counters: Vec<Vec<Arc<Counters>>> = parallelism
        .iter()
        .map(|&p| (0..p).map(|_| Arc::new(Counters::default())).collect())
        .collect();
    let mut metrics = JobMetrics {
        checkpoints: None,
        operators: graph
            .nodes
            .iter()
            .zip(&counters)
            .filter(|(n, _)| !n.hidden)
            .map(|(n, c)| OperatorHandle {
                name: n.name.clone(),
                kind: n.kind.label(),
                instances: c.clone(),
            })
            .collect(),
    };

    let stop = Arc::new(AtomicBool::new(false));
    let aborted = Arc::new(AtomicBool::new(false));
    let checkpoints = config
        .checkpointing
        .clone()
        .map(|c| Arc::new(CheckpointShared::new(c)));
    metrics.checkpoints = checkpoints.as_ref().map(|c| c.stats.clone());
    let mut plan = Plan {
        graph: &graph,
        parallelism,
        counters,
        channels: (0..graph.nodes.len()).map(|_| Vec::new()).collect(),
        input_offset: vec![0; graph.edges.len()],
        stop: stop.clone(),
        clock: config.clock.clone(),
        checkpoints: checkpoints.clone(),
        state: config.state.clone(),
        batch_timeout: config.batch_timeout,
    };

    // Channels into every head that has inputs, and the input numbering of its upstreams.
    let mut receivers: Vec<Vec<AnyBox>> = (0..graph.nodes.len()).map(|_| Vec::new()).collect();
    let mut input_counts = vec![0usize; graph.nodes.len()];
    let mut closers: Vec<Arc<dyn Close>> = Vec::new();
    for (id, node) in graph.nodes.iter().enumerate() {
        if node.kind == NodeKind::Source || !plan.is_head(id) {
            continue;
        }
        let mut offset = 0u32;
        for &e in &node.inputs {
            plan.input_offset[e] = offset;
            offset += plan.parallelism[graph.edges[e].from] as u32;
        }
        input_counts[id] = offset as usize;
        let (capacity, policy) = node
            .buffer
            .unwrap_or((config.buffer_size, config.buffer_policy));
        let kit = node
            .input
            .as_ref()
            .ok_or_else(|| JobError::Plan(format!("'{}' cannot take input", node.name)))?;
        for instance in 0..plan.parallelism[id] {
            let dropped = plan.counters[id][instance].dropped.clone();
            let (factory, receiver, closer) = kit.channel(capacity, policy, dropped);
            // Read at scrape time for the channel's fill level.
            let _ = plan.counters[id][instance].input.set(closer.clone());
            plan.channels[id].push(factory);
            receivers[id].push(receiver);
            closers.push(closer);
        }
    }

    let mut tasks: Vec<Box<dyn Task>> = Vec::new();
    let mut source_tasks = 0;
    for (id, node) in graph.nodes.iter().enumerate() {
        if !plan.is_head(id) {
            continue;
        }
        // Sources have no receivers; heads behind channels have one per instance.
        let mut node_receivers = std::mem::take(&mut receivers[id]).into_iter();
        for instance in 0..plan.parallelism[id] {
            match &node.build {
                Build::Source(build) => {
                    source_tasks += 1;
                    let outputs = plan.outputs(id, instance)?;
                    tasks.push(build(plan.context(id, instance), outputs));
                }
                Build::Pusher(_) => {
                    let head = plan.pusher(id, instance)?;
                    let receiver = node_receivers.next().ok_or_else(|| {
                        JobError::Plan(format!("internal: no channel for '{}'", node.name))
                    })?;
                    let kit = node.input.as_ref().ok_or_else(|| {
                        JobError::Plan(format!("'{}' cannot take input", node.name))
                    })?;
                    tasks.push(kit.task(
                        receiver,
                        input_counts[id],
                        head,
                        node.name.clone(),
                        checkpoints.clone(),
                    )?);
                }
            }
        }
    }
    drop(plan);

    if let Some(cp) = &checkpoints {
        cp.total_sources.store(source_tasks, Ordering::SeqCst);
        cp.total_tasks.store(tasks.len(), Ordering::SeqCst);
    }
    let shared = Arc::new(JobShared {
        stop: stop.clone(),
        aborted: aborted.clone(),
        tick_interval: config.tick_interval,
        batch_size: config.batch_size.max(1),
        stop_ending: if config.drain_on_stop || checkpoints.is_none() {
            crate::message::Ending::Drained
        } else {
            crate::message::Ending::Stopped
        },
    });
    let failure = Arc::new(Mutex::new(None));
    let closers = Arc::new(closers);
    let started = Instant::now();
    // Events on task threads carry the caller's context (e.g. a `pipeline` span) and the
    // operator: each thread enters a span under the one current here, once.
    let job_span = tracing::Span::current();
    let mut threads = Vec::with_capacity(tasks.len());
    for task in tasks {
        let shared = shared.clone();
        let failure_slot = failure.clone();
        let closers_for_task = closers.clone();
        let cp_for_task = checkpoints.clone();
        let name = task.name().to_string();
        let span = tracing::info_span!(parent: &job_span, "task", operator = %name);
        let handle = std::thread::Builder::new()
            .name(format!("weir:{name}"))
            .spawn(move || {
                let _entered = span.enter();
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task.run(&shared)));
                let error = match result {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => e,
                    Err(payload) => JobError::Plan(format!(
                        "internal: task '{name}' panicked: {}",
                        crate::error::panic_message(&*payload)
                    )),
                };
                if let Some(cp) = &cp_for_task {
                    cp.abort();
                }
                record_failure(&failure_slot, &shared.aborted, &closers_for_task, error);
            })
            .map_err(|e| JobError::Plan(format!("cannot start a task thread: {e}")));
        match handle {
            Ok(h) => threads.push(h),
            Err(e) => {
                record_failure(&failure, &aborted, &closers, e);
                break;
            }
        }
    }
    if let Some(cp) = &checkpoints {
        let cp = cp.clone();
        let (failure, aborted, closers) = (failure.clone(), aborted.clone(), closers.clone());
        let span = job_span.clone();
        let coordinator = std::thread::Builder::new()
            .name("weir:checkpoints".into())
            .spawn(move || {
                let _entered = span.enter();
                cp.coordinate();
                // Without checkpoints the sources would wait forever for the last one.
                if let Some(e) = cp.failure() {
                    record_failure(&failure, &aborted, &closers, JobError::Plan(e));
                }
            })
            .map_err(|e| JobError::Plan(format!("cannot start the checkpoint coordinator: {e}")))?;
        threads.push(coordinator);
    }
    Ok(RunningJob {
        metrics,
        stop,
        aborted,
        checkpoints,
        closers: closers.to_vec(),
        threads,
        failure,
        started,
    })
}
