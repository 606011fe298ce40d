//! The registry: jobs by pipeline name, read at scrape time, plus the server's own HTTP
//! metrics.
//!
//! Why `prometheus-client` rather than the `metrics` facade: the facade is push-only (every
//! update goes through a global recorder, a key lookup and a dynamic call), so feeding it would
//! mean either calls on the task threads or a copying thread. `prometheus-client` has
//! collectors: code run at scrape time that encodes whatever it reads. The runtime already
//! keeps per-instance atomics updated once per batch; a collector reads them, and the hot
//! path does not change at all.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use weir_core::{CheckpointMetrics, InstanceMetrics, JobMetrics, PolicyMetrics};

/// The content type of [`Metrics::render`]'s output (OpenMetrics text, which Prometheus
/// scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The name of a pipeline's dead-letter sink: what it receives is counted as
/// `weir_dead_letters_total` (YAML pipelines name their `dead_letter:` output so).
pub const DEAD_LETTER_SINK: &str = "dead_letter";

/// Buckets (seconds) of `weir_http_request_duration_seconds`.
const HTTP_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

type Labels = Vec<(&'static str, String)>;
type Jobs = Arc<RwLock<BTreeMap<String, Registered>>>;

/// A registered job: its live counters, the connector of each source and sink operator (by
/// operator name), and what earlier runs of the same pipeline in this process counted.
#[derive(Clone, Default)]
struct Registered {
    job: JobMetrics,
    connectors: BTreeMap<String, String>,
    carried: Carried,
}

/// The counts of earlier runs of a pipeline (stopped and resumed within this process), added
/// to the current run's so that counters do not go back when it resumes.
#[derive(Clone, Default)]
struct Carried {
    /// By operator name and instance.
    instances: BTreeMap<(String, usize), InstanceMetrics>,
    /// By operator name and policy name.
    policies: BTreeMap<(String, String), PolicyMetrics>,
    checkpoints: Option<CheckpointMetrics>,
}

impl Carried {
    /// What the job counted (its view, earlier runs included), to carry into its next run.
    fn of(view: &JobView) -> Carried {
        let mut carried = Carried {
            checkpoints: view.checkpoints.clone(),
            ..Carried::default()
        };
        for op in &view.operators {
            for i in &op.instances {
                carried
                    .instances
                    .insert((op.name.clone(), i.instance), i.clone());
            }
            for (policy, m) in &op.policies {
                carried
                    .policies
                    .insert((op.name.clone(), policy.clone()), *m);
            }
        }
        carried
    }

    /// Adds the carried counts to a view of the current run (levels stay the current run's).
    fn add_to(&self, view: &mut JobView) {
        if self.instances.is_empty() && self.checkpoints.is_none() {
            return;
        }
        for op in &mut view.operators {
            for ((name, instance), before) in self.instances.range((op.name.clone(), 0)..) {
                if *name != op.name {
                    break;
                }
                match op.instances.iter_mut().find(|i| i.instance == *instance) {
                    Some(now) => add_instance(now, before),
                    // An instance the current run does not have (a lower parallelism).
                    None => {
                        let mut gone = before.clone();
                        gone.gauges.clear();
                        gone.input_channel = None;
                        gone.watermark = None;
                        op.instances.push(gone);
                    }
                }
            }
            for (policy, m) in &mut op.policies {
                if let Some(before) = self.policies.get(&(op.name.clone(), policy.clone())) {
                    m.retries += before.retries;
                    let sum = |a: &mut Option<u64>, b: Option<u64>| {
                        if let Some(b) = b {
                            *a = Some(a.unwrap_or(0) + b);
                        }
                    };
                    sum(&mut m.rate_limited, before.rate_limited);
                    sum(&mut m.cache_hits, before.cache_hits);
                    sum(&mut m.cache_misses, before.cache_misses);
                }
            }
        }
        if let Some(before) = &self.checkpoints {
            let now = view
                .checkpoints
                .get_or_insert_with(CheckpointMetrics::default);
            now.completed += before.completed;
            now.failed += before.failed;
            now.duration_sum += before.duration_sum;
            if now.duration_buckets.is_empty() {
                now.duration_buckets = before.duration_buckets.clone();
            } else {
                for (n, b) in now
                    .duration_buckets
                    .iter_mut()
                    .zip(&before.duration_buckets)
                {
                    n.1 += b.1;
                }
            }
            if now.last_size_bytes.is_none() {
                now.last_size_bytes = before.last_size_bytes;
            }
        }
    }
}

/// Adds an earlier run's counters of an instance to the current run's.
fn add_instance(now: &mut InstanceMetrics, before: &InstanceMetrics) {
    now.records_in += before.records_in;
    now.records_out += before.records_out;
    now.dropped += before.dropped;
    now.errors += before.errors;
    now.busy += before.busy;
    if let (Some(n), Some(b)) = (&mut now.end_to_end, &before.end_to_end) {
        n.count += b.count;
        n.sum_us += b.sum_us;
        for (x, y) in n.buckets.iter_mut().zip(&b.buckets) {
            *x += y;
        }
    }
}
type TaskSource = Arc<RwLock<Option<Arc<dyn Fn() -> TaskCounts + Send + Sync>>>>;

/// The task queue's numbers, read at scrape time from the source given to
/// [`Metrics::register_tasks`]: `weir_tasks_total{status}`, `weir_task_duration_seconds`,
/// `weir_tasks_queued`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskCounts {
    /// Tasks that entered each status (`queued`: accepted, `running`: started, the rest:
    /// finished that way).
    pub total: Vec<(&'static str, u64)>,
    /// Tasks waiting now.
    pub queued: u64,
    /// Cumulative counts of finished tasks' execution time by bucket upper bound (seconds),
    /// the last bound `+Inf`.
    pub duration_buckets: Vec<(f64, u64)>,
    pub duration_sum: f64,
    pub duration_count: u64,
}

/// The metrics of a process: every registered job, and the server's HTTP requests.
///
/// Cheap to clone (clones share everything); `Send + Sync`.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    jobs: Jobs,
    tasks: TaskSource,
    server_counters: Arc<ServerCounters>,
    http_requests: Family<Labels, Counter>,
    http_duration: Family<Labels, Histogram, fn() -> Histogram>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("jobs", &self.pipelines())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

impl Metrics {
    pub fn new() -> Metrics {
        let jobs: Jobs = Arc::default();
        let http_requests = Family::<Labels, Counter>::default();
        let http_duration: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(http_histogram);
        let mut registry = Registry::default();
        registry.register(
            "weir_http_requests",
            "HTTP requests answered, by route and status code",
            http_requests.clone(),
        );
        registry.register(
            "weir_http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            http_duration.clone(),
        );

        let server_counters = Arc::<ServerCounters>::default();
        registry.register_collector(Box::new(JobsCollector {
            jobs: jobs.clone(),
            server_counters: server_counters.clone(),
        }));
        let tasks: TaskSource = Arc::default();
        registry.register_collector(Box::new(TasksCollector {
            source: tasks.clone(),
        }));
        Metrics {
            inner: Arc::new(Inner {
                registry,
                jobs,
                tasks,
                server_counters,
                http_requests,
                http_duration,
            }),
        }
    }

    /// Exposes a job's live counters under `pipeline`. A job registered before under that
    /// name (an earlier run of the pipeline, stopped and now resumed) is replaced, and what
    /// it counted is carried over: counters go on from where it stopped.
    pub fn register_job(&self, pipeline: &str, job: JobMetrics) {
        self.register_job_with_connectors(pipeline, job, BTreeMap::new());
    }

    /// [`register_job`](Self::register_job), with the connector of each source and sink
    /// operator (operator name → connector type, e.g. `redis_stream`, `clickhouse`): their
    /// metrics get a `connector` label.
    pub fn register_job_with_connectors(
        &self,
        pipeline: &str,
        job: JobMetrics,
        connectors: BTreeMap<String, String>,
    ) {
        let mut jobs = self.jobs_mut();
        let carried = jobs
            .get(pipeline)
            .map(|before| Carried::of(&view_of(pipeline, before)))
            .unwrap_or_default();
        jobs.insert(
            pipeline.to_string(),
            Registered {
                job,
                connectors,
                carried,
            },
        );
    }

    /// Exposes the task metrics: `source` is called at each scrape.
    pub fn register_tasks(&self, source: Arc<dyn Fn() -> TaskCounts + Send + Sync>) {
        *self.inner.tasks.write().unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    /// Stops exposing the job of `pipeline` and forgets what its runs counted (no-op if there
    /// is none).
    pub fn unregister_job(&self, pipeline: &str) {
        self.jobs_mut().remove(pipeline);
    }

    /// The live counters registered under `pipeline`.
    pub fn job(&self, pipeline: &str) -> Option<JobMetrics> {
        self.jobs_read().get(pipeline).map(|r| r.job.clone())
    }

    /// The names of the registered pipelines, sorted.
    pub fn pipelines(&self) -> Vec<String> {
        self.jobs_read().keys().cloned().collect()
    }

    /// The totals of `pipeline` now (what the progress line and the summary show).
    pub fn totals(&self, pipeline: &str) -> Option<Totals> {
        self.jobs_read().get(pipeline).map(|r| Totals::of(&r.job))
    }

    /// Counts one answered HTTP request: `route` is the route's pattern (e.g.
    /// `/v1/pipelines/{name}`), not the concrete path, so that the label set stays small.
    pub fn http_request(&self, route: &str, status: u16, seconds: f64) {
        self.inner
            .http_requests
            .get_or_create(&vec![
                ("route", route.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
        self.inner
            .http_duration
            .get_or_create(&vec![("route", route.to_string())])
            .observe(seconds);
    }

    /// Exposes the server's TLS handshake counters (from 0): the server calls this when it
    /// serves HTTPS.
    pub fn serve_tls(&self) {
        self.inner
            .server_counters
            .tls
            .store(true, Ordering::Relaxed);
    }

    /// Counts one finished TLS handshake of the server, in `weir_tls_handshakes_total{outcome}`.
    pub fn tls_handshake(&self, outcome: Handshake) {
        let counter = match outcome {
            Handshake::Ok => &self.inner.server_counters.handshakes_ok,
            Handshake::Failed => &self.inner.server_counters.handshakes_failed,
            Handshake::TimedOut => &self.inner.server_counters.handshakes_timed_out,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one connection that waited for a free handshake slot (`limits.tls_handshakes`),
    /// in `weir_tls_handshakes_waited_total`.
    pub fn tls_handshake_waited(&self) {
        self.inner
            .server_counters
            .handshakes_waited
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Exposes `weir_rate_limited_total{policy="api"}` (from 0): the server calls this when it
    /// starts, so that the series exists before the first 429.
    pub fn serve_api(&self) {
        self.inner
            .server_counters
            .served
            .store(true, Ordering::Relaxed);
    }

    /// Counts one request the server's per-token limiter refused (a 429), in
    /// `weir_rate_limited_total{policy="api"}`; no token name goes in a label.
    pub fn api_rate_limited(&self) {
        self.inner
            .server_counters
            .served
            .store(true, Ordering::Relaxed);
        self.inner
            .server_counters
            .rate_limited
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Everything, in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry) {
            // Writing into a String cannot fail; say so if it ever does rather than hide it.
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        text
    }

    fn jobs_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Registered>> {
        self.inner.jobs.read().unwrap_or_else(|p| p.into_inner())
    }

    fn jobs_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Registered>> {
        self.inner.jobs.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A job's totals, as the progress line and the summary of `weir run` show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// Records its sources read (= the sum of `weir_records_in_total` over its sources).
    pub read: u64,
    /// Records its sinks received (the dead-letter sink included).
    pub written: u64,
    /// Records routed to an error output.
    pub errors: u64,
    /// Records discarded by full buffers under a drop policy.
    pub dropped: u64,
    /// Records the dead-letter sink received.
    pub dead_letters: u64,
    /// Entries not yet read (or not yet acknowledged) by its sources, where they can tell.
    pub consumer_lag: Option<i64>,
}

impl Totals {
    pub fn of(job: &JobMetrics) -> Totals {
        let mut t = Totals::default();
        for op in job.operators() {
            for i in op.instances() {
                match op.kind() {
                    "source" => t.read += records_in(op.kind(), &i),
                    "sink" => {
                        t.written += i.records_in;
                        if op.name() == DEAD_LETTER_SINK {
                            t.dead_letters += i.records_in;
                        }
                    }
                    _ => {}
                }
                t.errors += i.errors;
                t.dropped += i.dropped;
                if let Some(lag) = consumer_lag(&i) {
                    t.consumer_lag = Some(t.consumer_lag.unwrap_or(0) + lag);
                }
            }
        }
        t
    }
}

/// Records that entered an operator instance. A source's input is the outside world: what it
/// read, i.e. what it emitted (bad input included: it goes on to the dead-letter output).
fn records_in(kind: &str, i: &InstanceMetrics) -> u64 {
    if kind == "source" {
        i.records_out
    } else {
        i.records_in
    }
}

/// Records that left an operator instance. A sink's output is its destination: every record
/// it takes is written there (made visible at the next checkpoint by transactional sinks).
fn records_out(kind: &str, i: &InstanceMetrics) -> u64 {
    if kind == "sink" {
        i.records_in
    } else {
        i.records_out
    }
}

fn consumer_lag(i: &InstanceMetrics) -> Option<i64> {
    i.gauges
        .iter()
        .find(|(name, _)| *name == "consumer_lag")
        .map(|&(_, v)| v)
}

/// One operator read at scrape time.
struct OperatorView {
    name: String,
    kind: &'static str,
    /// The connector type of a source or sink, when the pipeline said.
    connector: Option<String>,
    instances: Vec<InstanceMetrics>,
    policies: Vec<(String, PolicyMetrics)>,
}

struct JobView {
    pipeline: String,
    operators: Vec<OperatorView>,
    checkpoints: Option<CheckpointMetrics>,
}

#[derive(Clone, Copy)]
enum Value {
    Count(u64),
    Seconds(f64),
    Level(i64),
    Ratio(f64),
}

/// How a TLS handshake of the server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Done: the connection is served.
    Ok,
    /// Refused or broken (a plain-HTTP client, a client that does not trust the certificate).
    Failed,
    /// Not done within the server's time limit.
    TimedOut,
}

/// The server's own counters: the API's refusals, exposed with the policies'
/// (`policy="api"`), and its TLS handshakes. Exposed only in a process that serves them.
#[derive(Default)]
struct ServerCounters {
    /// The process serves the API (the series is exposed, from 0).
    served: AtomicBool,
    /// Requests refused with 429 by the per-token limiter.
    rate_limited: AtomicU64,
    /// The server speaks TLS (the handshake series are exposed, from 0).
    tls: AtomicBool,
    handshakes_ok: AtomicU64,
    handshakes_failed: AtomicU64,
    handshakes_timed_out: AtomicU64,
    handshakes_waited: AtomicU64,
}

/// Reads every registered job when scraped.
struct JobsCollector {
    jobs: Jobs,
    server_counters: Arc<ServerCounters>,
}

impl fmt::Debug for JobsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JobsCollector")
    }
}

/// One metric family: its samples, written only if there is at least one.
fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: Vec<(Labels, Value)>,
) -> fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in &samples {
        let mut sample = metric.encode_family(labels)?;
        match (metric_type, *value) {
            (MetricType::Counter, Value::Count(n)) => {
                sample.encode_counter::<NoLabelSet, _, u64>(&n, None)?
            }
            (MetricType::Counter, Value::Seconds(s)) => {
                sample.encode_counter::<NoLabelSet, _, f64>(&s, None)?
            }
            (_, Value::Count(n)) => sample.encode_gauge(&n)?,
            (_, Value::Level(n)) => sample.encode_gauge(&n)?,
            (_, Value::Seconds(s) | Value::Ratio(s)) => sample.encode_gauge(&s)?,
        }
    }
    Ok(())
}

/// A registered job read now, with what its earlier runs counted.
fn view_of(pipeline: &str, r: &Registered) -> JobView {
    let mut view = JobView {
        pipeline: pipeline.to_string(),
        operators: r
            .job
            .operators()
            .iter()
            .map(|op| OperatorView {
                name: op.name().to_string(),
                kind: op.kind(),
                connector: r.connectors.get(op.name()).cloned(),
                instances: op.instances(),
                policies: op.policies(),
            })
            .collect(),
        checkpoints: r.job.checkpoints(),
    };
    r.carried.add_to(&mut view);
    view
}

impl JobsCollector {
    fn views(&self) -> Vec<JobView> {
        let jobs = self.jobs.read().unwrap_or_else(|p| p.into_inner());
        jobs.iter()
            .map(|(pipeline, r)| view_of(pipeline, r))
            .collect()
    }
}

fn instance_labels(job: &JobView, op: &OperatorView, i: &InstanceMetrics) -> Labels {
    let mut labels = vec![
        ("pipeline", job.pipeline.clone()),
        ("operator", op.name.clone()),
        ("instance", i.instance.to_string()),
        ("kind", op.kind.to_string()),
    ];
    if let Some(connector) = &op.connector {
        labels.push(("connector", connector.clone()));
    }
    labels
}

fn state_size(i: &InstanceMetrics) -> Option<i64> {
    i.gauges
        .iter()
        .find(|(name, _)| *name == "state_size_bytes")
        .map(|&(_, v)| v)
}

/// Samples over every operator instance of every job.
fn per_instance(
    views: &[JobView],
    value: impl Fn(&OperatorView, &InstanceMetrics) -> Option<Value>,
) -> Vec<(Labels, Value)> {
    let mut out = Vec::new();
    for job in views {
        for op in &job.operators {
            for i in &op.instances {
                if let Some(v) = value(op, i) {
                    out.push((instance_labels(job, op, i), v));
                }
            }
        }
    }
    out
}

/// Samples over every resilience policy of every operator.
fn per_policy(
    views: &[JobView],
    value: impl Fn(&PolicyMetrics) -> Option<Value>,
) -> Vec<(Labels, Value)> {
    let mut out = Vec::new();
    for job in views {
        for op in &job.operators {
            for (policy, m) in &op.policies {
                if let Some(v) = value(m) {
                    let mut labels = vec![
                        ("pipeline", job.pipeline.clone()),
                        ("operator", op.name.clone()),
                        ("policy", policy.clone()),
                    ];
                    if let Some(connector) = &op.connector {
                        labels.push(("connector", connector.clone()));
                    }
                    out.push((labels, v));
                }
            }
        }
    }
    out
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Collector for JobsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let views = self.views();
        let e = &mut encoder;
        use MetricType::{Counter, Gauge};
        family(
            e,
            "weir_records_in",
            "Records that entered the operator instance (for a source: records read from its input)",
            Counter,
            per_instance(&views, |op, i| Some(Value::Count(records_in(op.kind, i)))),
        )?;
        family(
            e,
            "weir_records_out",
            "Records the operator instance emitted (for a sink: records written to its destination)",
            Counter,
            per_instance(&views, |op, i| Some(Value::Count(records_out(op.kind, i)))),
        )?;
        family(
            e,
            "weir_records_dropped",
            "Records discarded by the instance's full input buffer under a drop policy",
            Counter,
            per_instance(&views, |_, i| Some(Value::Count(i.dropped))),
        )?;
        family(
            e,
            "weir_dead_letters",
            "Records written to the pipeline's dead-letter output",
            Counter,
            per_instance(&views, |op, i| {
                (op.kind == "sink" && op.name == DEAD_LETTER_SINK)
                    .then_some(Value::Count(i.records_in))
            }),
        )?;
        family(
            e,
            "weir_errors",
            "Records the operator instance routed to an error (dead-letter) output",
            Counter,
            per_instance(&views, |_, i| Some(Value::Count(i.errors))),
        )?;
        family(
            e,
            "weir_operator_busy_seconds",
            "Time spent inside the operator's own code (not downstream)",
            Counter,
            per_instance(&views, |_, i| Some(Value::Seconds(i.busy.as_secs_f64()))),
        )?;
        family(
            e,
            "weir_channel_fill_ratio",
            "Fill level of the instance's input channel (records queued / capacity, 0..1): backpressure",
            Gauge,
            per_instance(&views, |_, i| {
                i.input_channel.map(|(queued, capacity)| {
                    Value::Ratio((queued as f64 / capacity.max(1) as f64).min(1.0))
                })
            }),
        )?;
        let now = now_ms();
        family(
            e,
            "weir_watermark_lag_seconds",
            "Wall-clock time minus the event-time watermark at the instance's input",
            Gauge,
            per_instance(&views, |_, i| {
                i.watermark
                    .map(|w| Value::Seconds(now.saturating_sub(w) as f64 / 1000.0))
            }),
        )?;
        family(
            e,
            "weir_consumer_lag",
            "Entries of the source's input not yet read or not yet acknowledged",
            Gauge,
            per_instance(&views, |_, i| consumer_lag(i).map(Value::Level)),
        )?;
        family(
            e,
            "weir_state_size_bytes",
            "Size of the operator instance's keyed state at the latest checkpoint, as its backend reports it",
            Gauge,
            per_instance(&views, |_, i| state_size(i).map(Value::Level)),
        )?;
        let sinks = || {
            views.iter().flat_map(|job| {
                job.operators.iter().flat_map(move |op| {
                    op.instances.iter().filter_map(move |i| {
                        i.end_to_end
                            .as_ref()
                            .map(|l| (instance_labels(job, op, i), l))
                    })
                })
            })
        };
        if sinks().next().is_some() {
            let mut metric = e.encode_descriptor(
                "weir_end_to_end_latency_seconds",
                "Time from a batch's arrival at the source (its oldest record) to its delivery by the sink",
                None,
                MetricType::Histogram,
            )?;
            for (labels, l) in sinks() {
                metric
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(
                        l.sum_seconds(),
                        l.count,
                        &l.bounded_buckets(),
                        None,
                    )?;
            }
        }

        // Checkpoints, per pipeline.
        let with_checkpoints = || {
            views
                .iter()
                .filter_map(|j| j.checkpoints.as_ref().map(|c| (j.pipeline.clone(), c)))
        };
        let mut outcomes = Vec::new();
        for (pipeline, c) in with_checkpoints() {
            for (outcome, n) in [("completed", c.completed), ("failed", c.failed)] {
                outcomes.push((
                    vec![("pipeline", pipeline.clone()), ("outcome", outcome.into())],
                    Value::Count(n),
                ));
            }
        }
        family(
            e,
            "weir_checkpoints",
            "Checkpoints by outcome",
            Counter,
            outcomes,
        )?;
        if with_checkpoints().next().is_some() {
            let mut metric = e.encode_descriptor(
                "weir_checkpoint_duration_seconds",
                "Time from a checkpoint's start to its completion",
                None,
                MetricType::Histogram,
            )?;
            for (pipeline, c) in with_checkpoints() {
                let labels: Labels = vec![("pipeline", pipeline)];
                metric
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(
                        c.duration_sum,
                        c.completed,
                        &c.duration_buckets,
                        None,
                    )?;
            }
        }
        family(
            e,
            "weir_checkpoint_size_bytes",
            "Bytes the latest completed checkpoint wrote (state linked from an earlier one not counted)",
            Gauge,
            with_checkpoints()
                .filter_map(|(pipeline, c)| {
                    c.last_size_bytes
                        .map(|b| (vec![("pipeline", pipeline)], Value::Count(b)))
                })
                .collect(),
        )?;

        // Resilience policies, per operator and policy.
        family(
            e,
            "weir_retries",
            "Retries the policy scheduled (attempts after the first of a call)",
            Counter,
            per_policy(&views, |m| Some(Value::Count(m.retries))),
        )?;
        family(
            e,
            "weir_circuit_breaker_state",
            "The policy's circuit breaker: 0 closed, 1 half-open, 2 open",
            Gauge,
            per_policy(&views, |m| m.breaker_state.map(|s| Value::Level(s.into()))),
        )?;
        let mut rate_limited = per_policy(&views, |m| m.rate_limited.map(Value::Count));
        if self.server_counters.served.load(Ordering::Relaxed) {
            rate_limited.push((
                vec![("policy", "api".to_string())],
                Value::Count(self.server_counters.rate_limited.load(Ordering::Relaxed)),
            ));
        }
        family(
            e,
            "weir_rate_limited",
            "Attempts that waited for the policy's rate limiter; policy=\"api\": requests the server refused with 429 (limits.requests_per_second)",
            Counter,
            rate_limited,
        )?;
        let server = &self.server_counters;
        if server.tls.load(Ordering::Relaxed) {
            let outcomes = [
                ("ok", &server.handshakes_ok),
                ("failed", &server.handshakes_failed),
                ("timed_out", &server.handshakes_timed_out),
            ];
            family(
                e,
                "weir_tls_handshakes",
                "TLS handshakes of the server, by outcome (ok, failed, timed_out)",
                Counter,
                outcomes
                    .iter()
                    .map(|(outcome, n)| {
                        (
                            vec![("outcome", outcome.to_string())],
                            Value::Count(n.load(Ordering::Relaxed)),
                        )
                    })
                    .collect(),
            )?;
            // No labels: a sample of its own, not a family's (which would write `{}`).
            e.encode_descriptor(
                "weir_tls_handshakes_waited",
                "Connections that waited for a handshake slot (limits.tls_handshakes in progress)",
                None,
                Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(
                &server.handshakes_waited.load(Ordering::Relaxed),
                None,
            )?;
        }
        family(
            e,
            "weir_cache_hits",
            "Calls answered from the policy's cache",
            Counter,
            per_policy(&views, |m| m.cache_hits.map(Value::Count)),
        )?;
        family(
            e,
            "weir_cache_misses",
            "Calls the policy's cache could not answer",
            Counter,
            per_policy(&views, |m| m.cache_misses.map(Value::Count)),
        )?;
        Ok(())
    }
}

/// Encodes the task metrics when a source is registered.
struct TasksCollector {
    source: TaskSource,
}

impl fmt::Debug for TasksCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TasksCollector").finish_non_exhaustive()
    }
}

impl Collector for TasksCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let source = self
            .source
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(source) = source else {
            return Ok(());
        };
        let counts = source();
        let mut metric = encoder.encode_descriptor(
            "weir_tasks",
            "Tasks that entered each status (queued: accepted; running: started; the rest: finished so)",
            None,
            MetricType::Counter,
        )?;
        for (status, n) in &counts.total {
            metric
                .encode_family(&vec![("status", status.to_string())])?
                .encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
        encoder
            .encode_descriptor(
                "weir_tasks_queued",
                "Tasks waiting to run now",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&(counts.queued as i64))?;
        // The encoder takes per-bucket counts and accumulates them itself.
        let mut previous = 0;
        let buckets: Vec<(f64, u64)> = counts
            .duration_buckets
            .iter()
            .map(|&(bound, cumulative)| {
                let n = cumulative.saturating_sub(previous);
                previous = cumulative;
                (bound, n)
            })
            .collect();
        encoder
            .encode_descriptor(
                "weir_task_duration_seconds",
                "Execution time of finished tasks",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(
                counts.duration_sum,
                counts.duration_count,
                &buckets,
                None,
            )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_own_counters_appear_only_where_a_server_serves_them() {
        let metrics = Metrics::new();
        let text = metrics.render();
        assert!(!text.contains("weir_rate_limited"), "{text}");
        assert!(!text.contains("weir_tls_handshakes"), "{text}");

        metrics.serve_api();
        assert!(
            metrics
                .render()
                .contains("weir_rate_limited_total{policy=\"api\"} 0\n"),
            "{}",
            metrics.render()
        );
        metrics.api_rate_limited();
        metrics.api_rate_limited();
        let text = metrics.render();
        assert!(
            text.contains("weir_rate_limited_total{policy=\"api\"} 2\n"),
            "{text}"
        );
        assert!(!text.contains("weir_tls_handshakes"), "{text}");

        metrics.serve_tls();
        metrics.tls_handshake(Handshake::Ok);
        metrics.tls_handshake(Handshake::TimedOut);
        metrics.tls_handshake(Handshake::TimedOut);
        metrics.tls_handshake_waited();
        let text = metrics.render();
        for line in [
            "weir_tls_handshakes_total{outcome=\"ok\"} 1\n",
            "weir_tls_handshakes_total{outcome=\"failed\"} 0\n",
            "weir_tls_handshakes_total{outcome=\"timed_out\"} 2\n",
            "weir_tls_handshakes_waited_total 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
