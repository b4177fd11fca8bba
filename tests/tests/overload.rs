//! Overload in a real Envoy: thousands of long-lived streams in flight through the model
//! cluster pass the circuit breakers, and a breaker that does trip is answered as an OpenAI
//! error with `Retry-After`, not with Envoy's plain-text overflow page.

use infergate_core::headers::DESTINATION_ENDPOINT;
use infergate_e2e::envoy::{bootstrap, Envoy, GatewaySpec, MODEL_CLUSTER};
use infergate_e2e::hold::HoldUpstream;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Streams in flight per gateway that must pass (the load-test target).
const IN_FLIGHT: usize = 4096;

/// What one request got back.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// Streams one HTTP/2 client connection carries at most (Envoy's downstream default allows
/// 1,024 concurrent streams per connection).
const STREAMS_PER_CONNECTION: usize = 512;

/// Sends `n` requests over HTTP/2 (multiplexed, [`STREAMS_PER_CONNECTION`] per connection)
/// to the model cluster, each addressed to `upstream`; counts finished ones in `done`.
fn send(
    envoy: &Envoy,
    upstream: &HoldUpstream,
    n: usize,
    done: Arc<AtomicUsize>,
) -> JoinSet<Answer> {
    let clients: Vec<reqwest::Client> = (0..n.div_ceil(STREAMS_PER_CONNECTION))
        .map(|_| {
            reqwest::Client::builder()
                .http2_prior_knowledge()
                .timeout(Duration::from_secs(300))
                .build()
                .expect("client")
        })
        .collect();
    let url = format!("{}/v1/chat/completions", envoy.http_url());
    let dest = upstream.addr.to_string();
    let mut set = JoinSet::new();
    for i in 0..n {
        let client = &clients[i / STREAMS_PER_CONNECTION];
        let (client, url, dest, done) = (client.clone(), url.clone(), dest.clone(), done.clone());
        set.spawn(async move {
            let answer = match client
                .post(url)
                .header(DESTINATION_ENDPOINT, dest)
                .body("{}")
                .send()
                .await
            {
                Ok(r) => {
                    let h = |k: &str| {
                        r.headers()
                            .get(k)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let (retry_after, content_type) = (h("retry-after"), h("content-type"));
                    Answer {
                        status: r.status().as_u16(),
                        retry_after,
                        content_type,
                        body: r.text().await.unwrap_or_default(),
                    }
                }
                Err(e) => Answer {
                    status: 0,
                    retry_after: None,
                    content_type: None,
                    body: e.to_string(),
                },
            };
            done.fetch_add(1, Ordering::AcqRel);
            answer
        });
    }
    set
}

/// Waits (polling) until `cond` holds; panics with `what` after a generous bound, so a broken
/// gateway fails the test instead of hanging it.
async fn wait_until(
    what: &str,
    upstream: &HoldUpstream,
    done: &AtomicUsize,
    cond: impl Fn(usize, usize) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (arrived, answered) = (upstream.arrived(), done.load(Ordering::Acquire));
        if cond(arrived, answered) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what}: {arrived} arrived, {answered} answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Requests the model cluster refused itself: every `*overflow*` counter of the cluster.
async fn overflow_count(envoy: &Envoy) -> anyhow::Result<u64> {
    let prefix = format!("cluster.{MODEL_CLUSTER}.");
    let stats = envoy.stats().await?;
    let hits: Vec<_> = stats
        .iter()
        .filter(|(k, v)| k.starts_with(&prefix) && k.contains("overflow") && **v > 0)
        .collect();
    eprintln!("overflow counters: {hits:?}");
    Ok(hits.iter().map(|(_, v)| **v).sum())
}

fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_thousand_streams_in_flight_pass_the_circuit_breakers() -> anyhow::Result<()> {
    // This process holds the upstream side of every stream; Envoy inherits the limit and holds
    // both sides.
    if let Some(limit) = open_file_limit() {
        assert!(
            limit >= 2 * IN_FLIGHT as u64 + 1024,
            "open-file limit {limit} is too low for {IN_FLIGHT} streams; raise `ulimit -n`"
        );
    }
    let upstream = HoldUpstream::start().await?;
    let envoy = Envoy::start(&GatewaySpec::default()).await?;
    let done = Arc::new(AtomicUsize::new(0));
    let mut set = send(&envoy, &upstream, IN_FLIGHT, done.clone());
    // Every stream is held open at the upstream at the same time, none answered early.
    wait_until(
        "every stream to reach the upstream",
        &upstream,
        &done,
        |arrived, answered| arrived >= IN_FLIGHT || answered > 0,
    )
    .await;
    assert_eq!(
        done.load(Ordering::Acquire),
        0,
        "a request was answered early"
    );
    let stats = envoy.stats().await?;
    let stat = |k: &str| {
        stats
            .get(&format!("cluster.{MODEL_CLUSTER}.{k}"))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(stat("upstream_rq_active"), IN_FLIGHT as u64);
    assert_eq!(overflow_count(&envoy).await?, 0);
    assert_eq!(stat("circuit_breakers.default.rq_open"), 0);
    upstream.release();
    let mut statuses = std::collections::BTreeMap::new();
    while let Some(a) = set.join_next().await {
        *statuses.entry(a?.status).or_insert(0usize) += 1;
    }
    assert_eq!(statuses, [(200, IN_FLIGHT)].into(), "{}", envoy.log());
    Ok(())
}

#[tokio::test]
async fn a_tripped_breaker_answers_an_openai_error_with_retry_after() -> anyhow::Result<()> {
    let upstream = HoldUpstream::start().await?;
    let spec = GatewaySpec::default();
    // The shipped bootstrap with the model cluster's breaker lowered to 4 requests.
    let mut b = bootstrap::render(&spec);
    let clusters = b["static_resources"]["clusters"]
        .as_array_mut()
        .expect("clusters");
    let model = clusters
        .iter_mut()
        .find(|c| c["name"] == MODEL_CLUSTER)
        .expect("model cluster");
    for t in model["circuit_breakers"]["thresholds"]
        .as_array_mut()
        .expect("thresholds")
    {
        t["max_requests"] = 4.into();
    }
    let envoy = Envoy::start_rendered(&spec, &b).await?;
    let done = Arc::new(AtomicUsize::new(0));
    let mut set = send(&envoy, &upstream, 12, done.clone());
    wait_until(
        "4 held and 8 rejected",
        &upstream,
        &done,
        |arrived, answered| arrived >= 4 && answered >= 8,
    )
    .await;
    upstream.release();
    let mut rejected = Vec::new();
    let mut ok = 0;
    while let Some(a) = set.join_next().await {
        let a = a?;
        match a.status {
            200 => ok += 1,
            _ => rejected.push(a),
        }
    }
    assert_eq!((ok, rejected.len()), (4, 8), "{rejected:?}");
    for a in &rejected {
        assert_eq!(a.status, 503, "{a:?}");
        assert_eq!(a.retry_after.as_deref(), Some("1"), "{a:?}");
        assert_eq!(a.content_type.as_deref(), Some("application/json"), "{a:?}");
        let v: Value = serde_json::from_str(&a.body)?;
        assert_eq!(v["error"]["type"], "server_error", "{a:?}");
        assert_eq!(v["error"]["code"], "overloaded", "{a:?}");
        assert!(!a.body.contains("upstream connect error"), "{a:?}");
    }
    assert_eq!(overflow_count(&envoy).await?, 8);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_breakers_envoy_refuses_streams_past_its_default() -> anyhow::Result<()> {
    // The control for the test above: with Envoy's default breakers (1,024 requests, 1,024
    // pending) the 2,049th concurrent stream is answered by Envoy itself, which is what the
    // shipped thresholds prevent.
    let upstream = HoldUpstream::start().await?;
    let spec = GatewaySpec::default();
    let mut b = bootstrap::render(&spec);
    for c in b["static_resources"]["clusters"]
        .as_array_mut()
        .expect("clusters")
    {
        if let Some(c) = c.as_object_mut() {
            c.remove("circuit_breakers");
        }
    }
    let envoy = Envoy::start_rendered(&spec, &b).await?;
    let done = Arc::new(AtomicUsize::new(0));
    let mut set = send(&envoy, &upstream, 2100, done.clone());
    wait_until(
        "1,024 held, 1,024 pending and 52 refused",
        &upstream,
        &done,
        |arrived, answered| arrived >= 1024 && answered >= 52,
    )
    .await;
    upstream.release();
    let mut refused = 0;
    while let Some(a) = set.join_next().await {
        if a?.status == 503 {
            refused += 1;
        }
    }
    // How many of the pending ones overflow depends on connection timing; some always do.
    assert!(refused >= 52, "{refused}");
    assert!(overflow_count(&envoy).await? >= refused);
    Ok(())
}
