//! The affinity plugin in a real Envoy: the body is parsed once, requests sharing a prompt
//! prefix stick to one pod, bad and oversized bodies are refused, and the destination is set
//! from the body callback.

mod common;

use common::*;
use infergate_e2e::envoy::{Envoy, GatewaySpec, WasmFilter};
use infergate_e2e::upstream::Upstream;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

async fn gateway(pods: &[Upstream], extra: Value) -> anyhow::Result<Envoy> {
    let config = merged(json!({"endpoints": endpoints(pods)}), &extra);
    Gateway::builder().affinity(config).start().await
}

fn system_prompt(group: usize) -> String {
    format!("You are assistant number {group}. ").repeat(40)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_prefix_sticks_to_one_pod_and_prefixes_spread() -> anyhow::Result<()> {
    let pods = pods(4).await?;
    let envoy = gateway(&pods, json!({})).await?;
    let client = http_client();
    let url = format!("{}/v1/chat/completions", envoy.http_url());
    let mut by_group: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for group in 0..12 {
        for q in 0..3 {
            let body = json!({"model": MODEL, "max_tokens": 2, "messages": [
                {"role": "system", "content": system_prompt(group)},
                {"role": "user", "content": format!("question {q} from a different user")}
            ]});
            let resp = client.post(&url).json(&body).send().await?;
            assert_eq!(resp.status(), 200, "{}", envoy.log());
            by_group
                .entry(group)
                .or_default()
                .insert(resp.headers()["x-served-by"].to_str()?.to_string());
        }
    }
    for (g, served) in &by_group {
        assert_eq!(served.len(), 1, "group {g} spread over {served:?}");
    }
    let used: BTreeSet<_> = by_group.values().flatten().collect();
    assert!(used.len() >= 3, "12 prefixes landed on only {used:?}");
    // The header the pod saw is the one the plugin set from the body callback.
    for p in &pods {
        for r in p.requests() {
            assert_eq!(
                r.header("x-gateway-destination-endpoint"),
                vec![p.addr.to_string().as_str()]
            );
        }
    }
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.affinity.prefix_picks")
            .await?,
        Some(36)
    );
    // Alone in the chain, the filter parses every body itself.
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.affinity.parses_reused")
            .await?,
        Some(0)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_responses_unicode_and_parts_route_by_prefix() -> anyhow::Result<()> {
    let pods = pods(4).await?;
    let envoy = gateway(&pods, json!({})).await?;
    let client = http_client();
    let base = envoy.http_url();
    let shared = "Ünïcödé système prompt — 東京 — ".repeat(30);
    // The same prompt text written three ways must land on the same pod.
    let escaped = serde_json::to_string(&shared)?; // "\u..." escapes are not produced by serde; build one by hand
    let hand_escaped = escaped.replace('é', "\\u00e9");
    let bodies = vec![
        format!(
            r#"{{"model":"{MODEL}","messages":[{{"role":"system","content":{escaped}}},{{"role":"user","content":"a"}}]}}"#
        ),
        format!(
            r#"{{"model":"{MODEL}","messages":[{{"role":"system","content":{hand_escaped}}},{{"role":"user","content":"b"}}]}}"#
        ),
        format!(
            r#"{{"model":"{MODEL}","messages":[{{"role":"system","content":[{{"type":"text","text":{escaped}}}]}},{{"role":"user","content":"c"}}]}}"#
        ),
    ];
    let mut served = BTreeSet::new();
    for b in bodies {
        let r = client
            .post(format!("{base}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(b)
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        served.insert(r.headers()["x-served-by"].to_str()?.to_string());
    }
    assert_eq!(served.len(), 1, "{served:?}");
    // /v1/completions and /v1/responses bodies are parsed and routed too.
    for (path, body) in [
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": shared.clone() + "tail"}),
        ),
        (
            "/v1/responses",
            json!({"model": MODEL, "input": shared.clone() + "tail"}),
        ),
    ] {
        let r = client
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await?;
        assert!(
            r.headers().contains_key("x-served-by"),
            "{path}: not routed ({})",
            r.status()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_400s_naming_the_field_and_oversize_gets_413() -> anyhow::Result<()> {
    let pods = pods(2).await?;
    let envoy = gateway(&pods, json!({"maxBodyBytes": 65536})).await?;
    let client = http_client();
    let url = format!("{}/v1/chat/completions", envoy.http_url());
    let cases: Vec<(&str, &str)> = vec![
        ("{not json", ""),
        (r#"{"messages":[{"role":"user","content":"x"}]}"#, "model"),
        (
            r#"{"model":"m","messages":[{"role":"user","content":42}]}"#,
            "messages[0].content",
        ),
        (r#"{"model":"m","messages":"hello"}"#, "messages"),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"ten"}"#,
            "max_tokens",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}"#,
            "",
        ),
        ("", ""),
    ];
    for (body, field) in cases {
        let r = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await?;
        assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(field), "{body}: {message}");
    }
    // Oversized: declared by content-length, and streamed without one.
    let big =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "x".repeat(70_000)}]})
            .to_string();
    let r = client.post(&url).body(big.clone()).send().await?;
    assert_eq!(r.status(), 413);
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(8192)
        .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
        .collect();
    let r = client
        .post(&url)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await?;
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await?;
    assert_eq!(v["error"]["code"], "request_too_large");
    for p in &pods {
        assert!(
            p.requests().is_empty(),
            "a refused request reached {}",
            p.name
        );
    }
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.affinity.parse_errors")
            .await?,
        Some(7)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hint_mode_keeps_prefixes_together_on_a_ring_hash_cluster() -> anyhow::Result<()> {
    use infergate_e2e::envoy::{RingHashSpec, RouteSpec};
    let pods = pods(4).await?;
    // Sidecar-less: a standard RING_HASH cluster hashes on the plugin's prefix header; the
    // ORIGINAL_DST destination header is not used by this route.
    let spec = GatewaySpec {
        ring_hash: Some(RingHashSpec {
            cluster: "pods-ring".into(),
            addresses: pods.iter().map(|p| p.addr).collect(),
            header: "x-infergate-prefix-hash".into(),
        }),
        routes: vec![RouteSpec {
            prefix: "/".into(),
            prefix_rewrite: None,
            cluster: "pods-ring".into(),
        }],
        ..GatewaySpec::default()
    }
    .with_filter(WasmFilter::plugin(
        "affinity",
        json!({"endpoints": pods.iter().map(|p| p.addr.to_string()).collect::<Vec<_>>(),
               "hintHeader": "x-infergate-prefix-hash"})
        .to_string(),
    )?);
    let envoy = Envoy::start(&spec).await?;
    let client = http_client();
    let url = format!("{}/v1/chat/completions", envoy.http_url());
    let mut by_group: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for group in 0..12 {
        for q in 0..3 {
            let body = json!({"model": MODEL, "messages": [
                {"role": "system", "content": system_prompt(group)},
                {"role": "user", "content": format!("q{q}")}]});
            // A client-sent hint is replaced, so it cannot steer the ring either.
            let r = client
                .post(&url)
                .header("x-infergate-prefix-hash", format!("{q}"))
                .json(&body)
                .send()
                .await?;
            assert_eq!(r.status(), 200);
            by_group
                .entry(group)
                .or_default()
                .insert(r.headers()["x-served-by"].to_str()?.to_string());
        }
    }
    assert!(by_group.values().all(|s| s.len() == 1), "{by_group:?}");
    let used: BTreeSet<_> = by_group.values().flatten().collect();
    assert!(used.len() >= 3, "12 prefixes on {used:?}");
    // The pods saw the gateway's hint, 16 hex digits.
    for p in &pods {
        for r in p.requests() {
            let h = r.header("x-infergate-prefix-hash");
            assert_eq!(h.len(), 1);
            assert_eq!(h[0].len(), 16, "{h:?}");
        }
    }
    Ok(())
}
