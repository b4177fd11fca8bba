//! Helpers shared by the integration tests.
#![allow(dead_code, unused_imports)]

pub mod configs;
pub mod gateway;
pub mod pods;
pub mod traffic;

pub use configs::*;
pub use gateway::*;
pub use pods::*;
pub use traffic::*;

use infergate_e2e::envoy::GatewaySpec;
use infergate_e2e::tls::TlsFiles;
use std::time::Duration;

/// An HTTPS client that trusts only the gateway's generated CA.
pub fn https_client(tls: &TlsFiles) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(tls.ca_pem().expect("ca").as_bytes()).expect("ca pem");
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// A plain HTTP client.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// SHA-256 hex of an API key, as the auth plugin's configuration stores it.
pub fn digest(key: &str) -> String {
    infergate_core::auth::apikey::KeyDigest::of(key.as_bytes()).to_hex()
}

/// `spec` with the chain most tests run: auth → ratelimit → affinity, with these configurations.
pub fn with_chain(
    spec: GatewaySpec,
    auth: &serde_json::Value,
    ratelimit: &serde_json::Value,
    affinity: &serde_json::Value,
) -> anyhow::Result<GatewaySpec> {
    GatewayBuilder::on(spec)
        .auth(auth.clone())
        .ratelimit(ratelimit.clone())
        .affinity(affinity.clone())
        .spec()
}

/// `GatewaySpec::default()` with the auth plugin (`auth`) in front of the affinity plugin
/// pinned to the one `pod`: the chain the auth suites run.
pub fn auth_to_pod(
    auth: &serde_json::Value,
    pod: std::net::SocketAddr,
) -> anyhow::Result<GatewaySpec> {
    Gateway::builder().auth(auth.clone()).pinned_to(pod).spec()
}

/// Seconds since the Unix epoch (JWT `iat`/`nbf`/`exp`).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A chat completion request body.
pub fn chat_body(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "Hello!"}],
        "max_tokens": 4,
        "stream": stream,
    })
}

/// `data:` payloads of an SSE body.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect()
}

/// Sends `n` concurrent chat completions with API key `key`, each on its own connection (so
/// every Envoy worker gets some), spread round-robin over `urls`; returns the status codes
/// (0 for a failed request).
pub async fn burst(urls: &[String], key: &str, n: usize) -> Vec<u16> {
    Sender::to_urls(urls.to_vec()).key(key).at_once(n).await
}
