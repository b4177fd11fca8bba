//! AuthPolicy `response.success.filters.identity.json.properties` → the identity object the
//! plugins carry (`auth.identity.<property>` in RateLimitPolicy / TokenRateLimitPolicy).
//!
//! A property is a static `value`, an Authorino `selector`, or a CEL `expression` that names
//! an attribute (turned into the equivalent selector). For API keys, what selects from the
//! Secret (`auth.identity.metadata.labels.tier`) is resolved here, per key, so the plugin never
//! holds the Secrets' metadata; everything else (JWT claims, the TokenReview status,
//! `auth.metadata.*`, `context.request.*`) becomes the auth plugin's `identityProperties`,
//! evaluated per request.

use crate::resources::ValueOrSelector;
use infergate_core::auth::identity::valid_property_name;
use infergate_core::auth::selector::Selector;
use serde_json::{json, Value};

/// One property, normalized.
#[derive(Debug, Clone, PartialEq)]
pub enum Property {
    /// A static value.
    Value(Value),
    /// An Authorino selector (validated).
    Selector(String),
}

impl Property {
    /// The plugin's `identityProperties` entry.
    pub fn config(&self) -> Value {
        match self {
            Self::Value(v) => json!({ "value": v }),
            Self::Selector(s) => json!({ "selector": s }),
        }
    }

    /// Whether it selects from the authenticated object (`auth.identity.…`).
    pub fn reads_identity(&self) -> bool {
        matches!(self, Self::Selector(s) if s.starts_with("auth.identity."))
    }
}

/// Escapes a key for a selector path segment.
fn escape(seg: &str) -> String {
    seg.replace('\\', "\\\\")
        .replace('.', "\\.")
        .replace('|', "\\|")
        .replace('@', "\\@")
}

/// `a.b['c.d'].e` → `["a", "b", "c.d", "e"]`; `None` when it is not a plain path.
fn segments(src: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = src.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let q = r.chars().next().filter(|c| *c == '\'' || *c == '"')?;
            let body = &r[1..];
            let end = body.find(q)?;
            out.push(body[..end].to_string());
            rest = body[end + 1..].strip_prefix(']')?;
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let seg = &r[..end];
            if seg.is_empty()
                || !seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return None;
            }
            out.push(seg.to_string());
            rest = &r[end..];
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A CEL attribute path as the Authorino selector reading the same value.
pub(crate) fn attribute_selector(expr: &str) -> Result<String, String> {
    let segs = segments(expr).ok_or_else(|| {
        format!("`{expr}`: an identity property expression must name an attribute (`auth.identity.sub`, `auth.metadata.tier.tier`, `request.headers['x']`); computed values are not supported")
    })?;
    let seg = |i: usize| segs.get(i).map(String::as_str);
    let path: Vec<String> = match (seg(0), seg(1)) {
        (Some("auth"), Some("identity" | "metadata")) => segs.clone(),
        (Some("request"), Some("headers")) if segs.len() == 3 => vec![
            "context".into(),
            "request".into(),
            "http".into(),
            "headers".into(),
            segs[2].to_ascii_lowercase(),
        ],
        (Some("request"), Some(f @ ("path" | "url_path" | "method" | "host" | "query")))
            if segs.len() == 2 =>
        {
            let f = if f == "url_path" { "path" } else { f };
            ["context", "request", "http", f]
                .iter()
                .map(|s| s.to_string())
                .collect()
        }
        _ => {
            return Err(format!(
                "`{expr}`: identity properties can read auth.identity.*, auth.metadata.*, request.headers[…], request.path, request.method, request.host, request.query"
            ))
        }
    };
    Ok(path.iter().map(|s| escape(s)).collect::<Vec<_>>().join("."))
}

/// Normalizes one property; errors say what is wrong with it.
pub fn normalize(name: &str, v: &ValueOrSelector) -> Result<Property, String> {
    if !valid_property_name(name) {
        return Err("a property name is a letter or `_` then letters, digits, `_`, `-`".into());
    }
    let set = usize::from(v.value.is_some())
        + usize::from(v.selector.is_some())
        + usize::from(v.expression.is_some());
    if set != 1 {
        return Err("set exactly one of `value`, `selector`, `expression`".into());
    }
    if let Some(val) = &v.value {
        return Ok(Property::Value(val.clone()));
    }
    let sel = match (&v.selector, &v.expression) {
        (Some(s), _) => s.trim().to_string(),
        (_, Some(e)) => attribute_selector(e.trim())?,
        _ => return Err("set `value`, `selector` or `expression`".into()),
    };
    Selector::parse(&sel)?;
    let root_ok = sel.starts_with("auth.identity.")
        || sel.starts_with("auth.metadata.")
        || sel.starts_with("context.request.");
    if !root_ok {
        return Err(format!(
            "`{sel}`: select from auth.identity, auth.metadata or context.request"
        ));
    }
    Ok(Property::Selector(sel))
}

/// Resolves a property against an API key's Secret (Authorino's `auth.identity` for API
/// keys; its `data` is never read). `Ok(None)`: the property is not the Secret's (it reads
/// `auth.metadata` or the request) and is evaluated per request, or the Secret lacks it.
pub fn for_secret(secret: &Value, p: &Property) -> Result<Option<Value>, String> {
    match p {
        Property::Value(v) => Ok(Some(v.clone())),
        Property::Selector(s) if p.reads_identity() => {
            let mut identity = secret.clone();
            if let Some(m) = identity.as_object_mut() {
                m.remove("data");
                m.remove("stringData");
            }
            let sel = Selector::parse(s)?;
            Ok(sel.select(&json!({ "auth": { "identity": identity } })))
        }
        Property::Selector(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(json: Value) -> ValueOrSelector {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn normalizes_values_selectors_and_expressions() {
        assert_eq!(
            normalize("tier", &vs(json!({"value": "free"}))).unwrap(),
            Property::Value(json!("free"))
        );
        assert_eq!(
            normalize(
                "tier",
                &vs(
                    json!({"expression": "auth.identity.metadata.annotations['kuadrant.io/tier']"})
                )
            )
            .unwrap(),
            Property::Selector(r"auth.identity.metadata.annotations.kuadrant\.io/tier".into())
        );
        assert_eq!(
            normalize(
                "t",
                &vs(json!({"expression": "auth.metadata.matchedTier['tier']"}))
            )
            .unwrap(),
            Property::Selector("auth.metadata.matchedTier.tier".into())
        );
        assert_eq!(
            normalize(
                "org",
                &vs(json!({"expression": "request.headers['X-Org']"}))
            )
            .unwrap(),
            Property::Selector("context.request.http.headers.x-org".into())
        );
        for bad in [
            json!({"expression": "auth.identity.a + 'x'"}),
            json!({"selector": "auth.identity.a.@nope"}),
            json!({"selector": "other.thing"}),
            json!({"value": 1, "selector": "auth.identity.a"}),
            json!({}),
        ] {
            assert!(normalize("p", &vs(bad.clone())).is_err(), "{bad}");
        }
        assert!(normalize("bad name", &vs(json!({"value": 1}))).is_err());
    }

    #[test]
    fn resolves_against_a_secret_without_reading_its_data() {
        let secret = json!({"metadata": {"name": "k1", "labels": {"tier": "free"},
            "annotations": {"secret.kuadrant.io/user-id": "alice"}}, "data": {"api_key": "eA=="}});
        let p = normalize(
            "userid",
            &vs(json!({"selector": r"auth.identity.metadata.annotations.secret\.kuadrant\.io/user-id"})),
        )
        .unwrap();
        assert_eq!(for_secret(&secret, &p).unwrap(), Some(json!("alice")));
        let data = Property::Selector("auth.identity.data.api_key".into());
        assert_eq!(for_secret(&secret, &data).unwrap(), None);
        let meta = Property::Selector("auth.metadata.x.tier".into());
        assert_eq!(for_secret(&secret, &meta).unwrap(), None);
    }
}
