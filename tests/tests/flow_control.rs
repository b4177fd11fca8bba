//! Flow control in a real Envoy: the affinity plugin asks host-shim (a real child process,
//! `flowControl` in its EndpointPickerConfig) for picks while every pod's `/metrics` reports a
//! queue over the saturation threshold. Picks wait in host-shim's bounded queue and are served
//! as soon as a pod frees; overflow and a wait past the TTL get the configured status with
//! `Retry-After` and an OpenAI error body; a client that disconnects while queued frees its
//! place (through ext_proc, and through the plugin by a cancel of its pick id); and Envoy
//! itself never answers (no overflow, no plain-text page).
//!
//! The pods are e2e's recording upstreams with a settable vLLM queue length on their
//! `/metrics` page (`Upstream::set_waiting`), so saturation is switched on and off exactly.

mod common;

use common::{Gateway, HOST_SHIM_CLUSTER};
use infergate_e2e::child::HostShim;
use infergate_e2e::envoy::Envoy;
use infergate_e2e::upstream::Upstream;
use serde_json::{json, Value};
use std::time::Duration;

const MODEL: &str = "Qwen/Qwen3-0.6B";
const TTL_MS: u64 = 3000;

/// Chat completions `pod` answered.
fn served(pod: &Upstream) -> usize {
    pod.requests()
        .iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .count()
}

struct Setup {
    pods: Vec<Upstream>,
    shim: HostShim,
    envoy: Envoy,
}

/// The guide's scheduling profile plus `flowControl: {flow}`.
fn epp_config(flow: &Value) -> String {
    format!(
        "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n\
         plugins:\n- type: queue-scorer\n- type: kv-cache-utilization-scorer\n- type: prefix-cache-scorer\n\
         schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: queue-scorer\n    weight: 2\n\
         \x20 - pluginRef: kv-cache-utilization-scorer\n    weight: 2\n\
         \x20 - pluginRef: prefix-cache-scorer\n    weight: 3\n\
         flowControl: {flow}\n"
    )
}

/// Two saturated pods and host-shim with `flow` as its `flowControl`.
async fn pods_and_shim(flow: &Value) -> anyhow::Result<(Vec<Upstream>, HostShim)> {
    let pods = vec![
        Upstream::start("pod-a", MODEL).await?,
        Upstream::start("pod-b", MODEL).await?,
    ];
    for p in &pods {
        p.set_waiting(10);
    }
    let endpoints: Vec<String> = pods.iter().map(|p| p.addr.to_string()).collect();
    let shim = HostShim::start_with(&endpoints, &["--config-text", &epp_config(flow)]).await?;
    shim.wait_ready(2, Duration::from_secs(10)).await?;
    Ok((pods, shim))
}

/// [`pods_and_shim`], and Envoy with the affinity plugin whose pick callout outlasts the queue
/// (TTL `ttl_ms`) by the margin `infergate-policies` renders (500 ms).
async fn setup(flow: Value, ttl_ms: u64) -> anyhow::Result<Setup> {
    let (pods, shim) = pods_and_shim(&flow).await?;
    let endpoints: Vec<String> = pods.iter().map(|p| p.addr.to_string()).collect();
    let affinity = json!({"endpoints": endpoints,
        "hostShim": {"cluster": HOST_SHIM_CLUSTER, "timeoutMs": ttl_ms + 500}});
    let envoy = Gateway::builder()
        .host_shim(shim.http)
        .affinity(affinity)
        .start()
        .await?;
    Ok(Setup { pods, shim, envoy })
}

/// [`pods_and_shim`], and Envoy asking host-shim over ext_proc (full-duplex, as llm-d
/// configures it; Envoy's `message_timeout` is 10 s, above the queue's TTL).
async fn setup_ext_proc(flow: Value) -> anyhow::Result<Setup> {
    let (pods, shim) = pods_and_shim(&flow).await?;
    let envoy = Gateway::builder()
        .ext_proc(shim.grpc, "FULL_DUPLEX_STREAMED")
        .start()
        .await?;
    Ok(Setup { pods, shim, envoy })
}

#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    content_type: Option<String>,
    served_by: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

async fn chat(envoy_url: String, n: usize, timeout: Duration) -> anyhow::Result<Answer> {
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let r = client
        .post(format!("{envoy_url}/v1/chat/completions"))
        .json(&json!({"model": MODEL, "max_tokens": 2, "messages": [
            {"role": "user", "content": format!("question number {n}: ").repeat(30)}]}))
        .send()
        .await?;
    let h = |k: &str| {
        r.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (retry_after, content_type, served_by) =
        (h("retry-after"), h("content-type"), h("x-served-by"));
    Ok(Answer {
        status: r.status().as_u16(),
        retry_after,
        content_type,
        served_by,
        body: r.text().await?,
    })
}

/// A `host_shim_flow_control_*` sample from host-shim's `/metrics` (0 when absent).
async fn shim_metric(shim: &HostShim, sample: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("http://{}/metrics", shim.http))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("host_shim_flow_control_{sample} "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0))
}

/// Waits (at most 20 s: a hang, not a timing check) until the sample equals `want`.
async fn until_metric(shim: &HostShim, sample: &str, want: f64) -> anyhow::Result<()> {
    for _ in 0..800 {
        if shim_metric(shim, sample).await? == want {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("{sample} never reached {want}")
}

/// Envoy answered nothing itself: no circuit-breaker overflow anywhere, no plugin fallback.
async fn envoy_never_answered(envoy: &Envoy) -> anyhow::Result<()> {
    let stats = envoy.stats().await?;
    let overflow: u64 = stats
        .iter()
        .filter(|(k, _)| {
            k.ends_with("upstream_rq_pending_overflow") || k.ends_with("upstream_rq_overflow")
        })
        .map(|(_, v)| v)
        .sum();
    assert_eq!(overflow, 0, "Envoy's circuit breakers answered");
    Ok(())
}

fn assert_openai_refusal(a: &Answer, status: u16, retry_after: &str, kind: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.retry_after.as_deref(), Some(retry_after), "{a:?}");
    assert!(
        a.content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json")),
        "not Envoy's plain-text page: {a:?}"
    );
    assert_eq!(a.json()["error"]["type"], kind, "{a:?}");
    assert!(a.served_by.is_none(), "no pod saw it: {a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_requests_are_served_when_a_pod_frees_and_overflow_is_refused() -> anyhow::Result<()>
{
    let s = setup(
        json!({"maxRequests": 2, "defaultRequestTTL": "9s", "retryAfterSeconds": 2}),
        9000,
    )
    .await?;
    let url = s.envoy.http_url();
    let mut waiting = Vec::new();
    for n in 0..2 {
        waiting.push(tokio::spawn(chat(url.clone(), n, Duration::from_secs(60))));
        until_metric(&s.shim, "queue_length", (n + 1) as f64).await?;
    }
    // The queue is full: the third is refused at once, with the configured Retry-After.
    let over = chat(url.clone(), 9, Duration::from_secs(60)).await?;
    assert_openai_refusal(&over, 429, "2", "rate_limit_error");
    assert_eq!(s.pods.iter().map(served).sum::<usize>(), 0);

    // pod-b frees: both waiting requests are served there, nothing else changed.
    s.pods[1].set_waiting(0);
    for w in waiting {
        let a = w.await??;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.served_by.as_deref(), Some(s.pods[1].name.as_str()));
    }
    assert_eq!(served(&s.pods[0]), 0);
    assert_eq!(shim_metric(&s.shim, "queue_length").await?, 0.0);
    assert_eq!(shim_metric(&s.shim, "dispatched_total").await?, 2.0);
    envoy_never_answered(&s.envoy).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_past_the_ttl_is_answered_503_with_the_configured_retry_after() -> anyhow::Result<()>
{
    let s = setup(
        json!({"maxRequests": 1, "defaultRequestTTL": format!("{TTL_MS}ms"),
            "retryAfterSeconds": 5}),
        TTL_MS,
    )
    .await?;
    let url = s.envoy.http_url();

    // TTL: host-shim answers 503 before the plugin's callout gives up, and the plugin passes
    // it on with host-shim's Retry-After.
    let late = chat(url.clone(), 1, Duration::from_secs(60)).await?;
    assert_openai_refusal(&late, 503, "5", "server_error");
    let text = reqwest::get(format!("http://{}/metrics", s.shim.http))
        .await?
        .text()
        .await?;
    assert!(
        text.contains("host_shim_flow_control_rejected_total{reason=\"timeout\"} 1"),
        "{text}"
    );
    assert_eq!(s.pods.iter().map(served).sum::<usize>(), 0);
    envoy_never_answered(&s.envoy).await
}

/// Waits (at most 20 s: a hang, not a timing check) until Envoy's stat `name` equals `want`.
async fn until_envoy_stat(envoy: &Envoy, name: &str, want: u64) -> anyhow::Result<()> {
    for _ in 0..800 {
        if envoy.stat(name).await? == Some(want) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("{name} never reached {want}: {:?}", envoy.stat(name).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_plugin_a_client_that_leaves_frees_its_place_and_overflow_is_refused(
) -> anyhow::Result<()> {
    let s = setup(
        json!({"maxRequests": 1, "defaultRequestTTL": "8s", "retryAfterSeconds": 3}),
        8000,
    )
    .await?;

    // A client that gives up while queued. Envoy cannot cancel the plugin's pick call, so the
    // plugin cancels the pick by its id when the stream ends; host-shim drops it at once,
    // long before its 8 s TTL.
    let text = client_leaves_while_queued(&s).await?;
    assert!(
        !text.contains("reason=\"timeout\""),
        "it left by cancel, not TTL: {text}"
    );
    assert_eq!(
        s.envoy
            .stat("wasmcustom.infergate.affinity.pick_cancels_sent")
            .await?,
        Some(1)
    );
    // host-shim answered the abandoned call, so Envoy no longer holds it open.
    until_envoy_stat(&s.envoy, "cluster.host-shim.upstream_rq_active", 0).await?;

    // The freed place takes the next request; one more is refused at once. The plugin relays
    // host-shim's refusal in its own words.
    freed_place_then_overflow(&s, "overloaded").await?;
    assert_eq!(shim_metric(&s.shim, "dispatched_total").await?, 1.0);
    envoy_never_answered(&s.envoy).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_ext_proc_a_client_that_leaves_frees_its_place_and_overflow_is_refused(
) -> anyhow::Result<()> {
    let s = setup_ext_proc(json!({"maxRequests": 1, "defaultRequestTTL": "8s",
        "retryAfterSeconds": 3}))
    .await?;

    // A client that gives up while queued: Envoy closes the ext_proc stream, host-shim takes
    // the request out of the queue at once.
    client_leaves_while_queued(&s).await?;

    // The freed place takes the next request; one more is refused at once with Envoy's
    // immediate response carrying host-shim's status, Retry-After and JSON.
    freed_place_then_overflow(&s, "queue_full").await?;
    envoy_never_answered(&s.envoy).await
}

/// Sends a request that queues and gives up after 700 ms; asserts it left the queue and was
/// counted `cancelled` once, and returns host-shim's `/metrics` text for further checks.
async fn client_leaves_while_queued(s: &Setup) -> anyhow::Result<String> {
    let gone = tokio::spawn(chat(s.envoy.http_url(), 1, Duration::from_millis(700)));
    until_metric(&s.shim, "queue_length", 1.0).await?;
    assert!(gone.await?.is_err(), "the client timed out");
    until_metric(&s.shim, "queue_length", 0.0).await?;
    let text = reqwest::get(format!("http://{}/metrics", s.shim.http))
        .await?
        .text()
        .await?;
    assert!(
        text.contains("host_shim_flow_control_rejected_total{reason=\"cancelled\"} 1"),
        "{text}"
    );
    Ok(text)
}

/// With `maxRequests: 1` and the place of a client that left freed: the next request takes
/// the place, one more is refused at once (429, `Retry-After: 3`, error code `code`), and once
/// pod-a has headroom the queued one is served there — the only request any pod saw.
async fn freed_place_then_overflow(s: &Setup, code: &str) -> anyhow::Result<()> {
    let url = s.envoy.http_url();
    let next = tokio::spawn(chat(url.clone(), 2, Duration::from_secs(60)));
    until_metric(&s.shim, "queue_length", 1.0).await?;
    let over = chat(url.clone(), 3, Duration::from_secs(60)).await?;
    assert_openai_refusal(&over, 429, "3", "rate_limit_error");
    assert_eq!(over.json()["error"]["code"], code);

    s.pods[0].set_waiting(0);
    let a = next.await??;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.served_by.as_deref(), Some("pod-a"));
    assert_eq!(
        s.pods.iter().map(served).sum::<usize>(),
        1,
        "the request whose client left never reached a pod"
    );
    Ok(())
}
