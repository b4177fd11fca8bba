//! The HTTP pod against a real client: SSE parsed line by line, JSON errors, metrics parsed back.

mod common;

use common::*;
use infergate_sim::cost::QWEN3_0_6B_H200;
use infergate_sim::server::serve;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// A pod named `name` (the model's timings, 50x faster).
async fn start(name: &str) -> String {
    SimPod::named(name).start().await
}

/// Reads an SSE body and returns the `data:` payloads in order.
async fn sse_events(resp: reqwest::Response) -> Vec<String> {
    let mut out = Vec::new();
    for event in sse_blocks(resp).await {
        for line in event.lines() {
            if let Some(data) = line.strip_prefix("data: ") {
                out.push(data.to_string());
            } else {
                assert!(line.is_empty(), "unexpected SSE line {line:?}");
            }
        }
    }
    out
}

/// The JSON chunks of an SSE stream's `data:` payloads, which must end with `[DONE]`.
fn json_chunks(events: Vec<String>) -> Vec<Value> {
    assert_eq!(events.last().unwrap(), "[DONE]");
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

fn long_prompt() -> String {
    (0..300).map(|i| format!("word{i} ")).collect()
}

#[tokio::test]
async fn chat_stream_has_openai_shape_usage_and_done() {
    let base = start("pod-a").await;
    let client = reqwest::Client::new();
    let body = json!({
        "model": MODEL,
        "messages": [{"role": "system", "content": long_prompt()}, {"role": "user", "content": "hi"}],
        "max_tokens": 7,
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    let resp = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-served-by"], "pod-a");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let chunks = json_chunks(sse_events(resp).await);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: Vec<&Value> = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["content"].is_string())
        .skip(1)
        .collect();
    assert_eq!(content.len(), 7);
    assert!(content[..6]
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null()));
    assert_eq!(content[6]["choices"][0]["finish_reason"], "length");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 7);
    let prompt_tokens = usage["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt_tokens > 300);
    assert_eq!(
        usage["usage"]["total_tokens"].as_u64().unwrap(),
        prompt_tokens + 7
    );
    assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["model"] == MODEL));
    let streamed: String = content
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();

    // The same prompt again, not streamed: same text (deterministic), prefix cache hit.
    let mut again = body.clone();
    again["stream"] = json!(false);
    again.as_object_mut().unwrap().remove("stream_options");
    let v = post_json(&client, &format!("{base}/v1/chat/completions"), &again).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], streamed.as_str());
    let cached = v["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        cached >= prompt_tokens - 16 && cached < prompt_tokens,
        "cached {cached} of {prompt_tokens}"
    );
}

#[tokio::test]
async fn completions_stream_without_usage_and_default_length() {
    let base = start("pod-b").await;
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/completions"))
        .json(&json!({"model": MODEL, "prompt": "Once upon a time", "stream": true}))
        .send()
        .await
        .unwrap();
    let chunks = json_chunks(sse_events(resp).await);
    // Default length: 20 ± 50%, and the model "stops" by itself.
    assert!((10..=30).contains(&chunks.len()), "{}", chunks.len());
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "text_completion" && c["choices"][0]["text"].is_string()));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
}

#[tokio::test]
async fn bad_requests_get_vllm_style_json_errors() {
    let base = start("pod-c").await;
    let client = reqwest::Client::new();
    let cases = [
        ("/v1/chat/completions", "{\"messages\": [", 400, Value::Null),
        (
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
            400,
            json!("max_tokens"),
        ),
        (
            "/v1/completions",
            r#"{"prompt":"x","max_tokens":50000}"#,
            400,
            json!("max_tokens"),
        ),
        (
            "/v1/completions",
            r#"{"model":"other","prompt":"x"}"#,
            404,
            json!("model"),
        ),
    ];
    for (path, body, status, param) in cases {
        let resp = client
            .post(format!("{base}{path}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{body}");
        assert_eq!(resp.headers()["x-served-by"], "pod-c");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], status, "{body}");
        assert_eq!(v["error"]["param"], param, "{body}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let r = client.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-served-by"], "pod-c");
    let r = client
        .get(format!("{base}/v1/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let models = get_json(&client, &format!("{base}/v1/models")).await;
    assert_eq!(models["data"][0]["id"], MODEL);
}

#[tokio::test]
async fn metrics_count_what_was_served() {
    let base = start("pod-d").await;
    let client = reqwest::Client::new();
    let prompt = long_prompt();
    let mut prompt_total = 0;
    let mut cached_total = 0;
    let mut completion_total = 0;
    for _ in 0..3 {
        let url = format!("{base}/v1/completions");
        let v = post_json(&client, &url, &json!({"prompt": prompt, "max_tokens": 4})).await;
        prompt_total += v["usage"]["prompt_tokens"].as_u64().unwrap();
        cached_total += v["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap();
        completion_total += v["usage"]["completion_tokens"].as_u64().unwrap();
    }
    let m = parse_metrics(&metrics_text(&client, &base).await);
    let l = format!("{{model_name=\"{MODEL}\"}}");
    let get = |name: &str| m[&format!("{name}{l}")];
    assert_eq!(get("vllm:prompt_tokens_total") as u64, prompt_total);
    assert_eq!(get("vllm:generation_tokens_total") as u64, completion_total);
    assert_eq!(get("vllm:prefix_cache_hits_total") as u64, cached_total);
    assert!(cached_total > 0);
    assert_eq!(get("vllm:prefix_cache_queries_total") as u64, prompt_total);
    assert_eq!(get("vllm:num_requests_running"), 0.0);
    assert_eq!(get("vllm:num_requests_waiting"), 0.0);
    assert_eq!(
        get("vllm:kv_cache_usage_perc"),
        get("vllm:gpu_cache_usage_perc")
    );
    let info = format!(
        "vllm:cache_config_info{{block_size=\"16\",enable_prefix_caching=\"True\",num_gpu_blocks=\"{}\",model_name=\"{MODEL}\"}}",
        QWEN3_0_6B_H200.num_gpu_blocks
    );
    assert_eq!(m[&info], 1.0);
    assert_eq!(get("vllm:time_to_first_token_seconds_count"), 3.0);
    let inf = m
        [&format!("vllm:time_to_first_token_seconds_bucket{{le=\"+Inf\",model_name=\"{MODEL}\"}}")];
    assert_eq!(inf, 3.0);
    let mut buckets: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix("vllm:time_to_first_token_seconds_bucket{le=\"")?;
            let le = le.split('"').next()?.parse::<f64>().ok()?;
            Some((le, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "cumulative buckets"
    );
}

#[tokio::test]
async fn many_concurrent_streams_all_complete() {
    let base = start("pod-e").await;
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let client = client.clone();
            let url = format!("{base}/v1/chat/completions");
            tokio::spawn(async move {
                let body = json!({"messages": [{"role": "user", "content": format!("question {i}")}], "max_tokens": 12, "stream": true});
                let resp = client.post(url).json(&body).send().await.unwrap();
                sse_events(resp).await
            })
        })
        .collect();
    for t in tasks {
        let events = t.await.unwrap();
        // role chunk + 12 tokens + [DONE]
        assert_eq!(events.len(), 14);
        assert_eq!(events.last().unwrap(), "[DONE]");
    }
}

#[tokio::test]
async fn invalid_configuration_is_refused() {
    let base = SimPod::named("ok").time_scale(1.0).config();
    assert!(base.validate().unwrap().is_some());
    let mut zero = base.clone();
    zero.time_scale = 0.0;
    let err = zero.validate().unwrap_err().to_string();
    assert!(err.contains("time scale"), "{err}");
    let mut bad_name = base.clone();
    bad_name.served_by = Some("a\nb".into());
    assert!(bad_name.validate().is_err());
    let mut bad_engine = base;
    bad_engine.engine.max_model_len = 0;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    assert!(serve(listener, bad_engine).await.is_err());
}
