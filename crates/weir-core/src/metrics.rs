//! Per-operator counters, updated once per batch and readable while the job runs.
//!
//! Everything here is written by the task threads at batch granularity (or on rare events:
//! watermarks, checkpoints, retries) and read by whoever wants a view: the progress line, the
//! summary, a metrics exporter at scrape time. Readers never slow the writers down.

use crate::message::{BEFORE_TIME, END_OF_TIME, Timestamp};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A resilience policy reported under a name.
type NamedPolicy = (Arc<str>, Arc<dyn PolicyReport>);

/// Live counters of one operator instance.
pub struct Counters {
    pub(crate) records_in: AtomicU64,
    pub(crate) records_out: AtomicU64,
    /// Records discarded by a full buffer under a drop policy, on this operator's input.
    pub(crate) dropped: Arc<AtomicU64>,
    pub(crate) busy_ns: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// Named levels an operator reports (e.g. a source's consumer lag); set rarely.
    pub(crate) gauges: Mutex<Vec<(&'static str, i64)>>,
    /// The input channel of this instance, when it runs behind one (read at scrape time).
    pub(crate) input: OnceLock<Arc<dyn crate::channel::Close>>,
    /// The latest event-time watermark at this instance's input (`BEFORE_TIME`: none yet).
    pub(crate) watermark: AtomicI64,
    /// Resilience policies around this instance's calls (retries, breaker, rate limit, cache).
    pub(crate) policies: Mutex<Vec<NamedPolicy>>,
    /// A sink's end-to-end latency: one observation per delivered batch (never per record).
    pub(crate) latency: LatencyCounters,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            dropped: Arc::default(),
            busy_ns: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            gauges: Mutex::default(),
            input: OnceLock::new(),
            watermark: AtomicI64::new(BEFORE_TIME),
            policies: Mutex::default(),
            latency: LatencyCounters::default(),
        }
    }
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters")
            .field("records_in", &self.records_in)
            .field("records_out", &self.records_out)
            .finish_non_exhaustive()
    }
}

impl Counters {
    #[inline]
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts records an operator routed to an error or dead-letter output.
    pub fn add_errors(&self, n: u64) {
        Self::add(&self.errors, n);
    }

    #[inline]
    pub(crate) fn set_watermark(&self, watermark: Timestamp) {
        self.watermark.store(watermark, Ordering::Relaxed);
    }

    pub(crate) fn add_policy(&self, name: &str, report: Arc<dyn PolicyReport>) {
        let mut policies = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        policies.retain(|(n, _)| &**n != name);
        policies.push((name.into(), report));
    }

    pub(crate) fn set_gauge(&self, name: &'static str, value: i64) {
        let mut gauges = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        match gauges.iter_mut().find(|(n, _)| *n == name) {
            Some(g) => g.1 = value,
            None => gauges.push((name, value)),
        }
    }
}

/// The counters of every instance of one operator.
#[derive(Debug, Clone)]
pub struct OperatorHandle {
    pub name: Arc<str>,
    pub kind: &'static str,
    pub(crate) instances: Vec<Arc<Counters>>,
}

impl OperatorHandle {
    /// The operator's name (unique in its job).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `source`, `operator` or `sink`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The counters of each instance, at this moment.
    pub fn instances(&self) -> Vec<InstanceMetrics> {
        self.instances
            .iter()
            .enumerate()
            .map(|(instance, c)| {
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let watermark = c.watermark.load(Ordering::Relaxed);
                InstanceMetrics {
                    instance,
                    records_in: get(&c.records_in),
                    records_out: get(&c.records_out),
                    dropped: get(&c.dropped),
                    errors: get(&c.errors),
                    busy: Duration::from_nanos(get(&c.busy_ns)),
                    gauges: c.gauges.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                    input_channel: c.input.get().map(|ch| ch.level()),
                    watermark: (watermark != BEFORE_TIME && watermark != END_OF_TIME)
                        .then_some(watermark),
                    end_to_end: (self.kind == "sink").then(|| c.latency.read()),
                }
            })
            .collect()
    }

    /// The resilience policies of this operator, by name, read now. Instances that share a
    /// policy (clones of one) count it once; distinct policies of one name are added up.
    pub fn policies(&self) -> Vec<(String, PolicyMetrics)> {
        let mut seen: Vec<usize> = Vec::new();
        let mut out: Vec<(String, PolicyMetrics)> = Vec::new();
        for c in &self.instances {
            let policies = c.policies.lock().unwrap_or_else(|p| p.into_inner());
            for (name, report) in policies.iter() {
                if seen.contains(&report.shared_id()) {
                    continue;
                }
                seen.push(report.shared_id());
                let m = report.policy_metrics();
                match out.iter_mut().find(|(n, _)| n.as_str() == &**name) {
                    Some((_, total)) => total.add(&m),
                    None => out.push((name.to_string(), m)),
                }
            }
        }
        out
    }

    /// A point-in-time summary over all instances.
    pub fn snapshot(&self) -> OperatorMetrics {
        let sum = |f: fn(&Counters) -> &AtomicU64| -> u64 {
            self.instances
                .iter()
                .map(|c| f(c).load(Ordering::Relaxed))
                .sum()
        };
        let mut gauges = std::collections::BTreeMap::new();
        for c in &self.instances {
            for (name, value) in c.gauges.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                *gauges.entry(name.to_string()).or_insert(0) += value;
            }
        }
        OperatorMetrics {
            name: self.name.to_string(),
            gauges,
            kind: self.kind,
            parallelism: self.instances.len(),
            records_in: sum(|c| &c.records_in),
            records_out: sum(|c| &c.records_out),
            dropped: sum(|c| &c.dropped),
            errors: sum(|c| &c.errors),
            busy: Duration::from_nanos(sum(|c| &c.busy_ns)),
        }
    }
}

/// What one operator did, summed over its parallel instances.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OperatorMetrics {
    pub name: String,
    /// source, operator or sink
    pub kind: &'static str,
    pub parallelism: usize,
    pub records_in: u64,
    pub records_out: u64,
    /// Records discarded by a drop buffer policy on the operator's input.
    pub dropped: u64,
    /// Records routed to an error output.
    pub errors: u64,
    /// Time spent inside the operator's own code (not downstream).
    #[serde(serialize_with = "serialize_duration_ms")]
    pub busy: Duration,
    /// Levels the operator reports, summed over instances (e.g. `consumer_lag`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub gauges: std::collections::BTreeMap<String, i64>,
}

fn serialize_duration_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// One operator instance's counters at a point in time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceMetrics {
    pub instance: usize,
    pub records_in: u64,
    pub records_out: u64,
    pub dropped: u64,
    pub errors: u64,
    pub busy: Duration,
    pub gauges: Vec<(&'static str, i64)>,
    /// Records queued in the instance's input channel and the channel's capacity; `None` when
    /// the instance has no channel of its own (a source, or fused behind its upstream).
    pub input_channel: Option<(usize, usize)>,
    /// The event-time watermark at the instance's input; `None` before the first one (and
    /// after the end of event time).
    pub watermark: Option<Timestamp>,
    /// End-to-end latency of what a sink instance delivered (`None` for other operators).
    pub end_to_end: Option<LatencyMetrics>,
}

/// Upper bounds (seconds) of the end-to-end latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A sink instance's end-to-end latency histogram: the time from a batch's arrival at the
/// source (its oldest record's ingest time) to its delivery by the sink. Observed once per
/// delivered batch, by the sink's task.
#[derive(Debug, Default)]
pub(crate) struct LatencyCounters {
    /// Observations per bucket (not cumulative; the last is +Inf).
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl LatencyCounters {
    /// Records one delivery of records that entered the pipeline at `ingest_ms` (wall clock,
    /// milliseconds since the epoch), delivered now.
    pub(crate) fn observe(&self, ingest_ms: Timestamp) {
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let micros = now_us.saturating_sub(ingest_ms.saturating_mul(1000)).max(0) as u64;
        let secs = micros as f64 / 1e6;
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> LatencyMetrics {
        LatencyMetrics {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// A sink instance's end-to-end latency so far: observations per bucket of
/// [`LATENCY_BUCKETS`] then +Inf (not cumulative), their sum and count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyMetrics {
    pub buckets: Vec<u64>,
    /// Sum of the observed latencies, in microseconds.
    pub sum_us: u64,
    pub count: u64,
}

impl LatencyMetrics {
    /// `(upper bound in seconds, observations in the bucket)`, the last bound infinity.
    pub fn bounded_buckets(&self) -> Vec<(f64, u64)> {
        LATENCY_BUCKETS
            .iter()
            .chain(std::iter::once(&f64::INFINITY))
            .zip(&self.buckets)
            .map(|(&bound, &n)| (bound, n))
            .collect()
    }

    /// The sum of the observed latencies, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }
}

/// What a resilience policy around an operator's calls has counted so far. `None`: the
/// policy has no such part (no breaker, no rate limit, no cache).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PolicyMetrics {
    /// Retries scheduled (attempts after the first of a call).
    pub retries: u64,
    /// 0 closed, 1 half-open, 2 open.
    pub breaker_state: Option<u8>,
    /// Attempts that had to wait for the rate limiter.
    pub rate_limited: Option<u64>,
    pub cache_hits: Option<u64>,
    pub cache_misses: Option<u64>,
}

impl PolicyMetrics {
    fn add(&mut self, other: &PolicyMetrics) {
        fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
            }
        }
        self.retries += other.retries;
        self.breaker_state = self.breaker_state.max(other.breaker_state);
        self.rate_limited = sum(self.rate_limited, other.rate_limited);
        self.cache_hits = sum(self.cache_hits, other.cache_hits);
        self.cache_misses = sum(self.cache_misses, other.cache_misses);
    }
}

/// A resilience policy that reports its counters (read at scrape time, never per record).
pub trait PolicyReport: Send + Sync {
    /// The counters so far.
    fn policy_metrics(&self) -> PolicyMetrics;
    /// The same for every clone that shares one policy's counters (so that instances sharing a
    /// policy count it once).
    fn shared_id(&self) -> usize;
}

/// Upper bounds (seconds) of the checkpoint duration histogram's buckets.
pub const CHECKPOINT_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Checkpoint counters of a job, recorded by the coordinator (once per checkpoint).
#[derive(Debug, Default)]
pub(crate) struct CheckpointCounters {
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Completed checkpoints per duration bucket (not cumulative; the last is +Inf).
    buckets: [AtomicU64; CHECKPOINT_BUCKETS.len() + 1],
    duration_ns: AtomicU64,
    /// Bytes written by the latest completed checkpoint.
    last_bytes: AtomicU64,
    /// Bytes written so far by the checkpoint in progress.
    pub(crate) pending_bytes: AtomicU64,
}

impl CheckpointCounters {
    pub(crate) fn completed(&self, duration: Duration) {
        let secs = duration.as_secs_f64();
        let bucket = CHECKPOINT_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(CHECKPOINT_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.duration_ns
            .fetch_add(duration.as_nanos() as u64, Ordering::Relaxed);
        self.last_bytes.store(
            self.pending_bytes.swap(0, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.pending_bytes.store(0, Ordering::Relaxed);
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn wrote(&self, bytes: u64) {
        self.pending_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A job's checkpoints so far in this run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CheckpointMetrics {
    pub completed: u64,
    pub failed: u64,
    /// Completed checkpoints by duration: `(upper bound in seconds, checkpoints that took
    /// longer than the previous bound and at most this one)`, the bounds of
    /// [`CHECKPOINT_BUCKETS`] then infinity (counts per bucket, not cumulative).
    pub duration_buckets: Vec<(f64, u64)>,
    /// Total duration of the completed checkpoints, in seconds.
    pub duration_sum: f64,
    /// Bytes the latest completed checkpoint wrote (state blobs and new state files; files
    /// linked from an earlier checkpoint are not counted again). `None` before the first.
    pub last_size_bytes: Option<u64>,
}

/// Live view of a running job's counters (for progress displays and metric exporters).
#[derive(Debug, Clone, Default)]
pub struct JobMetrics {
    pub(crate) operators: Vec<OperatorHandle>,
    pub(crate) checkpoints: Option<Arc<CheckpointCounters>>,
}

impl JobMetrics {
    /// Every (visible) operator of the job, in plan order.
    pub fn operators(&self) -> &[OperatorHandle] {
        &self.operators
    }

    /// The job's checkpoints so far; `None` when the job runs without checkpoints.
    pub fn checkpoints(&self) -> Option<CheckpointMetrics> {
        let c = self.checkpoints.as_ref()?;
        let duration_buckets = CHECKPOINT_BUCKETS
            .iter()
            .chain(std::iter::once(&f64::INFINITY))
            .zip(&c.buckets)
            .map(|(&bound, n)| (bound, n.load(Ordering::Relaxed)))
            .collect();
        let completed = c.completed.load(Ordering::Relaxed);
        Some(CheckpointMetrics {
            completed,
            failed: c.failed.load(Ordering::Relaxed),
            duration_buckets,
            duration_sum: Duration::from_nanos(c.duration_ns.load(Ordering::Relaxed)).as_secs_f64(),
            last_size_bytes: (completed > 0).then(|| c.last_bytes.load(Ordering::Relaxed)),
        })
    }

    pub fn snapshot(&self) -> Vec<OperatorMetrics> {
        self.operators
            .iter()
            .map(OperatorHandle::snapshot)
            .collect()
    }

    /// Records emitted by all sources so far.
    pub fn source_records(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|m| m.kind == "source")
            .map(|m| m.records_out)
            .sum()
    }

    /// Records received by all sinks so far.
    pub fn sink_records(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|m| m.kind == "sink")
            .map(|m| m.records_in)
            .sum()
    }
}
