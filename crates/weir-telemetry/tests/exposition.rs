//! What a real job shows in the exposition: policy counters (retries, breaker, rate limit,
//! cache) reported by the operators that run them, channel fill under backpressure,
//! watermark lag, and the per-operator record counts.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_core::{Environment, Operator, OperatorContext, OperatorError, Sink};
use weir_resilience::stream::{AsyncMapper, AsyncOptions, AsyncStreamExt};
use weir_resilience::{
    Backoff, BreakerConfig, Cache, Cached, CircuitBreaker, Error, Order, Policy, RateLimiter,
};
use weir_telemetry::Metrics;

#[derive(Debug, Clone, thiserror::Error)]
#[error("busy")]
struct Busy;

/// The value of the one sample of `name` whose labels include all of `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(matching.len() <= 1, "several {name} {labels:?} in\n{text}");
    matching.first().copied()
}

#[test]
fn a_policy_shared_by_parallel_instances_reports_retries_breaker_and_rate_limit_once() {
    let env = Environment::with_config(weir_core::Config {
        parallelism: 2,
        ..weir_core::Config::default()
    });
    let policy: Policy<Busy> = Policy::builder()
        .retries(2)
        .backoff(Backoff::constant(Duration::from_millis(1)))
        .circuit_breaker(CircuitBreaker::new(BreakerConfig {
            failure_threshold: 1000,
            ..BreakerConfig::default()
        }))
        .rate_limit(RateLimiter::per_second(2000))
        .build()
        .unwrap();
    // The first attempt for every odd number fails: one retry each.
    let failed_once: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let call = move |x: &u64| {
        let x = *x;
        let failed_once = failed_once.clone();
        async move {
            if x % 2 == 1 && failed_once.lock().unwrap().insert(x) {
                Err(Busy)
            } else {
                Ok(x * 10)
            }
        }
    };
    let (ok, failed) =
        env.from_iter(0..40u64)
            .rebalance()
            .map_async(4, Order::Ordered, policy.clone(), call);
    let ok = ok.collect();
    let _failed = failed.collect();
    // Two instances of the operator, sharing the one policy.
    let job = env.start().unwrap();
    let metrics = Metrics::new();
    metrics.register_job("calls", job.metrics().clone());
    job.wait().unwrap();
    assert_eq!(ok.take().len(), 40);
    let text = metrics.render();
    let labels = [
        ("pipeline", "calls"),
        ("operator", "map_async"),
        ("policy", "map_async"),
    ];
    assert_eq!(policy.stats().retries, 20);
    assert_eq!(
        value(&text, "weir_retries_total", &labels),
        Some(20.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "weir_circuit_breaker_state", &labels),
        Some(0.0)
    );
    let delayed = policy.rate_limiter().unwrap().delayed();
    assert_eq!(
        value(&text, "weir_rate_limited_total", &labels),
        Some(delayed as f64)
    );
    // No cache: no cache series.
    assert!(!text.contains("weir_cache_hits_total"), "{text}");
    // Per instance: both instances of map_async took records, 40 in all.
    let per_instance: Vec<f64> = (0..2)
        .map(|i| {
            value(
                &text,
                "weir_records_in_total",
                &[("operator", "map_async"), ("instance", &i.to_string())],
            )
            .unwrap()
        })
        .collect();
    assert_eq!(per_instance.iter().sum::<f64>(), 40.0, "{text}");
}

/// Looks up `x % 5` through a cache in front of a policy.
#[derive(Clone)]
struct Lookup(Cached<u64, u64, Busy>);

impl AsyncMapper<u64> for Lookup {
    type Value = u64;
    type Output = u64;
    type Error = Busy;

    async fn call(&self, input: &u64) -> Result<u64, Error<Busy>> {
        let key = input % 5;
        self.0
            .call_keyed(&key, move || async move { Ok::<_, Busy>(key * 100) })
            .await
    }

    fn complete(&self, _input: u64, value: u64) -> u64 {
        value
    }

    fn policy_report(&self) -> Option<(&'static str, Arc<dyn weir_core::PolicyReport>)> {
        Some(("lookup", Arc::new(self.0.clone())))
    }
}

#[test]
fn a_cache_in_front_of_a_policy_reports_hits_and_misses() {
    let env = Environment::local();
    let cached = Policy::<Busy>::default().with_cache(Cache::new(Duration::from_secs(3600)));
    let (ok, _failed) = env
        .from_iter(0..20u64)
        .map_async_with(AsyncOptions::new(1).name("lookup"), Lookup(cached.clone()));
    let ok = ok.collect();
    let job = env.start().unwrap();
    let metrics = Metrics::new();
    metrics.register_job("cached", job.metrics().clone());
    job.wait().unwrap();
    assert_eq!(ok.take().len(), 20);
    let text = metrics.render();
    let labels = [("pipeline", "cached"), ("policy", "lookup")];
    // Five keys: five misses, fifteen hits.
    assert_eq!(
        value(&text, "weir_cache_misses_total", &labels),
        Some(5.0),
        "{text}"
    );
    assert_eq!(value(&text, "weir_cache_hits_total", &labels), Some(15.0));
    assert_eq!(value(&text, "weir_retries_total", &labels), Some(0.0));
    // No breaker and no rate limit: those series are left out, not reported as zero.
    assert!(!text.contains("weir_circuit_breaker_state"), "{text}");
    assert!(!text.contains("weir_rate_limited_total"), "{text}");
}

/// Stamps event time (the record's value, in ms) and emits it as the watermark.
struct Stamp;

impl Operator<u64, u64> for Stamp {
    fn process(
        &mut self,
        input: &mut Vec<u64>,
        out: &mut Vec<u64>,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        if let Some(&last) = input.last() {
            ctx.emit_watermark(last as i64);
        }
        out.append(input);
        Ok(())
    }
}

/// A sink that takes its first batch, then blocks until released (and says so in `waiting`).
struct Gate {
    open: Arc<Mutex<bool>>,
    waiting: Arc<AtomicBool>,
    took_one: bool,
}

impl Sink<u64> for Gate {
    fn write(
        &mut self,
        batch: &mut Vec<u64>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        while self.took_one && !*self.open.lock().unwrap() {
            self.waiting.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
        }
        self.took_one = true;
        batch.clear();
        Ok(())
    }
}

#[test]
fn a_blocked_sink_fills_its_channel_and_the_watermark_lag_is_wall_clock_minus_event_time() {
    let env = Environment::local();
    let open = Arc::new(Mutex::new(false));
    // Event time: an hour ago, counting up one ms per record.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 3_600_000;
    let gate = open.clone();
    let waiting = Arc::new(AtomicBool::new(false));
    let blocked = waiting.clone();
    env.from_iter(base..base + 100_000)
        .transform("stamp", || Stamp)
        .rebalance()
        .buffer(64, weir_core::BufferPolicy::Block)
        .sink("gate", move || Gate {
            open: gate.clone(),
            waiting: waiting.clone(),
            took_one: false,
        });
    let job = env.start().unwrap();
    let metrics = Metrics::new();
    metrics.register_job("blocked", job.metrics().clone());
    // The sink holds its second batch: the channel in front of its task (the rebalance it is
    // fused behind) fills up to capacity.
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = metrics.render();
        let full = value(
            &text,
            "weir_channel_fill_ratio",
            &[("operator", "rebalance")],
        ) == Some(1.0);
        // Once blocked on its second batch, the gate has handled the first one's watermark.
        if full && blocked.load(Ordering::SeqCst) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the channel never filled:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // Sources and fused operators have no channel of their own.
    for operator in ["from_iter", "stamp", "gate"] {
        assert_eq!(
            value(&text, "weir_channel_fill_ratio", &[("operator", operator)]),
            None
        );
    }
    // After its first batch the gate saw that batch's watermark: event time an hour ago
    // (plus the batch's few hundred ms of event time, plus the run so far).
    let lag = value(&text, "weir_watermark_lag_seconds", &[("operator", "gate")])
        .unwrap_or_else(|| panic!("the gate has seen no watermark:\n{text}"));
    assert!((3500.0..3700.0).contains(&lag), "lag {lag}\n{text}");
    *open.lock().unwrap() = true;
    job.wait().unwrap();
    // The source read everything; after the end of event time no lag is reported.
    let text = metrics.render();
    assert_eq!(
        value(
            &text,
            "weir_records_in_total",
            &[("operator", "from_iter"), ("kind", "source")]
        ),
        Some(100_000.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "weir_watermark_lag_seconds", &[("operator", "gate")]),
        None
    );
    let totals = metrics.totals("blocked").unwrap();
    assert_eq!((totals.read, totals.written), (100_000, 100_000));
}

/// One run of a small job (source → rebalance into 2 instances → sink) registered under
/// `pipeline`, the sink labelled with a connector; the time it took.
fn run_rebalanced(metrics: &Metrics, pipeline: &str, records: u64) -> f64 {
    let started = Instant::now();
    let env = Environment::with_config(weir_core::Config {
        parallelism: 2,
        ..weir_core::Config::default()
    });
    let _out = env
        .from_iter(0..records)
        .rebalance()
        .map(|x| x + 1)
        .collect();
    let job = env.start().unwrap();
    let connectors = job
        .metrics()
        .operators()
        .iter()
        .filter(|o| o.kind() == "sink")
        .map(|o| (o.name().to_string(), "memory".to_string()))
        .collect();
    metrics.register_job_with_connectors(pipeline, job.metrics().clone(), connectors);
    job.wait().unwrap();
    started.elapsed().as_secs_f64()
}

fn sum_of(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[test]
fn end_to_end_latency_crosses_channels_and_a_resumed_pipeline_counts_on() {
    let metrics = Metrics::new();
    let first = run_rebalanced(&metrics, "again", 10_000);
    let text = metrics.render();
    let sink = [
        ("pipeline", "again"),
        ("kind", "sink"),
        ("connector", "memory"),
    ];
    // The sinks run behind a channel: the ingest time crossed it with the batches.
    let count = sum_of(&text, "weir_end_to_end_latency_seconds_count", &sink);
    let total = sum_of(&text, "weir_end_to_end_latency_seconds_sum", &sink);
    assert!(count >= 1.0, "{text}");
    // Ingest and delivery times are whole wall-clock milliseconds, so one observation can
    // exceed the run's measured duration by up to a millisecond at each end.
    assert!(
        total <= count * (first + 0.002),
        "{total} over {count} in {first}s\n{text}"
    );
    assert_eq!(
        sum_of(
            &text,
            "weir_end_to_end_latency_seconds_bucket",
            &[("pipeline", "again"), ("le", "+Inf")]
        ),
        count,
        "{text}"
    );
    // Sources and operators have no latency histogram and no connector here.
    assert!(
        !text.contains(
            "weir_end_to_end_latency_seconds_count{pipeline=\"again\",operator=\"from_iter\""
        ),
        "{text}"
    );

    // The pipeline runs again in this process (stopped and resumed): its counters go on.
    run_rebalanced(&metrics, "again", 5_000);
    let text = metrics.render();
    let source = [("pipeline", "again"), ("kind", "source")];
    assert_eq!(
        sum_of(&text, "weir_records_in_total", &source),
        15_000.0,
        "{text}"
    );
    assert_eq!(
        sum_of(&text, "weir_records_out_total", &sink),
        15_000.0,
        "{text}"
    );
    assert!(
        sum_of(&text, "weir_end_to_end_latency_seconds_count", &sink) > count,
        "{text}"
    );
    // Forgotten when unregistered: a new pipeline of that name starts from 0.
    metrics.unregister_job("again");
    run_rebalanced(&metrics, "again", 1_000);
    let text = metrics.render();
    assert_eq!(
        sum_of(&text, "weir_records_in_total", &source),
        1_000.0,
        "{text}"
    );
}
