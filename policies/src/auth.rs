//! AuthPolicy → the `auth` plugin's configuration.
//!
//! - `apiKey`: the Secrets the selector matches (in the policy's namespace, or all with
//!   `allNamespaces`) are read here and only their SHA-256 digests are emitted. The identity
//!   comes from `response.success.filters.identity.json.properties` (`userid`, `groups`: a
//!   `value`, or a `selector` into the Secret's `metadata.name` / `annotations` / `labels`);
//!   without that filter, userid is the Secret's `secret.kuadrant.io/user-id` annotation (else
//!   its name) and groups its `kuadrant.io/groups` annotation (comma separated).
//! - `jwt`: `issuerUrl` becomes `issuer`; the JWKS is fetched from `jwksUrl`, else from the
//!   URL given for the issuer (`--jwks-url ISSUER=URL`), else Keycloak's certs path for a
//!   `/realms/` issuer; an Envoy cluster per IdP host is emitted.
//! - `kubernetesTokenReview`, `kubernetesSubjectAccessReview`: calls to the kube-apiserver
//!   through an Envoy cluster with the gateway's service-account token (`--kube-token-file`).
//! - `anonymous`: its `when` may narrow it by path prefix and host.
//! - `patternMatching` (one rule): its predicates become one allow rule.
//!
//! - `metadata.<name>.http`: evaluators the plugin runs after authentication
//!   ([`crate::metadata`]).
//!
//! Everything else (other identity kinds, other metadata kinds, callbacks, custom denial responses,
//! policy-level `when`, OR-ed conditions) is an error naming the field.

use crate::cel::{compile_predicate, Predicate};
use crate::error::{Error, Result};
use crate::identity_props::{for_secret, normalize, Property};
use crate::metadata::MetadataRule;
use crate::options::Options;
use crate::resources::{
    AuthPolicySpec, AuthRules, AuthenticationRule, AuthorizationRule, Bundle, Object, SuccessItem,
    ValueOrSelector,
};
use crate::topology::{layer, Attachment, Entry, Topology};
use infergate_core::auth::apikey::KeyDigest;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A rule of any section, keyed `authentication.<name>` etc.
#[derive(Debug, Clone)]
pub enum Item {
    /// `rules.authentication.<name>`.
    Authn(Box<AuthenticationRule>),
    /// `rules.authorization.<name>`.
    Authz(Box<AuthorizationRule>),
    /// `rules.response.success.filters.<name>`.
    Filter(SuccessItem),
    /// `rules.metadata.<name>`.
    Metadata(Box<MetadataRule>),
}

/// An Envoy cluster an auth method calls (IdP for JWKS).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Upstream {
    /// Cluster name.
    pub name: String,
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// HTTPS.
    pub tls: bool,
}

/// The translation result.
#[derive(Debug, Clone)]
pub struct AuthOutput {
    /// The plugin configuration (JSON).
    pub config: Value,
    /// Clusters the configuration refers to (besides the kube-apiserver's).
    pub upstreams: Vec<Upstream>,
    /// Whether the kube-apiserver cluster is used.
    pub uses_kube: bool,
}

fn items(rules: Option<AuthRules>) -> Option<BTreeMap<String, Item>> {
    let rules = rules?;
    let mut out = BTreeMap::new();
    for (k, v) in rules.authentication {
        out.insert(format!("authentication.{k}"), Item::Authn(Box::new(v)));
    }
    for (k, v) in rules.authorization {
        out.insert(format!("authorization.{k}"), Item::Authz(Box::new(v)));
    }
    for (k, v) in rules.metadata {
        out.insert(format!("metadata.{k}"), Item::Metadata(Box::new(v)));
    }
    if let Some(s) = rules.response.and_then(|r| r.success) {
        for (k, v) in s.filters {
            out.insert(format!("response.success.filters.{k}"), Item::Filter(v));
        }
    }
    Some(out)
}

/// Translates the AuthPolicies attached to the Gateway; `None` when there is none.
pub fn translate(bundle: &Bundle, topo: &Topology, opts: &Options) -> Result<Option<AuthOutput>> {
    let mut policies = Vec::new();
    for p in bundle.of_kind("AuthPolicy") {
        let spec: AuthPolicySpec = p.spec()?;
        let l = layer(
            p,
            items(spec.rules),
            "rules",
            &spec.when,
            spec.defaults
                .map(|d| (d.strategy, items(d.rules).unwrap_or_default(), d.when)),
            spec.overrides
                .map(|o| (o.strategy, items(o.rules).unwrap_or_default(), o.when)),
            "rules",
        )?;
        policies.push((p, spec.target_ref, l));
    }
    if policies.is_empty() {
        return Ok(None);
    }
    let att = Attachment::new(topo, policies)?;
    let mut first: Option<(AuthOutput, String)> = None;
    for u in 0..topo.units.len() {
        let eff = att.effective(u);
        let who = eff
            .values()
            .next()
            .map(|e| e.origin.policy.clone())
            .unwrap_or_default();
        let out = if eff.is_empty() {
            None
        } else {
            Some(build(bundle, topo, opts, &eff)?)
        };
        let out = match out {
            Some(o) => o,
            None => {
                if let Some((_, p)) = &first {
                    return Err(Error::new(p.clone(), "spec.targetRef", format!("{} has no AuthPolicy while other route rules do; the auth plugin applies one method list to the whole listener — target the Gateway", topo.units[u].describe())));
                }
                continue;
            }
        };
        match &first {
            None if u > 0 => {
                return Err(Error::new(who, "spec.targetRef", format!("{} has no AuthPolicy while {} does; the auth plugin applies one method list to the whole listener — target the Gateway", topo.units[0].describe(), topo.units[u].describe())));
            }
            None => first = Some((out, who)),
            Some((f, p)) if f.config != out.config => {
                return Err(Error::new(
                    who,
                    "spec.targetRef",
                    format!("{} resolves to different authentication than {} (from {p}); per-route authentication is not supported — the auth plugin applies one method list to the whole listener", topo.units[u].describe(), topo.units[0].describe()),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|(o, _)| o))
}

fn build(
    bundle: &Bundle,
    topo: &Topology,
    opts: &Options,
    eff: &BTreeMap<String, Entry<Item>>,
) -> Result<AuthOutput> {
    // Policy-level `when` cannot gate authentication as a whole.
    for e in eff.values() {
        if let Some((field, _)) = e.when.first() {
            return Err(Error::new(e.origin.policy.clone(), field.clone(), "policy-level `when` on an AuthPolicy is not supported (requests it excludes would need to skip auth entirely); use `anonymous` with `when` for public paths"));
        }
    }
    // The identity filter: what rate limits see as `auth.identity`.
    let mut identity: Option<(&Entry<Item>, &BTreeMap<String, ValueOrSelector>)> = None;
    let mut props: Vec<(String, Property)> = Vec::new();
    for (k, e) in eff {
        if let Item::Filter(f) = &e.value {
            if k != "response.success.filters.identity" {
                return Err(Error::new(e.origin.policy.clone(), e.origin.field.clone(), "only the `identity` success filter is supported: it is what RateLimitPolicy and TokenRateLimitPolicy read as `auth.identity`"));
            }
            for (name, v) in &f.json.properties {
                let p = normalize(name, v).map_err(|m| {
                    Error::new(
                        e.origin.policy.clone(),
                        format!("{}.json.properties.{name}", e.origin.field),
                        m,
                    )
                })?;
                props.push((name.clone(), p));
            }
            identity = Some((e, &f.json.properties));
        }
    }
    let prop = |n: &str| props.iter().find(|(k, _)| k == n).map(|(_, p)| p);
    let mut authn: Vec<(&String, &Entry<Item>, &AuthenticationRule)> = eff
        .iter()
        .filter_map(|(k, e)| match &e.value {
            Item::Authn(a) => Some((k, e, a.as_ref())),
            _ => None,
        })
        .collect();
    authn.sort_by_key(|(k, _, a)| (a.priority.unwrap_or(0), (*k).clone()));
    if authn.is_empty() {
        let e = eff
            .values()
            .next()
            .map(|e| e.origin.policy.clone())
            .unwrap_or_default();
        return Err(Error::new(
            e,
            "spec.rules.authentication",
            "at least one authentication rule is required",
        ));
    }
    let mut methods = Vec::new();
    let mut upstreams = Vec::new();
    let mut uses_kube = false;
    for (key, e, a) in &authn {
        let name = key.trim_start_matches("authentication.");
        let f = &e.origin.field;
        let err =
            |field: String, m: &str| Error::new(e.origin.policy.clone(), field, m.to_string());
        let mut m = Map::new();
        m.insert("name".into(), json!(name));
        let kinds = usize::from(a.api_key.is_some())
            + usize::from(a.jwt.is_some())
            + usize::from(a.kubernetes_token_review.is_some())
            + usize::from(a.anonymous.is_some());
        if kinds != 1 {
            return Err(err(f.clone(), "set exactly one of `apiKey`, `jwt`, `kubernetesTokenReview`, `anonymous` (other Authorino identity kinds are not supported)"));
        }
        if !a.when.is_empty() && a.anonymous.is_none() {
            return Err(err(
                format!("{f}.when"),
                "conditions are supported on `anonymous` only (path prefix and host)",
            ));
        }
        let idprops = identity.map(|(_, p)| p);
        let id_field = identity
            .map(|(e, _)| format!("{}.json.properties", e.origin.field))
            .unwrap_or_default();
        let id_err = |p: &str, m: String| {
            Error::new(
                identity
                    .map(|(e, _)| e.origin.policy.clone())
                    .unwrap_or_default(),
                format!("{id_field}.{p}"),
                m,
            )
        };
        if let Some(k) = &a.api_key {
            let policy = find_policy(bundle, &e.origin.policy);
            let ns = policy.map(|p| p.meta.ns().to_string()).unwrap_or_default();
            let mut keys = Vec::new();
            for s in bundle.of_kind("Secret") {
                if !k.all_namespaces && s.meta.ns() != ns {
                    continue;
                }
                if !k
                    .selector
                    .match_labels
                    .iter()
                    .all(|(l, v)| s.meta.labels.get(l) == Some(v))
                {
                    continue;
                }
                let key = secret_key(s)?;
                let mut resolved = BTreeMap::new();
                for (name, p) in &props {
                    match for_secret(&s.doc, p).map_err(|m| id_err(name, m))? {
                        Some(v) => {
                            resolved.insert(name.clone(), v);
                        }
                        None if p.reads_identity() && (name == "userid" || name == "groups") => {
                            let sel = match p {
                                Property::Selector(x) => x.as_str(),
                                Property::Value(_) => "",
                            };
                            return Err(id_err(name, format!("Secret {} has no `{sel}`", s.id())));
                        }
                        None => {}
                    }
                }
                let userid = match resolved.remove("userid") {
                    Some(Value::String(u)) if !u.is_empty() => u,
                    Some(other) => {
                        return Err(id_err(
                            "userid",
                            format!("Secret {} gives a non-string user id {other}", s.id()),
                        ))
                    }
                    None => s
                        .meta
                        .annotations
                        .get("secret.kuadrant.io/user-id")
                        .cloned()
                        .unwrap_or_else(|| s.meta.name.clone()),
                };
                let groups = match resolved.remove("groups") {
                    Some(g) => infergate_core::auth::identity::groups_of(&g),
                    None => infergate_core::auth::identity::groups_of(&json!(s
                        .meta
                        .annotations
                        .get("kuadrant.io/groups")
                        .cloned()
                        .unwrap_or_default())),
                };
                let mut id = json!({"userid": userid, "groups": groups});
                if !resolved.is_empty() {
                    id["properties"] = json!(resolved);
                }
                keys.push(
                    json!({"sha256": KeyDigest::of(key.as_bytes()).to_hex(), "identity": id}),
                );
            }
            if keys.is_empty() {
                return Err(err(format!("{f}.apiKey.selector"), "no Secret in the input matches the selector (API keys are Secrets with these labels and an `api_key` entry)"));
            }
            m.insert("apiKey".into(), json!({ "keys": keys }));
        }
        if let Some(j) = &a.jwt {
            let issuer = j.issuer_url.clone().ok_or_else(|| {
                err(
                    format!("{f}.jwt.issuerUrl"),
                    "an issuer is required (the plugin checks `iss`)",
                )
            })?;
            let jwks = j
                .jwks_url
                .clone()
                .or_else(|| opts.jwks_urls.get(&issuer).cloned())
                .or_else(|| issuer.contains("/realms/").then(|| format!("{}/protocol/openid-connect/certs", issuer.trim_end_matches('/'))))
                .ok_or_else(|| err(format!("{f}.jwt.issuerUrl"), "the plugin does not do OIDC discovery: set `jwksUrl`, or pass --jwks-url ISSUER=URL"))?;
            let up = parse_url(&jwks, "jwks").map_err(|m| err(format!("{f}.jwt.jwksUrl"), &m))?;
            // A plain claim path maps directly; anything else is an identity property the
            // plugin evaluates per request (it replaces the user id / groups).
            let mut claims = Map::new();
            for p in ["userid", "groups"] {
                if let Some(Property::Selector(sel)) = prop(p) {
                    if let Some(claim) = sel
                        .strip_prefix("auth.identity.")
                        .filter(|c| !c.contains(['\\', '@', '|']))
                    {
                        claims.insert(p.into(), json!(claim));
                    }
                }
            }
            let mut jm = json!({
                "issuer": issuer,
                "jwksUri": {"cluster": up.0.name, "path": up.1, "authority": up.0.host, "refreshSeconds": j.ttl.unwrap_or(300)},
                "failureMode": "deny",
            });
            if !claims.is_empty() {
                jm["claims"] = Value::Object(claims);
            }
            m.insert("jwt".into(), jm);
            if !upstreams.contains(&up.0) {
                upstreams.push(up.0);
            }
        }
        if let Some(t) = &a.kubernetes_token_review {
            let token = opts.kube_token.clone().ok_or_else(|| err(format!("{f}.kubernetesTokenReview"), "needs the gateway's service-account token for the kube-apiserver: pass --kube-token-file"))?;
            uses_kube = true;
            m.insert("kubernetesTokenReview".into(), json!({
                "cluster": opts.kube_cluster, "authority": opts.kube_authority, "bearerToken": token, "audiences": t.audiences,
            }));
        }
        if let Some(anon) = &a.anonymous {
            if let Some(k) = anon.keys().next() {
                return Err(err(format!("{f}.anonymous.{k}"), "unknown field"));
            }
            let mut prefixes = Vec::new();
            let mut hosts = Vec::new();
            for (i, w) in a.when.iter().enumerate() {
                let field = format!("{f}.when[{i}].predicate");
                for p in compile_predicate(&w.predicate).map_err(|m| err(field.clone(), &m))? {
                    match (p.attribute.as_str(), &p.starts_with, &p.eq, &p.one_of) {
                        ("request.path" | "request.url_path", Some(s), None, None) if prefixes.is_empty() => prefixes.push(s.clone()),
                        ("request.path" | "request.url_path", None, Some(s), None) if prefixes.is_empty() => prefixes.push(s.clone()),
                        ("request.host", None, Some(h), None) if hosts.is_empty() => hosts.push(h.clone()),
                        ("request.host", None, None, Some(hs)) if hosts.is_empty() => hosts.extend(hs.iter().cloned()),
                        _ => return Err(err(field.clone(), "anonymous access can be narrowed by one `request.path.startsWith(…)` and one `request.host` test only")),
                    }
                }
            }
            let mut am = json!({"pathPrefixes": prefixes, "hosts": hosts});
            if let Some(v) = idprops.and_then(|x| x.get("userid")) {
                let userid = static_value(v).ok_or_else(|| {
                    id_err(
                        "userid",
                        "anonymous callers have no identity to select from; use a `value`".into(),
                    )
                })?;
                am["identity"] = json!({"userid": userid});
            }
            m.insert("anonymous".into(), am);
        }
        // `credentials: {}` is Authorino's default (an `Authorization: Bearer` header).
        let credentials = a.credentials.as_ref().filter(|c| {
            c.authorization_header.is_some()
                || c.custom_header.is_some()
                || c.query_string.is_some()
        });
        if let Some(c) = credentials {
            let n = usize::from(c.authorization_header.is_some())
                + usize::from(c.custom_header.is_some())
                + usize::from(c.query_string.is_some());
            if n != 1 {
                return Err(err(
                    format!("{f}.credentials"),
                    "set one of `authorizationHeader`, `customHeader`, `queryString`",
                ));
            }
            let v = if let Some(h) = &c.authorization_header {
                json!({"authorizationHeader": {"prefix": h.prefix.clone().unwrap_or_else(|| "Bearer".into())}})
            } else if let Some(h) = &c.custom_header {
                json!({"customHeader": {"name": h.name}})
            } else {
                json!({"queryString": {"name": c.query_string.as_ref().map(|q| q.name.clone())}})
            };
            m.insert("credentials".into(), v);
        }
        methods.push(Value::Object(m));
    }
    // Authorization.
    let mut authorization = Map::new();
    let mut rule_seen: Option<String> = None;
    for (k, e) in eff {
        let Item::Authz(z) = &e.value else { continue };
        let f = &e.origin.field;
        let err =
            |field: String, m: &str| Error::new(e.origin.policy.clone(), field, m.to_string());
        if !z.when.is_empty() {
            return Err(err(
                format!("{f}.when"),
                "conditions on authorization rules are not supported",
            ));
        }
        let kinds = usize::from(z.kubernetes_subject_access_review.is_some())
            + usize::from(z.pattern_matching.is_some());
        if kinds != 1 {
            return Err(err(f.clone(), "set exactly one of `kubernetesSubjectAccessReview`, `patternMatching` (other Authorino authorization kinds are not supported)"));
        }
        if let Some(sar) = &z.kubernetes_subject_access_review {
            if authorization.contains_key("kubernetesSubjectAccessReview") {
                return Err(err(f.clone(), "only one SubjectAccessReview is supported"));
            }
            if let Some(u) = &sar.user {
                let ok = [
                    "auth.identity.user.username",
                    "auth.identity.username",
                    "auth.identity.userid",
                    "auth.identity.sub",
                ];
                if !selector(u).is_some_and(|s| ok.contains(&s.as_str())) {
                    return Err(err(format!("{f}.kubernetesSubjectAccessReview.user"), "the reviewed user is the authenticated identity: use `selector: auth.identity.user.username`"));
                }
            }
            if let Some(g) = &sar.authorization_groups {
                if !selector(g).is_some_and(|s| {
                    s == "auth.identity.user.groups" || s == "auth.identity.groups"
                }) {
                    return Err(err(format!("{f}.kubernetesSubjectAccessReview.authorizationGroups"), "the reviewed groups are the identity's: use `selector: auth.identity.user.groups`"));
                }
            }
            let token = opts.kube_token.clone().ok_or_else(|| err(format!("{f}.kubernetesSubjectAccessReview"), "needs the gateway's service-account token for the kube-apiserver: pass --kube-token-file"))?;
            uses_kube = true;
            let mut s = json!({"cluster": opts.kube_cluster, "authority": opts.kube_authority, "bearerToken": token});
            if let Some(ra) = &sar.resource_attributes {
                let at =
                    |n: &str| format!("{f}.kubernetesSubjectAccessReview.resourceAttributes.{n}");
                for (n, v) in [
                    ("verb", &ra.verb),
                    ("group", &ra.group),
                    ("resource", &ra.resource),
                ] {
                    if let Some(v) = v {
                        let val = static_value(v)
                            .ok_or_else(|| err(at(n), "only a static `value` is supported"))?;
                        s[n] = json!(val);
                    }
                }
                // The plugin reviews the namespace and name read from the path
                // (`/<namespace>/<name>/…`, the guide's URL layout): check they agree.
                if let (Some(ns), Some(name)) = (&ra.namespace, &ra.name) {
                    let (ns, name) = match (static_value(ns), static_value(name)) {
                        (Some(a), Some(b)) => (a, b),
                        _ => {
                            return Err(err(
                                at("namespace"),
                                "only static `value`s are supported for namespace and name",
                            ))
                        }
                    };
                    let want = format!("/{ns}/{name}/");
                    let ok = topo.units.iter().all(|u| {
                        u.rewrite
                            .as_ref()
                            .is_some_and(|(p, _)| format!("{}/", p.trim_end_matches('/')) == want)
                    });
                    if !ok {
                        return Err(err(at("name"), &format!("the plugin reviews the namespace and name from the request path; every route rule must match the prefix `{want}`")));
                    }
                } else if ra.namespace.is_some() || ra.name.is_some() {
                    return Err(err(at("namespace"), "set both namespace and name (matching the route's `/<namespace>/<name>/` prefix) or neither"));
                }
            }
            authorization.insert("kubernetesSubjectAccessReview".into(), s);
        }
        if let Some(pm) = &z.pattern_matching {
            if let Some(prev) = &rule_seen {
                return Err(err(f.clone(), &format!("only one `patternMatching` rule is supported (with `{prev}`, both would have to hold)")));
            }
            rule_seen = Some(k.clone());
            let mut rule = Map::new();
            for (i, p) in pm.patterns.iter().enumerate() {
                let field = format!("{f}.patternMatching.patterns[{i}].predicate");
                for pred in compile_predicate(&p.predicate).map_err(|m| err(field.clone(), &m))? {
                    let (key, values) = rule_condition(&pred).ok_or_else(|| err(field.clone(), "authorization rules support equality / `in` on request.host, request.method, auth.identity.userid, auth.identity.groups, model, and `request.path.startsWith`"))?;
                    if rule.contains_key(key) {
                        return Err(err(field.clone(), &format!("a second condition on the same attribute ({key}) cannot be expressed")));
                    }
                    rule.insert(key.into(), json!(values));
                }
            }
            authorization.insert("rules".into(), json!([Value::Object(rule)]));
        }
    }
    // Metadata evaluators, in `priority` then name order.
    let mut metadata = Vec::new();
    for (k, e) in eff {
        let Item::Metadata(rule) = &e.value else {
            continue;
        };
        let name = k.trim_start_matches("metadata.");
        let ns = find_policy(bundle, &e.origin.policy)
            .map(|p| p.meta.ns().to_string())
            .unwrap_or_default();
        let t =
            crate::metadata::translate(bundle, &e.origin.policy, &ns, &e.origin.field, name, rule)?;
        if !upstreams.contains(&t.upstream) {
            upstreams.push(t.upstream.clone());
        }
        metadata.push(t);
    }
    metadata.sort_by(|a, b| (a.priority, &a.config.name).cmp(&(b.priority, &b.config.name)));
    let mut config = json!({"methods": methods});
    if !metadata.is_empty() {
        config["metadata"] =
            serde_json::to_value(metadata.into_iter().map(|t| t.config).collect::<Vec<_>>())
                .map_err(|e| Error::new("AuthPolicy", "spec.rules.metadata", e.to_string()))?;
    }
    // Properties the plugin evaluates per request: all of them when a method's identity is
    // only known then (JWT claims, a TokenReview, anonymous), else those reading
    // `auth.metadata` or the request (API keys' Secret properties were resolved above).
    let per_request = authn.iter().any(|(_, _, a)| a.api_key.is_none());
    let runtime: Map<String, Value> = props
        .iter()
        .filter(|(_, p)| per_request || !(p.reads_identity() || matches!(p, Property::Value(_))))
        .map(|(n, p)| (n.clone(), p.config()))
        .collect();
    if !runtime.is_empty() {
        config["identityProperties"] = Value::Object(runtime);
    }
    if !authorization.is_empty() {
        config["authorization"] = Value::Object(authorization);
    }
    Ok(AuthOutput {
        config,
        upstreams,
        uses_kube,
    })
}

fn rule_condition(p: &Predicate) -> Option<(&'static str, Vec<String>)> {
    let values = match (&p.eq, &p.one_of, &p.starts_with) {
        (Some(v), None, None) => vec![v.clone()],
        (None, Some(vs), None) => vs.clone(),
        (None, None, Some(s)) if p.attribute == "request.path" => {
            return Some(("pathPrefixes", vec![s.clone()]))
        }
        _ => return None,
    };
    let key = match p.attribute.as_str() {
        "request.host" => "hosts",
        "request.method" => "httpMethods",
        "auth.identity.userid" | "identity.userid" => "users",
        "auth.identity.groups" | "identity.groups" => "groups",
        "model" => "models",
        _ => return None,
    };
    Some((key, values))
}

fn find_policy<'a>(bundle: &'a Bundle, id: &str) -> Option<&'a Object> {
    bundle.objects.iter().find(|o| o.id() == id)
}

fn selector(v: &ValueOrSelector) -> Option<String> {
    v.selector
        .clone()
        .or_else(|| v.expression.clone())
        .map(|s| s.trim().to_string())
}

fn static_value(v: &ValueOrSelector) -> Option<String> {
    match &v.value {
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) if v.selector.is_none() => Some(other.to_string()),
        _ => None,
    }
}

fn secret_key(s: &Object) -> Result<String> {
    if let Some(v) = s.doc.pointer("/stringData/api_key").and_then(Value::as_str) {
        return Ok(v.to_string());
    }
    let b64 = s
        .doc
        .pointer("/data/api_key")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::new(
                s.id(),
                "data.api_key",
                "an API-key Secret needs `data.api_key` (or `stringData.api_key`)",
            )
        })?;
    let bytes =
        base64_decode(b64).ok_or_else(|| Error::new(s.id(), "data.api_key", "not valid base64"))?;
    String::from_utf8(bytes).map_err(|_| Error::new(s.id(), "data.api_key", "not UTF-8"))
}

pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// `scheme://host[:port]/path` → cluster (`<prefix>-<host>`) and path.
pub(crate) fn parse_url(
    url: &str,
    prefix: &str,
) -> std::result::Result<(Upstream, String), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("`{url}` is not an http(s) URL"));
    };
    let (authority, path) = rest
        .split_once('/')
        .map(|(a, p)| (a, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse::<u16>()
                .map_err(|_| format!("bad port in `{url}`"))?,
        ),
        None => (authority.to_string(), if tls { 443 } else { 80 }),
    };
    let name = format!(
        "{prefix}-{}",
        host.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-")
    );
    Ok((
        Upstream {
            name,
            host,
            port,
            tls,
        },
        path,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64_and_urls() {
        assert_eq!(base64_decode("aW5mZXJnYXRl").unwrap(), b"infergate");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        let (u, p) = parse_url("http://keycloak.keycloak.svc.cluster.local:8080/realms/kuadrant/protocol/openid-connect/certs", "jwks").unwrap();
        assert_eq!(u.port, 8080);
        assert_eq!(p, "/realms/kuadrant/protocol/openid-connect/certs");
        assert_eq!(u.name, "jwks-keycloak-keycloak-svc-cluster-local");
    }
}
