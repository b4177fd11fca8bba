//! Global limits against Kuadrant's Limitador (the interop run, `make interop-limitador`):
//! Limitador killed and restarted, and its Redis killed and restarted, in each failure mode;
//! and limits whose descriptors move between call positions. The service is Limitador when
//! `INFERGATE_LIMITADOR_BIN` names a built `limitador-server`; the fault tests are skipped
//! without it, the descriptor-position test runs against the project's test RLS instead.

mod common;

use common::*;
use infergate_core::config::parse;
use infergate_core::ratelimit::RateLimitConfig;
use infergate_e2e::envoy::Envoy;
use infergate_e2e::global_rls::{limitador_bin, GlobalRls, LIMITADOR_BIN_ENV};
use infergate_e2e::limitador::LimitadorServer;
use infergate_e2e::redis::RedisServer;
use infergate_e2e::upstream::Upstream;
use serde_json::{json, Value};
use std::net::SocketAddr;

async fn gateway(pod: &Upstream, rls: SocketAddr, ratelimit: &Value) -> anyhow::Result<Envoy> {
    Gateway::builder()
        .rls(rls)
        .auth(alice_and_bob())
        .ratelimit(ratelimit.clone())
        .pinned_to(pod.addr)
        .start()
        .await
}

/// Sends `n` chat completions one after the other; returns the statuses (0: no answer).
/// Every 500 must be the documented `ratelimit_unavailable` error.
async fn codes(envoy: &Envoy, key: &str, headers: &[(&str, &str)], n: usize) -> Vec<u16> {
    Sender::to(envoy)
        .key(key)
        .headers(headers)
        .every_500_is("ratelimit_unavailable")
        .in_turn(n)
        .await
}

/// A fresh Redis, Limitador (the `INFERGATE_LIMITADOR_BIN` binary) counting `per-user` in
/// it, and a pod.
async fn limitador_and_pod() -> anyhow::Result<(RedisServer, LimitadorServer, Upstream)> {
    let bin = limitador_bin().unwrap_or_default();
    let redis = RedisServer::start()?;
    let config: RateLimitConfig = parse(per_user_global("deny").to_string().as_bytes())?;
    let limitador = LimitadorServer::start(&bin, "infergate", &config, &redis.socket()).await?;
    let pod = Upstream::start("pod-1", MODEL).await?;
    Ok((redis, limitador, pod))
}

fn skip(test: &str) -> bool {
    if limitador_bin().is_none() {
        eprintln!("SKIPPED {test}: {LIMITADOR_BIN_ENV} is not set (make interop-limitador)");
        return true;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limitador_killed_and_restarted_in_each_failure_mode() -> anyhow::Result<()> {
    if skip("limitador_killed_and_restarted_in_each_failure_mode") {
        return Ok(());
    }
    let (_redis, mut limitador, pod) = limitador_and_pod().await?;
    let deny = gateway(&pod, limitador.addr, &per_user_global("deny")).await?;
    let allow = gateway(&pod, limitador.addr, &per_user_global("allow")).await?;
    // Up: counted by Limitador.
    assert_eq!(codes(&deny, "alice-key", &[], 3).await, vec![200; 3]);
    assert_eq!(codes(&allow, "bob-key", &[], 3).await, vec![200; 3]);
    assert_eq!(limitador.calls().await?, 6);
    // Killed: deny fails closed (500), allow fails open (200, uncounted).
    limitador.kill().await?;
    assert_eq!(
        codes(&deny, "alice-key", &[], 4).await,
        vec![500; 4],
        "{}",
        deny.log()
    );
    assert_eq!(codes(&allow, "bob-key", &[], 4).await, vec![200; 4]);
    // Restarted on the same port: the counters live in Redis, so each budget resumes where
    // it was (3 of 10 used): 7 more, then 429.
    limitador.restart().await?;
    assert_eq!(
        codes(&deny, "alice-key", &[], 8).await,
        n_then_429(7),
        "{}\n{}",
        deny.log(),
        limitador.log()
    );
    assert_eq!(codes(&allow, "bob-key", &[], 8).await, n_then_429(7));
    assert_eq!(limitador.used("infergate", "per-user").await?, vec![10, 10]);
    assert_eq!(pod.requests().len(), 3 + 3 + 4 + 7 + 7);
    limitador.kill().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limitador_with_its_redis_down_and_back_in_each_failure_mode() -> anyhow::Result<()> {
    if skip("limitador_with_its_redis_down_and_back_in_each_failure_mode") {
        return Ok(());
    }
    let (mut redis, mut limitador, pod) = limitador_and_pod().await?;
    let deny = gateway(&pod, limitador.addr, &per_user_global("deny")).await?;
    let allow = gateway(&pod, limitador.addr, &per_user_global("allow")).await?;
    assert_eq!(codes(&deny, "alice-key", &[], 3).await, vec![200; 3]);
    assert_eq!(codes(&allow, "bob-key", &[], 3).await, vec![200; 3]);
    // Redis killed: Limitador answers UNAVAILABLE (or not in time); each failure mode applies.
    redis.kill();
    assert_eq!(
        codes(&deny, "alice-key", &[], 4).await,
        vec![500; 4],
        "{}\n{}",
        deny.log(),
        limitador.log()
    );
    assert_eq!(codes(&allow, "bob-key", &[], 4).await, vec![200; 4]);
    // A fresh, empty Redis on the same socket: Limitador reconnects and counts from zero.
    redis.restart()?;
    let mut alice = Vec::new();
    // Reconnecting is Limitador's business (its Redis client backs off between attempts and
    // holds calls meanwhile); until it has, every call fails closed as configured.
    let since = std::time::Instant::now();
    while since.elapsed() < std::time::Duration::from_secs(240) {
        let c = codes(&deny, "alice-key", &[], 1).await;
        alice.extend(&c);
        if c == [200] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    eprintln!(
        "LIMITADOR-REDIS-RECOVERY first request counted {:.1} s after Redis restarted ({} answered 500 before)",
        since.elapsed().as_secs_f64(),
        alice.len() - 1
    );
    assert_eq!(alice.last(), Some(&200), "{alice:?}\n{}", limitador.log());
    assert!(alice.iter().all(|c| *c == 200 || *c == 500), "{alice:?}");
    let mut rest = codes(&deny, "alice-key", &[], 10).await;
    assert_eq!(rest, n_then_429(9), "{}", limitador.log());
    rest = codes(&allow, "bob-key", &[], 11).await;
    assert_eq!(rest, n_then_429(10));
    let answered_200 = alice.iter().filter(|c| **c == 200).count();
    assert_eq!(
        pod.requests().len(),
        3 + 3 + 4 + answered_200 + 9 + 10,
        "each 200 reached the pod once, nothing else did"
    );
    limitador.kill().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_can_overshoot_limitadors_redis_budget() -> anyhow::Result<()> {
    if skip("concurrent_calls_can_overshoot_limitadors_redis_budget") {
        return Ok(());
    }
    let (_redis, limitador, pod) = limitador_and_pod().await?;
    let a = gateway(&pod, limitador.addr, &per_user_global("deny")).await?;
    let b = gateway(&pod, limitador.addr, &per_user_global("deny")).await?;
    // 32 at once against a budget of 10: Limitador's `redis` storage reads the counter
    // (MGET) and increments it in later commands, so overlapping calls all see the old value.
    let codes_seen = Sender::to_all(&[&a, &b]).key("alice-key").at_once(32).await;
    let tally = Tally::of(&codes_seen);
    let (ok, limited) = (tally.count(200), tally.count(429));
    eprintln!(
        "LIMITADOR-CONCURRENCY admitted {ok} of 32 concurrent requests against a budget of 10"
    );
    assert_eq!(ok + limited, 32, "{codes_seen:?}");
    assert!(ok >= 10, "{codes_seen:?}");
    // Every admitted request reached the pod once and was counted; nothing else was.
    assert_eq!(pod.requests().len(), ok);
    assert_eq!(limitador.calls().await?, 32);
    assert_eq!(
        limitador.used("infergate", "per-user").await?,
        vec![ok as u64]
    );
    // Over the budget, it stays closed.
    assert_eq!(codes(&a, "alice-key", &[], 2).await, vec![429; 2]);
    assert_eq!(codes(&b, "alice-key", &[], 2).await, vec![429; 2]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_counts_the_same_whichever_position_its_descriptor_has() -> anyhow::Result<()> {
    // `burst` applies only to requests with `x-burst: 1`; then the call carries two
    // descriptors and `per-user`'s is the second, otherwise it is the only one.
    let rl = json!({
        "limits": [
            {"name": "burst", "rates": [{"limit": 2, "window": "1h"}],
             "counters": ["auth.identity.userid"],
             "when": [{"attribute": "request.headers['x-burst']", "eq": "1"}]},
            {"name": "per-user", "rates": [{"limit": 5, "window": "1h"}],
             "counters": ["auth.identity.userid"]}],
        "global": {"cluster": "ratelimit", "domain": "infergate", "timeoutMs": 500}
    });
    let redis = RedisServer::start()?;
    let config: RateLimitConfig = parse(rl.to_string().as_bytes())?;
    let rls = GlobalRls::start("infergate", &config, &redis).await?;
    let pod = Upstream::start("pod-1", MODEL).await?;
    let envoy = gateway(&pod, rls.addr(), &rl).await?;
    let burst = [("x-burst", "1")];
    // Two bursts fit; the third is over `burst` and charges nothing (all or nothing).
    assert_eq!(
        codes(&envoy, "alice-key", &burst, 3).await,
        vec![200, 200, 429],
        "{}",
        envoy.log()
    );
    // `per-user` holds 2 of 5 whatever position its descriptor had: 3 more, then 429.
    assert_eq!(
        codes(&envoy, "alice-key", &[], 4).await,
        vec![200, 200, 200, 429]
    );
    assert_eq!(rls.used(&redis, "infergate", "per-user").await?, vec![5]);
    assert_eq!(rls.used(&redis, "infergate", "burst").await?, vec![2]);
    // Bob has his own counters.
    assert_eq!(codes(&envoy, "bob-key", &burst, 1).await, vec![200]);
    assert_eq!(pod.requests().len(), 2 + 3 + 1);
    assert_eq!(rls.calls().await?, 3 + 4 + 1);
    Ok(())
}
