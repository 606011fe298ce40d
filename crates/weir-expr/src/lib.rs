//! Weir's expression language: the expressions of `filter` and `map` steps.
//!
//! Expressions are [CEL](https://cel.dev) (Common Expression Language), parsed by the `cel`
//! crate, type-checked once against the record's known fields ([`FieldTypes`]) and compiled
//! into a tree of closures over [`weir_types::Record`]: no interpretation per record, no
//! allocation for integer and boolean results, and field positions resolved once per record
//! shape. The crate owns the expression semantics (see `README.md` next to this crate for the
//! language reference), [`Expr`] / [`CompiledExpr`] for single expressions and [`Projection`]
//! for building output records in `map` steps.
//!
//! ```
//! use weir_expr::{Expr, FieldTypes};
//! use weir_types::{Record, Value, ValueKind};
//!
//! let fields = FieldTypes::default()
//!     .with("value", ValueKind::Int)
//!     .with("key", ValueKind::Int);
//! let filter = Expr::compile_filter("value % 2 == 0 && key < 5000", &fields)?;
//! let record = Record::from_pairs([("value", Value::Int(4)), ("key", Value::Int(7))]);
//! assert!(filter.eval_bool(&record)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod compile;
mod error;
mod ops;
mod projection;
mod shape_cache;

pub use error::{EvalError, EvalErrorKind, ExprError, Pos};
pub use projection::{Projection, ProjectionMode};

use compile::{Compiler, Node, Ty};
use shape_cache::{Ctx, ShapeCache};
use std::fmt;
use std::sync::Arc;
use weir_types::{Record, Value, ValueKind};

/// The fields an expression may read, with their types when known.
///
/// An empty `FieldTypes` (the default) means the fields are not known in advance: any name is
/// a field and every type is checked at run time. Once a field is added, the set is closed:
/// naming another field is a compile-time error that suggests close matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldTypes {
    fields: Vec<(Arc<str>, Option<ValueKind>)>,
}

impl FieldTypes {
    /// No known fields: every name is a field, typed at run time.
    pub fn dynamic() -> Self {
        FieldTypes::default()
    }

    /// Adds (or retypes) a field. `ValueKind::Null` means "type known only at run time".
    pub fn with(mut self, name: &str, kind: ValueKind) -> Self {
        self.insert(name, (kind != ValueKind::Null).then_some(kind));
        self
    }

    /// Adds a field whose type is known only at run time.
    pub fn with_untyped(mut self, name: &str) -> Self {
        self.insert(name, None);
        self
    }

    /// Adds or retypes a field; `None` means "type known only at run time".
    pub fn insert(&mut self, name: &str, kind: Option<ValueKind>) {
        match self.fields.iter_mut().find(|(n, _)| &**n == name) {
            Some(entry) => entry.1 = kind,
            None => self.fields.push((Arc::from(name), kind)),
        }
    }

    /// The fields of a sample record, typed by its values (null values stay untyped).
    pub fn of_record(record: &Record) -> Self {
        let mut types = FieldTypes::default();
        for (name, value) in record.iter() {
            types.insert(name, (!value.is_null()).then(|| value.kind()));
        }
        types
    }

    /// Whether no field is known (every name is accepted, typed at run time).
    pub fn is_dynamic(&self) -> bool {
        self.fields.is_empty()
    }

    /// `Some(kind)` for a known field (`kind` is `None` when untyped), `None` for an unknown
    /// one.
    pub fn get(&self, name: &str) -> Option<Option<ValueKind>> {
        self.fields
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, kind)| *kind)
    }

    /// The known field names, in insertion order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(n, _)| &**n)
    }
}

impl<S: AsRef<str>> FromIterator<(S, ValueKind)> for FieldTypes {
    fn from_iter<I: IntoIterator<Item = (S, ValueKind)>>(iter: I) -> Self {
        iter.into_iter()
            .fold(FieldTypes::default(), |types, (name, kind)| {
                types.with(name.as_ref(), kind)
            })
    }
}

/// The deepest nesting of brackets, parentheses and literals accepted.
pub const MAX_BRACKET_DEPTH: usize = 100;

/// The longest expression source accepted, in characters.
pub const MAX_SOURCE_CHARS: usize = 4096;

/// Entry point: compiles expression source into a [`CompiledExpr`].
#[derive(Debug)]
pub struct Expr;

impl Expr {
    /// Parses, type-checks and compiles `source` against `fields`.
    ///
    /// ```
    /// use weir_expr::{Expr, FieldTypes};
    /// use weir_types::{Record, Value};
    ///
    /// let page = Expr::compile("url.startsWith('/x') ? 'x' : 'other'", &FieldTypes::dynamic())?;
    /// let record = Record::from_pairs([("url", Value::from("/x/1"))]);
    /// assert_eq!(page.eval(&record)?, Value::from("x"));
    ///
    /// let err = Expr::compile("\"abc\" * 2", &FieldTypes::dynamic()).unwrap_err();
    /// assert!(err.to_string().contains("cannot apply `*` to string and int"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compile(source: &str, fields: &FieldTypes) -> Result<CompiledExpr, ExprError> {
        // cel's parser recurses once per chained operator; past a few thousand operators it
        // overflows a 2 MiB thread stack. No pipeline expression comes close to this bound.
        if source.chars().count() > MAX_SOURCE_CHARS {
            return Err(ExprError::Unsupported {
                expr: source.chars().take(40).chain("...".chars()).collect(),
                pos: Pos {
                    line: 1,
                    column: MAX_SOURCE_CHARS + 1,
                },
                message: format!("expressions are limited to {MAX_SOURCE_CHARS} characters"),
            });
        }
        // cel's parser recurses (deeper still in its error recovery) per bracket level: its
        // limit is the documented one, which a 2 MiB thread stack holds in a debug build.
        let (ast, info) = cel::Env::default()
            .parser()
            .max_recursion_depth(MAX_BRACKET_DEPTH as u16)
            .parse_with_source_info(source)
            .map_err(|errors| syntax_error(source, &errors))?;
        let mut compiler = Compiler::new(source, info, fields);
        let root = compiler.compile_root(&ast)?;
        Ok(CompiledExpr {
            source: Arc::from(source),
            root,
            cache: ShapeCache::new(compiler.used),
        })
    }

    /// Like [`Expr::compile`], and also refuses at compile time an expression that cannot
    /// give a bool (`value + 1`).
    pub fn compile_filter(source: &str, fields: &FieldTypes) -> Result<CompiledExpr, ExprError> {
        let compiled = Expr::compile(source, fields)?;
        match compiled.root.ty() {
            Ty::Bool | Ty::Dyn => Ok(compiled),
            other => Err(ExprError::Type {
                expr: source.to_string(),
                pos: Pos { line: 1, column: 1 },
                message: format!(
                    "a filter must give a bool, this expression gives {}",
                    other.kind().map_or("a dynamic value", ValueKind::name)
                ),
            }),
        }
    }
}

fn syntax_error(source: &str, errors: &cel::ParseErrors) -> ExprError {
    // cel reports its recursion limit as a debug dump of an internal error; say it plainly.
    if errors
        .errors
        .iter()
        .any(|e| e.msg.contains("Recursion limit") || e.msg.contains("recursion limit"))
    {
        return ExprError::Unsupported {
            expr: source.chars().take(40).chain("...".chars()).collect(),
            pos: Pos { line: 1, column: 1 },
            message: format!(
                "the expression nests brackets deeper than {MAX_BRACKET_DEPTH} levels"
            ),
        };
    }
    let (pos, message) = match errors.errors.first() {
        Some(e) => (
            Pos {
                line: usize::try_from(e.pos.0).unwrap_or(1).max(1),
                column: usize::try_from(e.pos.1).unwrap_or(1).max(1),
            },
            e.msg
                .strip_prefix("Syntax error: ")
                .unwrap_or(&e.msg)
                .to_string(),
        ),
        None => (
            Pos { line: 1, column: 1 },
            "unparsable expression".to_string(),
        ),
    };
    ExprError::Syntax {
        expr: source.to_string(),
        pos,
        message,
    }
}

/// A compiled expression. Cheap to evaluate, `Send + Sync`; share it between threads behind
/// an `Arc`.
///
/// Null semantics: reading a field the record lacks is an error ([`EvalErrorKind::MissingField`])
/// unless guarded by `has(field)`, which is true when the field is present and not null. A null
/// in arithmetic, ordering (`<`) or a function is an error; `==`/`!=` with null are plain
/// comparisons (`x == null` is true exactly when `x` is null).
pub struct CompiledExpr {
    source: Arc<str>,
    root: Node,
    cache: ShapeCache,
}

impl CompiledExpr {
    /// The expression's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The kind of every result, when known at compile time.
    pub fn result_kind(&self) -> Option<ValueKind> {
        self.root.ty().kind()
    }

    #[inline]
    fn ctx<'r>(&'r self, record: &'r Record) -> Ctx<'r> {
        let positions = if self.cache.is_empty() {
            None
        } else {
            self.cache.resolve(record.shape())
        };
        Ctx { record, positions }
    }

    #[allow(clippy::boxed_local)] // evaluation faults arrive boxed; see `error::Fault`
    fn error(&self, kind: Box<EvalErrorKind>) -> EvalError {
        EvalError {
            expr: self.source.clone(),
            kind: *kind,
        }
    }

    /// Evaluates the expression on one record.
    pub fn eval(&self, record: &Record) -> Result<Value, EvalError> {
        let ctx = self.ctx(record);
        self.root.eval(&ctx).map_err(|k| self.error(k))
    }

    /// Evaluates a filter: a result other than a bool is an [`EvalErrorKind::NotBool`] error.
    #[inline]
    pub fn eval_bool(&self, record: &Record) -> Result<bool, EvalError> {
        let ctx = self.ctx(record);
        let result = match &self.root {
            Node::Bool(f) => f(&ctx),
            Node::Const(Value::Bool(b)) => Ok(*b),
            other => match other.eval(&ctx) {
                Ok(Value::Bool(b)) => Ok(b),
                Ok(v) => Err(Box::new(EvalErrorKind::NotBool { found: v.kind() })),
                Err(e) => Err(e),
            },
        };
        result.map_err(|k| self.error(k))
    }
}

impl fmt::Debug for CompiledExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledExpr")
            .field("source", &self.source)
            .field("result_kind", &self.result_kind())
            .finish()
    }
}
