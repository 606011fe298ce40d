use crate::ConnectorError;
use std::fmt;
use std::str::FromStr;

/// A Redis stream entry id, `<ms>-<seq>`. Ordered as Redis orders them.
///
/// ```
/// use weir_connectors::StreamId;
/// let id: StreamId = "1700000000000-3".parse().unwrap();
/// assert_eq!(id, StreamId::new(1_700_000_000_000, 3));
/// assert_eq!(id.to_string(), "1700000000000-3");
/// assert!(StreamId::new(5, 0) > StreamId::new(4, 99));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// The smallest id, `0-0`: "from the beginning" when reading pending entries.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    pub const fn new(ms: u64, seq: u64) -> Self {
        StreamId { ms, seq }
    }

    /// Parses the id bytes Redis sends.
    pub fn from_bytes(bytes: &[u8]) -> Option<StreamId> {
        let dash = bytes.iter().position(|&b| b == b'-');
        let (ms, seq) = match dash {
            Some(i) => (&bytes[..i], Some(&bytes[i + 1..])),
            None => (bytes, None),
        };
        let ms = parse_u64(ms)?;
        let seq = match seq {
            Some(s) => parse_u64(s)?,
            None => 0,
        };
        Some(StreamId { ms, seq })
    }

    /// Writes the id into `buf` (cleared first), to pass it as a command argument without
    /// allocating.
    pub(crate) fn write_to<'a>(&self, buf: &'a mut String) -> &'a str {
        use std::fmt::Write;
        buf.clear();
        let _ = write!(buf, "{}-{}", self.ms, self.seq);
        buf.as_str()
    }
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for StreamId {
    type Err = ConnectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StreamId::from_bytes(s.as_bytes()).ok_or_else(|| ConnectorError::InvalidStreamId {
            id: s.to_string(),
            reason: "expected `<ms>-<seq>` with two unsigned 64-bit integers",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!(StreamId::from_bytes(b"12-34"), Some(StreamId::new(12, 34)));
        assert_eq!(StreamId::from_bytes(b"12"), Some(StreamId::new(12, 0)));
        assert_eq!(
            StreamId::from_bytes(b"18446744073709551615-0"),
            Some(StreamId::new(u64::MAX, 0))
        );
        assert_eq!(StreamId::from_bytes(b"18446744073709551616-0"), None);
        assert_eq!(StreamId::from_bytes(b"-1"), None);
        assert_eq!(StreamId::from_bytes(b"1-"), None);
        assert_eq!(StreamId::from_bytes(b"1-x"), None);
        let e = "abc".parse::<StreamId>().unwrap_err();
        assert!(e.to_string().contains("`abc`"), "{e}");
    }

    #[test]
    fn writes_into_a_reused_buffer() {
        let mut buf = String::from("junk");
        assert_eq!(StreamId::new(7, 8).write_to(&mut buf), "7-8");
    }
}
