//! W5 — checkpoint and recovery, through the engine: a job counts words (keys of about 100
//! bytes, `--keys` distinct) with a keyed running count (`fold`) on the on-disk state backend,
//! with durable checkpoints in a directory (as `weir run` with `settings.checkpoint`). The
//! job's source writes every key once, waits for the next checkpoint to complete (the *full*
//! one: the whole state), changes 1% of the keys, waits for the next one (the *incremental*
//! one), then stops. Then a fresh process restores the job from the latest checkpoint and
//! counts one more word.
//!
//! Reported: `checkpoint_ms` and `incremental_checkpoint_ms` (barrier injected at the sources
//! → checkpoint complete, as the runtime records it in the checkpoint), the bytes each wrote
//! (`checkpoint_bytes_written`, `incremental_bytes_written`: new bytes on disk; the rest is
//! linked from earlier checkpoints), `state_bytes` (the live state's size on disk: every file
//! the latest checkpoint needs), and `restore_ms`: from the restoring process's start to the
//! first record processed after recovery (the restored count of that word is checked). When
//! the benchmark does not run from the `weir` binary (tests), the restore runs in the same
//! process and `restore_ms` starts when the restoring job is built (`restore_in` says which).
//! `results` and `checksum`: the running counts emitted and the digest of the final counts,
//! equal to `--baseline`'s plain loop over the same words.

use crate::digest::{Digest, hash_bytes};
use crate::{BenchError, BenchOptions, BenchReport};
use serde_json::json;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use weir_checkpoint::{Checkpoint, CheckpointStore, DirCheckpoints};
use weir_core::{
    CheckpointId, Checkpointing, Config, Environment, OperatorContext, OperatorError,
    RestoredState, Sink, Source, SourceStatus,
};
use weir_state::{StateBackend, StoreFactory};

/// Set in the child process: the checkpoint directory to restore from.
const RESTORE_ENV: &str = "WEIR_W5_RESTORE";
/// The memory budget of each on-disk store: well under the state at the default size.
const MEMORY_BUDGET: u64 = 64 << 20;
const KEY_LEN: usize = 96;
/// Word `n` of the input is key `(n * STRIDE) % keys`: every key once per `keys` words.
const STRIDE: u64 = 7919;
const JOB: &str = "w5";
/// Checkpoint interval: after each phase the source waits for the next checkpoint.
const INTERVAL: Duration = Duration::from_millis(500);
/// Checkpoints kept: all of them (a run takes a few), so the full one can be read afterwards.
const KEEP: usize = 1000;

fn error(context: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::State(format!("{context}: {e}"))
}

/// Key `index` as a word of [`KEY_LEN`] bytes, written into `out` (no allocation once `out`
/// has grown).
#[inline]
fn word(index: u64, out: &mut String) {
    out.clear();
    let _ = write!(out, "w{index:09}-");
    while out.len() < KEY_LEN {
        out.push('x');
    }
}

fn key_index(n: u64, keys: u64) -> u64 {
    (n * STRIDE) % keys
}

/// Words `0..keys` write every key once; `keys..keys + keys / 100` change 1% of them.
fn change_end(keys: u64) -> u64 {
    keys + (keys / 100).max(1)
}

/// What the job's source reports to the benchmark: the checkpoints that closed each phase.
#[derive(Default)]
struct Marks {
    full: AtomicU64,
    incremental: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    Load,
    /// Waiting for a checkpoint that starts after the phase: `Some(id)` once it started.
    AfterLoad(Option<CheckpointId>),
    Change,
    AfterChange(Option<CheckpointId>),
    /// Restoring: one word, then stop.
    Probe,
    Done,
}

/// The words source: the phases above, its position checkpointed.
struct Words {
    keys: u64,
    next: u64,
    stage: Stage,
    marks: Arc<Marks>,
    buf: String,
}

impl Words {
    fn emit(&mut self, out: &mut Vec<String>, max: usize, end: u64) {
        while self.next < end && out.len() < max {
            word(key_index(self.next, self.keys), &mut self.buf);
            out.push(self.buf.clone());
            self.next += 1;
        }
    }
}

impl Source<String> for Words {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        if let Some(next) = weir_core::state::restore_value::<u64>(ctx, "next")? {
            self.next = next;
        }
        Ok(())
    }

    fn poll(
        &mut self,
        out: &mut Vec<String>,
        max: usize,
        _: &mut OperatorContext,
    ) -> Result<SourceStatus, OperatorError> {
        match self.stage {
            Stage::Load => {
                self.emit(out, max, self.keys);
                if self.next >= self.keys {
                    self.stage = Stage::AfterLoad(None);
                }
            }
            Stage::Change => {
                self.emit(out, max, change_end(self.keys));
                if self.next >= change_end(self.keys) {
                    self.stage = Stage::AfterChange(None);
                }
            }
            Stage::Probe => {
                let end = self.next + 1;
                self.emit(out, max, end);
                self.stage = Stage::Done;
            }
            Stage::Done => return Ok(SourceStatus::Stopped),
            Stage::AfterLoad(_) | Stage::AfterChange(_) => {}
        }
        Ok(if out.is_empty() {
            SourceStatus::Idle
        } else {
            SourceStatus::Ready
        })
    }

    fn snapshot(
        &mut self,
        id: CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        match self.stage {
            Stage::AfterLoad(None) => self.stage = Stage::AfterLoad(Some(id)),
            Stage::AfterChange(None) => self.stage = Stage::AfterChange(Some(id)),
            _ => {}
        }
        weir_core::state::save_value(ctx, "next", &self.next)
    }

    fn commit(&mut self, id: CheckpointId, _: &mut OperatorContext) -> Result<(), OperatorError> {
        match self.stage {
            Stage::AfterLoad(Some(first)) if id >= first => {
                self.marks.full.store(first, Ordering::Relaxed);
                self.stage = Stage::Change;
            }
            Stage::AfterChange(Some(first)) if id >= first => {
                self.marks.incremental.store(first, Ordering::Relaxed);
                self.stage = Stage::Done;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The counting sink: running counts received, the digest of the latest count per word, and
/// when the first record arrived (the restore's end).
#[derive(Default)]
struct Counted {
    counts: crate::workloads::RunningCounts,
    first_at: Option<SystemTime>,
    last: Option<(String, u64)>,
}

struct CountSink {
    local: Counted,
    shared: Arc<Mutex<Counted>>,
}

impl Sink<(String, u64)> for CountSink {
    fn write(
        &mut self,
        batch: &mut Vec<(String, u64)>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        if self.local.first_at.is_none() && !batch.is_empty() {
            self.local.first_at = Some(SystemTime::now());
        }
        for (word, count) in batch.drain(..) {
            self.local.counts.update(&word, count);
            self.local.last = Some((word, count));
        }
        Ok(())
    }

    fn close(&mut self, _: &mut OperatorContext) -> Result<(), OperatorError> {
        let local = std::mem::take(&mut self.local);
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.counts.merge(local.counts);
        shared.first_at = match (shared.first_at, local.first_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if local.last.is_some() {
            shared.last = local.last;
        }
        Ok(())
    }
}

/// Builds and runs the word-count job; `restore`: the checkpoint to resume from (then the
/// source counts one more word and stops).
fn run_job(
    o: &BenchOptions,
    keys: u64,
    checkpoints: &Path,
    state: &Path,
    restore: Option<Arc<Checkpoint>>,
) -> Result<(Counted, Arc<Marks>), BenchError> {
    let store = CheckpointStore::open(checkpoints, KEEP)
        .map_err(|e| error("checkpoints", e))?
        .with_job(JOB);
    let mut checkpointing = Checkpointing::new(
        INTERVAL,
        Arc::new(DirCheckpoints::new(store, restore.clone())),
    );
    let stage = match restore {
        Some(cp) => {
            checkpointing = checkpointing.restore_from(cp as Arc<dyn RestoredState>);
            Stage::Probe
        }
        None => Stage::Load,
    };
    let env = Environment::with_config(Config {
        parallelism: o.parallelism,
        state: StoreFactory::new(StateBackend::Disk {
            path: state.to_path_buf(),
            memory_budget: MEMORY_BUDGET,
        }),
        checkpointing: Some(checkpointing),
        ..Config::default()
    });
    let marks = Arc::new(Marks::default());
    let shared = Arc::new(Mutex::new(Counted::default()));
    let source_marks = marks.clone();
    let sink_shared = shared.clone();
    env.source("words", move || Words {
        keys,
        next: 0,
        stage,
        marks: source_marks.clone(),
        buf: String::with_capacity(KEY_LEN),
    })
    .parallelism(1)
    .key_by(|w: &String| w.clone())
    .fold(|| 0u64, |count, _| *count += 1)
    .name("count")
    .sink("counted", move || CountSink {
        local: Counted::default(),
        shared: sink_shared.clone(),
    });
    env.execute()?;
    let counted = std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((counted, marks))
}

/// The count the probe word must have after the restore: its count over the words the
/// checkpointed run counted, plus one.
fn probe_expected(keys: u64) -> (u64, u64) {
    let end = change_end(keys);
    let probe = key_index(end, keys);
    let before = (0..end).filter(|n| key_index(*n, keys) == probe).count() as u64;
    (probe, before + 1)
}

/// The baseline: the same words counted in a plain map, each update "emitted".
fn baseline(o: &BenchOptions, keys: u64) -> BenchReport {
    let started = Instant::now();
    let mut counts: hashbrown::HashMap<String, u64> = hashbrown::HashMap::new();
    let mut w = String::with_capacity(KEY_LEN);
    let words = change_end(keys);
    for n in 0..words {
        word(black_box(key_index(n, keys)), &mut w);
        let count = match counts.get_mut(w.as_str()) {
            Some(c) => {
                *c += 1;
                *c
            }
            None => {
                counts.insert(w.clone(), 1);
                1
            }
        };
        black_box(count);
    }
    let elapsed = started.elapsed();
    let mut digest = Digest::default();
    for (word, count) in &counts {
        digest.add(&[hash_bytes(word.as_bytes()), *count]);
    }
    BenchReport::new("w5", o, words, elapsed, words, digest.hex())
}

fn checkpoint_info(
    checkpoints: &Path,
    id: u64,
) -> Result<weir_checkpoint::CheckpointInfo, BenchError> {
    let store = CheckpointStore::open(checkpoints, KEEP).map_err(|e| error("checkpoints", e))?;
    store
        .get(id)
        .map(|c| c.info())
        .map_err(|e| error(&format!("checkpoint {id}"), e))
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub fn w5(o: &BenchOptions) -> Result<BenchReport, BenchError> {
    let keys = o.keys.max(100);
    if let Some(dir) = std::env::var_os(RESTORE_ENV) {
        return restore_child(o, keys, Path::new(&dir));
    }
    if o.events.is_some() {
        return Err(BenchError::Usage(
            "w5 takes --keys (distinct keys; the job counts each once, then 1% again), not --events"
                .into(),
        ));
    }
    if o.baseline {
        return Ok(baseline(o, keys));
    }

    let tmp = tempfile::tempdir().map_err(|e| error("temporary directory", e))?;
    let checkpoints = tmp.path().join("checkpoints");
    let started = Instant::now();
    let (counted, marks) = run_job(o, keys, &checkpoints, &tmp.path().join("state"), None)?;
    let elapsed = started.elapsed();
    let (full_id, incremental_id) = (
        marks.full.load(Ordering::Relaxed),
        marks.incremental.load(Ordering::Relaxed),
    );
    if full_id == 0 || incremental_id == 0 {
        return Err(error(
            "checkpoints",
            "the job stopped before both checkpoints completed",
        ));
    }
    let full = checkpoint_info(&checkpoints, full_id)?;
    let incremental = checkpoint_info(&checkpoints, incremental_id)?;

    // Recover from the latest checkpoint, in a fresh process when there is a `weir` binary.
    let (restore_ms, restore_in) = match weir_binary() {
        Some(exe) => (
            restore_in_child(&exe, o, &checkpoints, keys)?,
            "fresh process",
        ),
        None => {
            let scratch = tmp.path().join("restored");
            let started = SystemTime::now();
            let probe = restore(o, keys, &checkpoints, &scratch)?;
            check_probe(keys, &probe)?;
            (probe_ms(started, probe)?, "same process")
        }
    };

    let mut report = BenchReport::new(
        "w5",
        o,
        change_end(keys),
        elapsed,
        counted.counts.results,
        counted.counts.digest.hex(),
    );
    let extra = [
        ("keys", json!(keys)),
        ("state_bytes", json!(incremental.total_bytes)),
        ("checkpoint_ms", json!(full.duration_ms)),
        ("checkpoint_bytes_written", json!(full.bytes_written)),
        ("incremental_checkpoint_ms", json!(incremental.duration_ms)),
        (
            "incremental_bytes_written",
            json!(incremental.bytes_written),
        ),
        ("checkpoints_taken", json!(incremental_id)),
        ("restore_ms", json!(round(restore_ms))),
        ("restore_in", json!(restore_in)),
        ("memory_budget", json!(MEMORY_BUDGET)),
    ];
    for (k, v) in extra {
        report.extra.insert(k.to_string(), v);
    }
    Ok(report)
}

/// What the restored job did with its one word.
struct Probe {
    first_at: Option<SystemTime>,
    last: Option<(String, u64)>,
}

/// Restores the job from the latest checkpoint in `checkpoints` (state into `scratch`) and
/// counts one more word.
fn restore(
    o: &BenchOptions,
    keys: u64,
    checkpoints: &Path,
    scratch: &Path,
) -> Result<Probe, BenchError> {
    let store = CheckpointStore::open(checkpoints, KEEP).map_err(|e| error("checkpoints", e))?;
    let (latest, skipped) = store.latest().map_err(|e| error("checkpoints", e))?;
    if let Some(s) = skipped.first() {
        return Err(error("restore", s));
    }
    let latest = latest.ok_or_else(|| error("restore", "no checkpoint"))?;
    let (counted, _) = run_job(o, keys, checkpoints, scratch, Some(Arc::new(latest)))?;
    Ok(Probe {
        first_at: counted.first_at,
        last: counted.last,
    })
}

/// Checks the probe's restored count and returns the time from `started` to its arrival.
fn probe_ms(started: SystemTime, probe: Probe) -> Result<f64, BenchError> {
    let first = probe
        .first_at
        .ok_or_else(|| error("restore", "the restored job processed no record"))?;
    Ok(first
        .duration_since(started)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3))
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The running executable when it is the `weir` binary (which has the `bench` command).
fn weir_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    (exe.file_stem()? == "weir").then_some(exe)
}

/// Runs the restore in a fresh `weir bench w5` process; `restore_ms` runs from just before
/// the process is started to its first record processed.
fn restore_in_child(
    exe: &Path,
    o: &BenchOptions,
    checkpoints: &Path,
    keys: u64,
) -> Result<f64, BenchError> {
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["bench", "w5", "--json", "--keys", &keys.to_string()])
        .args(["--parallelism", &o.parallelism.to_string()])
        .env(RESTORE_ENV, checkpoints);
    let started = SystemTime::now();
    let out = cmd
        .output()
        .map_err(|e| error("starting the restore process", e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(error(
            "the restore process",
            format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    let last = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value =
        serde_json::from_str(last).map_err(|e| error("the restore process's report", e))?;
    let first_ns = report["first_record_unix_ns"]
        .as_u64()
        .ok_or_else(|| error("the restore process's report", last))?;
    Ok(first_ns.saturating_sub(unix_ns(started)) as f64 / 1e6)
}

/// The child's side: restore, count the probe word, check its count, report when it arrived.
fn restore_child(
    o: &BenchOptions,
    keys: u64,
    checkpoints: &Path,
) -> Result<BenchReport, BenchError> {
    let scratch = tempfile::tempdir().map_err(|e| error("temporary directory", e))?;
    let started = Instant::now();
    let probe = restore(o, keys, checkpoints, &scratch.path().join("restored"))?;
    check_probe(keys, &probe)?;
    let first = probe
        .first_at
        .ok_or_else(|| error("restore", "the restored job processed no record"))?;
    let mut report = BenchReport::new("w5", o, 1, started.elapsed(), 1, String::new());
    report
        .extra
        .insert("first_record_unix_ns".into(), json!(unix_ns(first)));
    Ok(report)
}

/// The probe word's count must continue the checkpointed count (1 would mean nothing was
/// restored).
fn check_probe(keys: u64, probe: &Probe) -> Result<(), BenchError> {
    let (index, expected) = probe_expected(keys);
    let mut w = String::new();
    word(index, &mut w);
    match &probe.last {
        Some((got, count)) if *got == w && *count == expected => Ok(()),
        other => Err(error(
            "restore",
            format!("expected word {w} with count {expected} after the restore, got {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_distinct_and_about_100_bytes() {
        let (mut a, mut b) = (String::new(), String::new());
        word(1, &mut a);
        word(10, &mut b);
        assert_eq!(a.len(), KEY_LEN);
        assert_ne!(a, b);
        let keys = 1000;
        let hit: std::collections::HashSet<u64> = (0..keys).map(|n| key_index(n, keys)).collect();
        assert_eq!(
            hit.len() as u64,
            keys,
            "one round of words hits every key once"
        );
    }

    #[test]
    fn the_engine_job_checkpoints_restores_and_matches_the_baseline() {
        for parallelism in [1, 2] {
            let o = BenchOptions {
                keys: 20_000,
                parallelism,
                ..BenchOptions::default()
            };
            let engine = w5(&o).unwrap();
            assert_eq!(engine.results, change_end(20_000), "one count per word");
            assert_eq!(engine.extra["restore_in"], "same process");
            // The state on disk (compressed) holds at least what the full checkpoint wrote.
            let full = engine.extra["checkpoint_bytes_written"].as_u64().unwrap();
            assert!(full > 0);
            assert!(engine.extra["state_bytes"].as_u64().unwrap() >= full);
            // The incremental checkpoint writes less than the full one.
            assert!(
                engine.extra["incremental_bytes_written"].as_u64().unwrap()
                    < engine.extra["checkpoint_bytes_written"].as_u64().unwrap(),
                "{:?}",
                engine.extra
            );
            let baseline = w5(&BenchOptions {
                baseline: true,
                ..o
            })
            .unwrap();
            assert_eq!(baseline.results, engine.results);
            assert_eq!(baseline.checksum, engine.checksum);
        }
    }

    #[test]
    fn a_restore_that_lost_the_state_is_caught() {
        let keys = 20_000;
        let (index, expected) = probe_expected(keys);
        assert_eq!(expected, 2);
        let mut w = String::new();
        word(index, &mut w);
        let fresh = Probe {
            first_at: Some(SystemTime::now()),
            last: Some((w, 1)),
        };
        assert!(check_probe(keys, &fresh).is_err());
    }
}
