//! The gateway the compatibility suites run: auth → ratelimit (Wasm) → host-shim as the
//! InferencePool's ext_proc Endpoint Picker in `FULL_DUPLEX_STREAMED` → ORIGINAL_DST, with
//! Envoy's `allow_on_headers_stop_iteration` set (hold mode) or absent (no-hold mode), on
//! whichever Envoy `ENVOY_BIN` names.
#![allow(dead_code)]

use super::common;
use infergate_e2e::child::HostShim;
use infergate_e2e::envoy::Envoy;
use infergate_e2e::upstream::Upstream;
use serde_json::{json, Value};
use std::time::Duration;

/// The model the pods serve.
pub const MODEL: &str = "Qwen/Qwen3-0.6B";
/// alice: group `premium`, may use [`MODEL`].
pub const ALICE: &str = "sk-alice-compat";
/// bob: group `free`, authenticated but allowed no model.
pub const BOB: &str = "sk-bob-compat";
/// Every client request is bounded by this; a request that reaches it counts as a hang.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether the Wasm filters may hold request headers while they read the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Envoy's field set, plugins told so (`allowOnHeadersStopIteration: true`).
    Hold,
    /// Field absent, plugins in their default no-hold mode.
    NoHold,
}

impl Mode {
    /// Both modes, hold first.
    pub const ALL: [Mode; 2] = [Mode::Hold, Mode::NoHold];

    /// `field on` / `field off`, as the results table says it.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Hold => "field on (hold)",
            Mode::NoHold => "field off (no-hold)",
        }
    }
}

/// The auth plugin: two API keys; POSTs need group `premium` and model [`MODEL`] (a rule on
/// the body), `GET /v1/models` is open to every authenticated caller.
pub fn auth_config() -> Value {
    json!({
        "methods": [{"name": "keys", "apiKey": {"keys": [
            {"sha256": common::digest(ALICE), "identity": {"userid": "alice", "groups": ["premium"]}},
            {"sha256": common::digest(BOB), "identity": {"userid": "bob", "groups": ["free"]}}]}}],
        "authorization": {"rules": [
            {"groups": ["premium"], "httpMethods": ["POST"], "models": [MODEL]},
            {"httpMethods": ["GET"], "pathPrefixes": ["/v1/models"]}
        ]}
    })
}

/// The rate limiter: a per-user token budget (charged from the body's estimate).
pub fn ratelimit_config(token_budget: u64) -> Value {
    json!({
        "limits": [{"name": "tokens", "rates": [{"limit": token_budget, "window": "1h"}],
                    "counters": ["auth.identity.userid"], "counts": "tokens"}],
        "responseHeaders": "xRatelimit",
        "maxBodyBytes": 16 * 1024 * 1024
    })
}

/// A running chain and its parts.
pub struct Chain {
    /// The model-server pods.
    pub pods: Vec<Upstream>,
    /// host-shim, the Endpoint Picker.
    pub shim: HostShim,
    /// The gateway.
    pub envoy: Envoy,
}

impl Chain {
    /// Starts `pods` pods, host-shim and Envoy in `mode` with a token budget per user.
    pub async fn start(mode: Mode, pods: usize, token_budget: u64) -> anyhow::Result<Self> {
        let ups = common::pods(pods).await?;
        let shim = common::shim_over(&common::endpoints(&ups)).await?;
        // The ext_proc filter is rendered after the Wasm filters.
        let envoy = common::Gateway::builder()
            .ext_proc(shim.grpc, "FULL_DUPLEX_STREAMED")
            .hold_headers(mode == Mode::Hold)
            .auth(auth_config())
            .ratelimit(ratelimit_config(token_budget))
            .start()
            .await?;
        Ok(Self {
            pods: ups,
            shim,
            envoy,
        })
    }

    /// The chat completions URL.
    pub fn url(&self) -> String {
        format!("{}/v1/chat/completions", self.envoy.http_url())
    }

    /// Requests every pod recorded (complete bodies only: an abandoned upstream request is not
    /// recorded).
    pub fn forwarded(&self) -> usize {
        self.pods.iter().map(|p| p.requests().len()).sum()
    }

    /// Every recorded request body, in no particular order.
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.pods
            .iter()
            .flat_map(|p| p.requests())
            .map(|r| r.body.to_vec())
            .collect()
    }
}

/// A client with the bounded timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .expect("client")
}

/// What a bounded request ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A status code and the body.
    Status(u16, String),
    /// The client timeout passed: the request hung.
    Hung,
    /// The connection failed otherwise.
    Failed(String),
}

impl Answer {
    /// The status, or 0.
    pub fn status(&self) -> u16 {
        match self {
            Answer::Status(s, _) => *s,
            _ => 0,
        }
    }
}

/// Sends a request and classifies how it ended.
pub async fn answer(req: reqwest::RequestBuilder) -> Answer {
    match req.send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            match r.text().await {
                Ok(t) => Answer::Status(s, t),
                Err(e) if e.is_timeout() => Answer::Hung,
                Err(e) => Answer::Failed(e.to_string()),
            }
        }
        Err(e) if e.is_timeout() => Answer::Hung,
        Err(e) => Answer::Failed(format!("{e:#}")),
    }
}

/// A chat body whose user message is `content`.
pub fn chat(model: &str, max_tokens: u64, content: &str) -> Value {
    json!({"model": model, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": content}]})
}

/// The Envoy version running (`ENVOY_BIN` or the default), e.g. `1.40.0`.
pub fn envoy_version() -> String {
    let Ok(bin) = infergate_e2e::paths::envoy_binary() else {
        return "unknown".into();
    };
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        })
        .unwrap_or_default();
    // `envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL`
    out.split('/')
        .find(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .unwrap_or("unknown")
        .to_string()
}
