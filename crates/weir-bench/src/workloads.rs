//! The workloads. Each has an engine version and a `baseline` plain-loop version that read the
//! same generator and must produce the same `results` and `checksum`.

use crate::digest::{Digest, hash_bytes};
use crate::{BenchOptions, BenchReport};
use compact_str::CompactString;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use weir_connectors::SourceExt;
use weir_core::{Config, Environment, JobError, OperatorContext, OperatorError, Sink};

/// The event of W1, W2 and W4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: u64,
    pub key: u64,
    pub value: i64,
    pub ts_ms: i64,
}

/// The deterministic generator of BENCHMARKS.md.
#[inline]
pub fn event(id: u64) -> Event {
    Event {
        id,
        key: id % 10_000,
        value: ((id * 7) % 1000) as i64,
        ts_ms: (id / 1000) as i64,
    }
}

fn engine(parallelism: usize) -> Environment {
    Environment::with_config(Config {
        parallelism,
        ..Config::default()
    })
}

/// A sink that keeps a per-instance accumulator and merges it into a shared one at the end.
struct Accumulate<A, F> {
    local: A,
    shared: Arc<Mutex<A>>,
    add: F,
    merge: fn(&mut A, A),
}

impl<T, A, F> Sink<T> for Accumulate<A, F>
where
    T: Send + 'static,
    A: Default + Send + 'static,
    F: FnMut(&mut A, T) + Send + 'static,
{
    #[inline]
    fn write(&mut self, batch: &mut Vec<T>, _: &mut OperatorContext) -> Result<(), OperatorError> {
        for x in batch.drain(..) {
            (self.add)(&mut self.local, x);
        }
        Ok(())
    }

    fn close(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        (self.merge)(&mut shared, std::mem::take(&mut self.local));
        Ok(())
    }
}

fn accumulate<T, A, F>(stream: &weir_core::Stream<T>, add: F, merge: fn(&mut A, A)) -> Arc<Mutex<A>>
where
    T: weir_core::Data,
    A: Default + Send + 'static,
    F: FnMut(&mut A, T) + Clone + Send + 'static,
{
    let shared = Arc::new(Mutex::new(A::default()));
    let s = shared.clone();
    stream.sink("bench_sink", move || Accumulate {
        local: A::default(),
        shared: s.clone(),
        add: add.clone(),
        merge,
    });
    shared
}

fn take<A: Default>(shared: &Mutex<A>) -> A {
    std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()))
}

/// W1's default size: a run of about a second or more on a 2-core machine (shorter runs
/// measure start-up, not throughput).
pub const W1_EVENTS: u64 = 300_000_000;
/// W3's default size, in lines of 10 words.
pub const W3_LINES: u64 = 2_000_000;

/// W1 — stateless: filter(value % 2 == 0) → map(value * 2 + 1) → count and sum.
pub fn w1(o: &BenchOptions) -> Result<BenchReport, JobError> {
    let n = o.events.unwrap_or(W1_EVENTS);
    let started;
    let (count, sum) = if o.baseline {
        started = Instant::now();
        let (mut count, mut sum) = (0u64, 0i64);
        for id in 0..n {
            let e = black_box(event(id));
            if e.value % 2 == 0 {
                count += 1;
                sum += e.value * 2 + 1;
            }
        }
        (count, sum)
    } else {
        let env = engine(o.parallelism);
        let stream = env
            .generate(n, event)
            .filter(|e| e.value % 2 == 0)
            .map(|e| e.value * 2 + 1);
        let totals = accumulate(
            &stream,
            |acc: &mut (u64, i64), v| {
                acc.0 += 1;
                acc.1 += v;
            },
            |a, b| {
                a.0 += b.0;
                a.1 += b.1;
            },
        );
        started = Instant::now();
        env.execute()?;
        take(&totals)
    };
    let elapsed = started.elapsed();
    Ok(BenchReport::new(
        "w1",
        o,
        n,
        elapsed,
        count,
        sum.to_string(),
    ))
}

/// The W3 line: 10 words, word index `(line * 31 + pos * 17) % 10000`, word `"w" + index`.
pub fn w3_line(line: u64) -> String {
    let mut s = String::with_capacity(60);
    for pos in 0..10u64 {
        if pos > 0 {
            s.push(' ');
        }
        s.push('w');
        push_decimal(&mut s, (line * 31 + pos * 17) % 10_000);
    }
    s
}

fn push_decimal(s: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        s.push(d as char);
    }
}

/// What W3's counting sink keeps: the updated counts it received, and the digest of each
/// word's latest count (kept without a map: each update replaces the word's previous count in
/// the digest, see [`Digest::remove`]).
#[derive(Default)]
pub(crate) struct RunningCounts {
    pub(crate) results: u64,
    pub(crate) digest: Digest,
}

impl RunningCounts {
    pub(crate) fn merge(&mut self, other: RunningCounts) {
        self.results += other.results;
        self.digest.merge(other.digest);
    }

    #[inline]
    pub(crate) fn update(&mut self, word: &str, count: u64) {
        let word = hash_bytes(word.as_bytes());
        self.results += 1;
        if count > 1 {
            self.digest.remove(&[word, count - 1]);
        }
        self.digest.add(&[word, count]);
    }
}

/// W3 — word count: flat_map lines to words, key_by word, a running count in keyed state that
/// emits the updated count of every word occurrence (as timely and Flink do). `results`: the
/// counts emitted (one per word); `checksum`: the digest of the final counts.
pub fn w3(o: &BenchOptions) -> Result<BenchReport, JobError> {
    let lines = o.events.unwrap_or(W3_LINES);
    let started;
    let (results, digest) = if o.baseline {
        started = Instant::now();
        let mut counts: hashbrown::HashMap<String, u64> = hashbrown::HashMap::new();
        let mut results = 0u64;
        for line in 0..lines {
            let text = black_box(w3_line(line));
            for word in text.split(' ') {
                let count = match counts.get_mut(word) {
                    Some(c) => {
                        *c += 1;
                        *c
                    }
                    None => {
                        counts.insert(word.to_string(), 1);
                        1
                    }
                };
                // The counting sink: every updated count is a result.
                black_box(count);
                results += 1;
            }
        }
        let mut digest = Digest::default();
        for (word, count) in &counts {
            digest.add(&[hash_bytes(word.as_bytes()), *count]);
        }
        (results, digest)
    } else {
        let env = engine(o.parallelism);
        let counts = env
            .generate(lines, w3_line)
            .flat_map(|line: String| line.split(' ').map(CompactString::from).collect::<Vec<_>>())
            .key_by(|word: &CompactString| word.clone())
            .fold(|| 0u64, |count, _| *count += 1);
        let totals = accumulate(
            &counts,
            |acc: &mut RunningCounts, (word, count): (CompactString, u64)| acc.update(&word, count),
            RunningCounts::merge,
        );
        started = Instant::now();
        env.execute()?;
        let totals = take(&totals);
        (totals.results, totals.digest)
    };
    let elapsed = started.elapsed();
    Ok(BenchReport::new(
        "w3",
        o,
        lines * 10,
        elapsed,
        results,
        digest.hex(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(f: fn(&BenchOptions) -> Result<BenchReport, JobError>, events: u64, p: usize) {
        let engine = f(&BenchOptions {
            events: Some(events),
            parallelism: p,
            ..BenchOptions::default()
        })
        .unwrap();
        let baseline = f(&BenchOptions {
            events: Some(events),
            baseline: true,
            ..BenchOptions::default()
        })
        .unwrap();
        assert_eq!(engine.results, baseline.results);
        assert_eq!(engine.checksum, baseline.checksum);
        assert!(engine.results > 0);
    }

    #[test]
    fn w1_engine_matches_baseline() {
        both(w1, 100_000, 1);
        both(w1, 100_000, 3);
    }

    #[test]
    fn w3_engine_matches_baseline() {
        both(w3, 20_000, 1);
        both(w3, 20_000, 2);
    }

    #[test]
    fn w3_emits_a_running_count_per_word_and_digests_the_final_counts() {
        let report = w3(&BenchOptions {
            events: Some(2_000),
            parallelism: 2,
            ..BenchOptions::default()
        })
        .unwrap();
        assert_eq!(report.results, 20_000, "one updated count per word");
        // The digest of the final counts, computed here from scratch.
        let mut counts = std::collections::HashMap::<String, u64>::new();
        for line in 0..2_000 {
            for word in w3_line(line).split(' ') {
                *counts.entry(word.to_string()).or_default() += 1;
            }
        }
        let mut digest = Digest::default();
        for (word, count) in &counts {
            digest.add(&[hash_bytes(word.as_bytes()), *count]);
        }
        assert_eq!(report.checksum, digest.hex());
    }

    #[test]
    fn w3_lines_follow_the_spec() {
        assert_eq!(w3_line(0), "w0 w17 w34 w51 w68 w85 w102 w119 w136 w153");
        assert!(w3_line(1000).starts_with("w1000 w1017 "));
    }
}
