use super::testing::{self, TestKey};
use super::*;
use serde_json::json;

const NOW: u64 = 1_800_000_000;

fn validation(algs: Vec<Alg>) -> Validation {
    Validation {
        issuer: "https://issuer.example".into(),
        audiences: vec!["infergate".into()],
        algorithms: algs,
        clock_skew_secs: 30,
    }
}

fn claims() -> Value {
    json!({"iss": "https://issuer.example", "aud": ["other", "infergate"], "sub": "alice",
           "groups": ["premium"], "exp": NOW + 60, "nbf": NOW - 60, "iat": NOW - 60})
}

fn all_keys() -> KeySet {
    KeySet::from_json(testing::jwks(&testing::ALL_KEYS).to_string().as_bytes()).unwrap()
}

#[test]
fn every_algorithm_verifies_with_its_key() {
    let keys = all_keys();
    let mut all = Alg::asymmetric();
    all.push(Alg::HS256);
    let v = validation(all);
    for (key, alg, kid) in testing::ALL_SIGNERS {
        let token = testing::sign(key, alg, Some(kid), &claims());
        let c = verify(&token, &keys, &v, NOW).unwrap_or_else(|e| panic!("{alg:?}: {e:?}"));
        assert_eq!(c["sub"], "alice");
        // Without a kid the key is found by type.
        let token = testing::sign(key, alg, None, &claims());
        assert!(
            verify(&token, &keys, &v, NOW).is_ok(),
            "{alg:?} without kid"
        );
        // A flipped signature byte fails.
        let mut bad = token.into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(
            verify(&bad, &keys, &v, NOW).unwrap_err(),
            JwtError::BadSignature,
            "{alg:?}"
        );
    }
}

#[test]
fn time_issuer_and_audience_are_checked() {
    let keys = all_keys();
    let v = validation(Alg::asymmetric());
    let t = |c: Value| testing::sign(TestKey::Rsa, Alg::RS256, Some("rsa"), &c);
    let mut c = claims();
    c["exp"] = json!(NOW - 31);
    assert_eq!(
        verify(&t(c.clone()), &keys, &v, NOW),
        Err(JwtError::Expired)
    );
    c["exp"] = json!(NOW - 29); // within the skew
    assert!(verify(&t(c.clone()), &keys, &v, NOW).is_ok());
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(verify(&t(c), &keys, &v, NOW), Err(JwtError::Expired));
    let mut c = claims();
    c["nbf"] = json!(NOW + 31);
    assert_eq!(verify(&t(c), &keys, &v, NOW), Err(JwtError::NotYetValid));
    let mut c = claims();
    c["iss"] = json!("https://evil.example");
    assert_eq!(verify(&t(c), &keys, &v, NOW), Err(JwtError::WrongIssuer));
    let mut c = claims();
    c["aud"] = json!("other");
    assert_eq!(verify(&t(c), &keys, &v, NOW), Err(JwtError::WrongAudience));
    let mut c = claims();
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(verify(&t(c), &keys, &v, NOW), Err(JwtError::WrongAudience));
}

#[test]
fn none_and_algorithm_confusion_are_refused() {
    let keys = KeySet::from_json(
        testing::jwks(&[(TestKey::Rsa, "rsa")])
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    // Even with HS256 allowed, an RSA key never verifies an HMAC.
    let mut algs = Alg::asymmetric();
    algs.push(Alg::HS256);
    let v = validation(algs);
    assert_eq!(
        verify(&testing::unsigned(&claims()), &keys, &v, NOW),
        Err(JwtError::AlgorithmNotAllowed)
    );
    let forged = testing::sign_hs256_with(
        &TestKey::rsa_public_modulus(),
        &json!({"alg": "HS256", "kid": "rsa"}),
        &claims(),
    );
    assert_eq!(verify(&forged, &keys, &v, NOW), Err(JwtError::NoKey));
    let jwk_text = TestKey::Rsa.jwk("rsa").to_string();
    let forged = testing::sign_hs256_with(jwk_text.as_bytes(), &json!({"alg": "HS256"}), &claims());
    assert_eq!(verify(&forged, &keys, &v, NOW), Err(JwtError::NoKey));
    // An allowed list without RS256 refuses RS256 tokens.
    let token = testing::sign(TestKey::Rsa, Alg::RS256, Some("rsa"), &claims());
    assert_eq!(
        verify(&token, &keys, &validation(vec![Alg::ES256]), NOW),
        Err(JwtError::AlgorithmNotAllowed)
    );
    // A kid naming no key.
    let token = testing::sign(TestKey::Rsa, Alg::RS256, Some("gone"), &claims());
    assert_eq!(
        verify(&token, &keys, &validation(Alg::asymmetric()), NOW),
        Err(JwtError::NoKey)
    );
}

#[test]
fn malformed_and_oversized_tokens() {
    let keys = all_keys();
    let v = validation(Alg::asymmetric());
    for bad in [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.???.***",
        "eyJhbGciOiJSUzI1NiJ9.e30", // two parts
        "e30.e30.",                 // header without alg
    ] {
        assert_eq!(
            verify(bad, &keys, &v, NOW),
            Err(JwtError::Malformed),
            "{bad}"
        );
    }
    let good = testing::sign(TestKey::Rsa, Alg::RS256, Some("rsa"), &claims());
    let mut big = claims();
    big["pad"] = json!("x".repeat(MAX_TOKEN_BYTES));
    let huge = testing::sign(TestKey::Rsa, Alg::RS256, Some("rsa"), &big);
    assert_eq!(verify(&huge, &keys, &v, NOW), Err(JwtError::Malformed));
    // crit headers are refused.
    let crit = testing::sign_raw(
        TestKey::Rsa,
        Alg::RS256,
        &json!({"alg": "RS256", "crit": ["exp"]}),
        &claims(),
    );
    assert_eq!(verify(&crit, &keys, &v, NOW), Err(JwtError::Malformed));
    assert!(verify(&good, &keys, &v, NOW).is_ok());
}

#[test]
fn jwks_parsing_skips_and_refuses() {
    assert!(KeySet::from_json(b"{}").is_err());
    assert!(KeySet::from_json(br#"{"keys":[]}"#).is_err());
    let weak = json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]});
    let err = KeySet::from_json(weak.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains("2048"), "{err}");
    let mixed = json!({"keys": [
        {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
        TestKey::Ed25519.jwk("ed"),
    ]});
    assert_eq!(
        KeySet::from_json(mixed.to_string().as_bytes())
            .unwrap()
            .keys
            .len(),
        1
    );
    let short_secret = json!({"keys": [{"kty": "oct", "k": "c2hvcnQ"}]});
    assert!(KeySet::from_json(short_secret.to_string().as_bytes()).is_err());
    let mut pinned = TestKey::Rsa.jwk("rsa");
    pinned["alg"] = json!("ES256");
    assert!(KeySet::from_json(json!({"keys": [pinned]}).to_string().as_bytes()).is_err());
}

#[test]
fn claims_by_path_and_groups() {
    let c: Claims = serde_json::from_value(
        json!({"sub": "a", "realm": {"roles": ["x", "y"]}, "scope": "read write"}),
    )
    .unwrap();
    assert_eq!(claim(&c, "sub"), Some(&json!("a")));
    assert_eq!(groups_of(claim(&c, "realm.roles")), vec!["x", "y"]);
    assert_eq!(groups_of(claim(&c, "scope")), vec!["read", "write"]);
    assert!(groups_of(claim(&c, "missing.x")).is_empty());
    assert!(looks_like_jwt("a.b.c"));
    assert!(!looks_like_jwt("sk-123"));
}
