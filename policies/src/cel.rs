//! The CEL subset Kuadrant policies use in `when` predicates, `counters` and
//! `patternMatching`, compiled at translation time into the plugins' predicate form
//! (`{attribute, eq|neq|startsWith|in|exists}`; a list of them is an AND).
//!
//! Supported:
//! - attribute paths: `auth.identity.userid`, `auth.identity.groups`, `auth.identity.tier`,
//!   `request.path`, `request.url_path`, `request.method`, `request.host`,
//!   `request.headers['x']`, `requestBodyJSON('/model')` (the body's `model`);
//! - string literals, lists of string literals, `true`;
//! - `a == 'v'`, `a != 'v'` (either side may be the literal), `a in ['v', …]`,
//!   `a.startsWith('p')`, `has(a)`, `'v' in auth.identity.groups`,
//!   `auth.identity.groups.exists(g, g == 'v')` (also after `.split(',')`);
//! - `&&`; `!` over a single comparison (`!(a == 'v')`, `!has(a)`); `||` only where the
//!   alternatives are equalities on the same attribute (it becomes one `in`).
//!
//! Anything else is an error: an OR cannot be split into several limits without changing what
//! is counted (two limits are two counters, and a request matching both alternatives would be
//! charged twice), so it is refused rather than approximated.

use serde::{Deserialize, Serialize};

/// A compiled predicate, serialized exactly as the plugins read it
/// (`infergate_core::attributes::PredicateConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct Predicate {
    /// Attribute name (Kuadrant form).
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
    /// One of.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
    /// Present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

impl Predicate {
    fn new(attribute: &str) -> Self {
        Self {
            attribute: attribute.to_string(),
            ..Self::default()
        }
    }
}

/// Compiles a `when` predicate into predicates that must all hold.
pub fn compile_predicate(src: &str) -> Result<Vec<Predicate>, String> {
    let expr = Parser::new(src)?.parse_all()?;
    let dnf = to_dnf(&expr)?;
    match dnf.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err("the expression is always false".into()),
        _ => Err(format!(
            "`||` over different attributes or tests cannot be expressed: the plugin's conditions are an AND of single-attribute tests, and splitting `{src}` into several limits would count differently"
        )),
    }
}

/// Compiles a counter expression: it must be a plain attribute path.
pub fn compile_counter(src: &str) -> Result<String, String> {
    match Parser::new(src)?.parse_all()? {
        Expr::Path(p) => attribute(&p),
        _ => Err(format!(
            "`{src}`: a counter must be an attribute path (e.g. `auth.identity.userid`)"
        )),
    }
}

fn attribute(path: &str) -> Result<String, String> {
    // A TokenReview identity is `{user: {username, groups}}` in Authorino; the plugin carries
    // it as the identity's userid and groups.
    let path = match path {
        "auth.identity.user.username" => "auth.identity.userid",
        "auth.identity.user.groups" => "auth.identity.groups",
        p => p,
    };
    infergate_core::attributes::Attribute::parse(path)?;
    Ok(path.to_string())
}

fn is_list_attr(path: &str) -> bool {
    let path = if path == "auth.identity.user.groups" {
        "auth.identity.groups"
    } else {
        path
    };
    matches!(
        infergate_core::attributes::Attribute::parse(path),
        Ok(infergate_core::attributes::Attribute::Groups)
    )
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Str(String),
    Bool(bool),
    List(Vec<Expr>),
    Path(String),
    Ident(String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(&'static str, Box<Expr>, Box<Expr>),
    Call(Option<Box<Expr>>, String, Vec<Expr>),
}

type Dnf = Vec<Vec<Predicate>>;

fn to_dnf(e: &Expr) -> Result<Dnf, String> {
    Ok(match e {
        Expr::Bool(true) => vec![vec![]],
        Expr::Bool(false) => vec![],
        Expr::And(a, b) => {
            let (a, b) = (to_dnf(a)?, to_dnf(b)?);
            let mut out = Vec::new();
            for x in &a {
                for y in &b {
                    let mut c = x.clone();
                    c.extend(y.iter().cloned());
                    out.push(c);
                }
            }
            out
        }
        Expr::Or(a, b) => {
            let mut out = to_dnf(a)?;
            out.extend(to_dnf(b)?);
            merge_or(out)
        }
        Expr::Not(inner) => {
            let d = to_dnf(inner)?;
            match d.as_slice() {
                [one] if one.len() == 1 => {
                    let p = &one[0];
                    let mut n = Predicate::new(&p.attribute);
                    if let Some(v) = &p.eq {
                        if is_list_attr(&p.attribute) {
                            return Err(format!(
                                "`!` over a membership test of `{}` cannot be expressed",
                                p.attribute
                            ));
                        }
                        n.neq = Some(v.clone());
                    } else if let Some(v) = &p.neq {
                        n.eq = Some(v.clone());
                    } else if let Some(b) = p.exists {
                        n.exists = Some(!b);
                    } else {
                        return Err(format!(
                            "`!` over `startsWith` or `in` of `{}` cannot be expressed (no negated form)",
                            p.attribute
                        ));
                    }
                    vec![vec![n]]
                }
                _ => return Err("`!` is supported only over a single comparison".into()),
            }
        }
        Expr::Cmp(op, a, b) => vec![vec![compare(op, a, b)?]],
        Expr::Call(target, name, args) => vec![vec![call(target.as_deref(), name, args)?]],
        Expr::Path(p) => {
            return Err(format!(
                "`{p}` alone is not a condition; compare it (`{p} == 'value'`)"
            ))
        }
        other => return Err(format!("unsupported expression {other:?}")),
    })
}

/// `a == x || a == y || a in [z]` → `a in [x, y, z]`.
fn merge_or(d: Dnf) -> Dnf {
    if d.len() < 2 || d.iter().any(|c| c.len() != 1) {
        return d;
    }
    let attr = &d[0][0].attribute;
    let mut values = Vec::new();
    for c in &d {
        let p = &c[0];
        if &p.attribute != attr {
            return d;
        }
        match (&p.eq, &p.one_of, &p.neq, &p.starts_with, p.exists) {
            (Some(v), None, None, None, None) => values.push(v.clone()),
            (None, Some(vs), None, None, None) => values.extend(vs.iter().cloned()),
            _ => return d,
        }
    }
    values.dedup();
    let mut p = Predicate::new(attr);
    p.one_of = Some(values);
    vec![vec![p]]
}

fn literal(e: &Expr) -> Option<String> {
    match e {
        Expr::Str(s) => Some(s.clone()),
        _ => None,
    }
}

fn compare(op: &str, a: &Expr, b: &Expr) -> Result<Predicate, String> {
    match op {
        "==" | "!=" => {
            let (path, lit) = match (a, b) {
                (Expr::Path(p), x) | (x, Expr::Path(p)) => (p, x),
                _ => return Err(format!("`{op}` needs an attribute on one side")),
            };
            let Some(v) = literal(lit) else {
                return Err(format!("`{path} {op} …` needs a string literal"));
            };
            let mut p = Predicate::new(&attribute(path)?);
            if op == "==" {
                p.eq = Some(v);
            } else {
                if is_list_attr(path) {
                    return Err(format!("`!=` on the list `{path}` cannot be expressed; use `!('v' in {path})`… which is not supported either"));
                }
                p.neq = Some(v);
            }
            Ok(p)
        }
        "in" => match (a, b) {
            (Expr::Path(path), Expr::List(items)) => {
                let values = items
                    .iter()
                    .map(|i| {
                        literal(i).ok_or_else(|| format!("`{path} in [...]` needs string literals"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let mut p = Predicate::new(&attribute(path)?);
                p.one_of = Some(values);
                Ok(p)
            }
            (Expr::Str(v), Expr::Path(path)) if is_list_attr(path) => {
                let mut p = Predicate::new(&attribute(path)?);
                p.eq = Some(v.clone());
                Ok(p)
            }
            _ => Err(
                "`in` is supported as `attribute in ['a', …]` or `'v' in auth.identity.groups`"
                    .into(),
            ),
        },
        other => Err(format!("operator `{other}` is not supported")),
    }
}

fn call(target: Option<&Expr>, name: &str, args: &[Expr]) -> Result<Predicate, String> {
    match (target, name, args) {
        (Some(Expr::Path(path)), "startsWith", [Expr::Str(prefix)]) => {
            let mut p = Predicate::new(&attribute(path)?);
            p.starts_with = Some(prefix.clone());
            Ok(p)
        }
        (None, "has", [Expr::Path(path)]) => {
            let mut p = Predicate::new(&attribute(path)?);
            p.exists = Some(true);
            Ok(p)
        }
        (Some(t), "exists", [Expr::Ident(var), body]) => {
            let path = match t {
                Expr::Path(p) => p.clone(),
                // `groups.split(',')`: the plugin already sees groups as a list.
                Expr::Call(Some(inner), split, sargs) if split == "split" && sargs.len() == 1 => {
                    match inner.as_ref() {
                        Expr::Path(p) => p.clone(),
                        _ => return Err("`.split(…).exists(…)` needs an attribute".into()),
                    }
                }
                _ => return Err("`.exists(…)` needs an attribute".into()),
            };
            if !is_list_attr(&path) {
                return Err(format!(
                    "`.exists(…)` is supported on `auth.identity.groups`, not `{path}`"
                ));
            }
            let bound = Expr::Path(path.clone());
            let body = substitute(body, var, &bound);
            let d = to_dnf(&body)?;
            match d.as_slice() {
                [one] if one.len() == 1 && (one[0].eq.is_some() || one[0].one_of.is_some()) => {
                    Ok(one[0].clone())
                }
                _ => Err(format!(
                    "`.exists({var}, …)` is supported with `{var} == 'v'` or `{var} in [...]`"
                )),
            }
        }
        (Some(Expr::Path(path)), m, _) => Err(format!(
            "method `{path}.{m}(…)` is not supported (supported: startsWith, exists)"
        )),
        (_, f, _) => Err(format!("function `{f}` is not supported here")),
    }
}

fn substitute(e: &Expr, var: &str, with: &Expr) -> Expr {
    let s = |x: &Expr| Box::new(substitute(x, var, with));
    match e {
        Expr::Ident(v) | Expr::Path(v) if v == var => with.clone(),
        Expr::Not(a) => Expr::Not(s(a)),
        Expr::And(a, b) => Expr::And(s(a), s(b)),
        Expr::Or(a, b) => Expr::Or(s(a), s(b)),
        Expr::Cmp(o, a, b) => Expr::Cmp(o, s(a), s(b)),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer and parser

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(String),
    Punct(&'static str),
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let b: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(b[s..i].iter().collect()));
        } else if c.is_ascii_digit() {
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Tok::Int(b[s..i].iter().collect()));
        } else if c == '\'' || c == '"' {
            i += 1;
            let mut s = String::new();
            loop {
                match b.get(i) {
                    None => return Err("unterminated string literal".into()),
                    Some(&q) if q == c => break,
                    Some('\\') => {
                        i += 1;
                        match b.get(i) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(&x) => s.push(x),
                            None => return Err("unterminated string literal".into()),
                        }
                    }
                    Some(&x) => s.push(x),
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Str(s));
        } else {
            let two: String = b[i..(i + 2).min(b.len())].iter().collect();
            let p = match two.as_str() {
                "==" => "==",
                "!=" => "!=",
                "&&" => "&&",
                "||" => "||",
                "<=" | ">=" => return Err(format!("operator `{two}` is not supported")),
                _ => match c {
                    '!' => "!",
                    '(' => "(",
                    ')' => ")",
                    '[' => "[",
                    ']' => "]",
                    ',' => ",",
                    '.' => ".",
                    _ => return Err(format!("unexpected `{c}`")),
                },
            };
            i += p.len();
            out.push(Tok::Punct(p));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn new(src: &str) -> Result<Self, String> {
        Ok(Self {
            toks: lex(src)?,
            pos: 0,
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn eat(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Punct(x)) if *x == p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &str) -> Result<(), String> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(format!("expected `{p}`, found {:?}", self.peek()))
        }
    }

    fn parse_all(mut self) -> Result<Expr, String> {
        let e = self.or()?;
        if self.pos != self.toks.len() {
            return Err(format!("unexpected {:?}", self.peek()));
        }
        Ok(e)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.eat("||") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.rel()?;
        while self.eat("&&") {
            e = Expr::And(Box::new(e), Box::new(self.rel()?));
        }
        Ok(e)
    }

    fn rel(&mut self) -> Result<Expr, String> {
        let a = self.unary()?;
        let op = if self.eat("==") {
            "=="
        } else if self.eat("!=") {
            "!="
        } else if matches!(self.peek(), Some(Tok::Ident(k)) if k == "in") {
            self.pos += 1;
            "in"
        } else {
            return Ok(a);
        };
        let b = self.unary()?;
        Ok(Expr::Cmp(op, Box::new(a), Box::new(b)))
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let mut e = self.primary()?;
        loop {
            if self.eat(".") {
                let Some(Tok::Ident(name)) = self.peek().cloned() else {
                    return Err("expected a name after `.`".into());
                };
                self.pos += 1;
                if self.eat("(") {
                    let args = self.args(")")?;
                    e = Expr::Call(Some(Box::new(e)), name, args);
                } else {
                    e = match e {
                        Expr::Path(p) | Expr::Ident(p) => Expr::Path(format!("{p}.{name}")),
                        _ => return Err(format!("`.{name}` on a non-attribute")),
                    };
                }
            } else if self.eat("[") {
                let Some(Tok::Str(key)) = self.peek().cloned() else {
                    return Err("only string keys are supported in `[…]`".into());
                };
                self.pos += 1;
                self.expect("]")?;
                e = match e {
                    Expr::Path(p) | Expr::Ident(p) => Expr::Path(format!("{p}['{key}']")),
                    _ => return Err("`[…]` on a non-attribute".into()),
                };
            } else {
                return Ok(e);
            }
        }
    }

    fn args(&mut self, close: &str) -> Result<Vec<Expr>, String> {
        let mut args = Vec::new();
        if self.eat(close) {
            return Ok(args);
        }
        loop {
            args.push(self.or()?);
            if self.eat(close) {
                return Ok(args);
            }
            self.expect(",")?;
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.pos += 1;
                Ok(Expr::Str(s))
            }
            Some(Tok::Int(n)) => Err(format!(
                "number `{n}`: request attributes are strings; compare with a string literal"
            )),
            Some(Tok::Punct("(")) => {
                self.pos += 1;
                let e = self.or()?;
                self.expect(")")?;
                Ok(e)
            }
            Some(Tok::Punct("[")) => {
                self.pos += 1;
                Ok(Expr::List(self.args("]")?))
            }
            Some(Tok::Ident(id)) => {
                self.pos += 1;
                match id.as_str() {
                    "true" => return Ok(Expr::Bool(true)),
                    "false" => return Ok(Expr::Bool(false)),
                    _ => {}
                }
                if self.eat("(") {
                    let args = self.args(")")?;
                    if id == "requestBodyJSON" {
                        return match args.as_slice() {
                            [Expr::Str(p)] if p == "/model" || p == "model" => {
                                Ok(Expr::Path("model".into()))
                            }
                            _ => Err("`requestBodyJSON` is supported for `'/model'` only".into()),
                        };
                    }
                    return Ok(Expr::Call(None, id, args));
                }
                // A lone identifier is a comprehension variable unless it starts a known path.
                if matches!(
                    id.as_str(),
                    "auth" | "request" | "source" | "destination" | "model"
                ) {
                    Ok(Expr::Path(id))
                } else {
                    Ok(Expr::Ident(id))
                }
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Predicate {
        let v = compile_predicate(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(v.len(), 1, "{src}");
        v[0].clone()
    }

    #[test]
    fn compiles_the_subset() {
        assert_eq!(
            one("auth.identity.userid == 'alice'").eq.as_deref(),
            Some("alice")
        );
        assert_eq!(
            one("\"alice\" == auth.identity.userid").eq.as_deref(),
            Some("alice")
        );
        assert_eq!(one("request.method != 'GET'").neq.as_deref(), Some("GET"));
        let p = one("request.headers['x-tenant'] == 'a'");
        assert_eq!(p.attribute, "request.headers['x-tenant']");
        assert_eq!(
            one("request.path.startsWith('/v1/')")
                .starts_with
                .as_deref(),
            Some("/v1/")
        );
        assert_eq!(
            one("request.method in ['GET', 'HEAD']").one_of,
            Some(vec!["GET".into(), "HEAD".into()])
        );
        assert_eq!(
            one("'premium' in auth.identity.groups").eq.as_deref(),
            Some("premium")
        );
        assert_eq!(
            one("auth.identity.groups.split(\",\").exists(g, g == \"free\")")
                .eq
                .as_deref(),
            Some("free")
        );
        assert_eq!(
            one("auth.identity.groups.exists(g, g == 'free')").attribute,
            "auth.identity.groups"
        );
        assert_eq!(one("has(request.headers['x-a'])").exists, Some(true));
        assert_eq!(one("!has(request.headers['x-a'])").exists, Some(false));
        assert_eq!(one("!(request.path == '/a')").neq.as_deref(), Some("/a"));
        assert_eq!(one("requestBodyJSON('/model') == 'm'").attribute, "model");
        let p = one("request.path == '/a' || request.path == '/b' || request.path in ['/c']");
        assert_eq!(p.one_of, Some(vec!["/a".into(), "/b".into(), "/c".into()]));
        let v = compile_predicate("request.path == '/a' && (auth.identity.userid == 'u')").unwrap();
        assert_eq!(v.len(), 2);
        assert!(compile_predicate("true").unwrap().is_empty());
    }

    #[test]
    fn refuses_what_cannot_be_expressed() {
        for bad in [
            "request.path == '/a' || auth.identity.userid == 'u'",
            "!request.path.startsWith('/a')",
            "!(request.path == '/a' && request.method == 'GET')",
            "request.path.endsWith('/a')",
            "size(request.path) > 1",
            "request.body.messages == 'x'",
            "auth.identity.userid == 1",
            "request.path ==",
            "false",
            "auth.identity.userid",
        ] {
            assert!(compile_predicate(bad).is_err(), "{bad}");
        }
        assert_eq!(
            compile_counter("auth.identity.userid").unwrap(),
            "auth.identity.userid"
        );
        assert_eq!(
            compile_counter("auth.identity.user.username").unwrap(),
            "auth.identity.userid"
        );
        assert!(compile_counter("auth.identity.userid + 'x'").is_err());
        assert!(compile_counter("auth.identity.metadata.name").is_err());
    }
}
