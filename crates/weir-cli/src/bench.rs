use clap::Args;
use std::process::ExitCode;
use weir_bench::{BenchError, BenchOptions};

const WORKLOADS: &str = "\
Workloads (BENCHMARKS.md):
  w1  stateless: filter, map, a sink that counts and sums (default 300,000,000 events)
  w2  keyed tumbling 1 s windows over event time (default 30,000,000 events)
  w3  word count: a running count per word, one updated count emitted per word occurrence
      (as timely and Flink do); results = counts emitted, checksum = digest of the final
      counts (default 2,000,000 lines of 10 words)
  w4  latency: w1's pipeline with the source paced at --rate events/s for --seconds; each
      event carries the instant it was due at that rate, and the sink records end-to-end
      latency (time spent waiting in the source counts). At --parallelism 2 or more a key
      exchange (key_by key) stands before the sink, so records cross a channel. Prints
      p50_us, p99_us, p999_us and max_us; results and checksum equal w1's with
      --events rate*seconds. w4 has no --baseline (a plain loop has no batching, channel or
      thread to measure) and takes no --events.
  w5  checkpoint and recovery, through the engine: a keyed running count of --keys words of
      ~100 bytes on the disk backend with durable checkpoints; a full checkpoint, 1% of keys
      changed, an incremental one, then a fresh process restores and counts one more word.
      checkpoint_ms / incremental_checkpoint_ms: barrier injected -> complete; *_bytes_written:
      new bytes on disk; state_bytes: the live state on disk; restore_ms: process start ->
      first record processed after recovery
  w6  Redis stream to ClickHouse through a schema, exactly once, with durable checkpoints
      in a directory (as `weir run` with settings.checkpoint)
  tasks  the task queue with a no-op in-process agent: tasks/s and p99 submit-to-start ms
      (--store fjall, the default, or --store redis at --redis-url)
  ingest  weir serve's HTTP ingest: NDJSON bodies of 1,000 records from 4 local clients,
      validated and appended to a Redis stream; records/s accepted and p99 ms per request
      (--events, default 1,000,000)
--yaml runs w1 or w2 as a YAML pipeline through the path `weir run` takes (generator source,
compiled expressions, the pipeline's operators, a file sink); same results and checksum.
Default sizes make a run last about a second or more on a 2-core machine.
";

#[derive(Args)]
#[command(after_help = WORKLOADS)]
pub struct BenchArgs {
    /// w1 (stateless), w2 (keyed window), w3 (word count), w4 (latency), w5 (checkpoint), w6 (ingest), ingest (HTTP)
    workload: String,
    /// Events to generate (lines for w3).
    #[arg(long)]
    events: Option<u64>,
    #[arg(long, default_value_t = 1)]
    parallelism: usize,
    /// Run the plain single-threaded Rust loop instead of the engine.
    #[arg(long, conflicts_with = "yaml")]
    baseline: bool,
    /// Run the workload as a YAML pipeline through the path `weir run` takes (w1, w2, w3).
    #[arg(long)]
    yaml: bool,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// w4: events per second (over all source instances).
    #[arg(long, default_value_t = 1_000_000)]
    rate: u64,
    /// w4: seconds to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// w5: distinct keys.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// w6: Redis server.
    #[arg(
        long,
        env = "WEIR_TEST_REDIS_URL",
        default_value = "redis://127.0.0.1:6390"
    )]
    redis_url: String,
    /// w6: ClickHouse HTTP interface.
    #[arg(
        long,
        env = "WEIR_TEST_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8124"
    )]
    clickhouse_url: String,
    /// tasks: the task store, fjall (embedded) or redis (at --redis-url).
    #[arg(long, default_value = "fjall")]
    store: String,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.workload == "ingest" {
        let bench = crate::bench_ingest::IngestBench {
            events: args.events.unwrap_or(1_000_000).max(1),
            redis_url: args.redis_url,
        };
        crate::bench_ingest::run(bench, args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let options = BenchOptions {
        events: args.events,
        parallelism: args.parallelism.max(1),
        baseline: args.baseline,
        yaml: args.yaml,
        rate: args.rate,
        seconds: args.seconds,
        keys: args.keys,
        redis_url: args.redis_url,
        clickhouse_url: args.clickhouse_url,
        store: args.store,
    };
    let report = match weir_bench::run(&args.workload, &options) {
        Ok(r) => r,
        Err(e @ (BenchError::UnknownWorkload(_) | BenchError::Usage(_))) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "{} ({}): {} events in {:.3} s = {:.1} M events/s, parallelism {}, results {}, checksum {}",
        report.workload,
        report.mode,
        report.events,
        report.seconds,
        report.events_per_sec / 1e6,
        report.parallelism,
        report.results,
        report.checksum
    );
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}
