/// An order-independent digest of results: the wrapping sum of a strong 64-bit mix of each
/// result, so the engine (any parallelism, any order) and the baseline agree.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Digest(u64);

/// splitmix64's finalizer: every input bit affects every output bit.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a over bytes, for string keys.
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Digest {
    /// Adds one result made of several numbers.
    #[inline]
    pub fn add(&mut self, parts: &[u64]) {
        self.0 = self.0.wrapping_add(Self::hash(parts));
    }

    /// Takes back a result [`add`](Digest::add)ed before: a stream of updates (a running
    /// count) can keep the digest of its latest values without remembering them.
    #[inline]
    pub fn remove(&mut self, parts: &[u64]) {
        self.0 = self.0.wrapping_sub(Self::hash(parts));
    }

    #[inline]
    fn hash(parts: &[u64]) -> u64 {
        let mut h = 0x9e37_79b9_7f4a_7c15u64;
        for p in parts {
            h = mix(h ^ *p);
        }
        h
    }

    pub fn merge(&mut self, other: Digest) {
        self.0 = self.0.wrapping_add(other.0);
    }

    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_does_not_matter_but_content_does() {
        let mut a = Digest::default();
        a.add(&[1, 2]);
        a.add(&[3, 4]);
        let mut b = Digest::default();
        b.add(&[3, 4]);
        b.add(&[1, 2]);
        assert_eq!(a, b);
        let mut c = Digest::default();
        c.add(&[2, 1]);
        c.add(&[3, 4]);
        assert_ne!(a, c);
    }

    #[test]
    fn removing_a_result_undoes_adding_it() {
        let mut a = Digest::default();
        a.add(&[1, 2]);
        let mut b = a;
        b.add(&[7, 1]);
        b.remove(&[7, 1]);
        assert_eq!(a, b);
        b.remove(&[1, 2]);
        assert_eq!(b, Digest::default());
    }
}
