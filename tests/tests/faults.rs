//! The fault matrix in a real Envoy: each test sends a known number of requests through a
//! fault and checks every one got exactly one answer with the documented status.
//!
//! - a pod that accepts and never answers: `504` for each request once the route timeout
//!   passes, and the gateway keeps answering;
//! - a vLLM pod (`vllm-sim`) killed with SIGKILL mid-stream: the client's stream ends (without
//!   `[DONE]`; Envoy resets it) instead of hanging, and the token budget is settled to the prompt
//!   estimate plus what was streamed, not left at the up-front reservation;
//! - host-shim killed under load and restarted on the same address: the affinity filter falls
//!   back to hashing while it is gone and returns to host-shim's picks once it is back;
//! - the global-limit RLS service down and back, in each `failureMode`: `deny` answers `500
//!   ratelimit_unavailable` while it is down and `allow` lets requests through uncounted; once
//!   back, the shared budget is enforced exactly where it was left.

mod common;
mod fault_kit;

use common::*;
use fault_kit::{kill9, sim_pod, Relay, SilentPod};
use futures_util::StreamExt;
use infergate_core::config::parse;
use infergate_core::ratelimit::RateLimitConfig;
use infergate_e2e::envoy::Envoy;
use infergate_e2e::redis::RedisServer;
use infergate_e2e::rls::RlsServer;
use infergate_e2e::upstream::Upstream;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_never_answers_is_a_504_per_request() -> anyhow::Result<()> {
    let pod = SilentPod::start().await?;
    let rl = json!({"limits": [{"name": "r", "rates": [{"limit": 1000, "window": "1h"}],
                                "counters": ["auth.identity.userid"]}]});
    let envoy = Gateway::builder()
        .route_timeout_secs(2)
        .concurrency(2)
        .auth(alice_and_bob())
        .ratelimit(rl)
        .pinned_to(pod.addr)
        .start()
        .await?;
    let codes = Sender::to(&envoy).key("alice-key").at_once(8).await;
    assert_eq!(codes, vec![504; 8], "{}", envoy.log());
    assert!(pod.accepted.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert_eq!(
        envoy
            .stat("cluster.model-servers.upstream_rq_timeout")
            .await?,
        Some(8)
    );
    // The gateway still answers what it answers locally.
    let r = Sender::to(&envoy).send(0).await?;
    assert_eq!(r.status(), 401);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_killed_mid_stream_ends_the_stream_and_settles_the_budget() -> anyhow::Result<()> {
    let (pod, addr) = sim_pod("pod-k", 0, &[]).await?;
    let budget = 1_000_000u64;
    let envoy = Gateway::builder()
        .concurrency(2)
        .auth(alice_and_bob())
        .ratelimit(token_budget(budget))
        .pinned_to(addr)
        .start()
        .await?;
    let alice = Sender::to(&envoy).key("alice-key");
    // A long stream (20 000 tokens take seconds at the profile's decode speed).
    let reserve = 20_000u64;
    let body = json!({"model": MODEL, "max_tokens": reserve, "stream": true,
                      "messages": [{"role": "user", "content": "Tell me a very long story."}]});
    let r = alice.clone().body(body).send(0).await?;
    assert_eq!(r.status(), 200);
    let before = remaining_tokens(&r);
    assert!(budget - before >= reserve, "reserved {}", budget - before);
    let mut stream = r.bytes_stream();
    let mut text = String::new();
    while text.matches("data: ").count() < 20 {
        text.push_str(std::str::from_utf8(&stream.next().await.expect("chunk")?)?);
    }
    kill9(pod.pid().expect("pid"));
    // The stream ends (no hang: the client's timeout would fail the test) without [DONE].
    let mut ended_with_error = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => text.push_str(&String::from_utf8_lossy(&b)),
            Err(_) => {
                ended_with_error = true;
                break;
            }
        }
    }
    assert!(!text.contains("[DONE]"));
    assert!(
        ended_with_error,
        "Envoy resets a downstream stream whose upstream was reset"
    );
    let streamed = text.matches("data: ").count() as u64;
    drop(pod);
    // The pod comes back on the same address; the next request sees the settled budget.
    let (_pod2, addr2) = sim_pod("pod-k2", addr.port(), &[]).await?;
    assert_eq!(addr2, addr);
    let small = json!({"model": MODEL, "max_tokens": 1,
                       "messages": [{"role": "user", "content": "hi"}]});
    let r = alice.body(small).send(0).await?;
    assert_eq!(r.status(), 200);
    let used = budget - remaining_tokens(&r);
    // Settled: far below the 20 000-token reservation, and at least what was streamed.
    assert!(
        used < reserve / 2,
        "used {used}: the cut stream kept its reservation"
    );
    assert!(used >= streamed, "used {used} < {streamed} chunks streamed");
    Ok(())
}

/// Phases of traffic through the affinity filter while host-shim goes away and comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_shim_killed_and_restarted_falls_back_then_returns_to_picks() -> anyhow::Result<()> {
    let pods = pods(3).await?;
    let eps = endpoints(&pods);
    let shim = shim_over(&eps).await?;
    let mut relay = Relay::start(shim.http).await?;
    let config = json!({"endpoints": eps, "hostShim": {"cluster": "host-shim", "timeoutMs": 200}});
    let envoy = Gateway::builder()
        .host_shim(relay.addr)
        .concurrency(2)
        .affinity(config)
        .start()
        .await?;
    let url = chat_url(&envoy);
    let phase = |n: usize, tag: &'static str| {
        let url = url.clone();
        async move {
            concurrently(n, |i| {
                let body = json!({"model": MODEL, "max_tokens": 2, "messages": [
                    {"role": "user", "content": format!("{tag} question {i}")}]});
                let sender = Sender::to_urls(vec![url.clone()]).body(body);
                async move { sender.in_turn(1).await[0] }
            })
            .await
        }
    };
    let stat = |name: &'static str| plugin_stat(&envoy, "affinity", name);
    assert_eq!(phase(20, "up").await, vec![200; 20]);
    let picks_up = stat("host_shim_picks").await;
    assert_eq!(picks_up, 20, "{}", envoy.log());
    // Killed under load: requests in flight and after are all answered, by fallback.
    let pid = shim.process.pid().expect("pid");
    let during = tokio::spawn(phase(40, "down"));
    tokio::time::sleep(Duration::from_millis(20)).await;
    kill9(pid);
    relay.down();
    let codes = during.await?;
    assert_eq!(codes, vec![200; 40], "{}", envoy.log());
    assert_eq!(phase(20, "gone").await, vec![200; 20]);
    let fallbacks = stat("fallbacks").await;
    assert!(fallbacks >= 20, "fallbacks {fallbacks}");
    assert_eq!(stat("host_shim_picks").await + fallbacks, 80);
    // Restarted (a new process; the relay keeps the address the gateway knows).
    let shim2 = shim_over(&eps).await?;
    relay.up(shim2.http).await?;
    let picks_before = stat("host_shim_picks").await;
    let mut back = Vec::new();
    // Envoy's connection pool notices the reset connections on first use: a few more
    // fallbacks may happen before picks resume.
    for _ in 0..10 {
        back.extend(phase(10, "back").await);
        if stat("host_shim_picks").await > picks_before {
            break;
        }
    }
    assert!(back.iter().all(|c| *c == 200), "{back:?}");
    assert!(
        stat("host_shim_picks").await > picks_before,
        "picks never resumed"
    );
    assert_eq!(
        stat("host_shim_picks").await + stat("fallbacks").await,
        80 + back.len() as u64
    );
    for p in &pods {
        p.stop_recording();
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rls_down_and_back_in_each_failure_mode() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let config: RateLimitConfig = parse(per_user_global("deny").to_string().as_bytes())?;
    let rls = RlsServer::start("infergate", &config, redis.socket()).await?;
    let mut relay = Relay::start(rls.addr).await?;
    let pod = Upstream::start("pod-1", MODEL).await?;
    let gateway = |mode: &'static str| {
        Gateway::builder()
            .rls(relay.addr)
            .auth(alice_and_bob())
            .ratelimit(per_user_global(mode))
            .pinned_to(pod.addr)
            .start()
    };
    let deny = gateway("deny").await?;
    let allow = gateway("allow").await?;
    let codes = |e: &Envoy, key: &'static str, n: usize| {
        let sender = Sender::to(e).key(key).every_500_is("ratelimit_unavailable");
        async move { sender.in_turn(n).await }
    };
    // Up: counted by the service.
    assert_eq!(codes(&deny, "alice-key", 3).await, vec![200; 3]);
    assert_eq!(codes(&allow, "bob-key", 3).await, vec![200; 3]);
    assert_eq!(rls.calls(), 6);
    // Down: deny fails closed, allow fails open; nothing is counted.
    relay.down();
    assert_eq!(
        codes(&deny, "alice-key", 4).await,
        vec![500; 4],
        "{}",
        deny.log()
    );
    assert_eq!(codes(&allow, "bob-key", 4).await, vec![200; 4]);
    assert_eq!(rls.calls(), 6);
    // Back: each budget resumes where it was (3 of 10 used): 7 more, then 429.
    relay.up(rls.addr).await?;
    let alice = codes(&deny, "alice-key", 8).await;
    let bob = codes(&allow, "bob-key", 8).await;
    assert_eq!(alice, n_then_429(7), "{}", deny.log());
    assert_eq!(bob, n_then_429(7), "{}", allow.log());
    assert_eq!(pod.requests().len(), 3 + 3 + 4 + 7 + 7);
    drop(redis);
    Ok(())
}
