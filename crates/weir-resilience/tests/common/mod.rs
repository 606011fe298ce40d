#![allow(dead_code)] // each test binary uses a different subset

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use weir_resilience::Retryable;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TestError {
    #[error("transient failure #{0}")]
    Transient(u32),
    #[error("fatal failure")]
    Fatal,
}

impl Retryable for TestError {
    fn is_retryable(&self) -> bool {
        matches!(self, TestError::Transient(_))
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Counts calls and records when each happened (on the paused clock).
#[derive(Clone, Default)]
pub struct Calls {
    count: Arc<AtomicU32>,
    at: Arc<Mutex<Vec<Duration>>>,
}

impl Calls {
    /// Records one call, returns its number (from 1).
    pub fn hit(&self, start: Instant) -> u32 {
        self.at.lock().unwrap().push(start.elapsed());
        self.count.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn count(&self) -> u32 {
        self.count.load(Ordering::SeqCst)
    }

    pub fn times(&self) -> Vec<Duration> {
        self.at.lock().unwrap().clone()
    }

    pub fn gaps(&self) -> Vec<Duration> {
        self.times().windows(2).map(|w| w[1] - w[0]).collect()
    }
}
