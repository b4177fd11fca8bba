use super::*;
use serde_json::json;
use std::cell::RefCell;
use std::collections::HashMap;

fn cfg(v: Value) -> MetadataConfig {
    serde_json::from_value(v).unwrap()
}

fn tier_lookup() -> Value {
    json!({
        "name": "matchedTier", "cluster": "metadata-maas-api-8080", "authority": "maas-api:8080",
        "path": "/v1/tiers/lookup", "method": "POST", "contentType": "application/json",
        "body": {"object": {"groups": {"attribute": "auth.identity.user.groups"}}},
        "cache": {"key": {"selector": "auth.identity.user.username"}, "ttlSeconds": 300},
    })
}

fn auth_json(user: &str, groups: &[&str]) -> Value {
    json!({"context": {"request": {"http": {"method": "POST", "path": "/v1/chat/completions"}}},
           "auth": {"identity": {"authenticated": true, "user": {"username": user, "groups": groups}},
                    "metadata": {}}})
}

/// Shared data as the adapter keeps it.
#[derive(Default)]
struct Cache(RefCell<HashMap<String, Vec<u8>>>);

impl Cache {
    fn get(&self, k: &str) -> Option<Vec<u8>> {
        self.0.borrow().get(k).cloned()
    }
    fn put(&self, entry: Option<(String, Vec<u8>)>) {
        if let Some((k, v)) = entry {
            self.0.borrow_mut().insert(k, v);
        }
    }
}

#[test]
fn the_tier_lookup_posts_the_groups_and_caches_the_answer() {
    let m = Metadata::compile("metadata", &[cfg(tier_lookup())]).unwrap();
    let cache = Cache::default();
    let get = |k: &str| cache.get(k);
    let mut p = MetadataProgress::new(auth_json("alice", &["tier-premium"]));
    let MetadataStep::Call(call) = m.advance(&mut p, &get, 100) else {
        panic!("expected a call")
    };
    assert_eq!(call.cluster, "metadata-maas-api-8080");
    assert_eq!(call.header(":method"), Some("POST"));
    assert_eq!(call.header(":path"), Some("/v1/tiers/lookup"));
    assert_eq!(call.header(":authority"), Some("maas-api:8080"));
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(
        serde_json::from_slice::<Value>(&call.body).unwrap(),
        json!({"groups": ["tier-premium"]})
    );
    let body = br#"{"tier":"premium"}"#;
    let v = read_answer(&call, Some(200), Some("application/json"), body.len(), body).unwrap();
    cache.put(call.cache_entry(&v, 100));
    assert_eq!(
        m.answered(&mut p, &call, Ok(v), &get, 100),
        MetadataStep::Done
    );
    assert_eq!(
        p.authorization()["auth"]["metadata"]["matchedTier"]["tier"],
        json!("premium")
    );

    // The same user within the TTL: no call, the cached answer.
    let mut again = MetadataProgress::new(auth_json("alice", &["tier-premium"]));
    assert_eq!(m.advance(&mut again, &get, 399), MetadataStep::Done);
    assert_eq!(
        again.authorization()["auth"]["metadata"]["matchedTier"],
        json!({"tier": "premium"})
    );
    // Another user, or the same after the TTL: a call.
    let mut bob = MetadataProgress::new(auth_json("bob", &["tier-free"]));
    assert!(matches!(
        m.advance(&mut bob, &get, 150),
        MetadataStep::Call(_)
    ));
    let mut later = MetadataProgress::new(auth_json("alice", &["tier-premium"]));
    assert!(matches!(
        m.advance(&mut later, &get, 400),
        MetadataStep::Call(_)
    ));
}

#[test]
fn failures_leave_the_value_absent_and_are_not_cached() {
    let m = Metadata::compile("metadata", &[cfg(tier_lookup())]).unwrap();
    let cache = Cache::default();
    let get = |k: &str| cache.get(k);
    let mut p = MetadataProgress::new(auth_json("alice", &["g"]));
    let MetadataStep::Call(call) = m.advance(&mut p, &get, 0) else {
        panic!()
    };
    type Case<'a> = (Option<u32>, Option<&'a str>, &'a [u8], MetadataError);
    let cases: Vec<Case> = vec![
        (None, None, b"", MetadataError::Unreachable),
        (
            Some(500),
            Some("application/json"),
            br#"{"tier":"x"}"#,
            MetadataError::Status(500),
        ),
        (Some(404), None, b"no", MetadataError::Status(404)),
        (
            Some(200),
            Some("application/json"),
            b"{not json",
            MetadataError::NotJson,
        ),
        (
            Some(200),
            Some("Application/JSON; charset=utf-8"),
            b"",
            MetadataError::NotJson,
        ),
        (
            Some(200),
            Some("text/plain"),
            &[0xff, 0xfe],
            MetadataError::NotText,
        ),
    ];
    for (status, ct, body, want) in cases {
        assert_eq!(
            read_answer(&call, status, ct, body.len(), body),
            Err(want),
            "{status:?} {ct:?}"
        );
    }
    // Oversized: by the announced size, before reading it.
    let big = vec![b' '; DEFAULT_MAX_RESPONSE_BYTES + 1];
    assert_eq!(
        read_answer(&call, Some(200), Some("application/json"), big.len(), b"{}"),
        Err(MetadataError::Oversized)
    );
    // Without the Content-Type, JSON-looking answers must parse.
    assert_eq!(
        read_answer(&call, Some(200), None, 8, b" {\"a\":1}"),
        Ok(json!({"a": 1}))
    );
    assert_eq!(
        read_answer(&call, Some(200), None, 5, b"{nope"),
        Err(MetadataError::NotJson)
    );
    assert_eq!(
        read_answer(&call, Some(200), None, 4, b"free"),
        Ok(json!("free"))
    );
    // A text answer is kept as a string, as Authorino does.
    assert_eq!(
        read_answer(&call, Some(200), Some("text/plain"), 7, b"premium"),
        Ok(json!("premium"))
    );
    // The failure: the value is absent, the request goes on, nothing is cached.
    assert_eq!(
        m.answered(&mut p, &call, Err(MetadataError::Status(500)), &get, 0),
        MetadataStep::Done
    );
    assert_eq!(p.authorization()["auth"]["metadata"], json!({}));
    assert!(cache.0.borrow().is_empty());
}

#[test]
fn deny_mode_answers_503_and_a_missing_input_skips_the_call() {
    let mut c = tier_lookup();
    c["failureMode"] = json!("deny");
    let m = Metadata::compile("metadata", &[cfg(c)]).unwrap();
    let none = |_: &str| None;
    let mut p = MetadataProgress::new(auth_json("alice", &["g"]));
    let MetadataStep::Call(call) = m.advance(&mut p, &none, 0) else {
        panic!()
    };
    assert_eq!(
        m.answered(&mut p, &call, Err(MetadataError::Unreachable), &none, 0),
        MetadataStep::Deny(MetadataError::Unreachable)
    );
    // An identity without groups: the CEL body cannot be built, so no call is made.
    let absent = Metadata::compile("metadata", &[cfg(tier_lookup())]).unwrap();
    let mut anon = MetadataProgress::new(
        json!({"auth": {"identity": {"user": {"username": "x"}}, "metadata": {}}}),
    );
    assert_eq!(absent.advance(&mut anon, &none, 0), MetadataStep::Done);
    assert_eq!(anon.authorization()["auth"]["metadata"], json!({}));
    let mut denied = MetadataProgress::new(
        json!({"auth": {"identity": {"user": {"username": "x"}}, "metadata": {}}}),
    );
    assert_eq!(
        m.advance(&mut denied, &none, 0),
        MetadataStep::Deny(MetadataError::MissingInput)
    );
}

#[test]
fn later_evaluators_see_earlier_answers() {
    // MaaS: `matchedTier` posts the groups an earlier `apiKeyValidation` answered.
    let first = json!({"name": "apiKeyValidation", "cluster": "maas", "path": "/internal/v1/api-keys/validate",
        "method": "POST", "contentType": "application/json",
        "bodyParameters": {"key": {"selector": "context.request.http.headers.authorization|@extract:{\"sep\":\" \",\"pos\":1}"}}});
    let second = json!({"name": "matchedTier", "cluster": "maas", "path": "/v1/tiers/lookup",
        "method": "POST", "contentType": "application/json",
        "body": {"object": {"groups": {"attribute": "auth.metadata.apiKeyValidation.groups"}}}});
    let m = Metadata::compile("metadata", &[cfg(first), cfg(second)]).unwrap();
    let none = |_: &str| None;
    let mut j = auth_json("x", &[]);
    j["context"]["request"]["http"]["headers"] = json!({"authorization": "Bearer sk-oai-1"});
    let mut p = MetadataProgress::new(j);
    let MetadataStep::Call(c1) = m.advance(&mut p, &none, 0) else {
        panic!()
    };
    assert_eq!(
        serde_json::from_slice::<Value>(&c1.body).unwrap(),
        json!({"key": "sk-oai-1"})
    );
    let MetadataStep::Call(c2) = m.answered(
        &mut p,
        &c1,
        Ok(json!({"valid": true, "groups": ["team-a"]})),
        &none,
        0,
    ) else {
        panic!()
    };
    assert_eq!(c2.index, 1);
    assert_eq!(
        serde_json::from_slice::<Value>(&c2.body).unwrap(),
        json!({"groups": ["team-a"]})
    );
}

#[test]
fn get_form_headers_placeholders_and_shared_secrets() {
    let get = json!({"name": "org", "cluster": "orgs", "path": "/orgs/{auth.identity.user.username}?v=1",
        "headers": {"X-Tenant": {"template": "t-{auth.identity.user.username}"}},
        "sharedSecret": {"secret": "s3cret"}});
    let m = Metadata::compile("metadata", &[cfg(get)]).unwrap();
    let none = |_: &str| None;
    let mut p = MetadataProgress::new(auth_json("a b/c", &[]));
    let MetadataStep::Call(c) = m.advance(&mut p, &none, 0) else {
        panic!()
    };
    assert_eq!(c.header(":method"), Some("GET"));
    assert_eq!(c.header(":path"), Some("/orgs/a%20b%2Fc?v=1"));
    assert_eq!(c.header(":authority"), Some("orgs"));
    assert_eq!(c.header("content-type"), Some("text/plain"));
    assert_eq!(c.header("x-tenant"), Some("t-a b/c"));
    assert_eq!(c.header("authorization"), Some("Bearer s3cret"));
    assert!(c.body.is_empty());
    assert_eq!(c.cache_key, None);

    let form = json!({"name": "f", "cluster": "x", "path": "/p", "method": "POST",
        "bodyParameters": {"user": {"selector": "auth.identity.user.username"}, "n": {"value": 2}},
        "sharedSecret": {"secret": "k", "queryString": {"name": "api key"}}});
    let m = Metadata::compile("metadata", &[cfg(form)]).unwrap();
    let mut p = MetadataProgress::new(auth_json("a&b", &[]));
    let MetadataStep::Call(c) = m.advance(&mut p, &none, 0) else {
        panic!()
    };
    assert_eq!(
        c.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(String::from_utf8(c.body.clone()).unwrap(), "n=2&user=a%26b");
    assert_eq!(c.header(":path"), Some("/p?api%20key=k"));

    // A header value that would split the request is refused (the value stays absent).
    let split = json!({"name": "s", "cluster": "x", "path": "/p",
        "headers": {"x-user": {"selector": "auth.identity.user.username"}}, "failureMode": "deny"});
    let m = Metadata::compile("metadata", &[cfg(split)]).unwrap();
    let mut p = MetadataProgress::new(auth_json("a\r\nx-evil: 1", &[]));
    assert_eq!(
        m.advance(&mut p, &none, 0),
        MetadataStep::Deny(MetadataError::BadValue)
    );
}

#[test]
fn cache_entries_round_trip_and_expire() {
    let e = encode_entry(10, &json!({"tier": "free"})).unwrap();
    assert_eq!(decode_entry(&e, 9), Some(json!({"tier": "free"})));
    assert_eq!(decode_entry(&e, 10), None);
    assert_eq!(decode_entry(b"garbage", 0), None);
    assert_eq!(decode_entry(b"99 {broken", 0), None);
    assert_eq!(decode_entry(&[0xff, b' ', b'1'], 0), None);
    // Keys differ by evaluator and by rendered key, and hide the key's text.
    let a = call::cache_key("matchedTier", "alice");
    assert!(a.starts_with("infergate.auth.metadata.matchedTier."));
    assert!(!a.contains("alice"));
    assert_ne!(a, call::cache_key("matchedTier", "bob"));
    assert_ne!(a, call::cache_key("other", "alice"));
}

#[test]
fn config_errors_name_the_field() {
    let bad = |patch: Value, field: &str| {
        let mut c = tier_lookup();
        if let (Some(o), Some(p)) = (c.as_object_mut(), patch.as_object()) {
            for (k, v) in p {
                o.insert(k.clone(), v.clone());
            }
        }
        let err = Metadata::compile("metadata", &[cfg(c)]).unwrap_err();
        assert_eq!(err.path, format!("metadata[0].{field}"), "{}", err.message);
    };
    bad(json!({"name": "has space"}), "name");
    bad(json!({"cluster": ""}), "cluster");
    bad(json!({"path": "v1/x"}), "path");
    bad(json!({"path": "/v1/{unclosed"}), "path");
    bad(json!({"timeoutMs": 0}), "timeoutMs");
    bad(json!({"timeoutMs": 600000}), "timeoutMs");
    bad(json!({"maxResponseBytes": 0}), "maxResponseBytes");
    bad(json!({"maxResponseBytes": 1 << 30}), "maxResponseBytes");
    bad(json!({"method": "GET"}), "method");
    bad(
        json!({"bodyParameters": {"a": {"value": 1}}}),
        "bodyParameters",
    );
    bad(json!({"body": {"selector": "a.@nope"}}), "body");
    bad(
        json!({"headers": {"content-type": {"value": "x"}}}),
        "headers.content-type",
    );
    bad(
        json!({"headers": {"bad header": {"value": "x"}}}),
        "headers.bad header",
    );
    bad(
        json!({"sharedSecret": {"secret": ""}}),
        "sharedSecret.secret",
    );
    bad(
        json!({"sharedSecret": {"secret": "x", "customHeader": {"name": "a"}, "queryString": {"name": "b"}}}),
        "sharedSecret",
    );
    bad(
        json!({"cache": {"key": {"value": "k"}, "ttlSeconds": 0}}),
        "cache.ttlSeconds",
    );
    bad(json!({"cache": {"key": {"template": "{"}}}), "cache.key");
    let dup = Metadata::compile("metadata", &[cfg(tier_lookup()), cfg(tier_lookup())]).unwrap_err();
    assert_eq!(dup.path, "metadata[1].name");
    let many: Vec<MetadataConfig> = (0..=MAX_EVALUATORS)
        .map(|i| {
            let mut c = tier_lookup();
            c["name"] = json!(format!("m{i}"));
            cfg(c)
        })
        .collect();
    assert_eq!(
        Metadata::compile("metadata", &many).unwrap_err().path,
        "metadata"
    );
    // Unknown fields and methods are refused by the parser.
    let mut c = tier_lookup();
    c["oauth2"] = json!({});
    assert!(serde_json::from_value::<MetadataConfig>(c).is_err());
    let mut c = tier_lookup();
    c["method"] = json!("DELETE");
    assert!(serde_json::from_value::<MetadataConfig>(c).is_err());
    // The type validates on its own too, and serializes back to what it read.
    let c = cfg(tier_lookup());
    assert!(c.validate().is_ok());
    let round: MetadataConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
    assert_eq!(round, c);
}

/// A request whose only headers are `authorization` and, if set, `:method`.
struct BearerRequest {
    authorization: &'static str,
    method: Option<&'static str>,
}

impl crate::auth::RequestView for BearerRequest {
    fn header_values(&self, name: &str) -> Vec<String> {
        match (name, self.method) {
            ("authorization", _) => vec![self.authorization.into()],
            (":method", Some(m)) => vec![m.into()],
            _ => Vec::new(),
        }
    }
    fn path(&self) -> String {
        "/v1/chat/completions".into()
    }
    fn host(&self) -> String {
        "gw".into()
    }
}

/// An auth host at t = 1000 s with no JWKS key sets, its cache a [`Cache`].
#[derive(Default)]
struct CacheHost(Cache);

impl crate::auth::AuthHost for CacheHost {
    fn now(&self) -> u64 {
        1000
    }
    fn key_set(&self, _: &str) -> Option<std::rc::Rc<crate::auth::jwt::KeySet>> {
        None
    }
    fn cache_get(&self, key: &str) -> Option<Vec<u8>> {
        self.0.get(key)
    }
}

mod with_the_authenticator {
    use super::*;
    use crate::auth::decision::{CalloutKind, Decision};
    use crate::auth::{AuthConfig, Authenticator};

    const REQ: BearerRequest = BearerRequest {
        authorization: "Bearer sk-bob",
        method: Some("POST"),
    };
    type Host = CacheHost;

    fn authenticator() -> Authenticator {
        let digest = crate::auth::apikey::KeyDigest::of(b"sk-bob").to_hex();
        let mut lookup = tier_lookup();
        lookup["body"] = json!({"object": {"groups": {"attribute": "auth.identity.groups"}}});
        lookup["cache"] = json!({"key": {"selector": "auth.identity.userid"}, "ttlSeconds": 60});
        let config: AuthConfig = crate::config::parse(
            json!({
                "methods": [{"name": "keys", "apiKey": {"keys": [{"sha256": digest,
                    "identity": {"userid": "bob", "groups": ["premium-users"]}}]}}],
                "metadata": [lookup],
                "identityProperties": {"tier": {"selector": "auth.metadata.matchedTier.tier"}},
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        Authenticator::new(config)
    }

    #[test]
    fn the_tier_is_looked_up_after_authentication_then_cached() {
        let auth = authenticator();
        let host = Host::default();
        let Decision::Review(callout) = auth.authenticate(&REQ, &host) else {
            panic!("expected the metadata call")
        };
        assert_eq!(callout.kind, CalloutKind::Metadata(0));
        assert_eq!(callout.cluster, "metadata-maas-api-8080");
        assert_eq!(callout.path, "/v1/tiers/lookup");
        assert_eq!(callout.method, "POST");
        assert_eq!(
            serde_json::from_slice::<Value>(&callout.body).unwrap(),
            json!({"groups": ["premium-users"]})
        );
        let out = auth.metadata_answered(&host, callout, Some(200), br#"{"tier":"premium"}"#);
        let Decision::Allow { identity, method } = out.decision else {
            panic!("{:?}", out.decision)
        };
        assert_eq!(method, "keys");
        assert_eq!(identity.properties["tier"], json!("premium"));
        assert_eq!(out.failed, None);
        // The answer is cached: the next request decides without a call.
        host.0.put(out.cache);
        let Decision::Allow { identity, .. } = auth.authenticate(&REQ, &host) else {
            panic!("expected an answer from the cache")
        };
        assert_eq!(identity.properties["tier"], json!("premium"));
    }

    #[test]
    fn a_failed_lookup_allows_without_the_property() {
        let auth = authenticator();
        let host = Host::default();
        for (status, body) in [(None, &b""[..]), (Some(500), b"{}"), (Some(200), b"{oops")] {
            let Decision::Review(callout) = auth.authenticate(&REQ, &host) else {
                panic!()
            };
            let out = auth.metadata_answered(&host, callout, status, body);
            let Decision::Allow { identity, .. } = out.decision else {
                panic!("{:?}", out.decision)
            };
            assert!(!identity.properties.contains_key("tier"));
            assert_eq!(identity.userid, "bob");
            assert!(out.failed.is_some());
            assert_eq!(out.cache, None);
        }
    }
}

mod token_review_extra {
    use super::*;
    use crate::auth::decision::Decision;
    use crate::auth::{AuthConfig, Authenticator};

    const REQ: BearerRequest = BearerRequest {
        authorization: "Bearer sa-token",
        method: None,
    };
    type Host = CacheHost;

    #[test]
    fn user_extra_reaches_identity_properties_and_not_the_identity_object() {
        let config: AuthConfig = crate::config::parse(
            json!({
                "methods": [{"name": "k8s", "kubernetesTokenReview": {"cluster": "kube", "bearerToken": "sa"}}],
                "identityProperties": {"org": {"selector": "auth.identity.user.extra.org.0"}},
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let auth = Authenticator::new(config);
        let host = Host::default();
        let Decision::Review(callout) = auth.authenticate(&REQ, &host) else {
            panic!("expected a TokenReview")
        };
        let answer = json!({"kind": "TokenReview", "status": {"authenticated": true,
            "user": {"username": "system:serviceaccount:a:b", "groups": ["g"],
                     "extra": {"org": ["acme"], "scopes": ["x", "y"]}}}});
        let review = auth.read_review(&callout, Some(201), answer.to_string().as_bytes());
        host.0.put(
            Authenticator::cache_entry(&callout, &review, 1000)
                .map(|e| (callout.cache_key.clone(), e)),
        );
        let Decision::Allow { identity, .. } = auth.token_reviewed(&REQ, &host, &callout, review)
        else {
            panic!()
        };
        assert_eq!(identity.properties.get("org"), Some(&json!("acme")));
        assert_eq!(identity.properties.len(), 1, "{:?}", identity.properties);
        // From the cache: the same.
        let Decision::Allow { identity, .. } = auth.authenticate(&REQ, &host) else {
            panic!("expected the cached review")
        };
        assert_eq!(identity.properties.get("org"), Some(&json!("acme")));
        assert_eq!(identity.properties.len(), 1);
    }
}
