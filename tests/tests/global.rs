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
use infergate_e2e::envoy::Envoy;
use infergate_e2e::global_rls::GlobalRls;
use infergate_e2e::redis::RedisServer;
use infergate_e2e::upstream::Upstream;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// `X-RateLimit-Limit` for `per-user` (Limitador's draft-03 format, names included).
const LIMIT_HEADER: &str = "10, 10;w=3600;name=\"per-user\"";

async fn gateway(pod: &Upstream, rls: SocketAddr, failure_mode: &str) -> anyhow::Result<Envoy> {
    gateway_with(pod, rls, per_user_global(failure_mode)).await
}

/// auth → ratelimit (`ratelimit` as its configuration) → affinity, the RLS at `rls`.
async fn gateway_with(pod: &Upstream, rls: SocketAddr, ratelimit: Value) -> anyhow::Result<Envoy> {
    Gateway::builder()
        .concurrency(2)
        .rls(rls)
        .auth(api_keys(&[("alice-key", "alice")]))
        .ratelimit(ratelimit)
        .pinned_to(pod.addr)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_envoys_share_one_budget_exactly() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let config: RateLimitConfig = parse(per_user_global("deny").to_string().as_bytes())?;
    let rls = GlobalRls::start("infergate", &config, &redis).await?;
    let pod = Upstream::start("pod-1", MODEL).await?;
    let a = gateway(&pod, rls.addr(), "deny").await?;
    let b = gateway(&pod, rls.addr(), "deny").await?;
    let alice = Sender::to_all(&[&a, &b]).key("alice-key");
    // An allowed answer carries the service's draft-03 `X-RateLimit-*` headers (Limitador
    // answers no statuses; the test RLS sends both).
    let first = alice.send(0).await?;
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
        alice.in_turn(31).await
    } else {
        alice.at_once(31).await
    });
    let tally = Tally::of(&codes);
    assert_eq!(
        (tally.count(200), tally.count(429)),
        (10, 22),
        "{codes:?}\n{}",
        a.log()
    );
    assert_eq!(pod.requests().len(), 10);
    assert_eq!(rls.calls().await?, 32);
    // Both gateways answered some of the 429s: the budget really was shared.
    let la = plugin_stat(&a, "ratelimit", "limited").await;
    let lb = plugin_stat(&b, "ratelimit", "limited").await;
    assert_eq!(la + lb, 22);
    assert!(la > 0 && lb > 0, "{la} {lb}");
    // A limited answer carries the service's view of the budget.
    let r = alice.send(0).await?;
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
    let r = Sender::to(&deny).key("alice-key").send(0).await?;
    assert_eq!(r.status(), 500);
    let v: Value = r.json().await?;
    assert_eq!(v["error"]["code"], "ratelimit_unavailable");
    let allow = gateway(&pod, dead, "allow").await?;
    let r = Sender::to(&allow).key("alice-key").send(0).await?;
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
    let r = Sender::to(&envoy)
        .key("alice-key")
        .body(json!({"model": MODEL, "messages": [{"role": "user", "content": "Hello!"}]}))
        .send(0)
        .await?;
    assert_eq!(r.status(), 200);
    let used = r.json::<Value>().await?["usage"]["total_tokens"]
        .as_u64()
        .expect("usage");
    // The check, then the settlement from the root context's timer (the deadline only
    // guards against a hang: a loaded machine has been seen to need more than 5 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while rls.calls().await? < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(rls.calls().await?, 2, "{}", envoy.log());
    // The service's counter now holds the real usage: estimate plus the settled rest.
    assert_eq!(rls.used(&redis, "infergate", "tokens").await?, vec![used]);
    Ok(())
}
