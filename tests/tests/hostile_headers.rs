//! Header values that are not UTF-8 (obs-text bytes, which HTTP/1.1 and Envoy accept) in a
//! real Envoy running the three plugins. proxy-wasm's string header getters unwrap a UTF-8
//! conversion and would panic the plugin's VM on such a request — after which every later
//! request on that worker fails. The plugins read headers through `infergate_glue::host`,
//! which reads bytes and converts them lossily: the request is decided like any other and the
//! gateway keeps serving.

mod common;

use common::*;
use infergate_e2e::envoy::{Envoy, GatewaySpec};
use infergate_e2e::upstream::Upstream;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MODEL: &str = "Qwen/Qwen3-0.6B";
const KEY: &str = "sk-test-alice";

async fn gateway(pod: &Upstream) -> anyhow::Result<Envoy> {
    let auth = json!({"methods": [{"name": "keys", "apiKey": {"keys": [
        {"sha256": digest(KEY), "identity": {"userid": "alice"}}]}}]});
    // A limit counted per value of a client header: the rate-limit plugin reads it.
    let rl = json!({"limits": [{"name": "per-tenant", "rates": [{"limit": 100, "window": "1h"}],
        "counters": ["request.headers.x-tenant"]}]});
    let affinity = json!({"endpoints": [pod.addr.to_string()]});
    Envoy::start(&with_chain(GatewaySpec::default(), &auth, &rl, &affinity)?).await
}

/// One HTTP/1.1 request written byte for byte (`extra` goes in verbatim after the fixed
/// headers); the status code of the answer.
async fn raw_post(envoy: &Envoy, extra: &[u8]) -> anyhow::Result<u16> {
    let url = envoy.http_url();
    let addr = url.strip_prefix("http://").unwrap_or(&url);
    let mut stream = TcpStream::connect(addr).await?;
    let body = chat_body(MODEL, false).to_string();
    let mut req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(extra);
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body.as_bytes());
    stream.write_all(&req).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP answer: {text:?}"))?;
    Ok(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_header_values_are_decided_and_the_plugins_keep_serving() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let envoy = gateway(&pod).await?;
    let auth = format!("authorization: Bearer {KEY}\r\n");
    let with = |extra: &[u8]| [auth.as_bytes(), extra].concat();

    // Latin-1 bytes in headers every plugin reads: any header (auth reads them all), the
    // rate-limit counter's header, and a spoofed destination (affinity removes it).
    let cases: [(&str, Vec<u8>, u16); 4] = [
        ("any header", with(b"x-note: caf\xe9\r\n"), 200),
        ("counter header", with(b"x-tenant: \xff\xfe\r\n"), 200),
        (
            "destination header",
            with(b"x-gateway-destination-endpoint: 10.0.0.1:80\xff\r\n"),
            200,
        ),
        // The credential itself is not UTF-8: it is no known key.
        (
            "credential",
            b"authorization: Bearer sk-\xe9\r\n".to_vec(),
            401,
        ),
    ];
    for (what, extra, want) in &cases {
        let got = raw_post(&envoy, extra).await?;
        assert_eq!(got, *want, "{what}:\n{}", envoy.log());
    }
    // And the gateway still serves ordinary requests afterwards.
    for _ in 0..4 {
        assert_eq!(raw_post(&envoy, auth.as_bytes()).await?, 200);
    }
    // Every allowed request reached the pod with the gateway's destination, never the
    // client's, and no plugin panicked.
    let seen = pod.requests();
    assert_eq!(seen.len(), 7, "{}", envoy.log());
    let log = envoy.log();
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.affinity.spoofed_destination_removed")
            .await?,
        Some(1)
    );
    Ok(())
}
