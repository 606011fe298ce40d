//! W4 — latency: W1's pipeline (filter `value % 2 == 0` → map `value * 2 + 1` → a sink that
//! counts and sums) with the source paced at `--rate` events per second for `--seconds`. Each
//! event carries its creation instant; the sink records end-to-end latency into a histogram.
//! At parallelism 2 or more, a key exchange (`key_by key`) stands before the sink, so every
//! record crosses a channel between threads.
//!
//! The creation instant of event `k` of a source instance is the instant it is due at the
//! paced rate (`start + k / rate`), not the instant the source got round to making it: time an
//! event waits in the source (pacing granularity, a source that falls behind) counts as
//! latency, as it would for a real event that happened at that instant (no "coordinated
//! omission"). The source makes events in batches of whatever is due when it is polled and
//! sleeps only when nothing is due.

use crate::workloads::event;
use crate::{BenchError, BenchOptions, BenchReport};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_core::{
    Config, Environment, Operator, OperatorContext, OperatorError, Sink, Source, SourceStatus,
};

/// A W1 event with its creation instant, in nanoseconds since the run's epoch.
#[derive(Clone, Copy, Debug)]
struct Timed {
    key: u64,
    value: i64,
    created_ns: u64,
}

/// Longest sleep of the paced source when nothing is due (it re-checks after this).
const MAX_NAP: Duration = Duration::from_millis(1);

/// Instance `i` of `p` makes the ids `[i*n/p, (i+1)*n/p)` at `rate / p` events per second,
/// like the engine's `GeneratorSource`, stamping each with the instant it was due.
struct PacedSource {
    count: u64,
    rate: f64,
    epoch: Instant,
    next: u64,
    end: u64,
    /// Events this instance made so far, and when it started (first poll), relative to `epoch`.
    made: u64,
    start_ns: Option<u64>,
}

impl PacedSource {
    /// The instant (ns since the epoch) at which this instance's `k`-th event is due.
    #[inline]
    fn due_ns(&self, start_ns: u64, k: u64) -> u64 {
        start_ns + (k as f64 * 1e9 / self.rate) as u64
    }
}

impl Source<Timed> for PacedSource {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        let (i, p) = (ctx.instance() as u128, ctx.parallelism() as u128);
        let total = u128::from(self.count);
        self.next = (i * total / p) as u64;
        self.end = ((i + 1) * total / p) as u64;
        self.rate /= p as f64;
        Ok(())
    }

    fn poll(
        &mut self,
        out: &mut Vec<Timed>,
        max: usize,
        _: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError> {
        if self.next >= self.end {
            return Ok(SourceStatus::Finished);
        }
        let now_ns = self.epoch.elapsed().as_nanos() as u64;
        let start_ns = *self.start_ns.get_or_insert(now_ns);
        // Event k is due at start + k / rate: event 0 at once.
        let due = ((now_ns - start_ns) as f64 * self.rate / 1e9) as u64 + 1;
        let n = due
            .saturating_sub(self.made)
            .min(max as u64)
            .min(self.end - self.next);
        if n == 0 {
            // Nothing due yet: nap until the next event is (at most MAX_NAP), then return so
            // that the task checks for barriers and stop requests.
            let wait = self.due_ns(start_ns, self.made).saturating_sub(now_ns);
            std::thread::sleep(Duration::from_nanos(wait).min(MAX_NAP));
            return Ok(SourceStatus::Ready);
        }
        for k in 0..n {
            let e = event(self.next + k);
            out.push(Timed {
                key: e.key,
                value: e.value,
                created_ns: self.due_ns(start_ns, self.made + k),
            });
        }
        self.next += n;
        self.made += n;
        Ok(if self.next >= self.end {
            SourceStatus::Finished
        } else {
            SourceStatus::Ready
        })
    }
}

/// Passes records through unchanged: the keyed step that makes the exchange before the sink.
struct PassThrough;

impl<T: Send + 'static> Operator<T, T> for PassThrough {
    #[inline]
    fn process(
        &mut self,
        input: &mut Vec<T>,
        out: &mut Vec<T>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        out.append(input);
        Ok(())
    }
}

/// A log-linear histogram of nanosecond values: exact below 128 ns, then 128 buckets per power
/// of two (relative error below 1%). A fixed array: recording never allocates.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
}

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    #[inline]
    fn index(v: u64) -> usize {
        if v < SUB {
            v as usize
        } else {
            let exp = 63 - v.leading_zeros();
            let mantissa = v >> (exp - SUB_BITS);
            ((exp - SUB_BITS + 1) as u64 * SUB + (mantissa - SUB)) as usize
        }
    }

    /// The highest value that falls in bucket `i`.
    fn upper(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            i
        } else {
            let shift = i / SUB - 1;
            let mantissa = i % SUB + SUB;
            ((u128::from(mantissa + 1) << shift) - 1).min(u128::from(u64::MAX)) as u64
        }
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The smallest bucket bound at or below which a fraction `q` of the values lie (never
    /// above the largest value recorded); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let target = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return Self::upper(i).min(self.max);
            }
        }
        self.max
    }
}

/// What each sink instance gathers: results, their sum, and the latency histogram.
#[derive(Default)]
struct Totals {
    count: u64,
    sum: i64,
    latency: Histogram,
}

struct LatencySink {
    local: Totals,
    shared: Arc<Mutex<Totals>>,
    epoch: Instant,
}

impl Sink<Timed> for LatencySink {
    #[inline]
    fn write(
        &mut self,
        batch: &mut Vec<Timed>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        // A batch is delivered at once: one clock reading serves all its records.
        let now_ns = self.epoch.elapsed().as_nanos() as u64;
        for t in batch.drain(..) {
            self.local.count += 1;
            self.local.sum += t.value;
            self.local
                .latency
                .record(now_ns.saturating_sub(t.created_ns));
        }
        Ok(())
    }

    fn close(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.count += self.local.count;
        shared.sum += self.local.sum;
        shared.latency.merge(&self.local.latency);
        Ok(())
    }
}

fn micros(ns: u64) -> serde_json::Value {
    serde_json::json!((ns as f64 / 100.0).round() / 10.0)
}

/// Runs W4 on the engine. `--baseline` is refused: a plain loop has no batches, channels or
/// threads between the source and the sink, so its "latency" would measure nothing.
pub fn w4(o: &BenchOptions) -> Result<BenchReport, BenchError> {
    if o.baseline {
        return Err(BenchError::Usage(
            "w4 has no --baseline: it measures the engine's end-to-end latency, and a plain \
             loop has no batching, channel or thread between source and sink to measure"
                .into(),
        ));
    }
    if o.events.is_some() {
        return Err(BenchError::Usage(
            "w4 takes no --events: it makes --rate × --seconds events".into(),
        ));
    }
    if o.rate == 0 || o.seconds == 0 {
        return Err(BenchError::Usage(
            "w4 needs --rate and --seconds of at least 1".into(),
        ));
    }
    let n = o.rate.checked_mul(o.seconds).ok_or_else(|| {
        BenchError::Usage(format!(
            "w4: --rate {} × --seconds {} is too many events",
            o.rate, o.seconds
        ))
    })?;
    let env = Environment::with_config(Config {
        parallelism: o.parallelism,
        ..Config::default()
    });
    let epoch = Instant::now();
    let rate = o.rate as f64;
    let stream = env
        .source("paced_generator", move || PacedSource {
            count: n,
            rate,
            epoch,
            next: 0,
            end: 0,
            made: 0,
            start_ns: None,
        })
        .filter(|e| e.value % 2 == 0)
        .map(|e| Timed {
            value: e.value * 2 + 1,
            ..e
        });
    let stream = if o.parallelism > 1 {
        stream
            .key_by(|t: &Timed| t.key)
            .transform("key_exchange", |_| PassThrough)
    } else {
        stream
    };
    let shared = Arc::new(Mutex::new(Totals::default()));
    let s = shared.clone();
    stream.sink("latency_sink", move || LatencySink {
        local: Totals::default(),
        shared: s.clone(),
        epoch,
    });
    let started = Instant::now();
    env.execute()?;
    let elapsed = started.elapsed();
    let totals = std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()));
    let h = &totals.latency;
    let mut report = BenchReport::new("w4", o, n, elapsed, totals.count, totals.sum.to_string());
    report
        .extra
        .insert("rate".into(), serde_json::json!(o.rate));
    report
        .extra
        .insert("p50_us".into(), micros(h.quantile(0.5)));
    report
        .extra
        .insert("p99_us".into(), micros(h.quantile(0.99)));
    report
        .extra
        .insert("p999_us".into(), micros(h.quantile(0.999)));
    report.extra.insert("max_us".into(), micros(h.max()));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_contiguous_and_tight() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let i = Histogram::index(v);
            assert!(i >= last, "index falls at {v}");
            last = i;
            assert!(Histogram::upper(i) >= v, "upper bound below {v}");
            if v >= SUB {
                assert!(Histogram::upper(i) - v <= v / 64, "bucket of {v} too wide");
            }
        }
        assert_eq!(Histogram::index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_ordered_and_close() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let (p50, p99, p999) = (h.quantile(0.5), h.quantile(0.99), h.quantile(0.999));
        assert!(p50 <= p99 && p99 <= p999 && p999 <= h.max());
        assert!((p50 as f64 - 5_000_000.0).abs() < 5_000_000.0 * 0.01);
        assert!((p99 as f64 - 9_900_000.0).abs() < 9_900_000.0 * 0.01);
        assert_eq!(h.max(), 10_000_000);
        assert_eq!(h.count(), 10_000);
    }

    #[test]
    fn w4_delivers_every_paced_event_with_w1_results() {
        for p in [1, 2] {
            let o = BenchOptions {
                rate: 20_000,
                seconds: 1,
                parallelism: p,
                ..BenchOptions::default()
            };
            let r = w4(&o).unwrap();
            let w1 = crate::workloads::w1(&BenchOptions {
                events: Some(20_000),
                ..BenchOptions::default()
            })
            .unwrap();
            assert_eq!(r.events, 20_000);
            assert_eq!((r.results, &r.checksum), (w1.results, &w1.checksum));
            // Paced: the run cannot be much shorter than the events take to come due.
            assert!(r.seconds >= 0.9, "{}", r.seconds);
        }
    }
}
