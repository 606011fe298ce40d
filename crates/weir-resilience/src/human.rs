//! Durations written as human strings in configuration: `"250ms"`, `"5s"`, `"1m"`, `"1h 30m"`.

use serde::Serializer;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"250ms\", \"5s\" or \"1m\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        humantime::parse_duration(text.trim())
            .map_err(|err| E::custom(format_args!("invalid duration {text:?}: {err}")))
    }
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_str(DurationVisitor)
}

pub(crate) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*value))
}

/// The same for `Option<Duration>` (a missing key or `null` is `None`).
pub(crate) mod option {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Wrapper(#[serde(with = "super")] Duration);

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<Wrapper>::deserialize(d)?.map(|Wrapper(v)| v))
    }

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.collect_str(&humantime::format_duration(*v)),
            None => s.serialize_none(),
        }
    }
}
