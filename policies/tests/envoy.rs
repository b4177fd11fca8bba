//! Rendered plugin configurations loaded into the real Envoy (the e2e harness) in front of a
//! minimal OpenAI upstream: requests are allowed, denied (401/403) and limited (429) exactly
//! as the source policies say.

mod common;

use common::*;
use infergate_e2e::envoy::{ClusterSpec, Envoy, GatewaySpec, RouteSpec, WasmFilter, MODEL_CLUSTER};
use infergate_e2e::upstream::Upstream;
use serde_json::{json, Value};

const MODEL: &str = "Qwen/Qwen3-0.6B";

/// The rendered chain, with the affinity plugin pointed at the test pod (the rendered config
/// names host-shim's cluster, which is not running here: the plugin's own fallback is tested).
fn spec(r: &infergate_policies::Rendered, pod: &Upstream) -> anyhow::Result<GatewaySpec> {
    let mut spec = GatewaySpec::default();
    for (name, cfg) in &r.plugins {
        let mut cfg = cfg.clone();
        if name == "affinity" {
            cfg = json!({"endpoints": [pod.addr.to_string()]});
        }
        spec = spec.with_filter(WasmFilter::plugin(name, cfg.to_string())?);
    }
    if r.plugin("affinity").is_none() {
        // No endpoint picking in this policy set: a plain cluster to the pod.
        spec.clusters.push(ClusterSpec {
            name: "pod".into(),
            addresses: vec![pod.addr],
            http2: false,
        });
        spec.routes.push(RouteSpec {
            prefix: "/".into(),
            prefix_rewrite: None,
            cluster: "pod".into(),
        });
    } else if let Some(p) = &r.route_prefix {
        spec.routes.push(RouteSpec {
            prefix: p.clone(),
            prefix_rewrite: Some("/".into()),
            cluster: MODEL_CLUSTER.into(),
        });
        spec.routes.push(RouteSpec {
            prefix: "/".into(),
            prefix_rewrite: None,
            cluster: MODEL_CLUSTER.into(),
        });
    }
    Ok(spec)
}

fn chat(max_tokens: u64) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": max_tokens})
}

async fn post(c: &reqwest::Client, url: &str, auth: Option<&str>, max_tokens: u64) -> u16 {
    let mut req = c
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat(max_tokens));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap().status().as_u16()
}

/// Waits until at least `secs` seconds remain in the current epoch-aligned minute, so a `1m`
/// window does not roll over mid-test.
async fn away_from_minute_boundary(secs: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let left = 60 - now % 60;
    if left < secs {
        tokio::time::sleep(std::time::Duration::from_secs(left + 1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_tiers_in_envoy() -> anyhow::Result<()> {
    let r = render_example(&["api-key-tiers"]);
    let pod = Upstream::start("pod-1", MODEL).await?;
    let envoy = Envoy::start(&spec(&r, &pod)?).await?;
    let url = envoy.http_url();
    let c = reqwest::Client::new();
    let (alice, bob, eve) = (
        "APIKEY sk-free-alice-1234",
        "APIKEY sk-premium-bob-5678",
        "APIKEY sk-suspended-eve-0000",
    );

    // AuthPolicy: API keys with the APIKEY prefix, only listed keys, only allowed tiers.
    assert_eq!(post(&c, &url, None, 16).await, 401, "{}", envoy.log());
    assert_eq!(post(&c, &url, Some("APIKEY not-a-key"), 16).await, 401);
    assert_eq!(
        post(&c, &url, Some("Bearer sk-free-alice-1234"), 16).await,
        401,
        "the prefix is APIKEY"
    );
    assert_eq!(post(&c, &url, Some(eve), 16).await, 403, "{}", envoy.log());

    away_from_minute_boundary(20).await;
    // TokenRateLimitPolicy: free users have 1000 tokens a day; a request that could use 2000
    // does not fit, premium's 100000 does. A refused request charges nothing.
    assert_eq!(
        post(&c, &url, Some(alice), 2000).await,
        429,
        "{}",
        envoy.log()
    );
    assert_eq!(
        post(&c, &url, Some(bob), 2000).await,
        200,
        "{}",
        envoy.log()
    );

    // RateLimitPolicy: free users 5 requests a minute, premium 100.
    for i in 0..5 {
        assert_eq!(
            post(&c, &url, Some(alice), 16).await,
            200,
            "alice request {i}: {}",
            envoy.log()
        );
    }
    let resp = c
        .post(format!("{url}/v1/chat/completions"))
        .header("authorization", alice)
        .json(&chat(16))
        .send()
        .await?;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    for i in 0..8 {
        assert_eq!(post(&c, &url, Some(bob), 16).await, 200, "bob request {i}");
    }
    // Every request that reached the pod was authenticated.
    assert_eq!(pod.requests().len(), 1 + 5 + 8);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuadrant_docs_api_keys_in_envoy() -> anyhow::Result<()> {
    let r = render_example(&["kuadrant-docs/api-key"]);
    let pod = Upstream::start("pod-1", MODEL).await?;
    let envoy = Envoy::start(&spec(&r, &pod)?).await?;
    let url = envoy.http_url();
    let c = reqwest::Client::new();
    let get = |key: &'static str| {
        let c = c.clone();
        let url = url.clone();
        async move {
            c.get(format!("{url}/v1/models"))
                .header("authorization", key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(get("APIKEY IAMNOBODY").await, 401);
    // bob: 2 per 10s; alice: 5 per 10s (windows aligned to the epoch: start right after one).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    tokio::time::sleep(std::time::Duration::from_millis(10_000 - now % 10_000 + 50)).await;
    assert_eq!(get("APIKEY IAMBOB").await, 200, "{}", envoy.log());
    assert_eq!(get("APIKEY IAMBOB").await, 200);
    assert_eq!(get("APIKEY IAMBOB").await, 429);
    for _ in 0..5 {
        assert_eq!(get("APIKEY IAMALICE").await, 200);
    }
    assert_eq!(get("APIKEY IAMALICE").await, 429);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guide_anonymous_in_envoy() -> anyhow::Result<()> {
    let r = render_example(&["guide/base", "guide/anonymous"]);
    let pod = Upstream::start("pod-1", MODEL).await?;
    let envoy = Envoy::start(&spec(&r, &pod)?).await?;
    let url = format!("{}/my-first-model/qwen3-0-6b", envoy.http_url());
    let c = reqwest::Client::new();
    let resp = c.get(format!("{url}/v1/models")).send().await?;
    assert_eq!(resp.status(), 200, "{}", envoy.log());
    let resp = c
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat(16))
        .send()
        .await?;
    assert_eq!(resp.status(), 200, "{}", envoy.log());
    // The route's prefix was stripped before the pod.
    assert!(pod
        .requests()
        .iter()
        .all(|r| !r.path.starts_with("/my-first-model")));
    Ok(())
}

/// `make demo DEMO_CONFIG=<rendered demo.yaml>`: the demo launcher runs the rendered policy
/// set (HTTPS, simulated pods), and it answers as the policies say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_the_rendered_policy_set() -> anyhow::Result<()> {
    use infergate_e2e::demo::{DemoConfig, Stack, StackOptions};
    let r = render_example(&["api-key-tiers"]);
    let config = DemoConfig::parse(&r.files["demo.yaml"])?;
    let state =
        std::env::temp_dir().join(format!("infergate-policies-demo-{}", std::process::id()));
    let options = StackOptions {
        ephemeral_ports: true,
        host_shim: false,
        state_dir: state.clone(),
    };
    let stack = Stack::start(config, &options).await?;
    let ca = reqwest::Certificate::from_pem(stack.tls.ca_pem()?.as_bytes())?;
    let c = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()?;
    let url = stack.envoy.https_url();
    assert_eq!(
        post(&c, &url, Some("APIKEY sk-premium-bob-5678"), 16).await,
        200,
        "{}",
        stack.envoy.log()
    );
    assert_eq!(
        post(&c, &url, Some("APIKEY sk-suspended-eve-0000"), 16).await,
        403
    );
    assert_eq!(post(&c, &url, None, 16).await, 401);
    stack.stop().await?;
    let _ = std::fs::remove_dir_all(state);
    Ok(())
}
