//! The images through a real registry: Debian's `docker-registry` (CNCF distribution) on
//! loopback, pushed and pulled back with `skopeo`. The pulled `plugin.wasm` is byte-identical
//! to the build, the registry's digests are the layouts' digests, and `render --images`
//! names exactly those digests. With `podman` (runc) the pulled host-shim image runs and
//! answers a pick for a simulated vLLM pod.
//!
//! Uses `target/images` when `make images` wrote it (all five images, the real static
//! binaries); otherwise builds the three plugin images from the built `.wasm` into a temp dir.
//! Skipped, saying so, only when `docker-registry` or `skopeo` is not installed.

mod common;

use common::{free_port, scratch, Running};
use infergate_policies::images::{self, ImageRefs, Inputs, Pins, PLUGINS};
use infergate_policies::manifests::{EnvoyExtensionPolicy, EnvoyFilter, WasmPlugin};
use infergate_policies::oci::{self, Layout};
use infergate_policies::resources::Bundle;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn installed(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn tmp(name: &str) -> PathBuf {
    scratch("registry", name)
}

fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `docker-registry serve` on 127.0.0.1 with its storage in a temp dir.
fn start_registry(dir: &Path) -> (Running, u16) {
    let port = free_port();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("storage").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry");
    let running = Running(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "docker-registry did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (running, port)
}

/// skopeo with a policy that accepts unsigned images (the registry is our own).
fn skopeo(policy: &Path) -> Command {
    let mut c = Command::new("skopeo");
    c.arg("--policy").arg(policy);
    c
}

fn docs<T: DeserializeOwned>(text: &str) -> Vec<T> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| T::deserialize(d).unwrap_or_else(|e| panic!("{e}\n{text}")))
        .collect()
}

/// The layouts to push: `target/images` from `make images` when complete, else the plugin
/// images built here.
fn layouts() -> (PathBuf, bool) {
    let built = infergate_e2e::paths::target_dir().join("images");
    if Pins::read(&built).is_ok_and(|p| p.images.len() == 5) {
        // Only if they are of the plugins built now (make images ran after the last build).
        let fresh = PLUGINS.iter().all(|p| {
            let wasm = std::fs::read(infergate_e2e::paths::plugin_wasm(p).unwrap()).unwrap();
            Layout::read(&built.join(images::plugin_image(p)))
                .and_then(|l| l.last_layer_file("plugin.wasm"))
                .is_ok_and(|w| w == wasm)
        });
        if fresh {
            return (built, true);
        }
    }
    eprintln!("registry test: target/images is missing or stale (run `make images`): pushing the plugin images only");
    let out = tmp("layouts");
    let wasm_dir = infergate_e2e::paths::plugin_wasm("auth")
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    images::build(
        &Inputs {
            wasm_dir,
            host_shim: None,
            wasm_server: None,
            version: env!("CARGO_PKG_VERSION").into(),
            source: images::DEFAULT_SOURCE.into(),
        },
        &out,
    )
    .unwrap();
    (out, false)
}

#[tokio::test(flavor = "multi_thread")]
async fn images_round_trip_through_a_registry_and_render_names_their_digests() {
    for bin in ["docker-registry", "skopeo"] {
        if !installed(bin) {
            eprintln!("SKIPPED: `{bin}` is not installed (tools/setup.sh installs it from Debian); the registry round trip did not run");
            return;
        }
    }
    let work = tmp("work");
    let policy = work.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let (_registry, port) = start_registry(&work);
    let registry = format!("127.0.0.1:{port}/infergate");
    let (dir, all) = layouts();
    let pins = Pins::read(&dir).unwrap();
    let version = pins.version.clone();
    let http = reqwest::Client::new();

    for (name, pin) in &pins.images {
        // Push (skopeo refuses to change a digest with --preserve-digests).
        run(skopeo(&policy)
            .args([
                "copy",
                "--quiet",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:{version}", dir.join(name).display()))
            .arg(format!("docker://{registry}/{name}:{version}")));
        // The registry's own digest for the tag, from the distribution API.
        let r = http
            .head(format!(
                "http://127.0.0.1:{port}/v2/infergate/{name}/manifests/{version}"
            ))
            .header("accept", oci::MANIFEST_MEDIA_TYPE)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        let served = r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            served, pin.digest,
            "{name}: registry digest differs from the layout's"
        );
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            oci::MANIFEST_MEDIA_TYPE,
            "{name}"
        );
        // Pull back by digest into a fresh layout.
        let pulled = work.join("pulled").join(name);
        std::fs::create_dir_all(pulled.parent().unwrap()).unwrap();
        run(skopeo(&policy)
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{registry}/{name}@{}", pin.digest))
            .arg(format!("oci:{}:{version}", pulled.display())));
        let back = Layout::read(&pulled).unwrap();
        assert_eq!(back.digest, pin.digest, "{name}");
        if let Some(sha) = &pin.wasm_sha256 {
            let plugin = name.trim_start_matches("infergate-");
            let wasm = back.last_layer_file("plugin.wasm").unwrap();
            let built = std::fs::read(infergate_e2e::paths::plugin_wasm(plugin).unwrap()).unwrap();
            assert!(
                wasm == built,
                "{name}: pulled plugin.wasm differs from the build"
            );
            assert_eq!(oci::digest(&wasm), format!("sha256:{sha}"));
        }
    }
    // A tampered reference is refused by the registry.
    let r = http
        .get(format!(
            "http://127.0.0.1:{port}/v2/infergate/infergate-auth/manifests/sha256:{}",
            "0".repeat(64)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Render the guide's example against this registry: every reference is the pushed digest.
    let bundle = Bundle::load(&common::example(&["guide/base", "guide/token"])).unwrap();
    let mut opts = common::options();
    opts.images = ImageRefs {
        registry: registry.clone(),
        version: version.clone(),
        pins: Some(pins.clone()),
        host_shim: None,
    };
    let r = infergate_policies::render(&bundle, &opts).unwrap();
    let wps: Vec<WasmPlugin> = docs(&r.files["istio/wasmplugins.yaml"]);
    assert_eq!(wps.len(), r.plugins.len());
    assert!(wps.len() >= 2);
    for wp in &wps {
        let name = wp.metadata.name.as_str();
        let digest = &pins.images[name].digest;
        assert_eq!(wp.spec.url, format!("oci://{registry}/{name}@{digest}"));
        assert_eq!(
            wp.spec.sha256.as_deref(),
            Some(digest.trim_start_matches("sha256:"))
        );
    }
    let eep: Vec<EnvoyExtensionPolicy> = docs(&r.files["envoy-gateway/envoyextensionpolicy.yaml"]);
    for w in &eep[0].spec.wasm {
        let digest = &pins.images[&w.name].digest;
        assert_eq!(
            w.code["image"]["url"],
            format!("{registry}/{}@{digest}", w.name)
        );
        assert_eq!(
            w.code["image"]["sha256"],
            digest.trim_start_matches("sha256:")
        );
    }
    let ef: Vec<EnvoyFilter> = docs(&r.files["istio/envoyfilter-wasm.yaml"]);
    for p in &ef[0].spec.config_patches {
        let name = p.patch.value["name"].as_str().unwrap();
        let remote = &p.patch.value["typed_config"]["config"]["vm_config"]["code"]["remote"];
        let wasm = Layout::read(&work.join("pulled").join(name))
            .unwrap()
            .last_layer_file("plugin.wasm")
            .unwrap();
        assert_eq!(
            remote["sha256"].as_str().unwrap(),
            oci::digest(&wasm).trim_start_matches("sha256:"),
            "{name}"
        );
        assert!(remote["http_uri"]["uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{name}.wasm")));
    }
    if all {
        let shim = &r.files["host-shim/host-shim.yaml"];
        let want = format!(
            "image: {registry}/host-shim@{}",
            pins.images["host-shim"].digest
        );
        assert!(shim.contains(&want), "{want}\n{shim}");
        let files = &r.files["istio/wasm-files.yaml"];
        let want = format!(
            "image: {registry}/infergate-wasm-files@{}",
            pins.images["infergate-wasm-files"].digest
        );
        assert!(files.contains(&want), "{want}\n{files}");
        podman_pick(&registry, &pins, &policy).await;
    } else {
        eprintln!("registry test: host-shim and file-server images not built here; the podman check did not run");
    }
}

/// Runs the pulled host-shim image with podman and asks it for a pick.
async fn podman_pick(registry: &str, pins: &Pins, _policy: &Path) {
    if !installed("podman") || !installed("runc") {
        eprintln!("SKIPPED podman: podman or runc not installed");
        return;
    }
    let image = format!("{registry}/host-shim@{}", pins.images["host-shim"].digest);
    // Can this machine run a container at all? `host-shim --version` in the image says; a
    // container runtime that cannot start (cgroup layout, rlimits, no user namespaces) is the
    // machine's limit, not the image's, and is reported instead of failing the round trip.
    let probe = Command::new("podman")
        .args(["--runtime", "runc", "run", "--rm", "--tls-verify=false"])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ])
        .arg(&image)
        .arg("--version")
        .output();
    match probe {
        Ok(o) if o.status.success() => {
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(
                out.contains("host-shim"),
                "`host-shim --version` in the image printed {out:?}"
            );
        }
        Ok(o) => {
            eprintln!(
                "SKIPPED podman: this machine cannot run containers: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("SKIPPED podman: cannot start podman: {e}");
            return;
        }
    }
    let sim_port = free_port();
    let sim = Running(
        Command::new(infergate_e2e::paths::workspace_binary("vllm-sim").unwrap())
            .args(["--port", &sim_port.to_string(), "--name", "pod-a"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (http_port, grpc_port) = (free_port(), free_port());
    let name = format!("infergate-test-{}", std::process::id());
    // crun cannot run under this machine's hybrid cgroups; runc can. Limits at or below the
    // current hard limits (podman's defaults exceed them here).
    let mut cmd = Command::new("podman");
    cmd.args([
        "--runtime",
        "runc",
        "run",
        "--rm",
        "--name",
        &name,
        "--network",
        "host",
        "--tls-verify=false",
    ])
    .args([
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ])
    .arg(&image)
    .args([
        "--endpoints",
        &format!("127.0.0.1:{sim_port}"),
        "--http-addr",
        &format!("127.0.0.1:{http_port}"),
        "--grpc-addr",
        &format!("127.0.0.1:{grpc_port}"),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let container = Running(cmd.spawn().unwrap());
    let start = Instant::now();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{http_port}/v1/pick");
    let req = host_shim::scheduler::PickRequest {
        model: "Qwen/Qwen3-0.6B".into(),
        block_hashes: infergate_core::prefix::BlockHasher::default().hashes(
            "Qwen/Qwen3-0.6B",
            "hello from the container test ".repeat(40).as_bytes(),
        ),
        prompt_tokens: 300,
        ..Default::default()
    };
    let body = host_shim::server::wire::encode_pick(&req, 256, "");
    let picked = loop {
        if let Ok(r) = client.post(&url).body(body.clone()).send().await {
            if r.status() == 200 {
                break r.headers()["x-gateway-destination-endpoint"]
                    .to_str()
                    .unwrap()
                    .to_string();
            }
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = Command::new("podman")
                .args(["--runtime", "runc", "stop", "-t", "1", &name])
                .output();
            drop(container);
            panic!("no pick from the host-shim container within 90 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(picked, format!("127.0.0.1:{sim_port}"));
    eprintln!("podman: {image} answered a pick: {picked}");
    // The process in the container is not root.
    let o = run(Command::new("podman").args(["--runtime", "runc", "top", &name, "user"]));
    let users = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        users.contains("65532") && !users.contains("root"),
        "{users}"
    );
    let _ = Command::new("podman")
        .args(["--runtime", "runc", "stop", "-t", "1", &name])
        .output();
    drop(container);
    drop(sim);
}
