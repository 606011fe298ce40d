//! Checkpoint storage end to end: round trips, concurrent writers, incremental chains with
//! retention, and partial or corrupt checkpoints skipped with a message naming them.

use serde_json::json;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use weir_checkpoint::{CheckpointError, CheckpointStore, SkipReason};
use weir_state::{KeyedStore, MemoryStore, SnapshotKind};

fn store(dir: &Path, keep: usize) -> CheckpointStore {
    CheckpointStore::open(dir, keep)
        .unwrap()
        .with_job("test job")
}

fn simple(store: &CheckpointStore, id: u64, payload: &[u8]) {
    let p = store.begin(id).unwrap();
    p.write_blob("op", 0, "state", payload).unwrap();
    p.put_meta("source", 0, "offset", json!(id * 100)).unwrap();
    p.complete().unwrap();
}

#[test]
fn write_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 3);
    assert_eq!(s.next_id().unwrap(), 1);
    let p = s.begin(7).unwrap();
    p.write_blob("count", 0, "counts", b"zero").unwrap();
    p.write_blob("count", 1, "counts", b"one").unwrap();
    p.write_blob("window", 0, "panes", &[]).unwrap();
    p.put_meta("source", 0, "offset", json!(123)).unwrap();
    p.put_meta("sink", 0, "pending", json!({"file": "out.jsonl.pending-7"}))
        .unwrap();
    let info = p.complete().unwrap();
    assert_eq!(info.id, 7);
    assert_eq!(info.job, "test job");
    assert_eq!(info.bytes_written, 7);
    assert_eq!(info.total_bytes, 7);
    assert!(!info.incremental);
    assert_eq!(
        info.operators,
        vec!["count/0", "count/1", "sink/0", "source/0", "window/0"]
    );
    assert_eq!(info.meta["source/0"]["offset"], json!(123));
    assert!(info.started_at.ends_with('Z'), "{}", info.started_at);
    assert!(dir.path().join("chk-000007/_metadata").is_file());
    assert!(dir.path().join("chk-000007/count-0-counts").is_file());
    assert!(!dir.path().join("chk-000007/_metadata.tmp").exists());

    let (latest, skipped) = s.latest().unwrap();
    let c = latest.unwrap();
    assert!(skipped.is_empty());
    assert_eq!(
        c.blobs("count", 1, "counts").unwrap(),
        vec![b"one".to_vec()]
    );
    assert_eq!(
        c.blobs("window", 0, "panes").unwrap(),
        vec![Vec::<u8>::new()]
    );
    assert!(c.blobs("count", 2, "counts").unwrap().is_empty());
    assert_eq!(
        c.meta("sink", 0, "pending"),
        Some(&json!({"file": "out.jsonl.pending-7"}))
    );
    assert_eq!(c.states("count", 0), vec!["counts"]);
    assert_eq!(c.info(), info);
    assert_eq!(s.next_id().unwrap(), 8);
    assert_eq!(s.get(7).unwrap().id(), 7);
    assert!(matches!(s.get(8), Err(CheckpointError::NotFound(8))));

    let err = s.begin(7).err().unwrap();
    assert!(matches!(err, CheckpointError::AlreadyComplete(7)), "{err}");
}

#[test]
fn mistakes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 3);
    simple(&s, 1, b"a");
    let base = s.latest().unwrap().0.unwrap().chain("op", 0, "state")[0].clone();
    let p = s.begin(2).unwrap();
    p.write_blob("op", 0, "state", b"x").unwrap();
    let err = p.write_blob("op", 0, "state", b"y").unwrap_err();
    assert!(
        err.to_string()
            .contains("already has a blob for state 'state' of op/0"),
        "{err}"
    );
    let mut own = base.clone();
    own.checkpoint = 2;
    assert!(matches!(
        p.reuse(&own),
        Err(CheckpointError::BadReuse { .. })
    ));
    assert!(
        s.begin(2).is_err(),
        "the same id cannot be written twice at once"
    );
    drop(p);
    assert!(
        s.begin(2).is_ok(),
        "an abandoned checkpoint can be started again"
    );
}

#[test]
fn concurrent_writers_share_one_pending_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 2);
    let pending = Arc::new(s.begin(1).unwrap());
    let threads: Vec<_> = (0..8usize)
        .map(|i| {
            let p = pending.clone();
            std::thread::spawn(move || {
                for name in ["a", "b", "c"] {
                    let payload = vec![i as u8; 10_000 + i];
                    let mut w = p.blob_writer("op", i, name).unwrap();
                    for chunk in payload.chunks(999) {
                        std::io::Write::write_all(&mut w, chunk).unwrap();
                    }
                    w.finish().unwrap();
                }
                p.put_meta("op", i, "done", json!(true)).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let pending = Arc::into_inner(pending).unwrap();
    let info = pending.complete().unwrap();
    assert_eq!(info.operators.len(), 8);
    let c = s.latest().unwrap().0.unwrap();
    for i in 0..8usize {
        for name in ["a", "b", "c"] {
            assert_eq!(
                c.blobs("op", i, name).unwrap(),
                vec![vec![i as u8; 10_000 + i]]
            );
        }
        assert_eq!(c.meta("op", i, "done"), Some(&json!(true)));
    }
}

#[test]
fn incremental_chains_survive_retention() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 2);
    // 1: base. 2: base + delta. 3: base + delta + delta. 4: a new base. 5: another new base.
    let p = s.begin(1).unwrap();
    let base = p.write_blob("op", 0, "state", b"base").unwrap();
    p.complete().unwrap();
    let p = s.begin(2).unwrap();
    p.reuse(&base).unwrap();
    let d2 = p.write_blob("op", 0, "state", b"delta2").unwrap();
    let info = p.complete().unwrap();
    assert!(info.incremental);
    assert_eq!(info.bytes_written, 6);
    assert_eq!(info.total_bytes, 10);
    let p = s.begin(3).unwrap();
    for b in s.latest().unwrap().0.unwrap().chain("op", 0, "state") {
        p.reuse(b).unwrap();
    }
    p.write_blob("op", 0, "state", b"delta3").unwrap();
    p.complete().unwrap();
    // keep=2: 1 has expired, but 2 and 3 still reference its base, so only its metadata goes.
    assert!(dir.path().join("chk-000001/_retired").exists());
    assert!(!dir.path().join("chk-000001/_metadata").exists());
    assert!(dir.path().join("chk-000001").join(&base.file).exists());
    assert!(!dir.path().join("chk-000002/_retired").exists());

    simple(&s, 4, b"base4");
    // Kept: 3 and 4. 3 references blobs of 1 and 2, whose directories stay, retired.
    let listed: Vec<u64> = s
        .list()
        .unwrap()
        .checkpoints
        .iter()
        .map(|c| c.id())
        .collect();
    assert_eq!(listed, vec![3, 4]);
    assert!(
        s.list().unwrap().skipped.is_empty(),
        "retired directories are not reported"
    );
    assert!(dir.path().join("chk-000002/_retired").exists());
    assert!(dir.path().join("chk-000002").join(&d2.file).exists());
    let three = s.get(3).unwrap();
    assert_eq!(
        three.blobs("op", 0, "state").unwrap(),
        vec![b"base".to_vec(), b"delta2".to_vec(), b"delta3".to_vec()]
    );
    assert!(matches!(s.get(1), Err(CheckpointError::NotFound(1))));
    let err = s.begin(1).err().unwrap();
    assert!(err.to_string().contains("next_id"), "{err}");
    assert!(dir.path().join("chk-000001").join(&base.file).exists());

    simple(&s, 5, b"base5");
    // Kept: 4 and 5, which reference nothing older: 1, 2 and 3 are gone.
    for old in ["chk-000001", "chk-000002", "chk-000003"] {
        assert!(!dir.path().join(old).exists(), "{old} should be removed");
    }
    let ids: Vec<u64> = s
        .list()
        .unwrap()
        .checkpoints
        .iter()
        .map(|c| c.id())
        .collect();
    assert_eq!(ids, vec![4, 5]);
}

#[test]
fn truncated_metadata_is_skipped_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 5);
    simple(&s, 1, b"one");
    simple(&s, 2, b"two");
    let meta = dir.path().join("chk-000002/_metadata");
    let bytes = fs::read(&meta).unwrap();
    fs::write(&meta, &bytes[..bytes.len() / 2]).unwrap();

    let (latest, skipped) = s.latest().unwrap();
    assert_eq!(latest.unwrap().id(), 1);
    assert_eq!(skipped.len(), 1);
    let message = skipped[0].to_string();
    assert!(message.contains("chk-000002"), "{message}");
    assert!(message.contains("truncated"), "{message}");
    assert!(matches!(skipped[0].reason, SkipReason::BadMetadata(_)));
}

#[test]
fn corrupt_or_missing_blobs_are_skipped_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 5);
    simple(&s, 1, b"one");
    simple(&s, 2, b"two two");
    simple(&s, 3, b"three");
    // 3: a blob disappears; 2: a byte flips (same size).
    fs::remove_file(dir.path().join("chk-000003/op-0-state")).unwrap();
    let blob = dir.path().join("chk-000002/op-0-state");
    let mut bytes = fs::read(&blob).unwrap();
    bytes[3] ^= 0x20;
    fs::write(&blob, bytes).unwrap();

    let (latest, skipped) = s.latest().unwrap();
    assert_eq!(latest.unwrap().id(), 1);
    let messages: Vec<String> = skipped.iter().map(ToString::to_string).collect();
    assert_eq!(skipped.len(), 2, "{messages:?}");
    assert!(
        messages[0].contains("chk-000003") && messages[0].contains("missing"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("chk-000002") && messages[1].contains("corrupt"),
        "{messages:?}"
    );
    // list() checks sizes only: it sees the missing blob, not the flipped byte.
    let listing = s.list().unwrap();
    assert_eq!(listing.skipped.len(), 1);
    let err = s.get(2).unwrap_err().to_string();
    assert!(err.contains("chk-000002") && err.contains("crc32"), "{err}");
    // A blob cut short is caught by its size.
    fs::write(dir.path().join("chk-000001/op-0-state"), b"on").unwrap();
    let (latest, skipped) = s.latest().unwrap();
    assert!(latest.is_none());
    assert!(
        skipped[2].to_string().contains("has 2 bytes, expected 3"),
        "{}",
        skipped[2]
    );
}

#[test]
fn a_corrupt_base_invalidates_the_increments_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 5);
    simple(&s, 1, b"old");
    let p = s.begin(2).unwrap();
    let base = p.write_blob("op", 0, "state", b"base").unwrap();
    p.complete().unwrap();
    let p = s.begin(3).unwrap();
    p.reuse(&base).unwrap();
    p.write_blob("op", 0, "state", b"delta").unwrap();
    p.complete().unwrap();
    fs::write(dir.path().join("chk-000002/op-0-state"), b"BASE").unwrap();
    let (latest, skipped) = s.latest().unwrap();
    assert_eq!(latest.unwrap().id(), 1);
    assert_eq!(skipped.iter().map(|k| k.id).collect::<Vec<_>>(), vec![3, 2]);
    assert!(
        skipped[0]
            .to_string()
            .contains("chk-000002/op-0-state is corrupt"),
        "{}",
        skipped[0]
    );
}

#[test]
fn a_crash_while_writing_leaves_the_previous_checkpoint_latest() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = store(dir.path(), 3);
        simple(&s, 1, b"good");
        let p = s.begin(2).unwrap();
        p.write_blob("op", 0, "state", b"half").unwrap();
        p.put_meta("source", 0, "offset", json!(999)).unwrap();
        // The process dies here: the blobs are written, the metadata never is.
        std::mem::forget(p);
    }
    // A new process opens the directory.
    let s = store(dir.path(), 3);
    let (latest, skipped) = s.latest().unwrap();
    let latest = latest.unwrap();
    assert_eq!(latest.id(), 1);
    assert_eq!(latest.meta("source", 0, "offset"), Some(&json!(100)));
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].reason, SkipReason::NoMetadata);
    assert!(
        skipped[0].to_string().contains("chk-000002"),
        "{}",
        skipped[0]
    );
    assert_eq!(s.next_id().unwrap(), 3);
    // The next completed checkpoint makes the partial one garbage.
    simple(&s, 3, b"next");
    assert!(!dir.path().join("chk-000002").exists());
    assert!(dir.path().join("chk-000001").exists());
}

#[test]
fn keyed_state_through_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 2);
    let mut state = MemoryStore::<String, u64>::new();
    for i in 0..1000u64 {
        state.insert(format!("k{i}"), i);
    }
    let p = s.begin(1).unwrap();
    let mut w = p.blob_writer("count", 0, "counts").unwrap();
    state.snapshot(SnapshotKind::Full, &mut w).unwrap();
    w.finish().unwrap();
    p.complete().unwrap();

    for i in 0..10u64 {
        *state.get_mut(&format!("k{i}")).unwrap() += 1000;
    }
    state.remove(&"k999".to_string());
    let p = s.begin(2).unwrap();
    for b in s.latest().unwrap().0.unwrap().chain("count", 0, "counts") {
        p.reuse(b).unwrap();
    }
    let mut w = p.blob_writer("count", 0, "counts").unwrap();
    state.snapshot(SnapshotKind::Incremental, &mut w).unwrap();
    w.finish().unwrap();
    p.complete().unwrap();

    let c = s.latest().unwrap().0.unwrap();
    let mut restored = MemoryStore::<String, u64>::new();
    restored
        .restore(&c.blobs("count", 0, "counts").unwrap())
        .unwrap();
    assert_eq!(restored.len(), 999);
    assert_eq!(restored.get(&"k3".to_string()), Some(&1003));
    assert_eq!(restored.get(&"k500".to_string()), Some(&500));
    assert_eq!(restored.get(&"k999".to_string()), None);
}

#[test]
fn write_state_alternates_full_and_incremental_by_chain_length() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 3);
    let mut state = MemoryStore::<u32, u32>::new();
    let mut kinds = Vec::new();
    let mut previous: Option<weir_checkpoint::Checkpoint> = None;
    for id in 1..=5u64 {
        state.insert(id as u32, id as u32);
        let p = s.begin(id).unwrap();
        p.write_state("op", 0, "s", previous.as_ref(), 3, |incremental, w| {
            kinds.push(incremental);
            let kind = if incremental {
                SnapshotKind::Incremental
            } else {
                SnapshotKind::Full
            };
            state.snapshot(kind, w).map(|_| ())
        })
        .unwrap();
        p.complete().unwrap();
        previous = s.latest().unwrap().0;
        let c = previous.as_ref().unwrap();
        let mut restored = MemoryStore::<u32, u32>::new();
        restored.restore(&c.blobs("op", 0, "s").unwrap()).unwrap();
        assert_eq!(restored.len(), id as usize, "checkpoint {id}");
    }
    // Chains: [1], [1,2], [1,2,3], then full again at length 3: [4], [4,5].
    assert_eq!(kinds, vec![false, true, true, false, true]);
    assert_eq!(previous.unwrap().chain("op", 0, "s").len(), 2);

    let p = s.begin(6).unwrap();
    let err = p
        .write_state("op", 0, "s", None, 3, |_, _| Err("disk full"))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("state 's' of op/0 failed: disk full"),
        "{err}"
    );
}

#[test]
fn blob_readers_stream_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), 2);
    let mut state = MemoryStore::<u64, String>::new();
    for i in 0..5_000u64 {
        state.insert(i, format!("value {i}"));
    }
    let p = s.begin(1).unwrap();
    p.write_state("op", 0, "s", None, 4, |_, w| {
        state.snapshot(SnapshotKind::Full, w).map(|_| ())
    })
    .unwrap();
    p.complete().unwrap();
    let c = s.latest().unwrap().0.unwrap();
    let mut restored = MemoryStore::<u64, String>::new();
    restored
        .restore_from(c.blob_readers("op", 0, "s").unwrap())
        .unwrap();
    assert_eq!(restored.len(), 5_000);
    assert_eq!(restored.get(&4_999).map(String::as_str), Some("value 4999"));

    // The same byte flipped after latest() looked: the stream fails at its end, naming it.
    let file = dir.path().join("chk-000001/op-0-s");
    let mut bytes = fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    fs::write(&file, bytes).unwrap();
    let mut again = MemoryStore::<u64, String>::new();
    let err = again
        .restore_from(c.blob_readers("op", 0, "s").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("chk-000001/op-0-s") && (err.contains("corrupt") || err.contains("decode")),
        "{err}"
    );
}

/// An on-disk store checkpointed as files: its tables are linked into the checkpoint, the
/// tree's own checksums recorded; a damaged file makes the checkpoint skipped, naming the file.
#[test]
fn disk_state_kept_as_files_restores_and_damage_is_detected() {
    use weir_state::{DiskStore, DiskStoreOptions};
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir.path().join("checkpoints"), 3);
    let options = DiskStoreOptions {
        memory_budget: 256 * 1024,
        worker_threads: 1,
    };
    let mut state =
        DiskStore::<String, u64>::open(dir.path().join("state"), options.clone()).unwrap();
    let take = |state: &mut DiskStore<String, u64>, id: u64| {
        let p = s.begin(id).unwrap();
        let files = p.files_dir("count", 0, "counts").unwrap();
        let placed = state.checkpoint_files(&files).unwrap();
        assert!(
            !placed.checksums.is_empty(),
            "the tree's tables come with checksums"
        );
        let info = p
            .put_files("count", 0, "counts", &placed.checksums, placed.new_bytes)
            .unwrap();
        assert_eq!(info.files, placed.files);
        assert!(
            info.read_bytes * 2 < info.bytes,
            "tables are not read to checksum them: {info:?}"
        );
        p.complete().unwrap();
    };
    for i in 0..20_000u64 {
        state.insert(format!("k{i}"), i);
    }
    take(&mut state, 1);
    for i in 0..100u64 {
        *state.get_mut(&format!("k{i}")).unwrap() += 1;
    }
    // A new key: the store's own file changes too (else the checkpoints share it).
    state.insert("new".to_string(), 1);
    take(&mut state, 2);

    let latest = s.latest().unwrap().0.unwrap();
    assert_eq!(latest.id(), 2);
    assert_eq!(latest.states("count", 0), vec!["counts"]);
    assert!(latest.chain("count", 0, "counts").is_empty(), "no blobs");
    let files = latest.files_dir("count", 0, "counts").unwrap();
    let mut restored =
        DiskStore::<String, u64>::open(dir.path().join("restored"), options).unwrap();
    restored.restore_files(&files).unwrap();
    assert_eq!(restored.len(), 20_001);
    assert_eq!(restored.get(&"k5".to_string()), Some(&6));
    assert_eq!(restored.get(&"k500".to_string()), Some(&500));
    drop(restored);

    // The store's own file is written per checkpoint: flip a byte in the latest one.
    let store_file = files.join("WEIR_STORE");
    let mut bytes = fs::read(&store_file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    fs::write(&store_file, bytes).unwrap();
    let (latest, skipped) = s.latest().unwrap();
    assert_eq!(latest.unwrap().id(), 1, "the damaged checkpoint is skipped");
    assert_eq!(skipped.len(), 1);
    let message = skipped[0].to_string();
    assert!(
        message.contains("WEIR_STORE") && message.contains("corrupt"),
        "{message}"
    );

    // A table of the first checkpoint cut short: it is skipped too, naming the table.
    let first = s.get(1).unwrap().files_dir("count", 0, "counts").unwrap();
    let table = fs::read_dir(first.join("keyspaces/1/tables"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let len = fs::metadata(&table).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&table)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (latest, skipped) = s.latest().unwrap();
    assert!(latest.is_none());
    let message = skipped.last().unwrap().to_string();
    assert!(
        message.contains("keyspaces/1/tables/") && message.contains("expected"),
        "{message}"
    );
}

#[test]
fn abandoned_checkpoints_are_never_resumed_from() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path(), 5);
    for id in 1..=3 {
        simple(&store, id, b"first run");
    }
    // `--ignore-state`: everything before is abandoned, even if the new run dies at once.
    assert_eq!(store.abandon_later_than(None).unwrap(), vec![1, 2, 3]);
    drop(store.begin(store.next_id().unwrap()).unwrap()); // a run killed mid-checkpoint
    let (latest, _) = store.latest().unwrap();
    assert!(latest.is_none(), "resumed from an abandoned checkpoint");
    let listing = store.list().unwrap();
    assert!(listing.checkpoints.is_empty());
    assert_eq!(listing.abandoned, vec![1, 2, 3]);
    // Still there for an explicit choice...
    assert_eq!(store.get(2).unwrap().id(), 2);

    // `--from-checkpoint 2`: 2 is usable again, 3 stays abandoned.
    assert_eq!(store.abandon_later_than(Some(2)).unwrap(), vec![3]);
    assert_eq!(store.latest().unwrap().0.unwrap().id(), 2);

    // The new run's first checkpoint: the latest, and retention removes the abandoned 3.
    let next = store.next_id().unwrap();
    simple(&store, next, b"second run");
    assert_eq!(store.latest().unwrap().0.unwrap().id(), next);
    assert!(!dir.path().join("chk-000003").exists());
    assert_eq!(
        store
            .list()
            .unwrap()
            .checkpoints
            .iter()
            .map(|c| c.id())
            .collect::<Vec<_>>(),
        vec![1, 2, next]
    );

    // `restore` of an abandoned checkpoint makes it the latest again.
    store.abandon_later_than(None).unwrap();
    assert!(store.latest().unwrap().0.is_none());
    store.rollback_to(next).unwrap();
    assert_eq!(store.latest().unwrap().0.unwrap().id(), next);
}

/// The runtime sees a store's failures as a typed `SnapshotError`: what went wrong can be
/// matched on, and a store's own error stays available as the source.
#[test]
fn the_runtime_boundary_reports_typed_errors() {
    use weir_core::{SnapshotError, SnapshotStore, StatePart};
    let dir = tempfile::tempdir().unwrap();
    let dirs = weir_checkpoint::DirCheckpoints::new(store(dir.path(), 3), None);
    let writer = dirs.begin(1).unwrap();
    let no_base = writer
        .put("op", 0, "state", StatePart::Delta, b"x".to_vec())
        .unwrap_err();
    assert!(
        matches!(&no_base, SnapshotError::NoBase { operator, instance: 0, name } if operator == "op" && name == "state"),
        "{no_base}"
    );
    writer
        .put("op", 0, "state", StatePart::Full, b"x".to_vec())
        .unwrap();
    writer.complete(false, std::time::Duration::ZERO).unwrap();
    let again = writer
        .put("op", 0, "state", StatePart::Full, b"y".to_vec())
        .unwrap_err();
    assert!(
        matches!(again, SnapshotError::AlreadyComplete(1)),
        "{again}"
    );
    // The same id again: the store's own error, wrapped.
    let err = dirs.begin(1).err().unwrap();
    assert!(matches!(err, SnapshotError::Store(_)), "{err}");
}
