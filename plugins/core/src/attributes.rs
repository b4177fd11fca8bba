//! Request attributes that limits and rules refer to, and predicates over them.
//!
//! The names follow Kuadrant's well-known attributes (`auth.identity.userid`,
//! `auth.identity.<any property>`, `request.path`, `request.headers['x']`, `source.address`,
//! …) so policies translate one to one; the short forms (`identity.userid`,
//! `request.headers.x`) are accepted too.
//!
//! A predicate is a small checked tree the translator compiles CEL into (`all` / `any` / `not`
//! over single-attribute tests). Evaluation follows CEL's rules for missing values: a test on
//! an attribute the request does not have is an error, `&&` with a false side and `||` with a
//! true side absorb it, and a `when` list that ends in an error does not hold — so a limit
//! conditioned on a property the identity lacks is skipped, as Kuadrant skips it.

pub mod derived;

use serde::Deserialize;

/// An attribute of the request or its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// The authenticated user id.
    UserId,
    /// The identity's groups (a list).
    Groups,
    /// Any other identity property: `auth.identity.<path>` (`tier`, `org`, `user.username`).
    Identity(Vec<String>),
    /// `:path` without the query string.
    Path,
    /// The query string (`request.query`, without `?`).
    Query,
    /// `:method`.
    Method,
    /// `:authority` without the port.
    Host,
    /// A request header (lower case name).
    Header(String),
    /// The request body's `model`.
    Model,
    /// The client's `ip:port` (`source.address`).
    SourceAddress,
    /// The client's IP (`source.remote_address`).
    SourceIp,
    /// An attribute read straight from the request, defined in [`derived`].
    Derived(&'static derived::Derived),
}

/// Longest attribute name accepted.
const MAX_ATTRIBUTE_LEN: usize = 256;

/// Why an attribute name or a predicate is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeError {
    /// The name is longer than the limit.
    TooLong,
    /// `[…]` without a quoted key in this path.
    UnquotedKey(String),
    /// A quoted key that never ends, in this path.
    UnterminatedKey(String),
    /// A quoted key not followed by `]`, in this path.
    MissingBracket(String),
    /// Not a dotted attribute path.
    NotAPath(String),
    /// `auth.identity` without a property.
    IdentityAlone,
    /// Not a known attribute.
    Unknown(String),
    /// A predicate nested too deep or with too many tests.
    TooDeep,
    /// A node mixing `all` / `any` / `not` / `attribute`.
    MixedNode,
    /// A node with nothing in it.
    EmptyNode,
    /// A test without `attribute`.
    NoAttribute,
    /// `split` with an empty separator.
    EmptySplit,
    /// A test with no or several comparisons.
    NotOneTest,
}

impl std::fmt::Display for AttributeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLong => write!(f, "attribute names are at most {MAX_ATTRIBUTE_LEN} bytes"),
            Self::UnquotedKey(src) => write!(f, "`[…]` in `{src}` needs a quoted key"),
            Self::UnterminatedKey(src) => write!(f, "unterminated key in `{src}`"),
            Self::MissingBracket(src) => write!(f, "expected `]` in `{src}`"),
            Self::NotAPath(src) => write!(f, "`{src}` is not an attribute path"),
            Self::IdentityAlone => f.write_str("`auth.identity` alone is not an attribute; name a property (`auth.identity.tier`)"),
            Self::Unknown(name) => write!(f, "unknown attribute `{name}` (known: auth.identity.<property>, request.path, request.url_path, request.query, request.method, request.host, request.headers['<name>'], source.address, source.remote_address, model, {})", derived::names()),
            Self::TooDeep => write!(f, "a predicate is at most {MAX_DEPTH} levels and {MAX_NODES} tests deep"),
            Self::MixedNode => f.write_str("a node is exactly one of `all`, `any`, `not`, or an `attribute` test"),
            Self::EmptyNode => f.write_str("empty node"),
            Self::NoAttribute => f.write_str("`attribute` (or `all` / `any` / `not`) is required"),
            Self::EmptySplit => f.write_str("`split` needs a non-empty separator"),
            Self::NotOneTest => f.write_str("exactly one of `eq`, `neq`, `startsWith`, `endsWith`, `contains`, `in`, `exists`, `lt`, `le`, `gt`, `ge` is required"),
        }
    }
}

impl std::error::Error for AttributeError {}

/// For callers that report errors as text (the policy translator's CEL compiler).
impl From<AttributeError> for String {
    fn from(e: AttributeError) -> Self {
        e.to_string()
    }
}

/// Splits `a.b['c'].d` into `["a", "b", "c", "d"]`.
fn path_segments(src: &str) -> Result<Vec<String>, AttributeError> {
    let mut out = Vec::new();
    let mut rest = src;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let quote = r.chars().next().filter(|c| *c == '\'' || *c == '"');
            let Some(q) = quote else {
                return Err(AttributeError::UnquotedKey(src.to_string()));
            };
            let body = &r[1..];
            let end = body
                .find(q)
                .ok_or_else(|| AttributeError::UnterminatedKey(src.to_string()))?;
            out.push(body[..end].to_string());
            rest = body[end + 1..]
                .strip_prefix(']')
                .ok_or_else(|| AttributeError::MissingBracket(src.to_string()))?;
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let seg = &r[..end];
            if seg.is_empty()
                || !seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(AttributeError::NotAPath(src.to_string()));
            }
            out.push(seg.to_string());
            rest = &r[end..];
        }
    }
    Ok(out)
}

impl Attribute {
    /// Parses an attribute name.
    pub fn parse(name: &str) -> Result<Self, AttributeError> {
        let name = name.trim();
        if name.len() > MAX_ATTRIBUTE_LEN {
            return Err(AttributeError::TooLong);
        }
        let short = name.strip_prefix("auth.").unwrap_or(name);
        Ok(match short {
            "identity.userid" | "identity.user" | "identity.sub" => Self::UserId,
            "identity.groups" => Self::Groups,
            "request.path" | "request.url_path" => Self::Path,
            "request.query" => Self::Query,
            "request.method" => Self::Method,
            "request.host" => Self::Host,
            "source.address" => Self::SourceAddress,
            "source.remote_address" => Self::SourceIp,
            "model" | "request.model" | "request.body.model" => Self::Model,
            other => {
                if let Some(d) = derived::find(other) {
                    return Ok(Self::Derived(d));
                }
                if let Some(p) = other.strip_prefix("identity") {
                    let path = path_segments(p)?;
                    if path.is_empty() {
                        return Err(AttributeError::IdentityAlone);
                    }
                    return Ok(Self::Identity(path));
                }
                let header = other
                    .strip_prefix("request.headers.")
                    .or_else(|| {
                        other
                            .strip_prefix("request.headers['")
                            .and_then(|r| r.strip_suffix("']"))
                    })
                    .or_else(|| {
                        other
                            .strip_prefix("request.headers[\"")
                            .and_then(|r| r.strip_suffix("\"]"))
                    });
                match header.and_then(crate::headers::normalize_header_name) {
                    Some(h) => Self::Header(h),
                    None => return Err(AttributeError::Unknown(name.to_string())),
                }
            }
        })
    }
}

/// Where attribute values come from for one request.
pub trait AttributeSource {
    /// The values of `attr` (empty when absent). Single-valued attributes give one value.
    fn values(&self, attr: &Attribute) -> Vec<String>;
}

/// Whether an attribute is a list in CEL (`groups`; an identity property holding an array).
fn is_list(attr: &Attribute, values: &[String]) -> bool {
    matches!(attr, Attribute::Groups) || values.len() > 1
}

/// A predicate as written in configuration: a test on one `attribute`, or `all` / `any` /
/// `not` over predicates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PredicateConfig {
    /// The attribute name (tests only).
    #[serde(default)]
    pub attribute: Option<String>,
    /// Equal to (any value, for lists).
    #[serde(default)]
    pub eq: Option<String>,
    /// Not equal to (no value, for lists).
    #[serde(default)]
    pub neq: Option<String>,
    /// Starts with.
    #[serde(default)]
    pub starts_with: Option<String>,
    /// Ends with.
    #[serde(default)]
    pub ends_with: Option<String>,
    /// Contains the substring.
    #[serde(default)]
    pub contains: Option<String>,
    /// One of these.
    #[serde(default, rename = "in")]
    pub one_of: Option<Vec<String>>,
    /// Present at all.
    #[serde(default)]
    pub exists: Option<bool>,
    /// Less than (integers when both sides are integers, else strings).
    #[serde(default)]
    pub lt: Option<String>,
    /// Less than or equal.
    #[serde(default)]
    pub le: Option<String>,
    /// Greater than.
    #[serde(default)]
    pub gt: Option<String>,
    /// Greater than or equal.
    #[serde(default)]
    pub ge: Option<String>,
    /// Test the value's `size()` (characters; elements for a list) instead of the value.
    #[serde(default)]
    pub size: bool,
    /// Split each value on this separator first (`.split(',')`).
    #[serde(default)]
    pub split: Option<String>,
    /// All of these hold.
    #[serde(default)]
    pub all: Option<Vec<PredicateConfig>>,
    /// Any of these holds.
    #[serde(default)]
    pub any: Option<Vec<PredicateConfig>>,
    /// This does not hold.
    #[serde(default)]
    pub not: Option<Box<PredicateConfig>>,
}

/// Deepest predicate tree accepted.
pub const MAX_DEPTH: usize = 16;
/// Most nodes in one predicate tree.
pub const MAX_NODES: usize = 256;

/// A compiled predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// One test on one attribute.
    Test(Box<Leaf>),
    /// Every one holds.
    All(Vec<Predicate>),
    /// Some one holds.
    Any(Vec<Predicate>),
    /// Does not hold.
    Not(Box<Predicate>),
}

/// A test on one attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    attribute: Attribute,
    split: Option<String>,
    size: bool,
    test: Test,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Eq(String),
    Neq(String),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    In(Vec<String>),
    Exists(bool),
    Cmp(std::cmp::Ordering, bool, String),
}

/// CEL orders integers numerically and strings by bytes (no float parsing: it would cost the
/// plugins ~20 KB for values policies never hold).
fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

impl Predicate {
    /// Compiles a predicate tree.
    pub fn compile(c: &PredicateConfig) -> Result<Self, AttributeError> {
        let mut nodes = 0;
        Self::compile_at(c, 0, &mut nodes)
    }

    fn compile_at(
        c: &PredicateConfig,
        depth: usize,
        nodes: &mut usize,
    ) -> Result<Self, AttributeError> {
        *nodes += 1;
        if depth > MAX_DEPTH || *nodes > MAX_NODES {
            return Err(AttributeError::TooDeep);
        }
        let groups = usize::from(c.all.is_some())
            + usize::from(c.any.is_some())
            + usize::from(c.not.is_some());
        if groups > 0 {
            if groups > 1 || c.attribute.is_some() {
                return Err(AttributeError::MixedNode);
            }
            let list = |v: &Vec<PredicateConfig>, nodes: &mut usize| {
                v.iter()
                    .map(|p| Self::compile_at(p, depth + 1, nodes))
                    .collect::<Result<Vec<_>, _>>()
            };
            return Ok(match (&c.all, &c.any, &c.not) {
                (Some(v), _, _) => Self::All(list(v, nodes)?),
                (_, Some(v), _) => Self::Any(list(v, nodes)?),
                (_, _, Some(n)) => Self::Not(Box::new(Self::compile_at(n, depth + 1, nodes)?)),
                _ => return Err(AttributeError::EmptyNode),
            });
        }
        let Some(name) = &c.attribute else {
            return Err(AttributeError::NoAttribute);
        };
        let attribute = Attribute::parse(name)?;
        let mut tests = Vec::new();
        let s = |v: &Option<String>| v.clone();
        use std::cmp::Ordering::{Greater, Less};
        for (v, t) in [
            (s(&c.eq), Test::Eq as fn(String) -> Test),
            (s(&c.neq), Test::Neq),
            (s(&c.starts_with), Test::StartsWith),
            (s(&c.ends_with), Test::EndsWith),
            (s(&c.contains), Test::Contains),
            (s(&c.lt), |v| Test::Cmp(Less, false, v)),
            (s(&c.le), |v| Test::Cmp(Less, true, v)),
            (s(&c.gt), |v| Test::Cmp(Greater, false, v)),
            (s(&c.ge), |v| Test::Cmp(Greater, true, v)),
        ] {
            if let Some(v) = v {
                tests.push(t(v));
            }
        }
        if let Some(v) = &c.one_of {
            tests.push(Test::In(v.clone()));
        }
        if let Some(v) = c.exists {
            tests.push(Test::Exists(v));
        }
        if c.split.as_deref() == Some("") {
            return Err(AttributeError::EmptySplit);
        }
        match (tests.pop(), tests.is_empty()) {
            (Some(test), true) => Ok(Self::Test(Box::new(Leaf {
                attribute,
                split: c.split.clone(),
                size: c.size,
                test,
            }))),
            _ => Err(AttributeError::NotOneTest),
        }
    }

    /// The attributes it reads.
    pub fn attributes(&self) -> Vec<&Attribute> {
        match self {
            Self::Test(l) => vec![&l.attribute],
            Self::All(v) | Self::Any(v) => v.iter().flat_map(Self::attributes).collect(),
            Self::Not(p) => p.attributes(),
        }
    }

    /// Evaluates against a request: `Some(result)`, or `None` for a CEL error (a missing
    /// attribute that nothing absorbed).
    pub fn eval(&self, src: &dyn AttributeSource) -> Option<bool> {
        match self {
            Self::Test(l) => l.eval(src),
            Self::All(v) => {
                let mut err = false;
                for p in v {
                    match p.eval(src) {
                        Some(false) => return Some(false),
                        None => err = true,
                        Some(true) => {}
                    }
                }
                (!err).then_some(true)
            }
            Self::Any(v) => {
                let mut err = false;
                for p in v {
                    match p.eval(src) {
                        Some(true) => return Some(true),
                        None => err = true,
                        Some(false) => {}
                    }
                }
                (!err).then_some(false)
            }
            Self::Not(p) => p.eval(src).map(|b| !b),
        }
    }

    /// Whether it holds (an error does not).
    pub fn holds(&self, src: &dyn AttributeSource) -> bool {
        self.eval(src) == Some(true)
    }
}

impl Leaf {
    fn eval(&self, src: &dyn AttributeSource) -> Option<bool> {
        let raw = src.values(&self.attribute);
        if let Test::Exists(want) = self.test {
            return Some(raw.is_empty() != want);
        }
        if raw.is_empty() {
            return None;
        }
        let list = is_list(&self.attribute, &raw) || self.split.is_some();
        let values: Vec<String> = match &self.split {
            Some(sep) => raw
                .iter()
                .flat_map(|v| v.split(sep.as_str()))
                .map(str::to_string)
                .collect(),
            None => raw,
        };
        if self.size {
            let n = if list {
                values.len()
            } else {
                values.first().map(|v| v.chars().count()).unwrap_or(0)
            };
            return Some(test_one(&self.test, &n.to_string()));
        }
        Some(match &self.test {
            Test::Neq(v) => !values.iter().any(|x| x == v),
            t => values.iter().any(|x| test_one(t, x)),
        })
    }
}

fn test_one(t: &Test, x: &str) -> bool {
    match t {
        Test::Eq(v) => x == v,
        Test::Neq(v) => x != v,
        Test::StartsWith(p) => x.starts_with(p.as_str()),
        Test::EndsWith(p) => x.ends_with(p.as_str()),
        Test::Contains(p) => x.contains(p.as_str()),
        Test::In(set) => set.iter().any(|v| v == x),
        Test::Exists(_) => true,
        Test::Cmp(ord, or_eq, v) => {
            let c = compare(x, v);
            c == *ord || (*or_eq && c.is_eq())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Src;
    impl AttributeSource for Src {
        fn values(&self, attr: &Attribute) -> Vec<String> {
            match attr {
                Attribute::UserId => vec!["alice".into()],
                Attribute::Groups => vec!["free".into(), "beta".into()],
                Attribute::Path => vec!["/v1/chat/completions".into()],
                Attribute::Identity(p) if p == &["tier"] => vec!["free".into()],
                Attribute::Identity(p) if p == &["quota"] => vec!["20".into()],
                _ => vec![],
            }
        }
    }

    fn pred(json: &str) -> Result<Predicate, String> {
        Ok(Predicate::compile(
            &serde_json::from_str(json).map_err(|e| e.to_string())?,
        )?)
    }

    fn eval(json: &str) -> Option<bool> {
        pred(json).unwrap().eval(&Src)
    }

    #[test]
    fn parses_kuadrant_attribute_names() {
        assert_eq!(
            Attribute::parse("auth.identity.userid"),
            Ok(Attribute::UserId)
        );
        assert_eq!(
            Attribute::parse("auth.identity.tier"),
            Ok(Attribute::Identity(vec!["tier".into()]))
        );
        assert_eq!(
            Attribute::parse("auth.identity.user.extra['org']"),
            Ok(Attribute::Identity(vec![
                "user".into(),
                "extra".into(),
                "org".into()
            ]))
        );
        assert_eq!(
            Attribute::parse("request.headers['X-Tenant']"),
            Ok(Attribute::Header("x-tenant".into()))
        );
        assert_eq!(
            Attribute::parse("request.headers.x-tenant"),
            Ok(Attribute::Header("x-tenant".into()))
        );
        assert_eq!(
            Attribute::parse("source.remote_address"),
            Ok(Attribute::SourceIp)
        );
        assert!(Attribute::parse("request.body.messages").is_err());
        assert!(Attribute::parse("request.headers['bad header']").is_err());
        assert!(Attribute::parse("auth.identity").is_err());
        assert!(Attribute::parse("auth.identity.a['b").is_err());
        assert!(Attribute::parse(&format!("auth.identity.{}", "a".repeat(300))).is_err());
    }

    #[test]
    fn evaluates_tests() {
        assert_eq!(
            eval(r#"{"attribute":"identity.groups","eq":"free"}"#),
            Some(true)
        );
        assert_eq!(
            eval(r#"{"attribute":"identity.groups","neq":"free"}"#),
            Some(false)
        );
        assert_eq!(
            eval(r#"{"attribute":"request.path","startsWith":"/v1/"}"#),
            Some(true)
        );
        assert_eq!(
            eval(r#"{"attribute":"request.path","endsWith":"/models"}"#),
            Some(false)
        );
        assert_eq!(
            eval(r#"{"attribute":"request.path","contains":"chat"}"#),
            Some(true)
        );
        assert_eq!(
            eval(r#"{"attribute":"identity.userid","in":["bob","alice"]}"#),
            Some(true)
        );
        assert_eq!(eval(r#"{"attribute":"model","exists":false}"#), Some(true));
        assert_eq!(
            eval(r#"{"attribute":"identity.quota","gt":"3"}"#),
            Some(true)
        );
        assert_eq!(
            eval(r#"{"attribute":"identity.quota","le":"3"}"#),
            Some(false)
        );
        assert_eq!(
            eval(r#"{"attribute":"identity.userid","size":true,"eq":"5"}"#),
            Some(true)
        );
        assert_eq!(
            eval(r#"{"attribute":"identity.groups","size":true,"gt":"1"}"#),
            Some(true)
        );
        assert_eq!(
            eval(r#"{"attribute":"request.path","split":"/","eq":"chat"}"#),
            Some(true)
        );
        assert!(pred(r#"{"attribute":"model","eq":"x","neq":"y"}"#).is_err());
        assert!(pred(r#"{"attribute":"model"}"#).is_err());
        assert!(pred(r#"{"attribute":"model","split":"","eq":"x"}"#).is_err());
    }

    #[test]
    fn missing_attributes_are_errors_that_and_or_absorb() {
        // A test on a property the identity lacks is an error, not false.
        assert_eq!(eval(r#"{"attribute":"identity.org","eq":"a"}"#), None);
        assert_eq!(eval(r#"{"attribute":"identity.org","neq":"a"}"#), None);
        assert_eq!(
            eval(r#"{"not":{"attribute":"identity.org","eq":"a"}}"#),
            None
        );
        assert_eq!(
            eval(
                r#"{"any":[{"attribute":"identity.org","eq":"a"},{"attribute":"identity.tier","eq":"free"}]}"#
            ),
            Some(true)
        );
        assert_eq!(
            eval(
                r#"{"all":[{"attribute":"identity.org","eq":"a"},{"attribute":"identity.tier","eq":"x"}]}"#
            ),
            Some(false)
        );
        assert_eq!(
            eval(
                r#"{"all":[{"attribute":"identity.org","eq":"a"},{"attribute":"identity.tier","eq":"free"}]}"#
            ),
            None
        );
        assert!(!pred(r#"{"attribute":"identity.org","eq":"a"}"#)
            .unwrap()
            .holds(&Src));
    }

    #[test]
    fn trees_are_checked_and_bounded() {
        let p = pred(
            r#"{"all":[{"attribute":"request.path","startsWith":"/v1/"},
                {"not":{"attribute":"request.path","endsWith":"/models"}}]}"#,
        )
        .unwrap();
        assert!(p.holds(&Src));
        assert_eq!(p.attributes(), vec![&Attribute::Path, &Attribute::Path]);
        assert!(pred(r#"{"all":[],"attribute":"model"}"#).is_err());
        assert!(pred(r#"{"all":[],"any":[]}"#).is_err());
        assert!(pred("{}").is_err());
        let mut deep = r#"{"attribute":"model","exists":true}"#.to_string();
        for _ in 0..20 {
            deep = format!(r#"{{"not":{deep}}}"#);
        }
        assert!(pred(&deep).unwrap_err().contains("levels"));
        let wide = format!(
            r#"{{"any":[{}]}}"#,
            vec![r#"{"attribute":"model","exists":true}"#; 300].join(",")
        );
        assert!(pred(&wide).is_err());
    }
}
