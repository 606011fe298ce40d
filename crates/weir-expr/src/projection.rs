//! Output records for `map` steps.

use crate::{CompiledExpr, EvalError, Expr, ExprError, FieldTypes};
use smallvec::SmallVec;
use std::sync::{Arc, OnceLock};
use weir_types::{Record, Shape, Value};

/// Which fields a [`Projection`]'s output records have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProjectionMode {
    /// Only the projected fields, in the order given.
    Only,
    /// The input record's fields, in their order, with projected fields overwriting same-named
    /// ones in place and new ones appended in the order given.
    Extend,
}

/// Shapes remembered in [`ProjectionMode::Extend`]; others take a slower path.
const SLOTS: usize = 8;

/// Where each output field comes from, for one input shape.
struct ExtendPlan {
    input: Arc<Shape>,
    output: Arc<Shape>,
    sources: Box<[Source]>,
}

#[derive(Clone, Copy)]
enum Source {
    Input(usize),
    Expr(usize),
}

/// A compiled `map` step: named expressions that build an output record from an input record.
///
/// The output [`Shape`] is allocated once (per input shape in [`ProjectionMode::Extend`]) and
/// shared by every output record. All expressions see the input record, not each other's
/// results.
///
/// ```
/// use weir_expr::{FieldTypes, Projection};
/// use weir_types::{Record, Value, ValueKind};
///
/// let fields = FieldTypes::default().with("value", ValueKind::Int).with("url", ValueKind::Str);
/// let map = Projection::compile(
///     &[("doubled", "value * 2 + 1"), ("page", "url.startsWith('/x') ? 'x' : 'other'")],
///     &fields,
/// )?;
/// let input = Record::from_pairs([("value", Value::Int(4)), ("url", Value::from("/y"))]);
/// let out = map.apply(&input)?;
/// assert_eq!(out.get("doubled"), Some(&Value::Int(9)));
/// assert_eq!(out.get("page"), Some(&Value::from("other")));
/// assert_eq!(out.len(), 2);
///
/// let extend = Projection::extend(&[("value", "value + 1")], &fields)?;
/// let out = extend.apply(&input)?;
/// assert_eq!(out.get("value"), Some(&Value::Int(5)));
/// assert_eq!(out.get("url"), Some(&Value::from("/y")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Projection {
    mode: ProjectionMode,
    names: Vec<Arc<str>>,
    exprs: Vec<CompiledExpr>,
    /// The output shape in [`ProjectionMode::Only`].
    shape: Arc<Shape>,
    plans: [OnceLock<ExtendPlan>; SLOTS],
    input_types: FieldTypes,
}

impl Projection {
    /// A projection whose output has only these `(name, expression)` fields.
    pub fn compile<N: AsRef<str>, E: AsRef<str>>(
        items: &[(N, E)],
        fields: &FieldTypes,
    ) -> Result<Self, ExprError> {
        Projection::with_mode(items, fields, ProjectionMode::Only)
    }

    /// A projection that keeps the input fields and adds or overwrites these.
    pub fn extend<N: AsRef<str>, E: AsRef<str>>(
        items: &[(N, E)],
        fields: &FieldTypes,
    ) -> Result<Self, ExprError> {
        Projection::with_mode(items, fields, ProjectionMode::Extend)
    }

    pub fn with_mode<N: AsRef<str>, E: AsRef<str>>(
        items: &[(N, E)],
        fields: &FieldTypes,
        mode: ProjectionMode,
    ) -> Result<Self, ExprError> {
        let mut names: Vec<Arc<str>> = Vec::with_capacity(items.len());
        let mut exprs = Vec::with_capacity(items.len());
        for (name, source) in items {
            let name = name.as_ref();
            if names.iter().any(|n| &**n == name) {
                return Err(ExprError::DuplicateOutput {
                    name: name.to_string(),
                });
            }
            exprs.push(Expr::compile(source.as_ref(), fields)?);
            names.push(Arc::from(name));
        }
        Ok(Projection {
            mode,
            shape: Arc::new(Shape::new(names.iter().cloned())),
            names,
            exprs,
            plans: Default::default(),
            input_types: fields.clone(),
        })
    }

    pub fn mode(&self) -> ProjectionMode {
        self.mode
    }

    /// The fields of the output records and their types where known; dynamic when the
    /// projection extends records whose fields are not known.
    pub fn output_types(&self) -> FieldTypes {
        let mut types = match self.mode {
            ProjectionMode::Only => FieldTypes::default(),
            ProjectionMode::Extend if self.input_types.is_dynamic() => {
                return FieldTypes::default();
            }
            ProjectionMode::Extend => self.input_types.clone(),
        };
        for (name, expr) in self.names.iter().zip(&self.exprs) {
            types.insert(name, expr.result_kind());
        }
        types
    }

    /// Builds the output record for one input record.
    pub fn apply(&self, record: &Record) -> Result<Record, EvalError> {
        match self.mode {
            ProjectionMode::Only => {
                let mut values = Vec::with_capacity(self.exprs.len());
                for expr in &self.exprs {
                    values.push(expr.eval(record)?);
                }
                Ok(with_shape(&self.shape, values))
            }
            ProjectionMode::Extend => match self.plan(record.shape()) {
                Some(plan) => {
                    let mut values = Vec::with_capacity(plan.sources.len());
                    for source in plan.sources.iter() {
                        values.push(match *source {
                            Source::Input(i) => record.get_index(i).cloned().unwrap_or_default(),
                            Source::Expr(j) => self.exprs[j].eval(record)?,
                        });
                    }
                    Ok(with_shape(&plan.output, values))
                }
                None => {
                    let mut computed = Vec::with_capacity(self.exprs.len());
                    for expr in &self.exprs {
                        computed.push(expr.eval(record)?);
                    }
                    let mut out = record.clone();
                    for (name, value) in self.names.iter().zip(computed) {
                        out.set(name, value);
                    }
                    Ok(out)
                }
            },
        }
    }

    /// Like [`apply`](Self::apply), reusing the input record's storage for the output (no
    /// allocation when it has room, which a `map` or a narrowing `select` always has). On an
    /// error the input record comes back unchanged, with the error.
    pub fn apply_owned(&self, record: Record) -> Result<Record, (EvalError, Record)> {
        // Every expression sees the input record: evaluate them all before changing it.
        let mut results: SmallVec<[Value; 8]> = SmallVec::with_capacity(self.exprs.len());
        for expr in &self.exprs {
            match expr.eval(&record) {
                Ok(v) => results.push(v),
                Err(e) => return Err((e, record)),
            }
        }
        match self.mode {
            ProjectionMode::Only => {
                let (_, mut values) = record.into_parts();
                values.clear();
                values.extend(results);
                Ok(with_shape(&self.shape, values))
            }
            ProjectionMode::Extend => match self.plan(record.shape()) {
                Some(plan) => {
                    let output = plan.output.clone();
                    let (_, mut values) = record.into_parts();
                    // The plan keeps the input's fields at their places and appends new ones.
                    let mut results: SmallVec<[Option<Value>; 8]> =
                        results.into_iter().map(Some).collect();
                    for (i, source) in plan.sources.iter().enumerate() {
                        if let Source::Expr(j) = *source {
                            let value = results[j].take().unwrap_or_default();
                            match values.get_mut(i) {
                                Some(slot) => *slot = value,
                                None => values.push(value),
                            }
                        }
                    }
                    Ok(with_shape(&output, values))
                }
                None => {
                    let mut out = record;
                    for (name, value) in self.names.iter().zip(results) {
                        out.set(name, value);
                    }
                    Ok(out)
                }
            },
        }
    }

    fn plan(&self, input: &Arc<Shape>) -> Option<&ExtendPlan> {
        for slot in &self.plans {
            let plan = match slot.get() {
                Some(plan) => plan,
                None => slot.get_or_init(|| self.make_plan(input)),
            };
            if Arc::ptr_eq(&plan.input, input) {
                return Some(plan);
            }
        }
        None
    }

    fn make_plan(&self, input: &Arc<Shape>) -> ExtendPlan {
        let mut names: Vec<Arc<str>> = input.names().to_vec();
        let mut sources: Vec<Source> = (0..names.len()).map(Source::Input).collect();
        for (j, name) in self.names.iter().enumerate() {
            match names.iter().position(|n| n == name) {
                Some(i) => sources[i] = Source::Expr(j),
                None => {
                    names.push(name.clone());
                    sources.push(Source::Expr(j));
                }
            }
        }
        ExtendPlan {
            input: input.clone(),
            output: Arc::new(Shape::new(names)),
            sources: sources.into(),
        }
    }
}

fn with_shape(shape: &Arc<Shape>, values: Vec<Value>) -> Record {
    // Invariant: one value per output field, by construction of the shape and the values.
    Record::with_shape(shape.clone(), values).expect("one value per output field")
}

impl std::fmt::Debug for Projection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projection")
            .field("mode", &self.mode)
            .field(
                "fields",
                &self
                    .names
                    .iter()
                    .zip(&self.exprs)
                    .map(|(n, e)| (n.clone(), e.source().to_string()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_types::ValueKind;

    fn input(v: i64) -> Record {
        Record::from_pairs([("a", Value::Int(v)), ("b", Value::from("x"))])
    }

    #[test]
    fn only_mode_shares_one_shape() {
        let p = Projection::compile(&[("y", "a + 1"), ("b", "b")], &FieldTypes::dynamic())
            .expect("compiles");
        let r1 = p.apply(&input(1)).expect("applies");
        let r2 = p.apply(&input(2)).expect("applies");
        assert!(Arc::ptr_eq(r1.shape(), r2.shape()));
        assert_eq!(r2.values(), &[Value::Int(3), Value::from("x")]);
    }

    #[test]
    fn extend_mode_overwrites_in_place_and_appends() {
        let p = Projection::extend(&[("c", "a * 10"), ("a", "a - 1")], &FieldTypes::dynamic())
            .expect("compiles");
        let rec = input(5);
        let r1 = p.apply(&rec).expect("applies");
        let names: Vec<&str> = r1.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(
            r1.values(),
            &[Value::Int(4), Value::from("x"), Value::Int(50)]
        );
        let r2 = p.apply(&rec).expect("applies");
        assert!(Arc::ptr_eq(r1.shape(), r2.shape()), "the plan is cached");
    }

    #[test]
    fn extend_mode_handles_more_shapes_than_slots() {
        let p = Projection::extend(&[("n", "a + 1")], &FieldTypes::dynamic()).expect("compiles");
        for i in 0..(SLOTS as i64 + 3) {
            // A fresh shape each time: from_pairs builds a new one.
            let out = p.apply(&input(i)).expect("applies");
            assert_eq!(out.get("n"), Some(&Value::Int(i + 1)));
            assert_eq!(out.get("b"), Some(&Value::from("x")));
        }
    }

    #[test]
    fn apply_owned_gives_what_apply_gives() {
        let fields = FieldTypes::dynamic();
        let only = Projection::compile(&[("y", "a + 1"), ("b", "b")], &fields).expect("compiles");
        let extend =
            Projection::extend(&[("c", "a * 10"), ("a", "a - 1")], &fields).expect("compiles");
        for p in [&only, &extend] {
            let owned = p.apply_owned(input(5)).expect("applies");
            assert_eq!(owned, p.apply(&input(5)).expect("applies"));
            assert_eq!(owned.shape(), p.apply(&input(5)).expect("applies").shape());
        }
        let failing = Projection::compile(&[("y", "b * 2")], &fields).expect("compiles");
        let (_, back) = failing.apply_owned(input(1)).expect_err("a string times 2");
        assert_eq!(back, input(1));
    }

    #[test]
    fn duplicate_outputs_are_refused() {
        let err = Projection::compile(&[("x", "1"), ("x", "2")], &FieldTypes::dynamic())
            .expect_err("duplicate");
        assert_eq!(
            err,
            ExprError::DuplicateOutput {
                name: "x".to_string()
            }
        );
    }

    #[test]
    fn output_types_follow_the_expressions() {
        let fields = FieldTypes::default()
            .with("a", ValueKind::Int)
            .with("b", ValueKind::Str);
        let p =
            Projection::extend(&[("a", "double(a)"), ("z", "b + '!'")], &fields).expect("compiles");
        let types = p.output_types();
        assert_eq!(types.get("a"), Some(Some(ValueKind::Float)));
        assert_eq!(types.get("b"), Some(Some(ValueKind::Str)));
        assert_eq!(types.get("z"), Some(Some(ValueKind::Str)));
        let only = Projection::compile(&[("z", "b")], &fields).expect("compiles");
        assert_eq!(only.output_types().names().collect::<Vec<_>>(), ["z"]);
    }
}
