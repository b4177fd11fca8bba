//! The Envoy fragments inside the rendered EnvoyFilters, placed into a bootstrap the way Istio
//! patches them, loaded by the real Envoy:
//!
//! - `envoy --mode validate` accepts every example's Wasm filters (with
//!   `allow_on_headers_stop_iteration`), the ORIGINAL_DST, host-shim, kube-apiserver, JWKS and
//!   `.wasm` file-server clusters and the listener merge, so a misspelt field fails here;
//! - a running Envoy loads each plugin through `vm_config.code.remote` (HTTP URI + sha256)
//!   from the real `infergate-wasm-server` and serves requests through the chain;
//! - a wrong sha256 makes Envoy refuse the plugin.

mod common;
mod pinned;

use common::{free_port, scratch, Running};
use infergate_e2e::upstream::Upstream;
use infergate_policies::manifests::EnvoyFilter;
use infergate_policies::Rendered;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tmp(name: &str) -> PathBuf {
    scratch("fragments", name)
}

fn envoy_filters(text: &str) -> Vec<EnvoyFilter> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

/// The patches of both EnvoyFilters applied to a one-listener bootstrap (Istio's order:
/// the Wasm filters inserted before the router, clusters added, route and HCM merged).
fn bootstrap(r: &Rendered, listener: u16, admin: u16) -> Value {
    let mut http_filters: Vec<Value> = Vec::new();
    for ef in envoy_filters(&r.files["istio/envoyfilter-wasm.yaml"]) {
        for p in ef.spec.config_patches {
            assert_eq!(p.apply_to, "HTTP_FILTER");
            assert_eq!(p.patch.operation, "INSERT_BEFORE");
            http_filters.push(p.patch.value);
        }
    }
    http_filters.push(
        json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}),
    );
    let mut route =
        json!({"match": {"prefix": "/"}, "route": {"cluster": "unrouted", "timeout": "60s"}});
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "gateway",
    });
    let mut clusters = vec![json!({"name": "unrouted", "type": "STATIC", "connect_timeout": "1s"})];
    for ef in envoy_filters(&r.files["istio/envoyfilter-clusters.yaml"]) {
        for p in ef.spec.config_patches {
            match (p.apply_to.as_str(), p.patch.operation.as_str()) {
                ("CLUSTER", "ADD") => clusters.push(p.patch.value),
                ("HTTP_ROUTE", "MERGE") => merge(&mut route, &p.patch.value),
                ("NETWORK_FILTER", "MERGE") => merge(&mut hcm, &p.patch.value["typed_config"]),
                other => panic!("unexpected patch {other:?}"),
            }
        }
    }
    hcm["route_config"] =
        json!({"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]});
    hcm["http_filters"] = json!(http_filters);
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener}},
                "per_connection_buffer_limit_bytes": 33554432,
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
            }],
            "clusters": clusters,
        },
    })
}

/// JSON merge as Istio's MERGE does for these values (objects merged, the rest replaced).
fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

fn envoy() -> PathBuf {
    infergate_e2e::paths::envoy_binary().unwrap()
}

/// `envoy --mode validate`: (success, output).
fn validate(config: &Value, dir: &Path) -> (bool, String) {
    let path = dir.join("validate.json");
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    let o = Command::new(envoy())
        .args([
            "--mode",
            "validate",
            "--use-dynamic-base-id",
            "-l",
            "error",
            "-c",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn every_examples_fragments_pass_envoy_validate() {
    let pins = pinned::pins("validate");
    let dir = tmp("validate");
    for ex in pinned::EXAMPLES {
        let r = pinned::render_pinned(ex, &pins);
        let config = bootstrap(&r, free_port(), free_port());
        // The fragments this test is about are all there.
        let text = config.to_string();
        for want in [
            "\"allow_on_headers_stop_iteration\":true",
            "\"infergate-wasm-files\"",
            "\"sha256\":\"",
        ] {
            assert!(text.contains(want), "{ex:?}: {want}");
        }
        let (ok, out) = validate(&config, &dir);
        assert!(ok, "{ex:?}: envoy refused the rendered fragments:\n{out}");
        assert!(out.contains("OK"), "{ex:?}: {out}");
    }
    // A typo in a field name is caught, not shipped.
    let r = pinned::render_pinned(pinned::EXAMPLES[0], &pins);
    let mut config = bootstrap(&r, free_port(), free_port());
    let filters = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_array_mut()
        .unwrap();
    let cfg = filters[0]["typed_config"]["config"]
        .as_object_mut()
        .unwrap();
    let v = cfg.remove("allow_on_headers_stop_iteration").unwrap();
    cfg.insert("allow_on_header_stop_iteration".into(), v);
    let (ok, out) = validate(&config, &dir);
    assert!(!ok);
    assert!(out.contains("allow_on_header_stop_iteration"), "{out}");
    // And so is a cluster field.
    let mut config = bootstrap(&r, free_port(), free_port());
    config["static_resources"]["clusters"][1]["original_dst_lb_confg"] = json!({});
    let (ok, out) = validate(&config, &dir);
    assert!(!ok);
    assert!(out.contains("original_dst_lb_confg"), "{out}");
}

/// The plugins as `infergate-wasm-server` serves them in the image (`infergate-<p>.wasm`).
fn wasm_files_dir() -> PathBuf {
    let dir = tmp("wasm-files");
    for p in infergate_policies::images::PLUGINS {
        std::fs::copy(
            infergate_e2e::paths::plugin_wasm(p).unwrap(),
            dir.join(format!("infergate-{p}.wasm")),
        )
        .unwrap();
    }
    dir
}

/// The real file server on a free port.
fn start_wasm_server(dir: &Path) -> (Running, u16) {
    let port = free_port();
    let child =
        Command::new(infergate_e2e::paths::workspace_binary("infergate-wasm-server").unwrap())
            .arg("--dir")
            .arg(dir)
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
    let running = Running(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "wasm server did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (running, port)
}

/// The bootstrap with the cluster-internal names pointed at this machine: the file server,
/// the pod (affinity fallback) and nothing else reachable.
fn local(r: &Rendered, wasm_port: u16, listener: u16, admin: u16) -> Value {
    let mut config = bootstrap(r, listener, admin);
    for c in config["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
    {
        if c["name"] == infergate_policies::wasm_files::CLUSTER {
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"] = json!({"address": "127.0.0.1", "port_value": wasm_port});
        } else if c["type"] == "STRICT_DNS" {
            // host-shim, kube-apiserver, JWKS: unreachable here (the plugins' fallbacks apply).
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"] = json!({"address": "127.0.0.1", "port_value": 1});
        }
    }
    let filters = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_array_mut()
        .unwrap();
    for f in filters.iter_mut() {
        if let Some(remote) = f.pointer_mut("/typed_config/config/vm_config/code/remote") {
            let uri = remote["http_uri"]["uri"].as_str().unwrap().to_string();
            let file = uri.rsplit('/').next().unwrap().to_string();
            remote["http_uri"]["uri"] = json!(format!("http://127.0.0.1:{wasm_port}/{file}"));
        }
    }
    config
}

struct Gateway {
    _envoy: Running,
    admin: u16,
    listener: u16,
    log: PathBuf,
}

impl Gateway {
    fn start(config: &Value, dir: &Path) -> Self {
        let path = dir.join("envoy.json");
        std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        let log = dir.join("envoy.log");
        let child = Command::new(envoy())
            .args([
                "--use-dynamic-base-id",
                "--concurrency",
                "1",
                "-l",
                "info",
                "--log-path",
            ])
            .arg(&log)
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let admin = config["admin"]["address"]["socket_address"]["port_value"]
            .as_u64()
            .unwrap() as u16;
        let listener = config["static_resources"]["listeners"][0]["address"]["socket_address"]
            ["port_value"]
            .as_u64()
            .unwrap() as u16;
        Gateway {
            _envoy: Running(child),
            admin,
            listener,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the admin answers `/ready` (`LIVE` once initialisation, including the
    /// remote code fetches, is over).
    async fn ready(&self, http: &reqwest::Client) -> String {
        let start = Instant::now();
        loop {
            if let Ok(r) = http
                .get(format!("http://127.0.0.1:{}/ready", self.admin))
                .send()
                .await
            {
                if r.status() == 200 {
                    return r.text().await.unwrap_or_default();
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "envoy not ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stats(&self, http: &reqwest::Client, filter: &str) -> String {
        http.get(format!(
            "http://127.0.0.1:{}/stats?filter={filter}",
            self.admin
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
    }
}

fn chat() -> Value {
    json!({"model": "Qwen/Qwen3-0.6B", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 4})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_loads_each_plugin_over_http_with_its_sha256_and_serves_through_them() {
    let pins = pinned::pins("remote");
    let pod = Upstream::start("pod-1", "Qwen/Qwen3-0.6B").await.unwrap();
    let mut opts = common::options();
    opts.endpoints = vec![pod.addr.to_string()];
    opts.images = infergate_policies::images::ImageRefs {
        pins: Some(pins.clone()),
        ..Default::default()
    };
    // The API-key tiers: all three plugins (auth, ratelimit, affinity).
    let bundle =
        infergate_policies::resources::Bundle::load(&common::example(&["api-key-tiers"])).unwrap();
    let r = infergate_policies::render(&bundle, &opts).unwrap();
    assert_eq!(r.plugins.len(), 3);
    let files = wasm_files_dir();
    let (_server, wasm_port) = start_wasm_server(&files);
    let dir = tmp("remote");
    let gw = Gateway::start(&local(&r, wasm_port, free_port(), free_port()), &dir);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    gw.ready(&http).await;
    // Each plugin fetched once over HTTP and running: the fetch succeeded for all three.
    let stats = gw.stats(&http, "wasm").await;
    assert!(
        stats.contains("wasm.remote_load_fetch_successes: 3"),
        "{stats}\n{}",
        gw.log()
    );
    assert!(
        stats.contains("wasm.remote_load_fetch_failures: 0"),
        "{stats}"
    );
    let url = format!("http://127.0.0.1:{}/v1/chat/completions", gw.listener);
    // Through auth (a tier key from the example's Secrets) and on to the pod.
    let ok = http
        .post(&url)
        .header("authorization", "APIKEY sk-free-alice-1234")
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "{}", gw.log());
    assert_eq!(ok.headers()["x-served-by"], "pod-1");
    // No key: the auth plugin loaded over HTTP answers 401.
    let denied = http.post(&url).json(&chat()).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    assert_eq!(pod.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sha256_makes_envoy_refuse_the_plugin() {
    let pins = pinned::pins("wrong-sha");
    let pod = Upstream::start("pod-1", "Qwen/Qwen3-0.6B").await.unwrap();
    let mut opts = common::options();
    opts.endpoints = vec![pod.addr.to_string()];
    opts.images = infergate_policies::images::ImageRefs {
        pins: Some(pins.clone()),
        ..Default::default()
    };
    let bundle =
        infergate_policies::resources::Bundle::load(&common::example(&["api-key-tiers"])).unwrap();
    let r = infergate_policies::render(&bundle, &opts).unwrap();
    let files = wasm_files_dir();
    let (_server, wasm_port) = start_wasm_server(&files);
    let mut config = local(&r, wasm_port, free_port(), free_port());
    // The auth plugin's sha256 is the ratelimit plugin's: a real digest, of other bytes.
    let wrong = pins.images["infergate-ratelimit"]
        .wasm_sha256
        .clone()
        .unwrap();
    let filters = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_array_mut()
        .unwrap();
    assert_eq!(filters[0]["name"], "infergate-auth");
    filters[0]["typed_config"]["config"]["vm_config"]["code"]["remote"]["sha256"] = json!(wrong);
    // No retries: the refusal is reported at once.
    filters[0]["typed_config"]["config"]["vm_config"]["code"]["remote"]
        .as_object_mut()
        .unwrap()
        .remove("retry_policy");
    let dir = tmp("wrong-sha");
    let gw = Gateway::start(&config, &dir);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // Envoy reports the failed fetch and never runs the auth plugin.
    let start = Instant::now();
    let stats = loop {
        let s = match http
            .get(format!("http://127.0.0.1:{}/stats?filter=wasm", gw.admin))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if s.contains("wasm.remote_load_fetch_failures: 1") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no fetch failure reported:\n{s}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        stats.contains("wasm.remote_load_fetch_successes: 2"),
        "{stats}"
    );
    // What Envoy reports: the fetch gave up, the fail-closed plugin did not load.
    let start = Instant::now();
    while !gw
        .log()
        .contains("Plugin configured to fail closed failed to load")
    {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = gw.log();
    assert!(
        log.contains("Retry limit exceeded for fetching data from remote data source"),
        "{log}"
    );
    assert!(
        log.contains("Plugin infergate-auth failed to load"),
        "{log}"
    );
    // The other two, with their right sha256, load and run (Envoy may also log a transient
    // "failed to load (in progress)" for them while their fetch is under way).
    assert!(
        log.contains("infergate-ratelimit: configuration loaded"),
        "{log}"
    );
    assert!(
        !log.contains("infergate-auth: configuration loaded"),
        "{log}"
    );
    // No request passes without the auth plugin: a valid key gets an error, not the pod.
    let url = format!("http://127.0.0.1:{}/v1/chat/completions", gw.listener);
    let resp = http
        .post(&url)
        .header("authorization", "APIKEY sk-free-alice-1234")
        .json(&chat())
        .send()
        .await
        .unwrap();
    // Fail closed: Envoy answers 503 itself.
    assert_eq!(resp.status(), 503, "{}", gw.log());
    assert!(pod.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasm_server_serves_only_its_wasm_files() {
    let files = wasm_files_dir();
    std::fs::write(files.join("notes.txt"), b"not served").unwrap();
    std::fs::create_dir_all(files.join("sub")).unwrap();
    std::fs::write(files.join("sub/x.wasm"), b"not served").unwrap();
    let (_server, port) = start_wasm_server(&files);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let r = http
        .get(format!("{base}/infergate-auth.wasm"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/wasm");
    let body = r.bytes().await.unwrap();
    assert!(body == std::fs::read(infergate_e2e::paths::plugin_wasm("auth").unwrap()).unwrap());
    let r = http
        .head(format!("{base}/infergate-auth.wasm"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], body.len().to_string());
    for path in [
        "/notes.txt",
        "/sub/x.wasm",
        "/sub%2fx.wasm",
        "/%2e%2e/etc/passwd",
        "/",
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = http
        .post(format!("{base}/infergate-auth.wasm"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Refuses to start on a folder without .wasm files, naming it.
    let empty = tmp("empty-wasm");
    let o = Command::new(infergate_e2e::paths::workspace_binary("infergate-wasm-server").unwrap())
        .arg("--dir")
        .arg(&empty)
        .args(["--addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no .wasm files") && err.contains(empty.to_str().unwrap()),
        "{err}"
    );
}
