use super::*;
use crate::config::parse;
use crate::openai_error::ErrorKind;
use apikey::KeyDigest;
use jwt::{Alg, KeySet};
use kube::Review;
use std::rc::Rc;

struct Req {
    headers: Vec<(&'static str, &'static str)>,
    path: &'static str,
    host: &'static str,
}

impl RequestView for Req {
    fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
            .collect()
    }
    fn path(&self) -> String {
        self.path.to_string()
    }
    fn host(&self) -> String {
        self.host.to_string()
    }
}

struct NoHost;

impl AuthHost for NoHost {
    fn now(&self) -> u64 {
        1_800_000_000
    }
    fn key_set(&self, _method: &str) -> Option<Rc<KeySet>> {
        None
    }
    fn cache_get(&self, _key: &str) -> Option<Vec<u8>> {
        None
    }
}

fn req(headers: Vec<(&'static str, &'static str)>) -> Req {
    Req {
        headers,
        path: "/v1/chat/completions",
        host: "gw.example:443",
    }
}

fn config(extra: &str) -> Authenticator {
    let alice = KeyDigest::of(b"alice-key").to_hex();
    let text = format!(
        r#"{{"methods":[{{"name":"keys","apiKey":{{"keys":[{{"sha256":"{alice}","identity":{{"userid":"alice","groups":["premium"]}}}}]}}}}{extra}]}}"#
    );
    Authenticator::new(parse::<AuthConfig>(text.as_bytes()).unwrap())
}

#[test]
fn accepts_a_known_key() {
    let a = config("");
    match a.authenticate(&req(vec![("authorization", "Bearer alice-key")]), &NoHost) {
        Decision::Allow { identity, method } => {
            assert_eq!(identity.userid, "alice");
            assert_eq!(identity.groups, vec!["premium"]);
            assert_eq!(method, "keys");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.credential_headers, vec!["authorization"]);
}

#[test]
fn unknown_and_missing_keys_get_distinct_401s_that_reveal_nothing() {
    let a = config("");
    let Decision::Deny(d) = a.authenticate(&req(vec![("authorization", "Bearer nope")]), &NoHost)
    else {
        panic!()
    };
    assert_eq!(d.kind, ErrorKind::Unauthenticated);
    assert!(d
        .www_authenticate
        .as_deref()
        .unwrap()
        .contains("invalid_token"));
    let Decision::Deny(m) = a.authenticate(&req(vec![]), &NoHost) else {
        panic!()
    };
    assert_eq!(
        m.www_authenticate.as_deref(),
        Some("Bearer realm=\"infergate\"")
    );
    // Duplicated Authorization headers are refused even if one is valid.
    let dup = req(vec![
        ("authorization", "Bearer alice-key"),
        ("authorization", "Bearer other"),
    ]);
    assert!(matches!(a.authenticate(&dup, &NoHost), Decision::Deny(_)));
}

#[test]
fn anonymous_only_where_conditions_hold() {
    let a = config(
        r#",{"name":"public","anonymous":{"pathPrefixes":["/public/"],"hosts":["gw.example"]}}"#,
    );
    let mut r = req(vec![]);
    assert!(matches!(a.authenticate(&r, &NoHost), Decision::Deny(_)));
    r.path = "/public/v1/models";
    match a.authenticate(&r, &NoHost) {
        Decision::Allow { identity, .. } => assert_eq!(identity.userid, "anonymous"),
        other => panic!("{other:?}"),
    }
    r.host = "other.example";
    assert!(matches!(a.authenticate(&r, &NoHost), Decision::Deny(_)));
}

#[test]
fn config_errors_name_the_field() {
    let err = parse::<AuthConfig>(br#"{"methods":[{"name":"k","apiKey":{"keys":[{"sha256":"plain-key","identity":{"userid":"a"}}]}}]}"#).unwrap_err();
    assert_eq!(err.path, "methods[0].apiKey.keys[0].sha256");
    let err = parse::<AuthConfig>(br#"{"methods":[{"name":"k"}]}"#).unwrap_err();
    assert!(err.message.contains("exactly one"), "{err}");
    let err = parse::<AuthConfig>(br#"{"methods":[]}"#).unwrap_err();
    assert_eq!(err.path, "methods");
    let err = parse::<AuthConfig>(br#"{}"#).unwrap_err();
    assert!(err.message.contains("missing field `methods`"), "{err}");
}

/// A host with a cache and fetched key sets, as the adapter's shared data provides them.
#[derive(Default)]
struct MemHost {
    cache: std::cell::RefCell<std::collections::HashMap<String, Vec<u8>>>,
    keys: Option<Rc<KeySet>>,
}

impl AuthHost for MemHost {
    fn now(&self) -> u64 {
        1_800_000_000
    }
    fn key_set(&self, _method: &str) -> Option<Rc<KeySet>> {
        self.keys.clone()
    }
    fn cache_get(&self, key: &str) -> Option<Vec<u8>> {
        self.cache.borrow().get(key).cloned()
    }
}

fn parse_auth(v: serde_json::Value) -> Authenticator {
    Authenticator::new(parse::<AuthConfig>(v.to_string().as_bytes()).unwrap())
}

fn review_ok() -> Review {
    Review::Accepted(Identity {
        userid: "system:serviceaccount:ns:sa".into(),
        groups: vec!["g".into()],
        ..Identity::default()
    })
}

#[test]
fn token_review_asks_once_then_answers_from_the_cache() {
    let a = parse_auth(serde_json::json!({"methods": [
        {"name": "k8s", "kubernetesTokenReview": {"cluster": "kube", "bearerToken": "sa", "audiences": ["aud"]}},
        {"name": "public", "anonymous": {"pathPrefixes": ["/public"]}}
    ]}));
    let host = MemHost::default();
    let r = req(vec![("authorization", "Bearer zz-secret-zz")]);
    let Decision::Review(c) = a.authenticate(&r, &host) else {
        panic!("expected a callout")
    };
    assert_eq!(c.cluster, "kube");
    assert_eq!(c.path, "/apis/authentication.k8s.io/v1/tokenreviews");
    assert_eq!(c.authorization, "Bearer sa");
    assert!(c.cache_key.starts_with("infergate.auth.tokenreview."));
    assert!(
        !c.cache_key.contains("secret"),
        "the token must not be in the key"
    );
    // The answer is cached, and the next request makes no callout.
    let entry = Authenticator::cache_entry(&c, &review_ok(), host.now()).unwrap();
    host.cache.borrow_mut().insert(c.cache_key.clone(), entry);
    match a.token_reviewed(&r, &host, &c, review_ok()) {
        Decision::Allow { identity, method } => {
            assert_eq!(identity.userid, "system:serviceaccount:ns:sa");
            assert_eq!(method, "k8s");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(a.authenticate(&r, &host), Decision::Allow { .. }));
    // A rejection resumes with the next method: 401 (anonymous does not cover the path).
    let Decision::Deny(d) = a.token_reviewed(&r, &host, &c, Review::Rejected) else {
        panic!()
    };
    assert_eq!(d.reason, "invalid_credential");
    // The default failure mode fails closed with a 503.
    let Decision::Deny(d) = a.token_reviewed(&r, &host, &c, Review::Failed) else {
        panic!()
    };
    assert_eq!(d.kind, ErrorKind::Unavailable);
    assert!(Authenticator::cache_entry(&c, &Review::Failed, 0).is_none());
    // The audience must come back in the answer.
    let answer = br#"{"kind":"TokenReview","status":{"authenticated":true,"audiences":["other"],"user":{"username":"u"}}}"#;
    assert_eq!(a.read_review(&c, Some(201), answer), Review::Rejected);
}

#[test]
fn jwt_keys_missing_follow_the_failure_mode() {
    let token = jwt::testing::sign(
        jwt::testing::TestKey::Rsa,
        Alg::RS256,
        None,
        &serde_json::json!({"iss": "i", "sub": "alice", "exp": 1_900_000_000u64}),
    );
    let header = format!("Bearer {token}");
    let r = Req {
        headers: vec![("authorization", Box::leak(header.into_boxed_str()))],
        path: "/v1/chat/completions",
        host: "gw",
    };
    let method = |mode: &str| {
        parse_auth(serde_json::json!({"methods": [{"name": "o", "jwt": {
            "issuer": "i", "jwksUri": {"cluster": "idp", "path": "/jwks"}, "failureMode": mode}}]}))
    };
    let Decision::Deny(d) = method("deny").authenticate(&r, &MemHost::default()) else {
        panic!()
    };
    assert_eq!(d.kind, ErrorKind::Unavailable);
    let Decision::Deny(d) = method("reject").authenticate(&r, &MemHost::default()) else {
        panic!()
    };
    assert_eq!(d.kind, ErrorKind::Unauthenticated);
    let keys = KeySet::from_json(
        jwt::testing::jwks(&[(jwt::testing::TestKey::Rsa, "k")])
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let host = MemHost {
        keys: Some(Rc::new(keys)),
        ..MemHost::default()
    };
    match method("deny").authenticate(&r, &host) {
        Decision::Allow { identity, .. } => assert_eq!(identity.userid, "alice"),
        other => panic!("{other:?}"),
    }
    assert_eq!(method("deny").jwks_fetches.len(), 1);
}

#[test]
fn remembered_jwt_verifications_follow_key_rotation_and_expiry() {
    struct At(u64, Rc<KeySet>);
    impl AuthHost for At {
        fn now(&self) -> u64 {
            self.0
        }
        fn key_set(&self, _method: &str) -> Option<Rc<KeySet>> {
            Some(self.1.clone())
        }
        fn cache_get(&self, _key: &str) -> Option<Vec<u8>> {
            None
        }
    }
    let set = |key| {
        Rc::new(
            KeySet::from_json(jwt::testing::jwks(&[(key, "k")]).to_string().as_bytes()).unwrap(),
        )
    };
    let token = jwt::testing::sign(
        jwt::testing::TestKey::Rsa,
        Alg::RS256,
        None,
        &serde_json::json!({"iss": "i", "sub": "alice", "exp": 1_000u64}),
    );
    let header = format!("Bearer {token}");
    let r = Req {
        headers: vec![("authorization", Box::leak(header.into_boxed_str()))],
        path: "/v1/chat/completions",
        host: "gw",
    };
    let a = parse_auth(serde_json::json!({"methods": [{"name": "o", "jwt": {
        "issuer": "i", "jwksUri": {"cluster": "idp", "path": "/jwks"}}}]}));
    let rsa = set(jwt::testing::TestKey::Rsa);
    assert!(matches!(
        a.authenticate(&r, &At(900, rsa.clone())),
        Decision::Allow { .. }
    ));
    // Remembered: still accepted with the same keys…
    assert!(matches!(
        a.authenticate(&r, &At(950, rsa.clone())),
        Decision::Allow { .. }
    ));
    // …but not once the key set rotated to one without the signing key,
    let ec = set(jwt::testing::TestKey::P256);
    assert!(matches!(
        a.authenticate(&r, &At(950, ec)),
        Decision::Deny(_)
    ));
    // …nor after the token expired.
    assert!(matches!(
        a.authenticate(&r, &At(5_000, rsa)),
        Decision::Deny(_)
    ));
}

#[test]
fn rules_and_access_reviews() {
    let a = parse_auth(serde_json::json!({
        "methods": [{"name": "any", "anonymous": {}}],
        "authorization": {
            "rules": [{"pathPrefixes": ["/ns/"], "models": ["m1"]}, {"httpMethods": ["GET"]}],
            "kubernetesSubjectAccessReview": {"cluster": "kube", "bearerToken": "sa", "failureMode": "allow"}
        }
    }));
    let host = MemHost::default();
    let id = Identity {
        userid: "u".into(),
        groups: vec![],
        ..Identity::default()
    };
    let mut r = req(vec![(":method", "POST")]);
    r.path = "/ns/model/v1/chat/completions";
    assert_eq!(a.authorize(&r, &host, &id, None), Authorization::NeedModel);
    assert!(matches!(
        a.authorize(&r, &host, &id, Some("m2")),
        Authorization::Deny(Denial {
            kind: ErrorKind::Forbidden,
            ..
        })
    ));
    let Authorization::Review(c) = a.authorize(&r, &host, &id, Some("m1")) else {
        panic!()
    };
    let body: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
    assert_eq!(body["spec"]["resourceAttributes"]["namespace"], "ns");
    assert_eq!(body["spec"]["resourceAttributes"]["name"], "model");
    assert_eq!(a.access_reviewed(Review::Failed), Authorization::Allow);
    assert!(matches!(
        a.access_reviewed(Review::Rejected),
        Authorization::Deny(_)
    ));
    // Cached denial: no callout.
    let entry = Authenticator::cache_entry(&c, &Review::Rejected, host.now()).unwrap();
    host.cache.borrow_mut().insert(c.cache_key.clone(), entry);
    assert!(matches!(
        a.authorize(&r, &host, &id, Some("m1")),
        Authorization::Deny(_)
    ));
    // Without a namespace and name in the path there is nothing to review.
    let mut get = req(vec![(":method", "GET")]);
    get.path = "/v1";
    assert!(matches!(
        a.authorize(&get, &host, &id, None),
        Authorization::Deny(_)
    ));
    assert!(a.rules_need_model());
}

#[test]
fn anonymous_by_source_range() {
    struct From(&'static str);
    impl RequestView for From {
        fn header_values(&self, _: &str) -> Vec<String> {
            Vec::new()
        }
        fn path(&self) -> String {
            "/".into()
        }
        fn host(&self) -> String {
            "h".into()
        }
        fn source_address(&self) -> Option<String> {
            Some(self.0.to_string())
        }
    }
    let a = parse_auth(serde_json::json!({"methods": [
        {"name": "lan", "anonymous": {"sourceCidrs": ["10.0.0.0/8"]}}]}));
    assert!(matches!(
        a.authenticate(&From("10.1.2.3:555"), &NoHost),
        Decision::Allow { .. }
    ));
    assert!(matches!(
        a.authenticate(&From("11.1.2.3:555"), &NoHost),
        Decision::Deny(_)
    ));
    assert!(
        a.credential_headers.is_empty(),
        "anonymous reads no credential"
    );
}

#[test]
fn new_config_errors_name_the_field() {
    let cases = [
        (
            r#"{"methods":[{"name":"o","jwt":{"issuer":"i"}}]}"#,
            "methods[0].jwt",
        ),
        (
            r#"{"methods":[{"name":"o","jwt":{"issuer":"i","jwks":{"keys":[]}}}]}"#,
            "methods[0].jwt.jwks",
        ),
        (
            r#"{"methods":[{"name":"o","jwt":{"issuer":"i","jwksUri":{"cluster":"c","path":"/j"},"failureMode":"allow"}}]}"#,
            "methods[0].jwt.failureMode",
        ),
        (
            r#"{"methods":[{"name":"o","jwt":{"issuer":"i","algorithms":["none"],"jwksUri":{"cluster":"c","path":"/j"}}}]}"#,
            "methods[0].jwt.algorithms[0]",
        ),
        (
            r#"{"methods":[{"name":"k","kubernetesTokenReview":{"cluster":"c","bearerToken":""}}]}"#,
            "methods[0].kubernetesTokenReview.bearerToken",
        ),
        (
            r#"{"methods":[{"name":"a","anonymous":{"sourceCidrs":["10.0.0.0/40"]}}]}"#,
            "methods[0].anonymous.sourceCidrs[0]",
        ),
        (
            r#"{"methods":[{"name":"a","anonymous":{}},{"name":"a","anonymous":{}}]}"#,
            "methods[1].name",
        ),
        (
            r#"{"methods":[{"name":"a","anonymous":{}}],"authorization":{"kubernetesSubjectAccessReview":{"cluster":"","bearerToken":"t"}}}"#,
            "authorization.kubernetesSubjectAccessReview.cluster",
        ),
    ];
    for (text, path) in cases {
        let err = parse::<AuthConfig>(text.as_bytes()).unwrap_err();
        assert_eq!(err.path, path, "{text}: {err}");
    }
}

/// Every field set: serializing the parsed configuration gives back the same JSON, and that
/// parses to the same configuration (the policy translator builds these types directly).
#[test]
fn config_serializes_to_the_shape_it_parses() {
    let alice = KeyDigest::of(b"alice-key").to_hex();
    let jwk = jwt::testing::TestKey::Rsa.jwk("k");
    let full = serde_json::json!({
        "methods": [
            {"name": "keys", "apiKey": {"keys": [{"sha256": alice, "identity": {"userid": "alice", "groups": ["premium"], "properties": {"tier": "gold"}}}]},
             "credentials": {"customHeader": {"name": "x-api-key"}}},
            {"name": "inline", "jwt": {"issuer": "i", "audiences": ["a"], "algorithms": ["RS256"], "clockSkewSeconds": 5,
             "jwks": {"keys": [jwk]}, "claims": {"userid": "sub", "groups": "roles"}, "failureMode": "reject"},
             "credentials": {"authorizationHeader": {"prefix": "Bearer"}}},
            {"name": "oidc", "jwt": {"issuer": "i", "audiences": [], "algorithms": ["ES256", "EdDSA"], "clockSkewSeconds": 60,
             "jwksUri": {"cluster": "idp", "path": "/jwks", "authority": "idp.example", "refreshSeconds": 300, "timeoutMs": 2000},
             "claims": {"userid": "sub", "groups": "groups"}, "failureMode": "deny"},
             "credentials": {"queryString": {"name": "token"}}},
            {"name": "k8s", "kubernetesTokenReview": {"cluster": "kube", "authority": "kubernetes.default.svc", "bearerToken": "sa",
             "timeoutMs": 1000, "audiences": ["aud"], "cacheTtlSeconds": 60, "negativeCacheTtlSeconds": 10, "failureMode": "allow",
             "failureIdentity": {"userid": "unverified", "groups": [], "properties": {}}},
             "credentials": {"authorizationHeader": {"prefix": "Bearer"}}},
            {"name": "public", "anonymous": {"pathPrefixes": ["/v1/models"], "hosts": ["gw"], "sourceCidrs": ["10.0.0.0/8"],
             "identity": {"userid": "anon", "groups": ["g"], "properties": {}}},
             "credentials": {"authorizationHeader": {"prefix": "Bearer"}}}
        ],
        "authorization": {
            "rules": [{"hosts": ["gw"], "pathPrefixes": ["/v1"], "httpMethods": ["POST"], "groups": ["premium"], "users": ["alice"], "models": ["m"]}],
            "kubernetesSubjectAccessReview": {"cluster": "kube", "authority": "kubernetes.default.svc", "bearerToken": "sa", "timeoutMs": 1000,
             "verb": "get", "group": "serving.kserve.io", "resource": "llminferenceservices", "cacheTtlSeconds": 60, "failureMode": "deny"},
            "maxBodyBytes": 1024
        },
        "identityHeaders": {"userid": "x-user", "groups": "x-groups"},
        "forwardCredential": true,
        "identityProperties": {"tier": {"selector": "auth.identity.tier"}, "org": {"value": "acme"}},
        "realm": "r",
        "allowOnHeadersStopIteration": true
    });
    let parsed = parse::<AuthConfig>(full.to_string().as_bytes()).unwrap();
    let written = serde_json::to_value(&parsed).unwrap();
    assert_eq!(written, full);
    let again = parse::<AuthConfig>(written.to_string().as_bytes()).unwrap();
    assert_eq!(again, parsed);
    // A minimal configuration round-trips too (defaults written out, absent options left out).
    let small = parse::<AuthConfig>(br#"{"methods":[{"name":"a","anonymous":{}}]}"#).unwrap();
    let written = serde_json::to_string(&small).unwrap();
    assert!(!written.contains("null"), "{written}");
    assert_eq!(parse::<AuthConfig>(written.as_bytes()).unwrap(), small);
}
