//! Tiers from an HTTP metadata callout, end to end in a real Envoy: the models-as-a-service
//! policy set in `policies/examples/maas-tiers` (TokenReview authentication, `metadata.
//! matchedTier` POSTing the caller's groups to `/v1/tiers/lookup` with a per-user cache, the
//! identity property `tier: auth.metadata.matchedTier["tier"]`, request and token limits per
//! tier) is translated by `infergate-policies`, and its auth and ratelimit configurations run in
//! Envoy against a tier service speaking maas-api's contract and a TokenReview stand-in.
//!
//! A failed lookup (service down, slow past the timeout, 500, garbage, oversized) is not fatal,
//! as in Authorino: `auth.metadata.matchedTier` is absent, so `tier` is absent and the per-tier
//! limits — whose predicates then hold no value — are skipped; nothing is cached, so the next
//! request asks again. With `failureMode: deny` the same failures answer 503.

mod common;

use common::*;
use infergate_e2e::envoy::{ClusterSpec, Envoy, GatewaySpec};
use infergate_e2e::tier_service::{Fault, Tier, TierService};
use infergate_e2e::token_review::{TokenReviewApi, Users};
use infergate_e2e::upstream::Upstream;
use infergate_policies::resources::Bundle;
use infergate_policies::{render, Options};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

const MODEL: &str = "Qwen/Qwen3-0.6B";
const SA_TOKEN: &str = "gateway-service-account-token";

fn users() -> Users {
    let premium = ["system:authenticated", "premium-users"];
    let free = ["system:authenticated"];
    let mut u = Users::new();
    for (token, name, groups) in [
        ("tok-alice", "alice", &free[..]),
        ("tok-bob", "bob", &premium[..]),
        ("tok-carol", "carol", &free[..]),
        ("tok-dave", "dave", &premium[..]),
        ("tok-nobody", "nobody", &["contractors"][..]),
    ] {
        u.insert(
            token.into(),
            (name.into(), groups.iter().map(|g| g.to_string()).collect()),
        );
    }
    for i in 0..8 {
        u.insert(
            format!("tok-f{i}"),
            (format!("f{i}"), vec!["system:authenticated".into()]),
        );
    }
    u
}

/// The translated auth and ratelimit configurations.
fn translated() -> anyhow::Result<(Value, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/maas-tiers");
    let bundle = Bundle::load(&[dir]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let opts = Options {
        endpoints: vec!["127.0.0.1:1".into()],
        kube_token: Some(SA_TOKEN.into()),
        ..Options::default()
    };
    let r = render(&bundle, &opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    let auth = r.plugin("auth").cloned().expect("auth config");
    let rl = r.plugin("ratelimit").cloned().expect("ratelimit config");
    Ok((auth, rl))
}

struct Stack {
    envoy: Envoy,
    tiers: TierService,
    kube: TokenReviewApi,
    _pod: Upstream,
}

async fn stack(auth: &Value, rl: &Value) -> anyhow::Result<Stack> {
    let tiers = TierService::start(vec![
        Tier::new("free", 1, &["system:authenticated"]),
        Tier::new("premium", 10, &["premium-users"]),
    ])
    .await?;
    let kube = TokenReviewApi::start(SA_TOKEN, users()).await?;
    let pod = Upstream::start("pod-1", MODEL).await?;
    let cluster = auth["metadata"][0]["cluster"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let spec = GatewaySpec {
        clusters: vec![
            ClusterSpec {
                name: "kube-apiserver".into(),
                addresses: vec![kube.addr],
                http2: false,
            },
            ClusterSpec {
                name: cluster,
                addresses: vec![tiers.addr],
                http2: false,
            },
        ],
        ..GatewaySpec::default()
    };
    let affinity = json!({"endpoints": [pod.addr.to_string()]});
    let envoy = Envoy::start(&with_chain(spec, auth, rl, &affinity)?).await?;
    Ok(Stack {
        envoy,
        tiers,
        kube,
        _pod: pod,
    })
}

async fn send(s: &Stack, token: &str, max_tokens: u64) -> anyhow::Result<u16> {
    let mut body = chat_body(MODEL, false);
    body["max_tokens"] = json!(max_tokens);
    let r = http_client()
        .post(format!("{}/v1/chat/completions", s.envoy.http_url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    Ok(r.status().as_u16())
}

async fn statuses(s: &Stack, token: &str, n: usize) -> anyhow::Result<Vec<u16>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(send(s, token, 8).await?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiers_come_from_the_lookup_and_the_cache_saves_calls() -> anyhow::Result<()> {
    let (auth, rl) = translated()?;
    // The translation: one evaluator, its cluster, the MaaS body and the per-user cache.
    let m = &auth["metadata"][0];
    assert_eq!(m["name"], "matchedTier");
    assert_eq!(
        m["cluster"],
        "metadata-maas-api-maas-api-svc-cluster-local-8080"
    );
    assert_eq!(m["authority"], "maas-api.maas-api.svc.cluster.local:8080");
    assert_eq!(m["path"], "/v1/tiers/lookup");
    assert_eq!(m["method"], "POST");
    assert_eq!(
        m["body"],
        json!({"object": {"groups": {"attribute": "auth.identity.user.groups"}}})
    );
    assert_eq!(
        m["cache"],
        json!({"key": {"selector": "auth.identity.user.username"}, "ttlSeconds": 300})
    );
    assert_eq!(
        auth["identityProperties"]["tier"],
        json!({"selector": "auth.metadata.matchedTier.tier"})
    );
    let s = stack(&auth, &rl).await?;

    // Premium: 5 requests a minute; free: 2.
    assert_eq!(
        statuses(&s, "tok-bob", 6).await?,
        vec![200, 200, 200, 200, 200, 429],
        "{}",
        s.envoy.log()
    );
    assert_eq!(statuses(&s, "tok-alice", 3).await?, vec![200, 200, 429]);
    // Token budgets per tier: a request that may cost 1000 completion tokens is over the free
    // budget (200 a minute) and within the premium one.
    assert_eq!(send(&s, "tok-carol", 1000).await?, 429);
    assert_eq!(send(&s, "tok-dave", 1000).await?, 200);

    // One lookup per user, not per request (the cache key is the username, TTL 5 minutes),
    // each carrying the caller's groups as maas-api expects.
    let lookups = s.tiers.lookups();
    assert_eq!(lookups.len(), 4, "{lookups:?}");
    assert!(lookups.contains(&json!({"groups": ["system:authenticated", "premium-users"]})));
    assert!(lookups.contains(&json!({"groups": ["system:authenticated"]})));
    let headers = s.tiers.lookup_headers();
    assert!(headers[0]
        .iter()
        .any(|(k, v)| k == "content-type" && v == "application/json"));
    assert!(headers[0]
        .iter()
        .any(|(k, v)| k == "host" && v == "maas-api.maas-api.svc.cluster.local:8080"));
    assert_eq!(s.kube.reviews(), 4);

    // A user in no tier: maas-api answers 404, so `tier` is absent and no tier limit applies.
    assert_eq!(statuses(&s, "tok-nobody", 3).await?, vec![200, 200, 200]);
    // Failures are not cached: each request asked again.
    assert_eq!(s.tiers.calls(), 7);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lookup_leaves_the_tier_absent_and_envoy_keeps_serving() -> anyhow::Result<()> {
    let (auth, rl) = translated()?;
    let s = stack(&auth, &rl).await?;
    // bob's premium tier is cached before the service breaks.
    assert_eq!(send(&s, "tok-bob", 8).await?, 200);
    let faults = [
        Fault::Down,
        Fault::Slow(Duration::from_millis(2500)),
        Fault::ServerError,
        Fault::Garbage,
        Fault::Oversized(100_000),
    ];
    for (i, fault) in faults.into_iter().enumerate() {
        s.tiers.set_fault(fault);
        let before = s.tiers.calls();
        // A free user whose lookup fails: authenticated, tier absent, so the free limit (2 a
        // minute) does not apply.
        let token = format!("tok-f{i}");
        assert_eq!(
            statuses(&s, &token, 3).await?,
            vec![200, 200, 200],
            "{fault:?}: {}",
            s.envoy.log()
        );
        if fault != Fault::Down {
            // Nothing was cached: every request asked.
            assert_eq!(s.tiers.calls() - before, 3, "{fault:?}");
        }
        // The cached premium user is unaffected.
        if i % 2 == 0 {
            assert_eq!(send(&s, "tok-bob", 8).await?, 200, "{fault:?}");
        }
    }
    // The service is back: the next lookup succeeds and the free limit applies again.
    s.tiers.set_fault(Fault::None);
    assert_eq!(statuses(&s, "tok-f5", 3).await?, vec![200, 200, 429]);
    // bob made 4 requests (one before, three during the faults): his premium limit is 5.
    assert_eq!(statuses(&s, "tok-bob", 2).await?, vec![200, 429]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_mode_deny_answers_503_when_the_lookup_fails() -> anyhow::Result<()> {
    let (mut auth, rl) = translated()?;
    auth["metadata"][0]["failureMode"] = json!("deny");
    auth["metadata"][0]["timeoutMs"] = json!(300);
    let s = stack(&auth, &rl).await?;
    assert_eq!(send(&s, "tok-alice", 8).await?, 200);
    for fault in [
        Fault::Slow(Duration::from_secs(2)),
        Fault::ServerError,
        Fault::Garbage,
    ] {
        s.tiers.set_fault(fault);
        let r = http_client()
            .post(format!("{}/v1/chat/completions", s.envoy.http_url()))
            .bearer_auth("tok-carol")
            .json(&chat_body(MODEL, false))
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 503, "{fault:?}");
        let body: Value = r.json().await?;
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    // A cached answer still serves.
    assert_eq!(send(&s, "tok-alice", 8).await?, 200);
    Ok(())
}
