//! The typed stream API: [`Environment`], [`Stream`] and [`KeyedStream`].

use crate::chain::{BoxPusher, KeyPartitioner, OpNode, ResultSplit, Router, SinkNode};
use crate::channel::BufferPolicy;
use crate::error::JobError;
use crate::graph::{
    AnyBox, Build, Graph, Node, NodeId, NodeKind, Routing, input, partitioned_exchange,
    plain_exchange, port,
};
use crate::operator::{Operator, OperatorContext, Sink, Source};
use crate::ops;
use crate::runtime::{self, Config, JobResult, RunningJob};
use crate::sinks::{CollectSink, CountSink, ForEachSink};
use crate::sources::IterSource;
use crate::task::SourceTask;
use std::cell::RefCell;
use std::fmt::Display;
use std::hash::Hash;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use weir_state::{AnyStore, MemoryStore, StateKey, StateValue};

/// Types that can flow through a stream.
pub trait Data: Clone + Send + 'static {}
impl<T: Clone + Send + 'static> Data for T {}

/// Where a dataflow is built and executed. `Environment::local()` runs it in this process.
pub struct Environment {
    graph: Rc<RefCell<Graph>>,
    config: Config,
}

impl Environment {
    /// An in-process environment with default settings (parallelism 1, blocking buffers).
    pub fn local() -> Self {
        Self::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> Self {
        Environment {
            graph: Rc::default(),
            config,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A stream read from a custom source; `make` builds one source per parallel instance.
    pub fn source<T: Data, S: Source<T>>(
        &self,
        name: &str,
        make: impl Fn() -> S + 'static,
    ) -> Stream<T> {
        let build = Build::Source(Box::new(move |ctx: OperatorContext, mut ports| {
            let chain = take_port::<T>(&mut ports, 0);
            Box::new(SourceTask {
                source: make(),
                ctx,
                chain,
            })
        }));
        let id = add_node(
            &self.graph,
            name,
            NodeKind::Source,
            None,
            vec![port::<T>()],
            build,
        );
        Stream::new(self.graph.clone(), id, 0)
    }

    /// A stream of the given items, in order (one instance).
    pub fn from_iter<I>(&self, items: I) -> Stream<I::Item>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Data,
    {
        let items = Arc::new(Mutex::new(Some(items.into_iter())));
        let stream = self.source("from_iter", move || IterSource {
            items: items.lock().ok().and_then(|mut i| i.take()),
            emitted: 0,
        });
        self.graph.borrow_mut().nodes[stream.node].max_parallelism = Some(1);
        stream
    }

    /// Plans the job and starts it on its own threads.
    pub fn start(self) -> Result<RunningJob, JobError> {
        let graph = std::mem::take(&mut *self.graph.borrow_mut());
        runtime::start(graph, &self.config)
    }

    /// Runs the job to completion: every source ends, every operator drains, every sink
    /// flushes. Returns per-operator metrics.
    pub fn execute(self) -> Result<JobResult, JobError> {
        self.start()?.wait()
    }
}

fn take_port<T: 'static>(ports: &mut [AnyBox], i: usize) -> BoxPusher<T> {
    let b = std::mem::replace(&mut ports[i], Box::new(()));
    match b.downcast::<BoxPusher<T>>() {
        Ok(p) => *p,
        // The planner builds ports from the same type kits; a mismatch is a bug in Weir.
        Err(_) => panic!("internal error: output port {i} has an unexpected type"),
    }
}

fn add_node(
    graph: &Rc<RefCell<Graph>>,
    name: &str,
    kind: NodeKind,
    input_kit: Option<Box<dyn crate::graph::InputKit>>,
    ports: Vec<Box<dyn crate::graph::PortKit>>,
    build: Build,
) -> NodeId {
    let mut g = graph.borrow_mut();
    let outputs = vec![Vec::new(); ports.len()];
    // `add_node` makes the name unique.
    g.add_node(Node {
        name: name.into(),
        kind,
        parallelism: None,
        max_parallelism: None,
        buffer: None,
        ports,
        input: input_kit,
        build,
        hidden: false,
        inputs: Vec::new(),
        outputs,
    })
}

/// A stream of `T` records.
pub struct Stream<T> {
    graph: Rc<RefCell<Graph>>,
    node: NodeId,
    port: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Stream {
            graph: self.graph.clone(),
            node: self.node,
            port: self.port,
            _t: PhantomData,
        }
    }
}

impl<T: Data> Stream<T> {
    fn new(graph: Rc<RefCell<Graph>>, node: NodeId, port: usize) -> Self {
        Stream {
            graph,
            node,
            port,
            _t: PhantomData,
        }
    }

    /// Adds a node reading this stream and connects it.
    fn attach(
        &self,
        name: &str,
        kind: NodeKind,
        ports: Vec<Box<dyn crate::graph::PortKit>>,
        routing: Routing,
        exchange: AnyBox,
        build: Build,
    ) -> NodeId {
        let id = add_node(&self.graph, name, kind, Some(input::<T>()), ports, build);
        self.graph
            .borrow_mut()
            .connect(self.node, self.port, id, routing, exchange);
        id
    }

    fn operator<U: Data, O: Operator<T, U>>(
        &self,
        name: &str,
        routing: Routing,
        exchange: AnyBox,
        make: impl Fn() -> O + 'static,
    ) -> Stream<U> {
        let build = Build::Pusher(Box::new(move |ctx, mut ports| {
            let next = take_port::<U>(&mut ports, 0);
            let node: BoxPusher<T> = Box::new(OpNode::new(make(), ctx, next));
            Box::new(node)
        }));
        let id = self.attach(
            name,
            NodeKind::Operator,
            vec![port::<U>()],
            routing,
            exchange,
            build,
        );
        Stream::new(self.graph.clone(), id, 0)
    }

    /// Applies a custom [`Operator`]; `make` builds one per parallel instance.
    pub fn transform<U: Data, O: Operator<T, U>>(
        &self,
        name: &str,
        make: impl Fn() -> O + 'static,
    ) -> Stream<U> {
        self.operator(name, Routing::Forward, plain_exchange::<T>(), make)
    }

    /// Transforms every record.
    pub fn map<U: Data>(&self, f: impl FnMut(T) -> U + Clone + Send + 'static) -> Stream<U> {
        self.transform("map", move || ops::Map(f.clone()))
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(&self, f: impl FnMut(&T) -> bool + Clone + Send + 'static) -> Stream<T> {
        self.transform("filter", move || ops::Filter(f.clone()))
    }

    /// Turns every record into zero or more records.
    pub fn flat_map<U: Data, I: IntoIterator<Item = U>>(
        &self,
        f: impl FnMut(T) -> I + Clone + Send + 'static,
    ) -> Stream<U> {
        self.transform("flat_map", move || ops::FlatMap(f.clone()))
    }

    /// Looks at every record without changing it.
    pub fn inspect(&self, f: impl FnMut(&T) + Clone + Send + 'static) -> Stream<T> {
        self.transform("inspect", move || ops::Inspect(f.clone()))
    }

    /// A fallible map: an error fails the job, naming the operator and the record's position.
    pub fn try_map<U: Data, E: Display>(
        &self,
        f: impl FnMut(T) -> Result<U, E> + Clone + Send + 'static,
    ) -> Stream<U> {
        self.transform("try_map", move || ops::TryMap(f.clone()))
    }

    /// A fallible map whose errors go to a second stream instead of failing the job.
    pub fn try_map_split<U: Data, E: Data>(
        &self,
        f: impl FnMut(T) -> Result<U, E> + Clone + Send + 'static,
    ) -> (Stream<U>, Stream<ops::Failure<E>>) {
        self.transform("try_map", move || ops::TryMapRouted(f.clone()))
            .split_result()
    }

    /// Groups consecutive records into vectors of `size` (the last may be shorter).
    pub fn batch(&self, size: usize) -> Stream<Vec<T>> {
        let size = size.max(1);
        self.transform("batch", move || ops::Batch {
            size,
            pending: Vec::with_capacity(size),
        })
    }

    /// The first `n` records (over all parallel instances); then the sources are stopped, so
    /// only about what is needed is read, also from an endless source.
    pub fn take(&self, n: u64) -> Stream<T> {
        let taken = Arc::new(AtomicU64::new(0));
        self.transform("take", move || ops::Take {
            limit: n,
            taken: taken.clone(),
        })
    }

    /// Splits the stream into `outputs` streams; `route` picks each record's output index
    /// (an index past the end goes to the last output).
    pub fn split(
        &self,
        outputs: usize,
        route: impl FnMut(&T) -> usize + Clone + Send + 'static,
    ) -> Vec<Stream<T>> {
        let outputs = outputs.max(1);
        let routed = self.transform("split", move || ops::Route(route.clone()));
        let build = Build::Pusher(Box::new(move |_ctx, mut ports| {
            let outs: Vec<BoxPusher<T>> = (0..outputs).map(|i| take_port(&mut ports, i)).collect();
            let node: BoxPusher<(usize, T)> = Box::new(Router {
                buffers: (0..outputs).map(|_| Vec::new()).collect(),
                outputs: outs,
            });
            Box::new(node)
        }));
        let id = routed.attach(
            "split_outputs",
            NodeKind::Operator,
            (0..outputs).map(|_| port::<T>()).collect(),
            Routing::Forward,
            plain_exchange::<(usize, T)>(),
            build,
        );
        self.graph.borrow_mut().nodes[id].hidden = true;
        (0..outputs)
            .map(|p| Stream::new(self.graph.clone(), id, p))
            .collect()
    }

    /// Merges this stream with others of the same type.
    pub fn union(&self, others: &[Stream<T>]) -> Stream<T> {
        let merged = self.transform("union", || ops::Identity);
        for other in others {
            self.graph.borrow_mut().connect(
                other.node,
                other.port,
                merged.node,
                Routing::Forward,
                plain_exchange::<T>(),
            );
        }
        merged
    }

    /// Spreads batches round-robin over the next operator's instances.
    pub fn rebalance(&self) -> Stream<T> {
        self.operator(
            "rebalance",
            Routing::Rebalance,
            plain_exchange::<T>(),
            || ops::Identity,
        )
    }

    /// Partitions the stream by key: all records with the same key meet in the same instance
    /// of the next (keyed) operator.
    pub fn key_by<K, F>(&self, key_of: F) -> KeyedStream<K, T, F>
    where
        K: StateKey + Hash,
        F: Fn(&T) -> K + Clone + Send + 'static,
    {
        KeyedStream {
            stream: self.clone(),
            key_of,
            _k: PhantomData,
        }
    }

    /// Ends the stream in a custom [`Sink`]; `make` builds one per parallel instance.
    pub fn sink<S: Sink<T>>(&self, name: &str, make: impl Fn() -> S + 'static) -> SinkHandle {
        let build = Build::Pusher(Box::new(move |ctx, _ports| {
            let node: BoxPusher<T> = Box::new(SinkNode::new(make(), ctx));
            Box::new(node)
        }));
        let node = self.attach(
            name,
            NodeKind::Sink,
            Vec::new(),
            Routing::Forward,
            plain_exchange::<T>(),
            build,
        );
        SinkHandle {
            graph: self.graph.clone(),
            node,
        }
    }

    /// Calls `f` for every record.
    pub fn for_each(&self, f: impl FnMut(T) + Clone + Send + 'static) -> SinkHandle {
        self.sink("for_each", move || ForEachSink(f.clone()))
    }

    /// Gathers every record; read them with [`Collected::take`] after the job ran.
    pub fn collect(&self) -> Collected<T> {
        let items = Arc::new(Mutex::new(Vec::new()));
        let shared = items.clone();
        self.sink("collect", move || CollectSink {
            items: shared.clone(),
        });
        Collected { items }
    }

    /// Counts the records that reach this point.
    pub fn count(&self) -> Counted {
        let count = Arc::new(AtomicU64::new(0));
        let shared = count.clone();
        self.sink("count", move || CountSink {
            count: shared.clone(),
            local: 0,
        });
        Counted { count }
    }

    /// Names the operator that produces this stream (in metrics and errors).
    pub fn name(self, name: &str) -> Self {
        self.graph.borrow_mut().rename(self.node, name);
        self
    }

    /// Sets the parallelism of the operator that produces this stream.
    pub fn parallelism(self, parallelism: usize) -> Self {
        self.graph.borrow_mut().nodes[self.node].parallelism = Some(parallelism.max(1));
        self
    }

    /// Caps the parallelism of the operator that produces this stream, whatever the job's or
    /// the operator's own setting: a source whose input cannot be split (one file, standard
    /// input) runs as at most `max` instances.
    pub fn max_parallelism(self, max: usize) -> Self {
        self.graph.borrow_mut().nodes[self.node].max_parallelism = Some(max.max(1));
        self
    }

    /// Puts a bounded buffer in front of the operator that produces this stream (it then runs
    /// in its own task), with `policy` for when it is full.
    pub fn buffer(self, capacity: usize, policy: BufferPolicy) -> Self {
        self.graph.borrow_mut().nodes[self.node].buffer = Some((capacity.max(1), policy));
        self
    }
}

impl<A: Data, E: Data> Stream<Result<A, E>> {
    /// Separates successes from errors, moving each record to one of the two streams.
    pub fn split_result(&self) -> (Stream<A>, Stream<E>) {
        let build = Build::Pusher(Box::new(move |_ctx, mut ports| {
            let node: BoxPusher<Result<A, E>> = Box::new(ResultSplit {
                ok: take_port::<A>(&mut ports, 0),
                err: take_port::<E>(&mut ports, 1),
                ok_buf: Vec::new(),
                err_buf: Vec::new(),
            });
            Box::new(node)
        }));
        let id = self.attach(
            "split_result",
            NodeKind::Operator,
            vec![port::<A>(), port::<E>()],
            Routing::Forward,
            plain_exchange::<Result<A, E>>(),
            build,
        );
        self.graph.borrow_mut().nodes[id].hidden = true;
        (
            Stream::new(self.graph.clone(), id, 0),
            Stream::new(self.graph.clone(), id, 1),
        )
    }
}

/// A stream partitioned by key; its operators keep state per key.
pub struct KeyedStream<K, T, F> {
    stream: Stream<T>,
    key_of: F,
    _k: PhantomData<fn() -> K>,
}

impl<K, T, F> KeyedStream<K, T, F>
where
    K: StateKey + Hash,
    T: Data,
    F: Fn(&T) -> K + Clone + Send + 'static,
{
    fn keyed<U: Data, O: Operator<T, U>>(
        &self,
        name: &str,
        make: impl Fn(F) -> O + 'static,
    ) -> Stream<U> {
        let key_of = self.key_of.clone();
        let partition_key = self.key_of.clone();
        let exchange = partitioned_exchange::<T, _>(move || KeyPartitioner {
            key_of: partition_key.clone(),
        });
        self.stream
            .operator(name, Routing::Hash, exchange, move || make(key_of.clone()))
    }

    /// The stream before partitioning (for operators that combine several keyed streams).
    pub fn stream(&self) -> &Stream<T> {
        &self.stream
    }

    /// The key function.
    pub fn key_fn(&self) -> &F {
        &self.key_of
    }

    /// A custom keyed operator; `make` gets the key function.
    pub fn transform<U: Data, O: Operator<T, U>>(
        &self,
        name: &str,
        make: impl Fn(F) -> O + 'static,
    ) -> Stream<U> {
        self.keyed(name, make)
    }

    /// Rolling reduce: each record is combined with its key's accumulated value, and the new
    /// value is emitted.
    pub fn reduce(&self, f: impl FnMut(&T, T) -> T + Clone + Send + 'static) -> Stream<T>
    where
        T: StateValue,
    {
        self.keyed("reduce", move |key_of| ops::KeyedReduce {
            key_of,
            reduce: f.clone(),
            state: AnyStore::<K, T>::Memory(MemoryStore::new()),
        })
    }

    /// Rolling fold: emits `(key, accumulator)` after every record.
    pub fn fold<A: Data + StateValue>(
        &self,
        init: impl FnMut() -> A + Clone + Send + 'static,
        f: impl FnMut(&mut A, T) + Clone + Send + 'static,
    ) -> Stream<(K, A)> {
        self.keyed("fold", move |key_of| ops::KeyedFold {
            key_of,
            init: init.clone(),
            fold: f.clone(),
            state: AnyStore::<K, A>::Memory(MemoryStore::new()),
            emit_every_record: true,
        })
    }

    /// Accumulates per key and emits each key's final `(key, accumulator)` when the input
    /// ends (bounded streams; for unbounded ones use windows).
    pub fn aggregate<A: Data + StateValue>(
        &self,
        init: impl FnMut() -> A + Clone + Send + 'static,
        f: impl FnMut(&mut A, T) + Clone + Send + 'static,
    ) -> Stream<(K, A)> {
        self.keyed("aggregate", move |key_of| ops::KeyedFold {
            key_of,
            init: init.clone(),
            fold: f.clone(),
            state: AnyStore::<K, A>::Memory(MemoryStore::new()),
            emit_every_record: false,
        })
    }

    /// Counts records per key; emits `(key, count)` when the input ends.
    pub fn count(&self) -> Stream<(K, u64)> {
        self.aggregate(|| 0u64, |c, _| *c += 1).name("count")
    }
}

/// Handle on a sink, to name it or set its parallelism.
pub struct SinkHandle {
    graph: Rc<RefCell<Graph>>,
    node: NodeId,
}

impl SinkHandle {
    pub fn name(self, name: &str) -> Self {
        self.graph.borrow_mut().rename(self.node, name);
        self
    }

    pub fn parallelism(self, parallelism: usize) -> Self {
        self.graph.borrow_mut().nodes[self.node].parallelism = Some(parallelism.max(1));
        self
    }

    /// Caps the sink's parallelism (a sink writing one file runs as one instance).
    pub fn max_parallelism(self, max: usize) -> Self {
        self.graph.borrow_mut().nodes[self.node].max_parallelism = Some(max.max(1));
        self
    }

    /// Puts a bounded buffer in front of the sink (it then runs in its own task).
    pub fn buffer(self, capacity: usize, policy: BufferPolicy) -> Self {
        self.graph.borrow_mut().nodes[self.node].buffer = Some((capacity.max(1), policy));
        self
    }
}

/// The records gathered by [`Stream::collect`].
pub struct Collected<T> {
    items: Arc<Mutex<Vec<T>>>,
}

impl<T> Collected<T> {
    /// Takes what was collected so far (all of it once the job finished).
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.items.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The count kept by [`Stream::count`].
pub struct Counted {
    count: Arc<AtomicU64>,
}

impl Counted {
    pub fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}
