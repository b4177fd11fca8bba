//! host-shim as a standard Endpoint Picker: the real Envoy ext_proc filter (body streamed
//! full-duplex, as llm-d configures it) asks host-shim, which answers with
//! `x-gateway-destination-endpoint`; Envoy's ORIGINAL_DST cluster routes to it.

mod common;

use common::*;
use infergate_e2e::child::HostShim;
use infergate_e2e::envoy::Envoy;
use infergate_e2e::upstream::Upstream;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

async fn setup(body_mode: &str) -> anyhow::Result<(Vec<Upstream>, HostShim, Envoy)> {
    let pods = pods(3).await?;
    let shim = shim_over(&endpoints(&pods)).await?;
    let envoy = Gateway::builder()
        .ext_proc(shim.grpc, body_mode)
        .start()
        .await?;
    Ok((pods, shim, envoy))
}

fn request(group: usize, q: usize) -> Value {
    json!({"model": MODEL, "max_tokens": 2, "messages": [
        {"role": "system", "content": format!("Knowledge base of team {group}. ").repeat(80)},
        {"role": "user", "content": format!("question {q}")}
    ]})
}

async fn run(body_mode: &str) -> anyhow::Result<()> {
    let (pods, _shim, envoy) = setup(body_mode).await?;
    let client = http_client();
    let url = format!("{}/v1/chat/completions", envoy.http_url());
    let mut by_group: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for q in 0..3 {
        for group in 0..6 {
            let r = client.post(&url).json(&request(group, q)).send().await?;
            assert_eq!(r.status(), 200, "{}", envoy.log());
            by_group
                .entry(group)
                .or_default()
                .insert(r.headers()["x-served-by"].to_str()?.to_string());
            let v: Value = r.json().await?;
            assert_eq!(v["object"], "chat.completion");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (g, s) in &by_group {
        assert_eq!(s.len(), 1, "group {g} spread over {s:?}");
    }
    let used: BTreeSet<_> = by_group.values().flatten().collect();
    assert!(used.len() >= 2, "6 prefixes on {used:?}");
    // The body reached the pod intact, and the pod saw the picker's header.
    for p in &pods {
        for r in p.requests() {
            let sent: Value = serde_json::from_slice(&r.body)?;
            assert_eq!(sent["model"], MODEL);
            assert_eq!(
                r.header("x-gateway-destination-endpoint"),
                vec![p.addr.to_string().as_str()]
            );
        }
    }
    // Bad bodies are refused by the picker, not forwarded.
    let r = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ext_proc_full_duplex_routes_by_host_shim_picks() -> anyhow::Result<()> {
    run("FULL_DUPLEX_STREAMED").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ext_proc_buffered_routes_by_host_shim_picks() -> anyhow::Result<()> {
    run("BUFFERED").await
}
