//! Translation rules: targetRef / defaults / overrides resolution, and errors that name the
//! resource and field for everything that cannot be honoured.

mod common;

use common::*;
use serde_json::Value;

fn limits(extra: &str) -> Vec<Value> {
    let r = render_yaml(&format!("{TOPOLOGY}---\n{extra}")).unwrap_or_else(|e| panic!("{e}"));
    r.plugin("ratelimit").unwrap()["limits"]
        .as_array()
        .unwrap()
        .clone()
}

/// Indents a limits block two more spaces (for `defaults:` / `overrides:`).
fn nested(block: &str) -> String {
    block
        .lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn names(l: &[Value]) -> Vec<String> {
    l.iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect()
}

fn error(extra: &str) -> infergate_policies::Error {
    match render_yaml(&format!("{TOPOLOGY}---\n{extra}")) {
        Ok(r) => panic!("expected an error, got {:?}", r.plugins),
        Err(e) => e,
    }
}

fn rlp(name: &str, target: &str, body: &str) -> String {
    let (kind, tname, section) = match target.split_once(':') {
        Some((k, rest)) => match rest.split_once('#') {
            Some((n, s)) => (k, n, format!(", sectionName: {s}")),
            None => (k, rest, String::new()),
        },
        None => unreachable!(),
    };
    format!(
        "apiVersion: kuadrant.io/v1\nkind: RateLimitPolicy\nmetadata: {{name: {name}, namespace: ns}}\nspec:\n  targetRef: {{group: gateway.networking.k8s.io, kind: {kind}, name: {tname}{section}}}\n{body}\n"
    )
}

const GW_LIMIT: &str = "    gw:\n      rates: [{limit: 100, window: 1m}]\n    shared:\n      rates: [{limit: 50, window: 1m}]";
const RT_LIMIT: &str = "    rt:\n      rates: [{limit: 10, window: 1m}]\n    shared:\n      rates: [{limit: 5, window: 1m}]";

/// The limits in force when the gateway's policy has `gateway_spec` and route `chat`'s policy
/// has [`RT_LIMIT`].
fn with_route_limits(gateway_spec: &str) -> Vec<Value> {
    limits(&format!(
        "{}---\n{}",
        rlp("g", "Gateway:gw", gateway_spec),
        rlp("r", "HTTPRoute:chat", &format!("  limits:\n{RT_LIMIT}"))
    ))
}

#[test]
fn route_policy_replaces_gateway_defaults() {
    let l = with_route_limits(&format!("  defaults:\n    limits:\n{}", nested(GW_LIMIT)));
    assert_eq!(names(&l), ["rt", "shared"]);
    assert_eq!(l[1]["rates"][0]["limit"], 5);
    // Implicit defaults behave the same.
    let l = with_route_limits(&format!("  limits:\n{GW_LIMIT}"));
    assert_eq!(names(&l), ["rt", "shared"]);
}

#[test]
fn merge_defaults_keep_gateway_limits_the_route_does_not_name() {
    let l = with_route_limits(&format!(
        "  defaults:\n    strategy: merge\n    limits:\n{}",
        nested(GW_LIMIT)
    ));
    assert_eq!(names(&l), ["gw", "rt", "shared"]);
    let shared = l.iter().find(|x| x["name"] == "shared").unwrap();
    assert_eq!(
        shared["rates"][0]["limit"], 5,
        "the route's wins a name conflict"
    );
}

#[test]
fn gateway_overrides_win() {
    let l = with_route_limits(&format!("  overrides:\n    limits:\n{}", nested(GW_LIMIT)));
    assert_eq!(names(&l), ["gw", "shared"]);
    assert_eq!(l[1]["rates"][0]["limit"], 50);
    let l = with_route_limits(&format!(
        "  overrides:\n    strategy: merge\n    limits:\n{}",
        nested(GW_LIMIT)
    ));
    assert_eq!(names(&l), ["gw", "rt", "shared"]);
    assert_eq!(
        l.iter().find(|x| x["name"] == "shared").unwrap()["rates"][0]["limit"],
        50
    );
}

#[test]
fn section_name_scopes_a_limit_to_its_rule() {
    // The route policy covers only rule `chat`; the gateway's defaults still apply to `models`.
    let l = limits(&format!(
        "{}---\n{}",
        rlp("g", "Gateway:gw", "  limits:\n    gw:\n      rates: [{limit: 100, window: 1m}]"),
        rlp("r", "HTTPRoute:chat#chat", "  limits:\n    rt:\n      rates: [{limit: 10, window: 1m}]\n      when: [{predicate: \"auth.identity.userid == 'u1'\"}]")
    ));
    assert_eq!(names(&l), ["rt", "gw"]);
    assert_eq!(l[0]["when"][0]["attribute"], "request.path");
    assert_eq!(l[0]["when"][0]["startsWith"], "/v1/chat");
    assert_eq!(l[0]["when"][1]["eq"], "u1");
    assert_eq!(l[1]["when"][0]["startsWith"], "/v1/models");
}

#[test]
fn request_and_token_limits_with_one_name_both_apply() {
    let trlp = "apiVersion: kuadrant.io/v1alpha1\nkind: TokenRateLimitPolicy\nmetadata: {name: tokens, namespace: ns}\nspec:\n  targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: gw}\n  limits:\n    free:\n      rates: [{limit: 1000, window: 24h}]\n      counters: [{expression: auth.identity.userid}]\n";
    let l = limits(&format!(
        "{}---\n{trlp}",
        rlp(
            "req",
            "Gateway:gw",
            "  limits:\n    free:\n      rates: [{limit: 5, window: 1m}]"
        )
    ));
    assert_eq!(names(&l), ["free", "free-tokens"]);
    assert_eq!(l[1]["counts"], "tokens");
}

#[test]
fn errors_name_resource_and_field() {
    let cases: Vec<(String, &str, &str)> = vec![
        // Bad windows (Kuadrant's grammar).
        (rlp("p", "Gateway:gw", "  limits:\n    a:\n      rates: [{limit: 1, window: 1d}]"), "RateLimitPolicy ns/p", "spec.limits.a.rates[0].window"),
        (rlp("p", "Gateway:gw", "  limits:\n    a:\n      rates: [{limit: 1, window: 100000s}]"), "RateLimitPolicy ns/p", "spec.limits.a.rates[0].window"),
        // CEL the plugins cannot evaluate (refused with the reason).
        (rlp("p", "Gateway:gw", "  limits:\n    a:\n      rates: [{limit: 1, window: 1s}]\n      when: [{predicate: \"request.path.matches('^/x')\"}]"), "RateLimitPolicy ns/p", "spec.limits.a.when[0].predicate"),
        (rlp("p", "Gateway:gw", "  limits:\n    a:\n      rates: [{limit: 1, window: 1s}]\n      when: [{predicate: \"request.path == request.host\"}]"), "RateLimitPolicy ns/p", "spec.limits.a.when[0].predicate"),
        (rlp("p", "Gateway:gw", "  limits:\n    a:\n      rates: [{limit: 1, window: 1s}]\n      counters: [{expression: \"auth.identity.userid + 'x'\"}]"), "RateLimitPolicy ns/p", "spec.limits.a.counters[0].expression"),
        (rlp("p", "Gateway:gw", "  when: [{predicate: \"size(request.path) + 1 > 3\"}]\n  limits:\n    a:\n      rates: [{limit: 1, window: 1s}]"), "RateLimitPolicy ns/p", "spec.when[0].predicate"),
        // Fields we do not know.
        (rlp("p", "Gateway:gw", "  limits:\n    a:\n      rates: [{limit: 1, window: 1s}]\n      routeSelectors: []"), "RateLimitPolicy ns/p", "spec.limits.a.routeSelectors"),
        (rlp("p", "Gateway:gw", "  targetRefs: []\n  limits: {}"), "RateLimitPolicy ns/p", "spec.targetRefs"),
        // Targets.
        (rlp("p", "Gateway:gw#http", "  limits:\n    a:\n      rates: [{limit: 1, window: 1s}]"), "", ""),
        (rlp("p", "HTTPRoute:chat#nope", "  limits:\n    a:\n      rates: [{limit: 1, window: 1s}]"), "RateLimitPolicy ns/p", "spec.targetRef.sectionName"),
        (format!("{}---\n{}", rlp("p", "Gateway:gw", "  limits: {}"), rlp("q", "Gateway:gw", "  limits: {}")), "RateLimitPolicy ns/q", "spec.targetRef"),
    ];
    for (yaml, resource, field) in cases {
        let e = match render_yaml(&format!("{TOPOLOGY}---\n{yaml}")) {
            Ok(_) if resource.is_empty() => continue, // a one-listener Gateway's sectionName is the Gateway
            Ok(r) => panic!("{yaml}: expected an error, got {:?}", r.plugins),
            Err(e) => e,
        };
        assert_eq!(
            (e.resource.as_str(), e.field.as_str()),
            (resource, field),
            "{yaml}\n{e}"
        );
    }
}

fn auth(rules: &str) -> String {
    format!("apiVersion: kuadrant.io/v1\nkind: AuthPolicy\nmetadata: {{name: a, namespace: ns}}\nspec:\n  targetRef: {{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}\n{rules}\n")
}

#[test]
fn auth_errors_name_resource_and_field() {
    let key = "      k:\n        apiKey: {selector: {matchLabels: {app: t}}}\n";
    let cases = [
        (auth("  rules:\n    authentication:\n      o:\n        oauth2Introspection: {endpoint: x}"), "spec.rules.authentication.o.oauth2Introspection"),
        (auth(&format!("  rules:\n    authentication:\n{key}        credentials: {{cookie: {{name: c}}}}")), "spec.rules.authentication.k.credentials.cookie"),
        (auth(&format!("  when: [{{predicate: \"request.path == '/'\"}}]\n  rules:\n    authentication:\n{key}")), "spec.when[0].predicate"),
        (auth(&format!("  rules:\n    authentication:\n{key}        when: [{{predicate: \"request.path == '/'\"}}]")), "spec.rules.authentication.k.when"),
        (auth("  rules:\n    authentication:\n      j:\n        jwt: {issuerUrl: 'https://idp.example.com'}"), "spec.rules.authentication.j.jwt.issuerUrl"),
        (auth("  rules:\n    authentication:\n      k:\n        apiKey: {selector: {matchLabels: {app: none}}}"), "spec.rules.authentication.k.apiKey.selector"),
        (auth(&format!("  rules:\n    authentication:\n{key}    authorization:\n      o:\n        opa: {{rego: x}}")), "spec.rules.authorization.o.opa"),
        (auth(&format!("  rules:\n    authentication:\n{key}    response:\n      unauthenticated: {{code: 302}}")), "spec.rules.response.unauthenticated"),
        (auth(&format!("  rules:\n    authentication:\n{key}    response:\n      success:\n        filters:\n          identity:\n            json:\n              properties:\n                email: {{selector: auth.identity.metadata.name.@nope}}")), "spec.rules.response.success.filters.identity.json.properties.email"),
        (auth(&format!("  rules:\n    authentication:\n{key}    authorization:\n      p:\n        patternMatching:\n          patterns: [{{predicate: \"request.headers['x'] == 'y'\"}}]")), "spec.rules.authorization.p.patternMatching.patterns[0].predicate"),
    ];
    for (yaml, field) in cases {
        let e = error(&yaml);
        assert_eq!(
            (e.resource.as_str(), e.field.as_str()),
            ("AuthPolicy ns/a", field),
            "{yaml}\n{e}"
        );
    }
    // A key Secret without the key.
    let e = error(&format!("{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: bad, namespace: ns, labels: {{app: t}}}}\ndata: {{other: eA==}}\n", auth(&format!("  rules:\n    authentication:\n{key}"))));
    assert_eq!(
        (e.resource.as_str(), e.field.as_str()),
        ("Secret ns/bad", "data.api_key")
    );
}

#[test]
fn per_route_authentication_that_differs_is_refused() {
    let route_auth = |name: &str, section: &str, rules: &str| {
        format!("apiVersion: kuadrant.io/v1\nkind: AuthPolicy\nmetadata: {{name: {name}, namespace: ns}}\nspec:\n  targetRef: {{group: gateway.networking.k8s.io, kind: HTTPRoute, name: chat, sectionName: {section}}}\n  rules:\n    authentication:\n{rules}\n")
    };
    let e = error(&format!(
        "{}---\n{}",
        route_auth(
            "a",
            "chat",
            "      k:\n        apiKey: {selector: {matchLabels: {app: t}}}"
        ),
        route_auth("b", "models", "      public:\n        anonymous: {}")
    ));
    assert_eq!(e.field, "spec.targetRef");
    assert!(e.message.contains("per-route authentication"), "{e}");
    // Only one rule authenticated: also refused (the other would be open or closed by accident).
    let e = error(&route_auth(
        "a",
        "chat",
        "      k:\n        apiKey: {selector: {matchLabels: {app: t}}}",
    ));
    assert!(e.message.contains("no AuthPolicy"), "{e}");
}

#[test]
fn anonymous_when_becomes_path_and_host_conditions() {
    let r = render_yaml(&format!(
        "{TOPOLOGY}---\n{}",
        auth("  rules:\n    authentication:\n      k:\n        apiKey: {selector: {matchLabels: {app: t}}}\n        priority: 0\n      public:\n        anonymous: {}\n        priority: 1\n        when:\n          - predicate: request.path.startsWith('/v1/models') && request.host == 'gw.example'")
    ))
    .unwrap();
    let m = &r.plugin("auth").unwrap()["methods"];
    assert_eq!(m[0]["name"], "k");
    assert_eq!(m[1]["anonymous"]["pathPrefixes"][0], "/v1/models");
    assert_eq!(m[1]["anonymous"]["hosts"][0], "gw.example");
    assert_eq!(m[0]["apiKey"]["keys"][0]["identity"]["userid"], "u1");
}

#[test]
fn limits_on_rules_that_cannot_be_scoped_are_refused() {
    // A rule with two matches is an OR of paths: a limit for it alone cannot be expressed.
    let topo = TOPOLOGY.replace(
        "matches: [{path: {type: PathPrefix, value: /v1/models}}]",
        "matches: [{path: {type: PathPrefix, value: /v1/models}}, {path: {type: PathPrefix, value: /models}}]",
    );
    let yaml = format!(
        "{topo}---\n{}",
        rlp(
            "p",
            "HTTPRoute:chat#models",
            "  limits:\n    a:\n      rates: [{limit: 1, window: 1s}]"
        )
    );
    let e = render_yaml(&yaml).unwrap_err();
    assert_eq!(
        (e.resource.as_str(), e.field.as_str()),
        ("RateLimitPolicy ns/p", "spec.targetRef")
    );
    assert!(e.message.contains("OR"), "{e}");
}

#[test]
fn endpoint_picker_configs_host_shim_cannot_run_are_refused() {
    let epp = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nmetadata: {name: epp, namespace: ns}\nplugins:\n- type: no-such-scorer\nschedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: no-such-scorer\n";
    let e = render_yaml(&format!("{TOPOLOGY}---\n{epp}")).unwrap_err();
    assert_eq!(e.resource, "EndpointPickerConfig ns/epp");
    assert!(e.field.starts_with("plugins[0]"), "{e}");
    // The v1alpha1 guide config is accepted (with --endpoints given).
    let ok = epp.replace("no-such-scorer", "queue-scorer");
    let r = render_yaml(&format!("{TOPOLOGY}---\n{ok}")).unwrap();
    assert!(r.epp_config.unwrap().contains("queue-scorer"));
}

#[test]
fn the_gateway_is_chosen_by_name_and_policies_for_others_are_skipped() {
    let other = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: other, namespace: ns}\nspec:\n  listeners: [{name: http, port: 8080, protocol: HTTP}]\n";
    let policy = rlp(
        "p",
        "Gateway:other",
        "  limits:\n    a:\n      rates: [{limit: 1, window: 1s}]",
    );
    let mine = rlp(
        "q",
        "Gateway:gw",
        "  limits:\n    b:\n      rates: [{limit: 1, window: 1s}]",
    );
    let yaml = format!("{TOPOLOGY}---\n{other}---\n{policy}---\n{mine}");
    let e = render_yaml(&yaml).unwrap_err();
    assert!(e.message.contains("--gateway"), "{e}");
    let mut b = infergate_policies::resources::Bundle::default();
    b.add_yaml(&yaml, std::path::Path::new("inline.yaml"))
        .unwrap();
    let o = infergate_policies::Options {
        gateway: Some("ns/gw".into()),
        ..options()
    };
    let r = infergate_policies::render(&b, &o).unwrap();
    assert_eq!(
        names(r.plugin("ratelimit").unwrap()["limits"].as_array().unwrap()),
        ["b"]
    );
    let o = infergate_policies::Options {
        gateway: Some("other".into()),
        ..options()
    };
    let r = infergate_policies::render(&b, &o).unwrap();
    assert_eq!(
        names(r.plugin("ratelimit").unwrap()["limits"].as_array().unwrap()),
        ["a"]
    );
}
