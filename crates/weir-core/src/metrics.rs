//! Per-operator counters, updated once per batch and readable while the job runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Live counters of one operator instance.
#[derive(Default, Debug)]
pub struct Counters {
    pub(crate) records_in: AtomicU64,
    pub(crate) records_out: AtomicU64,
    /// Records discarded by a full buffer under a drop policy, on this operator's input.
    pub(crate) dropped: Arc<AtomicU64>,
    pub(crate) busy_ns: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// Named levels an operator reports (e.g. a source's consumer lag); set rarely.
    pub(crate) gauges: std::sync::Mutex<Vec<(&'static str, i64)>>,
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

/// Live view of a running job's counters (for progress displays and metric exporters).
#[derive(Debug, Clone, Default)]
pub struct JobMetrics {
    pub(crate) operators: Vec<OperatorHandle>,
}

impl JobMetrics {
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
