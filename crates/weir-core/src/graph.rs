//! The logical dataflow graph that the stream API builds, with its types erased so that one
//! planner can turn any graph into tasks. Every place that needs the element type (creating a
//! channel, a tee, an exchange, a task around a receiver) goes through a small "kit" object made
//! while the type was still known.

use crate::chain::{BoxPusher, Discard, Exchange, ExchangeMode, NoPartitioner, Partitioner, Tee};
use crate::channel::{BufferPolicy, Close, Receiver, Sender, SenderFactory, channel};
use crate::checkpoint::CheckpointShared;
use crate::error::JobError;
use crate::operator::OperatorContext;
use crate::task::{InboxTask, Task};
use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

pub(crate) type AnyBox = Box<dyn Any + Send>;
pub(crate) type NodeId = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Source,
    Operator,
    Sink,
}

impl NodeKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            NodeKind::Source => "source",
            NodeKind::Operator => "operator",
            NodeKind::Sink => "sink",
        }
    }
}

/// Builds one instance of a node, given the already-built pushers of its output ports.
pub(crate) enum Build {
    /// Returns the whole source task.
    Source(Box<dyn Fn(OperatorContext, Vec<AnyBox>) -> Box<dyn Task>>),
    /// Returns a `BoxPusher<In>` (boxed as `Any`).
    Pusher(Box<dyn Fn(OperatorContext, Vec<AnyBox>) -> AnyBox>),
}

pub(crate) struct Node {
    pub(crate) name: Arc<str>,
    pub(crate) kind: NodeKind,
    /// `None`: the environment's default.
    pub(crate) parallelism: Option<usize>,
    /// Some operators cannot run in parallel (an in-memory iterator source, a global take).
    pub(crate) max_parallelism: Option<usize>,
    /// Explicit buffer on this node's input: forces a channel there.
    pub(crate) buffer: Option<(usize, BufferPolicy)>,
    /// Element type of each output port.
    pub(crate) ports: Vec<Box<dyn PortKit>>,
    /// Element type of the input (operators and sinks).
    pub(crate) input: Option<Box<dyn InputKit>>,
    pub(crate) build: Build,
    /// Plumbing (result splitters, routers) left out of metrics.
    pub(crate) hidden: bool,
    pub(crate) inputs: Vec<usize>,
    pub(crate) outputs: Vec<Vec<usize>>,
}

/// How records cross an edge when it is not fused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Routing {
    /// Keep the upstream instance when parallelism matches, else round-robin batches.
    Forward,
    /// Round-robin batches whatever the parallelism.
    Rebalance,
    /// By key.
    Hash,
}

pub(crate) struct Edge {
    pub(crate) from: NodeId,
    pub(crate) to: NodeId,
    pub(crate) routing: Routing,
    /// `ExchangeFactory<T>`, boxed.
    pub(crate) exchange: AnyBox,
}

/// Builds the pusher that sends into the channels of all downstream instances.
pub(crate) type ExchangeFactory<T> =
    Box<dyn Fn(Vec<Sender<T>>, ExchangeMode) -> BoxPusher<T> + Send>;

pub(crate) fn plain_exchange<T: Send + 'static>() -> AnyBox {
    let f: ExchangeFactory<T> = Box::new(|targets, mode| {
        Box::new(Exchange::new(targets, NoPartitioner, mode)) as BoxPusher<T>
    });
    Box::new(f)
}

pub(crate) fn partitioned_exchange<T, P>(make: impl Fn() -> P + Send + 'static) -> AnyBox
where
    T: Send + 'static,
    P: Partitioner<T>,
{
    let f: ExchangeFactory<T> = Box::new(move |targets, _mode| {
        Box::new(Exchange::new(targets, make(), ExchangeMode::Partitioned)) as BoxPusher<T>
    });
    Box::new(f)
}

/// Operations on an output port's element type.
pub(crate) trait PortKit {
    /// Combines the pushers of a port's consumers (`BoxPusher<T>`s) into one.
    fn fan_out(&self, outputs: Vec<AnyBox>) -> AnyBox;
    /// Wraps the exchange factory of an edge leaving this port around senders.
    fn exchange(
        &self,
        factory: &AnyBox,
        senders: Vec<AnyBox>,
        mode: ExchangeMode,
    ) -> Result<AnyBox, JobError>;
}

pub(crate) struct TypedPort<T>(PhantomData<fn(T)>);

pub(crate) fn port<T: Clone + Send + 'static>() -> Box<dyn PortKit> {
    Box::new(TypedPort::<T>(PhantomData))
}

fn downcast<T: 'static>(b: AnyBox, what: &str) -> Result<T, JobError> {
    b.downcast::<T>()
        .map(|b| *b)
        .map_err(|_| JobError::Plan(format!("internal: type mismatch on {what}")))
}

impl<T: Clone + Send + 'static> PortKit for TypedPort<T> {
    fn fan_out(&self, outputs: Vec<AnyBox>) -> AnyBox {
        let mut pushers: Vec<BoxPusher<T>> = outputs
            .into_iter()
            .filter_map(|o| o.downcast::<BoxPusher<T>>().ok().map(|b| *b))
            .collect();
        let combined: BoxPusher<T> = match pushers.len() {
            0 => Box::new(Discard),
            1 => pushers.remove(0),
            _ => Box::new(Tee {
                outputs: pushers,
                scratch: Vec::new(),
            }),
        };
        Box::new(combined)
    }

    fn exchange(
        &self,
        factory: &AnyBox,
        senders: Vec<AnyBox>,
        mode: ExchangeMode,
    ) -> Result<AnyBox, JobError> {
        let factory = factory
            .downcast_ref::<ExchangeFactory<T>>()
            .ok_or_else(|| JobError::Plan("internal: exchange type mismatch".into()))?;
        let senders = senders
            .into_iter()
            .map(|s| downcast::<Sender<T>>(s, "sender"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(factory(senders, mode)))
    }
}

/// Operations on a node's input element type.
pub(crate) trait InputKit {
    /// Returns a `SenderFactory<T>`, a `Receiver<T>`, and the channel's closer.
    fn channel(
        &self,
        capacity: usize,
        policy: BufferPolicy,
        dropped: Arc<AtomicU64>,
    ) -> (AnyBox, AnyBox, Arc<dyn Close>);
    fn sender(&self, factory: &AnyBox, input: u32) -> Result<AnyBox, JobError>;
    /// A task that reads the receiver and pushes into `head` (a `BoxPusher<T>`).
    fn task(
        &self,
        receiver: AnyBox,
        inputs: usize,
        head: AnyBox,
        name: Arc<str>,
        checkpoints: Option<Arc<CheckpointShared>>,
    ) -> Result<Box<dyn Task>, JobError>;
}

pub(crate) struct TypedInput<T>(PhantomData<fn(T)>);

pub(crate) fn input<T: Send + 'static>() -> Box<dyn InputKit> {
    Box::new(TypedInput::<T>(PhantomData))
}

impl<T: Send + 'static> InputKit for TypedInput<T> {
    fn channel(
        &self,
        capacity: usize,
        policy: BufferPolicy,
        dropped: Arc<AtomicU64>,
    ) -> (AnyBox, AnyBox, Arc<dyn Close>) {
        let (factory, receiver) = channel::<T>(capacity, policy, dropped);
        let closer = factory.closer();
        (Box::new(factory), Box::new(receiver), closer)
    }

    fn sender(&self, factory: &AnyBox, input: u32) -> Result<AnyBox, JobError> {
        let factory = factory
            .downcast_ref::<SenderFactory<T>>()
            .ok_or_else(|| JobError::Plan("internal: channel type mismatch".into()))?;
        Ok(Box::new(factory.sender(input)))
    }

    fn task(
        &self,
        receiver: AnyBox,
        inputs: usize,
        head: AnyBox,
        name: Arc<str>,
        checkpoints: Option<Arc<CheckpointShared>>,
    ) -> Result<Box<dyn Task>, JobError> {
        let receiver = downcast::<Receiver<T>>(receiver, "receiver")?;
        let head = downcast::<BoxPusher<T>>(head, "task head")?;
        Ok(Box::new(InboxTask::new(
            name,
            receiver,
            inputs,
            head,
            checkpoints,
        )))
    }
}

/// The graph under construction.
#[derive(Default)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<Node>,
    pub(crate) edges: Vec<Edge>,
    /// How many nodes carry each name, and the next suffix to try per base name: naming a node
    /// uniquely stays O(1), not a scan of the graph (a pipeline of 20,000 steps has 40,000
    /// nodes, many with the same base name).
    names: HashMap<Arc<str>, usize>,
    next_suffix: HashMap<Arc<str>, usize>,
}

impl Graph {
    /// Adds a node, renaming it `{name}_2`, `{name}_3`, ... if its name is taken.
    pub(crate) fn add_node(&mut self, mut node: Node) -> NodeId {
        if self.names.get(&node.name).is_some_and(|&n| n > 0) {
            let base = node.name.clone();
            let mut i = self.next_suffix.get(&base).copied().unwrap_or(2);
            loop {
                let candidate: Arc<str> = format!("{base}_{i}").into();
                i += 1;
                if self.names.get(&candidate).is_none_or(|&n| n == 0) {
                    node.name = candidate;
                    break;
                }
            }
            self.next_suffix.insert(base, i);
        }
        *self.names.entry(node.name.clone()).or_default() += 1;
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Gives a node another name (chosen by the user: kept as given).
    pub(crate) fn rename(&mut self, id: NodeId, name: &str) {
        let old = std::mem::replace(&mut self.nodes[id].name, name.into());
        if let Some(n) = self.names.get_mut(&old) {
            *n = n.saturating_sub(1);
        }
        *self.names.entry(self.nodes[id].name.clone()).or_default() += 1;
    }

    pub(crate) fn connect(
        &mut self,
        from: NodeId,
        port: usize,
        to: NodeId,
        routing: Routing,
        exchange: AnyBox,
    ) {
        let id = self.edges.len();
        self.edges.push(Edge {
            from,
            to,
            routing,
            exchange,
        });
        self.nodes[from].outputs[port].push(id);
        self.nodes[to].inputs.push(id);
    }
}
