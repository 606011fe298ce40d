//! The `weir` command line.

mod bench;
mod checkpoints;
mod run;
mod schema;
mod signals;
mod token;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Weir: stream processing in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline file until its input ends.
    Run(run::RunArgs),
    /// Check a pipeline file without running it.
    Validate(run::ValidateArgs),
    /// Inspect and choose a pipeline's checkpoints.
    Checkpoints(checkpoints::CheckpointArgs),
    /// Manage the schema registry.
    Schema(schema::SchemaArgs),
    /// Run a benchmark workload (w1..w6); `weir bench --help` describes them.
    Bench(bench::BenchArgs),
    /// Make, and revoke, the bearer tokens of `weir serve`.
    Token(token::TokenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => Ok(run::run(args)),
        Command::Validate(args) => Ok(run::validate(args)),
        Command::Schema(args) => Ok(schema::run(args)),
        Command::Checkpoints(args) => Ok(checkpoints::run(args)),
        Command::Bench(args) => bench::run(args),
        Command::Token(args) => Ok(token::run(args)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
