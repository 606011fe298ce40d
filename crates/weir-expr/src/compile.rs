//! From cel's AST to a tree of closures, type-checking on the way.
//!
//! Each AST node becomes a [`Node`]: a constant, or a boxed closure returning a `bool`, an
//! `i64`, an `f64` (no [`Value`] built for those) or a [`Value`]. Operators whose operand types
//! are known at compile time get closures specialised for them (`value % 2` becomes one
//! closure that reads the field and computes `checked_rem(2)`); operands typed only at run
//! time go through the generic operations of [`crate::ops`]. Constant sub-expressions are
//! folded at compile time, so `timestamp("2024-05-01")` or a bad regular expression literal
//! costs nothing per record and fails at compile time.

use crate::FieldTypes;
use crate::error::{EvalErrorKind, ExprError, Fault, Pos, close_matches, fault};
use crate::ops::{self, ArithOp, CmpOp, KeyRef, Miss, R};
use crate::shape_cache::Ctx;
use cel::common::ast::{CallExpr, Expr as Ast, IdedExpr, LiteralValue, SourceInfo, operators};
use regex::Regex;
use std::cmp::Ordering;
use std::sync::Arc;
use weir_types::{Record, Value, ValueKind, parse_datetime};

/// The functions the compiler knows, for error messages and the reference.
pub(crate) const FUNCTIONS: &[&str] = &[
    "abs",
    "bool",
    "contains",
    "double",
    "endsWith",
    "has",
    "int",
    "lower",
    "lowerAscii",
    "matches",
    "max",
    "min",
    "size",
    "startsWith",
    "string",
    "timestamp",
    "upper",
    "upperAscii",
];

pub(crate) type Fun<T> = Box<dyn Fn(&Ctx<'_>) -> R<T> + Send + Sync>;

/// The static type of a sub-expression. `Dyn` is known only at run time; `Json` is a nested
/// JSON document (object or array).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    Null,
    Bool,
    Int,
    Float,
    Str,
    Timestamp,
    Json,
    Dyn,
}

impl Ty {
    pub(crate) fn of_kind(kind: ValueKind) -> Ty {
        match kind {
            ValueKind::Null => Ty::Null,
            ValueKind::Bool => Ty::Bool,
            ValueKind::Int => Ty::Int,
            ValueKind::Float => Ty::Float,
            ValueKind::Str => Ty::Str,
            ValueKind::Timestamp => Ty::Timestamp,
            ValueKind::Json => Ty::Json,
        }
    }

    /// The kind every result has, when it is known at compile time.
    pub(crate) fn kind(self) -> Option<ValueKind> {
        Some(match self {
            Ty::Null => ValueKind::Null,
            Ty::Bool => ValueKind::Bool,
            Ty::Int => ValueKind::Int,
            Ty::Float => ValueKind::Float,
            Ty::Str => ValueKind::Str,
            Ty::Timestamp => ValueKind::Timestamp,
            Ty::Json => ValueKind::Json,
            Ty::Dyn => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Ty::Null => "null",
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::Float => "float",
            Ty::Str => "string",
            Ty::Timestamp => "timestamp",
            Ty::Json => "JSON",
            Ty::Dyn => "dynamic",
        }
    }

    fn is_num(self) -> bool {
        matches!(self, Ty::Int | Ty::Float)
    }
}

/// A compiled sub-expression.
pub(crate) enum Node {
    Const(Value),
    Bool(Fun<bool>),
    Int(Fun<i64>),
    Float(Fun<f64>),
    /// Any other result; the type says what is known about it.
    Val(Ty, Fun<Value>),
}

impl Node {
    pub(crate) fn ty(&self) -> Ty {
        match self {
            Node::Const(v) => Ty::of_kind(v.kind()),
            Node::Bool(_) => Ty::Bool,
            Node::Int(_) => Ty::Int,
            Node::Float(_) => Ty::Float,
            Node::Val(ty, _) => *ty,
        }
    }

    fn is_const(&self) -> bool {
        matches!(self, Node::Const(_))
    }

    pub(crate) fn eval(&self, c: &Ctx<'_>) -> R<Value> {
        match self {
            Node::Const(v) => Ok(v.clone()),
            Node::Bool(f) => f(c).map(Value::Bool),
            Node::Int(f) => f(c).map(Value::Int),
            Node::Float(f) => f(c).map(Value::Float),
            Node::Val(_, f) => f(c),
        }
    }

    fn into_val(self) -> Fun<Value> {
        match self {
            Node::Const(v) => Box::new(move |_| Ok(v.clone())),
            Node::Bool(f) => Box::new(move |c| f(c).map(Value::Bool)),
            Node::Int(f) => Box::new(move |c| f(c).map(Value::Int)),
            Node::Float(f) => Box::new(move |c| f(c).map(Value::Float)),
            Node::Val(_, f) => f,
        }
    }

    fn into_bool(self, op: &'static str) -> Fun<bool> {
        match self {
            Node::Bool(f) => f,
            other => {
                let f = other.into_val();
                Box::new(move |c| ops::expect_bool(op, &f(c)?))
            }
        }
    }

    fn into_int(self, op: &'static str) -> Fun<i64> {
        match self {
            Node::Int(f) => f,
            other => {
                let f = other.into_val();
                Box::new(move |c| ops::expect_int(op, &f(c)?))
            }
        }
    }

    fn into_float(self, op: &'static str) -> Fun<f64> {
        match self {
            Node::Float(f) => f,
            Node::Int(f) => Box::new(move |c| f(c).map(|i| i as f64)),
            other => {
                let f = other.into_val();
                Box::new(move |c| ops::expect_num(op, &f(c)?))
            }
        }
    }
}

/// An operand of a specialised binary operator: a constant is captured by value, so that
/// `value % 2` costs one closure call, not two.
enum Arg<T> {
    K(T),
    F(Fun<T>),
}

fn int_arg(node: Node, op: &'static str) -> Arg<i64> {
    match node {
        Node::Const(Value::Int(k)) => Arg::K(k),
        other => Arg::F(other.into_int(op)),
    }
}

fn float_arg(node: Node, op: &'static str) -> Arg<f64> {
    match node {
        Node::Const(Value::Int(k)) => Arg::K(k as f64),
        Node::Const(Value::Float(k)) => Arg::K(k),
        other => Arg::F(other.into_float(op)),
    }
}

fn binop<A, T, F>(l: Arg<A>, r: Arg<A>, f: F) -> Fun<T>
where
    A: Copy + Send + Sync + 'static,
    T: 'static,
    F: Fn(A, A) -> R<T> + Copy + Send + Sync + 'static,
{
    match (l, r) {
        (Arg::F(a), Arg::K(k)) => Box::new(move |c| f(a(c)?, k)),
        (Arg::K(k), Arg::F(b)) => Box::new(move |c| f(k, b(c)?)),
        (Arg::F(a), Arg::F(b)) => Box::new(move |c| f(a(c)?, b(c)?)),
        (Arg::K(x), Arg::K(y)) => Box::new(move |_| f(x, y)),
    }
}

/// A binary operator on values typed at run time; a constant operand is captured by value.
fn val_binop<T, F>(l: Node, r: Node, f: F) -> Fun<T>
where
    T: 'static,
    F: Fn(&Value, &Value) -> R<T> + Copy + Send + Sync + 'static,
{
    match (l, r) {
        (l, Node::Const(k)) if !l.is_const() => {
            let a = l.into_val();
            Box::new(move |c| f(&a(c)?, &k))
        }
        (Node::Const(k), r) if !r.is_const() => {
            let b = r.into_val();
            Box::new(move |c| f(&k, &b(c)?))
        }
        (l, r) => {
            let (a, b) = (l.into_val(), r.into_val());
            Box::new(move |c| f(&a(c)?, &b(c)?))
        }
    }
}

fn int_arith(op: ArithOp, l: Arg<i64>, r: Arg<i64>) -> Fun<i64> {
    match op {
        ArithOp::Add => binop(l, r, |x, y| ArithOp::Add.int(x, y)),
        ArithOp::Sub => binop(l, r, |x, y| ArithOp::Sub.int(x, y)),
        ArithOp::Mul => binop(l, r, |x, y| ArithOp::Mul.int(x, y)),
        ArithOp::Div => binop(l, r, |x, y| ArithOp::Div.int(x, y)),
        ArithOp::Rem => binop(l, r, |x, y| ArithOp::Rem.int(x, y)),
    }
}

fn float_arith(op: ArithOp, l: Arg<f64>, r: Arg<f64>) -> Fun<f64> {
    match op {
        ArithOp::Add => binop(l, r, |x, y| ArithOp::Add.float(x, y)),
        ArithOp::Sub => binop(l, r, |x, y| ArithOp::Sub.float(x, y)),
        ArithOp::Mul => binop(l, r, |x, y| ArithOp::Mul.float(x, y)),
        ArithOp::Div => binop(l, r, |x, y| ArithOp::Div.float(x, y)),
        ArithOp::Rem => binop(l, r, |x, y| ArithOp::Rem.float(x, y)),
    }
}

fn ordered_cmp<A>(op: CmpOp, l: Arg<A>, r: Arg<A>) -> Fun<bool>
where
    A: PartialOrd + Copy + Send + Sync + 'static,
{
    match op {
        CmpOp::Eq => binop(l, r, |x, y| Ok(x == y)),
        CmpOp::Ne => binop(l, r, |x, y| Ok(x != y)),
        CmpOp::Lt => binop(l, r, |x, y| Ok(x < y)),
        CmpOp::Le => binop(l, r, |x, y| Ok(x <= y)),
        CmpOp::Gt => binop(l, r, |x, y| Ok(x > y)),
        CmpOp::Ge => binop(l, r, |x, y| Ok(x >= y)),
    }
}

/// One step of a nested access (`.user`, `["k"]`, `[0]`, `[key_field]`).
enum Seg {
    Key(Box<str>),
    Index(i64),
    Dyn(Fun<Value>),
}

fn walk<'j>(
    mut j: &'j serde_json::Value,
    segs: &[Seg],
    c: &Ctx<'_>,
) -> Result<&'j serde_json::Value, Miss> {
    for seg in segs {
        j = match seg {
            Seg::Key(k) => ops::json_step(j, KeyRef::Key(k))?,
            Seg::Index(i) => ops::json_step(j, KeyRef::Index(*i))?,
            Seg::Dyn(f) => {
                let key = f(c).map_err(Miss::Fault)?;
                ops::json_step(j, KeyRef::of(&key).map_err(Miss::Fault)?)?
            }
        };
    }
    Ok(j)
}

fn not_json(v: &Value) -> Fault {
    ops::type_mismatch(".", "a JSON object or array", v)
}

fn missing(name: &str) -> Fault {
    fault(EvalErrorKind::MissingField {
        name: name.to_string(),
    })
}

/// A compiled path: its base, its steps, and the base field's slot and name when the base is
/// a record field.
type PathParts = (Fun<Value>, Vec<Seg>, Option<(usize, Arc<str>)>);

/// The base of a path: a record field (looked up through the shape cache) or any expression.
enum Base<'e> {
    Field(&'e str),
    Expr(&'e IdedExpr),
}

/// Where a step of a path comes from in the AST.
enum SegAst<'e> {
    Key(&'e str),
    Expr(&'e IdedExpr),
}

pub(crate) struct Compiler<'a> {
    source: &'a str,
    info: SourceInfo,
    fields: &'a FieldTypes,
    /// The record fields the expression reads; a field's index here is its slot.
    pub(crate) used: Vec<Arc<str>>,
    /// Compile field reads without their declared type (used around `== null` and for a
    /// bare field at the root, where a null must come through instead of failing).
    loose: bool,
}

impl<'a> Compiler<'a> {
    pub(crate) fn new(source: &'a str, info: SourceInfo, fields: &'a FieldTypes) -> Self {
        Compiler {
            source,
            info,
            fields,
            used: Vec::new(),
            loose: false,
        }
    }

    fn pos(&self, id: u64) -> Pos {
        match self.info.offset_for(id) {
            Some((start, _)) => Pos::of_char_offset(self.source, start as usize),
            None => Pos { line: 1, column: 1 },
        }
    }

    /// The position of a call's function name (cel records the call at its `(`).
    fn call_pos(&self, id: u64, name: &str) -> Pos {
        let Some((start, _)) = self.info.offset_for(id) else {
            return Pos { line: 1, column: 1 };
        };
        let start = start as usize;
        let chars: Vec<char> = self.source.chars().collect();
        let n = name.chars().count();
        let named = start >= n
            && chars.get(start) == Some(&'(')
            && chars[start - n..start].iter().copied().eq(name.chars());
        Pos::of_char_offset(self.source, if named { start - n } else { start })
    }

    fn type_error(&self, id: u64, message: impl Into<String>) -> ExprError {
        ExprError::Type {
            expr: self.source.to_string(),
            pos: self.pos(id),
            message: message.into(),
        }
    }

    fn unsupported(&self, id: u64, message: impl Into<String>) -> ExprError {
        ExprError::Unsupported {
            expr: self.source.to_string(),
            pos: self.pos(id),
            message: message.into(),
        }
    }

    fn slot(&mut self, name: &str) -> usize {
        match self.used.iter().position(|n| &**n == name) {
            Some(i) => i,
            None => {
                self.used.push(Arc::from(name));
                self.used.len() - 1
            }
        }
    }

    /// Evaluates a sub-expression whose operands are all constants, once, now.
    fn fold(&self, id: u64, node: Node) -> Result<Node, ExprError> {
        if node.is_const() {
            return Ok(node);
        }
        let record = Record::new();
        let ctx = Ctx {
            record: &record,
            positions: None,
        };
        node.eval(&ctx)
            .map(Node::Const)
            .map_err(|f| ExprError::InvalidConstant {
                expr: self.source.to_string(),
                pos: self.pos(id),
                message: f.to_string(),
            })
    }

    /// Compiles the whole expression.
    pub(crate) fn compile_root(&mut self, e: &IdedExpr) -> Result<Node, ExprError> {
        // Compiling and evaluating recurse once per level: bound the depth so that a
        // pathological expression is refused instead of overflowing the stack.
        if let Some(deep) = too_deep(e) {
            return Err(self.unsupported(
                deep,
                format!("the expression nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        // A bare field as the whole expression passes its value through, null included.
        if self.field_ref(e).is_some() {
            self.loose = true;
        }
        let node = self.compile(e);
        self.loose = false;
        node
    }

    /// Whether `record.x` / `record["x"]` mean the field `x`: always, unless the known fields
    /// include one named `record`.
    fn record_alias(&self, name: &str) -> bool {
        name == "record" && self.fields.get("record").is_none()
    }

    /// The record field an expression names, if it is a plain field reference.
    fn field_ref<'e>(&self, e: &'e IdedExpr) -> Option<&'e str> {
        match &e.expr {
            Ast::Ident(name) if self.fields.is_dynamic() || !self.record_alias(name) => Some(name),
            Ast::Select(s) if !s.test => match &s.operand.expr {
                Ast::Ident(root) if self.record_alias(root) => Some(&s.field),
                _ => None,
            },
            Ast::Call(call)
                if call.func_name == operators::INDEX
                    && call.target.is_none()
                    && call.args.len() == 2 =>
            {
                match (&call.args[0].expr, &call.args[1].expr) {
                    (Ast::Ident(root), Ast::Literal(LiteralValue::String(key)))
                        if self.record_alias(root) =>
                    {
                        Some(key.inner())
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The declared type of a field, or an "unknown field" error.
    fn field_type(&self, id: u64, name: &str) -> Result<Ty, ExprError> {
        if self.fields.is_dynamic() {
            return Ok(Ty::Dyn);
        }
        match self.fields.get(name) {
            Some(kind) => Ok(kind.map_or(Ty::Dyn, Ty::of_kind)),
            None => Err(ExprError::UnknownField {
                expr: self.source.to_string(),
                pos: self.pos(id),
                name: name.to_string(),
                suggestions: close_matches(name, self.fields.names()),
            }),
        }
    }

    fn compile_field(&mut self, id: u64, name: &str) -> Result<Node, ExprError> {
        let ty = self.field_type(id, name)?;
        let slot = self.slot(name);
        let name: Arc<str> = Arc::from(name);
        if self.loose {
            return Ok(Node::Val(
                ty,
                Box::new(move |c| c.field(slot, &name).cloned().ok_or_else(|| missing(&name))),
            ));
        }
        Ok(match ty {
            Ty::Int => Node::Int(Box::new(move |c| match c.field(slot, &name) {
                Some(Value::Int(i)) => Ok(*i),
                Some(other) => Err(field_type_fault(&name, "int", other)),
                None => Err(missing(&name)),
            })),
            Ty::Float => Node::Float(Box::new(move |c| match c.field(slot, &name) {
                Some(Value::Float(f)) => Ok(*f),
                Some(Value::Int(i)) => Ok(*i as f64),
                Some(other) => Err(field_type_fault(&name, "float", other)),
                None => Err(missing(&name)),
            })),
            Ty::Bool => Node::Bool(Box::new(move |c| match c.field(slot, &name) {
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(field_type_fault(&name, "bool", other)),
                None => Err(missing(&name)),
            })),
            // A datetime field may arrive as text (JSON has no timestamps): parse it on read.
            Ty::Timestamp => Node::Val(
                Ty::Timestamp,
                Box::new(move |c| match c.field(slot, &name) {
                    Some(Value::Str(text)) => {
                        parse_datetime(text).map(Value::Timestamp).ok_or_else(|| {
                            fault(EvalErrorKind::Conversion {
                                to: "timestamp",
                                value: format!("{text:?} (field `{name}`)"),
                            })
                        })
                    }
                    Some(other) => Ok(other.clone()),
                    None => Err(missing(&name)),
                }),
            ),
            ty => Node::Val(
                ty,
                Box::new(move |c| c.field(slot, &name).cloned().ok_or_else(|| missing(&name))),
            ),
        })
    }

    pub(crate) fn compile(&mut self, e: &IdedExpr) -> Result<Node, ExprError> {
        if let Some(name) = self.field_ref(e) {
            return self.compile_field(e.id, name);
        }
        match &e.expr {
            Ast::Literal(lit) => self.compile_literal(e.id, lit),
            Ast::Ident(name) => Err(self.unsupported(
                e.id,
                format!("`{name}` alone is not a value; write `{name}.field`"),
            )),
            Ast::Select(_) => self.compile_path(e),
            Ast::Call(call) => self.compile_call(e, call),
            Ast::List(_) => Err(self.unsupported(
                e.id,
                "list literals are only supported on the right of `in`",
            )),
            Ast::Map(_) | Ast::Struct(_) => {
                Err(self.unsupported(e.id, "map and message literals are not supported"))
            }
            Ast::Comprehension(_) => Err(self.unsupported(
                e.id,
                "comprehensions (all, exists, map, filter) are not supported",
            )),
            Ast::Unspecified => Err(self.unsupported(e.id, "an empty expression")),
        }
    }

    fn compile_literal(&self, id: u64, lit: &LiteralValue) -> Result<Node, ExprError> {
        Ok(Node::Const(match lit {
            LiteralValue::Boolean(b) => Value::Bool(*b.inner()),
            LiteralValue::Int(i) => Value::Int(*i.inner()),
            LiteralValue::UInt(u) => match i64::try_from(*u.inner()) {
                Ok(i) => Value::Int(i),
                Err(_) => {
                    return Err(ExprError::InvalidConstant {
                        expr: self.source.to_string(),
                        pos: self.pos(id),
                        message: format!("{} does not fit a 64-bit signed int", u.inner()),
                    });
                }
            },
            LiteralValue::Double(d) => Value::Float(*d.inner()),
            LiteralValue::String(s) => Value::from(s.inner()),
            LiteralValue::Null => Value::Null,
            LiteralValue::Bytes(_) => {
                return Err(self.unsupported(id, "bytes literals are not supported"));
            }
        }))
    }

    /// Splits `a.b["c"][0]` into its base and its steps.
    fn split_path<'e>(&self, e: &'e IdedExpr) -> (Base<'e>, u64, Vec<SegAst<'e>>) {
        let mut segs = Vec::new();
        let mut cur = e;
        let base = loop {
            if let Some(name) = self.field_ref(cur) {
                break Base::Field(name);
            }
            match &cur.expr {
                Ast::Select(s) if !s.test => {
                    segs.push(SegAst::Key(&s.field));
                    cur = &s.operand;
                }
                Ast::Call(call) if is_index(call) => {
                    segs.push(SegAst::Expr(&call.args[1]));
                    cur = &call.args[0];
                }
                _ => break Base::Expr(cur),
            }
        };
        segs.reverse();
        (base, cur.id, segs)
    }

    /// Compiles a path's base and steps; the base must be JSON (or dynamic).
    fn compile_path_parts(&mut self, e: &IdedExpr) -> Result<PathParts, ExprError> {
        let (base, base_id, seg_asts) = self.split_path(e);
        let (base_node, field) = match base {
            Base::Field(name) => {
                let saved = std::mem::replace(&mut self.loose, true);
                let node = self.compile_field(base_id, name);
                self.loose = saved;
                let slot = self.slot(name);
                (node?, Some((slot, Arc::from(name))))
            }
            Base::Expr(b) => (self.compile(b)?, None),
        };
        let ty = base_node.ty();
        if !matches!(ty, Ty::Json | Ty::Dyn) {
            let step = match seg_asts.first() {
                Some(SegAst::Key(k)) => format!("`.{k}`"),
                _ => "an index".to_string(),
            };
            return Err(self.type_error(
                e.id,
                format!(
                    "cannot take {step} of {} (only JSON documents have fields)",
                    ty.name()
                ),
            ));
        }
        let mut segs = Vec::with_capacity(seg_asts.len());
        for seg in seg_asts {
            segs.push(match seg {
                SegAst::Key(k) => Seg::Key(k.into()),
                SegAst::Expr(ix) => match self.compile(ix)? {
                    Node::Const(Value::Str(s)) => Seg::Key(Box::from(&*s)),
                    Node::Const(Value::Int(i)) => Seg::Index(i),
                    node if matches!(node.ty(), Ty::Str | Ty::Int | Ty::Dyn) => {
                        Seg::Dyn(node.into_val())
                    }
                    node => {
                        return Err(self.type_error(
                            ix.id,
                            format!(
                                "an index must be a string key or an int position, found {}",
                                node.ty().name()
                            ),
                        ));
                    }
                },
            });
        }
        Ok((base_node.into_val(), segs, field))
    }

    fn compile_path(&mut self, e: &IdedExpr) -> Result<Node, ExprError> {
        let (base, segs, _) = self.compile_path_parts(e)?;
        Ok(Node::Val(
            Ty::Dyn,
            Box::new(move |c| {
                let v = base(c)?;
                let Value::Json(j) = &v else {
                    return Err(not_json(&v));
                };
                let leaf = walk(j, &segs, c).map_err(Fault::from)?;
                Ok(Value::from_json(leaf.clone()))
            }),
        ))
    }

    /// `has(x)`: the field (or nested key) is present and not null.
    fn compile_has(&mut self, id: u64, arg: &IdedExpr) -> Result<Node, ExprError> {
        if let Some(name) = self.field_ref(arg) {
            self.field_type(arg.id, name)?;
            let slot = self.slot(name);
            let name: Arc<str> = Arc::from(name);
            return Ok(Node::Bool(Box::new(move |c| {
                Ok(c.field(slot, &name).is_some_and(|v| !v.is_null()))
            })));
        }
        if !matches!(&arg.expr, Ast::Select(_)) && !matches!(&arg.expr, Ast::Call(c) if is_index(c))
        {
            return Err(self.type_error(
                id,
                "has() takes a field or a nested path, like has(user_id) or has(payload.user.id)",
            ));
        }
        let (base, segs, field) = self.compile_path_parts(arg)?;
        Ok(Node::Bool(Box::new(move |c| {
            if let Some((slot, name)) = &field
                && c.field(*slot, name).is_none()
            {
                return Ok(false);
            }
            let v = base(c)?;
            let j = match &v {
                Value::Json(j) => j,
                Value::Null => return Ok(false),
                other => return Err(not_json(other)),
            };
            match walk(j, &segs, c) {
                Ok(leaf) => Ok(!leaf.is_null()),
                Err(Miss::Key(_) | Miss::Index { .. }) => Ok(false),
                Err(Miss::Fault(f)) => Err(f),
            }
        })))
    }

    fn compile_call(&mut self, e: &IdedExpr, call: &CallExpr) -> Result<Node, ExprError> {
        let id = e.id;
        let name = call.func_name.as_str();
        if call.target.is_none() {
            let args = &call.args;
            match (name, args.len()) {
                (operators::LOGICAL_AND, 2) => return self.compile_logic(id, true, args),
                (operators::LOGICAL_OR, 2) => return self.compile_logic(id, false, args),
                (operators::LOGICAL_NOT, 1) => {
                    let node = self.compile(&args[0])?;
                    self.check_bool(args[0].id, "!", node.ty())?;
                    let all_const = node.is_const();
                    let f = node.into_bool("!");
                    let out = Node::Bool(Box::new(move |c| Ok(!f(c)?)));
                    return if all_const {
                        self.fold(id, out)
                    } else {
                        Ok(out)
                    };
                }
                (operators::NEGATE, 1) => return self.compile_negate(id, &args[0]),
                (operators::ADD, 2) => return self.compile_arith(id, ArithOp::Add, args),
                (operators::SUBSTRACT, 2) => return self.compile_arith(id, ArithOp::Sub, args),
                (operators::MULTIPLY, 2) => return self.compile_arith(id, ArithOp::Mul, args),
                (operators::DIVIDE, 2) => return self.compile_arith(id, ArithOp::Div, args),
                (operators::MODULO, 2) => return self.compile_arith(id, ArithOp::Rem, args),
                (operators::EQUALS, 2) => return self.compile_compare(id, CmpOp::Eq, args),
                (operators::NOT_EQUALS, 2) => return self.compile_compare(id, CmpOp::Ne, args),
                (operators::LESS, 2) => return self.compile_compare(id, CmpOp::Lt, args),
                (operators::LESS_EQUALS, 2) => return self.compile_compare(id, CmpOp::Le, args),
                (operators::GREATER, 2) => return self.compile_compare(id, CmpOp::Gt, args),
                (operators::GREATER_EQUALS, 2) => {
                    return self.compile_compare(id, CmpOp::Ge, args);
                }
                (operators::CONDITIONAL, 3) => return self.compile_conditional(args),
                (operators::IN, 2) => return self.compile_in(id, &args[0], &args[1]),
                (operators::INDEX, 2) => return self.compile_path(e),
                (operators::HAS, 1) => return self.compile_has(id, &args[0]),
                (operators::OPT_INDEX | operators::OPT_SELECT, _) => {
                    return Err(
                        self.unsupported(id, "optional access (`?.`, `[?`) is not supported")
                    );
                }
                _ => {}
            }
        }
        self.compile_function(id, call)
    }

    fn check_bool(&self, id: u64, op: &str, ty: Ty) -> Result<(), ExprError> {
        if matches!(ty, Ty::Bool | Ty::Dyn) {
            Ok(())
        } else {
            Err(self.type_error(id, format!("`{op}` expects bool, found {}", ty.name())))
        }
    }

    fn compile_logic(&mut self, id: u64, and: bool, args: &[IdedExpr]) -> Result<Node, ExprError> {
        let op = if and { "&&" } else { "||" };
        let l = self.compile(&args[0])?;
        self.check_bool(args[0].id, op, l.ty())?;
        let r = self.compile(&args[1])?;
        self.check_bool(args[1].id, op, r.ty())?;
        if let Node::Const(Value::Bool(b)) = l {
            // `false && x` is false, `true && x` is x (still checked to be a bool).
            return Ok(if b != and {
                Node::Const(Value::Bool(b))
            } else if r.is_const() {
                self.fold(id, Node::Bool(r.into_bool(op)))?
            } else {
                Node::Bool(r.into_bool(op))
            });
        }
        let (lf, rf) = (l.into_bool(op), r.into_bool(op));
        Ok(Node::Bool(if and {
            Box::new(move |c| Ok(lf(c)? && rf(c)?))
        } else {
            Box::new(move |c| Ok(lf(c)? || rf(c)?))
        }))
    }

    fn compile_negate(&mut self, id: u64, arg: &IdedExpr) -> Result<Node, ExprError> {
        let node = self.compile(arg)?;
        let all_const = node.is_const();
        let out = match node.ty() {
            Ty::Int => {
                let f = node.into_int("-");
                Node::Int(Box::new(move |c| {
                    f(c)?
                        .checked_neg()
                        .ok_or_else(|| fault(EvalErrorKind::Overflow { op: "-" }))
                }))
            }
            Ty::Float => {
                let f = node.into_float("-");
                Node::Float(Box::new(move |c| Ok(-f(c)?)))
            }
            Ty::Dyn => {
                let f = node.into_val();
                Node::Val(
                    Ty::Dyn,
                    Box::new(move |c| match f(c)? {
                        Value::Int(i) => i
                            .checked_neg()
                            .map(Value::Int)
                            .ok_or_else(|| fault(EvalErrorKind::Overflow { op: "-" })),
                        Value::Float(x) => Ok(Value::Float(-x)),
                        other => Err(ops::type_mismatch("-", "a number", &other)),
                    }),
                )
            }
            ty => {
                return Err(self.type_error(id, format!("cannot negate a {} value", ty.name())));
            }
        };
        if all_const {
            self.fold(id, out)
        } else {
            Ok(out)
        }
    }

    fn compile_arith(
        &mut self,
        id: u64,
        op: ArithOp,
        args: &[IdedExpr],
    ) -> Result<Node, ExprError> {
        let l = self.compile(&args[0])?;
        let r = self.compile(&args[1])?;
        let all_const = l.is_const() && r.is_const();
        let sym = op.symbol();
        let out = match (l.ty(), r.ty()) {
            (Ty::Int, Ty::Int) => Node::Int(int_arith(op, int_arg(l, sym), int_arg(r, sym))),
            (lt, rt) if lt.is_num() && rt.is_num() => {
                Node::Float(float_arith(op, float_arg(l, sym), float_arg(r, sym)))
            }
            (Ty::Null, _) | (_, Ty::Null) => {
                return Err(self.type_error(id, format!("null in arithmetic `{sym}`")));
            }
            (lt, rt)
                if (lt == Ty::Dyn || rt == Ty::Dyn)
                    && [lt, rt].iter().all(|t| {
                        t.is_num() || *t == Ty::Dyn || (*t == Ty::Str && op == ArithOp::Add)
                    }) =>
            {
                self.generic_arith(op, l, r, Ty::Dyn)
            }
            (Ty::Str, Ty::Str) if op == ArithOp::Add => self.generic_arith(op, l, r, Ty::Str),
            (lt, rt) => {
                return Err(self.type_error(
                    id,
                    format!("cannot apply `{sym}` to {} and {}", lt.name(), rt.name()),
                ));
            }
        };
        if all_const {
            self.fold(id, out)
        } else {
            Ok(out)
        }
    }

    fn generic_arith(&self, op: ArithOp, l: Node, r: Node, ty: Ty) -> Node {
        Node::Val(
            ty,
            match op {
                ArithOp::Add => val_binop(l, r, |a, b| ops::arith(ArithOp::Add, a, b)),
                ArithOp::Sub => val_binop(l, r, |a, b| ops::arith(ArithOp::Sub, a, b)),
                ArithOp::Mul => val_binop(l, r, |a, b| ops::arith(ArithOp::Mul, a, b)),
                ArithOp::Div => val_binop(l, r, |a, b| ops::arith(ArithOp::Div, a, b)),
                ArithOp::Rem => val_binop(l, r, |a, b| ops::arith(ArithOp::Rem, a, b)),
            },
        )
    }

    /// Whether `==`/`<`... may apply to these static types.
    fn check_comparable(&self, id: u64, op: CmpOp, lt: Ty, rt: Ty) -> Result<(), ExprError> {
        let ok = if lt == Ty::Dyn || rt == Ty::Dyn {
            true
        } else if op.is_equality() {
            lt == rt || lt == Ty::Null || rt == Ty::Null || (lt.is_num() && rt.is_num())
        } else {
            (lt.is_num() && rt.is_num())
                || (lt == rt && matches!(lt, Ty::Str | Ty::Timestamp | Ty::Bool))
        };
        if ok {
            Ok(())
        } else {
            Err(self.type_error(
                id,
                format!(
                    "cannot compare {} with {} using `{}`",
                    lt.name(),
                    rt.name(),
                    op.symbol()
                ),
            ))
        }
    }

    fn compile_compare(
        &mut self,
        id: u64,
        op: CmpOp,
        args: &[IdedExpr],
    ) -> Result<Node, ExprError> {
        let with_null = args.iter().any(is_null_literal);
        let saved = self.loose;
        self.loose |= with_null;
        let l = self.compile(&args[0]);
        let r = self.compile(&args[1]);
        self.loose = saved;
        let (l, r) = (l?, r?);
        let (lt, rt) = (l.ty(), r.ty());
        self.check_comparable(id, op, lt, rt)?;
        let all_const = l.is_const() && r.is_const();
        let sym = op.symbol();
        let out = match (lt, rt) {
            (Ty::Int, Ty::Int) => Node::Bool(ordered_cmp(op, int_arg(l, sym), int_arg(r, sym))),
            (lt, rt) if lt.is_num() && rt.is_num() => {
                Node::Bool(ordered_cmp(op, float_arg(l, sym), float_arg(r, sym)))
            }
            _ => Node::Bool(match op {
                CmpOp::Eq => val_binop(l, r, |a, b| Ok(ops::equal(a, b))),
                CmpOp::Ne => val_binop(l, r, |a, b| Ok(!ops::equal(a, b))),
                CmpOp::Lt => val_binop(l, r, |a, b| ops::compare(CmpOp::Lt, a, b)),
                CmpOp::Le => val_binop(l, r, |a, b| ops::compare(CmpOp::Le, a, b)),
                CmpOp::Gt => val_binop(l, r, |a, b| ops::compare(CmpOp::Gt, a, b)),
                CmpOp::Ge => val_binop(l, r, |a, b| ops::compare(CmpOp::Ge, a, b)),
            }),
        };
        if all_const {
            self.fold(id, out)
        } else {
            Ok(out)
        }
    }

    fn compile_conditional(&mut self, args: &[IdedExpr]) -> Result<Node, ExprError> {
        let cond = self.compile(&args[0])?;
        self.check_bool(args[0].id, "? :", cond.ty())?;
        let then = self.compile(&args[1])?;
        let other = self.compile(&args[2])?;
        if let Node::Const(Value::Bool(b)) = cond {
            return Ok(if b { then } else { other });
        }
        let cf = cond.into_bool("? :");
        Ok(match (then.ty(), other.ty()) {
            (Ty::Bool, Ty::Bool) => {
                let (t, o) = (then.into_bool("? :"), other.into_bool("? :"));
                Node::Bool(Box::new(move |c| if cf(c)? { t(c) } else { o(c) }))
            }
            (Ty::Int, Ty::Int) => {
                let (t, o) = (then.into_int("? :"), other.into_int("? :"));
                Node::Int(Box::new(move |c| if cf(c)? { t(c) } else { o(c) }))
            }
            (Ty::Float, Ty::Float) => {
                let (t, o) = (then.into_float("? :"), other.into_float("? :"));
                Node::Float(Box::new(move |c| if cf(c)? { t(c) } else { o(c) }))
            }
            (tt, ot) => {
                let ty = if tt == ot { tt } else { Ty::Dyn };
                let (t, o) = (then.into_val(), other.into_val());
                Node::Val(ty, Box::new(move |c| if cf(c)? { t(c) } else { o(c) }))
            }
        })
    }

    fn compile_in(&mut self, id: u64, lhs: &IdedExpr, rhs: &IdedExpr) -> Result<Node, ExprError> {
        let l = self.compile(lhs)?;
        let lt = l.ty();
        let Ast::List(list) = &rhs.expr else {
            let r = self.compile(rhs)?;
            if !matches!(r.ty(), Ty::Json | Ty::Dyn) {
                return Err(self.type_error(
                    rhs.id,
                    format!(
                        "`in` needs a list literal or a JSON array/object on its right, found {}",
                        r.ty().name()
                    ),
                ));
            }
            let (lf, rf) = (l.into_val(), r.into_val());
            return Ok(Node::Bool(Box::new(move |c| {
                let needle = lf(c)?;
                let hay = rf(c)?;
                let Value::Json(j) = &hay else {
                    return Err(ops::type_mismatch("in", "a JSON array or object", &hay));
                };
                match &**j {
                    serde_json::Value::Array(items) => {
                        Ok(items.iter().any(|item| ops::equals_json(&needle, item)))
                    }
                    serde_json::Value::Object(map) => match &needle {
                        Value::Str(k) => Ok(map.contains_key(&**k)),
                        other => Err(ops::type_mismatch("in", "a string key", other)),
                    },
                    _ => Err(ops::type_mismatch("in", "a JSON array or object", &hay)),
                }
            })));
        };
        let mut elems = Vec::with_capacity(list.elements.len());
        for el in &list.elements {
            let node = self.compile(el)?;
            self.check_comparable(el.id, CmpOp::Eq, lt, node.ty())?;
            elems.push(node);
        }
        let all_const = l.is_const() && elems.iter().all(Node::is_const);
        let consts: Option<Vec<Value>> = elems
            .iter()
            .map(|n| match n {
                Node::Const(v) => Some(v.clone()),
                _ => None,
            })
            .collect();
        let out = match consts {
            Some(consts) if lt == Ty::Int && consts.iter().all(|v| v.kind() == ValueKind::Int) => {
                let ints: Box<[i64]> = consts.iter().filter_map(Value::as_i64).collect();
                let f = l.into_int("in");
                Node::Bool(Box::new(move |c| {
                    let x = f(c)?;
                    Ok(ints.contains(&x))
                }))
            }
            Some(consts) => {
                let f = l.into_val();
                Node::Bool(Box::new(move |c| {
                    let x = f(c)?;
                    Ok(consts.iter().any(|k| ops::equal(&x, k)))
                }))
            }
            None => {
                let f = l.into_val();
                let fs: Vec<Fun<Value>> = elems.into_iter().map(Node::into_val).collect();
                Node::Bool(Box::new(move |c| {
                    let x = f(c)?;
                    for g in &fs {
                        if ops::equal(&x, &g(c)?) {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                }))
            }
        };
        if all_const {
            self.fold(id, out)
        } else {
            Ok(out)
        }
    }

    fn compile_function(&mut self, id: u64, call: &CallExpr) -> Result<Node, ExprError> {
        let name = call.func_name.as_str();
        if !FUNCTIONS.contains(&name) {
            return Err(ExprError::UnknownFunction {
                expr: self.source.to_string(),
                pos: self.call_pos(id, name),
                name: name.to_string(),
                suggestions: close_matches(name, FUNCTIONS.iter().copied()),
            });
        }
        let method = call.target.is_some();
        let mut operand_ids = Vec::new();
        let mut operands = Vec::new();
        for e in call.target.iter().map(|t| &**t).chain(call.args.iter()) {
            operand_ids.push(e.id);
            operands.push(self.compile(e)?);
        }
        let all_const = operands.iter().all(Node::is_const);
        let arity = |n: usize, usage: &str| -> Result<(), ExprError> {
            if operands.len() == n {
                Ok(())
            } else {
                Err(self.type_error(
                    id,
                    format!(
                        "`{name}` takes {n} operand(s): {usage}, found {}",
                        operands.len()
                    ),
                ))
            }
        };
        let global_only = |usage: &str| -> Result<(), ExprError> {
            if method {
                Err(self.type_error(id, format!("`{name}` is not a method; write {usage}")))
            } else {
                Ok(())
            }
        };
        // Checks that operand `i` may have one of `allowed` types (dynamic always may).
        let check = |i: usize, allowed: &[Ty], what: &str| -> Result<(), ExprError> {
            let ty = operands[i].ty();
            if ty == Ty::Dyn || allowed.contains(&ty) {
                Ok(())
            } else {
                Err(self.type_error(
                    operand_ids[i],
                    format!("`{name}` expects {what}, found {}", ty.name()),
                ))
            }
        };
        let out = match name {
            "size" => {
                arity(1, "size(x) or x.size()")?;
                check(0, &[Ty::Str, Ty::Json], "a string or JSON array/object")?;
                let f = take(&mut operands, 0).into_val();
                Node::Int(Box::new(move |c| ops::size(&f(c)?)))
            }
            "contains" | "startsWith" | "endsWith" => {
                arity(2, &format!("s.{name}(t)"))?;
                check(0, &[Ty::Str], "a string")?;
                check(1, &[Ty::Str], "a string argument")?;
                let test: fn(&str, &str) -> bool = match name {
                    "contains" => |s, t| s.contains(t),
                    "startsWith" => |s, t| s.starts_with(t),
                    _ => |s, t| s.ends_with(t),
                };
                let op = static_name(name);
                let s = take(&mut operands, 0).into_val();
                match take(&mut operands, 1) {
                    Node::Const(Value::Str(t)) => Node::Bool(Box::new(move |c| {
                        let v = s(c)?;
                        Ok(test(ops::expect_str(op, &v)?, &t))
                    })),
                    other => {
                        let t = other.into_val();
                        Node::Bool(Box::new(move |c| {
                            let (v, w) = (s(c)?, t(c)?);
                            Ok(test(ops::expect_str(op, &v)?, ops::expect_str(op, &w)?))
                        }))
                    }
                }
            }
            "matches" => {
                arity(2, "s.matches(pattern) or matches(s, pattern)")?;
                check(0, &[Ty::Str], "a string")?;
                check(1, &[Ty::Str], "a string pattern")?;
                let s = take(&mut operands, 0).into_val();
                match take(&mut operands, 1) {
                    Node::Const(Value::Str(p)) => {
                        let re = Regex::new(&p).map_err(|e| ExprError::InvalidConstant {
                            expr: self.source.to_string(),
                            pos: self.pos(operand_ids[1]),
                            message: format!("invalid regular expression: {e}"),
                        })?;
                        Node::Bool(Box::new(move |c| {
                            let v = s(c)?;
                            Ok(re.is_match(ops::expect_str("matches", &v)?))
                        }))
                    }
                    other => {
                        let p = other.into_val();
                        Node::Bool(Box::new(move |c| {
                            let (v, w) = (s(c)?, p(c)?);
                            let re = Regex::new(ops::expect_str("matches", &w)?).map_err(|e| {
                                fault(EvalErrorKind::Regex {
                                    message: e.to_string(),
                                })
                            })?;
                            Ok(re.is_match(ops::expect_str("matches", &v)?))
                        }))
                    }
                }
            }
            "int" => {
                global_only("int(x)")?;
                arity(1, "int(x)")?;
                check(
                    0,
                    &[Ty::Int, Ty::Float, Ty::Str, Ty::Timestamp],
                    "a number, string or timestamp",
                )?;
                match take(&mut operands, 0) {
                    Node::Int(f) => Node::Int(f),
                    Node::Float(f) => Node::Int(Box::new(move |c| {
                        let x = f(c)?;
                        ops::float_to_int(x).ok_or_else(|| {
                            fault(EvalErrorKind::Conversion {
                                to: "int",
                                value: x.to_string(),
                            })
                        })
                    })),
                    other => {
                        let f = other.into_val();
                        Node::Int(Box::new(move |c| ops::to_int(&f(c)?)))
                    }
                }
            }
            "double" => {
                global_only("double(x)")?;
                arity(1, "double(x)")?;
                check(0, &[Ty::Int, Ty::Float, Ty::Str], "a number or string")?;
                match take(&mut operands, 0) {
                    n @ (Node::Int(_) | Node::Float(_)) => Node::Float(n.into_float("double()")),
                    other => {
                        let f = other.into_val();
                        Node::Float(Box::new(move |c| ops::to_double(&f(c)?)))
                    }
                }
            }
            "string" => {
                global_only("string(x)")?;
                arity(1, "string(x)")?;
                check(
                    0,
                    &[
                        Ty::Int,
                        Ty::Float,
                        Ty::Str,
                        Ty::Bool,
                        Ty::Timestamp,
                        Ty::Json,
                    ],
                    "a non-null value",
                )?;
                let f = take(&mut operands, 0).into_val();
                Node::Val(Ty::Str, Box::new(move |c| ops::to_string(&f(c)?)))
            }
            "bool" => {
                global_only("bool(x)")?;
                arity(1, "bool(x)")?;
                check(0, &[Ty::Bool, Ty::Str], "a bool or string")?;
                let f = take(&mut operands, 0).into_val();
                Node::Bool(Box::new(move |c| ops::to_bool(&f(c)?)))
            }
            "timestamp" => {
                global_only("timestamp(x)")?;
                arity(1, "timestamp(x)")?;
                check(
                    0,
                    &[Ty::Str, Ty::Int, Ty::Timestamp],
                    "a string, int seconds or timestamp",
                )?;
                let f = take(&mut operands, 0).into_val();
                Node::Val(
                    Ty::Timestamp,
                    Box::new(move |c| ops::to_timestamp(&f(c)?).map(Value::Timestamp)),
                )
            }
            "lower" | "upper" | "lowerAscii" | "upperAscii" => {
                arity(1, &format!("s.{name}() or {name}(s)"))?;
                check(0, &[Ty::Str], "a string")?;
                let op = static_name(name);
                let convert: fn(&str) -> String = match name {
                    "lower" => str::to_lowercase,
                    "upper" => str::to_uppercase,
                    "lowerAscii" => str::to_ascii_lowercase,
                    _ => str::to_ascii_uppercase,
                };
                let f = take(&mut operands, 0).into_val();
                Node::Val(
                    Ty::Str,
                    Box::new(move |c| {
                        let v = f(c)?;
                        Ok(Value::from(convert(ops::expect_str(op, &v)?)))
                    }),
                )
            }
            "abs" => {
                global_only("abs(x)")?;
                arity(1, "abs(x)")?;
                check(0, &[Ty::Int, Ty::Float], "a number")?;
                match take(&mut operands, 0) {
                    Node::Int(f) => Node::Int(Box::new(move |c| {
                        f(c)?
                            .checked_abs()
                            .ok_or_else(|| fault(EvalErrorKind::Overflow { op: "abs()" }))
                    })),
                    Node::Float(f) => Node::Float(Box::new(move |c| Ok(f(c)?.abs()))),
                    other => {
                        let ty = other.ty();
                        let f = other.into_val();
                        Node::Val(ty, Box::new(move |c| ops::abs(&f(c)?)))
                    }
                }
            }
            "min" | "max" => {
                global_only(&format!("{name}(a, b, ...)"))?;
                if operands.is_empty() {
                    return Err(self.type_error(id, format!("`{name}` needs at least one operand")));
                }
                for i in 0..operands.len() {
                    check(
                        i,
                        &[Ty::Int, Ty::Float, Ty::Str, Ty::Timestamp],
                        "numbers, strings or timestamps",
                    )?;
                }
                let tys: Vec<Ty> = operands.iter().map(Node::ty).collect();
                let first = tys[0];
                let same = tys.iter().all(|t| *t == first);
                let numeric = tys.iter().all(|t| t.is_num());
                if !same && !numeric && !tys.contains(&Ty::Dyn) {
                    return Err(self.type_error(
                        id,
                        format!("`{name}` needs operands of one kind (ints and floats mix)"),
                    ));
                }
                let want = if name == "min" {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
                let op = static_name(name);
                let fs: Vec<Fun<Value>> = operands.drain(..).map(Node::into_val).collect();
                let ty = if same {
                    first
                } else if numeric {
                    Ty::Float
                } else {
                    Ty::Dyn
                };
                Node::Val(
                    ty,
                    Box::new(move |c| {
                        let mut values = Vec::with_capacity(fs.len());
                        for f in &fs {
                            values.push(f(c)?);
                        }
                        ops::extreme(op, want, &values)
                    }),
                )
            }
            _ => {
                // `has` with a target, or with several operands.
                return Err(self.type_error(id, "has() takes one field or path: has(x)"));
            }
        };
        if all_const {
            self.fold(id, out)
        } else {
            Ok(out)
        }
    }
}

/// The deepest nesting accepted; real pipeline expressions stay far below it.
pub(crate) const MAX_DEPTH: usize = 200;

/// The id of a node nested deeper than [`MAX_DEPTH`], found without recursing.
fn too_deep(root: &IdedExpr) -> Option<u64> {
    let mut stack = vec![(root, 1usize)];
    while let Some((e, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Some(e.id);
        }
        let d = depth + 1;
        match &e.expr {
            Ast::Call(call) => {
                stack.extend(call.target.iter().map(|t| (&**t, d)));
                stack.extend(call.args.iter().map(|a| (a, d)));
            }
            Ast::Select(s) => stack.push((&s.operand, d)),
            Ast::List(list) => stack.extend(list.elements.iter().map(|el| (el, d))),
            Ast::Comprehension(c) => {
                stack.extend(
                    [
                        &c.iter_range,
                        &c.accu_init,
                        &c.loop_cond,
                        &c.loop_step,
                        &c.result,
                    ]
                    .map(|x| (x, d)),
                );
            }
            Ast::Map(m) => {
                for entry in &m.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                        stack.push((&me.key, d));
                        stack.push((&me.value, d));
                    }
                }
            }
            Ast::Struct(st) => {
                for entry in &st.entries {
                    if let cel::common::ast::EntryExpr::StructField(f) = &entry.expr {
                        stack.push((&f.value, d));
                    }
                }
            }
            Ast::Ident(_) | Ast::Literal(_) | Ast::Unspecified => {}
        }
    }
    None
}

fn field_type_fault(name: &str, expected: &'static str, found: &Value) -> Fault {
    if found.is_null() {
        fault(EvalErrorKind::NullField {
            name: name.to_string(),
        })
    } else {
        fault(EvalErrorKind::FieldType {
            name: name.to_string(),
            expected,
            found: found.kind(),
        })
    }
}

fn take(operands: &mut [Node], i: usize) -> Node {
    std::mem::replace(&mut operands[i], Node::Const(Value::Null))
}

/// Function names as `&'static str` for error values.
fn static_name(name: &str) -> &'static str {
    FUNCTIONS
        .iter()
        .copied()
        .find(|f| *f == name)
        .unwrap_or("function")
}

fn is_index(call: &CallExpr) -> bool {
    call.func_name == operators::INDEX && call.target.is_none() && call.args.len() == 2
}

fn is_null_literal(e: &IdedExpr) -> bool {
    matches!(e.expr, Ast::Literal(LiteralValue::Null))
}
