//! CEL in Kuadrant policies (`when` predicates, `counters`, `patternMatching`), parsed with
//! cel-rust's parser (`cel-parser`, the parser of the `cel` crate Kuadrant's wasm-shim
//! evaluates) and compiled at translation time into the plugins' checked predicate tree
//! (`infergate_core::attributes::PredicateConfig`: `all` / `any` / `not` over one-attribute
//! tests). The plugins never parse CEL.
//!
//! Compiled: `&&`, `||`, `!`, `==`, `!=`, `<`, `<=`, `>`, `>=` (against a literal), `in` (a
//! list literal, or a value in a list attribute), `startsWith`, `endsWith`, `contains`,
//! `size()`, `has()`, `.split(sep).exists(v, …)`, `.exists(v, …)` over list attributes,
//! `requestBodyJSON('/model')`, `true` / `false`. Attributes: `auth.identity.<any path>`,
//! `request.path`, `request.url_path`, `request.query`, `request.method`, `request.host`,
//! `request.headers['x']`, `source.address`, `source.remote_address`.
//!
//! Refused, each with a reason naming the construct: `matches()` (a regex engine does not fit
//! the plugins' size budget), arithmetic, the ternary `?:`, `all()` / `exists_one()` / `map()` /
//! `filter()`, comparisons between two attributes, map and message literals, unknown
//! attributes and functions.

use cel_parser::ast::{operators as op, CallExpr, ComprehensionExpr, Expr, IdedExpr};
use cel_parser::reference::Val;
use infergate_core::attributes::Attribute;
use serde::{Deserialize, Serialize};

/// A compiled predicate, serialized exactly as the plugins read it
/// (`infergate_core::attributes::PredicateConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct Predicate {
    /// Attribute name (Kuadrant form); empty on `all` / `any` / `not` nodes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub attribute: String,
    /// Equal to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eq: Option<String>,
    /// Not equal to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neq: Option<String>,
    /// Starts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_with: Option<String>,
    /// Ends with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_with: Option<String>,
    /// Contains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// One of.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
    /// Present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    /// Less than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<String>,
    /// Less than or equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub le: Option<String>,
    /// Greater than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<String>,
    /// Greater than or equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ge: Option<String>,
    /// Test `size()` of the value.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub size: bool,
    /// Split the value first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// All hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<Predicate>>,
    /// Any holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<Predicate>>,
    /// Does not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<Predicate>>,
}

impl Predicate {
    fn new(attribute: &str) -> Self {
        Self {
            attribute: attribute.to_string(),
            ..Self::default()
        }
    }

    /// Whether this is a one-attribute test (not `all` / `any` / `not`).
    pub fn is_test(&self) -> bool {
        !self.attribute.is_empty()
    }
}

/// Longest CEL expression accepted.
const MAX_SOURCE: usize = 4096;

/// Parses CEL with cel-rust's parser. Its macro expanders assert on malformed calls
/// (`x.exists(g)`), so a panic is caught and reported as a parse error.
pub(crate) fn parse_expr(src: &str) -> Result<IdedExpr, String> {
    if src.len() > MAX_SOURCE {
        return Err(format!("CEL expressions are at most {MAX_SOURCE} bytes"));
    }
    let owned = src.to_string();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(move || cel_parser::Parser::new().parse(&owned));
    std::panic::set_hook(hook);
    match r {
        Ok(Ok(e)) => Ok(e),
        Ok(Err(e)) => Err(format!("CEL syntax error in `{src}`: {e}")),
        Err(_) => Err(format!("CEL syntax error in `{src}`")),
    }
}

/// Compiles a `when` predicate into predicates that must all hold.
pub fn compile_predicate(src: &str) -> Result<Vec<Predicate>, String> {
    let expr = parse_expr(src)?;
    let p = Compiler::default().bool_expr(&expr)?;
    Ok(match p {
        Pred::Const(true) => Vec::new(),
        Pred::Const(false) => return Err(format!("`{src}` is always false")),
        Pred::P(p) => match &p.all {
            Some(list) if !p.is_test() && p.any.is_none() && p.not.is_none() => list.clone(),
            _ => vec![p],
        },
    })
}

/// Compiles a counter expression: it must be an attribute (`auth.identity.<property>`,
/// `request.headers['x']`, …).
pub fn compile_counter(src: &str) -> Result<String, String> {
    let expr = parse_expr(src)?;
    match Compiler::default().value(&expr)? {
        Value::Attr {
            name,
            split: None,
            size: false,
        } => Ok(name),
        _ => Err(format!(
            "`{src}`: a counter must be an attribute (e.g. `auth.identity.userid`)"
        )),
    }
}

/// Compiles a value expression (an AuthPolicy property `expression`): an attribute path.
pub fn compile_attribute(src: &str) -> Result<String, String> {
    compile_counter(src)
}

/// The attribute path an expression names (`auth.identity.user.groups`,
/// `auth.metadata.t['tier']`), or `None` when it is not a plain path.
pub(crate) fn attribute_path(e: &IdedExpr) -> Option<String> {
    Compiler::default().raw_path(e)
}

// Short-lived values during compilation; boxing would only add noise.
#[allow(clippy::large_enum_variant)]
enum Pred {
    Const(bool),
    P(Predicate),
}

#[derive(Debug, Clone)]
enum Value {
    Attr {
        name: String,
        split: Option<String>,
        size: bool,
    },
    Lit(String),
    List(Vec<String>),
}

#[derive(Default)]
struct Compiler {
    /// Comprehension variables bound to an attribute's elements.
    vars: Vec<(String, String, Option<String>)>,
}

fn canonical(path: &str) -> Result<String, String> {
    // A TokenReview identity is `{user: {username, groups}}` in Authorino; the plugin carries
    // them as the identity's userid and groups.
    let path = match path {
        "auth.identity.user.username" | "auth.identity.username" => "auth.identity.userid",
        "auth.identity.user.groups" => "auth.identity.groups",
        p => p,
    };
    Attribute::parse(path)?;
    Ok(path.to_string())
}

fn is_list_attr(name: &str) -> bool {
    matches!(Attribute::parse(name), Ok(Attribute::Groups))
}

fn literal(v: &Val) -> Result<String, String> {
    Ok(match v {
        Val::String(s) => s.clone(),
        Val::Int(i) => i.to_string(),
        Val::UInt(u) => u.to_string(),
        Val::Boolean(b) => b.to_string(),
        Val::Double(_) => return Err(
            "floating-point literals are not supported (attributes compare as strings or integers)"
                .into(),
        ),
        Val::Null => return Err("`null` is not supported; use `has(…)`".into()),
        Val::Bytes(_) => return Err("bytes literals are not supported".into()),
    })
}

fn describe(e: &IdedExpr) -> String {
    match &e.expr {
        Expr::Call(c) => format!("`{}`", c.func_name.trim_matches('_')),
        Expr::Comprehension(_) => "a comprehension".into(),
        Expr::Ident(i) => format!("`{i}`"),
        Expr::Literal(_) => "a literal".into(),
        Expr::Map(_) | Expr::Struct(_) => "a map or message literal".into(),
        Expr::List(_) => "a list".into(),
        Expr::Select(s) => format!("`.{}`", s.field),
        Expr::Unspecified => "an empty expression".into(),
    }
}

impl Compiler {
    fn bool_expr(&mut self, e: &IdedExpr) -> Result<Pred, String> {
        match &e.expr {
            Expr::Literal(Val::Boolean(b)) => Ok(Pred::Const(*b)),
            Expr::Call(c) => self.call(c),
            Expr::Select(s) if s.test => {
                let name = self
                    .raw_path(&s.operand)
                    .ok_or_else(|| "`has(…)` needs an attribute path".to_string())?;
                let name = format!("{name}.{}", s.field);
                let mut p = Predicate::new(&canonical(&name)?);
                p.exists = Some(true);
                Ok(Pred::P(p))
            }
            Expr::Comprehension(c) => self.comprehension(c),
            _ => match self.value(e)? {
                Value::Attr { name, .. } => Err(format!(
                    "`{name}` alone is not a condition; compare it (`{name} == 'value'`)"
                )),
                _ => Err(format!("{} is not a condition", describe(e))),
            },
        }
    }

    fn both(&mut self, c: &CallExpr) -> Result<(Pred, Pred), String> {
        match c.args.as_slice() {
            [a, b] => Ok((self.bool_expr(a)?, self.bool_expr(b)?)),
            _ => Err(format!("`{}` needs two operands", c.func_name)),
        }
    }

    fn call(&mut self, c: &CallExpr) -> Result<Pred, String> {
        let f = c.func_name.as_str();
        match f {
            op::LOGICAL_AND => Ok(match self.both(c)? {
                (Pred::Const(false), _) | (_, Pred::Const(false)) => Pred::Const(false),
                (Pred::Const(true), x) | (x, Pred::Const(true)) => x,
                (Pred::P(a), Pred::P(b)) => {
                    let mut list = flatten(a, |p| &mut p.all);
                    list.extend(flatten(b, |p| &mut p.all));
                    Pred::P(Predicate {
                        all: Some(list),
                        ..Predicate::default()
                    })
                }
            }),
            op::LOGICAL_OR => Ok(match self.both(c)? {
                (Pred::Const(true), _) | (_, Pred::Const(true)) => Pred::Const(true),
                (Pred::Const(false), x) | (x, Pred::Const(false)) => x,
                (Pred::P(a), Pred::P(b)) => {
                    let mut list = flatten(a, |p| &mut p.any);
                    list.extend(flatten(b, |p| &mut p.any));
                    Pred::P(merge_in(list))
                }
            }),
            op::LOGICAL_NOT => match c.args.as_slice() {
                [a] => Ok(match self.bool_expr(a)? {
                    Pred::Const(b) => Pred::Const(!b),
                    Pred::P(p) => Pred::P(negate(p)),
                }),
                _ => Err("`!` needs one operand".into()),
            },
            op::EQUALS | op::NOT_EQUALS | op::LESS | op::LESS_EQUALS | op::GREATER
            | op::GREATER_EQUALS => self.comparison(f, c),
            op::IN => self.membership(c),
            "startsWith" | "endsWith" | "contains" => {
                let (Some(target), [arg]) = (&c.target, c.args.as_slice()) else {
                    return Err(format!("`{f}` is called as `attribute.{f}('text')`"));
                };
                let (name, split, size) = self.attr_of(target, f)?;
                let Value::Lit(text) = self.value(arg)? else {
                    return Err(format!("`{f}` needs a string literal argument"));
                };
                if size {
                    return Err(format!("`{f}` on `size()` is not a string test"));
                }
                let mut p = Predicate::new(&name);
                p.split = split;
                match f {
                    "startsWith" => p.starts_with = Some(text),
                    "endsWith" => p.ends_with = Some(text),
                    _ => p.contains = Some(text),
                }
                Ok(Pred::P(p))
            }
            "matches" => Err("`matches()` is not supported: a regular-expression engine does not fit the plugins' size budget (use startsWith / endsWith / contains / in)".into()),
            op::CONDITIONAL => Err("the ternary `? :` is not supported in conditions".into()),
            op::ADD | op::SUBSTRACT | op::MULTIPLY | op::DIVIDE | op::MODULO | op::NEGATE => {
                Err("arithmetic is not supported".into())
            }
            other => Err(format!("function `{other}` is not supported")),
        }
    }

    fn attr_of(
        &mut self,
        e: &IdedExpr,
        what: &str,
    ) -> Result<(String, Option<String>, bool), String> {
        match self.value(e)? {
            Value::Attr { name, split, size } => Ok((name, split, size)),
            _ => Err(format!("`{what}` needs an attribute")),
        }
    }

    fn comparison(&mut self, f: &str, c: &CallExpr) -> Result<Pred, String> {
        let [a, b] = c.args.as_slice() else {
            return Err(format!("`{f}` needs two operands"));
        };
        let (va, vb) = (self.value(a)?, self.value(b)?);
        // Put the attribute on the left, flipping the operator.
        let (attr, lit, f) = match (va, vb) {
            (Value::Attr { name, split, size }, Value::Lit(l)) => ((name, split, size), l, f),
            (Value::Lit(l), Value::Attr { name, split, size }) => (
                (name, split, size),
                l,
                match f {
                    op::LESS => op::GREATER,
                    op::LESS_EQUALS => op::GREATER_EQUALS,
                    op::GREATER => op::LESS,
                    op::GREATER_EQUALS => op::LESS_EQUALS,
                    other => other,
                },
            ),
            (Value::Lit(x), Value::Lit(y)) if f == op::EQUALS => return Ok(Pred::Const(x == y)),
            (Value::Attr { .. }, Value::Attr { .. }) => return Err(
                "comparing two attributes is not supported; compare an attribute with a literal"
                    .into(),
            ),
            _ => {
                return Err(format!(
                    "`{}` needs an attribute and a literal",
                    f.trim_matches('_')
                ))
            }
        };
        let (name, split, size) = attr;
        if split.is_some() && !size && self.vars.is_empty() {
            return Err("compare the elements of `.split(…)` with `.exists(v, v == '…')`".into());
        }
        if f == op::NOT_EQUALS && is_list_attr(&name) && !size {
            return Err(format!(
                "`!=` on the list `{name}` is ambiguous; write `!('v' in {name})`"
            ));
        }
        let mut p = Predicate::new(&name);
        p.size = size;
        p.split = split;
        let slot = match f {
            op::EQUALS => &mut p.eq,
            op::NOT_EQUALS => &mut p.neq,
            op::LESS => &mut p.lt,
            op::LESS_EQUALS => &mut p.le,
            op::GREATER => &mut p.gt,
            _ => &mut p.ge,
        };
        *slot = Some(lit);
        Ok(Pred::P(p))
    }

    fn membership(&mut self, c: &CallExpr) -> Result<Pred, String> {
        let [a, b] = c.args.as_slice() else {
            return Err("`in` needs two operands".into());
        };
        match (self.value(a)?, self.value(b)?) {
            (
                Value::Attr {
                    name,
                    split,
                    size: false,
                },
                Value::List(items),
            ) => {
                let mut p = Predicate::new(&name);
                p.split = split;
                p.one_of = Some(items);
                Ok(Pred::P(p))
            }
            (
                Value::Lit(v),
                Value::Attr {
                    name,
                    split,
                    size: false,
                },
            ) if split.is_some() || is_list_attr(&name) || name.starts_with("auth.identity.") => {
                let mut p = Predicate::new(&name);
                p.split = split;
                p.eq = Some(v);
                Ok(Pred::P(p))
            }
            (Value::Lit(v), Value::List(items)) => Ok(Pred::Const(items.contains(&v))),
            _ => Err(
                "`in` is supported as `attribute in ['a', …]` or `'v' in <list attribute>`".into(),
            ),
        }
    }

    fn comprehension(&mut self, c: &ComprehensionExpr) -> Result<Pred, String> {
        // cel-parser expands `r.exists(v, body)` into a fold whose step is `@result || body`
        // from `false`; `all` folds with `&&` from `true`.
        let step = match &c.loop_step.expr {
            Expr::Call(s) => s,
            _ => return Err("this comprehension is not supported".into()),
        };
        let is_exists = step.func_name == op::LOGICAL_OR
            && c.accu_init.expr == Expr::Literal(Val::Boolean(false));
        if !is_exists || step.args.len() != 2 || c.iter_var2.is_some() {
            return Err("only `.exists(v, …)` is supported among the macros (`all`, `exists_one`, `map`, `filter` are not)".into());
        }
        let (name, split) = match self.value(&c.iter_range)? {
            Value::Attr {
                name,
                split,
                size: false,
            } => (name, split),
            _ => return Err("`.exists(…)` needs an attribute (or `attribute.split(',')`)".into()),
        };
        if split.is_none() && !is_list_attr(&name) && !name.starts_with("auth.identity.") {
            return Err(format!("`{name}` is not a list; `.exists(…)` needs one"));
        }
        self.vars.push((c.iter_var.clone(), name, split));
        let body = self.bool_expr(&step.args[1]);
        self.vars.pop();
        let body = body?;
        // Each test is true when any element passes it, so `exists` over one test, or over an
        // `||` of tests, is that test; `&&`, `!` and `!=` inside would change meaning.
        let ok = |p: &Predicate| p.is_test() && p.neq.is_none() && !p.size;
        match body {
            Pred::Const(b) => Ok(Pred::Const(b)),
            Pred::P(p) if ok(&p) => Ok(Pred::P(p)),
            Pred::P(p) if p.any.as_ref().is_some_and(|v| v.iter().all(ok)) => Ok(Pred::P(p)),
            Pred::P(_) => Err("inside `.exists(v, …)` only `==`, `in`, startsWith / endsWith / contains on `v`, joined by `||`, are supported".into()),
        }
    }

    fn raw_path(&self, e: &IdedExpr) -> Option<String> {
        match &e.expr {
            Expr::Ident(i) => Some(i.clone()),
            Expr::Select(s) if !s.test => {
                Some(format!("{}.{}", self.raw_path(&s.operand)?, s.field))
            }
            Expr::Call(c) if c.func_name == op::INDEX && c.args.len() == 2 => {
                let base = self.raw_path(&c.args[0])?;
                match &c.args[1].expr {
                    Expr::Literal(Val::String(k)) => Some(format!("{base}['{k}']")),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn value(&mut self, e: &IdedExpr) -> Result<Value, String> {
        match &e.expr {
            Expr::Literal(v) => Ok(Value::Lit(literal(v)?)),
            Expr::List(l) => {
                let items = l
                    .elements
                    .iter()
                    .map(|x| match &x.expr {
                        Expr::Literal(v) => literal(v),
                        _ => Err("list elements must be literals".into()),
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Ok(Value::List(items))
            }
            Expr::Ident(i) => {
                if let Some((_, name, split)) = self.vars.iter().rev().find(|(v, _, _)| v == i) {
                    return Ok(Value::Attr {
                        name: name.clone(),
                        split: split.clone(),
                        size: false,
                    });
                }
                Err(format!("unknown attribute `{i}`"))
            }
            Expr::Select(s) if s.test => Err("`has(…)` is a condition, not a value".into()),
            Expr::Select(_) | Expr::Call(CallExpr { func_name: _, .. })
                if self.raw_path(e).is_some() =>
            {
                let raw = self.raw_path(e).unwrap_or_default();
                let root = raw.split(['.', '[']).next().unwrap_or_default();
                if self.vars.iter().any(|(v, _, _)| v == root) {
                    return Err(format!(
                        "`{raw}`: fields of a comprehension variable are not supported"
                    ));
                }
                Ok(Value::Attr {
                    name: canonical(&raw)?,
                    split: None,
                    size: false,
                })
            }
            Expr::Call(c) => match (c.func_name.as_str(), c.target.as_deref(), c.args.as_slice()) {
                ("size", Some(t), []) | ("size", None, [t]) => {
                    let (name, split, _) = self.attr_of(t, "size")?;
                    Ok(Value::Attr {
                        name,
                        split,
                        size: true,
                    })
                }
                ("split", Some(t), [sep]) => {
                    let (name, split, size) = self.attr_of(t, "split")?;
                    let Value::Lit(sep) = self.value(sep)? else {
                        return Err("`split` needs a string literal separator".into());
                    };
                    if split.is_some() || size || sep.is_empty() {
                        return Err("`split` is supported once, with a non-empty separator, on an attribute".into());
                    }
                    Ok(Value::Attr {
                        name,
                        split: Some(sep),
                        size: false,
                    })
                }
                ("requestBodyJSON", None, [a]) => match &a.expr {
                    Expr::Literal(Val::String(p)) if p == "/model" || p == "model" => {
                        Ok(Value::Attr {
                            name: "model".into(),
                            split: None,
                            size: false,
                        })
                    }
                    _ => Err("`requestBodyJSON` is supported for `'/model'` only".into()),
                },
                (
                    op::ADD | op::SUBSTRACT | op::MULTIPLY | op::DIVIDE | op::MODULO | op::NEGATE,
                    _,
                    _,
                ) => Err("arithmetic is not supported".into()),
                (f, _, _) => Err(format!(
                    "`{}` is not supported as a value",
                    f.trim_matches('_')
                )),
            },
            _ => Err(format!("{} is not supported here", describe(e))),
        }
    }
}

/// The children of a node of the same kind, or the node itself.
fn flatten(
    mut p: Predicate,
    slot: fn(&mut Predicate) -> &mut Option<Vec<Predicate>>,
) -> Vec<Predicate> {
    let only_slot = !p.is_test()
        && [p.all.is_some(), p.any.is_some(), p.not.is_some()]
            .iter()
            .filter(|x| **x)
            .count()
            == 1;
    match slot(&mut p).take() {
        Some(list) if only_slot => list,
        Some(list) => {
            *slot(&mut p) = Some(list);
            vec![p]
        }
        None => vec![p],
    }
}

/// `a == x || a == y || a in [z]` → `a in [x, y, z]`; anything else stays an `any`.
fn merge_in(list: Vec<Predicate>) -> Predicate {
    let first = list.first().map(|p| (p.attribute.clone(), p.split.clone()));
    let plain = |p: &Predicate| {
        p.is_test()
            && !p.size
            && (p.eq.is_some() || p.one_of.is_some())
            && Some((p.attribute.clone(), p.split.clone())) == first
    };
    if list.len() > 1 && list.iter().all(|p| plain(p) && only_eq_or_in(p)) {
        let mut values: Vec<String> = Vec::new();
        for p in &list {
            for v in p.eq.iter().chain(p.one_of.iter().flatten()) {
                if !values.contains(v) {
                    values.push(v.clone());
                }
            }
        }
        let (attribute, split) = first.unwrap_or_default();
        return Predicate {
            attribute,
            split,
            one_of: Some(values),
            ..Predicate::default()
        };
    }
    Predicate {
        any: Some(list),
        ..Predicate::default()
    }
}

fn only_eq_or_in(p: &Predicate) -> bool {
    let q = Predicate {
        attribute: p.attribute.clone(),
        split: p.split.clone(),
        eq: p.eq.clone(),
        one_of: p.one_of.clone(),
        ..Predicate::default()
    };
    &q == p
}

/// `!p`, simplified where a test has a direct opposite.
fn negate(mut p: Predicate) -> Predicate {
    if p.is_test() && !p.size && p.split.is_none() && !is_list_attr(&p.attribute) {
        if let Some(v) = p.eq.take() {
            p.neq = Some(v);
            return p;
        }
        if let Some(v) = p.neq.take() {
            p.eq = Some(v);
            return p;
        }
    }
    if let Some(b) = p.exists.filter(|_| p.is_test()) {
        p.exists = Some(!b);
        return p;
    }
    if let Some(inner) = p.not.take().filter(|_| p.all.is_none() && p.any.is_none()) {
        return *inner;
    }
    Predicate {
        not: Some(Box::new(p)),
        ..Predicate::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Predicate {
        let v = compile_predicate(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(v.len(), 1, "{src}: {v:?}");
        v[0].clone()
    }

    #[test]
    fn compiles_comparisons_and_functions() {
        assert_eq!(
            one("auth.identity.userid == 'alice'").eq.as_deref(),
            Some("alice")
        );
        assert_eq!(
            one("\"alice\" == auth.identity.userid").eq.as_deref(),
            Some("alice")
        );
        assert_eq!(one("request.method != 'GET'").neq.as_deref(), Some("GET"));
        assert_eq!(
            one("request.headers['x-tenant'] == 'a'").attribute,
            "request.headers['x-tenant']"
        );
        assert_eq!(
            one("request.path.startsWith('/v1/')")
                .starts_with
                .as_deref(),
            Some("/v1/")
        );
        assert_eq!(
            one("request.path.endsWith('/models')").ends_with.as_deref(),
            Some("/models")
        );
        assert_eq!(
            one("request.host.contains('example')").contains.as_deref(),
            Some("example")
        );
        assert_eq!(
            one("request.method in ['GET', 'HEAD']").one_of,
            Some(vec!["GET".into(), "HEAD".into()])
        );
        assert_eq!(
            one("'premium' in auth.identity.groups").eq.as_deref(),
            Some("premium")
        );
        let p = one("auth.identity.groups.split(\",\").exists(g, g == \"free\")");
        assert_eq!(
            (p.split.as_deref(), p.eq.as_deref()),
            (Some(","), Some("free"))
        );
        assert_eq!(
            one("auth.identity.groups.exists(g, g == 'free')").attribute,
            "auth.identity.groups"
        );
        assert_eq!(one("has(request.headers.x_a)").exists, Some(true));
        assert_eq!(one("!has(auth.identity.tier)").exists, Some(false));
        assert_eq!(one("!(request.path == '/a')").neq.as_deref(), Some("/a"));
        assert_eq!(one("requestBodyJSON('/model') == 'm'").attribute, "model");
        let p = one("size(request.path) > 3");
        assert!(p.size);
        assert_eq!(p.gt.as_deref(), Some("3"));
        assert_eq!(one("3 < request.path.size()").gt.as_deref(), Some("3"));
        assert_eq!(
            one("auth.identity.tier == 'free'").attribute,
            "auth.identity.tier"
        );
        assert_eq!(
            one("auth.identity.user.username == 'u'").attribute,
            "auth.identity.userid"
        );
        assert_eq!(one("auth.identity.quota >= 10").ge.as_deref(), Some("10"));
        assert!(compile_predicate("true").unwrap().is_empty());
    }

    #[test]
    fn compiles_boolean_structure() {
        let p = one("request.path == '/a' || request.path == '/b' || request.path in ['/c']");
        assert_eq!(p.one_of, Some(vec!["/a".into(), "/b".into(), "/c".into()]));
        let v = compile_predicate("request.path == '/a' && (auth.identity.userid == 'u')").unwrap();
        assert_eq!(v.len(), 2);
        let p = one("request.path == '/a' || auth.identity.tier == 'free'");
        assert_eq!(p.any.as_ref().map(Vec::len), Some(2));
        let p = one("!request.path.endsWith('/v1/models')");
        assert_eq!(
            p.not.as_ref().and_then(|n| n.ends_with.as_deref()),
            Some("/v1/models")
        );
        let p = one("!(request.path == '/a' && request.method == 'GET')");
        assert_eq!(
            p.not.as_ref().and_then(|n| n.all.as_ref()).map(Vec::len),
            Some(2)
        );
        assert_eq!(one("!(!has(request.headers.x))").exists, Some(true));
        let v = compile_predicate("request.path.startsWith('/v1/') && !request.path.endsWith('/models') && auth.identity.tier in ['free', 'basic']").unwrap();
        assert_eq!(v.len(), 3);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json[1]["not"]["endsWith"], "/models");
    }

    #[test]
    fn refuses_with_a_reason() {
        for (bad, why) in [
            ("request.path.matches('^/v1')", "regular-expression"),
            ("size(request.path) + 1 > 1", "arithmetic"),
            ("request.path == request.host", "two attributes"),
            ("request.body.messages == 'x'", "unknown attribute"),
            ("foo == 'x'", "unknown attribute"),
            ("request.path ==", "syntax"),
            ("false", "always false"),
            ("auth.identity.userid", "alone"),
            ("auth.identity.groups.all(g, g == 'a')", "exists"),
            ("auth.identity.groups.exists(g, g != 'a')", "ambiguous"),
            (
                "auth.identity.groups.exists(g, g.startsWith('a') && g.endsWith('b'))",
                "inside",
            ),
            ("request.path == 1.5", "floating"),
            ("auth.identity.groups != 'a'", "ambiguous"),
            ("x.exists(g)", "not supported"),
            ("request.path.lowerAscii() == 'a'", "not supported"),
            ("auth.identity.tier ? true : false", "ternary"),
        ] {
            let err = compile_predicate(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(compile_predicate(&"a".repeat(5000)).is_err());
    }

    #[test]
    fn counters_are_attributes() {
        assert_eq!(
            compile_counter("auth.identity.userid").unwrap(),
            "auth.identity.userid"
        );
        assert_eq!(
            compile_counter("auth.identity.user.username").unwrap(),
            "auth.identity.userid"
        );
        assert_eq!(
            compile_counter("auth.identity.tier").unwrap(),
            "auth.identity.tier"
        );
        assert_eq!(
            compile_counter("request.headers['x-org']").unwrap(),
            "request.headers['x-org']"
        );
        assert!(compile_counter("auth.identity.userid + 'x'").is_err());
        assert!(compile_counter("size(auth.identity.userid)").is_err());
    }

    /// Every compiled predicate is accepted by the plugins' own parser.
    #[test]
    fn output_is_what_the_plugins_read() {
        for src in [
            "request.path.startsWith('/v1/') && !request.path.endsWith('/models')",
            "auth.identity.tier == 'free' || request.headers['x-plan'] in ['a', 'b']",
            "size(auth.identity.groups) >= 2",
            "auth.identity.groups.split(',').exists(g, g.startsWith('team-') || g == 'x')",
        ] {
            for p in compile_predicate(src).unwrap() {
                let text = serde_json::to_string(&p).unwrap();
                let c: infergate_core::attributes::PredicateConfig =
                    serde_json::from_str(&text).unwrap();
                infergate_core::attributes::Predicate::compile(&c)
                    .unwrap_or_else(|e| panic!("{src}: {text}: {e}"));
            }
        }
    }
}
