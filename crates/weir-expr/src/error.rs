//! Compile-time and evaluation errors.

use std::fmt;
use std::sync::Arc;
use weir_types::ValueKind;

/// Where in an expression's source something is: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    /// The position of the `offset`-th character (0-based) of `source`.
    pub(crate) fn of_char_offset(source: &str, offset: usize) -> Pos {
        let mut pos = Pos { line: 1, column: 1 };
        for c in source.chars().take(offset) {
            if c == '\n' {
                pos.line += 1;
                pos.column = 1;
            } else {
                pos.column += 1;
            }
        }
        pos
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 1 {
            write!(f, "column {}", self.column)
        } else {
            write!(f, "line {}, column {}", self.line, self.column)
        }
    }
}

/// Why an expression could not be compiled. Every variant carries the expression's source
/// (`expr`) and the position of the offending part.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExprError {
    #[error("syntax error in `{expr}` at {pos}: {message}")]
    Syntax {
        expr: String,
        pos: Pos,
        message: String,
    },
    #[error("unknown field `{name}` in `{expr}` at {pos}{}", did_you_mean(.suggestions))]
    UnknownField {
        expr: String,
        pos: Pos,
        name: String,
        /// Known field names close to `name`, closest first.
        suggestions: Vec<String>,
    },
    #[error("unknown function `{name}` in `{expr}` at {pos}{}; known functions: {}", did_you_mean(.suggestions), crate::compile::FUNCTIONS.join(", "))]
    UnknownFunction {
        expr: String,
        pos: Pos,
        name: String,
        suggestions: Vec<String>,
    },
    #[error("type mismatch in `{expr}` at {pos}: {message}")]
    Type {
        expr: String,
        pos: Pos,
        message: String,
    },
    /// A constant part of the expression is invalid: a bad regular expression or timestamp
    /// literal, or a constant computation that always fails (`1 / 0`).
    #[error("invalid constant in `{expr}` at {pos}: {message}")]
    InvalidConstant {
        expr: String,
        pos: Pos,
        message: String,
    },
    #[error("unsupported in `{expr}` at {pos}: {message}")]
    Unsupported {
        expr: String,
        pos: Pos,
        message: String,
    },
    #[error("output field `{name}` is defined twice")]
    DuplicateOutput { name: String },
}

impl ExprError {
    /// Where the error is in the expression's source, when it is about one expression.
    pub fn pos(&self) -> Option<Pos> {
        match self {
            ExprError::Syntax { pos, .. }
            | ExprError::UnknownField { pos, .. }
            | ExprError::UnknownFunction { pos, .. }
            | ExprError::Type { pos, .. }
            | ExprError::InvalidConstant { pos, .. }
            | ExprError::Unsupported { pos, .. } => Some(*pos),
            ExprError::DuplicateOutput { .. } => None,
        }
    }
}

fn did_you_mean(suggestions: &[String]) -> String {
    match suggestions {
        [] => String::new(),
        [one] => format!(" (did you mean `{one}`?)"),
        many => {
            let quoted: Vec<String> = many.iter().map(|s| format!("`{s}`")).collect();
            format!(" (did you mean one of {}?)", quoted.join(", "))
        }
    }
}

/// Names among `candidates` close to `name` (edit distance, case-insensitive prefix), closest
/// first, at most three.
pub(crate) fn close_matches<'a, I>(name: &str, candidates: I) -> Vec<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = name.to_lowercase();
    let limit = (name.chars().count() / 3).max(1);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter_map(|c| {
            let d = edit_distance(&lower, &c.to_lowercase());
            let related = d <= limit
                || (lower.len() >= 3 && c.to_lowercase().starts_with(&lower))
                || (c.len() >= 3 && lower.starts_with(&c.to_lowercase()));
            related.then_some((d, c))
        })
        .collect();
    scored.sort();
    scored.dedup();
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// Edit distance over characters, counting a swap of neighbours as one edit (optimal string
/// alignment): `vaule` is one edit from `value`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i * w + j] = if i == 0 || j == 0 {
                i + j
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (d[(i - 1) * w + j - 1] + cost)
                    .min(d[(i - 1) * w + j] + 1)
                    .min(d[i * w + j - 1] + 1);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(d[(i - 2) * w + j - 2] + 1);
                }
                best
            };
        }
    }
    d[a.len() * w + b.len()]
}

/// A failure while evaluating a compiled expression on one record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("evaluating `{expr}`: {kind}")]
pub struct EvalError {
    /// The expression's source.
    pub expr: Arc<str>,
    pub kind: EvalErrorKind,
}

/// What went wrong while evaluating.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalErrorKind {
    #[error("division by zero")]
    DivisionByZero,
    #[error("integer overflow in `{op}`")]
    Overflow { op: &'static str },
    #[error("the record has no field `{name}` (guard with `has({name})`)")]
    MissingField { name: String },
    #[error("field `{name}` is null (guard with `has({name})`)")]
    NullField { name: String },
    #[error("field `{name}` should be {expected}, found {found}")]
    FieldType {
        name: String,
        expected: &'static str,
        found: ValueKind,
    },
    #[error("null operand in `{op}`")]
    NullOperand { op: &'static str },
    #[error("`{op}` expects {expected}, found {found}")]
    TypeMismatch {
        op: &'static str,
        expected: &'static str,
        found: ValueKind,
    },
    #[error("`{op}` cannot combine {left} and {right}")]
    Incompatible {
        op: &'static str,
        left: ValueKind,
        right: ValueKind,
    },
    #[error("a filter must give a bool, found {found}")]
    NotBool { found: ValueKind },
    #[error("no key `{key}` in the JSON value")]
    NoSuchKey { key: String },
    #[error("index {index} out of bounds for a JSON array of length {len}")]
    IndexOutOfBounds { index: i64, len: usize },
    #[error("cannot convert {value} to {to}")]
    Conversion { to: &'static str, value: String },
    #[error("invalid regular expression: {message}")]
    Regex { message: String },
}

/// The evaluation failure inside the closures; boxed so that results stay two words wide.
pub(crate) type Fault = Box<EvalErrorKind>;

pub(crate) fn fault(kind: EvalErrorKind) -> Fault {
    Box::new(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_matches_rank_by_distance() {
        let names = ["user_id", "user_ids", "value", "url"];
        assert_eq!(close_matches("usr_id", names), vec!["user_id", "user_ids"]);
        assert_eq!(close_matches("vaule", names), vec!["value"]);
        assert!(close_matches("zzz", names).is_empty());
        assert_eq!(close_matches("VALUE", names), vec!["value"]);
    }

    #[test]
    fn positions_count_characters_and_lines() {
        assert_eq!(Pos::of_char_offset("abc", 2), Pos { line: 1, column: 3 });
        assert_eq!(
            Pos::of_char_offset("a\nbé c", 5),
            Pos { line: 2, column: 4 }
        );
        assert_eq!(Pos { line: 1, column: 4 }.to_string(), "column 4");
        assert_eq!(Pos { line: 2, column: 1 }.to_string(), "line 2, column 1");
    }
}
