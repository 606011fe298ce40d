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
use std::io::{Read, Write};

const MAGIC: &[u8; 8] = b"WEIRSNP1";
const OP_END: u8 = 0;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_CLEAR: u8 = 3;
/// Bytes of the header: magic and kind.
pub(crate) const HEADER_LEN: usize = MAGIC.len() + 1;
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
        kind_of_header(&blob[..blob.len().min(HEADER_LEN)])
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

/// What the next change of a snapshot is; its key and value are in the reader's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Put,
    Delete,
    Clear,
}

/// Reads a snapshot from a byte stream, one change at a time, checking its framing as it
/// goes: memory stays bounded by the largest entry, whatever the snapshot's size.
pub(crate) struct SnapshotReader<R> {
    r: R,
    pos: u64,
    pub(crate) kind: SnapshotKind,
    ops: u64,
    done: bool,
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
}

impl<R: Read> SnapshotReader<R> {
    pub(crate) fn open(mut r: R) -> Result<Self, StateError> {
        let mut header = [0u8; HEADER_LEN];
        let got = read_up_to(&mut r, &mut header)?;
        let kind = kind_of_header(&header[..got])?;
        Ok(SnapshotReader {
            r,
            pos: header.len() as u64,
            kind,
            ops: 0,
            done: false,
            key: Vec::new(),
            value: Vec::new(),
        })
    }

    fn exact(&mut self, buf: &mut [u8], wanted: &str) -> Result<(), StateError> {
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(StateError::Corrupt(
                format!("snapshot truncated: {wanted} expected at byte {}", self.pos),
            )),
            Err(e) => Err(StateError::Read {
                at: self.pos,
                source: e,
            }),
        }
    }

    fn field(&mut self, into_value: bool, wanted: &str) -> Result<(), StateError> {
        let mut len = [0u8; 4];
        self.exact(&mut len, wanted)?;
        let len = u32::from_le_bytes(len) as usize;
        let mut buf = std::mem::take(if into_value {
            &mut self.value
        } else {
            &mut self.key
        });
        buf.clear();
        // Grow as bytes arrive, so a corrupt length cannot allocate gigabytes up front.
        let got = (&mut self.r)
            .take(len as u64)
            .read_to_end(&mut buf)
            .map_err(|source| StateError::Read {
                at: self.pos,
                source,
            })?;
        self.pos += got as u64;
        let short = got < len;
        if into_value {
            self.value = buf;
        } else {
            self.key = buf;
        }
        if short {
            return Err(StateError::Corrupt(format!(
                "snapshot truncated: {wanted} of {len} bytes expected at byte {}",
                self.pos
            )));
        }
        Ok(())
    }

    /// The next change (its key and value in `key` and `value`), or `None` once the closing
    /// count and the end of the stream have been checked.
    pub(crate) fn next_op(&mut self) -> Result<Option<Op>, StateError> {
        if self.done {
            return Ok(None);
        }
        let at = self.pos;
        let mut op = [0u8; 1];
        self.exact(&mut op, "an operation")?;
        let op = match op[0] {
            OP_PUT => {
                self.field(false, "a key")?;
                self.field(true, "a value")?;
                Op::Put
            }
            OP_DELETE => {
                self.field(false, "a key")?;
                Op::Delete
            }
            OP_CLEAR => Op::Clear,
            OP_END => {
                let mut count = [0u8; 8];
                self.exact(&mut count, "the closing count")?;
                let count = u64::from_le_bytes(count);
                if count != self.ops {
                    return Err(StateError::Corrupt(format!(
                        "snapshot closes with a count of {count} operations but holds {}",
                        self.ops
                    )));
                }
                let mut rest = [0u8; 64];
                let extra = read_up_to(&mut self.r, &mut rest)?;
                if extra > 0 {
                    return Err(StateError::Corrupt(format!(
                        "unexpected bytes after the end of the snapshot at byte {}",
                        self.pos
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

/// The kind a snapshot header announces.
pub(crate) fn kind_of_header(header: &[u8]) -> Result<SnapshotKind, StateError> {
    if header.len() < HEADER_LEN || &header[..MAGIC.len()] != MAGIC {
        return Err(StateError::Corrupt(
            "not a weir state snapshot: it does not start with the snapshot header".into(),
        ));
    }
    match header[MAGIC.len()] {
        0 => Ok(SnapshotKind::Full),
        1 => Ok(SnapshotKind::Incremental),
        other => Err(StateError::Corrupt(format!(
            "unknown snapshot kind {other} in the header (expected 0 = full or 1 = incremental)"
        ))),
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
pub(crate) fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, StateError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => return Err(StateError::Read { at: 0, source }),
        }
    }
    Ok(got)
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

    type Change = (Op, Vec<u8>, Vec<u8>);

    fn read_all(blob: &[u8]) -> Result<Vec<Change>, StateError> {
        let mut r = SnapshotReader::open(blob)?;
        let mut ops = Vec::new();
        while let Some(op) = r.next_op()? {
            let value = if op == Op::Put {
                r.value.clone()
            } else {
                Vec::new()
            };
            let key = if op == Op::Clear {
                Vec::new()
            } else {
                r.key.clone()
            };
            ops.push((op, key, value));
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
                (Op::Clear, vec![], vec![]),
                (Op::Put, a, one),
                (Op::Delete, b, vec![]),
                (Op::Put, b"k".to_vec(), b"v".to_vec())
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
