//! `make demo`'s stack, started the way the demo binary starts it: the banner's stable lines
//! and the curl commands it prints work against the real gateway.

mod common;

use common::*;
use infergate_e2e::demo::{DemoConfig, Stack, StackOptions};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_stack_serves_the_guides_urls_over_https() -> anyhow::Result<()> {
    let state = std::env::temp_dir().join(format!("infergate-demo-test-{}", std::process::id()));
    let options = StackOptions {
        ephemeral_ports: true,
        host_shim: true,
        state_dir: state,
    };
    let stack = Stack::start(DemoConfig::builtin()?, &options).await?;
    let banner = stack.banner();
    let mut lines = banner.lines();
    let url = lines
        .next()
        .and_then(|l| l.strip_prefix("Gateway URL: "))
        .expect("first line is the gateway URL")
        .to_string();
    let key = lines
        .next()
        .and_then(|l| l.strip_prefix("API key: "))
        .expect("second line is the API key")
        .to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert!(key.len() >= 16, "{key}");
    assert!(banner.contains("curl --cacert"), "{banner}");

    let client = https_client(&stack.tls);
    let base = format!("{url}/my-first-model/qwen3-0-6b");
    // The guide's anonymous model listing.
    let models: Value = client
        .get(format!("{base}/v1/models"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(models["data"][0]["id"], "Qwen/Qwen3-0.6B");

    // Completions need the key. Each prompt stays on one pod (prefix affinity through
    // host-shim), and different prompts reach both pods.
    let mut by_prompt: std::collections::BTreeMap<usize, std::collections::BTreeSet<String>> =
        Default::default();
    for tenant in 0..8 {
        for stream in [false, true] {
            let mut body = chat_body("Qwen/Qwen3-0.6B", stream);
            body["messages"][0]["content"] = format!("Tenant {tenant} context. ").repeat(40).into();
            let resp = client
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await?;
            assert_eq!(resp.status(), 200);
            by_prompt
                .entry(tenant)
                .or_default()
                .insert(resp.headers()["x-served-by"].to_str()?.to_string());
            let text = resp.text().await?;
            if stream {
                assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
            } else {
                let v: Value = serde_json::from_str(&text)?;
                assert!(v["usage"]["total_tokens"].as_u64().unwrap_or(0) > 0, "{v}");
            }
            // host-shim indexes what was served (reported on a 100 ms timer) and spreads a
            // same-prefix burst between scrapes: let the report land.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    assert!(by_prompt.values().all(|s| s.len() == 1), "{by_prompt:?}");
    let pods: std::collections::BTreeSet<_> = by_prompt.values().flatten().collect();
    assert_eq!(pods.len(), 2, "8 prompts should reach both pods: {pods:?}");
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.infergate.affinity.fallbacks")
            .await?,
        Some(0),
        "picks should come from host-shim"
    );
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.infergate.affinity.host_shim_picks")
            .await?,
        Some(16)
    );
    let denied = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat_body("Qwen/Qwen3-0.6B", false))
        .send()
        .await?;
    assert_eq!(denied.status(), 401);

    // The plain HTTP listener serves too, as the guide's Gateway has both.
    let http = http_client()
        .get(format!(
            "{}/my-first-model/qwen3-0-6b/v1/models",
            stack.envoy.http_url()
        ))
        .send()
        .await?;
    assert_eq!(http.status(), 200);
    stack.stop().await?;
    Ok(())
}
