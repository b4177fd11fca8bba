//! Auth faults in a real Envoy: the JWKS endpoint refusing connections at start and after a
//! good fetch, and the kube-apiserver's TokenReview slower than the callout timeout, failing
//! with 500, and refusing connections. Each burst counts the requests sent against the answers
//! received and the plugin's decisions (every request decided once, none lost), and the pod
//! sees exactly the requests answered 200.
//!
//! Documented behaviour (README, auth): until the first JWKS fetch succeeds, `failureMode:
//! deny` answers `503 authentication_unavailable` with `Retry-After` and `reject` answers 401;
//! a failed refresh keeps the last good keys. TokenReview errors and timeouts: `deny` → 503
//! (default), `allow` → `failureIdentity`, `reject` → the next method; failures are not cached.

mod common;
mod fault_kit;

use common::*;
use fault_kit::http_stub::{respond, HttpStub, StubRequest, StubResponse};
use fault_kit::Relay;
use infergate_core::auth::jwt::testing::{self, TestKey};
use infergate_core::auth::jwt::Alg;
use infergate_e2e::envoy::{ClusterSpec, Envoy};
use infergate_e2e::upstream::Upstream;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MODEL: &str = "Qwen/Qwen3-0.6B";
const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "infergate";
const SA_TOKEN: &str = "sa-token-of-the-gateway";
/// Requests per burst.
const N: usize = 12;

/// A token for a new subject each call, so no worker has verified it before.
fn fresh_token(key: TestKey, alg: Alg, kid: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let sub = format!("user-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub,
        "iat": unix_now(), "nbf": unix_now() - 10, "exp": unix_now() + 600});
    testing::sign(key, alg, Some(kid), &claims)
}

fn rsa_token() -> String {
    fresh_token(TestKey::Rsa, Alg::RS256, "k1")
}

fn cluster(name: &str, addr: SocketAddr) -> ClusterSpec {
    ClusterSpec {
        name: name.to_string(),
        addresses: vec![addr],
        http2: false,
    }
}

async fn gateway(pod: &Upstream, auth: Value, clusters: Vec<ClusterSpec>) -> anyhow::Result<Envoy> {
    Gateway::builder()
        .auth(auth)
        .pinned_to(pod.addr)
        .clusters(clusters)
        .start()
        .await
}

/// One answer: status (0 when none arrived), `Retry-After`, the error code.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    code: Option<String>,
}

async fn send(envoy: &Envoy, authorization: String) -> Answer {
    // One connection per request, so Envoy's workers all take part.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let r = client
        .post(format!("{}/v1/chat/completions", envoy.http_url()))
        .header("authorization", authorization)
        .json(&chat_body(MODEL, false))
        .send()
        .await;
    match r {
        Err(_) => Answer {
            status: 0,
            retry_after: None,
            code: None,
        },
        Ok(r) => {
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body: Value = r.json().await.unwrap_or(Value::Null);
            Answer {
                status,
                retry_after,
                code: body["error"]["code"].as_str().map(str::to_string),
            }
        }
    }
}

/// Sends the `authorization` values concurrently; one answer per request, in order.
async fn burst(envoy: &Envoy, authorizations: Vec<String>) -> Vec<Answer> {
    futures_util::future::join_all(authorizations.into_iter().map(|a| send(envoy, a))).await
}

fn bearers(make: impl Fn() -> String, n: usize) -> Vec<String> {
    (0..n).map(|_| format!("Bearer {}", make())).collect()
}

async fn stat(envoy: &Envoy, name: &str) -> u64 {
    plugin_stat(envoy, "auth", name).await
}

/// Every request the plugin decided: allowed plus each kind of denial.
async fn decided(envoy: &Envoy) -> u64 {
    let mut total = stat(envoy, "allowed").await;
    for d in [
        "missing_credential",
        "invalid_credential",
        "forbidden",
        "unavailable",
    ] {
        total += stat(envoy, &format!("denied.{d}")).await;
    }
    total
}

fn assert_unavailable(answers: &[Answer], log: &str) {
    assert_eq!(answers.len(), N);
    for a in answers {
        assert_eq!(a.status, 503, "{answers:?}\n{log}");
        assert_eq!(a.code.as_deref(), Some("authentication_unavailable"));
        assert_eq!(a.retry_after.as_deref(), Some("1"));
    }
}

fn assert_all(answers: &[Answer], status: u16, log: &str) {
    assert_eq!(answers.len(), N);
    assert!(
        answers.iter().all(|a| a.status == status),
        "wanted {status}: {answers:?}\n{log}"
    );
}

/// Sends fresh credentials until one is answered `want`; every answer on the way must be one of
/// `allowed`. Returns how many requests it sent.
async fn until(
    envoy: &Envoy,
    make: impl Fn() -> String,
    want: u16,
    allowed: &[u16],
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    loop {
        let a = send(envoy, format!("Bearer {}", make())).await;
        sent += 1;
        if a.status == want {
            return Ok(sent);
        }
        anyhow::ensure!(
            allowed.contains(&a.status),
            "unexpected {a:?}\n{}",
            envoy.log()
        );
        anyhow::ensure!(
            Instant::now() < deadline,
            "still {a:?}, wanted {want}\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn jwt_method(failure_mode: &str) -> Value {
    json!({"methods": [{"name": "oidc", "jwt": {
        "issuer": ISSUER, "audiences": [AUDIENCE], "failureMode": failure_mode,
        "jwksUri": {"cluster": "idp", "path": "/jwks.json", "authority": "idp.test",
                    "refreshSeconds": 1, "timeoutMs": 500}}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jwks_endpoint_refusing_connections_at_start_then_up() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let idp = HttpStub::start(Arc::new(|_: &StubRequest| {
        respond(200, testing::jwks(&[(TestKey::Rsa, "k1")]))
    }))
    .await?;
    // The endpoint refuses connections before either Envoy starts.
    let mut relay = Relay::start(idp.addr).await?;
    relay.down();
    let deny = gateway(&pod, jwt_method("deny"), vec![cluster("idp", relay.addr)]).await?;
    let reject = gateway(&pod, jwt_method("reject"), vec![cluster("idp", relay.addr)]).await?;

    let answers = burst(&deny, bearers(rsa_token, N)).await;
    assert_unavailable(&answers, &deny.log());
    let answers = burst(&reject, bearers(rsa_token, N)).await;
    assert_all(&answers, 401, &reject.log());
    assert!(answers
        .iter()
        .all(|a| a.code.as_deref() == Some("invalid_api_key")));
    assert_eq!(decided(&deny).await, N as u64);
    assert_eq!(stat(&deny, "denied.unavailable").await, N as u64);
    assert_eq!(decided(&reject).await, N as u64);
    assert!(stat(&deny, "jwks.fetch_failed").await >= 1);
    assert!(pod.requests().is_empty());

    // The endpoint comes up: the keys are fetched on the next refresh and used.
    relay.up(idp.addr).await?;
    let waited_deny = until(&deny, rsa_token, 200, &[503]).await?;
    let waited_reject = until(&reject, rsa_token, 200, &[401]).await?;
    let answers = burst(&deny, bearers(rsa_token, N)).await;
    assert_all(&answers, 200, &deny.log());
    let answers = burst(&reject, bearers(rsa_token, N)).await;
    assert_all(&answers, 200, &reject.log());
    assert_eq!(pod.requests().len(), 2 + 2 * N, "one pod request per 200");
    assert_eq!(decided(&deny).await, (2 * N + waited_deny) as u64);
    assert_eq!(decided(&reject).await, (2 * N + waited_reject) as u64);
    assert!(idp
        .requests()
        .iter()
        .all(|r| r.method == "GET" && r.path == "/jwks.json"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jwks_endpoint_down_after_a_good_fetch_keeps_the_last_good_keys() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let idp = HttpStub::start(Arc::new(|_: &StubRequest| {
        respond(200, testing::jwks(&[(TestKey::Rsa, "k1")]))
    }))
    .await?;
    let mut relay = Relay::start(idp.addr).await?;
    let envoy = gateway(&pod, jwt_method("deny"), vec![cluster("idp", relay.addr)]).await?;
    let waited = until(&envoy, rsa_token, 200, &[503]).await?;
    assert!(stat(&envoy, "jwks.fetched").await >= 1);

    // The endpoint refuses connections; wait for three failed refreshes.
    relay.down();
    let failed = stat(&envoy, "jwks.fetch_failed").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while stat(&envoy, "jwks.fetch_failed").await < failed + 3 {
        assert!(
            Instant::now() < deadline,
            "no failed refreshes\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Tokens never seen before still verify against the last good keys.
    let answers = burst(&envoy, bearers(rsa_token, N)).await;
    assert_all(&answers, 200, &envoy.log());
    // A key the last good set does not hold cannot be learnt while the endpoint is down.
    let ec = || fresh_token(TestKey::P256, Alg::ES256, "k2");
    let answers = burst(&envoy, bearers(ec, N)).await;
    assert_all(&answers, 401, &envoy.log());
    assert_eq!(pod.requests().len(), 1 + N);
    assert_eq!(decided(&envoy).await, (waited + 2 * N) as u64);

    // Back, with a rotated key set: the new key verifies, the old one no longer does.
    idp.set(Arc::new(|_: &StubRequest| {
        respond(200, testing::jwks(&[(TestKey::P256, "k2")]))
    }));
    relay.up(idp.addr).await?;
    until(&envoy, ec, 200, &[401]).await?;
    until(&envoy, rsa_token, 401, &[200]).await?;
    Ok(())
}

/// The stand-in kube-apiserver's TokenReview (`authentication.k8s.io/v1`): tokens starting
/// with `good-` are authenticated; calls without the gateway's service-account token get 401.
fn token_review(req: &StubRequest) -> StubResponse {
    if req.header("authorization") != Some(&format!("Bearer {SA_TOKEN}")) {
        return respond(401, json!({"kind": "Status", "code": 401}));
    }
    if req.path != "/apis/authentication.k8s.io/v1/tokenreviews" {
        return respond(404, json!({"kind": "Status", "code": 404}));
    }
    let body = req.json();
    let token = body["spec"]["token"].as_str().unwrap_or_default();
    let status = if token.starts_with("good-") {
        json!({"authenticated": true, "audiences": body["spec"]["audiences"],
               "user": {"username": format!("system:serviceaccount:team-a:{token}"),
                        "uid": "1", "groups": ["system:serviceaccounts"]}})
    } else {
        json!({"authenticated": false, "error": "invalid bearer token"})
    };
    respond(
        201,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
               "spec": body["spec"], "status": status}),
    )
}

fn token_review_method(extra: Value) -> Value {
    let mut m = json!({"cluster": "kube", "bearerToken": SA_TOKEN,
                       "audiences": ["https://kubernetes.default.svc"], "timeoutMs": 300});
    if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    json!({"name": "k8s", "kubernetesTokenReview": m})
}

/// `n` distinct service-account tokens the stand-in accepts (none cached yet).
fn good_tokens(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("Bearer good-{tag}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_review_slower_than_its_timeout_under_load() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let kube = HttpStub::start(Arc::new(|req: &StubRequest| StubResponse {
        delay: Duration::from_millis(1500),
        ..token_review(req)
    }))
    .await?;
    let auth = json!({"methods": [token_review_method(json!({}))]});
    let envoy = gateway(&pod, auth, vec![cluster("kube", kube.addr)]).await?;
    let tokens = good_tokens("slow", N);
    let answers = burst(&envoy, tokens.clone()).await;
    assert_unavailable(&answers, &envoy.log());
    // Each request made its own callout; the late answers arrive after the requests were
    // answered and must not produce anything: wait until the stand-in has sent or dropped
    // them all (1.5 s after the last callout), then count again.
    assert_eq!(kube.requests().len(), N);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(pod.requests().is_empty());
    assert_eq!(stat(&envoy, "denied.unavailable").await, N as u64);
    assert_eq!(stat(&envoy, "callouts.failed").await, N as u64);
    assert_eq!(decided(&envoy).await, N as u64);

    // Fast again: the same tokens pass (the timeouts were not cached).
    kube.set(Arc::new(token_review));
    let answers = burst(&envoy, tokens).await;
    assert_all(&answers, 200, &envoy.log());
    assert_eq!(kube.requests().len(), 2 * N);
    assert_eq!(pod.requests().len(), N);
    assert_eq!(decided(&envoy).await, 2 * N as u64);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_review_failing_with_500_or_refused_connections() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let kube = HttpStub::start(Arc::new(|_: &StubRequest| {
        respond(
            500,
            json!({"kind": "Status", "code": 500, "message": "etcd down"}),
        )
    }))
    .await?;
    let mut relay = Relay::start(kube.addr).await?;
    let deny = json!({"methods": [token_review_method(json!({}))]});
    // `reject` falls through to the next method: API keys keep working.
    let reject = json!({"methods": [
        token_review_method(json!({"failureMode": "reject"})),
        {"name": "keys", "apiKey": {"keys": [
            {"sha256": digest("sk-alice"), "identity": {"userid": "alice"}}]}}]});
    let envoy = gateway(&pod, deny, vec![cluster("kube", relay.addr)]).await?;
    let fallback = gateway(&pod, reject, vec![cluster("kube", relay.addr)]).await?;

    // 500 from the API server.
    let answers = burst(&envoy, good_tokens("a", N)).await;
    assert_unavailable(&answers, &envoy.log());
    assert_eq!(kube.requests().len(), N, "one callout per request");
    let answers = burst(&fallback, good_tokens("b", N)).await;
    assert_all(&answers, 401, &fallback.log());
    let answers = burst(&fallback, vec!["Bearer sk-alice".to_string(); N]).await;
    assert_all(&answers, 200, &fallback.log());

    // Connections refused.
    relay.down();
    let answers = burst(&envoy, good_tokens("a", N)).await;
    assert_unavailable(&answers, &envoy.log());
    let answers = burst(&fallback, good_tokens("b", N)).await;
    assert_all(&answers, 401, &fallback.log());
    assert_eq!(
        pod.requests().len(),
        N,
        "only the API-key requests reached the pod"
    );
    assert_eq!(stat(&envoy, "denied.unavailable").await, 2 * N as u64);
    assert_eq!(decided(&envoy).await, 2 * N as u64);
    assert_eq!(decided(&fallback).await, 3 * N as u64);

    // Back and healthy: the same tokens pass (failures were not cached).
    kube.set(Arc::new(token_review));
    relay.up(kube.addr).await?;
    let answers = burst(&envoy, good_tokens("a", N)).await;
    assert_all(&answers, 200, &envoy.log());
    let answers = burst(&fallback, good_tokens("b", N)).await;
    assert_all(&answers, 200, &fallback.log());
    assert_eq!(pod.requests().len(), 3 * N);
    Ok(())
}
