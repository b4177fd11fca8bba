//! The identity object Kuadrant's policies see as `auth.identity`: the properties of an
//! AuthPolicy's `response.success.filters.<name>.json.properties`, built per request from the
//! authorization JSON Authorino would hold (`auth.identity` = the authenticated object — JWT
//! claims, the TokenReview status, the API key's Secret; `auth.metadata.<name>` = metadata
//! answers; `context.request.http` = the request), and carried to the rate limiter in Envoy
//! filter state ([`IDENTITY_PROPERTY`]), bounded in size.

use super::selector::Selector;
use super::{Identity, RequestView};
use crate::config::ConfigError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Filter-state property (set by the auth plugin, read by the rate limiter) holding the
/// identity object as JSON. Clients cannot set filter state.
pub const IDENTITY_PROPERTY: &str = "infergate.identity";

/// Largest identity object carried (bytes of JSON); a larger one is refused with a 500 by the
/// auth plugin and ignored by the rate limiter.
pub const MAX_IDENTITY_BYTES: usize = 4096;

/// Most properties one policy may define.
pub const MAX_PROPERTIES: usize = 32;

/// One property: a static `value` or a `selector` into the authorization JSON.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PropertyConfig {
    /// A static value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// An Authorino selector (`auth.identity.sub`, `auth.metadata.tier.tier`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

#[derive(Debug, Clone)]
enum Property {
    Value(Value),
    Selector(Selector),
}

/// Compiled identity properties, in name order.
#[derive(Debug, Clone, Default)]
pub struct IdentityProperties {
    props: Vec<(String, Property)>,
}

/// Whether `name` can be an identity property (`[A-Za-z_][A-Za-z0-9_-]*`, at most 64 bytes).
pub fn valid_property_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl IdentityProperties {
    /// Compiles `identityProperties`; errors name the property (`field` is its prefix).
    pub fn compile(
        field: &str,
        map: &BTreeMap<String, PropertyConfig>,
    ) -> Result<Self, ConfigError> {
        if map.len() > MAX_PROPERTIES {
            return Err(ConfigError::new(
                field,
                format!("at most {MAX_PROPERTIES} properties"),
            ));
        }
        let mut props = Vec::new();
        for (name, c) in map {
            let at = format!("{field}.{name}");
            if !valid_property_name(name) {
                return Err(ConfigError::new(
                    at,
                    "a property name is a letter or `_` then letters, digits, `_`, `-` (at most 64)",
                ));
            }
            let p = match (&c.value, &c.selector) {
                (Some(v), None) => Property::Value(v.clone()),
                (None, Some(s)) => Property::Selector(
                    Selector::parse(s)
                        .map_err(|m| ConfigError::new(format!("{at}.selector"), m))?,
                ),
                _ => {
                    return Err(ConfigError::new(
                        at,
                        "set exactly one of `value` and `selector`",
                    ))
                }
            };
            props.push((name.clone(), p));
        }
        Ok(Self { props })
    }

    /// Whether no property is defined.
    pub fn is_empty(&self) -> bool {
        self.props.is_empty()
    }

    /// Whether any property reads `auth.metadata`.
    pub fn reads_metadata(&self) -> bool {
        self.props.iter().any(|(_, p)| {
            matches!(p, Property::Selector(s) if s.path().first().map(String::as_str) == Some("auth")
                && s.path().get(1).map(String::as_str) == Some("metadata"))
        })
    }

    /// Evaluates the properties; a selector that finds nothing leaves its property out (as
    /// Authorino does), so limits counting on it are skipped.
    pub fn build(&self, authorization: &Value) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for (name, p) in &self.props {
            let v = match p {
                Property::Value(v) => Some(v.clone()),
                Property::Selector(s) => s.select(authorization),
            };
            if let Some(v) = v.filter(|v| !v.is_null()) {
                out.insert(name.clone(), v);
            }
        }
        out
    }
}

/// The request as Authorino's `context.request.http` shows it.
pub fn request_context(req: &dyn RequestView) -> Value {
    let mut headers = Map::new();
    for name in ["authorization", "x-api-key", "content-type", "user-agent"] {
        if let Some(v) = req.header_values(name).into_iter().next() {
            headers.insert(name.into(), Value::String(v));
        }
    }
    let path = req.path();
    let (p, q) = path.split_once('?').unwrap_or((&path, ""));
    json!({"request": {"http": {
        "method": req.method(), "path": p, "query": q, "host": req.host(), "headers": headers,
    }}})
}

/// The authorization JSON: `{context, auth: {identity, metadata}}`.
pub fn authorization_json(req: &dyn RequestView, identity: Value, metadata: Value) -> Value {
    json!({"context": request_context(req), "auth": {"identity": identity, "metadata": metadata}})
}

/// Folds evaluated properties into an identity: `userid` (a non-empty string) and `groups` (a
/// list of strings, or a comma-separated string) replace the method's defaults; every
/// property, these two included, is kept for predicates and counters.
pub fn apply(mut identity: Identity, props: BTreeMap<String, Value>) -> Identity {
    if let Some(Value::String(u)) = props.get("userid").filter(|u| u != &&json!("")) {
        identity.userid = u.clone();
    }
    if let Some(g) = props.get("groups") {
        identity.groups = groups_of(g);
    }
    identity.properties.extend(props);
    identity
}

/// A `groups` value as a list: an array's strings, or a comma-separated string.
pub fn groups_of(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// The object later filters see as `auth.identity`: the properties, with `userid` and
/// `groups` (a list) always present.
pub fn identity_object(identity: &Identity) -> Value {
    let mut m: Map<String, Value> = identity
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    m.insert("userid".into(), Value::String(identity.userid.clone()));
    m.insert("groups".into(), json!(identity.groups));
    Value::Object(m)
}

/// What Authorino holds as `auth.identity` for a Kubernetes TokenReview: the review's status
/// (`authenticated`, `user.username`, `user.groups`).
pub fn token_review_object(identity: &Identity) -> Value {
    json!({"authenticated": true, "user": {"username": identity.userid, "groups": identity.groups}})
}

/// The filter-state bytes for an identity; `None` when larger than [`MAX_IDENTITY_BYTES`].
pub fn encode(identity: &Identity) -> Option<Vec<u8>> {
    let bytes = serde_json::to_vec(&identity_object(identity)).ok()?;
    (bytes.len() <= MAX_IDENTITY_BYTES).then_some(bytes)
}

/// The identity object as later filters read it.
pub type IdentityObject = Map<String, Value>;

/// The scalar values at `path` in an identity object (`None` when absent).
pub fn values_at(object: &IdentityObject, path: &[String]) -> Option<Vec<String>> {
    let mut at = object.get(path.first()?)?;
    for seg in path.iter().skip(1) {
        at = match at {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(super::selector::scalars(at))
}

/// Reads filter-state bytes back: `None` when oversized or not a JSON object.
pub fn decode(bytes: &[u8]) -> Option<IdentityObject> {
    if bytes.len() > MAX_IDENTITY_BYTES {
        return None;
    }
    match serde_json::from_slice(bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(json: &str) -> Result<IdentityProperties, ConfigError> {
        let map: BTreeMap<String, PropertyConfig> = serde_json::from_str(json).unwrap();
        IdentityProperties::compile("identityProperties", &map)
    }

    #[test]
    fn builds_any_property_from_values_and_selectors() {
        let p = props(
            r#"{"userid": {"selector": "auth.identity.sub"},
                "tier": {"selector": "auth.metadata.matchedTier.tier"},
                "org": {"value": "acme"}, "missing": {"selector": "auth.identity.nope"}}"#,
        )
        .unwrap();
        assert!(p.reads_metadata());
        let built = p.build(&json!({"auth": {"identity": {"sub": "u1"},
            "metadata": {"matchedTier": {"tier": "premium"}}}}));
        assert_eq!(built.get("tier"), Some(&json!("premium")));
        assert!(!built.contains_key("missing"));
        let id = apply(
            Identity {
                userid: "default".into(),
                ..Identity::default()
            },
            built,
        );
        assert_eq!(id.userid, "u1");
        let bytes = encode(&id).unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!(back.get("org"), Some(&json!("acme")));
        assert_eq!(back.get("groups"), Some(&json!([])));
    }

    struct Req;
    impl RequestView for Req {
        fn header_values(&self, name: &str) -> Vec<String> {
            match name {
                "authorization" => vec!["Bearer k1".into()],
                _ => vec![],
            }
        }
        fn path(&self) -> String {
            "/v1/chat/completions?x=1".into()
        }
        fn host(&self) -> String {
            "gw".into()
        }
    }

    struct NoHost;
    impl crate::auth::AuthHost for NoHost {
        fn now(&self) -> u64 {
            0
        }
        fn key_set(&self, _: &str) -> Option<std::rc::Rc<crate::auth::jwt::KeySet>> {
            None
        }
        fn cache_get(&self, _: &str) -> Option<Vec<u8>> {
            None
        }
    }

    #[test]
    fn the_authenticator_applies_properties_to_the_method_identity() {
        let digest = crate::auth::apikey::KeyDigest::of(b"k1").to_hex();
        let config = format!(
            r#"{{"methods":[{{"name":"keys","apiKey":{{"keys":[{{"sha256":"{digest}",
                "identity":{{"userid":"alice","properties":{{"tier":"free"}}}}}}]}}}}],
              "identityProperties":{{"plan":{{"selector":"auth.identity.tier.@case:upper"}},
                "path":{{"selector":"context.request.http.path"}},
                "groups":{{"value":"a,b"}}}}}}"#
        );
        let a = crate::auth::Authenticator::new(
            crate::config::parse::<crate::auth::AuthConfig>(config.as_bytes()).unwrap(),
        );
        let crate::auth::Decision::Allow { identity, .. } = a.authenticate(&Req, &NoHost) else {
            panic!("not allowed")
        };
        assert_eq!(identity.userid, "alice");
        assert_eq!(identity.groups, vec!["a", "b"]);
        assert_eq!(identity.properties.get("plan"), Some(&json!("FREE")));
        assert_eq!(
            identity.properties.get("path"),
            Some(&json!("/v1/chat/completions"))
        );
        let bad = r#"{"methods":[{"name":"a","anonymous":{}}],"identityProperties":{"x":{}}}"#;
        let err = crate::config::parse::<crate::auth::AuthConfig>(bad.as_bytes()).unwrap_err();
        assert_eq!(err.path, "identityProperties.x");
    }

    #[test]
    fn bounds_and_names() {
        assert_eq!(
            props(r#"{"bad name": {"value": 1}}"#).unwrap_err().path,
            "identityProperties.bad name"
        );
        assert_eq!(
            props(r#"{"a": {"value": 1, "selector": "x"}}"#)
                .unwrap_err()
                .path,
            "identityProperties.a"
        );
        assert_eq!(
            props(r#"{"a": {"selector": "x.@nope"}}"#).unwrap_err().path,
            "identityProperties.a.selector"
        );
        let big = Identity {
            userid: "x".repeat(MAX_IDENTITY_BYTES),
            ..Identity::default()
        };
        assert!(encode(&big).is_none());
        assert!(decode(b"[1]").is_none());
        assert!(decode(&vec![b' '; MAX_IDENTITY_BYTES + 1]).is_none());
        assert_eq!(groups_of(&json!("a, b,,c")), vec!["a", "b", "c"]);
    }
}
