//! The one duration type of the YAML format: `5ms`, `2s`, `1m`, `1h` (and humantime's longer
//! forms such as `1m 30s`). A bad value is refused while parsing, so the error names the file,
//! the line and the key.

use serde::de::{self, Deserialize, Deserializer};
use std::fmt;

/// The forms a duration is written in, for error messages.
pub const DURATION_FORMS: &str = "5ms|2s|1m|1h";

/// A non-negative duration, written as `5ms`, `2s`, `1m` or `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration {
    value: std::time::Duration,
    /// As written, for messages (trimmed; at most 32 bytes kept).
    text: Text,
}

/// A duration that may be negative (`-5m`): a bound relative to an event's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedDuration {
    /// Milliseconds, negative before the event.
    millis: i64,
    text: Text,
}

/// The text of a duration as written, inline (no allocation; truncated at 32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Text {
    bytes: [u8; 32],
    len: u8,
}

impl Text {
    fn new(s: &str) -> Self {
        let mut end = s.len().min(32);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0; 32];
        bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        Text {
            bytes,
            len: end as u8,
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Parses `5ms`, `2s`, `1m`, `1h`, ...; the error says what was expected.
pub fn parse(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("expected a duration such as {DURATION_FORMS}, found `{text}` ({e})"))
}

impl Duration {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(Duration {
            value: parse(text)?,
            text: Text::new(text.trim()),
        })
    }

    pub fn get(self) -> std::time::Duration {
        self.value
    }

    pub fn millis(self) -> i64 {
        i64::try_from(self.value.as_millis()).unwrap_or(i64::MAX)
    }

    /// As written in the file.
    pub fn text(&self) -> &str {
        self.text.as_str()
    }
}

impl SignedDuration {
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let (negative, rest) = match trimmed.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
        };
        let value = parse(rest).map_err(|_| {
            format!("expected a duration such as {DURATION_FORMS}, optionally negative (`-5m`), found `{text}`")
        })?;
        let millis = i64::try_from(value.as_millis()).unwrap_or(i64::MAX);
        Ok(SignedDuration {
            millis: if negative { -millis } else { millis },
            text: Text::new(trimmed),
        })
    }

    pub fn millis(self) -> i64 {
        self.millis
    }

    pub fn text(&self) -> &str {
        self.text.as_str()
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

impl fmt::Display for SignedDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// A duration is written as a string, parsed inside the visit of the scalar (so the YAML
/// error names its line and key); a bare number has no unit and is refused.
struct Parse<T>(fn(&str) -> Result<T, String>);

impl<T> de::Visitor<'_> for Parse<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a duration such as {DURATION_FORMS}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Err(E::custom(format_args!(
            "expected a duration such as {DURATION_FORMS}, found the number {v} (give a unit)"
        )))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Err(E::custom(format_args!(
            "expected a duration such as {DURATION_FORMS}, found the number {v} (give a unit)"
        )))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        Err(E::custom(format_args!(
            "expected a duration such as {DURATION_FORMS}, found the number {v} (give a unit)"
        )))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Parse(Duration::parse))
    }
}

impl<'de> Deserialize<'de> for SignedDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Parse(SignedDuration::parse))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_keep_their_text() {
        let d = Duration::parse(" 250ms ").unwrap();
        assert_eq!(d.get(), std::time::Duration::from_millis(250));
        assert_eq!(d.text(), "250ms");
        assert_eq!(Duration::parse("1m").unwrap().millis(), 60_000);
        let e = Duration::parse("soon").unwrap_err();
        assert!(
            e.starts_with("expected a duration such as 5ms|2s|1m|1h, found `soon`"),
            "{e}"
        );
        assert_eq!(SignedDuration::parse("-5m").unwrap().millis(), -300_000);
        assert_eq!(SignedDuration::parse("10s").unwrap().millis(), 10_000);
        assert!(SignedDuration::parse("-x").is_err());
    }

    #[test]
    fn numbers_without_a_unit_are_refused() {
        let e = serde_yaml::from_str::<Duration>("5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("found the number 5 (give a unit)"), "{e}");
        let d: Duration = serde_yaml::from_str("2s").unwrap();
        assert_eq!(d.millis(), 2000);
    }
}
