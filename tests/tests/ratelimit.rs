//! The rate-limit plugin in a real Envoy with two workers: exact counts under concurrency,
//! window rollover, per-identity counters, 429 answers and budget headers.

mod common;

use common::*;
use infergate_e2e::envoy::Envoy;
use infergate_e2e::upstream::Upstream;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MODEL: &str = "Qwen/Qwen3-0.6B";

async fn gateway(pod: &Upstream, limits: Value, style: &str) -> anyhow::Result<Envoy> {
    let auth = json!({"methods": [{"name": "keys", "apiKey": {"keys": [
        {"sha256": digest("alice-key"), "identity": {"userid": "alice", "groups": ["free"]}},
        {"sha256": digest("bob-key"), "identity": {"userid": "bob", "groups": ["free"]}}
    ]}}]});
    Gateway::builder()
        .concurrency(2)
        .auth(auth)
        .ratelimit(json!({"limits": limits, "responseHeaders": style}))
        .pinned_to(pod.addr)
        .start()
        .await
}

fn per_user(limit: u64, window: &str) -> Value {
    json!([{"name": "per-user", "rates": [{"limit": limit, "window": window}], "counters": ["auth.identity.userid"]}])
}

/// Waits until at least `margin` remains before the next multiple of `window`.
async fn align_to_window(window: Duration, margin: Duration) {
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
        let into = Duration::from_millis((now.as_millis() % window.as_millis()) as u64);
        if window - into >= margin {
            return;
        }
        tokio::time::sleep(window - into + Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_n_of_64_concurrent_requests_pass_across_two_workers() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let envoy = gateway(&pod, per_user(20, "1h"), "draft").await?;
    let url = chat_url(&envoy);
    align_to_window(Duration::from_secs(3600), Duration::from_secs(60)).await;
    let codes = burst(std::slice::from_ref(&url), "alice-key", 64).await;
    let ok = codes.iter().filter(|c| **c == 200).count();
    let limited = codes.iter().filter(|c| **c == 429).count();
    assert_eq!((ok, limited), (20, 44), "{codes:?}");
    assert_eq!(pod.requests().len(), 20, "requests that reached the pod");
    // Both workers took part (the limit held across them).
    let stats = envoy.stats().await?;
    // Listener stats are named after the configured address (port 0 here).
    let per_worker: Vec<u64> = (0..2)
        .filter_map(|w| {
            stats
                .get(&format!(
                    "listener.127.0.0.1_0.worker_{w}.downstream_cx_total"
                ))
                .copied()
        })
        .collect();
    assert_eq!(per_worker.len(), 2, "per-worker stats missing");
    assert!(
        per_worker.iter().all(|c| *c > 0),
        "one worker got no connections: {per_worker:?}"
    );
    assert_eq!(
        envoy.stat("wasmcustom.infergate.ratelimit.limited").await?,
        Some(44),
        "the plugin's own count of limited requests"
    );
    // Bob has his own counter.
    assert_eq!(
        burst(std::slice::from_ref(&url), "bob-key", 3).await,
        vec![200, 200, 200]
    );
    Ok(())
}

/// The index of the `window`-long wall-clock window we are in.
fn window_index(window: Duration) -> u128 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    now.as_millis() / window.as_millis()
}

/// A burst of `n` of alice's requests that starts and ends in one window, from a window no
/// earlier burst touched. A burst that straddles a boundary (a busy machine) says nothing about
/// the limiter, so it is sent again in a later, untouched window.
async fn burst_in_one_window(url: &str, window: Duration, n: usize) -> Vec<u16> {
    for _ in 0..3 {
        // Start from a fresh window, with most of it left.
        let touched = window_index(window);
        while window_index(window) == touched {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        align_to_window(window, Duration::from_millis(3500)).await;
        let started = window_index(window);
        let mut codes = burst(&[url.to_string()], "alice-key", n).await;
        if window_index(window) == started {
            codes.sort();
            return codes;
        }
    }
    panic!("three bursts in a row straddled a window boundary; the machine is too busy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_rolls_over_exactly() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    // 5 s windows, each burst starting with at least 3.5 s left.
    let envoy = gateway(&pod, per_user(3, "5s"), "draft").await?;
    let url = chat_url(&envoy);
    let window = Duration::from_secs(5);
    let first = burst_in_one_window(&url, window, 5).await;
    assert_eq!(first, vec![200, 200, 200, 429, 429]);
    // A later window: a fresh budget.
    let second = burst_in_one_window(&url, window, 5).await;
    assert_eq!(second, vec![200, 200, 200, 429, 429]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_answers_are_openai_429s_and_allowed_ones_show_the_budget() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let envoy = gateway(&pod, per_user(2, "1h"), "xRatelimit").await?;
    let url = chat_url(&envoy);
    align_to_window(Duration::from_secs(3600), Duration::from_secs(30)).await;
    let client = http_client();
    let mut remaining = Vec::new();
    for _ in 0..2 {
        let r = client
            .post(&url)
            .bearer_auth("alice-key")
            .json(&chat_body(MODEL, false))
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit-requests"], "2");
        remaining.push(
            r.headers()["x-ratelimit-remaining-requests"]
                .to_str()?
                .to_string(),
        );
    }
    assert_eq!(remaining, vec!["1", "0"]);
    for stream in [false, true] {
        let r = client
            .post(&url)
            .bearer_auth("alice-key")
            .json(&chat_body(MODEL, stream))
            .send()
            .await?;
        assert_eq!(r.status(), 429, "stream={stream}");
        let retry: u64 = r.headers()["retry-after"].to_str()?.parse()?;
        assert!((1..=3600).contains(&retry), "{retry}");
        assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
        assert_eq!(r.headers()["content-type"], "application/json");
        let body: Value = r.json().await?;
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    }
    assert_eq!(pod.requests().len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_limit_configuration_names_the_field() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let err = match gateway(&pod, per_user(1, "1d"), "draft").await {
        Ok(_) => panic!("a `1d` window was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("field `limits[0].rates[0].window`"), "{err}");
    Ok(())
}
