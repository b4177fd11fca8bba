//! The simulated pod fails like vLLM: absurd `max_tokens`, oversized, malformed and hostile
//! bodies each get a 4xx in vLLM's error shape (never a hang), `/metrics` keeps answering, and
//! `/v1/responses` serves whole and streamed answers with usage.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// A pod named `pod` refusing bodies over `max_body_bytes`. Every request goes through
/// [`client`], whose [`HANG_GUARD`] turns a hang (the bug this file pins) into a failure.
async fn start(max_body_bytes: usize) -> String {
    SimPod::named("pod")
        .max_body_bytes(max_body_bytes)
        .start()
        .await
}

/// Posts `body` and returns status and the parsed JSON error (checked to be vLLM's shape).
async fn post_error(
    c: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let r = c.post(url).body(body).send().await.unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    let e = &v["error"];
    assert_eq!(e["code"], status, "{v}");
    assert!(e["type"].as_str().unwrap().ends_with("Error"), "{v}");
    assert!(!e["message"].as_str().unwrap().is_empty(), "{v}");
    (status, v)
}

async fn metrics_running(c: &reqwest::Client, base: &str) -> f64 {
    let text = metrics_text(c, base).await;
    text.lines()
        .find(|l| l.starts_with("vllm:num_requests_running{"))
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap()
}

#[tokio::test]
async fn huge_max_tokens_is_a_400_naming_the_field() {
    let base = start(1 << 20).await;
    let c = client();
    let chat = |k: &str, v: &str| {
        format!(r#"{{"messages":[{{"role":"user","content":"hi"}}],"{k}":{v}}}"#)
    };
    for v in ["18446744073709551615", "4294967295", "40961"] {
        let cases = [
            ("/v1/chat/completions", chat("max_tokens", v), "max_tokens"),
            (
                "/v1/chat/completions",
                chat("max_completion_tokens", v),
                "max_tokens",
            ),
            (
                "/v1/chat/completions",
                format!(
                    r#"{{"messages":[{{"role":"user","content":"hi"}}],"stream":true,"max_tokens":{v}}}"#
                ),
                "max_tokens",
            ),
            (
                "/v1/completions",
                format!(r#"{{"prompt":"hi","max_tokens":{v}}}"#),
                "max_tokens",
            ),
            (
                "/v1/responses",
                format!(r#"{{"input":"hi","max_output_tokens":{v}}}"#),
                "max_output_tokens",
            ),
        ];
        for (path, body, param) in cases {
            let (status, e) = post_error(&c, &format!("{base}{path}"), body.clone()).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(e["error"]["type"], "BadRequestError");
            assert_eq!(e["error"]["param"], param, "{body}");
            let msg = e["error"]["message"].as_str().unwrap();
            assert!(
                msg.starts_with(&format!(
                    "'max_tokens' or 'max_completion_tokens' is too large: {v}."
                )),
                "{msg}"
            );
            assert!(
                msg.contains("maximum context length is 40960 tokens"),
                "{msg}"
            );
        }
    }
    // Beyond 64 bits, negative, fractional: a 400 naming the field too.
    for v in ["1e30", "-1", "2.5", "\"9\"", "184467440737095516150"] {
        let (status, e) = post_error(
            &c,
            &format!("{base}/v1/completions"),
            format!(r#"{{"prompt":"hi","max_tokens":{v}}}"#),
        )
        .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(e["error"]["param"], "max_tokens", "{v}");
    }
    // Nothing was admitted, and the pod still serves.
    assert_eq!(metrics_running(&c, &base).await, 0.0);
    // The largest output that fits is accepted (streamed; the first chunk is enough).
    let r = c
        .post(format!("{base}/v1/completions"))
        .json(&json!({"prompt": "hi", "max_tokens": 40959, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let first = r.bytes_stream().next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: {"));
}

#[tokio::test]
async fn a_prompt_that_fills_the_window_is_a_400_and_metrics_keep_answering() {
    let base = start(32 << 20).await;
    let c = client();
    // 20 MB, ~4 M tokens of text: parsed off the runtime thread, refused for its length.
    let prompt = "word ".repeat(4 << 20);
    let big = {
        let c = c.clone();
        let url = format!("{base}/v1/completions");
        let body = json!({"prompt": prompt, "max_tokens": 1}).to_string();
        tokio::spawn(async move { post_error(&c, &url, body).await })
    };
    // /metrics answers throughout (each poll completes; the guard turns a hang into a failure).
    let mut polls = 0;
    while !big.is_finished() {
        metrics_running(&c, &base).await;
        polls += 1;
    }
    let (status, e) = big.await.unwrap();
    assert_eq!(status, 400);
    assert_eq!(e["error"]["param"], "prompt");
    assert!(e["error"]["message"].as_str().unwrap().starts_with(
        "This model's maximum context length is 40960 tokens. However, your request has"
    ));
    assert!(polls >= 1);
    let (status, e) = post_error(
        &c,
        &format!("{base}/v1/responses"),
        json!({"input": "word ".repeat(50_000)}).to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(e["error"]["param"], "input");
}

#[tokio::test]
async fn hostile_bodies_get_clear_4xx_and_the_pod_keeps_serving() {
    let base = start(1 << 20).await;
    let c = client();
    let chat = format!("{base}/v1/chat/completions");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_obj = format!(
        r#"{{"messages":[{{"role":"user","content":{}"x"{}}}]}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let mut invalid_utf8 = br#"{"messages":[{"role":"user","content":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    invalid_utf8.extend_from_slice(br#""}]}"#);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (deep.into_bytes(), 400),
        (deep_obj.into_bytes(), 400),
        (invalid_utf8, 400),
        (vec![0u8; 1000], 400),
        (b"".to_vec(), 400),
        (b"null".to_vec(), 400),
        (br#"{"messages":"x"}"#.to_vec(), 400),
        (br#"{"messages":[{"role":1,"content":"x"}]}"#.to_vec(), 400),
        (
            br#"{"messages":[{"role":"user","content":{"a":1}}]}"#.to_vec(),
            400,
        ),
        (
            br#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#.to_vec(),
            400,
        ),
        (
            br#"{"messages":[{"role":"user","content":"x"}],"stream":"true"}"#.to_vec(),
            400,
        ),
        (
            br#"{"messages":[{"role":"user","content":"x"}],"model":["a"]}"#.to_vec(),
            400,
        ),
        (
            br#"{"messages":[{"role":"user","content":"x"}],"n":3}"#.to_vec(),
            400,
        ),
        (
            format!(
                r#"{{"messages":[{{"role":"user","content":"x"}}],"model":"{}"}}"#,
                "m".repeat(100_000)
            )
            .into_bytes(),
            404,
        ),
        (vec![b' '; 2 << 20], 413),
    ];
    for (body, want) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let (status, _) = post_error(&c, &chat, body).await;
        assert_eq!(status, want, "{shown}");
    }
    let completions = format!("{base}/v1/completions");
    for (body, param) in [
        (r#"{"prompt":[4294967296]}"#, "prompt"),
        (r#"{"prompt":[-1]}"#, "prompt"),
        (r#"{"prompt":[]}"#, "prompt"),
        (r#"{"prompt":["a","b"]}"#, "prompt"),
        (
            r#"{"prompt":"x","stream":false,"stream_options":{"include_usage":true}}"#,
            "stream_options",
        ),
    ] {
        let (status, e) = post_error(&c, &completions, body).await;
        assert_eq!(
            (status, e["error"]["param"].as_str()),
            (400, Some(param)),
            "{body}"
        );
    }
    let responses = format!("{base}/v1/responses");
    for body in [
        r#"{}"#,
        r#"{"input":[]}"#,
        r#"{"input":5}"#,
        r#"{"input":[{"role":"user","content":[{"type":"input_image"}]}]}"#,
        r#"{"input":[{"type":"web_search_call"}]}"#,
        r#"{"input":"x","instructions":7}"#,
    ] {
        let (status, _) = post_error(&c, &responses, body).await;
        assert_eq!(status, 400, "{body}");
    }
    // Duplicate keys: the last one wins (as in Python's json), and it is checked.
    let (status, e) = post_error(
        &c,
        &completions,
        r#"{"prompt":"x","max_tokens":1,"max_tokens":18446744073709551615}"#,
    )
    .await;
    assert_eq!(
        (status, e["error"]["param"].as_str()),
        (400, Some("max_tokens"))
    );
    // Paths that are not routes, methods that are not allowed.
    for path in [
        "/v1//completions",
        "/V1/completions",
        "/v1/chat/completions/",
        "/v1/responses/resp_1",
    ] {
        let r = c
            .post(format!("{base}{path}"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = c.get(&responses).send().await.unwrap();
    assert_eq!(r.status(), 405);
    // Still serving.
    assert_eq!(metrics_running(&c, &base).await, 0.0);
    let r = c
        .post(&completions)
        .json(&json!({"prompt": "still here", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_client_that_stops_sending_does_not_stall_the_pod() {
    let base = start(1 << 20).await;
    let c = client();
    // Declares 1000 bytes, sends 10, and keeps the connection open.
    let addr = base.trim_start_matches("http://").to_string();
    let mut stuck = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::AsyncWriteExt as _;
    stuck
        .write_all(
            b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{\"prompt\":",
        )
        .await
        .unwrap();
    assert_eq!(metrics_running(&c, &base).await, 0.0);
    let r = c
        .post(format!("{base}/v1/completions"))
        .json(&json!({"prompt": "x", "max_tokens": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(stuck);
}

/// Reads a Responses SSE body into `(event, data)` pairs, checking `type` matches `event`.
async fn response_events(resp: reqwest::Response) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for event in sse_blocks(resp).await {
        let mut lines = event.lines();
        let kind = lines
            .next()
            .unwrap()
            .strip_prefix("event: ")
            .unwrap()
            .to_string();
        let data: Value =
            serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], kind.as_str());
        out.push((kind, data));
    }
    out
}

#[tokio::test]
async fn responses_are_served_whole_and_streamed_with_usage() {
    let base = start(1 << 20).await;
    let c = client();
    let url = format!("{base}/v1/responses");
    let body = json!({
        "model": MODEL,
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hello there"}]}],
        "max_output_tokens": 6,
    });
    let r = c.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-served-by"], "pod");
    let whole: Value = r.json().await.unwrap();
    assert_eq!(whole["object"], "response");
    assert_eq!(whole["model"], MODEL);
    assert_eq!(whole["status"], "incomplete");
    assert_eq!(whole["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(whole["usage"]["output_tokens"], 6);
    let input_tokens = whole["usage"]["input_tokens"].as_u64().unwrap();
    assert!(input_tokens > 5);
    assert_eq!(whole["usage"]["total_tokens"], input_tokens + 6);
    let text = whole["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!text.is_empty());
    // The same prompt as a string `input` with the same instructions renders identically.
    let same = json!({"instructions": "Be brief.", "input": "Hello there", "max_output_tokens": 6});
    let v = post_json(&c, &url, &same).await;
    assert_eq!(v["usage"]["input_tokens"], input_tokens);
    assert_eq!(v["output"][0]["content"][0]["text"], text.as_str());
    // The cache served part of the second prompt.
    assert!(
        v["usage"]["input_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = c.post(&url).json(&streamed).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = response_events(r).await;
    let deltas: String = events
        .iter()
        .filter(|(k, _)| k == "response.output_text.delta")
        .map(|(_, v)| v["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, text);
    assert_eq!(events.first().unwrap().0, "response.created");
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "response.completed");
    assert_eq!(done["response"]["usage"]["output_tokens"], 6);
    assert_eq!(done["response"]["usage"]["input_tokens"], input_tokens);
    assert_eq!(
        done["response"]["output"][0]["content"][0]["text"],
        text.as_str()
    );
    for (i, (_, v)) in events.iter().enumerate() {
        assert_eq!(v["sequence_number"], i as u64);
    }
    // Without max_output_tokens the model stops by itself: status completed.
    let v = post_json(&c, &url, &json!({"input": "short"})).await;
    assert_eq!(v["status"], "completed");
    assert!(v["incomplete_details"].is_null());
}
