//! The soak (`make soak`; ignored in `make test`): SOAK_SECONDS (default 600) of mixed traffic
//! at a fixed rate through Envoy (auth → ratelimit → affinity with host-shim picks) to two
//! `vllm-sim` pods, memory sampled throughout. Writes `e2e/results/soak.md`.
//!
//! Traffic, by request number `i` (open loop: a request starts every 1/SOAK_RPS s whatever the
//! answers): keyless (401), a user with a request budget (`capped`: exactly its limit answered
//! 200, the rest 429), a user with a token budget (`tokens`: 200 until the budget, then 429),
//! and an unlimited user streaming and not (`alice`: always 200). Any other status is
//! "unexpected" and fails the run. Memory: Envoy's and host-shim's RSS, and Envoy's heap
//! (`/memory`); the slope is a least-squares fit over the samples after the first fifth.

mod common;
mod fault_kit;

use common::*;
use fault_kit::sim_pod;
use infergate_e2e::child::HostShim;
use infergate_e2e::envoy::{ClusterSpec, Envoy, GatewaySpec};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MODEL: &str = "Qwen/Qwen3-0.6B";
const CAPPED_LIMIT: u64 = 200;
const TOKEN_BUDGET: u64 = 200_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Least-squares slope of `ys` over `xs`.
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let num: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

#[derive(Default)]
struct Tally {
    /// (class, status) → count.
    by: BTreeMap<(&'static str, u16), u64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a 10-minute benchmark: make soak"]
async fn soak() -> anyhow::Result<()> {
    let seconds = env_u64("SOAK_SECONDS", 600);
    let rps = env_u64("SOAK_RPS", 20);
    let (_pod_a, a) = sim_pod("pod-a", 0, &["--time-scale", "20"]).await?;
    let (_pod_b, b) = sim_pod("pod-b", 0, &["--time-scale", "20"]).await?;
    let eps = vec![a.to_string(), b.to_string()];
    let shim = HostShim::start(&eps).await?;
    shim.wait_ready(2, Duration::from_secs(20)).await?;
    let auth = json!({"methods": [{"name": "keys", "apiKey": {"keys": [
        {"sha256": digest("alice-key"), "identity": {"userid": "alice"}},
        {"sha256": digest("capped-key"), "identity": {"userid": "capped"}},
        {"sha256": digest("tokens-key"), "identity": {"userid": "tokens"}}]}}]});
    // 24 h windows: no window rolls over during the run (unless it crosses midnight UTC).
    let rl = json!({"limits": [
        {"name": "capped", "rates": [{"limit": CAPPED_LIMIT, "window": "24h"}],
         "counters": ["auth.identity.userid"],
         "when": [{"attribute": "auth.identity.userid", "eq": "capped"}]},
        {"name": "tokens", "rates": [{"limit": TOKEN_BUDGET, "window": "24h"}],
         "counters": ["auth.identity.userid"], "counts": "tokens",
         "when": [{"attribute": "auth.identity.userid", "eq": "tokens"}]}],
        "responseHeaders": "xRatelimit"});
    let affinity =
        json!({"endpoints": eps, "hostShim": {"cluster": "host-shim", "timeoutMs": 200}});
    let spec = GatewaySpec {
        clusters: vec![ClusterSpec {
            name: "host-shim".into(),
            addresses: vec![shim.http],
            http2: true,
        }],
        concurrency: 2,
        ..GatewaySpec::default()
    };
    let envoy = Envoy::start(&with_chain(spec, &auth, &rl, &affinity)?).await?;
    let url = format!("{}/v1/chat/completions", envoy.http_url());
    let envoy_pid = envoy.pid().expect("envoy pid");
    let shim_pid = shim.process.pid().expect("host-shim pid");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let mut samples: Vec<(f64, u64, u64, u64)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rps));
    let mut next_sample = Duration::ZERO;
    let mut handles = Vec::new();
    let mut i: u64 = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        if start.elapsed() >= next_sample {
            let heap: Value = http_client()
                .get(format!("{}/memory", envoy.admin_url()))
                .send()
                .await?
                .json()
                .await?;
            let allocated = heap["allocated"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0u64);
            samples.push((
                start.elapsed().as_secs_f64(),
                rss_kib(envoy_pid),
                rss_kib(shim_pid),
                allocated / 1024,
            ));
            next_sample += Duration::from_secs(10);
        }
        let (class, key, stream): (&'static str, Option<&str>, bool) = match i % 10 {
            0 => ("keyless", None, false),
            1 | 2 => ("capped", Some("capped-key"), i % 4 == 1),
            3 | 4 => ("tokens", Some("tokens-key"), i % 4 == 3),
            5..=7 => ("alice-stream", Some("alice-key"), true),
            _ => ("alice", Some("alice-key"), false),
        };
        let body = json!({"model": MODEL, "max_tokens": 16 + i % 48, "stream": stream,
            "messages": [
                {"role": "system", "content": format!("Tenant {} shared context. ", i % 7).repeat(40)},
                {"role": "user", "content": format!("question {i}")}]});
        let mut req = client.post(&url).json(&body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let tally = tally.clone();
        handles.push(tokio::spawn(async move {
            let status = match req.send().await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    // Read the whole answer (streams included) so the request completes.
                    match r.bytes().await {
                        Ok(_) => s,
                        Err(_) => 1,
                    }
                }
                Err(_) => 0,
            };
            *tally.lock().unwrap().by.entry((class, status)).or_default() += 1;
        }));
        i += 1;
    }
    for h in handles {
        h.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    let sent = i;
    let answered: u64 = tally.by.values().sum();
    let expected = |class: &str, status: u16| {
        matches!(
            (class, status),
            ("keyless", 401) | ("capped" | "tokens", 200 | 429) | ("alice" | "alice-stream", 200)
        )
    };
    let unexpected: u64 = tally
        .by
        .iter()
        .filter(|((c, s), _)| !expected(c, *s))
        .map(|(_, n)| n)
        .sum();
    let capped_ok = tally.by.get(&("capped", 200)).copied().unwrap_or(0);
    let capped_sent: u64 = tally
        .by
        .iter()
        .filter(|((c, _), _)| *c == "capped")
        .map(|(_, n)| n)
        .sum();
    let warm = samples.len() / 5;
    let after: Vec<_> = samples[warm..].to_vec();
    let xs: Vec<f64> = after.iter().map(|s| s.0 / 60.0).collect();
    let fit = |f: fn(&(f64, u64, u64, u64)) -> u64| {
        slope(&xs, &after.iter().map(|s| f(s) as f64).collect::<Vec<_>>())
    };
    let (envoy_slope, shim_slope, heap_slope) = (fit(|s| s.1), fit(|s| s.2), fit(|s| s.3));

    let mut md = String::new();
    writeln!(md, "# Soak\n")?;
    writeln!(
        md,
        "`make soak` (SOAK_SECONDS={seconds}, SOAK_RPS={rps}): {sent} requests in {elapsed:.0} s through Envoy \
         (auth → ratelimit → affinity with host-shim picks, 2 workers) to two `vllm-sim` pods \
         (time scale 20). Open loop at a fixed rate; every answer read to its end.\n"
    )?;
    writeln!(
        md,
        "## Answers\n\n| class | status | count |\n|---|---:|---:|"
    )?;
    for ((c, s), n) in &tally.by {
        writeln!(md, "| {c} | {s} | {n} |")?;
    }
    writeln!(
        md,
        "\nSent {sent}, answered {answered}, unexpected {unexpected} (0 = connection error, \
         1 = body cut). `capped` ({CAPPED_LIMIT} per 24 h): {capped_ok} of {capped_sent} allowed.\n"
    )?;
    writeln!(
        md,
        "## Memory\n\n| t (s) | Envoy RSS (KiB) | host-shim RSS (KiB) | Envoy heap allocated (KiB) |\n|---:|---:|---:|---:|"
    )?;
    for s in &samples {
        writeln!(md, "| {:.0} | {} | {} | {} |", s.0, s.1, s.2, s.3)?;
    }
    writeln!(
        md,
        "\nSlope after warm-up (least squares over the samples after the first fifth): Envoy RSS \
         {envoy_slope:+.1} KiB/min, host-shim RSS {shim_slope:+.1} KiB/min, Envoy heap \
         {heap_slope:+.1} KiB/min. The plugins' Wasm VMs are inside Envoy's RSS (V8 heaps are \
         not in Envoy's `/memory` allocator figures and Envoy exposes no per-VM memory stat).\n"
    )?;
    let out = infergate_e2e::paths::workspace_root().join("e2e/results/soak.md");
    std::fs::write(&out, &md)?;
    println!("{md}");
    assert_eq!(answered, sent, "a request got no answer or two");
    assert_eq!(unexpected, 0, "unexpected statuses: {:?}", tally.by);
    if capped_sent >= CAPPED_LIMIT {
        assert_eq!(capped_ok, CAPPED_LIMIT, "the request budget was not exact");
    }
    Ok(())
}
