//! `weir checkpoints list|show|restore`: a pipeline's checkpoints from the command line.

use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use weir_checkpoint::CheckpointInfo;
use weir_pipeline::Pipeline;

#[derive(Args)]
pub struct CheckpointArgs {
    #[command(subcommand)]
    command: CheckpointCommand,
}

#[derive(Subcommand)]
enum CheckpointCommand {
    /// List the completed checkpoints of a pipeline (and those that are unusable, with why).
    List {
        /// The pipeline file (YAML); its `settings.checkpoint` says where the checkpoints are.
        pipeline: PathBuf,
        /// Print the checkpoints as a JSON array (id, times, sizes, operators) instead of a
        /// table.
        #[arg(long)]
        json: bool,
    },
    /// Show one checkpoint: when, how long, how big, the operators and source positions.
    Show {
        /// The pipeline file (YAML); its `settings.checkpoint` says where the checkpoints are.
        pipeline: PathBuf,
        /// The checkpoint's id, as `weir checkpoints list` shows it.
        id: u64,
    },
    /// Make the next `weir run` resume from checkpoint ID: later checkpoints are retired.
    Restore {
        /// The pipeline file (YAML); its `settings.checkpoint` says where the checkpoints are.
        pipeline: PathBuf,
        /// The checkpoint to resume from, as `weir checkpoints list` shows it.
        id: u64,
    },
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn line(info: &CheckpointInfo, finished: bool) -> String {
    format!(
        "{:>6}  {}  {:>8} ms  {:>11}  {:>11}  {:<11}  {}{}",
        info.id,
        info.started_at,
        info.duration_ms,
        human_bytes(info.bytes_written),
        human_bytes(info.total_bytes),
        if info.incremental {
            "incremental"
        } else {
            "full"
        },
        info.operators.len(),
        if finished {
            "  (covers the whole input)"
        } else {
            ""
        }
    )
}

pub fn run(args: CheckpointArgs) -> ExitCode {
    let file = match &args.command {
        CheckpointCommand::List { pipeline, .. }
        | CheckpointCommand::Show { pipeline, .. }
        | CheckpointCommand::Restore { pipeline, .. } => pipeline.clone(),
    };
    let pipeline = match Pipeline::load(&file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let store = match pipeline.checkpoint_store() {
        Ok(Some(store)) => store,
        Ok(None) => {
            eprintln!(
                "error: {}: the pipeline has no `settings.checkpoint`",
                file.display()
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result: Result<(), String> = (|| match args.command {
        CheckpointCommand::List { json, .. } => {
            let listing = store.list().map_err(|e| e.to_string())?;
            if json {
                let infos: Vec<_> = listing.checkpoints.iter().map(|c| c.info()).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&infos).map_err(|e| e.to_string())?
                );
            } else {
                println!(
                    "checkpoints of '{}' in {}",
                    pipeline.name(),
                    store.dir().display()
                );
                println!(
                    "{:>6}  {:<24}  {:>11}  {:>11}  {:>11}  {:<11}  operators",
                    "id", "started", "duration", "written", "total", "kind"
                );
                for c in &listing.checkpoints {
                    println!("{}", line(&c.info(), c.finished()));
                }
                if listing.checkpoints.is_empty() {
                    println!("(none)");
                }
            }
            for s in &listing.skipped {
                eprintln!("warning: {s}");
            }
            Ok(())
        }
        CheckpointCommand::Show { id, .. } => {
            let c = store.get(id).map_err(|e| e.to_string())?;
            let info = c.info();
            println!("checkpoint {} of '{}'", info.id, info.job);
            println!("  started       {}", info.started_at);
            println!("  duration      {} ms", info.duration_ms);
            println!("  written       {}", human_bytes(info.bytes_written));
            println!(
                "  total size    {} (with the earlier blobs it builds on)",
                human_bytes(info.total_bytes)
            );
            println!(
                "  kind          {}",
                if info.incremental {
                    "incremental"
                } else {
                    "full"
                }
            );
            println!(
                "  whole input   {}",
                if c.finished() { "yes" } else { "no" }
            );
            println!("  operators:");
            for op in &info.operators {
                println!("    {op}");
            }
            for (op, meta) in &info.meta {
                for (key, value) in meta {
                    println!("  {op} {key}: {value}");
                }
            }
            if !info.states.is_empty() {
                println!("  states:");
            }
            for s in &info.states {
                let (unit, how) = match (s.as_files, s.parts) {
                    (true, _) => ("files", " (the on-disk store's tables, linked)"),
                    (false, 1) => ("blob", ""),
                    (false, _) => ("blobs", " (a full snapshot, then changes)"),
                };
                println!(
                    "    {} {}: {} {unit}, {}{how}",
                    s.operator,
                    s.name,
                    s.parts,
                    human_bytes(s.bytes)
                );
            }
            Ok(())
        }
        CheckpointCommand::Restore { id, .. } => {
            let retired = store.rollback_to(id).map_err(|e| e.to_string())?;
            println!(
                "the next run of '{}' resumes from checkpoint {id}{}",
                pipeline.name(),
                if retired.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (retired {})",
                        retired
                            .iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
            Ok(())
        }
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
