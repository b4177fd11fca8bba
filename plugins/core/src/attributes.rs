//! Request attributes that limits and rules refer to, and simple predicates over them.
//!
//! The names follow Kuadrant's well-known attributes (`auth.identity.userid`,
//! `request.path`, `request.headers['x']`, …) so policies translate one to one; the short
//! forms (`identity.userid`, `request.headers.x`) are accepted too.

use serde::Deserialize;

/// An attribute of the request or its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// The authenticated user id.
    UserId,
    /// The identity's groups (a list).
    Groups,
    /// `:path` without the query string.
    Path,
    /// `:method`.
    Method,
    /// `:authority` without the port.
    Host,
    /// A request header (lower case name).
    Header(String),
    /// The request body's `model`.
    Model,
}

impl Attribute {
    /// Parses an attribute name.
    pub fn parse(name: &str) -> Result<Self, String> {
        let name = name.trim();
        let short = name.strip_prefix("auth.").unwrap_or(name);
        Ok(match short {
            "identity.userid" | "identity.user" | "identity.sub" => Self::UserId,
            "identity.groups" | "identity.tier" => Self::Groups,
            "request.path" | "request.url_path" => Self::Path,
            "request.method" => Self::Method,
            "request.host" => Self::Host,
            "model" | "request.model" | "request.body.model" => Self::Model,
            other => {
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
                    None => return Err(format!("unknown attribute `{name}` (known: identity.userid, identity.groups, request.path, request.method, request.host, request.headers.<name>, model)")),
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

/// A predicate on one attribute, as written in configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PredicateConfig {
    /// The attribute name.
    pub attribute: String,
    /// Equal to (any value, for lists).
    #[serde(default)]
    pub eq: Option<String>,
    /// Not equal to (no value, for lists).
    #[serde(default)]
    pub neq: Option<String>,
    /// Starts with.
    #[serde(default)]
    pub starts_with: Option<String>,
    /// One of these.
    #[serde(default, rename = "in")]
    pub one_of: Option<Vec<String>>,
    /// Present at all.
    #[serde(default)]
    pub exists: Option<bool>,
}

/// A compiled predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predicate {
    attribute: Attribute,
    test: Test,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    Eq(String),
    Neq(String),
    StartsWith(String),
    In(Vec<String>),
    Exists(bool),
}

impl Predicate {
    /// Compiles a predicate; exactly one test must be given.
    pub fn compile(c: &PredicateConfig) -> Result<Self, String> {
        let attribute = Attribute::parse(&c.attribute)?;
        let mut tests = Vec::new();
        if let Some(v) = &c.eq {
            tests.push(Test::Eq(v.clone()));
        }
        if let Some(v) = &c.neq {
            tests.push(Test::Neq(v.clone()));
        }
        if let Some(v) = &c.starts_with {
            tests.push(Test::StartsWith(v.clone()));
        }
        if let Some(v) = &c.one_of {
            tests.push(Test::In(v.clone()));
        }
        if let Some(v) = c.exists {
            tests.push(Test::Exists(v));
        }
        match (tests.pop(), tests.is_empty()) {
            (Some(test), true) => Ok(Self { attribute, test }),
            _ => Err("exactly one of `eq`, `neq`, `startsWith`, `in`, `exists` is required".into()),
        }
    }

    /// The attribute it reads.
    pub fn attribute(&self) -> &Attribute {
        &self.attribute
    }

    /// Evaluates against a request.
    pub fn holds(&self, src: &dyn AttributeSource) -> bool {
        let values = src.values(&self.attribute);
        match &self.test {
            Test::Eq(v) => values.iter().any(|x| x == v),
            Test::Neq(v) => !values.iter().any(|x| x == v),
            Test::StartsWith(p) => values.iter().any(|x| x.starts_with(p.as_str())),
            Test::In(set) => values.iter().any(|x| set.contains(x)),
            Test::Exists(want) => values.is_empty() != *want,
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
                _ => vec![],
            }
        }
    }

    fn pred(json: &str) -> Result<Predicate, String> {
        Predicate::compile(&serde_json::from_str(json).map_err(|e| e.to_string())?)
    }

    #[test]
    fn parses_kuadrant_attribute_names() {
        assert_eq!(
            Attribute::parse("auth.identity.userid"),
            Ok(Attribute::UserId)
        );
        assert_eq!(
            Attribute::parse("request.headers['X-Tenant']"),
            Ok(Attribute::Header("x-tenant".into()))
        );
        assert_eq!(
            Attribute::parse("request.headers.x-tenant"),
            Ok(Attribute::Header("x-tenant".into()))
        );
        assert!(Attribute::parse("request.body.messages").is_err());
        assert!(Attribute::parse("request.headers['bad header']").is_err());
    }

    #[test]
    fn evaluates_predicates() {
        assert!(pred(r#"{"attribute":"identity.groups","eq":"free"}"#)
            .unwrap()
            .holds(&Src));
        assert!(!pred(r#"{"attribute":"identity.groups","neq":"free"}"#)
            .unwrap()
            .holds(&Src));
        assert!(pred(r#"{"attribute":"request.path","startsWith":"/v1/"}"#)
            .unwrap()
            .holds(&Src));
        assert!(
            pred(r#"{"attribute":"identity.userid","in":["bob","alice"]}"#)
                .unwrap()
                .holds(&Src)
        );
        assert!(pred(r#"{"attribute":"model","exists":false}"#)
            .unwrap()
            .holds(&Src));
        assert!(pred(r#"{"attribute":"model","eq":"x","neq":"y"}"#).is_err());
        assert!(pred(r#"{"attribute":"model"}"#).is_err());
    }
}
