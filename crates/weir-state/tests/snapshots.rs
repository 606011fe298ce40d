//! Snapshot round trips across both backends, and state far larger than the memory budget.

use std::collections::BTreeMap;
use std::path::Path;
use weir_state::{
    AnyStore, DiskStore, DiskStoreOptions, KeyedStore, MemoryStore, SnapshotKind, StateBackend,
    StoreFactory,
};

type Key = String;
type Val = Vec<u8>;

fn contents<S: KeyedStore<Key, Val>>(s: &mut S) -> BTreeMap<Key, Val> {
    let mut all = BTreeMap::new();
    s.for_each(&mut |k, v| {
        all.insert(k.clone(), v.clone());
    });
    assert_eq!(all.len(), s.len(), "len() agrees with the entries visited");
    all
}

fn disk(dir: &Path, name: &str, budget: usize) -> DiskStore<Key, Val> {
    DiskStore::open(
        dir.join(name),
        DiskStoreOptions {
            memory_budget: budget,
            worker_threads: 1,
        },
    )
    .unwrap()
}

fn key(i: u32) -> Key {
    format!("key-{i:08}")
}

/// Fills `n` keys, takes a full snapshot, changes 1% of the keys, removes some, adds some,
/// takes an incremental snapshot, changes a few more and takes a second one. Returns the chain
/// and the expected contents after it.
fn history<S: KeyedStore<Key, Val>>(
    s: &mut S,
    n: u32,
    size: usize,
) -> (Vec<Vec<u8>>, BTreeMap<Key, Val>) {
    for i in 0..n {
        s.insert(key(i), vec![(i % 251) as u8; size]);
    }
    let mut full = Vec::new();
    let stats = s.snapshot(SnapshotKind::Full, &mut full).unwrap();
    assert_eq!(stats.entries, u64::from(n));

    for i in (0..n).step_by(100) {
        s.get_mut(&key(i)).unwrap()[0] = 0xEE;
    }
    for i in (50..n).step_by(500) {
        assert!(s.remove(&key(i)).is_some());
    }
    s.insert(key(n + 1), b"new".to_vec());
    let mut inc1 = Vec::new();
    let stats = s.snapshot(SnapshotKind::Incremental, &mut inc1).unwrap();
    let changed = u64::from(n).div_ceil(100) + 1;
    assert_eq!(stats.entries, changed, "only the changed keys");
    assert_eq!(stats.removals, u64::from((n - 50).div_ceil(500)));
    assert!(
        inc1.len() * 20 < full.len(),
        "1% of changes is a small fraction of the full snapshot ({} vs {})",
        inc1.len(),
        full.len()
    );

    // Remove a key and bring it back; change a key removed before; drain nothing.
    s.remove(&key(1));
    s.insert(key(1), b"back".to_vec());
    s.insert(key(50), b"revived".to_vec());
    *s.get_or_insert_with(&key(n + 2), Vec::new) = b"x".to_vec();
    let mut inc2 = Vec::new();
    s.snapshot(SnapshotKind::Incremental, &mut inc2).unwrap();

    let expected = contents(s);
    (vec![full, inc1, inc2], expected)
}

#[test]
fn memory_round_trip_full_and_incremental() {
    let mut s = MemoryStore::new();
    let (chain, expected) = history(&mut s, 5_000, 40);
    let mut fresh = MemoryStore::new();
    fresh.restore(&chain).unwrap();
    assert_eq!(contents(&mut fresh), expected);
    // The base alone is the state before the changes.
    let mut base_only = MemoryStore::<Key, Val>::new();
    base_only.restore(&chain[..1]).unwrap();
    assert_eq!(base_only.len(), 5_000);
    assert_eq!(base_only.get(&key(0)).unwrap()[0], 0);
}

#[test]
fn disk_round_trip_full_and_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = disk(dir.path(), "a", 256 * 1024);
    let (chain, expected) = history(&mut s, 5_000, 40);
    let mut fresh = disk(dir.path(), "b", 256 * 1024);
    fresh.restore(&chain).unwrap();
    assert_eq!(contents(&mut fresh), expected);
    assert_eq!(fresh.len(), expected.len());
    // A restored store is a base for the next incremental snapshot.
    fresh.insert(key(3), b"after restore".to_vec());
    let mut inc = Vec::new();
    let stats = fresh.snapshot(SnapshotKind::Incremental, &mut inc).unwrap();
    assert_eq!((stats.entries, stats.removals), (1, 0));
}

#[test]
fn snapshots_move_between_backends() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = MemoryStore::new();
    let (chain, expected) = history(&mut m, 2_000, 16);
    let mut d = disk(dir.path(), "from-memory", 1 << 20);
    d.restore(&chain).unwrap();
    assert_eq!(contents(&mut d), expected);

    let mut d2 = disk(dir.path(), "source", 1 << 20);
    let (chain, expected) = history(&mut d2, 2_000, 16);
    let mut m2 = MemoryStore::new();
    m2.restore(&chain).unwrap();
    assert_eq!(contents(&mut m2), expected);
}

#[test]
fn drained_store_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = disk(dir.path(), "d", 1 << 20);
    for i in 0..100 {
        d.insert(key(i), vec![1]);
    }
    let mut full = Vec::new();
    d.snapshot(SnapshotKind::Full, &mut full).unwrap();
    assert_eq!(d.drain_all().len(), 100);
    d.insert(key(7), vec![7]);
    let mut inc = Vec::new();
    d.snapshot(SnapshotKind::Incremental, &mut inc).unwrap();
    let mut m = MemoryStore::new();
    m.restore(&[full, inc]).unwrap();
    assert_eq!(contents(&mut m), BTreeMap::from([(key(7), vec![7])]));
}

#[test]
fn a_truncated_snapshot_is_refused() {
    let mut s = MemoryStore::new();
    let (chain, _) = history(&mut s, 500, 8);
    let cut = &chain[1][..chain[1].len() - 3];
    let mut fresh = MemoryStore::<Key, Val>::new();
    let err = fresh.restore(&[&chain[0][..], cut]).unwrap_err();
    assert!(err.to_string().contains("snapshot 2 of the chain"), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

/// 50k keys of 1 KiB (about 50 MiB of state) through a store with a 1 MiB budget.
#[test]
fn state_far_larger_than_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let factory = StoreFactory::new(StateBackend::Disk {
        path: dir.path().into(),
        memory_budget: 1 << 20,
    });
    let mut s: AnyStore<u32, Vec<u8>> = factory.create("big", 0).unwrap();
    let n = 50_000u32;
    for i in 0..n {
        let v = s.get_or_insert_with(&i, || vec![0u8; 1024]);
        v[..4].copy_from_slice(&i.to_le_bytes());
    }
    let AnyStore::Disk(d) = &s else {
        panic!("the factory must build a disk store")
    };
    assert!(
        d.cached() * 1024 <= 1 << 20,
        "{} cached entries of 1 KiB exceed the budget",
        d.cached()
    );
    // Update every tenth key, then read everything back.
    for i in (0..n).step_by(10) {
        s.get_mut(&i).unwrap()[1023] = 1;
    }
    for i in 0..n {
        let v = s.get(&i).unwrap();
        assert_eq!(v[..4], i.to_le_bytes(), "key {i}");
        assert_eq!(v[1023], u8::from(i % 10 == 0), "key {i}");
    }
    assert_eq!(s.len(), n as usize);

    let mut full = Vec::new();
    let stats = s.snapshot(SnapshotKind::Full, &mut full).unwrap();
    assert_eq!(stats.entries, u64::from(n));
    assert!(stats.bytes > u64::from(n) * 1024);
    let mut restored: AnyStore<u32, Vec<u8>> = factory.create("big", 1).unwrap();
    restored.restore(&[full]).unwrap();
    assert_eq!(restored.len(), n as usize);
    for i in (0..n).step_by(997) {
        assert_eq!(restored.get(&i).unwrap()[..4], i.to_le_bytes());
    }
}

/// Restoring from streams (as from checkpoint files) reads them as it applies them.
#[test]
fn restore_from_readers() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = MemoryStore::new();
    let (chain, expected) = history(&mut m, 3_000, 24);
    let files: Vec<_> = chain
        .iter()
        .enumerate()
        .map(|(i, blob)| {
            let path = dir.path().join(format!("blob-{i}"));
            std::fs::write(&path, blob).unwrap();
            path
        })
        .collect();
    let open = || {
        files
            .iter()
            .map(|p| std::io::BufReader::new(std::fs::File::open(p).unwrap()))
    };
    let mut d = disk(dir.path(), "d", 256 * 1024);
    d.restore_from(open()).unwrap();
    assert_eq!(contents(&mut d), expected);
    let mut m2 = MemoryStore::new();
    m2.restore_from(open()).unwrap();
    assert_eq!(contents(&mut m2), expected);
    // The first stream must be a full snapshot.
    let err = m2.restore_from(open().skip(1)).unwrap_err();
    assert!(err.to_string().contains("must be a full one"), "{err}");
}
