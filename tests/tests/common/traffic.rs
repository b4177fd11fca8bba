//! Client traffic through a gateway: chat completions sent in turn or all at once
//! ([`Sender`], [`concurrently`]), answers counted by status ([`Tally`]), and the plugins'
//! counters and headers read back ([`plugin_stat`], [`remaining_tokens`]).

use super::{chat_body, MODEL};
use infergate_e2e::envoy::Envoy;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The chat completions URL of `envoy`'s plain-HTTP listener.
pub fn chat_url(envoy: &Envoy) -> String {
    format!("{}/v1/chat/completions", envoy.http_url())
}

/// Runs `f(0)`, …, `f(n - 1)` concurrently; their outputs in order.
pub async fn concurrently<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    futures_util::future::join_all((0..n).map(f)).await
}

/// Chat completions to one or more gateways (round robin), with one API key, extra headers
/// and a body; each 500 can be checked for a documented error code.
#[derive(Clone)]
pub struct Sender {
    urls: Vec<String>,
    key: Option<String>,
    headers: Vec<(String, String)>,
    body: Value,
    code_of_500: Option<String>,
}

impl Sender {
    /// Requests to `envoy`'s chat completions URL with [`chat_body`] of [`MODEL`].
    pub fn to(envoy: &Envoy) -> Self {
        Self::to_urls(vec![chat_url(envoy)])
    }

    /// Requests spread round robin over `urls`.
    pub fn to_urls(urls: Vec<String>) -> Self {
        Self {
            urls,
            key: None,
            headers: Vec::new(),
            body: chat_body(MODEL, false),
            code_of_500: None,
        }
    }

    /// Requests round robin over the gateways `envoys`.
    pub fn to_all(envoys: &[&Envoy]) -> Self {
        Self::to_urls(envoys.iter().map(|e| chat_url(e)).collect())
    }

    /// Sends `Authorization: Bearer <key>`.
    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(key.to_string());
        self
    }

    /// Adds the request headers `headers`.
    pub fn headers(mut self, headers: &[(&str, &str)]) -> Self {
        self.headers
            .extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Sends `body` instead of the default chat completion.
    pub fn body(mut self, body: Value) -> Self {
        self.body = body;
        self
    }

    /// Asserts that every 500 answered carries the OpenAI-style error code `code`.
    pub fn every_500_is(mut self, code: &str) -> Self {
        self.code_of_500 = Some(code.to_string());
        self
    }

    /// The `i`-th request (to `urls[i % len]`) on `client`.
    fn request(&self, client: &reqwest::Client, i: usize) -> reqwest::RequestBuilder {
        let mut req = client
            .post(&self.urls[i % self.urls.len()])
            .json(&self.body);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        req
    }

    /// The status of a sent request (0: no answer), checking a 500's error code.
    async fn status(&self, sent: reqwest::Result<reqwest::Response>) -> u16 {
        let Ok(r) = sent else { return 0 };
        let status = r.status().as_u16();
        if let (500, Some(code)) = (status, &self.code_of_500) {
            let v: Value = r.json().await.unwrap_or_default();
            assert_eq!(v["error"]["code"], code.as_str(), "{v}");
        }
        status
    }

    /// Sends the `i`-th request and returns the response.
    pub async fn send(&self, i: usize) -> reqwest::Result<reqwest::Response> {
        self.request(&super::http_client(), i).send().await
    }

    /// Sends `n` requests one after the other; their statuses (0: no answer).
    pub async fn in_turn(&self, n: usize) -> Vec<u16> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(self.status(self.send(i).await).await);
        }
        out
    }

    /// Sends `n` requests at once, each on its own connection (so every Envoy worker gets
    /// some); their statuses in order (0: no answer).
    pub async fn at_once(&self, n: usize) -> Vec<u16> {
        concurrently(n, |i| async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client");
            self.status(self.request(&client, i).send().await).await
        })
        .await
    }
}

/// How many answers had each status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally(BTreeMap<u16, usize>);

impl Tally {
    /// Counts `statuses`.
    pub fn of(statuses: &[u16]) -> Self {
        let mut by = BTreeMap::new();
        for s in statuses {
            *by.entry(*s).or_insert(0) += 1;
        }
        Self(by)
    }

    /// How many answers were `status`.
    pub fn count(&self, status: u16) -> usize {
        self.0.get(&status).copied().unwrap_or(0)
    }
}

/// The plugin counter `wasmcustom.infergate.<plugin>.<name>`, 0 when absent or unreadable.
pub async fn plugin_stat(envoy: &Envoy, plugin: &str, name: &str) -> u64 {
    envoy
        .stat(&format!("wasmcustom.infergate.{plugin}.{name}"))
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// The `X-RateLimit-Remaining-Tokens` header as a number.
pub fn remaining_tokens(r: &reqwest::Response) -> u64 {
    r.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("remaining header")
}
