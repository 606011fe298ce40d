//! A growing Bloom filter over encoded keys: "this key was never written to the tree", so a
//! cache miss on a new key skips the tree's lookup (a search through its memtables and table
//! filters, several microseconds).

use crate::StateError;
use serde::{Deserialize, Serialize};
use std::hash::BuildHasher;

/// Bits per key and probes per lookup: about a 1% false-positive rate per stage.
const BITS_PER_KEY: usize = 10;
const PROBES: u32 = 7;
const FIRST_CAPACITY: usize = 1 << 14;

/// A chain of Bloom filters, each twice the capacity of the one before (a scalable Bloom
/// filter): keys go into the newest; a lookup asks all of them. Removals are not recorded (a
/// removed key stays "maybe present", which costs one needless lookup).
pub(crate) struct KeyFilter {
    stages: Vec<Stage>,
    hasher: foldhash::fast::FixedState,
}

struct Stage {
    bits: Vec<u64>,
    /// Number of bits, a power of two.
    mask: u64,
    keys: usize,
    capacity: usize,
}

impl Stage {
    fn new(capacity: usize) -> Stage {
        let nbits = (capacity * BITS_PER_KEY).next_power_of_two().max(64);
        Stage {
            bits: vec![0; nbits / 64],
            mask: nbits as u64 - 1,
            keys: 0,
            capacity,
        }
    }

    #[inline]
    fn contains(&self, hash: u64) -> bool {
        (0..PROBES).all(|i| {
            let bit = probe(hash, i, self.mask);
            self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }

    fn insert(&mut self, hash: u64) {
        for i in 0..PROBES {
            let bit = probe(hash, i, self.mask);
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        self.keys += 1;
    }
}

/// Double hashing: probe `i` of a key is bit `h1 + i * h2` of the stage.
#[inline]
fn probe(hash: u64, i: u32, mask: u64) -> u64 {
    let h2 = hash.rotate_left(32) | 1;
    hash.wrapping_add(u64::from(i).wrapping_mul(h2)) & mask
}

impl Default for KeyFilter {
    fn default() -> Self {
        KeyFilter {
            stages: Vec::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x5eed_5eed),
        }
    }
}

impl KeyFilter {
    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Whether `key` may have been inserted; `false` is certain.
    #[inline]
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        let hash = self.hash(key);
        self.stages.iter().any(|s| s.contains(hash))
    }

    pub(crate) fn insert(&mut self, key: &[u8]) {
        let hash = self.hash(key);
        if self.stages.iter().any(|s| s.contains(hash)) {
            return;
        }
        let full = self.stages.last().is_none_or(|s| s.keys >= s.capacity);
        if full {
            let capacity = self
                .stages
                .last()
                .map_or(FIRST_CAPACITY, |s| s.capacity * 2);
            self.stages.push(Stage::new(capacity));
        }
        if let Some(stage) = self.stages.last_mut() {
            stage.insert(hash);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.stages.clear();
    }

    /// Keys inserted that were not already (probably) present: the filter changes only when
    /// this grows.
    pub(crate) fn inserted(&self) -> usize {
        self.stages.iter().map(|s| s.keys).sum()
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.stages.iter().map(|s| s.bits.len() * 8).sum()
    }

    /// The filter as plain data, to be stored with a checkpoint.
    pub(crate) fn image(&self) -> FilterImage {
        FilterImage {
            stages: self
                .stages
                .iter()
                .map(|s| StageImage {
                    capacity: s.capacity as u64,
                    keys: s.keys as u64,
                    bits: s.bits.iter().flat_map(|w| w.to_le_bytes()).collect(),
                })
                .collect(),
        }
    }

    /// The filter an [`image`](Self::image) was taken of.
    pub(crate) fn from_image(image: FilterImage) -> Result<KeyFilter, StateError> {
        let mut filter = KeyFilter::default();
        for s in image.stages {
            let nbits = s.bits.len() * 8;
            if nbits < 64 || !nbits.is_power_of_two() {
                return Err(StateError::Corrupt(format!(
                    "a key filter stage of {} bytes (expected a power of two of at least 8)",
                    s.bits.len()
                )));
            }
            filter.stages.push(Stage {
                bits: s
                    .bits
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
                mask: nbits as u64 - 1,
                keys: s.keys as usize,
                capacity: s.capacity as usize,
            });
        }
        Ok(filter)
    }
}

/// A [`KeyFilter`] as plain data.
#[derive(Serialize, Deserialize)]
pub(crate) struct FilterImage {
    stages: Vec<StageImage>,
}

#[derive(Serialize, Deserialize)]
struct StageImage {
    capacity: u64,
    keys: u64,
    /// The bit words, little-endian.
    bits: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut f = KeyFilter::default();
        assert!(!f.may_contain(b"anything"));
        let n = 100_000u32;
        for i in 0..n {
            f.insert(&i.to_le_bytes());
        }
        assert!((0..n).all(|i| f.may_contain(&i.to_le_bytes())));
        let false_positives = (n..2 * n)
            .filter(|i| f.may_contain(&i.to_le_bytes()))
            .count();
        assert!(
            false_positives < (n / 20) as usize,
            "{false_positives} false positives in {n}"
        );
        assert!(f.bytes() < n as usize * 4, "{} bytes", f.bytes());
        let copy = KeyFilter::from_image(f.image()).unwrap();
        assert!(
            (0..2 * n)
                .all(|i| copy.may_contain(&i.to_le_bytes()) == f.may_contain(&i.to_le_bytes()))
        );
        f.clear();
        assert!(!f.may_contain(&0u32.to_le_bytes()));
    }
}
