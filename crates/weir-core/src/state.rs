//! Saving and restoring keyed state in checkpoints.
//!
//! The blob is the concatenation of postcard-encoded `(key, value)` pairs, so saving streams
//! straight from the store without copying it.

use crate::checkpoint::StatePart;
use crate::error::{ErrorKind, OperatorError};
use crate::operator::OperatorContext;
use weir_state::{KeyedStore, StateKey, StateValue};

fn corrupt(name: &str, e: impl std::fmt::Display) -> OperatorError {
    OperatorError::new(
        ErrorKind::Io,
        format!("restoring state '{name}' from the checkpoint: {e}"),
    )
}

/// Stores the whole content of `store` under `name` in the checkpoint being taken.
pub fn save_keyed<K: StateKey, V: StateValue, S: KeyedStore<K, V>>(
    store: &mut S,
    ctx: &OperatorContext,
    name: &str,
) -> Result<(), OperatorError> {
    if !ctx.checkpointing() {
        return Ok(());
    }
    let mut bytes = Vec::new();
    let mut failure = None;
    store.for_each(&mut |k, v| {
        if failure.is_none()
            && let Err(e) = postcard::to_io(&(k, v), &mut bytes)
        {
            failure = Some(e);
        }
    });
    if let Some(e) = failure {
        return Err(OperatorError::new(
            ErrorKind::Internal,
            format!("encoding state '{name}': {e}"),
        ));
    }
    ctx.save_state(name, StatePart::Full, bytes)
}

/// Loads what [`save_keyed`] stored under `name` into `store` (nothing on a fresh start).
pub fn restore_keyed<K: StateKey, V: StateValue, S: KeyedStore<K, V>>(
    store: &mut S,
    ctx: &OperatorContext,
    name: &str,
) -> Result<(), OperatorError> {
    for blob in ctx.restored_state(name)? {
        let mut rest: &[u8] = &blob;
        while !rest.is_empty() {
            let ((k, v), tail): ((K, V), &[u8]) =
                postcard::take_from_bytes(rest).map_err(|e| corrupt(name, e))?;
            store.insert(k, v);
            rest = tail;
        }
    }
    Ok(())
}

/// Stores a small serializable value (a source offset, a sink's pending files).
pub fn save_value<T: serde::Serialize>(
    ctx: &OperatorContext,
    name: &str,
    value: &T,
) -> Result<(), OperatorError> {
    if !ctx.checkpointing() {
        return Ok(());
    }
    let bytes = serde_json::to_vec(value)
        .map_err(|e| OperatorError::new(ErrorKind::Internal, format!("encoding '{name}': {e}")))?;
    ctx.save_state(name, StatePart::Full, bytes)
}

/// The value [`save_value`] stored under `name` in the restored checkpoint, if any.
pub fn restore_value<T: serde::de::DeserializeOwned>(
    ctx: &OperatorContext,
    name: &str,
) -> Result<Option<T>, OperatorError> {
    match ctx.restored_state(name)?.pop() {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt(name, e)),
        None => Ok(None),
    }
}

/// Stores a value in a compact binary encoding (postcard): for state with bulk bytes in it,
/// such as a sink's staged rows.
pub fn save_binary<T: serde::Serialize>(
    ctx: &OperatorContext,
    name: &str,
    value: &T,
) -> Result<(), OperatorError> {
    if !ctx.checkpointing() {
        return Ok(());
    }
    let bytes = postcard::to_stdvec(value)
        .map_err(|e| OperatorError::new(ErrorKind::Internal, format!("encoding '{name}': {e}")))?;
    ctx.save_state(name, StatePart::Full, bytes)
}

/// The value [`save_binary`] stored under `name` in the restored checkpoint, if any.
pub fn restore_binary<T: serde::de::DeserializeOwned>(
    ctx: &OperatorContext,
    name: &str,
) -> Result<Option<T>, OperatorError> {
    match ctx.restored_state(name)?.pop() {
        Some(bytes) => postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| corrupt(name, e)),
        None => Ok(None),
    }
}
