//! What the simulator's test files share: an in-process pod ([`SimPod`]), a client bounded
//! against hangs, JSON and text requests, SSE bodies split into events, and Prometheus text
//! parsed back.
#![allow(dead_code)]

use futures_util::StreamExt;
use infergate_sim::cost::QWEN3_0_6B_H200;
use infergate_sim::engine::EngineConfig;
use infergate_sim::server::{serve, ServerConfig};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use tokio::net::TcpListener;

/// The model the pods serve unless told otherwise.
pub const MODEL: &str = "Qwen/Qwen3-0.6B";
/// Only a guard against a hang; no test measures time.
pub const HANG_GUARD: Duration = Duration::from_secs(30);

/// An in-process `vllm-sim` pod being described; [`SimPod::start`] serves it on a free port.
pub struct SimPod(ServerConfig);

impl SimPod {
    /// A pod of [`MODEL`] (Qwen3-0.6B on an H200) answering `x-served-by: <name>`, its
    /// timings 50x faster, 20 ± 50% output tokens by default, bodies up to 1 MiB.
    pub fn named(name: &str) -> Self {
        Self(ServerConfig {
            model: MODEL.into(),
            served_by: Some(name.into()),
            time_scale: 50.0,
            engine: EngineConfig::from_profile(&QWEN3_0_6B_H200),
            default_output_tokens: 20,
            output_spread: 0.5,
            max_body_bytes: 1 << 20,
        })
    }

    /// Serves `model` instead.
    pub fn model(mut self, model: &str) -> Self {
        self.0.model = model.into();
        self
    }

    /// Runs the model's timings `scale` times faster.
    pub fn time_scale(mut self, scale: f64) -> Self {
        self.0.time_scale = scale;
        self
    }

    /// Answers `tokens` output tokens by default, spread by the fraction `spread`.
    pub fn output_tokens(mut self, tokens: u32, spread: f64) -> Self {
        self.0.default_output_tokens = tokens;
        self.0.output_spread = spread;
        self
    }

    /// Refuses bodies over `bytes`.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.0.max_body_bytes = bytes;
        self
    }

    /// The server configuration as described.
    pub fn config(self) -> ServerConfig {
        self.0
    }

    /// Serves it on a free local port; its base URL (`http://127.0.0.1:port`).
    pub async fn start(self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, self.0));
        format!("http://{addr}")
    }
}

/// A client whose every request ends within [`HANG_GUARD`].
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(HANG_GUARD)
        .build()
        .unwrap()
}

/// POSTs `body` as JSON to `url`; the answer's JSON.
pub async fn post_json(c: &reqwest::Client, url: &str, body: &Value) -> Value {
    c.post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// GETs `url`; the answer's JSON.
pub async fn get_json(c: &reqwest::Client, url: &str) -> Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

/// GETs `url`; the answer's text.
pub async fn get_text(c: &reqwest::Client, url: &str) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

/// Reads an SSE body into its events (each the text before a blank line), checking that
/// nothing is left after the last one.
pub async fn sse_blocks(resp: reqwest::Response) -> Vec<String> {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            out.push(buf.drain(..end + 2).collect());
        }
    }
    assert!(buf.is_empty(), "trailing partial event {buf:?}");
    out
}

/// The `/metrics` text of the pod at `base`.
pub async fn metrics_text(c: &reqwest::Client, base: &str) -> String {
    get_text(c, &format!("{base}/metrics")).await
}

/// Parses Prometheus text into `name{labels}` → value, checking every sample line's syntax.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (key, value) = line.rsplit_once(' ').unwrap();
        let name_end = key.find('{').unwrap_or(key.len());
        assert!(
            key[..name_end]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        if name_end < key.len() {
            assert!(key.ends_with('}'), "{line}");
        }
        out.insert(key.to_string(), value.parse::<f64>().unwrap());
    }
    out
}
