//! `weir bench ingest`: records/s accepted over HTTP by `weir serve`'s ingest endpoint
//! (validated against a schema, appended to a Redis stream) from a local client posting NDJSON
//! bodies of 1,000 records, and the p99 request latency.

use anyhow::{Context, bail};
use std::time::{Duration, Instant};
use weir_server::config::{Flags, load};

/// Records per request (the benchmark contract).
const PER_REQUEST: u64 = 1_000;
/// Requests in flight at once.
const CLIENTS: u64 = 4;

pub struct IngestBench {
    pub events: u64,
    pub redis_url: String,
}

pub fn run(bench: IngestBench, json: bool) -> anyhow::Result<()> {
    let events = bench.events.div_ceil(PER_REQUEST) * PER_REQUEST;
    let dir = tempfile_dir()?;
    let stream = format!("weir_bench_ingest_{}", std::process::id());
    let mut config = load(&Flags::default(), &|_| None).context("config")?;
    config.listen = "127.0.0.1:0".parse()?;
    config.data_dir = dir.clone();
    config.ingest_redis_url = bench.redis_url.clone();
    config
        .ingest_streams
        .insert("bench.event".into(), stream.clone());
    let registry = weir_schema::Registry::open(dir.join("schemas"))?;
    registry.register(&weir_schema::Schema::from_yaml(
        "name: bench.event\nfields:\n  - { name: id, type: int, required: true }\n  - { name: key, type: int, required: true }\n  - { name: value, type: int, required: true }\n",
        "bench.yaml",
    )?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(weir_server::serve_until(
            config,
            async move {
                let _ = stop_rx.await;
            },
            move |addr| {
                let _ = addr_tx.send(addr);
            },
        ));
        let addr = addr_rx.await.context("the server did not start")?;
        let url = format!("http://{addr}/v1/ingest/bench.event");
        let client = weir_connectors::http_client()
            .build()
            .context("cannot build an HTTP client")?;
        // Bodies made before the clock starts: the client's cost is not the server's.
        let bodies: Vec<bytes::Bytes> = (0..events / PER_REQUEST)
            .map(|r| {
                let mut body = String::with_capacity(40 * PER_REQUEST as usize);
                for i in r * PER_REQUEST..(r + 1) * PER_REQUEST {
                    body.push_str(&format!(
                        "{{\"id\":{i},\"key\":{},\"value\":{}}}\n",
                        i % 1000,
                        i * 7 % 1000
                    ));
                }
                bytes::Bytes::from(body)
            })
            .collect();
        let started = Instant::now();
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let bodies = std::sync::Arc::new(bodies);
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let (client, url, next, bodies) =
                (client.clone(), url.clone(), next.clone(), bodies.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut accepted = 0u64;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let t = Instant::now();
                    let response = client
                        .post(&url)
                        .header("content-type", "application/x-ndjson")
                        .body(body.clone())
                        .send()
                        .await?;
                    let status = response.status();
                    let text = response.text().await?;
                    latencies.push(t.elapsed());
                    if status.as_u16() != 202 {
                        bail!("ingest answered {status}: {text}");
                    }
                    let v: serde_json::Value = serde_json::from_str(&text)?;
                    accepted += v["accepted"].as_u64().unwrap_or(0);
                }
                Ok::<_, anyhow::Error>((accepted, latencies))
            }));
        }
        let mut accepted = 0;
        let mut latencies: Vec<Duration> = Vec::new();
        for t in tasks {
            let (a, l) = t.await??;
            accepted += a;
            latencies.extend(l);
        }
        let seconds = started.elapsed().as_secs_f64();
        let _ = stop_tx.send(());
        server.await??;
        // Durably appended: the stream holds every accepted record.
        let redis = redis::Client::open(bench.redis_url.as_str())?;
        let mut conn = redis.get_multiplexed_async_connection().await?;
        let len: u64 = redis::cmd("XLEN")
            .arg(&stream)
            .query_async(&mut conn)
            .await?;
        let _: i64 = redis::cmd("DEL")
            .arg(&stream)
            .query_async(&mut conn)
            .await?;
        latencies.sort();
        let p99 = latencies
            .get((latencies.len() * 99).div_ceil(100).saturating_sub(1))
            .copied()
            .unwrap_or_default();
        Ok::<_, anyhow::Error>((accepted, len, seconds, p99))
    });
    let _ = std::fs::remove_dir_all(&dir);
    let (accepted, len, seconds, p99) = result?;
    if accepted != events || len != events {
        bail!("{events} records posted, {accepted} accepted, {len} in the stream");
    }
    let per_sec = accepted as f64 / seconds;
    let p99_ms = p99.as_secs_f64() * 1000.0;
    println!(
        "ingest (http): {accepted} records in {seconds:.3} s = {per_sec:.0} records/s accepted, bodies of {PER_REQUEST} NDJSON records, {CLIENTS} clients, p99 {p99_ms:.2} ms per request"
    );
    if json {
        println!(
            "{}",
            serde_json::json!({
                "workload": "ingest",
                "events": accepted,
                "parallelism": CLIENTS,
                "seconds": seconds,
                "events_per_sec": per_sec,
                "records_per_sec": per_sec,
                "p99_ms": p99_ms,
                "results": len,
                "checksum": format!("{}", (0..accepted).sum::<u64>()),
            })
        );
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("weir-bench-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
