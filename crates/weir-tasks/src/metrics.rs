//! Task counters for the metrics layer: `weir_tasks_total{status}`,
//! `weir_task_duration_seconds` (histogram), `weir_tasks_queued`.

use crate::model::TaskStatus;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the duration histogram's buckets (`+Inf` is implied).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Tasks that entered each status (`queued` counts accepted tasks, `running` started ones).
    pub by_status: [AtomicU64; 6],
    pub buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    pub duration_sum_us: AtomicU64,
}

impl Counters {
    pub fn count(&self, status: TaskStatus) {
        self.by_status[status.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, seconds: f64) {
        let i = DURATION_BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.duration_sum_us
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }
}

/// A snapshot of the task metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskMetrics {
    /// `weir_tasks_total{status}`: tasks that entered each status since the service opened
    /// (`queued`: accepted; `running`: started; the rest: finished that way).
    pub tasks_total: Vec<(TaskStatus, u64)>,
    /// `weir_tasks_queued`: tasks waiting now (queued, not running).
    pub queued: u64,
    /// Tasks running now.
    pub running: u64,
    /// `weir_task_duration_seconds`: cumulative bucket counts for
    /// [`DURATION_BUCKETS`] then `+Inf`, of finished tasks' execution time.
    pub duration_buckets: Vec<(f64, u64)>,
    /// Sum of the durations, seconds.
    pub duration_sum: f64,
    /// Number of durations observed.
    pub duration_count: u64,
}

impl Counters {
    pub fn snapshot(&self, queued: u64, running: u64) -> TaskMetrics {
        let mut cumulative = 0;
        let mut duration_buckets = Vec::with_capacity(DURATION_BUCKETS.len() + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let bound = DURATION_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            duration_buckets.push((bound, cumulative));
        }
        TaskMetrics {
            tasks_total: TaskStatus::ALL
                .iter()
                .map(|s| (*s, self.by_status[s.index()].load(Ordering::Relaxed)))
                .collect(),
            queued,
            running,
            duration_buckets,
            duration_sum: self.duration_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            duration_count: cumulative,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_counts_statuses_and_cumulative_duration_buckets() {
        let c = Counters::default();
        c.count(TaskStatus::Queued);
        c.count(TaskStatus::Queued);
        c.count(TaskStatus::Succeeded);
        c.observe_duration(0.003);
        c.observe_duration(0.2);
        c.observe_duration(100.0);
        let s = c.snapshot(1, 0);
        assert_eq!(s.tasks_total[0], (TaskStatus::Queued, 2));
        assert_eq!(s.tasks_total[2], (TaskStatus::Succeeded, 1));
        assert_eq!(s.duration_count, 3);
        let at = |bound: f64| s.duration_buckets.iter().find(|b| b.0 == bound).unwrap().1;
        assert_eq!((at(0.001), at(0.005), at(0.25), at(60.0)), (0, 1, 2, 2));
        assert_eq!(s.duration_buckets.last().unwrap(), &(f64::INFINITY, 3));
        assert!((s.duration_sum - 100.203).abs() < 1e-3);
    }
}
