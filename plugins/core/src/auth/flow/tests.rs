//! Whole requests through [`AuthFlow`] on the test host: no Envoy involved.

use super::mock::MockHost;
use super::*;
use crate::auth::apikey::KeyDigest;
use crate::auth::AuthConfig;
use crate::config::parse;
use serde_json::json;

const TOKEN_OK: &[u8] = br#"{"kind":"TokenReview","status":{"authenticated":true,"user":{"username":"system:serviceaccount:ns:sa","groups":["g"]}}}"#;
const TOKEN_NO: &[u8] = br#"{"kind":"TokenReview","status":{"authenticated":false}}"#;

fn auth(config: serde_json::Value) -> Authenticator {
    Authenticator::new(parse::<AuthConfig>(config.to_string().as_bytes()).unwrap())
}

fn keys(extra: serde_json::Value) -> Authenticator {
    let mut c = json!({"methods": [{"name": "keys", "apiKey": {"keys": [
        {"sha256": KeyDigest::of(b"alice-key").to_hex(), "identity": {"userid": "alice", "groups": ["premium"]}}]}}]});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    auth(c)
}

fn post(credential: Option<&str>) -> MockHost {
    let mut headers = vec![
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "gw.example"),
        ("x-infergate-user", "mallory"),
    ];
    let bearer;
    if let Some(c) = credential {
        bearer = format!("Bearer {c}");
        headers.push(("authorization", &bearer));
    }
    MockHost::request(&headers)
}

fn review() -> Authenticator {
    auth(json!({"methods": [
        {"name": "k8s", "kubernetesTokenReview": {"cluster": "kube", "bearerToken": "sa"}}]}))
}

#[test]
fn allowed_request_carries_the_identity_and_not_the_credential() {
    let a = keys(json!({}));
    let host = post(Some("alice-key"));
    let mut flow = AuthFlow::new();
    assert_eq!(flow.on_headers(&a, &host, false), Next::Continue);
    assert_eq!(flow.phase(), &Phase::Forwarded);
    assert_eq!(host.header("x-infergate-user"), vec!["alice"]);
    assert_eq!(host.header("x-infergate-groups"), vec!["premium"]);
    assert!(host.header("authorization").is_empty());
    let object: serde_json::Value =
        serde_json::from_slice(host.identity.borrow().as_deref().unwrap()).unwrap();
    assert_eq!(object["userid"], "alice");
    assert_eq!(host.counted(Stat::Allowed), 1);
    assert_eq!(host.replied(), None);
    // The body is not the flow's business any more.
    assert_eq!(flow.on_body(&a, &host, 10, true), Next::Continue);
}

#[test]
fn denied_request_gets_a_401_and_no_identity() {
    let a = keys(json!({}));
    for (credential, reason) in [
        (None, "missing_credential"),
        (Some("wrong"), "invalid_credential"),
    ] {
        let host = post(credential);
        let mut flow = AuthFlow::new();
        assert_eq!(flow.on_headers(&a, &host, true), Next::Pause);
        assert_eq!(host.replied(), Some(401));
        let reply = host.replies.borrow()[0].clone();
        assert!(reply.headers.iter().any(|(k, _)| *k == "www-authenticate"));
        assert_eq!(host.counted(Stat::Denied(reason)), 1);
        // The client's spoofed identity header is gone, and none was set.
        assert!(host.header("x-infergate-user").is_empty());
        assert!(host.identity.borrow().is_none());
        assert_eq!(flow.phase(), &Phase::Answered);
    }
}

#[test]
fn token_review_callout_answered_then_cached() {
    let a = review();
    let host = post(Some("sa-token"));
    let mut flow = AuthFlow::new();
    assert_eq!(flow.on_headers(&a, &host, false), Next::Pause);
    let sent = host.sent.borrow().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].cluster, "kube");
    assert_eq!(sent[0].path, "/apis/authentication.k8s.io/v1/tokenreviews");
    assert_eq!(host.counted(Stat::Callout(CalloutKind::Token(0))), 1);
    // The body arrives while the review is out: held, not decided.
    assert_eq!(flow.on_body(&a, &host, 20, true), Next::Pause);
    // A stray answer for another token changes nothing.
    flow.on_answer(&a, &host, 99, Some(201), TOKEN_OK);
    assert_eq!(host.resumed.get(), 0);
    flow.on_answer(&a, &host, 1, Some(201), TOKEN_OK);
    assert_eq!(host.resumed.get(), 1);
    assert_eq!(flow.phase(), &Phase::Forwarded);
    assert_eq!(
        host.header("x-infergate-user"),
        vec!["system:serviceaccount:ns:sa"]
    );
    assert_eq!(host.replied(), None);
    // Another worker's request with the same token: answered from shared data.
    let again = post(Some("sa-token"));
    again.shared.replace(host.shared.borrow().clone());
    let mut flow = AuthFlow::new();
    assert_eq!(flow.on_headers(&a, &again, false), Next::Continue);
    assert!(again.sent.borrow().is_empty());
    assert_eq!(again.counted(Stat::CacheHit), 1);
}

#[test]
fn token_review_rejected_is_a_401_and_cached_as_such() {
    let a = review();
    let host = post(Some("bad-token"));
    let mut flow = AuthFlow::new();
    assert_eq!(flow.on_headers(&a, &host, true), Next::Pause);
    flow.on_answer(&a, &host, 1, Some(201), TOKEN_NO);
    assert_eq!(host.replied(), Some(401));
    assert_eq!(host.resumed.get(), 0);
    assert_eq!(host.shared.borrow().len(), 1);
}

#[test]
fn callout_timed_out_follows_the_failure_mode() {
    // Default `deny`: 503 with retry-after, nothing cached.
    let a = review();
    let host = post(Some("t"));
    let mut flow = AuthFlow::new();
    flow.on_headers(&a, &host, true);
    flow.on_answer(&a, &host, 1, None, b"");
    assert_eq!(host.replied(), Some(503));
    assert!(host.replies.borrow()[0]
        .headers
        .contains(&("retry-after", "1".to_string())));
    assert_eq!(host.counted(Stat::CalloutFailed), 1);
    assert!(host.shared.borrow().is_empty());
    // `allow`: through as the failure identity.
    let a = auth(
        json!({"methods": [{"name": "k8s", "kubernetesTokenReview": {
        "cluster": "kube", "bearerToken": "sa", "failureMode": "allow"}}]}),
    );
    let host = post(Some("t"));
    let mut flow = AuthFlow::new();
    flow.on_headers(&a, &host, true);
    flow.on_answer(&a, &host, 1, Some(500), b"oops");
    assert_eq!(host.resumed.get(), 1);
    assert_eq!(host.header("x-infergate-user"), vec!["unverified"]);
    // An unknown cluster fails the same way without a call.
    let a = review();
    let mut host = post(Some("t"));
    host.cluster_missing = true;
    let mut flow = AuthFlow::new();
    assert_eq!(flow.on_headers(&a, &host, true), Next::Pause);
    assert_eq!(host.replied(), Some(503));
}

fn models_rule(hold: bool) -> Authenticator {
    keys(json!({
        "authorization": {"rules": [{"models": ["m1"]}], "maxBodyBytes": 64},
        "allowOnHeadersStopIteration": hold
    }))
}

#[test]
fn models_rule_reads_the_body_in_both_header_modes() {
    for (hold, at_headers) in [(true, Next::Pause), (false, Next::Continue)] {
        for (model, status) in [("m1", None), ("m2", Some(403))] {
            let a = models_rule(hold);
            let mut host = post(Some("alice-key"));
            host.body = json!({"model": model, "messages": []})
                .to_string()
                .into_bytes();
            let mut flow = AuthFlow::new();
            assert_eq!(flow.on_headers(&a, &host, false), at_headers, "hold {hold}");
            assert_eq!(flow.phase(), &Phase::AwaitingBody);
            assert_eq!(flow.on_body(&a, &host, 10, false), Next::Pause);
            let end = flow.on_body(&a, &host, host.body.len(), true);
            assert_eq!(host.replied(), status, "{model}");
            let expected = if status.is_none() {
                Next::Continue
            } else {
                Next::Pause
            };
            assert_eq!(end, expected);
        }
    }
}

#[test]
fn body_too_large_for_a_models_rule_is_a_413() {
    let a = models_rule(true);
    let host = post(Some("alice-key"));
    let mut flow = AuthFlow::new();
    assert_eq!(flow.on_headers(&a, &host, false), Next::Pause);
    assert_eq!(flow.on_body(&a, &host, 65, false), Next::Pause);
    assert_eq!(host.replied(), Some(413));
    assert_eq!(flow.phase(), &Phase::Answered);
    // Nothing else happens afterwards.
    assert_eq!(flow.on_body(&a, &host, 70, true), Next::Continue);
    assert_eq!(host.replies.borrow().len(), 1);
}

#[test]
fn stream_cut_while_a_callout_is_out_ends_quietly() {
    let a = review();
    let host = post(Some("t"));
    let mut flow = AuthFlow::new();
    assert_eq!(flow.on_headers(&a, &host, false), Next::Pause);
    flow.on_done();
    flow.on_answer(&a, &host, 1, Some(201), TOKEN_OK);
    assert_eq!(host.resumed.get(), 0);
    assert_eq!(host.replied(), None);
    assert!(host.header("x-infergate-user").is_empty());
}

#[test]
fn access_review_after_the_body_in_no_hold_mode() {
    let a = auth(json!({
        "methods": [{"name": "keys", "apiKey": {"keys": [
            {"sha256": KeyDigest::of(b"alice-key").to_hex(), "identity": {"userid": "alice"}}]}}],
        "authorization": {"rules": [{"models": ["m1"]}],
            "kubernetesSubjectAccessReview": {"cluster": "kube", "bearerToken": "sa"}}
    }));
    let mut host = post(Some("alice-key"));
    host.headers.borrow_mut()[1].1 = "/ns/model/v1/chat/completions".to_string();
    host.body = br#"{"model":"m1","messages":[]}"#.to_vec();
    let mut flow = AuthFlow::new();
    assert_eq!(flow.on_headers(&a, &host, false), Next::Continue);
    assert_eq!(flow.on_body(&a, &host, host.body.len(), true), Next::Pause);
    assert_eq!(host.counted(Stat::Callout(CalloutKind::Access)), 1);
    flow.on_answer(
        &a,
        &host,
        1,
        Some(201),
        br#"{"kind":"SubjectAccessReview","status":{"allowed":true}}"#,
    );
    assert_eq!(host.resumed.get(), 1);
    assert_eq!(flow.phase(), &Phase::Forwarded);
    assert_eq!(host.replied(), None);
}

#[test]
fn callout_answer_that_needs_the_body_resumes_only_in_no_hold_mode() {
    for (hold, resumed) in [(true, 0), (false, 1)] {
        let a = auth(json!({
            "methods": [{"name": "k8s", "kubernetesTokenReview": {"cluster": "kube", "bearerToken": "sa"}}],
            "authorization": {"rules": [{"models": ["m1"]}]},
            "allowOnHeadersStopIteration": hold
        }));
        let mut host = post(Some("t"));
        host.body = br#"{"model":"m1","messages":[]}"#.to_vec();
        let mut flow = AuthFlow::new();
        assert_eq!(flow.on_headers(&a, &host, false), Next::Pause);
        flow.on_answer(&a, &host, 1, Some(201), TOKEN_OK);
        assert_eq!(host.resumed.get(), resumed, "hold {hold}");
        assert_eq!(flow.phase(), &Phase::AwaitingBody);
        assert_eq!(
            flow.on_body(&a, &host, host.body.len(), true),
            Next::Continue
        );
        assert_eq!(host.counted(Stat::Allowed), 1);
    }
}

#[test]
fn hold_mode_reads_the_rest_of_a_denied_body_before_answering() {
    let a =
        keys(json!({"authorization": {"maxBodyBytes": 100}, "allowOnHeadersStopIteration": true}));
    let host = post(Some("wrong"));
    let mut flow = AuthFlow::new();
    assert_eq!(flow.on_headers(&a, &host, false), Next::Pause);
    assert!(flow.is_draining());
    assert_eq!(host.replied(), None, "answered before the body was read");
    assert_eq!(host.counted(Stat::Denied("invalid_credential")), 1);
    assert_eq!(flow.on_body(&a, &host, 40, false), Next::Pause);
    assert_eq!(flow.on_body(&a, &host, 30, false), Next::Pause);
    assert_eq!(host.replied(), None);
    assert_eq!(flow.on_body(&a, &host, 20, true), Next::Pause);
    assert_eq!(host.replied(), Some(401));
    assert_eq!(*host.discarded.borrow(), vec![40, 30, 20]);
    assert_eq!(flow.phase(), &Phase::Answered);
    // A body without end gets its answer once more than the limit was read…
    let host = post(None);
    let mut flow = AuthFlow::new();
    flow.on_headers(&a, &host, false);
    flow.on_body(&a, &host, 60, false);
    assert_eq!(host.replied(), None);
    flow.on_body(&a, &host, 60, false);
    assert_eq!(host.replied(), Some(401));
    assert_eq!(flow.on_body(&a, &host, 60, true), Next::Continue);
    // …or when the adapter's timer fires, once.
    let host = post(None);
    let mut flow = AuthFlow::new();
    flow.on_headers(&a, &host, false);
    flow.on_timeout(&host);
    assert_eq!(host.replied(), Some(401));
    flow.on_timeout(&host);
    assert_eq!(host.replies.borrow().len(), 1);
    // A stream cut while draining answers nothing.
    let host = post(None);
    let mut flow = AuthFlow::new();
    flow.on_headers(&a, &host, false);
    flow.on_done();
    flow.on_timeout(&host);
    assert_eq!(host.replied(), None);
}

#[test]
fn without_hold_or_without_a_body_the_answer_is_immediate() {
    // No-hold mode: no body callback would come after pausing the headers.
    let a = keys(json!({}));
    let host = post(None);
    let mut flow = AuthFlow::new();
    assert_eq!(flow.on_headers(&a, &host, false), Next::Pause);
    assert_eq!(host.replied(), Some(401));
    // Hold mode, request without a body.
    let a = keys(json!({"allowOnHeadersStopIteration": true}));
    let host = post(None);
    let mut flow = AuthFlow::new();
    assert_eq!(flow.on_headers(&a, &host, true), Next::Pause);
    assert_eq!(host.replied(), Some(401));
    assert!(!flow.is_draining());
}

#[test]
fn a_rejection_after_a_callout_drains_what_is_left_of_the_body() {
    let a = auth(json!({
        "methods": [{"name": "k8s", "kubernetesTokenReview": {"cluster": "kube", "bearerToken": "sa"}}],
        "allowOnHeadersStopIteration": true
    }));
    let host = post(Some("t"));
    let mut flow = AuthFlow::new();
    assert_eq!(flow.on_headers(&a, &host, false), Next::Pause);
    assert_eq!(flow.on_body(&a, &host, 10, false), Next::Pause);
    flow.on_answer(&a, &host, 1, Some(201), TOKEN_NO);
    assert!(flow.is_draining());
    assert_eq!(host.resumed.get(), 0);
    assert_eq!(flow.on_body(&a, &host, 10, true), Next::Pause);
    assert_eq!(host.replied(), Some(401));
}
