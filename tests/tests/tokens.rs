//! Token budgets in a real Envoy: charged up front from an estimate, settled to real usage
//! from JSON bodies and SSE streams, `include_usage` injected and hidden from the client,
//! truncated streams charged from what was streamed, and no unbounded overshoot under
//! concurrency.

mod common;

use common::*;
use infergate_e2e::envoy::Envoy;
use infergate_e2e::upstream::Upstream;
use serde_json::{json, Value};

async fn gateway(pod: &Upstream, budget: u64) -> anyhow::Result<Envoy> {
    gateway_with(budget, json!({"endpoints": [pod.addr.to_string()]})).await
}

/// auth → ratelimit (token budget) → affinity with `affinity` as its configuration.
async fn gateway_with(budget: u64, affinity: Value) -> anyhow::Result<Envoy> {
    Gateway::builder()
        .concurrency(2)
        .auth(api_keys(&[("alice-key", "alice")]))
        .ratelimit(token_budget(budget))
        .affinity(affinity)
        .start()
        .await
}

fn body(max_tokens: u64, stream: bool, include_usage: bool) -> Value {
    let mut b = json!({"model": MODEL, "max_tokens": max_tokens, "stream": stream,
        "messages": [{"role": "user", "content": "Tell me about prefix caching in vLLM."}]});
    if include_usage {
        b["stream_options"] = json!({"include_usage": true});
    }
    b
}

/// Alice's chat completion `b` (with the header `extra`, if any).
async fn post(
    envoy: &Envoy,
    b: &Value,
    extra: Option<(&str, &str)>,
) -> anyhow::Result<reqwest::Response> {
    let extra: Vec<(&str, &str)> = extra.into_iter().collect();
    let alice = Sender::to(envoy).key("alice-key").headers(&extra);
    Ok(alice.body(b.clone()).send(0).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_the_estimate_then_settles_to_real_usage() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let envoy = gateway(&pod, 100_000).await?;
    let b = body(500, false, false);
    let first = post(&envoy, &b, None).await?;
    assert_eq!(first.status(), 200);
    let estimate = 100_000 - remaining_tokens(&first);
    assert!(estimate >= 500, "estimate {estimate} must cover max_tokens");
    let usage: Value = first.json().await?;
    let actual = usage["usage"]["total_tokens"].as_u64().expect("usage");
    assert!(
        actual < estimate,
        "the pod used less than the cap: {actual} vs {estimate}"
    );
    // The second request sees the first settled down to its real usage.
    let second = post(&envoy, &b, None).await?;
    assert_eq!(remaining_tokens(&second), 100_000 - actual - estimate);
    // The body was parsed once per request: the affinity filter took the rate limiter's parse
    // from filter state, and still routed by it.
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.affinity.parses_reused")
            .await?,
        Some(2)
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.affinity.prefix_picks")
            .await?,
        Some(2)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_parses_itself_when_the_handed_parse_does_not_cover_its_window(
) -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    // A 512 KiB hashing window: wider than the 256 KiB of prompt a summary carries.
    let affinity = json!({"endpoints": [pod.addr.to_string()], "blockSize": 65536, "maxBlocks": 8});
    let envoy = gateway_with(10_000_000, affinity).await?;
    let stat = |name: &'static str| {
        let envoy = &envoy;
        async move {
            envoy
                .stat(&format!("wasmcustom.infergate.affinity.{name}"))
                .await
        }
    };
    // A short prompt is wholly inside the summary: reused.
    let short = post(&envoy, &body(16, false, false), None).await?;
    assert_eq!(short.status(), 200);
    assert_eq!(stat("parses_reused").await?, Some(1));
    // A 300 KB prompt is cut at 256 KiB in the summary: the filter parses the body itself and
    // still routes it.
    let mut long = body(16, false, false);
    long["messages"][0]["content"] = json!("y".repeat(300 * 1024));
    let r = post(&envoy, &long, None).await?;
    assert_eq!(r.status(), 200);
    assert_eq!(stat("parses_reused").await?, Some(1));
    assert_eq!(stat("prefix_picks").await?, Some(2));
    assert_eq!(stat("parse_errors").await?, Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_counted_exactly_without_showing_the_injected_usage_chunk() -> anyhow::Result<()>
{
    let pod = Upstream::start("pod-1", MODEL).await?;
    let envoy = gateway(&pod, 100_000).await?;
    // The client did not ask for usage: it gets exactly the stream it asked for…
    let r = post(&envoy, &body(6, true, false), None).await?;
    let estimate = 100_000 - remaining_tokens(&r);
    let events = sse_data(&r.text().await?);
    assert_eq!(events.len(), 7, "6 content chunks and [DONE]: {events:?}");
    assert!(
        events.iter().all(|e| !e.contains("\"usage\"")),
        "{events:?}"
    );
    // …while the pod was asked for usage, and the budget settled to it.
    let seen: Value = serde_json::from_slice(&pod.requests()[0].body)?;
    assert_eq!(seen["stream_options"]["include_usage"], true);
    let prompt = pod.requests()[0].body.len().div_ceil(4) as u64;
    let r2 = post(&envoy, &body(6, true, true), None).await?;
    assert_eq!(remaining_tokens(&r2), 100_000 - (prompt + 6) - estimate);
    // A client that asked for usage gets its usage chunk.
    let events = sse_data(&r2.text().await?);
    assert!(events.iter().any(|e| e.contains("\"usage\"")), "{events:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_stream_is_charged_from_what_was_streamed() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let envoy = gateway(&pod, 100_000).await?;
    let b = body(40, true, false);
    let r = post(&envoy, &b, Some(("x-test-truncate-after", "3"))).await?;
    let estimate = 100_000 - remaining_tokens(&r);
    let _ = r.text().await; // the stream breaks off
    let r2 = post(&envoy, &b, None).await?;
    let after = remaining_tokens(&r2);
    let charged_first = 100_000 - estimate - after;
    // Prompt estimate plus what was streamed, far below the 40-token cap. Three chunks of
    // "tokN " were streamed: max(3 deltas, ceil(15 bytes / 4)) = 4 completion tokens.
    assert!(
        charged_first < estimate,
        "{charged_first} vs estimate {estimate}"
    );
    assert_eq!(charged_first, (estimate - 40) + 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_long_requests_never_overshoot_beyond_the_estimate_error() -> anyhow::Result<()>
{
    let pod = Upstream::start("pod-1", MODEL).await?;
    let budget = 1_000;
    let envoy = gateway(&pod, budget).await?;
    let b = body(64, false, false);
    let results = concurrently(24, |_| async {
        let r = post(&envoy, &b, None).await.expect("send");
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        (status, v["usage"]["total_tokens"].as_u64().unwrap_or(0))
    })
    .await;
    let admitted: Vec<u64> = results
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, t)| *t)
        .collect();
    let limited = results.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!(admitted.len() + limited, 24, "{results:?}");
    assert!(
        limited > 0,
        "all 24 got through a budget for a handful: {results:?}"
    );
    // Real usage of everything admitted stays within the budget plus the prompt-estimate
    // error of each admitted request (the pod counts body bytes / 4 as prompt tokens).
    let used: u64 = admitted.iter().sum();
    let prompt_actual = serde_json::to_vec(&b)?.len().div_ceil(4) as u64;
    let per_request_error = prompt_actual; // bound: the estimate is never below zero
    assert!(
        used <= budget + admitted.len() as u64 * per_request_error,
        "used {used} of {budget} with {} admitted",
        admitted.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_streaming_request_gets_a_proper_429() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let envoy = gateway(&pod, 100).await?;
    let r = post(&envoy, &body(500, true, false), None).await?;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await?;
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(pod.requests().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_usage_keeps_the_estimate_and_is_logged() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let envoy = gateway(&pod, 100_000).await?;
    let b = body(50, false, false);
    let r = post(&envoy, &b, Some(("x-test-malformed-usage", "1"))).await?;
    assert_eq!(r.status(), 200);
    let estimate = 100_000 - remaining_tokens(&r);
    let _ = r.text().await?;
    let r2 = post(&envoy, &b, None).await?;
    // Nothing was settled: the first request stays charged its full estimate.
    assert_eq!(remaining_tokens(&r2), 100_000 - 2 * estimate);
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.ratelimit.usage_missing")
            .await?,
        Some(1)
    );
    assert!(
        envoy.log().contains("malformed usage in response"),
        "the plugin should log why it kept the estimate"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_exported_per_user_and_model_with_bounded_cardinality() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let keys: Vec<String> = (0..4).map(|i| format!("key-{i}")).collect();
    let users: Vec<String> = (0..4).map(|i| format!("user{i}")).collect();
    let pairs: Vec<(&str, &str)> = keys.iter().zip(&users).map(|(k, u)| (&**k, &**u)).collect();
    let rl = json!({"limits": [], "usageStats": {"users": ["user0"], "models": [MODEL], "maxTracked": 1}});
    let envoy = Gateway::builder()
        .auth(api_keys(&pairs))
        .ratelimit(rl)
        .pinned_to(pod.addr)
        .start()
        .await?;
    let mut completion_by_user = Vec::new();
    for k in &keys {
        let r = Sender::to(&envoy)
            .key(k)
            .body(body(5, false, false))
            .send(0)
            .await?;
        let v: Value = r.json().await?;
        completion_by_user.push(v["usage"]["completion_tokens"].as_u64().unwrap_or(0));
    }
    let stats = envoy.stats().await?;
    let stat = |n: &str| {
        stats
            .get(&format!("wasmcustom.infergate.usage.{n}"))
            .copied()
    };
    // Listed user, one more tracked user, then the rest under _other.
    assert_eq!(
        stat("user.user0.completion_tokens"),
        Some(completion_by_user[0])
    );
    assert_eq!(
        stat("user.user1.completion_tokens"),
        Some(completion_by_user[1])
    );
    assert_eq!(stat("user.user2.completion_tokens"), None);
    assert_eq!(
        stat("user._other.completion_tokens"),
        Some(completion_by_user[2] + completion_by_user[3])
    );
    assert_eq!(
        stat("model.Qwen_Qwen3-0_6B.completion_tokens"),
        Some(completion_by_user.iter().sum())
    );
    Ok(())
}
