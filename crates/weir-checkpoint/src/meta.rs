//! The `_metadata` file: what a checkpoint holds, checksummed.

use crate::CheckpointError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The metadata format this crate writes and reads.
pub(crate) const FORMAT: u32 = 1;
const HEADER: &str = "weir-checkpoint";

/// What is wrong with a `_metadata` file (inside [`crate::SkipReason::BadMetadata`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("truncated: no header line in {bytes} bytes")]
    NoHeaderLine { bytes: usize },
    #[error("the header line is not text")]
    HeaderNotText,
    #[error("unreadable header line {0:?}")]
    UnreadableHeader(String),
    #[error("not checkpoint metadata (header {0:?})")]
    NotMetadata(String),
    #[error("metadata format {found} is not the supported format {supported}")]
    UnsupportedFormat { found: String, supported: u32 },
    #[error("unreadable checksum in header {0:?}")]
    UnreadableChecksum(String),
    #[error("unreadable length in header {0:?}")]
    UnreadableLength(String),
    #[error(
        "truncated: the header announces {announced} bytes of metadata, the file holds {found}"
    )]
    Truncated { announced: usize, found: usize },
    #[error("checksum mismatch: expected crc32 {expected:08x}, found {found:08x}")]
    ChecksumMismatch { expected: u32, found: u32 },
    /// The body is not the metadata JSON (serde's message: the error itself is not `Clone`).
    #[error("unreadable metadata: {0}")]
    Unparsable(String),
    #[error("it describes checkpoint {found}, not {expected}")]
    WrongId { expected: u64, found: u64 },
}

/// A stored blob: where it is and what it must read back as.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobRef {
    /// The checkpoint whose directory holds the file (earlier than the referencing one for a
    /// reused blob of an incremental chain).
    pub checkpoint: u64,
    pub operator: String,
    pub instance: usize,
    /// The state's name within the operator instance.
    pub name: String,
    /// The file name inside the checkpoint's directory.
    pub file: String,
    pub size: u64,
    pub crc32: u32,
    /// For the files of a state kept as files: their xxh3-128 (hex), checked instead of
    /// `crc32`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xxh3_128: Option<String>,
}

/// One operator instance's part of a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OperatorEntry {
    pub(crate) operator: String,
    pub(crate) instance: usize,
    /// Per state name: the blobs to restore in order (a base, then its increments).
    #[serde(default)]
    pub(crate) states: BTreeMap<String, Vec<BlobRef>>,
    /// Free-form metadata: a source's offset, a sink's pending transaction.
    #[serde(default)]
    pub(crate) meta: BTreeMap<String, serde_json::Value>,
    /// Per state name stored as files (an on-disk store's tables): every file of its
    /// directory, with its size and checksum (`file` is the path inside the checkpoint).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) files: BTreeMap<String, Vec<BlobRef>>,
}

/// The content of `_metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Metadata {
    pub(crate) format: u32,
    pub(crate) id: u64,
    pub(crate) job: String,
    /// Milliseconds since the Unix epoch when the checkpoint began.
    pub(crate) started_at_ms: i64,
    pub(crate) duration_ms: u64,
    /// Bytes of the blobs written by this checkpoint.
    pub(crate) bytes_written: u64,
    /// Bytes of all blobs it references (its own and reused ones).
    pub(crate) total_bytes: u64,
    pub(crate) operators: Vec<OperatorEntry>,
}

impl Metadata {
    /// `HEADER FORMAT crc32=XXXXXXXX len=N\n` followed by the JSON body.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, CheckpointError> {
        let body = serde_json::to_vec_pretty(self).map_err(CheckpointError::Encode)?;
        let mut out = format!(
            "{HEADER} {FORMAT} crc32={:08x} len={}\n",
            crc32fast::hash(&body),
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Parses and checks a `_metadata` file; the error says what is wrong with it.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Metadata, MetadataError> {
        let newline = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(MetadataError::NoHeaderLine { bytes: bytes.len() })?;
        let header =
            std::str::from_utf8(&bytes[..newline]).map_err(|_| MetadataError::HeaderNotText)?;
        let body = &bytes[newline + 1..];
        let parts: Vec<&str> = header.split(' ').collect();
        let [name, format, crc, len] = parts[..] else {
            return Err(MetadataError::UnreadableHeader(header.into()));
        };
        if name != HEADER {
            return Err(MetadataError::NotMetadata(header.into()));
        }
        if format != FORMAT.to_string() {
            return Err(MetadataError::UnsupportedFormat {
                found: format.into(),
                supported: FORMAT,
            });
        }
        let crc = crc
            .strip_prefix("crc32=")
            .and_then(|c| u32::from_str_radix(c, 16).ok())
            .ok_or_else(|| MetadataError::UnreadableChecksum(header.into()))?;
        let len: usize = len
            .strip_prefix("len=")
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| MetadataError::UnreadableLength(header.into()))?;
        if body.len() != len {
            return Err(MetadataError::Truncated {
                announced: len,
                found: body.len(),
            });
        }
        let found = crc32fast::hash(body);
        if found != crc {
            return Err(MetadataError::ChecksumMismatch {
                expected: crc,
                found,
            });
        }
        serde_json::from_slice(body).map_err(|e| MetadataError::Unparsable(e.to_string()))
    }

    /// Every file the checkpoint references: blobs and the files of states stored as files.
    pub(crate) fn blobs(&self) -> impl Iterator<Item = &BlobRef> {
        self.operators
            .iter()
            .flat_map(|o| o.states.values().chain(o.files.values()).flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        Metadata {
            format: FORMAT,
            id: 3,
            job: "j".into(),
            started_at_ms: 1,
            duration_ms: 2,
            bytes_written: 3,
            total_bytes: 3,
            operators: vec![OperatorEntry {
                operator: "src".into(),
                instance: 0,
                states: BTreeMap::new(),
                meta: BTreeMap::from([("offset".into(), serde_json::json!(42))]),
                files: BTreeMap::new(),
            }],
        }
    }

    #[test]
    fn round_trip_and_every_truncation_detected() {
        let bytes = sample().encode().unwrap();
        assert_eq!(Metadata::decode(&bytes).unwrap(), sample());
        for cut in 0..bytes.len() {
            assert!(Metadata::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_byte_is_a_checksum_mismatch() {
        let mut bytes = sample().encode().unwrap();
        let at = bytes.len() - 5;
        bytes[at] ^= 0x01;
        let err = Metadata::decode(&bytes).unwrap_err();
        assert!(
            matches!(err, MetadataError::ChecksumMismatch { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }
}
