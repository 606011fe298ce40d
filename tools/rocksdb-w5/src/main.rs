//! RocksDB reproduction of benchmark w5 (keyed read-modify-write count, full +
//! incremental checkpoint, restore in a fresh process).
//!
//! Usage:
//!   rocksdb-w5 run [--keep] [--no-wal-variant]   full benchmark, prints one JSON line
//!   rocksdb-w5 restore-link <checkpoint_dir> <new_dir>   (child mode)
//!   rocksdb-w5 restore-direct <checkpoint_dir>           (child mode)

use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, IteratorMode, Options, WriteOptions, DB,
};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const ROCKSDB_CRATE_VERSION: &str = "0.25.0";
const LIBROCKSDB_SYS_VERSION: &str = "0.19.0+11.8.1";
const N_KEYS: u64 = 1_000_000;
const N_WORDS: u64 = 2_000_000;
const STRIDE: u64 = 7919;
const WORD_LEN: usize = 96;
const MIB: usize = 1 << 20;

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn word(i: u64) -> String {
    let mut s = format!("w{i:09}-");
    while s.len() < WORD_LEN {
        s.push('x');
    }
    s
}

fn bloom_bits() -> Option<f64> {
    std::env::var("ROCKSDB_W5_BLOOM").ok().and_then(|v| v.parse().ok())
}

fn options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(DBCompressionType::Lz4);
    // 64 MiB budget: 1/4 block cache, 1/4 memtable.
    opts.set_write_buffer_size(16 * MIB);
    let cache = Cache::new_lru_cache(16 * MIB);
    let mut bbo = BlockBasedOptions::default();
    bbo.set_block_cache(&cache);
    // Optional variant (not part of the specified config): bloom filter bits/key.
    if let Some(bits) = bloom_bits() {
        bbo.set_bloom_filter(bits, false);
    }
    opts.set_block_based_table_factory(&bbo);
    opts
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Read-modify-write count of 2M words. Key serialization (postcard of the
/// String) and value (de)serialization are inside the timed loop; the words
/// themselves are pre-generated.
fn count(db: &DB, words: &[String], wal: bool) -> R<f64> {
    let mut wo = WriteOptions::default();
    wo.disable_wal(!wal);
    let t = Instant::now();
    for n in 0..N_WORDS {
        let idx = ((n * STRIDE) % N_KEYS) as usize;
        let key = postcard::to_allocvec(&words[idx])?;
        let c: u64 = match db.get_pinned(&key)? {
            Some(v) => postcard::from_bytes(&v)?,
            None => 0,
        };
        let val = postcard::to_allocvec(&(c + 1))?;
        db.put_opt(&key, &val, &wo)?;
    }
    Ok(t.elapsed().as_nanos() as f64 / N_WORDS as f64)
}

/// (entries, sum of counts, key+value bytes)
fn scan(db: &DB) -> R<(u64, u64, u64)> {
    let (mut n, mut sum, mut bytes) = (0u64, 0u64, 0u64);
    for item in db.iterator(IteratorMode::Start) {
        let (k, v) = item?;
        let c: u64 = postcard::from_bytes(&v)?;
        n += 1;
        sum += c;
        bytes += (k.len() + v.len()) as u64;
    }
    Ok((n, sum, bytes))
}

struct DirStat {
    files: u64,
    bytes: u64,
    inodes: HashSet<u64>,
}

fn dir_stat(p: &Path) -> R<DirStat> {
    let mut s = DirStat { files: 0, bytes: 0, inodes: HashSet::new() };
    for e in std::fs::read_dir(p)? {
        let m = e?.metadata()?;
        if m.is_file() {
            s.files += 1;
            s.bytes += m.len();
            s.inodes.insert(m.ino());
        }
    }
    Ok(s)
}

/// bytes of files in `p` whose inode is not in `other`
fn new_bytes(p: &Path, other: &HashSet<u64>) -> R<u64> {
    let mut b = 0;
    for e in std::fs::read_dir(p)? {
        let m = e?.metadata()?;
        if m.is_file() && !other.contains(&m.ino()) {
            b += m.len();
        }
    }
    Ok(b)
}

fn du_sb(paths: &[&Path]) -> u64 {
    // `du -scb a b` counts a hard-linked inode once: the last line is the total.
    let out = Command::new("du").arg("-scb").args(paths).output();
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .last()
                .and_then(|l| l.split_whitespace().next().and_then(|x| x.parse().ok()))
        })
        .unwrap_or(0)
}

fn verify_json(db: &DB) -> R<Value> {
    let t = Instant::now();
    let (n, sum, bytes) = scan(db)?;
    let expect_sum = N_WORDS + N_KEYS / 100;
    Ok(json!({
        "verify_keys": n, "verify_sum": sum, "verify_state_bytes": bytes,
        "verify_ok": n == N_KEYS && sum == expect_sum,
        "verify_scan_ms": ms(t),
    }))
}

fn restore_link(src: &Path, dst: &Path) -> R<()> {
    let t0 = Instant::now();
    std::fs::create_dir_all(dst)?;
    let (mut linked, mut copied, mut copied_bytes) = (0u64, 0u64, 0u64);
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let name = e.file_name();
        let to = dst.join(&name);
        // SSTs are immutable: hard-link. The small mutable/metadata files
        // (CURRENT, MANIFEST-*, OPTIONS-*, *.log) are copied so that the
        // restored DB can never write into the checkpoint's inodes.
        if name.to_string_lossy().ends_with(".sst") {
            std::fs::hard_link(e.path(), &to)?;
            linked += 1;
        } else {
            copied_bytes += std::fs::copy(e.path(), &to)?;
            copied += 1;
        }
    }
    let link_ms = ms(t0);
    let t1 = Instant::now();
    let db = DB::open(&options(), dst)?;
    let open_ms = ms(t1);
    let restore_ms = ms(t0);
    let mut j = json!({
        "restore_ms": restore_ms, "link_ms": link_ms, "open_ms": open_ms,
        "linked_files": linked, "copied_files": copied, "copied_bytes": copied_bytes,
        "loadavg": loadavg(),
    });
    merge(&mut j, verify_json(&db)?);
    println!("{j}");
    Ok(())
}

fn restore_direct(src: &Path) -> R<()> {
    let t0 = Instant::now();
    let db = DB::open(&options(), src)?;
    let open_ms = ms(t0);
    let mut j = json!({ "restore_ms": open_ms, "loadavg": loadavg() });
    merge(&mut j, verify_json(&db)?);
    println!("{j}");
    Ok(())
}

fn merge(a: &mut Value, b: Value) {
    if let (Value::Object(a), Value::Object(b)) = (a, b) {
        a.extend(b);
    }
}

fn child(args: &[&str]) -> R<Value> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "child {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let line = String::from_utf8(out.stdout)?;
    Ok(serde_json::from_str(line.trim())?)
}

fn run(keep: bool, wal_variant: bool) -> R<()> {
    let load_start = loadavg();
    // Beside the tool (same file system as the checkpoints); ROCKSDB_W5_DIR moves it.
    let root = std::env::var_os("ROCKSDB_W5_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tmp"));
    let base: PathBuf = root.join(format!(
        "run-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs()
    ));
    std::fs::create_dir_all(&base)?;
    let db_path = base.join("db");
    let cp1 = base.join("cp1");
    let cp2 = base.join("cp2");
    let restored = base.join("restored");

    let words: Vec<String> = (0..N_KEYS).map(word).collect();
    let mut j = json!({
        "backend": "rocksdb", "rocksdb_crate": ROCKSDB_CRATE_VERSION,
        "librocksdb_sys": LIBROCKSDB_SYS_VERSION,
        "options": "lz4, block_cache=16MiB LRU, write_buffer_size=16MiB, WAL disabled on writes, other defaults",
        "n_keys": N_KEYS, "n_words": N_WORDS,
        "bloom_bits_per_key": bloom_bits(),
    });

    {
        let db = DB::open(&options(), &db_path)?;
        let count_ns = count(&db, &words, false)?;
        let load_after_count = loadavg();

        let (n, sum, state_bytes) = scan(&db)?;
        assert_eq!(n, N_KEYS);
        assert_eq!(sum, N_WORDS);

        let t = Instant::now();
        rocksdb::checkpoint::Checkpoint::new(&db)?.create_checkpoint(&cp1)?;
        let cp_ms = ms(t);
        let s1 = dir_stat(&cp1)?;
        let db_stat = dir_stat(&db_path)?;
        let cp1_du = du_sb(&[&cp1]);
        let cp1_unshared = new_bytes(&cp1, &db_stat.inodes)?;

        // Incremental: every 100th key +1.
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        let t = Instant::now();
        for idx in (0..N_KEYS as usize).step_by(100) {
            let key = postcard::to_allocvec(&words[idx])?;
            let c: u64 = postcard::from_bytes(&db.get_pinned(&key)?.ok_or("missing")?)?;
            db.put_opt(&key, postcard::to_allocvec(&(c + 1))?, &wo)?;
        }
        let update_ms = ms(t);
        let t = Instant::now();
        rocksdb::checkpoint::Checkpoint::new(&db)?.create_checkpoint(&cp2)?;
        let cp2_ms = ms(t);
        let s2 = dir_stat(&cp2)?;
        let cp2_du = du_sb(&[&cp2]);
        let cp2_new_vs_cp1 = new_bytes(&cp2, &s1.inodes)?;
        let cp1_cp2_du = du_sb(&[&cp1, &cp2]);

        merge(&mut j, json!({
            "count_ns_per_word": count_ns,
            "state_bytes": state_bytes,
            "checkpoint_ms": cp_ms,
            "checkpoint_gb_per_s": state_bytes as f64 / 1e9 / (cp_ms / 1e3),
            "checkpoint_files": s1.files,
            "checkpoint_file_bytes": s1.bytes,
            "checkpoint_du_bytes": cp1_du,
            "checkpoint_bytes_not_shared_with_db": cp1_unshared,
            "db_dir_bytes_at_cp1": db_stat.bytes,
            "incremental_update_ms": update_ms,
            "incremental_checkpoint_ms": cp2_ms,
            "incremental_checkpoint_files": s2.files,
            "incremental_checkpoint_du_bytes": cp2_du,
            "incremental_checkpoint_new_bytes_vs_cp1": cp2_new_vs_cp1,
            "cp1_plus_cp2_du_bytes": cp1_cp2_du,
            "loadavg_after_count": load_after_count,
        }));
        drop(db);
    }

    // Fresh processes. Link-restore first (dir2 untouched), then direct open
    // of dir2 (which mutates dir2: new MANIFEST/OPTIONS, etc.).
    let rl = child(&["restore-link", cp2.to_str().unwrap(), restored.to_str().unwrap()])?;
    let rd = child(&["restore-direct", cp2.to_str().unwrap()])?;
    merge(&mut j, json!({
        "restore_ms": rl["restore_ms"], "restore_link_ms": rl["link_ms"],
        "restore_open_ms": rl["open_ms"], "restore_verify_ok": rl["verify_ok"],
        "restore_verify_keys": rl["verify_keys"], "restore_verify_sum": rl["verify_sum"],
        "restore_direct_ms": rd["restore_ms"], "restore_direct_verify_ok": rd["verify_ok"],
        "loadavg_restore": rl["loadavg"],
    }));

    if wal_variant {
        let db = DB::open(&options(), base.join("db_wal"))?;
        let ns = count(&db, &words, true)?;
        merge(&mut j, json!({ "count_ns_per_word_with_wal": ns }));
    }

    merge(&mut j, json!({ "loadavg_start": load_start, "loadavg_end": loadavg() }));
    println!("{j}");
    if !keep {
        std::fs::remove_dir_all(&base)?;
    }
    Ok(())
}

fn main() -> R<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("run") => run(
            args.iter().any(|a| a == "--keep"),
            !args.iter().any(|a| a == "--no-wal-variant"),
        ),
        Some("restore-link") => restore_link(Path::new(&args[2]), Path::new(&args[3])),
        Some("restore-direct") => restore_direct(Path::new(&args[2])),
        _ => {
            eprintln!("usage: rocksdb-w5 run [--keep] [--no-wal-variant] | restore-link SRC DST | restore-direct SRC");
            std::process::exit(2)
        }
    }
}
