//! A request denied at its headers while the client is still uploading its body: the auth
//! plugin reads (and drops) the rest of the body before answering, so Debian 12's curl 7.88
//! over HTTP/2 prints the 401 with its OpenAI error body instead of `curl: (92) Stream error
//! in the HTTP/2 framing layer` (which it reports when Envoy resets the rest of the stream
//! after an early answer). Real Envoy, the real `curl` binary, h2c with prior knowledge.

mod common;

use common::*;
use infergate_e2e::envoy::{Envoy, GatewaySpec, WasmFilter};
use infergate_e2e::upstream::Upstream;
use serde_json::Value;
use std::process::Command;

const MODEL: &str = "Qwen/Qwen3-0.6B";
const KEY: &str = "sk-test-alice";

fn spec(pod: &Upstream) -> anyhow::Result<GatewaySpec> {
    let config = serde_json::json!({"methods": [{"name": "keys", "apiKey": {"keys": [
        {"sha256": digest(KEY), "identity": {"userid": "alice"}}]}}]});
    let affinity = serde_json::json!({"endpoints": [pod.addr.to_string()]});
    Ok(GatewaySpec::default()
        .with_filter(WasmFilter::plugin("auth", config.to_string())?)
        .with_filter(WasmFilter::plugin("affinity", affinity.to_string())?))
}

/// `curl` over HTTP/2 without TLS (prior knowledge): exit code, status, body.
fn curl(
    url: &str,
    key: Option<&str>,
    body: &std::path::Path,
) -> anyhow::Result<(i32, String, String)> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--http2-prior-knowledge",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
    ])
    .args(["-H", "content-type: application/json", "--data-binary"])
    .arg(format!("@{}", body.display()));
    if let Some(k) = key {
        cmd.args(["-H", &format!("authorization: Bearer {k}")]);
    }
    let out = cmd.arg(url).output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    Ok((
        out.status.code().unwrap_or(-1),
        status.to_string(),
        format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_large_upload_over_http2_shows_the_401_in_curl() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let envoy = Envoy::start(&spec(&pod)?).await?;
    let url = format!("{}/v1/chat/completions", envoy.http_url());
    let dir = std::env::temp_dir().join(format!("infergate-early-answer-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // 4 MiB: far more than fits in flight before Envoy's answer.
    let big = dir.join("big.json");
    let prompt = "x".repeat(4 * 1024 * 1024);
    std::fs::write(
        &big,
        serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 4})
            .to_string(),
    )?;
    // The allowed request: a small body (the allowed path is not what changed).
    let small = dir.join("small.json");
    std::fs::write(&small, chat_body(MODEL, false).to_string())?;
    let url2 = url.clone();
    let big2 = big.clone();
    let small2 = small.clone();
    let runs = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<_>> {
        let mut runs = Vec::new();
        for key in [None, Some("sk-wrong"), None, Some("sk-wrong"), None] {
            runs.push((key, curl(&url2, key, &big2)?));
        }
        runs.push((Some(KEY), curl(&url2, Some(KEY), &small2)?));
        Ok(runs)
    })
    .await??;
    for (key, (code, status, body)) in &runs {
        assert_eq!(*code, 0, "curl failed for {key:?}: {body}\n{}", envoy.log());
        if *key == Some(KEY) {
            assert_eq!(status, "200", "{body}");
            continue;
        }
        assert_eq!(status, "401", "{key:?}: {body}");
        let error: Value = serde_json::from_str(body)?;
        assert_eq!(error["error"]["type"], "authentication_error", "{body}");
        let code = if key.is_some() {
            "invalid_api_key"
        } else {
            "missing_credential"
        };
        assert_eq!(error["error"]["code"], code);
    }
    // Only the allowed request reached the pod, with its whole body.
    let seen = pod.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, std::fs::read(&small)?);
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.auth.denied.missing_credential")
            .await?,
        Some(3)
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.auth.denied.invalid_credential")
            .await?,
        Some(2)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
