//! A configuration reload with an invalid plugin configuration, in a real Envoy: the listener
//! (and its Wasm filters) comes from a file-based LDS source that Envoy watches, as an xDS
//! control plane would push it. A valid update takes effect; an invalid one (an API key digest
//! that is not 64 hex digits) is rejected by Envoy — the auth plugin refuses the configuration,
//! so the filter cannot be created — and the running configuration keeps serving unchanged.

mod common;

use common::*;
use infergate_e2e::envoy::{bootstrap, Envoy, GatewaySpec, ListenerSpec};
use infergate_e2e::upstream::Upstream;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const MODEL: &str = "Qwen/Qwen3-0.6B";

fn spec(port: u16, auth: &Value, pod: &Upstream) -> anyhow::Result<GatewaySpec> {
    let spec = GatewaySpec {
        listeners: vec![ListenerSpec {
            name: "http".into(),
            port,
            tls: None,
        }],
        ..GatewaySpec::default()
    };
    let rl = json!({"limits": []});
    let affinity = json!({"endpoints": [pod.addr.to_string()]});
    with_chain(spec, auth, &rl, &affinity)
}

/// The listeners of `spec`'s bootstrap as an LDS discovery response.
fn lds(spec: &GatewaySpec, version: u32) -> Value {
    let boot = bootstrap::render(spec);
    let mut resources = boot["static_resources"]["listeners"].clone();
    for l in resources.as_array_mut().into_iter().flatten() {
        l["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
    }
    json!({"version_info": version.to_string(), "resources": resources})
}

/// Replaces the watched file atomically (Envoy reloads on the rename).
fn publish(path: &Path, v: &Value) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

async fn wait_stat(envoy: &Envoy, name: &str, want: u64) -> anyhow::Result<()> {
    for _ in 0..200 {
        if envoy.stat(name).await?.unwrap_or(0) >= want {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{name} never reached {want}:\n{}", envoy.log())
}

async fn status(envoy: &Envoy, key: Option<&str>) -> anyhow::Result<u16> {
    let mut req = http_client()
        .post(format!("{}/v1/chat/completions", envoy.http_url()))
        .json(&chat_body(MODEL, false));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    Ok(req.send().await?.status().as_u16())
}

fn keys(users: &[(&str, &str)]) -> Value {
    let keys: Vec<Value> = users
        .iter()
        .map(|(key, user)| json!({"sha256": digest(key), "identity": {"userid": user}}))
        .collect();
    json!({"methods": [{"name": "keys", "apiKey": {"keys": keys}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_is_rejected_and_the_running_configuration_stays() -> anyhow::Result<()> {
    let pod = Upstream::start("pod-1", MODEL).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = std::env::temp_dir().join(format!("infergate-lds-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let lds_path: PathBuf = dir.join("lds.json");
    let first = spec(port, &keys(&[("alice-key", "alice")]), &pod)?;
    publish(&lds_path, &lds(&first, 1))?;
    let mut boot = bootstrap::render(&first);
    if let Some(s) = boot["static_resources"].as_object_mut() {
        s.remove("listeners");
    }
    // xDS sources need a node identity.
    boot["node"] = json!({"id": "infergate-reload-test", "cluster": "infergate"});
    boot["dynamic_resources"] = json!({"lds_config": {
        "path_config_source": {"path": lds_path.display().to_string()},
        "resource_api_version": "V3"}});
    let envoy = Envoy::start_rendered(&first, &boot).await?;
    assert_eq!(
        status(&envoy, Some("alice-key")).await?,
        200,
        "{}",
        envoy.log()
    );
    assert_eq!(status(&envoy, Some("bob-key")).await?, 401);

    // A valid update: bob's key is added, and works once Envoy has applied it.
    let second = spec(
        port,
        &keys(&[("alice-key", "alice"), ("bob-key", "bob")]),
        &pod,
    )?;
    publish(&lds_path, &lds(&second, 2))?;
    wait_stat(&envoy, "listener_manager.lds.update_success", 2).await?;
    wait_stat(&envoy, "listener_manager.listener_modified", 1).await?;
    let mut bob = 401;
    for _ in 0..100 {
        bob = status(&envoy, Some("bob-key")).await?;
        if bob == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bob, 200, "{}", envoy.log());

    // An invalid update (a digest that is not 64 hex digits; alice removed): rejected.
    let bad = json!({"methods": [{"name": "keys", "apiKey": {"keys": [
        {"sha256": "not-a-digest", "identity": {"userid": "mallory"}}]}}]});
    publish(&lds_path, &lds(&spec(port, &bad, &pod)?, 3))?;
    wait_stat(&envoy, "listener_manager.lds.update_rejected", 1).await?;
    assert!(
        envoy.log().contains("sha256"),
        "Envoy's log names the offending field"
    );
    // The running configuration stays: both keys still work, no key is still a 401.
    let mut codes = Vec::new();
    for key in [Some("alice-key"), Some("bob-key"), None, Some("alice-key")] {
        codes.push(status(&envoy, key).await?);
    }
    assert_eq!(codes, vec![200, 200, 401, 200]);
    assert_eq!(
        envoy
            .stat("listener_manager.lds.update_success")
            .await?
            .unwrap_or(0),
        2
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
