//! `make demo`'s built-in configuration runs two tiers: the banner prints one key per tier
//! after the `API key:` line (which stays the premium key), and a free-tier user sees a 429
//! with its headers on the 6th completion in a minute, as the README says, while the premium
//! user and model listing go on.

mod common;

use common::*;
use infergate_e2e::demo::{DemoConfig, Stack, StackOptions};

fn line<'a>(banner: &'a str, prefix: &str) -> &'a str {
    banner
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{banner}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_free_and_premium_tiers() -> anyhow::Result<()> {
    let state = std::env::temp_dir().join(format!("infergate-tiers-demo-{}", std::process::id()));
    let options = StackOptions {
        ephemeral_ports: true,
        host_shim: false,
        state_dir: state,
    };
    let stack = Stack::start(DemoConfig::builtin()?, &options).await?;
    let banner = stack.banner();
    let lines: Vec<&str> = banner.lines().collect();
    assert!(lines[1].starts_with("API key: "), "{banner}");
    assert!(lines[2].starts_with("API key (free): "), "{banner}");
    assert!(lines[3].starts_with("API key (premium): "), "{banner}");
    let url = line(&banner, "Gateway URL: ").to_string();
    let key = line(&banner, "API key: ").to_string();
    let free = line(&banner, "API key (free): ").to_string();
    assert_eq!(line(&banner, "API key (premium): "), key);
    assert_ne!(free, key);
    assert!(banner.contains("curl -i --cacert"), "{banner}");

    let client = https_client(&stack.tls);
    let base = format!("{url}/my-first-model/qwen3-0-6b");
    let chat = |k: &str| {
        client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(k)
            .json(&chat_body("Qwen/Qwen3-0.6B", false))
            .send()
    };
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(chat(&free).await?.status().as_u16());
    }
    assert_eq!(codes, vec![200; 5]);
    let limited = chat(&free).await?;
    assert_eq!(limited.status().as_u16(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert!(
        limited.headers().contains_key("ratelimit"),
        "{:?}",
        limited.headers()
    );
    // Premium goes on; model listing is outside the budget, with or without a key.
    assert_eq!(chat(&key).await?.status().as_u16(), 200);
    for k in [Some(free.as_str()), None] {
        let mut req = client.get(format!("{base}/v1/models"));
        if let Some(k) = k {
            req = req.bearer_auth(k);
        }
        assert_eq!(req.send().await?.status().as_u16(), 200);
    }
    stack.stop().await?;
    Ok(())
}
