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

    // Completions need the key; both pods serve.
    let mut served = std::collections::BTreeSet::new();
    for stream in [false, true, false, true] {
        let resp = client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&chat_body("Qwen/Qwen3-0.6B", stream))
            .send()
            .await?;
        assert_eq!(resp.status(), 200);
        served.insert(resp.headers()["x-served-by"].to_str()?.to_string());
        let text = resp.text().await?;
        if stream {
            assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
        } else {
            let v: Value = serde_json::from_str(&text)?;
            assert!(v["usage"]["total_tokens"].as_u64().unwrap_or(0) > 0, "{v}");
        }
    }
    assert_eq!(
        served.len(),
        2,
        "requests should reach both pods: {served:?}"
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
