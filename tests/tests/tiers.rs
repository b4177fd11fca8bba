//! Tiers from identity properties, end to end in a real Envoy: the policy set in
//! `policies/examples/identity-tiers` is translated by `infergate-policies`, its auth and
//! ratelimit configurations run in Envoy, and free and premium users (the tier is a property
//! the AuthPolicy selects from each key's Secret) get different request and token limits.
//! `/v1/models` is kept out of the budget by `!request.path.endsWith("/models")`, and a limit
//! counting on a property a user lacks (`auth.identity.org`) skips that user.

mod common;

use common::*;
use infergate_e2e::envoy::{Envoy, GatewaySpec};
use infergate_e2e::upstream::Upstream;
use infergate_policies::resources::Bundle;
use infergate_policies::{render, Options};
use serde_json::json;
use std::path::PathBuf;

const MODEL: &str = "Qwen/Qwen3-0.6B";

fn rendered() -> anyhow::Result<infergate_policies::Rendered> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/identity-tiers");
    let bundle = Bundle::load(&[dir]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let opts = Options {
        endpoints: vec!["127.0.0.1:1".into()],
        ..Options::default()
    };
    render(&bundle, &opts).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    max_tokens: u64,
) -> anyhow::Result<u16> {
    let mut body = chat_body(MODEL, false);
    body["max_tokens"] = json!(max_tokens);
    let r = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await?;
    Ok(r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiers_from_identity_properties_limit_free_and_premium_differently() -> anyhow::Result<()> {
    let r = rendered()?;
    let auth = r.plugin("auth").cloned().expect("auth config");
    let rl = r.plugin("ratelimit").cloned().expect("ratelimit config");
    // The translator resolved each key's tier from its Secret.
    let keys = auth["methods"][0]["apiKey"]["keys"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        keys.iter()
            .any(|k| k["identity"]["properties"]["tier"] == json!("free")),
        "{auth}"
    );
    let pod = Upstream::start("pod-1", MODEL).await?;
    let affinity = json!({"endpoints": [pod.addr.to_string()]});
    let envoy = Envoy::start(&with_chain(GatewaySpec::default(), &auth, &rl, &affinity)?).await?;
    let base = envoy.http_url();
    let client = http_client();

    // Free: 200 tokens a minute — a request that may cost 1000 completion tokens is refused
    // before it reaches the pod; premium users are not held to that budget.
    assert_eq!(send(&client, &base, "sk-free-alice", 1000).await?, 429);
    assert_eq!(send(&client, &base, "sk-premium-bob", 1000).await?, 200);

    // Free: 2 requests a minute; premium: 5.
    let mut free = Vec::new();
    for _ in 0..3 {
        free.push(send(&client, &base, "sk-free-alice", 8).await?);
    }
    assert_eq!(free, vec![200, 200, 429]);
    let mut premium = Vec::new();
    for _ in 0..4 {
        premium.push(send(&client, &base, "sk-premium-bob", 8).await?);
    }
    // Bob already made one request: 5 in all, then the premium limit.
    assert_eq!(premium, vec![200, 200, 200, 200]);
    assert_eq!(send(&client, &base, "sk-premium-bob", 8).await?, 429);

    // The limited free user still lists models: `/v1/models` is outside the budget.
    let models = client
        .get(format!("{base}/v1/models"))
        .bearer_auth("sk-free-alice")
        .send()
        .await?;
    assert_eq!(models.status().as_u16(), 200);
    let limited = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth("sk-free-alice")
        .json(&chat_body(MODEL, false))
        .send()
        .await?;
    assert_eq!(limited.status().as_u16(), 429);
    assert!(limited.headers().contains_key("retry-after"));

    // dave and erin share the organisation `acme`: 3 requests a minute between them. Bob has
    // no organisation, so `per-org` never applied to him (his 5 were the premium limit).
    let mut org = Vec::new();
    for key in [
        "sk-premium-dave",
        "sk-premium-erin",
        "sk-premium-dave",
        "sk-premium-erin",
    ] {
        org.push(send(&client, &base, key, 8).await?);
    }
    assert_eq!(org, vec![200, 200, 200, 429]);

    // A client cannot claim a tier: identity headers it sends are stripped and the rate
    // limiter reads the identity from filter state, which clients cannot set.
    let spoofed = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth("sk-free-alice")
        .header("x-infergate-groups", "premium")
        .json(&chat_body(MODEL, false))
        .send()
        .await?;
    assert_eq!(spoofed.status().as_u16(), 429);
    Ok(())
}
