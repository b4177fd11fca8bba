//! Attributes read straight from what the request carries (a header, a pseudo-header, the
//! client address), each defined in one file of `derived/` and listed once in [`REGISTRY`].
//!
//! **Adding one** (for example Kuadrant's `request.referer`): a new file in `derived/` holding
//! a `pub const` [`Derived`] — the names policies use and how its values are read from
//! [`RequestFacts`] — and one line in [`REGISTRY`] (with its `mod` line). Nothing else
//! changes: [`Attribute::parse`](super::Attribute::parse) finds it by name, so limits'
//! `counters` and `when` predicates and the policy translator's CEL compiler accept it, and
//! the rate limiter's request attributes read it. `derived::tests` checks every entry.

mod request_id;
mod scheme;
mod user_agent;

/// What a derived attribute can read from the request.
pub trait RequestFacts {
    /// Every value of a request header (pseudo-headers such as `:scheme` included), in order.
    fn header_values(&self, name: &str) -> Vec<String>;
    /// The client's `ip:port`, when known.
    fn source_address(&self) -> Option<&str>;
}

/// An attribute computed from [`RequestFacts`].
#[derive(Debug)]
pub struct Derived {
    /// The names it is written as (the first is the canonical one).
    pub names: &'static [&'static str],
    /// Its values for one request (empty when the request has none).
    pub values: fn(&dyn RequestFacts) -> Vec<String>,
}

impl Derived {
    /// The canonical name.
    pub fn name(&self) -> &'static str {
        self.names.first().copied().unwrap_or_default()
    }
}

/// Two derived attributes are the same when they have the same canonical name.
impl PartialEq for Derived {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Derived {}

/// Every derived attribute: one line each.
pub const REGISTRY: &[&Derived] = &[&scheme::SCHEME, &user_agent::USER_AGENT, &request_id::ID];

/// The derived attribute written as `name`.
pub fn find(name: &str) -> Option<&'static Derived> {
    REGISTRY.iter().copied().find(|d| d.names.contains(&name))
}

/// The canonical names, comma-separated (for error messages).
pub fn names() -> String {
    REGISTRY
        .iter()
        .map(|d| d.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{Attribute, AttributeSource};
    use crate::ratelimit::attrs::RequestAttributes;
    use crate::ratelimit::RateLimitConfig;

    fn request() -> RequestAttributes {
        let headers = [
            (":scheme", "https"),
            (":path", "/v1/chat/completions"),
            ("User-Agent", "curl/7.88"),
            ("x-request-id", "req-1"),
        ];
        RequestAttributes::new(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            None,
            Some("10.0.0.7:5555".into()),
            &RateLimitConfig::default(),
        )
    }

    #[test]
    fn every_registered_name_parses_to_its_attribute_and_reads_the_request() {
        let req = request();
        let want = [
            ("request.scheme", "https"),
            ("request.useragent", "curl/7.88"),
            ("request.id", "req-1"),
        ];
        assert_eq!(REGISTRY.len(), want.len(), "a new entry needs a case here");
        for (name, value) in want {
            let attr = Attribute::parse(name).unwrap();
            assert!(
                matches!(&attr, Attribute::Derived(d) if d.name() == name),
                "{name}"
            );
            assert_eq!(req.values(&attr), vec![value.to_string()], "{name}");
        }
        for d in REGISTRY {
            for name in d.names {
                assert_eq!(find(name), Some(*d), "{name}");
            }
        }
    }

    #[test]
    fn an_absent_value_is_empty_and_unknown_names_list_the_registry() {
        let empty = RequestAttributes::new(Vec::new(), None, None, &RateLimitConfig::default());
        let attr = Attribute::parse("request.useragent").unwrap();
        assert!(empty.values(&attr).is_empty());
        let err = Attribute::parse("request.referer").unwrap_err().to_string();
        assert!(
            err.contains("request.scheme, request.useragent, request.id"),
            "{err}"
        );
    }
}
