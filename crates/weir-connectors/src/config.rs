//! The typed configurations of the connectors, as the YAML pipeline format writes them: a map
//! with a `type` and the options of that type (`{ type: file, path: in.jsonl }`).
//!
//! Each connector's folder owns its options struct (serde, `deny_unknown_fields`), its build
//! and its connectivity `check()`; [`SourceConfig`] and [`SinkConfig`] list them, one line
//! each (see [`connectors!`](crate::connectors)).
//!
//! serde's internally tagged enums buffer the map before choosing the variant, which loses the
//! line of every error inside it. [`deserialize_tagged`] instead reads `type` first and then
//! deserializes the chosen struct from the *same* map, so an unknown key, a wrong type or a
//! bad duration names its own line and key. Options common to every connector of a role
//! (`event_time` of a source, `input` of a sink) are read by the caller's [`Common`].

use crate::ConnectorError;
use crate::ReadResult;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weir_core::{Environment, Stream};
use weir_expr::FieldTypes;
use weir_types::{Record, ValueKind};

/// Where a configuration error is: the connector's own key, one of its options (relative,
/// e.g. `policy.timeout`), or a key from the root of the file (e.g. `schemas`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKey {
    Connector,
    Option(String),
    Root(String),
}

/// A connector configuration that cannot be built: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub key: ErrorKey,
    pub message: String,
}

impl ConfigError {
    /// An error about the connector as a whole (a missing option, a combination).
    pub fn here(message: impl Into<String>) -> Self {
        ConfigError {
            key: ErrorKey::Connector,
            message: message.into(),
        }
    }

    /// An error about one option, `option` relative to the connector.
    pub fn option(option: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: ErrorKey::Option(option.into()),
            message: message.into(),
        }
    }

    /// An error about a key from the root of the file.
    pub fn root(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: ErrorKey::Root(key.into()),
            message: message.into(),
        }
    }
}

/// Why a connectivity check failed: the configuration, or the connector's target.
#[derive(Debug, thiserror::Error)]
pub enum CheckFailure {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Connector(#[from] ConnectorError),
}

/// What a connector needs from the pipeline it is built into.
pub trait Context {
    /// A path as written in the file, resolved (relative to the pipeline file).
    fn resolve(&self, path: &Path) -> PathBuf;
    /// The pipeline's declared field types (`fields:`), which CSV cells are read as.
    fn declared_fields(&self) -> Vec<(String, ValueKind)>;
    /// The pipeline's name (ClickHouse batch ids carry it).
    fn pipeline_name(&self) -> String;
    /// The latest version of a schema from the pipeline's registry; `option` is the key that
    /// names it, for errors.
    fn schema(&self, option: &str, name: &str) -> Result<Arc<weir_schema::Schema>, ConfigError>;
    /// The checkpoint interval, when the pipeline checkpoints.
    fn checkpoint_interval(&self) -> Result<Option<std::time::Duration>, ConfigError>;
}

/// What a source produces: lines or rows read (undecodable ones as `Err`, to fail on or route
/// to the dead-letter output), or records made directly (a generator).
pub enum SourceOutput {
    Read(Stream<ReadResult>),
    Records(Stream<Record>),
}

/// A built source: its output, and a label for display (`in.jsonl (json_lines)`).
pub struct BuiltSource {
    pub output: SourceOutput,
    pub label: String,
}

/// What every source connector's options do.
pub trait SourceConnector {
    /// Adds the source to `env`. `at` is the source's key (`source`, `sources.orders`) for
    /// operator names; `fields` receives the records' field types when the source knows them.
    fn build(
        &self,
        ctx: &dyn Context,
        env: &Environment,
        at: &str,
        fields: &mut FieldTypes,
    ) -> Result<BuiltSource, ConfigError>;

    /// `weir validate --connect`: `Ok(false)` when there is nothing to check.
    fn check(&self, ctx: &dyn Context) -> Result<bool, CheckFailure>;

    /// The source is read by a single instance whatever the parallelism.
    fn single_reader(&self, _ctx: &dyn Context) -> bool {
        false
    }
}

/// What every sink connector's options do.
pub trait SinkConnector {
    /// Attaches the sink to `stream`; `name` is its key (`sink`, `sinks[1]`, `dead_letter`).
    fn build(
        &self,
        ctx: &dyn Context,
        name: &str,
        stream: &Stream<Record>,
    ) -> Result<(), ConfigError>;

    /// `weir validate --connect`: `Ok(false)` when there is nothing to check.
    fn check(&self, ctx: &dyn Context) -> Result<bool, CheckFailure>;

    /// Where the records go, for display (`ClickHouse table t at http://...`).
    fn destination(&self, ctx: &dyn Context) -> String;

    /// The file written, when the sink writes one.
    fn output_file(&self) -> Option<&Path> {
        None
    }
}

/// The connector types of one role (sources or sinks).
pub trait Kinds: Sized + Copy + 'static {
    /// `source` or `sink`, for messages.
    const ROLE: &'static str;
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
}

/// A configuration chosen by its `type`: reads the options struct of `kind`.
pub trait Typed<'de>: Sized {
    type Kind: Kinds;
    fn read<D: Deserializer<'de>>(kind: Self::Kind, d: D) -> Result<Self, D::Error>;
    /// The options `kind` accepts, by name.
    fn options(kind: Self::Kind) -> &'static [&'static str];
}

/// Options every connector of a role takes, read by the caller (e.g. a source's `event_time`).
pub trait Common<'de>: Default {
    const KEYS: &'static [&'static str];
    fn read<A: MapAccess<'de>>(&mut self, key: &'static str, map: &mut A) -> Result<(), A::Error>;
}

/// No common options.
#[derive(Debug, Default)]
pub struct NoCommon;

impl<'de> Common<'de> for NoCommon {
    const KEYS: &'static [&'static str] = &[];
    fn read<A: MapAccess<'de>>(&mut self, _: &'static str, _: &mut A) -> Result<(), A::Error> {
        Ok(())
    }
}

/// The names of the fields of a `#[derive(Deserialize)]` struct (what it accepts).
pub fn fields_of<'de, T: de::Deserialize<'de>>() -> &'static [&'static str] {
    struct Capture<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Capture<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("captured"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Capture(&mut fields));
    fields
}

/// `"`count` is not an option of a file source; its options are: ..."`: the message of an
/// option of another type. The pipeline loader adds the option to the error's key.
pub fn not_an_option(option: &str, kind: &str, role: &str, accepted: &[&str]) -> String {
    if accepted.is_empty() {
        format!("`{option}` is not an option of a {kind} {role}; it takes no options")
    } else {
        format!(
            "`{option}` is not an option of a {kind} {role}; its options are: {}",
            accepted.join(", ")
        )
    }
}

/// Reads a `type`-tagged connector map: `(config, common options)`. Keys before `type` other
/// than the common ones are kept as values and read once the type is known (their errors
/// then name the option, at the line of the map).
pub fn deserialize_tagged<'de, D, C, X>(d: D) -> Result<(C, X), D::Error>
where
    D: Deserializer<'de>,
    C: Typed<'de>,
    X: Common<'de>,
{
    d.deserialize_map(TaggedVisitor::<C, X>(std::marker::PhantomData))
}

struct TaggedVisitor<C, X>(std::marker::PhantomData<fn() -> (C, X)>);

fn names<K: Kinds>() -> String {
    K::ALL
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `type` value: one of the kinds' names.
struct KindSeed<K>(std::marker::PhantomData<K>);

impl<'de, K: Kinds> DeserializeSeed<'de> for KindSeed<K> {
    type Value = K;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<K, D::Error> {
        d.deserialize_str(self)
    }
}

impl<K: Kinds> Visitor<'_> for KindSeed<K> {
    type Value = K;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} type: one of {}", K::ROLE, names::<K>())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<K, E> {
        K::ALL
            .iter()
            .copied()
            .find(|k| k.name() == v)
            .ok_or_else(|| {
                E::custom(format_args!(
                    "unknown {} type `{v}`; the types are: {}",
                    K::ROLE,
                    names::<K>()
                ))
            })
    }
}

impl<'de, C: Typed<'de>, X: Common<'de>> Visitor<'de> for TaggedVisitor<C, X> {
    type Value = (C, X);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {} as a map with a `type` ({})",
            C::Kind::ROLE,
            names::<C::Kind>()
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(C, X), A::Error> {
        let mut common = X::default();
        let mut early: Vec<(String, serde_json::Value)> = Vec::new();
        let kind = loop {
            let Some(key) = map.next_key::<String>()? else {
                return Err(de::Error::custom(format_args!(
                    "a {} needs a `type`: one of {}",
                    C::Kind::ROLE,
                    names::<C::Kind>()
                )));
            };
            if key == "type" {
                break map.next_value_seed(KindSeed::<C::Kind>(std::marker::PhantomData))?;
            }
            match X::KEYS.iter().find(|k| **k == key) {
                Some(&k) => common.read(k, &mut map)?,
                None => early.push((key, map.next_value()?)),
            }
        };
        let accepted = C::options(kind);
        let rest = Rest {
            map: &mut map,
            common: &mut common,
            early: early.into_iter(),
            pending: None,
            kind: kind.name(),
            role: C::Kind::ROLE,
            accepted,
            common_keys: X::KEYS,
        };
        let config = C::read(kind, rest).map_err(|e: A::Error| {
            // serde's "missing field `x`" names the option; say which connector needs it.
            let text = e.to_string();
            match text
                .strip_prefix("missing field `")
                .and_then(|t| t.split_once('`'))
            {
                Some((field, _)) => de::Error::custom(format_args!(
                    "a {} {} needs `{field}`",
                    kind.name(),
                    C::Kind::ROLE
                )),
                None => e,
            }
        })?;
        Ok((config, common))
    }
}

/// The rest of a connector's map after `type`, as the map of its options struct.
struct Rest<'a, A, X> {
    map: &'a mut A,
    common: &'a mut X,
    early: std::vec::IntoIter<(String, serde_json::Value)>,
    pending: Option<(String, serde_json::Value)>,
    kind: &'static str,
    role: &'static str,
    accepted: &'static [&'static str],
    common_keys: &'static [&'static str],
}

impl<A, X> Rest<'_, A, X> {
    fn all_options(&self) -> Vec<&'static str> {
        self.accepted
            .iter()
            .chain(self.common_keys)
            .copied()
            .collect()
    }
}

impl<'de, A: MapAccess<'de>, X: Common<'de>> Deserializer<'de> for Rest<'_, A, X> {
    type Error = A::Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_map(self)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// A key of the rest: an option of the struct, or a common one (the seed handed back).
enum Keyed<K, V> {
    Field(V),
    Common(K, &'static str),
}

struct KeySeed<K> {
    seed: K,
    kind: &'static str,
    role: &'static str,
    accepted: &'static [&'static str],
    common_keys: &'static [&'static str],
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<K> {
    type Value = Keyed<K, K::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        // Inside the key's own deserialization: errors here name the key's line.
        d.deserialize_str(self)
    }
}

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for KeySeed<K> {
    type Value = Keyed<K, K::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an option name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if let Some(&k) = self.common_keys.iter().find(|k| **k == v) {
            return Ok(Keyed::Common(self.seed, k));
        }
        if v == "type" {
            return Err(E::custom("`type` is given twice (a key may appear once)"));
        }
        if !self.accepted.contains(&v) {
            let all: Vec<&str> = self
                .accepted
                .iter()
                .chain(self.common_keys)
                .copied()
                .collect();
            return Err(E::custom(not_an_option(v, self.kind, self.role, &all)));
        }
        let field: de::value::StrDeserializer<'_, E> = v.into_deserializer();
        self.seed.deserialize(field).map(Keyed::Field)
    }
}

impl<'de, A: MapAccess<'de>, X: Common<'de>> MapAccess<'de> for Rest<'_, A, X> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if let Some((key, value)) = self.early.next() {
            if !self.accepted.contains(&key.as_str()) {
                let message = not_an_option(&key, self.kind, self.role, &self.all_options());
                return Err(de::Error::custom(message));
            }
            let field: de::value::StrDeserializer<'_, A::Error> = key.as_str().into_deserializer();
            let out = seed.deserialize(field)?;
            self.pending = Some((key, value));
            return Ok(Some(out));
        }
        let mut seed = seed;
        loop {
            let key = KeySeed {
                seed,
                kind: self.kind,
                role: self.role,
                accepted: self.accepted,
                common_keys: self.common_keys,
            };
            match self.map.next_key_seed(key)? {
                None => return Ok(None),
                Some(Keyed::Field(value)) => return Ok(Some(value)),
                Some(Keyed::Common(back, key)) => {
                    self.common.read(key, &mut *self.map)?;
                    seed = back;
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.pending.take() {
            Some((key, value)) => seed
                .deserialize(value)
                .map_err(|e| de::Error::custom(format_args!("option `{key}`: {e}"))),
            None => self.map.next_value_seed(seed),
        }
    }
}

/// Lists the connectors of a role: the kind enum, the config enum and the dispatch to each
/// connector's options struct, from one line per connector:
///
/// ```ignore
/// connectors!(source SourceConfig, SourceKind, SourceConnector {
///     File = "file" => crate::file::FileSourceOptions,
/// });
/// ```
#[macro_export]
macro_rules! connectors {
    ($role:literal $config:ident, $kind:ident, $connector:ident {
        $($(#[$doc:meta])* $variant:ident = $name:literal => $options:ty,)*
    }) => {
        /// The connector types.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $kind {
            $($(#[$doc])* $variant,)*
        }

        impl $crate::config::Kinds for $kind {
            const ROLE: &'static str = $role;
            const ALL: &'static [Self] = &[$($kind::$variant,)*];
            fn name(self) -> &'static str {
                match self {
                    $($kind::$variant => $name,)*
                }
            }
        }

        impl $kind {
            /// The name written as `type:` in YAML.
            pub fn name(self) -> &'static str {
                <Self as $crate::config::Kinds>::name(self)
            }
        }

        /// A connector's typed options, by type.
        #[derive(Debug)]
        pub enum $config {
            $($(#[$doc])* $variant($options),)*
        }

        impl $config {
            pub fn kind(&self) -> $kind {
                match self {
                    $($config::$variant(_) => $kind::$variant,)*
                }
            }

            /// The connector, to build or check.
            pub fn connector(&self) -> &dyn $crate::config::$connector {
                match self {
                    $($config::$variant(options) => options,)*
                }
            }
        }

        impl<'de> $crate::config::Typed<'de> for $config {
            type Kind = $kind;
            fn read<D: serde::Deserializer<'de>>(kind: $kind, d: D) -> Result<Self, D::Error> {
                match kind {
                    $($kind::$variant => <$options as serde::Deserialize>::deserialize(d).map($config::$variant),)*
                }
            }
            fn options(kind: $kind) -> &'static [&'static str] {
                match kind {
                    $($kind::$variant => $crate::config::fields_of::<$options>(),)*
                }
            }
        }
    };
}

connectors!("source" SourceConfig, SourceKind, SourceConnector {
    /// A file of JSON lines or CSV, a directory or a glob; optionally followed.
    File = "file" => crate::file::FileSourceOptions,
    /// Standard input.
    Stdin = "stdin" => crate::stdin::StdinOptions,
    /// Deterministic records made from a counter.
    Generator = "generator" => crate::generator::GeneratorOptions,
    /// A Redis stream, through a consumer group.
    RedisStream = "redis_stream" => crate::redis_streams::RedisStreamSourceOptions,
});

connectors!("sink" SinkConfig, SinkKind, SinkConnector {
    /// Records as JSON lines on standard output.
    Stdout = "stdout" => crate::stdout::StdoutOptions,
    /// Records as JSON lines in a file.
    File = "file" => crate::file::FileSinkOptions,
    /// Counts and discards (for measuring).
    Discard = "discard" => crate::stdout::DiscardOptions,
    /// Batched inserts into ClickHouse, exactly once with checkpoints.
    Clickhouse = "clickhouse" => crate::clickhouse::ClickHouseSinkOptions,
    /// Appends to a Redis stream, exactly once with checkpoints.
    RedisStream = "redis_stream" => crate::redis_streams::RedisStreamSinkOptions,
    /// Batches of records POSTed to a webhook, at least once.
    Http = "http" => crate::http::HttpSinkOptions,
});

impl SourceConfig {
    /// The options this connector type accepts (its own, without the common ones).
    pub fn options_of(kind: SourceKind) -> &'static [&'static str] {
        <Self as Typed<'static>>::options(kind)
    }
}

impl SinkConfig {
    /// The options this connector type accepts (its own, without the common ones).
    pub fn options_of(kind: SinkKind) -> &'static [&'static str] {
        <Self as Typed<'static>>::options(kind)
    }
}

/// `scheme://user:password@host/...` without `user:password@`.
pub fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn without_credentials_hides_user_and_password() {
        assert_eq!(super::without_credentials("redis://:pw@h:1"), "redis://h:1");
        assert_eq!(super::without_credentials("http://h:1"), "http://h:1");
    }
}
