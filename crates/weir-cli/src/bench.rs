use clap::Args;
use std::process::ExitCode;
use weir_bench::{BenchError, BenchOptions};

#[derive(Args)]
pub struct BenchArgs {
    /// w1 (stateless), w2 (keyed window), w3 (word count), w4 (latency), w5 (checkpoint), w6 (ingest)
    workload: String,
    /// Events to generate (lines for w3).
    #[arg(long)]
    events: Option<u64>,
    #[arg(long, default_value_t = 1)]
    parallelism: usize,
    /// Run the plain single-threaded Rust loop instead of the engine.
    #[arg(long)]
    baseline: bool,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// w4: events per second.
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
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let options = BenchOptions {
        events: args.events,
        parallelism: args.parallelism.max(1),
        baseline: args.baseline,
        rate: args.rate,
        seconds: args.seconds,
        keys: args.keys,
        redis_url: args.redis_url,
        clickhouse_url: args.clickhouse_url,
    };
    let report = match weir_bench::run(&args.workload, &options) {
        Ok(r) => r,
        Err(e @ BenchError::UnknownWorkload(_)) => {
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
