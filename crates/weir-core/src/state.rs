//! Saving and restoring keyed state in checkpoints.
//!
//! The blob is the concatenation of postcard-encoded `(key, value)` pairs, so saving streams
//! straight from the store without copying it.

use crate::checkpoint::StatePart;
use crate::error::{ErrorKind, OperatorError};
use crate::operator::OperatorContext;
use weir_state::{KeyedStore, SnapshotKind, StateKey, StateValue};

fn corrupt(name: &str, e: impl std::fmt::Display) -> OperatorError {
    OperatorError::new(
        ErrorKind::Io,
        format!("restoring state '{name}' from the checkpoint: {e}"),
    )
}

/// Deltas after a full snapshot before the next full one: bounds restore time.
const MAX_DELTAS: usize = 8;

/// Stores `store` under `name` in the checkpoint being taken. An on-disk store is kept as
/// files (its tables linked into the checkpoint: the cost is what changed since the previous
/// checkpoint, whatever the state's size). Other stores save only what changed since the
/// previous checkpoint when they can tell (incremental), a full snapshot otherwise (the first
/// checkpoint of a run, and after every few deltas).
pub fn save_keyed<K: StateKey, V: StateValue, S: KeyedStore<K, V>>(
    store: &mut S,
    ctx: &mut OperatorContext,
    name: &str,
) -> Result<(), OperatorError> {
    if !ctx.checkpointing() {
        return Ok(());
    }
    if store.checkpoints_as_files()
        && let Some(dir) = ctx.state_files_dir(name)?
    {
        let placed = store.checkpoint_files(&dir).map_err(|e| {
            OperatorError::new(ErrorKind::Io, format!("checkpointing state '{name}': {e}"))
        })?;
        ctx.save_state_files(name, &placed.checksums, placed.new_bytes)?;
        // A later snapshot blob (none is expected) would have to be a full one.
        ctx.chains.insert(name.to_string(), 0);
        report_size(ctx, name, store.size_on_disk().unwrap_or(0), 0.0);
        return Ok(());
    }
    let chain = ctx.chains.get(name).copied().unwrap_or(0);
    let (kind, part) = if chain == 0 || chain > MAX_DELTAS {
        (SnapshotKind::Full, StatePart::Full)
    } else {
        (SnapshotKind::Incremental, StatePart::Delta)
    };
    let mut bytes = Vec::new();
    let stats = store.snapshot(kind, &mut bytes).map_err(|e| {
        OperatorError::new(ErrorKind::Io, format!("snapshotting state '{name}': {e}"))
    })?;
    // The state's size: what the backend reports, or else the full snapshot's size (between
    // full snapshots: the entries held times the average size of the entries last written).
    let average = if stats.entries > 0 {
        stats.bytes as f64 / stats.entries as f64
    } else {
        ctx.state_sizes.get(name).map_or(0.0, |s| s.1)
    };
    let size = match (store.size_on_disk(), part) {
        (Some(size), _) => size,
        (None, StatePart::Full) => stats.bytes,
        (None, _) => (average * store.len() as f64) as u64,
    };
    report_size(ctx, name, size, average);
    ctx.save_state(name, part, bytes)?;
    let next = if part == StatePart::Full {
        1
    } else {
        chain + 1
    };
    ctx.chains.insert(name.to_string(), next);
    Ok(())
}

/// Records the size of state `name` saved in the checkpoint being taken, and reports the
/// total of the states the operator instance saved in it as the `state_size_bytes` gauge
/// (once per saved state and checkpoint, not per record). States not saved in a checkpoint
/// (a window pane that closed) no longer count.
fn report_size(ctx: &mut OperatorContext, name: &str, size: u64, average: f64) {
    let checkpoint = ctx.checkpoint;
    if ctx.state_sizes.values().any(|s| s.2 != checkpoint) {
        // The first state saved in this checkpoint: forget states not saved in the previous.
        ctx.state_sizes.retain(|_, s| s.2 + 1 >= checkpoint);
    }
    ctx.state_sizes
        .insert(name.to_string(), (size, average, checkpoint));
    let total: u64 = ctx
        .state_sizes
        .values()
        .filter(|s| s.2 == checkpoint)
        .map(|s| s.0)
        .sum();
    ctx.set_gauge("state_size_bytes", total.min(i64::MAX as u64) as i64);
}

/// Loads what [`save_keyed`] stored under `name` into `store` (nothing on a fresh start).
/// State kept as files restores into any backend.
pub fn restore_keyed<K: StateKey, V: StateValue, S: KeyedStore<K, V>>(
    store: &mut S,
    ctx: &mut OperatorContext,
    name: &str,
) -> Result<(), OperatorError> {
    if let Some(dir) = ctx.restored_state_files(name) {
        store.restore_files(&dir).map_err(|e| corrupt(name, e))?;
        ctx.chains.insert(name.to_string(), 0);
        return Ok(());
    }
    let chain = ctx.restored_state(name)?;
    if chain.is_empty() {
        return Ok(());
    }
    store.restore(&chain).map_err(|e| corrupt(name, e))?;
    ctx.chains.insert(name.to_string(), chain.len());
    Ok(())
}

/// How a value is encoded in a checkpoint.
#[derive(Clone, Copy)]
enum Encoding {
    /// JSON: small values (offsets, lists of pending files), readable when debugging.
    Json,
    /// postcard: bulk values (a sink's staged rows).
    Binary,
}

fn save_encoded<T: serde::Serialize>(
    ctx: &OperatorContext,
    name: &str,
    value: &T,
    encoding: Encoding,
) -> Result<(), OperatorError> {
    if !ctx.checkpointing() {
        return Ok(());
    }
    let bytes = match encoding {
        Encoding::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
        Encoding::Binary => postcard::to_stdvec(value).map_err(|e| e.to_string()),
    }
    .map_err(|e| OperatorError::new(ErrorKind::Internal, format!("encoding '{name}': {e}")))?;
    ctx.save_state(name, StatePart::Full, bytes)
}

fn restore_encoded<T: serde::de::DeserializeOwned>(
    ctx: &OperatorContext,
    name: &str,
    encoding: Encoding,
) -> Result<Option<T>, OperatorError> {
    let Some(bytes) = ctx.restored_state(name)?.pop() else {
        return Ok(None);
    };
    match encoding {
        Encoding::Json => serde_json::from_slice(&bytes).map_err(|e| corrupt(name, e)),
        Encoding::Binary => postcard::from_bytes(&bytes).map_err(|e| corrupt(name, e)),
    }
    .map(Some)
}

/// Stores a small serializable value (a source offset, a sink's pending files).
pub fn save_value<T: serde::Serialize>(
    ctx: &OperatorContext,
    name: &str,
    value: &T,
) -> Result<(), OperatorError> {
    save_encoded(ctx, name, value, Encoding::Json)
}

/// The value [`save_value`] stored under `name` in the restored checkpoint, if any.
pub fn restore_value<T: serde::de::DeserializeOwned>(
    ctx: &OperatorContext,
    name: &str,
) -> Result<Option<T>, OperatorError> {
    restore_encoded(ctx, name, Encoding::Json)
}

/// Stores a value in a compact binary encoding (postcard): for state with bulk bytes in it,
/// such as a sink's staged rows.
pub fn save_binary<T: serde::Serialize>(
    ctx: &OperatorContext,
    name: &str,
    value: &T,
) -> Result<(), OperatorError> {
    save_encoded(ctx, name, value, Encoding::Binary)
}

/// The value [`save_binary`] stored under `name` in the restored checkpoint, if any.
pub fn restore_binary<T: serde::de::DeserializeOwned>(
    ctx: &OperatorContext,
    name: &str,
) -> Result<Option<T>, OperatorError> {
    restore_encoded(ctx, name, Encoding::Binary)
}
