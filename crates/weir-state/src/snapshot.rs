//! The binary form of a state snapshot, shared by every backend.
//!
//! ```text
//! blob   := MAGIC(8) kind(1) op* END count(u64 LE)
//! op     := PUT klen(u32 LE) key vlen(u32 LE) value | DELETE klen(u32 LE) key | CLEAR
//! ```
//!
//! Keys and values are postcard-encoded. Fixed-width lengths let a writer reserve the length,
//! encode in place and patch it, and let the disk backend copy stored bytes without decoding
//! them. The closing count makes a truncated blob an error instead of a smaller state.

use crate::StateError;
use serde::Serialize;
use std::io::Write;

const MAGIC: &[u8; 8] = b"WEIRSNP1";
const OP_END: u8 = 0;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_CLEAR: u8 = 3;
/// Bytes buffered before they go to the caller's writer.
const FLUSH_AT: usize = 256 * 1024;

/// Which changes a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotKind {
    /// Every entry: restoring it replaces the whole store.
    Full,
    /// Only what changed (puts and removals) since the store's previous snapshot.
    Incremental,
}

impl SnapshotKind {
    fn code(self) -> u8 {
        match self {
            SnapshotKind::Full => 0,
            SnapshotKind::Incremental => 1,
        }
    }

    /// The kind of a snapshot blob, read from its header.
    pub fn of(blob: &[u8]) -> Result<SnapshotKind, StateError> {
        SnapshotReader::open(blob).map(|r| r.kind)
    }
}

/// What a snapshot wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStats {
    pub kind: SnapshotKind,
    /// Entries written (all of them for a full snapshot, changed ones for an incremental one).
    pub entries: u64,
    /// Removals written (incremental snapshots only).
    pub removals: u64,
    /// Bytes written, header and framing included.
    pub bytes: u64,
}

/// Writes a snapshot blob through a buffer.
pub(crate) struct SnapshotWriter<'a> {
    out: &'a mut dyn Write,
    buf: Vec<u8>,
    kind: SnapshotKind,
    ops: u64,
    entries: u64,
    removals: u64,
    bytes: u64,
}

impl<'a> SnapshotWriter<'a> {
    pub(crate) fn new(out: &'a mut dyn Write, kind: SnapshotKind) -> Self {
        let mut buf = Vec::with_capacity(FLUSH_AT + 4096);
        buf.extend_from_slice(MAGIC);
        buf.push(kind.code());
        SnapshotWriter {
            out,
            buf,
            kind,
            ops: 0,
            entries: 0,
            removals: 0,
            bytes: 0,
        }
    }

    #[inline]
    fn maybe_flush(&mut self) -> Result<(), StateError> {
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StateError> {
        self.out
            .write_all(&self.buf)
            .map_err(|source| StateError::Write { source })?;
        self.bytes += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Appends `value` postcard-encoded, preceded by its length.
    #[inline]
    fn encode<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
        what: &'static str,
    ) -> Result<(), StateError> {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        let buf = std::mem::take(&mut self.buf);
        self.buf = postcard::to_extend(value, buf).map_err(|e| StateError::Encode {
            what,
            message: e.to_string(),
        })?;
        let len = length(self.buf.len() - at - 4, what)?;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
        Ok(())
    }

    #[inline]
    fn raw(&mut self, bytes: &[u8], what: &'static str) -> Result<(), StateError> {
        self.buf
            .extend_from_slice(&length(bytes.len(), what)?.to_le_bytes());
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// An entry, encoding key and value.
    #[inline]
    pub(crate) fn put<K: Serialize, V: Serialize>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), StateError> {
        self.buf.push(OP_PUT);
        self.encode(key, "key")?;
        self.encode(value, "value")?;
        self.ops += 1;
        self.entries += 1;
        self.maybe_flush()
    }

    /// An entry whose key and value are already encoded.
    #[inline]
    pub(crate) fn put_raw(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.buf.push(OP_PUT);
        self.raw(key, "key")?;
        self.raw(value, "value")?;
        self.ops += 1;
        self.entries += 1;
        self.maybe_flush()
    }

    pub(crate) fn delete<K: Serialize>(&mut self, key: &K) -> Result<(), StateError> {
        self.buf.push(OP_DELETE);
        self.encode(key, "key")?;
        self.ops += 1;
        self.removals += 1;
        self.maybe_flush()
    }

    pub(crate) fn delete_raw(&mut self, key: &[u8]) -> Result<(), StateError> {
        self.buf.push(OP_DELETE);
        self.raw(key, "key")?;
        self.ops += 1;
        self.removals += 1;
        self.maybe_flush()
    }

    /// Everything before is gone (the store was drained).
    pub(crate) fn clear(&mut self) -> Result<(), StateError> {
        self.buf.push(OP_CLEAR);
        self.ops += 1;
        self.maybe_flush()
    }

    pub(crate) fn finish(mut self) -> Result<SnapshotStats, StateError> {
        self.buf.push(OP_END);
        let ops = self.ops;
        self.buf.extend_from_slice(&ops.to_le_bytes());
        self.flush()?;
        self.out
            .flush()
            .map_err(|source| StateError::Write { source })?;
        Ok(SnapshotStats {
            kind: self.kind,
            entries: self.entries,
            removals: self.removals,
            bytes: self.bytes,
        })
    }
}

fn length(len: usize, what: &'static str) -> Result<u32, StateError> {
    u32::try_from(len).map_err(|_| StateError::Encode {
        what,
        message: format!("{len} bytes is more than a snapshot entry can hold (4 GiB)"),
    })
}

/// One change read from a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op<'a> {
    Put(&'a [u8], &'a [u8]),
    Delete(&'a [u8]),
    Clear,
}

/// Reads a snapshot blob, checking its framing as it goes.
pub(crate) struct SnapshotReader<'a> {
    data: &'a [u8],
    pos: usize,
    pub(crate) kind: SnapshotKind,
    ops: u64,
    done: bool,
}

impl<'a> SnapshotReader<'a> {
    pub(crate) fn open(data: &'a [u8]) -> Result<Self, StateError> {
        if data.len() < MAGIC.len() + 1 || &data[..MAGIC.len()] != MAGIC {
            return Err(StateError::Corrupt(format!(
                "not a weir state snapshot: the {} bytes do not start with the snapshot header",
                data.len()
            )));
        }
        let kind = match data[MAGIC.len()] {
            0 => SnapshotKind::Full,
            1 => SnapshotKind::Incremental,
            other => {
                return Err(StateError::Corrupt(format!(
                    "unknown snapshot kind {other} in the header (expected 0 = full or 1 = incremental)"
                )));
            }
        };
        Ok(SnapshotReader {
            data,
            pos: MAGIC.len() + 1,
            kind,
            ops: 0,
            done: false,
        })
    }

    fn truncated(&self, wanted: &str) -> StateError {
        StateError::Corrupt(format!(
            "snapshot truncated: {wanted} expected at byte {} of {}",
            self.pos,
            self.data.len()
        ))
    }

    #[inline]
    fn byte(&mut self, wanted: &str) -> Result<u8, StateError> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or_else(|| self.truncated(wanted))?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn field(&mut self, wanted: &str) -> Result<&'a [u8], StateError> {
        let data = self.data;
        let len_bytes = data
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.truncated(wanted))?;
        let len =
            u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        let start = self.pos + 4;
        let bytes = data
            .get(start..start + len)
            .ok_or_else(|| self.truncated(wanted))?;
        self.pos = start + len;
        Ok(bytes)
    }

    /// The next change, or `None` after the closing count has been checked.
    #[inline]
    pub(crate) fn next_op(&mut self) -> Result<Option<Op<'a>>, StateError> {
        if self.done {
            return Ok(None);
        }
        let at = self.pos;
        let op = match self.byte("an operation")? {
            OP_PUT => Op::Put(self.field("a key")?, self.field("a value")?),
            OP_DELETE => Op::Delete(self.field("a key")?),
            OP_CLEAR => Op::Clear,
            OP_END => {
                let count = self
                    .data
                    .get(self.pos..self.pos + 8)
                    .ok_or_else(|| self.truncated("the closing count"))?;
                let mut n = [0u8; 8];
                n.copy_from_slice(count);
                let count = u64::from_le_bytes(n);
                if count != self.ops {
                    return Err(StateError::Corrupt(format!(
                        "snapshot closes with a count of {count} operations but holds {}",
                        self.ops
                    )));
                }
                self.pos += 8;
                if self.pos != self.data.len() {
                    return Err(StateError::Corrupt(format!(
                        "{} unexpected bytes after the end of the snapshot",
                        self.data.len() - self.pos
                    )));
                }
                self.done = true;
                return Ok(None);
            }
            other => {
                return Err(StateError::Corrupt(format!(
                    "unknown snapshot operation {other} at byte {at}"
                )));
            }
        };
        self.ops += 1;
        Ok(Some(op))
    }
}

/// Decodes a postcard-encoded key or value read from a snapshot or from disk.
#[inline]
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, StateError> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| StateError::Decode {
        what,
        message: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(StateError::Decode {
            what,
            message: format!(
                "{} of its {} bytes left over: the stored type differs from the expected one",
                rest.len(),
                bytes.len()
            ),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = SnapshotWriter::new(&mut out, SnapshotKind::Incremental);
        w.clear().unwrap();
        w.put(&"a".to_string(), &1u64).unwrap();
        w.delete(&"b".to_string()).unwrap();
        w.put_raw(b"k", b"v").unwrap();
        let stats = w.finish().unwrap();
        assert_eq!(stats.entries, 2);
        assert_eq!(stats.removals, 1);
        assert_eq!(stats.bytes, out.len() as u64);
        out
    }

    fn read_all(blob: &[u8]) -> Result<Vec<Op<'_>>, StateError> {
        let mut r = SnapshotReader::open(blob)?;
        let mut ops = Vec::new();
        while let Some(op) = r.next_op()? {
            ops.push(op);
        }
        Ok(ops)
    }

    #[test]
    fn ops_read_back_in_order() {
        let blob = sample();
        assert_eq!(SnapshotKind::of(&blob).unwrap(), SnapshotKind::Incremental);
        let a = postcard::to_stdvec(&"a".to_string()).unwrap();
        let one = postcard::to_stdvec(&1u64).unwrap();
        let b = postcard::to_stdvec(&"b".to_string()).unwrap();
        assert_eq!(
            read_all(&blob).unwrap(),
            vec![
                Op::Clear,
                Op::Put(&a, &one),
                Op::Delete(&b),
                Op::Put(b"k", b"v")
            ]
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let blob = sample();
        for cut in 0..blob.len() {
            let err = read_all(&blob[..cut]).expect_err("a truncated snapshot must not read");
            assert!(matches!(err, StateError::Corrupt(_)), "cut at {cut}: {err}");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(
            read_all(&longer)
                .unwrap_err()
                .to_string()
                .contains("unexpected bytes")
        );
    }

    #[test]
    fn wrong_header_is_named() {
        let err = read_all(b"hello world").unwrap_err();
        assert!(
            err.to_string().contains("not a weir state snapshot"),
            "{err}"
        );
    }
}
