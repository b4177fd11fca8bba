//! The auth plugin's methods in a real Envoy, loaded from the built `.wasm`: JWTs (inline JWKS
//! and a JWKS fetched through an Envoy cluster), Kubernetes TokenReview and
//! SubjectAccessReview against a stand-in kube-apiserver that follows the
//! `authentication.k8s.io/v1` / `authorization.k8s.io/v1` JSON contract, anonymous access by
//! source range, and authorization rules on group, method and the body's `model`.
//!
//! Tokens are signed with `infergate_core::auth::jwt::testing`, which uses the same RustCrypto
//! crates as the verifier with fixed test keys (the test crate may not add crypto crates).

mod common;

use common::*;
use infergate_core::auth::jwt::testing::{self, TestKey};
use infergate_core::auth::jwt::Alg;
use infergate_e2e::envoy::{ClusterSpec, Envoy, RouteSpec, MODEL_CLUSTER};
use infergate_e2e::upstream::Upstream;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const MODEL: &str = "Qwen/Qwen3-0.6B";
const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "infergate";
const SA_TOKEN: &str = "sa-token-of-the-gateway";

// ---------------------------------------------------------------------------------------------
// The stand-ins (JWKS endpoint, kube-apiserver): the fault suites' switchable HTTP stub.

#[allow(dead_code)]
#[path = "fault_kit/http_stub.rs"]
mod http_stub;

use http_stub::{respond, HttpStub as Stub, StubRequest, StubResponse};

// ---------------------------------------------------------------------------------------------
// Gateways and requests.

fn claims(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "groups": ["premium", "staff"],
           "iat": unix_now(), "nbf": unix_now() - 10, "exp": unix_now() + 600})
}

async fn gateway(pod: &Upstream, auth: Value, clusters: Vec<ClusterSpec>) -> anyhow::Result<Envoy> {
    let gateway = Gateway::builder()
        .auth(auth)
        .pinned_to(pod.addr)
        .clusters(clusters);
    // The guide's route: `/<namespace>/<model>/…` has its prefix stripped before the pod.
    gateway
        .routes(vec![
            RouteSpec {
                prefix: "/team-a/qwen/".to_string(),
                prefix_rewrite: Some("/".to_string()),
                cluster: MODEL_CLUSTER.to_string(),
            },
            RouteSpec {
                prefix: "/".to_string(),
                prefix_rewrite: None,
                cluster: MODEL_CLUSTER.to_string(),
            },
        ])
        .start()
        .await
}

/// POSTs a chat completion with `authorization` (if any) and returns status, headers, body.
async fn chat(
    envoy: &Envoy,
    path: &str,
    authorization: &[&str],
    model: &str,
) -> anyhow::Result<(u16, reqwest::header::HeaderMap, Value)> {
    let mut req = http_client()
        .post(format!("{}{path}", envoy.http_url()))
        .json(&chat_body(model, false));
    for a in authorization {
        req = req.header("authorization", *a);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    Ok((status, headers, body))
}

async fn stat(envoy: &Envoy, name: &str) -> u64 {
    plugin_stat(envoy, "auth", name).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

// ---------------------------------------------------------------------------------------------
// JWT.

fn all_keys_jwks() -> Value {
    testing::jwks(&testing::ALL_KEYS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_with_inline_jwks_accepts_each_algorithm_and_refuses_bad_tokens() -> anyhow::Result<()>
{
    let pod = Upstream::start("pod-1", MODEL).await?;
    let auth = json!({"methods": [{"name": "oidc", "jwt": {
        "issuer": ISSUER, "audiences": [AUDIENCE],
        "algorithms": ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA", "HS256"],
        "clockSkewSeconds": 5,
        "jwks": all_keys_jwks()}}]});
    let envoy = gateway(&pod, auth, vec![]).await?;

    let good = testing::ALL_SIGNERS;
    for (key, alg, kid) in good {
        let token = testing::sign(key, alg, Some(kid), &claims(&format!("user-{kid}")));
        let (status, _, body) =
            chat(&envoy, "/v1/chat/completions", &[&bearer(&token)], MODEL).await?;
        assert_eq!(status, 200, "{alg:?}: {body} {}", envoy.log());
    }
    // Lower-case scheme, and client-sent identity headers are replaced, credential not forwarded.
    let token = testing::sign(TestKey::Rsa, Alg::RS256, Some("rsa"), &claims("alice"));
    let resp = http_client()
        .post(format!("{}/v1/chat/completions", envoy.http_url()))
        .header("authorization", format!("bearer {token}"))
        .header("x-infergate-user", "admin")
        .header("x-infergate-groups", "admins")
        .json(&chat_body(MODEL, false))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let seen = pod.requests();
    assert_eq!(seen.len(), good.len() + 1);
    let last = seen.last().expect("request");
    assert_eq!(last.header("x-infergate-user"), vec!["alice"]);
    assert_eq!(last.header("x-infergate-groups"), vec!["premium,staff"]);
    for r in &seen {
        assert!(r.header("authorization").is_empty(), "credential forwarded");
    }
    assert_eq!(seen[0].header("x-infergate-user"), vec!["user-rsa"]);

    // Everything below is refused with the same 401 that reveals nothing.
    let mut expired = claims("alice");
    expired["exp"] = json!(unix_now() - 60);
    let mut early = claims("alice");
    early["nbf"] = json!(unix_now() + 600);
    let mut wrong_iss = claims("alice");
    wrong_iss["iss"] = json!("https://evil.test");
    let mut wrong_aud = claims("alice");
    wrong_aud["aud"] = json!(["someone-else"]);
    let mut no_sub = claims("alice");
    no_sub.as_object_mut().expect("obj").remove("sub");
    let mut big = claims("alice");
    big["pad"] = json!("x".repeat(9000));
    let rs = |c: &Value| testing::sign(TestKey::Rsa, Alg::RS256, Some("rsa"), c);
    let confused = testing::sign_hs256_with(
        &TestKey::rsa_public_modulus(),
        &json!({"alg": "HS256", "typ": "JWT", "kid": "rsa"}),
        &claims("mallory"),
    );
    // Flip the signature's first character (the last one may only carry padding bits).
    let valid = rs(&claims("alice"));
    let sig_start = valid.rfind('.').map_or(0, |i| i + 1);
    let mut tampered = valid.clone();
    let first = if valid[sig_start..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(sig_start..sig_start + 1, first);
    assert_ne!(tampered, valid);
    let refused: Vec<(&str, String)> = vec![
        ("expired", rs(&expired)),
        ("not yet valid", rs(&early)),
        ("wrong issuer", rs(&wrong_iss)),
        ("wrong audience", rs(&wrong_aud)),
        ("no subject", rs(&no_sub)),
        ("oversized", rs(&big)),
        ("alg none", testing::unsigned(&claims("mallory"))),
        ("HS256 with the RSA public key", confused),
        ("tampered signature", tampered),
        ("malformed", "a.b.c".to_string()),
        ("not base64", "!!.??.**".to_string()),
    ];
    for (what, token) in &refused {
        let (status, headers, body) =
            chat(&envoy, "/v1/chat/completions", &[&bearer(token)], MODEL).await?;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(
            headers["www-authenticate"], "Bearer realm=\"infergate\", error=\"invalid_token\"",
            "{what}"
        );
        assert_eq!(body["error"]["type"], "authentication_error", "{what}");
        assert_eq!(body["error"]["code"], "invalid_api_key", "{what}");
    }
    // Two Authorization headers, even with a valid token among them.
    let valid = bearer(&rs(&claims("alice")));
    let (status, _, _) = chat(
        &envoy,
        "/v1/chat/completions",
        &[&valid, "Bearer x.y.z"],
        MODEL,
    )
    .await?;
    assert_eq!(status, 401, "duplicate authorization headers");
    // Missing credential.
    let (status, headers, body) = chat(&envoy, "/v1/chat/completions", &[], MODEL).await?;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"infergate\"");
    assert_eq!(body["error"]["code"], "missing_credential");

    assert_eq!(
        pod.requests().len(),
        good.len() + 1,
        "a refused request reached the pod"
    );
    assert_eq!(stat(&envoy, "allowed").await, good.len() as u64 + 1);
    assert_eq!(
        stat(&envoy, "denied.invalid_credential").await,
        refused.len() as u64 + 1
    );
    assert_eq!(stat(&envoy, "denied.missing_credential").await, 1);
    Ok(())
}

/// Sends `token` until the answer's status is `want` (the JWKS is fetched from a 1 s timer).
async fn wait_for_status(envoy: &Envoy, token: &str, want: u16) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, body) =
            chat(envoy, "/v1/chat/completions", &[&bearer(token)], MODEL).await?;
        if status == want {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("still {status} ({body}), wanted {want}\n{}", envoy.log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_uri_is_fetched_refreshed_and_the_last_good_set_survives_failures(
) -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    // The identity provider is down at first.
    let idp = Stub::start(Arc::new(|_| respond(500, json!({"error": "down"})))).await?;
    let auth = json!({"methods": [{"name": "oidc", "jwt": {
        "issuer": ISSUER, "audiences": [AUDIENCE],
        "jwksUri": {"cluster": "idp", "path": "/jwks.json", "authority": "idp.test",
                    "refreshSeconds": 1, "timeoutMs": 1000}}}]});
    let envoy = gateway(&pod, auth, vec![idp.cluster("idp")]).await?;
    let rsa_token = testing::sign(TestKey::Rsa, Alg::RS256, Some("k1"), &claims("alice"));
    let ec_token = testing::sign(TestKey::P256, Alg::ES256, Some("k2"), &claims("bob"));

    // No key set yet: 503 (failureMode deny), with Retry-After, OpenAI-style.
    let (status, headers, body) = chat(
        &envoy,
        "/v1/chat/completions",
        &[&bearer(&rsa_token)],
        MODEL,
    )
    .await?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["error"]["code"], "authentication_unavailable");

    // The provider comes up: the RSA key is fetched and used.
    idp.set(Arc::new(|_| {
        respond(200, testing::jwks(&[(TestKey::Rsa, "k1")]))
    }));
    wait_for_status(&envoy, &rsa_token, 200).await?;
    let fetches = idp.requests();
    assert!(fetches
        .iter()
        .all(|r| r.method == "GET" && r.path == "/jwks.json"));
    assert_eq!(
        fetches.last().and_then(|r| r.header("host")),
        Some("idp.test")
    );
    assert!(stat(&envoy, "jwks.fetched").await >= 1);

    // The provider fails again: refreshes fail, the last good set keeps working.
    idp.set(Arc::new(|_| respond(503, json!({"error": "down"}))));
    let failed_before = stat(&envoy, "jwks.fetch_failed").await;
    let seen = idp.requests().len();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while idp.requests().len() < seen + 2 {
        assert!(std::time::Instant::now() < deadline, "no refresh attempts");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _, body) = chat(
        &envoy,
        "/v1/chat/completions",
        &[&bearer(&rsa_token)],
        MODEL,
    )
    .await?;
    assert_eq!(status, 200, "last good keys lost: {body}");
    assert!(stat(&envoy, "jwks.fetch_failed").await > failed_before);

    // A document without usable keys is a failure too, not an empty key set.
    idp.set(Arc::new(|_| respond(200, json!({"keys": []}))));
    let seen = idp.requests().len();
    while idp.requests().len() < seen + 2 {
        assert!(
            std::time::Instant::now() < deadline + Duration::from_secs(20),
            "no refresh"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _, _) = chat(
        &envoy,
        "/v1/chat/completions",
        &[&bearer(&rsa_token)],
        MODEL,
    )
    .await?;
    assert_eq!(status, 200);

    // Rotation: the next good set replaces the old one.
    idp.set(Arc::new(|_| {
        respond(200, testing::jwks(&[(TestKey::P256, "k2")]))
    }));
    wait_for_status(&envoy, &ec_token, 200).await?;
    wait_for_status(&envoy, &rsa_token, 401).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_unavailable_with_failure_mode_reject_is_a_401_and_other_methods_still_work(
) -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let idp = Stub::start(Arc::new(|_| respond(500, json!({})))).await?;
    let auth = json!({"methods": [
        {"name": "oidc", "jwt": {"issuer": ISSUER,
            "jwksUri": {"cluster": "idp", "path": "/jwks"}, "failureMode": "reject"}},
        {"name": "keys", "apiKey": {"keys": [{"sha256": digest("sk-alice"), "identity": {"userid": "alice"}}]}}
    ]});
    let envoy = gateway(&pod, auth, vec![idp.cluster("idp")]).await?;
    let token = testing::sign(TestKey::Rsa, Alg::RS256, None, &claims("alice"));
    let (status, headers, _) =
        chat(&envoy, "/v1/chat/completions", &[&bearer(&token)], MODEL).await?;
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"]
        .to_str()?
        .contains("invalid_token"));
    let (status, _, _) = chat(&envoy, "/v1/chat/completions", &["Bearer sk-alice"], MODEL).await?;
    assert_eq!(status, 200);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Kubernetes TokenReview and SubjectAccessReview.

/// The stand-in kube-apiserver: TokenReview accepts `good-token` (user `system:serviceaccount:
/// team-a:client`); SubjectAccessReview allows that user `get` on `llminferenceservices`
/// `qwen` in namespace `team-a`. Calls without the gateway's service-account token get 401.
fn kube_api(req: &StubRequest) -> StubResponse {
    if req.header("authorization") != Some(&format!("Bearer {SA_TOKEN}")) {
        return respond(401, json!({"kind": "Status", "code": 401}));
    }
    let body = req.json();
    match req.path.as_str() {
        "/apis/authentication.k8s.io/v1/tokenreviews" => {
            let token = body["spec"]["token"].as_str().unwrap_or_default();
            let status = if token == "good-token" {
                json!({"authenticated": true, "audiences": body["spec"]["audiences"],
                       "user": {"username": "system:serviceaccount:team-a:client",
                                "uid": "1", "groups": ["system:serviceaccounts", "team-a"]}})
            } else {
                json!({"authenticated": false, "error": "invalid bearer token"})
            };
            respond(
                201,
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                "spec": body["spec"], "status": status}),
            )
        }
        "/apis/authorization.k8s.io/v1/subjectaccessreviews" => {
            let spec = &body["spec"];
            let ra = &spec["resourceAttributes"];
            let allowed = spec["user"] == "system:serviceaccount:team-a:client"
                && ra["namespace"] == "team-a"
                && ra["name"] == "qwen"
                && ra["verb"] == "get"
                && ra["group"] == "serving.kserve.io"
                && ra["resource"] == "llminferenceservices";
            respond(
                201,
                json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                                "spec": spec, "status": {"allowed": allowed}}),
            )
        }
        _ => respond(404, json!({"kind": "Status", "code": 404})),
    }
}

fn token_review_method(extra: Value) -> Value {
    let mut m = json!({"cluster": "kube", "bearerToken": SA_TOKEN,
                       "audiences": ["https://kubernetes.default.svc"], "timeoutMs": 1000});
    if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    json!({"name": "k8s", "kubernetesTokenReview": m})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_review_accepts_rejects_and_caches_both_answers() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let kube = Stub::start(Arc::new(kube_api)).await?;
    let auth = json!({"methods": [token_review_method(json!({}))]});
    let envoy = gateway(&pod, auth, vec![kube.cluster("kube")]).await?;

    let (status, _, body) = chat(
        &envoy,
        "/v1/chat/completions",
        &["Bearer good-token"],
        MODEL,
    )
    .await?;
    assert_eq!(status, 200, "{body} {}", envoy.log());
    let calls = kube.requests();
    assert_eq!(calls.len(), 1);
    let review = calls[0].json();
    assert_eq!(calls[0].method, "POST");
    assert_eq!(review["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(review["kind"], "TokenReview");
    assert_eq!(review["spec"]["token"], "good-token");
    assert_eq!(
        review["spec"]["audiences"],
        json!(["https://kubernetes.default.svc"])
    );
    assert_eq!(calls[0].header("host"), Some("kubernetes.default.svc"));
    let seen = pod.requests();
    assert_eq!(
        seen[0].header("x-infergate-user"),
        vec!["system:serviceaccount:team-a:client"]
    );
    assert_eq!(
        seen[0].header("x-infergate-groups"),
        vec!["system:serviceaccounts,team-a"]
    );
    assert!(seen[0].header("authorization").is_empty());

    // The same token again: answered from the cache, no callout.
    for _ in 0..3 {
        let (status, _, _) = chat(
            &envoy,
            "/v1/chat/completions",
            &["Bearer good-token"],
            MODEL,
        )
        .await?;
        assert_eq!(status, 200);
    }
    assert_eq!(kube.requests().len(), 1, "cache hit made a callout");

    // A rejected token: 401, and the rejection is cached too.
    for _ in 0..2 {
        let (status, headers, body) =
            chat(&envoy, "/v1/chat/completions", &["Bearer bad-token"], MODEL).await?;
        assert_eq!(status, 401, "{body}");
        assert!(headers["www-authenticate"]
            .to_str()?
            .contains("invalid_token"));
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }
    assert_eq!(kube.requests().len(), 2);
    assert_eq!(pod.requests().len(), 4);
    assert_eq!(stat(&envoy, "callouts.token_review").await, 2);
    assert!(stat(&envoy, "cache.hits").await >= 4);
    assert_eq!(stat(&envoy, "allowed").await, 4);
    assert_eq!(stat(&envoy, "denied.invalid_credential").await, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_review_timeouts_follow_the_failure_mode() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let slow = Stub::start(Arc::new(|req: &StubRequest| StubResponse {
        delay: Duration::from_secs(3),
        ..kube_api(req)
    }))
    .await?;
    // deny (the default): 503, nothing reaches the pod, nothing cached.
    let deny = json!({"methods": [token_review_method(json!({"timeoutMs": 200}))]});
    let envoy = gateway(&pod, deny, vec![slow.cluster("kube")]).await?;
    for _ in 0..2 {
        let (status, headers, body) = chat(
            &envoy,
            "/v1/chat/completions",
            &["Bearer good-token"],
            MODEL,
        )
        .await?;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "authentication_unavailable");
        assert_eq!(headers["content-type"], "application/json");
    }
    assert_eq!(slow.requests().len(), 2, "a failure was cached");
    assert!(pod.requests().is_empty());
    assert_eq!(stat(&envoy, "callouts.failed").await, 2);
    assert_eq!(stat(&envoy, "denied.unavailable").await, 2);
    drop(envoy);

    // allow: the request passes as the failure identity.
    let allow = json!({"methods": [token_review_method(json!({"timeoutMs": 200,
        "failureMode": "allow", "failureIdentity": {"userid": "unverified", "groups": ["degraded"]}}))]});
    let envoy = gateway(&pod, allow, vec![slow.cluster("kube")]).await?;
    let (status, _, body) =
        chat(&envoy, "/v1/chat/completions", &["Bearer whatever"], MODEL).await?;
    assert_eq!(status, 200, "{body}");
    let seen = pod.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-infergate-user"), vec!["unverified"]);
    assert_eq!(seen[0].header("x-infergate-groups"), vec!["degraded"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_access_review_checks_namespace_and_model_from_the_path() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let kube = Stub::start(Arc::new(kube_api)).await?;
    let auth = json!({
        "methods": [token_review_method(json!({}))],
        "authorization": {"kubernetesSubjectAccessReview": {"cluster": "kube", "bearerToken": SA_TOKEN}}
    });
    let envoy = gateway(&pod, auth, vec![kube.cluster("kube")]).await?;
    let ok_path = "/team-a/qwen/v1/chat/completions";
    for _ in 0..2 {
        let (status, _, body) = chat(&envoy, ok_path, &["Bearer good-token"], MODEL).await?;
        assert_eq!(status, 200, "{body} {}", envoy.log());
    }
    for path in [
        "/team-b/qwen/v1/chat/completions",
        "/team-a/llama/v1/chat/completions",
    ] {
        let (status, headers, body) = chat(&envoy, path, &["Bearer good-token"], MODEL).await?;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(headers.get("www-authenticate").is_none());
        assert_eq!(body["error"]["type"], "permission_error");
        assert_eq!(body["error"]["code"], "permission_denied");
    }
    let sars: Vec<Value> = kube
        .requests()
        .iter()
        .filter(|r| r.path.contains("subjectaccessreviews"))
        .map(StubRequest::json)
        .collect();
    // One per distinct (user, namespace, name): the repeated allowed request was cached.
    assert_eq!(sars.len(), 3, "{sars:?}");
    assert_eq!(sars[0]["apiVersion"], "authorization.k8s.io/v1");
    assert_eq!(
        sars[0]["spec"]["groups"],
        json!(["system:serviceaccounts", "team-a"])
    );
    assert_eq!(sars[0]["spec"]["resourceAttributes"]["namespace"], "team-a");
    assert_eq!(sars[0]["spec"]["resourceAttributes"]["name"], "qwen");
    assert_eq!(pod.requests().len(), 2);
    assert_eq!(stat(&envoy, "denied.forbidden").await, 2);
    assert_eq!(stat(&envoy, "callouts.access_review").await, 3);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Anonymous conditions and authorization rules.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_access_is_limited_by_source_range() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let inside =
        json!({"methods": [{"name": "local", "anonymous": {"sourceCidrs": ["127.0.0.0/8"]}}]});
    let envoy = gateway(&pod, inside, vec![]).await?;
    let (status, _, _) = chat(&envoy, "/v1/chat/completions", &[], MODEL).await?;
    assert_eq!(status, 200);
    assert_eq!(
        pod.requests()[0].header("x-infergate-user"),
        vec!["anonymous"]
    );
    drop(envoy);
    let outside = json!({"methods": [{"name": "office", "anonymous": {"sourceCidrs": ["10.0.0.0/8", "fd00::/8"]}}]});
    let envoy = gateway(&pod, outside, vec![]).await?;
    let (status, _, body) = chat(&envoy, "/v1/chat/completions", &[], MODEL).await?;
    assert_eq!(status, 401, "{body}");
    assert_eq!(pod.requests().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_rules_on_groups_methods_and_the_body_model() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let auth = json!({
        "methods": [{"name": "keys", "apiKey": {"keys": [
            {"sha256": digest("sk-alice"), "identity": {"userid": "alice", "groups": ["premium"]}},
            {"sha256": digest("sk-bob"), "identity": {"userid": "bob", "groups": ["free"]}}]}}],
        "authorization": {"rules": [
            {"groups": ["premium"], "httpMethods": ["POST"], "models": [MODEL]},
            {"httpMethods": ["GET"], "pathPrefixes": ["/v1/models"]}
        ]}
    });
    let envoy = gateway(&pod, auth, vec![]).await?;
    let (status, _, body) =
        chat(&envoy, "/v1/chat/completions", &["Bearer sk-alice"], MODEL).await?;
    assert_eq!(status, 200, "{body} {}", envoy.log());
    // The body was held for the check and reached the pod whole.
    let seen = pod.requests();
    let forwarded: Value = serde_json::from_slice(&seen[0].body)?;
    assert_eq!(forwarded, chat_body(MODEL, false));

    let (status, _, body) = chat(
        &envoy,
        "/v1/chat/completions",
        &["Bearer sk-alice"],
        "other/model",
    )
    .await?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["type"], "permission_error");
    let (status, _, _) = chat(&envoy, "/v1/chat/completions", &["Bearer sk-bob"], MODEL).await?;
    assert_eq!(status, 403);
    // GET /v1/models is open to every authenticated caller, but not to the unauthenticated.
    for (key, want) in [("Bearer sk-bob", 200), ("Bearer sk-nobody", 401)] {
        let resp = http_client()
            .get(format!("{}/v1/models", envoy.http_url()))
            .header("authorization", key)
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), want, "{key}");
    }
    // A large streamed body is still parsed correctly.
    let mut big = chat_body(MODEL, false);
    big["messages"][0]["content"] = json!("y".repeat(300_000));
    let resp = http_client()
        .post(format!("{}/v1/chat/completions", envoy.http_url()))
        .bearer_auth("sk-alice")
        .json(&big)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(pod.requests().len(), 3);
    assert_eq!(stat(&envoy, "denied.forbidden").await, 2);
    Ok(())
}
