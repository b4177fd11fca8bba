//! The affinity plugin asking host-shim for picks through an Envoy cluster: prefix
//! stickiness, served reports reaching host-shim, and affinity surviving host-shim's loss or
//! slowness.

mod common;

use common::*;
use infergate_e2e::envoy::Envoy;
use infergate_e2e::upstream::Upstream;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

async fn gateway(pods: &[Upstream], shim: SocketAddr, shim_config: Value) -> anyhow::Result<Envoy> {
    let host_shim = merged(
        json!({"cluster": "host-shim", "timeoutMs": 200}),
        &shim_config,
    );
    let config = json!({"endpoints": endpoints(pods), "hostShim": host_shim});
    // As deployed (policies, demo): picks over HTTP/2 cleartext.
    Gateway::builder()
        .host_shim(shim)
        .affinity(config)
        .start()
        .await
}

fn request(group: usize, q: usize) -> Value {
    json!({"model": MODEL, "max_tokens": 2, "messages": [
        {"role": "system", "content": format!("Shared context of tenant {group}. ").repeat(60)},
        {"role": "user", "content": format!("question {q}")}
    ]})
}

async fn served_by(envoy: &Envoy, body: &Value) -> anyhow::Result<String> {
    let r = http_client()
        .post(format!("{}/v1/chat/completions", envoy.http_url()))
        .json(body)
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "status {}", r.status());
    Ok(r.headers()["x-served-by"].to_str()?.to_string())
}

fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_shim_picks_keep_prefixes_together_and_learn_what_was_served() -> anyhow::Result<()> {
    let pods = pods(3).await?;
    let shim = shim_over(&endpoints(&pods)).await?;
    let envoy = gateway(&pods, shim.http, json!({})).await?;
    let mut by_group: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for q in 0..4 {
        for group in 0..6 {
            by_group
                .entry(group)
                .or_default()
                .insert(served_by(&envoy, &request(group, q)).await?);
        }
        // Let the served reports (100 ms timer) and a scrape land: host-shim indexes what was
        // served, not what it picked, and spreads a same-prefix burst between scrapes.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (g, s) in &by_group {
        assert_eq!(s.len(), 1, "group {g} spread over {s:?}");
    }
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.affinity.fallbacks")
            .await?,
        Some(0),
        "{}",
        envoy.log()
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.affinity.prefix_picks")
            .await?,
        Some(24)
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.affinity.host_shim_picks")
            .await?,
        Some(24)
    );
    // Served reports reach host-shim (sent from the plugin's timer).
    let mut reported = 0.0;
    for _ in 0..100 {
        let text = http_client()
            .get(format!("http://{}/metrics", shim.http))
            .send()
            .await?
            .text()
            .await?;
        reported = metric_sum(&text, "host_shim_served_reports");
        if reported >= 24.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reported >= 24.0, "host-shim saw {reported} served reports");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_host_shim_mid_run_fails_no_request_and_keeps_affinity() -> anyhow::Result<()> {
    let pods = pods(3).await?;
    let shim = shim_over(&endpoints(&pods)).await?;
    let envoy = gateway(&pods, shim.http, json!({})).await?;
    for group in 0..4 {
        served_by(&envoy, &request(group, 0)).await?;
    }
    shim.process.stop(Duration::from_millis(10)).await;
    let mut by_group: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for q in 1..4 {
        for group in 0..4 {
            // Every request still succeeds.
            by_group
                .entry(group)
                .or_default()
                .insert(served_by(&envoy, &request(group, q)).await?);
        }
    }
    for (g, s) in &by_group {
        assert_eq!(
            s.len(),
            1,
            "group {g} lost affinity without host-shim: {s:?}"
        );
    }
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.affinity.fallbacks")
            .await?,
        Some(12)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_host_shim_times_out_into_the_fallback() -> anyhow::Result<()> {
    let pods = pods(2).await?;
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let silent_addr = silent.local_addr()?;
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let envoy = gateway(&pods, silent_addr, json!({"timeoutMs": 50})).await?;
    let first = served_by(&envoy, &request(1, 0)).await?;
    assert_eq!(served_by(&envoy, &request(1, 1)).await?, first);
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.affinity.fallbacks")
            .await?,
        Some(2)
    );
    // Fail-closed instead answers 503.
    let closed = gateway(
        &pods,
        silent_addr,
        json!({"timeoutMs": 50, "failClosed": true}),
    )
    .await?;
    let r = http_client()
        .post(format!("{}/v1/chat/completions", closed.http_url()))
        .json(&request(1, 2))
        .send()
        .await?;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await?;
    assert_eq!(v["error"]["code"], "no_endpoint");
    hold.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_hashes_over_the_endpoint_list_last_fetched_from_host_shim() -> anyhow::Result<()>
{
    let pods = pods(3).await?;
    let shim = shim_over(&endpoints(&pods)).await?;
    // The plugin's own configuration names only the first pod.
    let config = json!({"endpoints": [pods[0].addr.to_string()],
                        "hostShim": {"cluster": "host-shim", "timeoutMs": 200}});
    let envoy = Gateway::builder()
        .cluster(HOST_SHIM_CLUSTER, shim.http, false)
        .affinity(config)
        .start()
        .await?;
    // Let the plugin's timer fetch host-shim's list (every second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shim.process.stop(Duration::from_millis(10)).await;
    let mut served = BTreeSet::new();
    for group in 0..12 {
        served.insert(served_by(&envoy, &request(group, 0)).await?);
    }
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.affinity.fallbacks")
            .await?,
        Some(12)
    );
    assert!(
        served.len() >= 2,
        "the fallback should hash over the 3 pods host-shim reported, not only the configured one: {served:?}"
    );
    Ok(())
}
