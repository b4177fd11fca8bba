//! Kuadrant policy API versions: older documents are brought to the `kuadrant.io/v1` shape the
//! translator reads, or refused with the reason.
//!
//! | kind | accepted | how |
//! |---|---|---|
//! | AuthPolicy | `v1`, `v1beta3` | same shape |
//! | AuthPolicy | `v1beta2` | same rules; `response.success.dynamicMetadata` is `filters`; `routeSelectors` refused |
//! | RateLimitPolicy | `v1`, `v1beta3` | same shape |
//! | RateLimitPolicy | `v1beta2` | `rates: [{limit, duration, unit}]` → `window`, `counters: [selector]` → `{expression}`, `when: [{selector, operator, value}]` → predicates; `routeSelectors` refused |
//! | TokenRateLimitPolicy | `v1alpha1` (its only version), `v1` | same shape |
//! | any | `v1beta1` | refused: a different model (Envoy rate-limit actions, Authorino `authScheme`) |
//!
//! In every version, Authorino-style pattern expressions (`{selector, operator, value}`,
//! `all` / `any`, `patternRef` into `spec.patterns`) in AuthPolicy `when` and
//! `patternMatching.patterns` become CEL predicates.

use crate::error::{Error, Result};
use serde_json::{json, Map, Value};

/// Brings `doc` (a Kuadrant policy of `kind` at `api_version`) to the `kuadrant.io/v1` shape.
pub fn upgrade(id: &str, kind: &str, api_version: &str, doc: &mut Value) -> Result<()> {
    if !matches!(
        kind,
        "AuthPolicy" | "RateLimitPolicy" | "TokenRateLimitPolicy"
    ) {
        return Ok(());
    }
    let err = |field: &str, m: String| Error::new(id.to_string(), field.to_string(), m);
    let version = api_version.strip_prefix("kuadrant.io/").ok_or_else(|| {
        err(
            "apiVersion",
            format!("`{api_version}`: a {kind} is `kuadrant.io/<version>`"),
        )
    })?;
    let supported: &[&str] = match kind {
        "TokenRateLimitPolicy" => &["v1alpha1", "v1"],
        _ => &["v1", "v1beta3", "v1beta2"],
    };
    if version == "v1beta1" {
        let what = if kind == "AuthPolicy" {
            "Authorino's `authScheme` model"
        } else {
            "Envoy rate-limit actions (`rateLimits`)"
        };
        return Err(err("apiVersion", format!("kuadrant.io/v1beta1 {kind} ({what}) is not supported: rewrite it as kuadrant.io/v1")));
    }
    if !supported.contains(&version) {
        return Err(err(
            "apiVersion",
            format!(
                "kuadrant.io/{version} {kind} is not supported (supported: {})",
                supported
                    .iter()
                    .map(|v| format!("kuadrant.io/{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let Some(spec) = doc.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if kind == "AuthPolicy" {
        let patterns = spec.remove("patterns").unwrap_or(Value::Null);
        for section in ["rules", "defaults", "overrides"] {
            let at = format!("spec.{section}");
            let Some(s) = spec.get_mut(section) else {
                continue;
            };
            let rules = if section == "rules" {
                Some(&mut *s)
            } else {
                s.get_mut("rules")
            };
            if let Some(r) = rules {
                auth_rules(r, &at, version, &patterns).map_err(|(f, m)| err(&f, m))?;
            }
            if section != "rules" {
                if let Some(w) = s.get_mut("when") {
                    conditions(w, &format!("{at}.when"), &patterns).map_err(|(f, m)| err(&f, m))?;
                }
            }
        }
        if let Some(w) = spec.get_mut("when") {
            conditions(w, "spec.when", &patterns).map_err(|(f, m)| err(&f, m))?;
        }
        if version == "v1beta2" && spec.contains_key("routeSelectors") {
            return Err(err("spec.routeSelectors", "`routeSelectors` (kuadrant.io/v1beta2) are not supported: target the HTTPRoute rule with `targetRef.sectionName`".into()));
        }
    } else if version == "v1beta2" {
        if spec.contains_key("limits") {
            limits(spec.get_mut("limits"), "spec.limits").map_err(|(f, m)| err(&f, m))?;
        }
        for section in ["defaults", "overrides"] {
            if let Some(s) = spec.get_mut(section) {
                limits(s.get_mut("limits"), &format!("spec.{section}.limits"))
                    .map_err(|(f, m)| err(&f, m))?;
            }
        }
        if let Some(t) = spec.get_mut("targetRef").and_then(Value::as_object_mut) {
            // v1beta2 references may name the namespace; only the policy's own is allowed.
            t.remove("namespace");
        }
    }
    Ok(())
}

type Fail = (String, String);

fn auth_rules(
    rules: &mut Value,
    at: &str,
    version: &str,
    patterns: &Value,
) -> std::result::Result<(), Fail> {
    let Some(rules) = rules.as_object_mut() else {
        return Ok(());
    };
    for section in ["authentication", "metadata", "authorization", "callbacks"] {
        let Some(items) = rules.get_mut(section).and_then(Value::as_object_mut) else {
            continue;
        };
        for (name, item) in items.iter_mut() {
            let f = format!("{at}.{section}.{name}");
            if version == "v1beta2" && item.get("routeSelectors").is_some() {
                return Err((format!("{f}.routeSelectors"), "`routeSelectors` (kuadrant.io/v1beta2) are not supported: target the HTTPRoute rule with `targetRef.sectionName`".into()));
            }
            if let Some(w) = item.get_mut("when") {
                conditions(w, &format!("{f}.when"), patterns)?;
            }
            if let Some(p) = item.pointer_mut("/patternMatching/patterns") {
                conditions(p, &format!("{f}.patternMatching.patterns"), patterns)?;
            }
        }
    }
    if let Some(success) = rules
        .get_mut("response")
        .and_then(|r| r.get_mut("success"))
        .and_then(Value::as_object_mut)
    {
        if version == "v1beta2" {
            if let Some(dm) = success.remove("dynamicMetadata") {
                success.insert("filters".into(), dm);
            }
        }
        for kind in ["filters", "headers"] {
            if let Some(items) = success.get_mut(kind).and_then(Value::as_object_mut) {
                for (name, item) in items.iter_mut() {
                    if let Some(w) = item.get_mut("when") {
                        conditions(
                            w,
                            &format!("{at}.response.success.{kind}.{name}.when"),
                            patterns,
                        )?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// v1beta2 limits → v1 limits.
fn limits(limits: Option<&mut Value>, at: &str) -> std::result::Result<(), Fail> {
    let Some(limits) = limits.and_then(Value::as_object_mut) else {
        return Ok(());
    };
    for (name, limit) in limits.iter_mut() {
        let f = format!("{at}.{name}");
        let Some(l) = limit.as_object_mut() else {
            continue;
        };
        if l.contains_key("routeSelectors") {
            return Err((format!("{f}.routeSelectors"), "`routeSelectors` (kuadrant.io/v1beta2) are not supported: target the HTTPRoute rule with `targetRef.sectionName`".into()));
        }
        if let Some(rates) = l.get_mut("rates").and_then(Value::as_array_mut) {
            for (i, r) in rates.iter_mut().enumerate() {
                let Some(r) = r.as_object_mut() else { continue };
                if r.contains_key("window") {
                    continue;
                }
                let duration = r
                    .remove("duration")
                    .and_then(|d| d.as_u64())
                    .ok_or_else(|| {
                        (
                            format!("{f}.rates[{i}].duration"),
                            "a positive integer is required".to_string(),
                        )
                    })?;
                let unit = r.remove("unit");
                let window = match unit.as_ref().and_then(Value::as_str) {
                    Some("second") => format!("{duration}s"),
                    Some("minute") => format!("{duration}m"),
                    Some("hour") => format!("{duration}h"),
                    Some("day") => format!("{}h", duration.saturating_mul(24)),
                    _ => {
                        return Err((
                            format!("{f}.rates[{i}].unit"),
                            "one of second, minute, hour, day".into(),
                        ))
                    }
                };
                r.insert("window".into(), Value::String(window));
            }
        }
        if let Some(counters) = l.get_mut("counters").and_then(Value::as_array_mut) {
            for (i, c) in counters.iter_mut().enumerate() {
                if let Value::String(sel) = c {
                    let expr = cel_path(sel).map_err(|m| (format!("{f}.counters[{i}]"), m))?;
                    *c = json!({ "expression": expr });
                }
            }
        }
        if let Some(w) = l.get_mut("when") {
            conditions(w, &format!("{f}.when"), &Value::Null)?;
        }
    }
    Ok(())
}

/// Rewrites a list of conditions (`{predicate}` kept; pattern expressions converted).
fn conditions(list: &mut Value, at: &str, patterns: &Value) -> std::result::Result<(), Fail> {
    let Some(items) = list.as_array_mut() else {
        return Ok(());
    };
    for (i, item) in items.iter_mut().enumerate() {
        let f = format!("{at}[{i}]");
        if item.get("predicate").is_some() {
            continue;
        }
        let pred = predicate(item, patterns, 0).map_err(|m| (f, m))?;
        *item = json!({ "predicate": pred });
    }
    Ok(())
}

fn predicate(item: &Value, patterns: &Value, depth: usize) -> std::result::Result<String, String> {
    if depth > 8 {
        return Err("pattern expressions nest at most 8 levels".into());
    }
    let obj: &Map<String, Value> = item
        .as_object()
        .ok_or_else(|| "a condition is an object".to_string())?;
    if let Some(p) = obj.get("predicate").and_then(Value::as_str) {
        return Ok(format!("({p})"));
    }
    if let Some(name) = obj.get("patternRef").and_then(Value::as_str) {
        let list = patterns
            .get(name)
            .and_then(Value::as_array)
            .ok_or_else(|| format!("`patternRef: {name}` names no entry of `spec.patterns`"))?;
        let parts = list
            .iter()
            .map(|p| predicate(p, patterns, depth + 1))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        return Ok(format!("({})", parts.join(" && ")));
    }
    for (key, op) in [("all", " && "), ("any", " || ")] {
        if let Some(list) = obj.get(key).and_then(Value::as_array) {
            let parts = list
                .iter()
                .map(|p| predicate(p, patterns, depth + 1))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            return Ok(format!("({})", parts.join(op)));
        }
    }
    let sel = obj.get("selector").and_then(Value::as_str).ok_or_else(|| {
        "a condition needs `predicate`, or `selector` + `operator` + `value`".to_string()
    })?;
    let operator = obj.get("operator").and_then(Value::as_str).unwrap_or("eq");
    let value = match obj.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let path = cel_path(sel)?;
    let lit = serde_json::to_string(&value).map_err(|e| e.to_string())?;
    Ok(match operator {
        "eq" => format!("{path} == {lit}"),
        "neq" => format!("{path} != {lit}"),
        "startswith" => format!("{path}.startsWith({lit})"),
        "endswith" => format!("{path}.endsWith({lit})"),
        "incl" => format!("{lit} in {path}"),
        "excl" => format!("!({lit} in {path})"),
        "matches" => format!("{path}.matches({lit})"),
        other => {
            return Err(format!(
                "unknown operator `{other}` (eq, neq, startswith, endswith, incl, excl, matches)"
            ))
        }
    })
}

/// An Authorino / well-known selector as a CEL attribute path: `context.request.http.path`
/// → `request.path`, `context.request.http.headers.x-org` → `request.headers['x-org']`,
/// `metadata.filter_metadata.envoy\.filters\.http\.ext_authz.identity.userid` →
/// `auth.identity.userid`, segments that are not identifiers indexed with `['…']`.
pub fn cel_path(selector: &str) -> std::result::Result<String, String> {
    let mut segs = Vec::new();
    let mut cur = String::new();
    let mut chars = selector.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '.' => segs.push(std::mem::take(&mut cur)),
            '@' | '|' | '#' | '*' | '{' => {
                return Err(format!("`{selector}`: selector modifiers and patterns cannot be written as a CEL attribute"))
            }
            _ => cur.push(c),
        }
    }
    segs.push(cur);
    if segs.iter().any(String::is_empty) {
        return Err(format!("`{selector}` has an empty segment"));
    }
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let segs: Vec<String> = match s.as_slice() {
        ["context", "request", "http", "headers", h] => {
            vec!["request".into(), "headers".into(), h.to_ascii_lowercase()]
        }
        ["context", "request", "http", rest @ ..] => std::iter::once("request")
            .chain(rest.iter().copied())
            .map(str::to_string)
            .collect(),
        ["metadata", "filter_metadata", "envoy.filters.http.ext_authz", rest @ ..] => {
            std::iter::once("auth")
                .chain(rest.iter().copied())
                .map(str::to_string)
                .collect()
        }
        _ => segs.clone(),
    };
    let ident = |x: &str| {
        let mut c = x.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
            && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
    };
    let mut out = String::new();
    for (i, seg) in segs.iter().enumerate() {
        if i == 0 {
            if !ident(seg) {
                return Err(format!(
                    "`{selector}` does not start with an attribute name"
                ));
            }
            out.push_str(seg);
        } else if ident(seg) {
            out.push('.');
            out.push_str(seg);
        } else {
            out.push_str(&format!(
                "['{}']",
                seg.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_become_cel_paths() {
        assert_eq!(
            cel_path("context.request.http.path").unwrap(),
            "request.path"
        );
        assert_eq!(
            cel_path("context.request.http.headers.X-Org").unwrap(),
            "request.headers['x-org']"
        );
        assert_eq!(
            cel_path(r"metadata.filter_metadata.envoy\.filters\.http\.ext_authz.identity.userid")
                .unwrap(),
            "auth.identity.userid"
        );
        assert_eq!(
            cel_path(r"auth.identity.metadata.annotations.secret\.kuadrant\.io/user-id").unwrap(),
            "auth.identity.metadata.annotations['secret.kuadrant.io/user-id']"
        );
        assert!(cel_path("auth.identity.groups.@tostr").is_err());
        assert!(cel_path("a..b").is_err());
    }

    #[test]
    fn pattern_expressions_become_predicates() {
        let p = |v: Value| {
            predicate(&v, &json!({"admins": [{"selector": "auth.identity.group", "operator": "eq", "value": "admin"}]}), 0).unwrap()
        };
        assert_eq!(
            p(
                json!({"selector": "context.request.http.method", "operator": "neq", "value": "GET"})
            ),
            r#"request.method != "GET""#
        );
        assert_eq!(
            p(json!({"selector": "auth.identity.groups", "operator": "incl", "value": "a\"b"})),
            r#""a\"b" in auth.identity.groups"#
        );
        assert_eq!(
            p(
                json!({"any": [{"selector": "request.path", "operator": "startswith", "value": "/v1"}, {"patternRef": "admins"}]})
            ),
            r#"(request.path.startsWith("/v1") || (auth.identity.group == "admin"))"#
        );
        assert!(predicate(&json!({"patternRef": "nope"}), &Value::Null, 0).is_err());
        assert!(predicate(
            &json!({"selector": "a", "operator": "gt", "value": "1"}),
            &Value::Null,
            0
        )
        .is_err());
    }

    #[test]
    fn versions_are_upgraded_or_refused() {
        let mut rlp = json!({"spec": {"targetRef": {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "r", "namespace": "x"},
            "limits": {"l": {"rates": [{"limit": 5, "duration": 10, "unit": "second"}, {"limit": 100, "duration": 1, "unit": "day"}],
              "counters": ["metadata.filter_metadata.envoy\\.filters\\.http\\.ext_authz.username"],
              "when": [{"selector": "request.method", "operator": "eq", "value": "GET"}]}}}});
        upgrade(
            "RateLimitPolicy a/b",
            "RateLimitPolicy",
            "kuadrant.io/v1beta2",
            &mut rlp,
        )
        .unwrap();
        assert_eq!(
            rlp["spec"]["limits"]["l"],
            json!({"rates": [{"limit": 5, "window": "10s"}, {"limit": 100, "window": "24h"}],
                   "counters": [{"expression": "auth.username"}],
                   "when": [{"predicate": "request.method == \"GET\""}]})
        );
        assert!(rlp["spec"]["targetRef"].get("namespace").is_none());
        let mut bad = json!({"spec": {"limits": {"l": {"routeSelectors": [{}], "rates": []}}}});
        let e = upgrade(
            "RateLimitPolicy a/b",
            "RateLimitPolicy",
            "kuadrant.io/v1beta2",
            &mut bad,
        )
        .unwrap_err();
        assert_eq!(e.field, "spec.limits.l.routeSelectors");
        let e = upgrade(
            "RateLimitPolicy a/b",
            "RateLimitPolicy",
            "kuadrant.io/v1beta1",
            &mut json!({}),
        )
        .unwrap_err();
        assert_eq!(e.field, "apiVersion");
        assert!(e.to_string().contains("v1beta1"));
        let e = upgrade(
            "TokenRateLimitPolicy a/b",
            "TokenRateLimitPolicy",
            "kuadrant.io/v1beta2",
            &mut json!({}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("kuadrant.io/v1alpha1"));
        let e = upgrade(
            "AuthPolicy a/b",
            "AuthPolicy",
            "example.com/v1",
            &mut json!({}),
        )
        .unwrap_err();
        assert_eq!(e.field, "apiVersion");

        let mut ap = json!({"spec": {"rules": {
            "authorization": {"admins": {"patternMatching": {"patterns": [{"selector": "auth.identity.group", "operator": "eq", "value": "admin"}]},
                                         "when": [{"patternRef": "posts"}]}},
            "response": {"success": {"dynamicMetadata": {"identity": {"json": {"properties": {}}}}}}},
            "patterns": {"posts": [{"selector": "context.request.http.method", "operator": "eq", "value": "POST"}]}}});
        upgrade(
            "AuthPolicy a/b",
            "AuthPolicy",
            "kuadrant.io/v1beta2",
            &mut ap,
        )
        .unwrap();
        assert_eq!(
            ap["spec"]["rules"]["authorization"]["admins"],
            json!({"patternMatching": {"patterns": [{"predicate": "auth.identity.group == \"admin\""}]},
                   "when": [{"predicate": "(request.method == \"POST\")"}]})
        );
        assert!(ap["spec"]["rules"]["response"]["success"]["filters"]["identity"].is_object());
        assert!(ap["spec"].get("patterns").is_none());
    }
}
