//! The plugins loaded from the built `.wasm` into a real Envoy: HTTPS end to end through the
//! ORIGINAL_DST cluster, configuration errors, and routing-header spoofing.

mod common;

use common::*;
use infergate_e2e::envoy::{Envoy, GatewaySpec, WasmFilter};
use infergate_e2e::tls;
use infergate_e2e::upstream::Upstream;
use serde_json::Value;

const MODEL: &str = "Qwen/Qwen3-0.6B";
const KEY: &str = "sk-test-alice";

fn auth_config() -> String {
    serde_json::json!({
        "methods": [{
            "name": "keys",
            "apiKey": {"keys": [{"sha256": digest(KEY), "identity": {"userid": "alice", "groups": ["premium"]}}]}
        }]
    })
    .to_string()
}

fn gateway(endpoints: &[&Upstream], tls: Option<tls::TlsFiles>) -> anyhow::Result<GatewaySpec> {
    let eps: Vec<String> = endpoints.iter().map(|u| u.addr.to_string()).collect();
    let mut spec = GatewaySpec::default()
        .with_filter(WasmFilter::plugin("auth", auth_config())?)
        .with_filter(WasmFilter::plugin("ratelimit", "{}")?)
        .with_filter(WasmFilter::plugin(
            "affinity",
            serde_json::json!({ "endpoints": eps }).to_string(),
        )?);
    if let Some(t) = tls {
        spec = spec.with_https(t);
    }
    Ok(spec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_chat_completion_reaches_the_pod_through_original_dst() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let dir = tempfile_dir();
    let tls = tls::generate(&dir)?;
    let envoy = Envoy::start(&gateway(&[&pod], Some(tls.clone()))?).await?;
    let client = https_client(&tls);
    let url = format!("{}/v1/chat/completions", envoy.https_url());
    assert!(url.starts_with("https://127.0.0.1:"));

    // Non-streaming, over TLS (HTTP/2 by ALPN).
    let resp = client
        .post(&url)
        .bearer_auth(KEY)
        .json(&chat_body(MODEL, false))
        .send()
        .await?;
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200, "{}", envoy.log());
    assert_eq!(resp.headers()["x-served-by"], "pod-1");
    let body: Value = resp.json().await?;
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["usage"]["completion_tokens"], 4);

    // Streaming.
    let resp = client
        .post(&url)
        .bearer_auth(KEY)
        .json(&chat_body(MODEL, true))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = sse_data(&resp.text().await?);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(events.len(), 5, "{events:?}");

    // What the pod saw: the gateway's identity and destination, not the credential.
    let seen = pod.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.path, "/v1/chat/completions");
        assert!(r.header("authorization").is_empty(), "credential forwarded");
        assert_eq!(r.header("x-infergate-user"), vec!["alice"]);
        assert_eq!(r.header("x-infergate-groups"), vec!["premium"]);
        assert_eq!(
            r.header("x-gateway-destination-endpoint"),
            vec![pod.addr.to_string().as_str()]
        );
    }
    assert_eq!(
        envoy.stat("wasmcustom.infergate.auth.allowed").await?,
        Some(2)
    );
    assert_eq!(
        envoy.stat("wasmcustom.infergate.affinity.picks").await?,
        Some(2)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_get_openai_style_401s_and_never_reach_a_pod() -> anyhow::Result<()>
{
    let pod = Upstream::start("pod-1", MODEL).await?;
    let envoy = Envoy::start(&gateway(&[&pod], None)?).await?;
    let client = http_client();
    let url = format!("{}/v1/chat/completions", envoy.http_url());
    let cases: Vec<(Option<&str>, &str, &str)> = vec![
        (None, "missing_credential", "Bearer realm=\"infergate\""),
        (
            Some("Bearer wrong-key"),
            "invalid_api_key",
            "Bearer realm=\"infergate\", error=\"invalid_token\"",
        ),
        (
            Some("Basic YWxpY2U6eA=="),
            "invalid_api_key",
            "Bearer realm=\"infergate\", error=\"invalid_token\"",
        ),
    ];
    for (auth, code, www) in cases {
        let mut req = client.post(&url).json(&chat_body(MODEL, false));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await?;
        assert_eq!(resp.status(), 401, "{auth:?}");
        assert_eq!(resp.headers()["www-authenticate"], www);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: Value = resp.json().await?;
        assert_eq!(body["error"]["code"], code);
        assert_eq!(body["error"]["type"], "authentication_error");
    }
    // Lower-case scheme is accepted; a duplicated Authorization header is not.
    let ok = client
        .post(&url)
        .header("authorization", format!("bearer {KEY}"))
        .json(&chat_body(MODEL, false))
        .send()
        .await?;
    assert_eq!(ok.status(), 200);
    let dup = client
        .post(&url)
        .header("authorization", format!("Bearer {KEY}"))
        .header("authorization", "Bearer other")
        .json(&chat_body(MODEL, false))
        .send()
        .await?;
    assert_eq!(dup.status(), 401);
    assert_eq!(
        pod.requests().len(),
        1,
        "only the authenticated request reaches the pod"
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.auth.denied.invalid_credential")
            .await?,
        Some(3)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_destination_headers_never_choose_the_upstream() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    // An address the gateway never picks: stands in for a metadata service or an internal API.
    let victim = Upstream::start("victim", MODEL).await?;
    let envoy = Envoy::start(&gateway(&[&pod], None)?).await?;
    let client = http_client();
    let url = format!("{}/v1/chat/completions", envoy.http_url());
    let spoofs: Vec<Vec<(&str, String)>> = vec![
        vec![("x-gateway-destination-endpoint", victim.addr.to_string())],
        vec![("X-Gateway-Destination-Endpoint", victim.addr.to_string())],
        vec![
            ("x-gateway-destination-endpoint", victim.addr.to_string()),
            ("x-gateway-destination-endpoint", victim.addr.to_string()),
        ],
        vec![(
            "x-gateway-destination-endpoint-fallbacks",
            victim.addr.to_string(),
        )],
        vec![(
            "x-gateway-destination-endpoint",
            "169.254.169.254:80".to_string(),
        )],
    ];
    for headers in &spoofs {
        let mut req = client
            .post(&url)
            .bearer_auth(KEY)
            .json(&chat_body(MODEL, false));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await?;
        assert_eq!(resp.status(), 200, "{headers:?}: {}", envoy.log());
        assert_eq!(resp.headers()["x-served-by"], "pod-1", "{headers:?}");
    }
    assert!(victim.requests().is_empty(), "a client chose its upstream");
    for r in pod.requests() {
        assert_eq!(
            r.header("x-gateway-destination-endpoint"),
            vec![pod.addr.to_string().as_str()]
        );
        assert!(r
            .header("x-gateway-destination-endpoint-fallbacks")
            .is_empty());
    }
    assert_eq!(
        envoy
            .stat("wasmcustom.infergate.affinity.spoofed_destination_removed")
            .await?,
        Some(spoofs.len() as u64)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_from_the_client_are_replaced() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let envoy = Envoy::start(&gateway(&[&pod], None)?).await?;
    let resp = http_client()
        .post(format!("{}/v1/chat/completions", envoy.http_url()))
        .bearer_auth(KEY)
        .header("x-infergate-user", "admin")
        .header("x-infergate-groups", "admins")
        .json(&chat_body(MODEL, false))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let seen = &pod.requests()[0];
    assert_eq!(seen.header("x-infergate-user"), vec!["alice"]);
    assert_eq!(seen.header("x-infergate-groups"), vec!["premium"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_plugin_configuration_is_reported_with_plugin_and_field() -> anyhow::Result<()> {
    let cases = [
        (
            "auth",
            r#"{"methods":[{"name":"k","apiKey":{"keys":[{"sha256":"my-plain-key","identity":{"userid":"a"}}]}}]}"#,
            "infergate-auth: invalid configuration: field `methods[0].apiKey.keys[0].sha256`",
        ),
        (
            "affinity",
            r#"{"endpoints":["127.0.0.1:8000","not-an-address"]}"#,
            "infergate-affinity: invalid configuration: field `endpoints[1]`",
        ),
        (
            "affinity",
            r#"{"endpoints":["127.0.0.1:8000"],"endpointz":1}"#,
            "unknown field `endpointz`",
        ),
        (
            "ratelimit",
            "{not json",
            "infergate-ratelimit: invalid configuration",
        ),
    ];
    for (plugin, config, expected) in cases {
        let spec = GatewaySpec::default().with_filter(WasmFilter::plugin(plugin, config)?);
        let err = match Envoy::start(&spec).await {
            Ok(_) => panic!("envoy accepted a bad {plugin} configuration: {config}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(expected), "expected `{expected}` in:\n{err}");
        assert!(err.contains("exited during start"), "{err}");
        if std::env::var_os("SHOW_ERR").is_some() {
            eprintln!("{err}");
        }
    }
    Ok(())
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("infergate-test-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    dir
}
