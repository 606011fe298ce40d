//! W5 — checkpoint and recovery: W3's word count with `--keys` distinct keys of about 100
//! bytes on the on-disk backend ([`DiskStore`]); a full checkpoint, an incremental one after
//! changing 1% of the keys, then a restore from the latest checkpoint into a fresh store.
//! Checkpoints are taken the way the runtime takes them for the on-disk backend: as files
//! (tables hard-linked into the checkpoint with the checksums the tree recorded for them). In
//! the first checkpoint of a store every file is new; the second shares the unchanged tables
//! with the first. `full_copy_checkpoint_ms` is what a full copy of the state costs instead.
//!
//! The restore runs in a fresh process when the benchmark runs from the `weir` binary: it
//! starts `weir bench w5` again with `WEIR_W5_RESTORE` naming the checkpoint directory, and that
//! process only restores, checks the restored counts and reports how long the restore took
//! (process start-up excluded). Elsewhere (tests) it restores into a fresh store in the same
//! process. The `restore_in` field says which.
//!
//! The word count drives the store through [`KeyedStore`] directly, the way the engine's keyed
//! count does: the engine does not yet let a job choose its state backend.

use crate::digest::{Digest, hash_bytes};
use crate::{BenchError, BenchOptions, BenchReport};
use serde_json::json;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;
use weir_checkpoint::{CheckpointStore, FilesInfo};
use weir_state::{
    AnyStore, DiskStore, DiskStoreOptions, FileCheckpoint, KeyedStore, MemoryStore, SnapshotKind,
    StateKey, StateValue,
};

/// Set in the child process: the checkpoint directory to restore from.
const RESTORE_ENV: &str = "WEIR_W5_RESTORE";
/// The memory budget of the on-disk store: well under the state at the default size.
const MEMORY_BUDGET: usize = 64 << 20;
const KEY_LEN: usize = 96;
/// Word `n` of the input is key `(n * STRIDE) % keys`: every key once per `keys` words.
const STRIDE: u64 = 7919;
const OPERATOR: &str = "count";
const STATE: &str = "counts";

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

/// Counts `words` words into `store`: the keyed count's inner loop.
fn count<S: KeyedStore<String, u64>>(store: &mut S, words: u64, keys: u64) {
    let mut w = String::with_capacity(KEY_LEN);
    for n in 0..words {
        word(black_box(key_index(n, keys)), &mut w);
        *store.get_or_insert_with(&w, || 0) += 1;
    }
}

fn digest_of<S: KeyedStore<String, u64>>(store: &mut S) -> (u64, Digest) {
    let (mut n, mut digest) = (0u64, Digest::default());
    store.for_each(&mut |word: &String, count: &u64| {
        n += 1;
        digest.add(&[hash_bytes(word.as_bytes()), *count]);
    });
    (n, digest)
}

fn disk_options() -> DiskStoreOptions {
    DiskStoreOptions {
        memory_budget: MEMORY_BUDGET,
        worker_threads: 1,
    }
}

/// What a restore took.
struct Restored {
    /// Finding the latest checkpoint and verifying its blobs (read once, checksummed).
    read_ms: f64,
    /// Streaming them into a fresh store (read again, checksummed again).
    load_ms: f64,
    keys: u64,
    digest: Digest,
}

/// Restores the latest checkpoint of `checkpoints` into a fresh disk store under `scratch`,
/// then reads the restored counts back (untimed).
fn restore(checkpoints: &Path, scratch: &Path) -> Result<Restored, BenchError> {
    let started = Instant::now();
    let store = CheckpointStore::open(checkpoints, 2).map_err(|e| error("checkpoints", e))?;
    let (latest, skipped) = store.latest().map_err(|e| error("checkpoints", e))?;
    if let Some(s) = skipped.first() {
        return Err(error("restore", s));
    }
    let latest = latest.ok_or_else(|| error("restore", "no checkpoint"))?;
    let read_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let files = latest
        .files_dir(OPERATOR, 0, STATE)
        .ok_or_else(|| error("restore", "the checkpoint holds no state files"))?;
    let mut fresh: DiskStore<String, u64> =
        DiskStore::open(scratch, disk_options()).map_err(|e| error("restore", e))?;
    fresh
        .restore_files(&files)
        .map_err(|e| error("restore", e))?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let (keys, digest) = digest_of(&mut fresh);
    Ok(Restored {
        read_ms,
        load_ms,
        keys,
        digest,
    })
}

/// Takes checkpoint `id` of `state` as files; returns what was placed, and recorded.
fn checkpoint(
    cstore: &CheckpointStore,
    id: u64,
    state: &mut DiskStore<String, u64>,
    offset: u64,
) -> Result<(FileCheckpoint, FilesInfo), BenchError> {
    let what = format!("checkpoint {id}");
    let pending = cstore.begin(id).map_err(|e| error(&what, e))?;
    let dir = pending
        .files_dir(OPERATOR, 0, STATE)
        .map_err(|e| error(&what, e))?;
    let placed = state.checkpoint_files(&dir).map_err(|e| error(&what, e))?;
    let recorded = pending
        .put_files(OPERATOR, 0, STATE, &placed.checksums, placed.new_bytes)
        .map_err(|e| error(&what, e))?;
    pending
        .put_meta("source", 0, "offset", json!(offset))
        .map_err(|e| error(&what, e))?;
    pending.complete().map_err(|e| error(&what, e))?;
    Ok((placed, recorded))
}

/// Bytes of a varint (LEB128), the store's encoding of integers and lengths.
fn varint_len(x: u64) -> u64 {
    u64::from((64 - x.leading_zeros()).max(1).div_ceil(7))
}

/// Bytes of the state's entries as the store encodes them (a length-prefixed key, a varint
/// count).
fn state_bytes<S: KeyedStore<String, u64>>(store: &mut S) -> u64 {
    let mut bytes = 0u64;
    store.for_each(&mut |k: &String, v: &u64| {
        let key = k.len() as u64;
        bytes += varint_len(key) + key + varint_len(*v);
    });
    bytes
}

/// Times `words` counting steps on a store built by `make`, in ns per word.
fn ns_per_word<S: KeyedStore<String, u64>>(mut store: S, words: u64, keys: u64) -> f64 {
    let started = Instant::now();
    count(&mut store, words, keys);
    black_box(store.len());
    started.elapsed().as_nanos() as f64 / words.max(1) as f64
}

fn in_memory<K: StateKey, V: StateValue>() -> AnyStore<K, V> {
    AnyStore::Memory(MemoryStore::new())
}

pub fn w5(o: &BenchOptions) -> Result<BenchReport, BenchError> {
    let keys = o.keys.max(100);
    // Words: W3's flat_map output; two rounds over the keys by default.
    let words = o.events.map_or(2 * keys, |lines| lines * 10);

    if let Some(dir) = std::env::var_os(RESTORE_ENV) {
        return restore_child(o, Path::new(&dir));
    }

    if o.baseline {
        let started = Instant::now();
        let mut counts = MemoryStore::<String, u64>::new();
        count(&mut counts, words, keys);
        let elapsed = started.elapsed();
        let (n, digest) = digest_of(&mut counts);
        return Ok(BenchReport::new("w5", o, words, elapsed, n, digest.hex()));
    }

    let tmp = tempfile::tempdir().map_err(|e| error("temporary directory", e))?;
    let checkpoints = tmp.path().join("checkpoints");
    let mut state: DiskStore<String, u64> =
        DiskStore::open(tmp.path().join("state"), disk_options()).map_err(|e| error("state", e))?;

    let started = Instant::now();
    count(&mut state, words, keys);
    let elapsed = started.elapsed();

    let cstore = CheckpointStore::open(&checkpoints, 2)
        .map_err(|e| error("checkpoints", e))?
        .with_job("w5");

    // A full checkpoint: the store writes its cache back, flushes its memtable and
    // hard-links its tables into the checkpoint; the store checksums them.
    let t = Instant::now();
    let (full, full_recorded) = checkpoint(&cstore, 1, &mut state, words)?;
    let checkpoint_ms = t.elapsed().as_secs_f64() * 1e3;
    // The word count's result and the state's size (after the checkpoint, so that the
    // checkpoint's own write-back of the cache is timed).
    let (results, counted) = digest_of(&mut state);
    let state_bytes = state_bytes(&mut state);

    // Change 1% of the keys, then checkpoint again: only the tables written since cost I/O.
    let mut wbuf = String::with_capacity(KEY_LEN);
    for i in (0..keys).step_by(100) {
        word(i, &mut wbuf);
        if let Some(c) = state.get_mut(&wbuf) {
            *c += 1;
        }
    }
    let t = Instant::now();
    let (incremental, _) = checkpoint(&cstore, 2, &mut state, words)?;
    let incremental_ms = t.elapsed().as_secs_f64() * 1e3;
    let (_, live) = digest_of(&mut state);

    // For comparison, what a store that cannot link its files pays for a full checkpoint:
    // every entry streamed into one file, synced.
    let t = Instant::now();
    let copy = tmp.path().join("full-copy");
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&copy).map_err(|e| error("full copy", e))?,
    );
    state
        .snapshot(SnapshotKind::Full, &mut out)
        .map_err(|e| error("full copy", e))?;
    out.into_inner()
        .map_err(|e| error("full copy", e.into_error()))?
        .sync_all()
        .map_err(|e| error("full copy", e))?;
    let copy_ms = t.elapsed().as_secs_f64() * 1e3;
    drop(state);

    // Recover from the latest checkpoint.
    let (r, restored, restore_in) = match weir_binary() {
        Some(exe) => {
            let (r, digest) = restore_in_child(&exe, o, &checkpoints, keys)?;
            (r, digest, "fresh process")
        }
        None => {
            let r = restore(&checkpoints, &tmp.path().join("restored"))?;
            let digest = r.digest.hex();
            (r, digest, "same process")
        }
    };
    let restored_keys = r.keys;
    let restore_ms = r.read_ms + r.load_ms;
    if restored != live.hex() || restored_keys != keys {
        return Err(error(
            "restore",
            format!(
                "restored {restored_keys} keys with digest {restored}, expected {keys} keys with {}",
                live.hex()
            ),
        ));
    }

    // The price of choosing the backend at run time: AnyStore vs MemoryStore, same loop.
    let probe = words.min(2_000_000);
    let memory_ns = ns_per_word(MemoryStore::<String, u64>::new(), probe, keys);
    let any_ns = ns_per_word(in_memory::<String, u64>(), probe, keys);

    let mut report = BenchReport::new("w5", o, words, elapsed, results, counted.hex());
    let gbps = |bytes: u64, ms: f64| {
        if ms > 0.0 {
            bytes as f64 / 1e9 / (ms / 1e3)
        } else {
            0.0
        }
    };
    let extra = [
        ("state_bytes", json!(state_bytes)),
        ("checkpoint_ms", json!(round(checkpoint_ms))),
        ("checkpoint_files", json!(full.files)),
        ("checkpoint_file_bytes", json!(full.bytes)),
        ("checkpoint_copied_bytes", json!(full.copied_bytes)),
        (
            "checkpoint_checksummed_bytes",
            json!(full_recorded.read_bytes),
        ),
        ("incremental_checkpoint_ms", json!(round(incremental_ms))),
        ("incremental_bytes", json!(incremental.new_bytes)),
        ("full_copy_checkpoint_ms", json!(round(copy_ms))),
        ("restore_ms", json!(round(restore_ms))),
        ("restore_read_ms", json!(round(r.read_ms))),
        ("restore_load_ms", json!(round(r.load_ms))),
        ("restore_in", json!(restore_in)),
        (
            "checkpoint_gb_per_s",
            json!(round(gbps(state_bytes, checkpoint_ms))),
        ),
        (
            "restore_gb_per_s",
            json!(round(gbps(state_bytes, restore_ms))),
        ),
        ("memory_budget", json!(MEMORY_BUDGET)),
        ("memory_store_ns_per_word", json!(round(memory_ns))),
        ("any_store_ns_per_word", json!(round(any_ns))),
    ];
    for (k, v) in extra {
        report.extra.insert(k.to_string(), v);
    }
    Ok(report)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The running executable when it is the `weir` binary (which has the `bench` command).
fn weir_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    (exe.file_stem()? == "weir").then_some(exe)
}

fn restore_in_child(
    exe: &Path,
    o: &BenchOptions,
    checkpoints: &Path,
    keys: u64,
) -> Result<(Restored, String), BenchError> {
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["bench", "w5", "--json", "--keys", &keys.to_string()]);
    if let Some(e) = o.events {
        cmd.args(["--events", &e.to_string()]);
    }
    let out = cmd
        .env(RESTORE_ENV, checkpoints)
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
    let read_ms = report["restore_read_ms"].as_f64();
    let load_ms = report["restore_load_ms"].as_f64();
    let keys = report["results"].as_u64();
    let digest = report["checksum"].as_str();
    match (read_ms, load_ms, keys, digest) {
        (Some(read_ms), Some(load_ms), Some(keys), Some(d)) => Ok((
            Restored {
                read_ms,
                load_ms,
                keys,
                digest: Digest::default(),
            },
            d.to_string(),
        )),
        _ => Err(error("the restore process's report", last)),
    }
}

/// The child's side: restore, check, report.
fn restore_child(o: &BenchOptions, checkpoints: &Path) -> Result<BenchReport, BenchError> {
    let scratch = tempfile::tempdir().map_err(|e| error("temporary directory", e))?;
    let r = restore(checkpoints, &scratch.path().join("restored"))?;
    let ms = r.read_ms + r.load_ms;
    let mut report = BenchReport::new(
        "w5",
        o,
        0,
        std::time::Duration::from_secs_f64(ms / 1e3),
        r.keys,
        r.digest.hex(),
    );
    report.extra.insert("restore_ms".into(), json!(round(ms)));
    report
        .extra
        .insert("restore_read_ms".into(), json!(round(r.read_ms)));
    report
        .extra
        .insert("restore_load_ms".into(), json!(round(r.load_ms)));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_measured_like_postcard() {
        assert_eq!(
            [0, 127, 128, 16_383, 16_384, u64::MAX].map(varint_len),
            [1, 1, 2, 2, 3, 10]
        );
    }

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
    fn engine_restores_what_it_checkpointed_and_matches_baseline() {
        let o = BenchOptions {
            keys: 20_000,
            ..BenchOptions::default()
        };
        let engine = w5(&o).unwrap();
        assert_eq!(engine.results, 20_000);
        assert_eq!(engine.extra["restore_in"], "same process");
        for field in [
            "state_bytes",
            "checkpoint_ms",
            "incremental_checkpoint_ms",
            "restore_ms",
        ] {
            assert!(engine.extra.contains_key(field), "{field} missing");
        }
        assert!(engine.extra["state_bytes"].as_u64().unwrap() > 20_000 * 96);
        // The second checkpoint shares tables with the first.
        assert!(
            engine.extra["incremental_bytes"].as_u64().unwrap()
                < engine.extra["checkpoint_file_bytes"].as_u64().unwrap()
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
