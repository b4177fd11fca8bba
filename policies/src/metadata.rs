//! AuthPolicy `rules.metadata.<name>` → the auth plugin's `metadata` evaluators
//! ([`infergate_core::auth::metadata::MetadataConfig`]).
//!
//! `http` translates: `url` becomes an Envoy cluster per host and port (rendered with the other
//! side-call clusters) plus the path (`{selector}` placeholders kept), `method` GET/POST,
//! `contentType`, `body` / `bodyParameters` / `headers` (a `value`, an Authorino `selector` or
//! string template, or a CEL `expression` built from literals, lists, maps and attributes —
//! `{"groups": auth.identity.user.groups}`), `sharedSecretRef` + `credentials` (the Secret is
//! read from the input, like API keys), `cache` (`key`, `ttl`, default 60 s) and `priority`
//! (evaluation order). Refused with the reason: `userInfo` and `uma` (they need OIDC/UMA
//! discovery), `urlExpression`, `oauth2`, methods other than GET/POST (Authorino's metadata
//! evaluator sends only those), a URL whose host holds a placeholder, `when` conditions, and CEL
//! that computes (`replace()`, `+`, …).

use crate::auth::{base64_decode, parse_url, Upstream};
use crate::cel::parse_expr;
use crate::error::{Error, Result};
use crate::identity_props::attribute_selector;
use crate::resources::{Bundle, Credentials, ValueOrSelector, WhenPredicate};
use cel_parser::ast::{EntryExpr, Expr, IdedExpr};
use cel_parser::reference::Val;
use infergate_core::auth::metadata::{
    CacheConfig, ContentType, HttpMethod, MetadataConfig, MetadataFailureMode, NameSpec,
    PrefixSpec, SharedSecret, ValueTemplate, DEFAULT_MAX_RESPONSE_BYTES,
};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One `rules.metadata.<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetadataRule {
    /// An HTTP call.
    #[serde(default)]
    pub http: Option<HttpSpec>,
    /// OIDC UserInfo (refused).
    #[serde(default)]
    pub user_info: Option<Value>,
    /// UMA resource data (refused).
    #[serde(default)]
    pub uma: Option<Value>,
    /// Conditions (refused).
    #[serde(default)]
    pub when: Vec<WhenPredicate>,
    /// Answer cache.
    #[serde(default)]
    pub cache: Option<CacheSpec>,
    /// Evaluation order (lower first).
    #[serde(default)]
    pub priority: Option<i64>,
    /// Authorino's per-evaluator metrics switch (accepted; the plugin's stats cover it).
    #[serde(default)]
    pub metrics: Option<bool>,
}

/// `http` (Authorino's `HttpEndpointSpec`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSpec {
    /// Endpoint URL (placeholders allowed in the path).
    #[serde(default)]
    pub url: Option<String>,
    /// CEL URL (refused).
    #[serde(default)]
    pub url_expression: Option<String>,
    /// GET (default) or POST.
    #[serde(default)]
    pub method: Option<String>,
    /// Raw body.
    #[serde(default)]
    pub body: Option<ValueOrSelector>,
    /// Body parameters.
    #[serde(default)]
    pub body_parameters: BTreeMap<String, ValueOrSelector>,
    /// Body encoding.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, ValueOrSelector>,
    /// Secret presented to the service.
    #[serde(default)]
    pub shared_secret_ref: Option<SecretKeyRef>,
    /// OAuth2 client credentials (refused).
    #[serde(default)]
    pub oauth2: Option<Value>,
    /// Where the shared secret goes.
    #[serde(default)]
    pub credentials: Option<Credentials>,
}

/// `{name, key}` of a Secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key in its data.
    pub key: String,
}

/// `cache`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    /// Cache key.
    pub key: ValueOrSelector,
    /// Seconds (Authorino's default: 60).
    #[serde(default)]
    pub ttl: Option<u64>,
}

/// A translated evaluator: its order, its plugin configuration and the cluster it calls.
#[derive(Debug, Clone)]
pub struct Translated {
    /// `priority` (lower first; ties by name).
    pub priority: i64,
    /// The plugin's configuration.
    pub config: MetadataConfig,
    /// The Envoy cluster of its URL.
    pub upstream: Upstream,
}

/// Translates `rules.metadata.<name>` of `policy` (namespace `ns`); `field` is its path.
pub fn translate(
    bundle: &Bundle,
    policy: &str,
    ns: &str,
    field: &str,
    name: &str,
    rule: &MetadataRule,
) -> Result<Translated> {
    let err = |f: String, m: String| Error::new(policy.to_string(), f, m);
    if rule.user_info.is_some() {
        return Err(err(format!("{field}.userInfo"), "OIDC UserInfo metadata is not supported: it needs the OIDC discovery the plugin does not do; fetch it with `http` from the userinfo endpoint".into()));
    }
    if rule.uma.is_some() {
        return Err(err(
            format!("{field}.uma"),
            "UMA resource metadata is not supported (it needs UMA discovery and a resource-registration client)".into(),
        ));
    }
    if !rule.when.is_empty() {
        return Err(err(format!("{field}.when"), "conditions on metadata are not supported: the call is made for every authenticated request (a failed or skipped call leaves the value absent either way)".into()));
    }
    let http = rule.http.as_ref().ok_or_else(|| {
        err(
            field.to_string(),
            "set `http` (the only metadata kind supported)".into(),
        )
    })?;
    let at = |f: &str| format!("{field}.http.{f}");
    if http.url_expression.is_some() {
        return Err(err(
            at("urlExpression"),
            "a CEL URL is not supported: use `url` with `{selector}` placeholders in the path"
                .into(),
        ));
    }
    if http.oauth2.is_some() {
        return Err(err(
            at("oauth2"),
            "OAuth2 client-credentials authentication is not supported; use `sharedSecretRef`"
                .into(),
        ));
    }
    let url = http
        .url
        .as_deref()
        .ok_or_else(|| err(at("url"), "a URL is required".into()))?;
    let (mut upstream, path) = parse_url(url, "metadata").map_err(|m| err(at("url"), m))?;
    if upstream.host.contains(['{', '}']) {
        return Err(err(
            at("url"),
            "placeholders are supported in the URL's path only (the host names an Envoy cluster)"
                .into(),
        ));
    }
    upstream.name = format!("{}-{}", upstream.name, upstream.port);
    let method = match http.method.as_deref().unwrap_or("GET") {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        other => {
            return Err(err(
                at("method"),
                format!("`{other}`: Authorino's metadata evaluator sends GET or POST only"),
            ))
        }
    };
    let content_type = match http
        .content_type
        .as_deref()
        .unwrap_or("application/x-www-form-urlencoded")
    {
        "application/x-www-form-urlencoded" => ContentType::Form,
        "application/json" => ContentType::Json,
        other => {
            return Err(err(
                at("contentType"),
                format!("`{other}`: use application/json or application/x-www-form-urlencoded"),
            ))
        }
    };
    let tpl = |f: String, v: &ValueOrSelector| value_template(v).map_err(|m| err(f, m));
    let body = http.body.as_ref().map(|b| tpl(at("body"), b)).transpose()?;
    let body_parameters = http
        .body_parameters
        .iter()
        .map(|(k, v)| Ok((k.clone(), tpl(at(&format!("bodyParameters.{k}")), v)?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let headers = http
        .headers
        .iter()
        .map(|(k, v)| Ok((k.clone(), tpl(at(&format!("headers.{k}")), v)?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let shared_secret = match &http.shared_secret_ref {
        Some(r) => Some(
            shared_secret(bundle, ns, r, http.credentials.as_ref())
                .map_err(|m| err(at("sharedSecretRef"), m))?,
        ),
        None if http.credentials.is_some() => {
            return Err(err(
                at("credentials"),
                "`credentials` places the `sharedSecretRef`, which is not set".into(),
            ))
        }
        None => None,
    };
    let cache = rule
        .cache
        .as_ref()
        .map(|c| {
            Ok(CacheConfig {
                key: tpl(format!("{field}.cache.key"), &c.key)?,
                ttl_seconds: c.ttl.unwrap_or(60),
            })
        })
        .transpose()?;
    let config = MetadataConfig {
        name: name.to_string(),
        cluster: upstream.name.clone(),
        authority: Some(if upstream.port == if upstream.tls { 443 } else { 80 } {
            upstream.host.clone()
        } else {
            format!("{}:{}", upstream.host, upstream.port)
        }),
        path,
        method,
        content_type,
        body,
        body_parameters,
        headers,
        shared_secret,
        cache,
        timeout_ms: 1000,
        max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        failure_mode: MetadataFailureMode::Absent,
    };
    // The plugin's own checks, so an error names the policy field, not the plugin's.
    infergate_core::auth::metadata::Metadata::compile("metadata", std::slice::from_ref(&config))
        .map_err(|e| err(field.to_string(), e.message))?;
    Ok(Translated {
        priority: rule.priority.unwrap_or(0),
        config,
        upstream,
    })
}

fn shared_secret(
    bundle: &Bundle,
    ns: &str,
    r: &SecretKeyRef,
    credentials: Option<&Credentials>,
) -> std::result::Result<SharedSecret, String> {
    let named: Vec<_> = bundle
        .of_kind("Secret")
        .filter(|s| s.meta.name == r.name)
        .collect();
    let secret = named
        .iter()
        .find(|s| s.meta.ns() == ns)
        .or_else(|| named.first().filter(|_| named.len() == 1))
        .ok_or_else(|| format!("Secret `{}` is not in the input (the plugin carries the shared secret's value: pass the Secret with --in)", r.name))?;
    let value = match secret.doc.pointer(&format!("/stringData/{}", r.key)) {
        Some(Value::String(s)) => s.clone(),
        _ => {
            let b64 = secret
                .doc
                .pointer(&format!("/data/{}", r.key))
                .and_then(Value::as_str)
                .ok_or_else(|| format!("Secret `{}` has no key `{}`", r.name, r.key))?;
            base64_decode(b64)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| format!("Secret `{}` key `{}` is not base64 UTF-8", r.name, r.key))?
        }
    };
    let mut s = SharedSecret {
        secret: value,
        authorization_header: None,
        custom_header: None,
        query_string: None,
    };
    if let Some(c) = credentials {
        if let Some(h) = &c.authorization_header {
            s.authorization_header = Some(PrefixSpec {
                prefix: h.prefix.clone().unwrap_or_else(|| "Bearer".into()),
            });
        }
        if let Some(h) = &c.custom_header {
            s.custom_header = Some(NameSpec {
                name: h.name.clone(),
            });
        }
        if let Some(q) = &c.query_string {
            s.query_string = Some(NameSpec {
                name: q.name.clone(),
            });
        }
    }
    Ok(s)
}

/// A `value` / `selector` / `expression` as the plugin's value template.
pub fn value_template(v: &ValueOrSelector) -> std::result::Result<ValueTemplate, String> {
    let set = usize::from(v.value.is_some())
        + usize::from(v.selector.is_some())
        + usize::from(v.expression.is_some());
    if set != 1 {
        return Err("set exactly one of `value`, `selector`, `expression`".into());
    }
    if let Some(val) = &v.value {
        return Ok(ValueTemplate::Value(val.clone()));
    }
    if let Some(sel) = &v.selector {
        let sel = sel.trim();
        // Authorino: a selector with `{…}` is a string template.
        return Ok(if sel.contains('{') && !sel.contains("@extract:{") {
            ValueTemplate::Template(sel.to_string())
        } else {
            ValueTemplate::Selector(sel.to_string())
        });
    }
    compile_value(v.expression.as_deref().unwrap_or_default())
}

/// Most nodes one CEL value may have.
const MAX_NODES: usize = 64;

/// Compiles a CEL value expression built from literals, lists, maps with literal keys and
/// attributes (`auth.identity.*`, `auth.metadata.*`, `request.*`).
pub fn compile_value(src: &str) -> std::result::Result<ValueTemplate, String> {
    let expr = parse_expr(src)?;
    let mut nodes = 0;
    value_of(&expr, src, &mut nodes)
}

fn value_of(
    e: &IdedExpr,
    src: &str,
    nodes: &mut usize,
) -> std::result::Result<ValueTemplate, String> {
    *nodes += 1;
    if *nodes > MAX_NODES {
        return Err(format!("`{src}`: at most {MAX_NODES} values"));
    }
    Ok(match &e.expr {
        Expr::Literal(v) => ValueTemplate::Value(match v {
            Val::String(s) => Value::String(s.clone()),
            Val::Int(i) => Value::from(*i),
            Val::UInt(u) => Value::from(*u),
            Val::Boolean(b) => Value::Bool(*b),
            Val::Double(d) => serde_json::Number::from_f64(*d)
                .map(Value::Number)
                .ok_or_else(|| format!("`{src}`: {d} is not a JSON number"))?,
            Val::Null => Value::Null,
            Val::Bytes(_) => return Err(format!("`{src}`: bytes literals are not supported")),
        }),
        Expr::List(l) => ValueTemplate::List(
            l.elements
                .iter()
                .map(|x| value_of(x, src, nodes))
                .collect::<std::result::Result<_, _>>()?,
        ),
        Expr::Map(m) => {
            let mut out = BTreeMap::new();
            for entry in &m.entries {
                let EntryExpr::MapEntry(me) = &entry.expr else {
                    return Err(format!("`{src}`: only map literals are supported"));
                };
                let Expr::Literal(Val::String(k)) = &me.key.expr else {
                    return Err(format!("`{src}`: map keys must be string literals"));
                };
                out.insert(k.clone(), value_of(&me.value, src, nodes)?);
            }
            ValueTemplate::Object(out)
        }
        _ => match crate::cel::attribute_path(e) {
            Some(path) => ValueTemplate::Attribute(attribute_selector(&path)?),
            None => return Err(format!("`{src}`: only literals, lists, maps and attributes are supported in metadata values (computed values such as `replace()` or `+` are not)")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compiles_cel_values() {
        assert_eq!(
            serde_json::to_value(
                compile_value(r#"{ "groups": auth.identity.user.groups }"#).unwrap()
            )
            .unwrap(),
            json!({"object": {"groups": {"attribute": "auth.identity.user.groups"}}})
        );
        assert_eq!(
            serde_json::to_value(
                compile_value(r#"{"tier": auth.metadata.matchedTier["tier"], "n": [1, true, 'x', null], "h": request.headers['X-Org']}"#).unwrap()
            )
            .unwrap(),
            json!({"object": {
                "tier": {"attribute": "auth.metadata.matchedTier.tier"},
                "n": {"list": [{"value": 1}, {"value": true}, {"value": "x"}, {"value": null}]},
                "h": {"attribute": "context.request.http.headers.x-org"}}})
        );
        for bad in [
            r#"{"key": request.headers.authorization.replace("Bearer ", "")}"#,
            r#"{1: "a"}"#,
            "auth.identity.a + 'x'",
            "unknown.attr",
            "{",
        ] {
            assert!(compile_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selectors_and_templates() {
        let v = |j: Value| value_template(&serde_json::from_value(j).unwrap());
        assert_eq!(
            v(json!({"selector": "auth.identity.user.username"})).unwrap(),
            ValueTemplate::Selector("auth.identity.user.username".into())
        );
        assert_eq!(
            v(json!({"selector": "{auth.identity.user.username}:{auth.metadata.t.tier}"})).unwrap(),
            ValueTemplate::Template("{auth.identity.user.username}:{auth.metadata.t.tier}".into())
        );
        assert_eq!(
            v(json!({"value": {"a": 1}})).unwrap(),
            ValueTemplate::Value(json!({"a": 1}))
        );
        assert!(v(json!({})).is_err());
    }
}
