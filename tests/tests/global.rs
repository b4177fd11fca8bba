//! Global rate limits: two Envoys share one budget exactly through an Envoy RLS v3 service
//! counting in a real Redis; the service down fails open or closed as configured; token usage
//! above the estimate is settled with the service afterwards.
//!
//! The service is the project's test RLS, or Kuadrant's Limitador when
//! `INFERGATE_LIMITADOR_BIN` names a built `limitador-server` (`make interop-limitador`).

mod common;

use common::*;
use infergate_core::config::parse;
use infergate_core::ratelimit::RateLimitConfig;
use infergate_e2e::envoy::{ClusterSpec, Envoy, GatewaySpec};
use infergate_e2e::global_rls::GlobalRls;
use infergate_e2e::redis::RedisServer;
use infergate_e2e::upstream::Upstream;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

const MODEL: &str = "Qwen/Qwen3-0.6B";

/// `X-RateLimit-Limit` for `per-user` (Limitador's draft-03 format, names included).
const LIMIT_HEADER: &str = "10, 10;w=3600;name=\"per-user\"";

fn ratelimit_config(failure_mode: &str) -> Value {
    json!({
        "limits": [{"name": "per-user", "rates": [{"limit": 10, "window": "1h"}],
                    "counters": ["auth.identity.userid"]}],
        "global": {"cluster": "ratelimit", "domain": "infergate", "timeoutMs": 500,
                   "failureMode": failure_mode},
        "responseHeaders": "xRatelimit"
    })
}

async fn gateway(pod: &Upstream, rls: SocketAddr, failure_mode: &str) -> anyhow::Result<Envoy> {
    gateway_with(pod, rls, ratelimit_config(failure_mode)).await
}

/// auth → ratelimit (`ratelimit` as its configuration) → affinity, the RLS at `rls`.
async fn gateway_with(pod: &Upstream, rls: SocketAddr, ratelimit: Value) -> anyhow::Result<Envoy> {
    let auth = json!({"methods": [{"name": "keys", "apiKey": {"keys": [
        {"sha256": digest("alice-key"), "identity": {"userid": "alice"}}]}}]});
    let spec = GatewaySpec {
        concurrency: 2,
        clusters: vec![ClusterSpec {
            name: "ratelimit".into(),
            addresses: vec![rls],
            http2: true,
        }],
        ..GatewaySpec::default()
    };
    let affinity = json!({"endpoints": [pod.addr.to_string()]});
    Envoy::start(&with_chain(spec, &auth, &ratelimit, &affinity)?).await
}

/// Sends `n` chat completions one at a time, round-robin over `urls`; returns the statuses.
async fn sequential(urls: &[String], key: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for i in 0..n {
        let r = http_client()
            .post(&urls[i % urls.len()])
            .bearer_auth(key)
            .json(&chat_body(MODEL, false))
            .send()
            .await;
        out.push(r.map_or(0, |r| r.status().as_u16()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_envoys_share_one_budget_exactly() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let config: RateLimitConfig = parse(ratelimit_config("deny").to_string().as_bytes())?;
    let rls = GlobalRls::start("infergate", &config, &redis).await?;
    let pod = Upstream::start("pod-1", MODEL).await?;
    let a = gateway(&pod, rls.addr(), "deny").await?;
    let b = gateway(&pod, rls.addr(), "deny").await?;
    let urls = vec![
        format!("{}/v1/chat/completions", a.http_url()),
        format!("{}/v1/chat/completions", b.http_url()),
    ];
    // An allowed answer carries the service's draft-03 `X-RateLimit-*` headers (Limitador
    // answers no statuses; the test RLS sends both).
    let first = http_client()
        .post(&urls[0])
        .bearer_auth("alice-key")
        .json(&chat_body(MODEL, false))
        .send()
        .await?;
    assert_eq!(first.status(), 200, "{}", a.log());
    assert_eq!(first.headers()["x-ratelimit-limit"], LIMIT_HEADER);
    assert_eq!(first.headers()["x-ratelimit-remaining"], "9");
    let reset: u64 = first.headers()["x-ratelimit-reset"].to_str()?.parse()?;
    assert!((1..=3600).contains(&reset), "{reset}");
    let mut codes = vec![200];
    codes.extend(if rls.is_limitador() {
        // Limitador's Redis storage reads the counters, then increments them in separate
        // commands: concurrent calls all pass the read (global_limitador.rs measures it), so
        // its budget is exact for calls that do not overlap.
        sequential(&urls, "alice-key", 31).await
    } else {
        burst(&urls, "alice-key", 31).await
    });
    let ok = codes.iter().filter(|c| **c == 200).count();
    let limited = codes.iter().filter(|c| **c == 429).count();
    assert_eq!((ok, limited), (10, 22), "{codes:?}\n{}", a.log());
    assert_eq!(pod.requests().len(), 10);
    assert_eq!(rls.calls().await?, 32);
    // Both gateways answered some of the 429s: the budget really was shared.
    let la = a
        .stat("wasmcustom.infergate.ratelimit.limited")
        .await?
        .unwrap_or(0);
    let lb = b
        .stat("wasmcustom.infergate.ratelimit.limited")
        .await?
        .unwrap_or(0);
    assert_eq!(la + lb, 22);
    assert!(la > 0 && lb > 0, "{la} {lb}");
    // A limited answer carries the service's view of the budget.
    let r = http_client()
        .post(&urls[0])
        .bearer_auth("alice-key")
        .json(&chat_body(MODEL, false))
        .send()
        .await?;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-ratelimit-limit"], LIMIT_HEADER);
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(r.headers().get_all("retry-after").iter().count(), 1);
    if rls.is_limitador() {
        // Limitador answers no descriptor statuses, only the overall code and (started with
        // `--rate-limit-headers DRAFT_VERSION_03`) its headers: the plugin passes them on and
        // takes Retry-After from `X-RateLimit-Reset`; it renders none of its own.
        assert_eq!(r.headers()["retry-after"], r.headers()["x-ratelimit-reset"]);
        let retry: u64 = r.headers()["retry-after"].to_str()?.parse()?;
        assert!((1..=3600).contains(&retry), "{retry}");
        assert!(r.headers().get("x-ratelimit-limit-requests").is_none());
        return Ok(());
    }
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
    assert_eq!(r.headers()["x-ratelimit-limit-requests"], "10");
    let retry: u64 = r.headers()["retry-after"].to_str()?.parse()?;
    assert!((1..=3600).contains(&retry));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_service_down_fails_closed_or_open_as_configured() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    // Nothing listens here.
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let deny = gateway(&pod, dead, "deny").await?;
    let r = http_client()
        .post(format!("{}/v1/chat/completions", deny.http_url()))
        .bearer_auth("alice-key")
        .json(&chat_body(MODEL, false))
        .send()
        .await?;
    assert_eq!(r.status(), 500);
    let v: Value = r.json().await?;
    assert_eq!(v["error"]["code"], "ratelimit_unavailable");
    let allow = gateway(&pod, dead, "allow").await?;
    let r = http_client()
        .post(format!("{}/v1/chat/completions", allow.http_url()))
        .bearer_auth("alice-key")
        .json(&chat_body(MODEL, false))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(
        pod.requests().len(),
        1,
        "only the fail-open request reached the pod"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_usage_above_the_estimate_is_settled_with_the_service() -> anyhow::Result<()> {
    let rl = json!({
        "limits": [{"name": "tokens", "rates": [{"limit": 100_000, "window": "1h"}],
                    "counters": ["auth.identity.userid"], "counts": "tokens"}],
        // No max_tokens in the request: the estimate's completion part is 1 token, the pod
        // generates 8, so the real usage is above what was charged.
        "defaultMaxTokens": 1,
        "global": {"cluster": "ratelimit", "domain": "infergate", "timeoutMs": 500}
    });
    let redis = RedisServer::start()?;
    let config: RateLimitConfig = parse(rl.to_string().as_bytes())?;
    let rls = GlobalRls::start("infergate", &config, &redis).await?;
    let pod = Upstream::start("pod-1", MODEL).await?;
    let envoy = gateway_with(&pod, rls.addr(), rl).await?;
    let r = http_client()
        .post(format!("{}/v1/chat/completions", envoy.http_url()))
        .bearer_auth("alice-key")
        .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "Hello!"}]}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let used = r.json::<Value>().await?["usage"]["total_tokens"]
        .as_u64()
        .expect("usage");
    // The check, then the settlement from the root context's timer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while rls.calls().await? < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(rls.calls().await?, 2, "{}", envoy.log());
    // The service's counter now holds the real usage: estimate plus the settled rest.
    assert_eq!(rls.used(&redis, "infergate", "tokens").await?, vec![used]);
    Ok(())
}
