//! host-shim as the EPP in a cluster, with the Kubernetes API played by the list/watch
//! stand-in (`infergate_e2e::kube_api`: the protocol, not a cluster): started with the
//! guide's scheduler arguments, behind the real Envoy (ext_proc, and the affinity plugin's
//! pick call), it keeps serving while pods are added, become unready, are deleted and are
//! replaced, and no request sent after a removal has reached host-shim goes to the removed
//! pod.

mod common;

use common::*;
use infergate_e2e::child::ChildProcess;
use infergate_e2e::kube_api::{pool_v1alpha2, KubeApi, PodSpec};
use infergate_e2e::upstream::Upstream;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MODEL: &str = "Qwen/Qwen3-0.6B";
const NS: &str = "my-first-model";
const POOL: &str = "qwen3-0-6b-inference-pool";
const APP: &str = "qwen3-0-6b";

/// The scheduler container's arguments in the guide's LLMInferenceService, templates
/// expanded.
fn guide_args() -> Vec<String> {
    let config = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\n- type: kv-cache-utilization-scorer\n- type: prefix-cache-scorer\nschedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: queue-scorer\n    weight: 2\n  - pluginRef: kv-cache-utilization-scorer\n    weight: 2\n  - pluginRef: prefix-cache-scorer\n    weight: 3\n";
    [
        "--pool-group",
        "inference.networking.x-k8s.io",
        "--pool-name",
        POOL,
        "--pool-namespace",
        NS,
        "--config-text",
        config,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

struct Shim {
    _process: ChildProcess,
    http: SocketAddr,
    grpc: SocketAddr,
    health: SocketAddr,
    _dir: tempfile_dir::Dir,
}

mod tempfile_dir {
    /// A scratch directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    pub fn new(tag: &str) -> Dir {
        // No `:` in the path: KUBECONFIG is a colon-separated list.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let p = std::env::temp_dir().join(format!(
            "infergate-discovery-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

/// Starts the host-shim binary with `args` (plus ephemeral ports), KUBECONFIG pointing at
/// `api`.
async fn start_shim(api: &KubeApi, args: Vec<String>, tag: &str) -> anyhow::Result<Shim> {
    let dir = tempfile_dir::new(tag);
    let kubeconfig = api.write_kubeconfig(&dir.0, NS)?;
    let bin = infergate_e2e::paths::workspace_binary("host-shim")?;
    let mut full = vec![
        format!("KUBECONFIG={}", kubeconfig.display()),
        bin.display().to_string(),
    ];
    full.extend(args);
    // Ports: ephemeral instead of 9002/9003/9090 so tests can run side by side.
    for a in [
        "--grpc-port",
        "0",
        "--grpc-health-port",
        "0",
        "--metrics-port",
        "0",
    ] {
        full.push(a.into());
    }
    let (process, addrs) = ChildProcess::spawn_announcing(
        "host-shim",
        std::path::Path::new("/usr/bin/env"),
        &full,
        &[
            "http listening on ",
            "grpc listening on ",
            "health listening on ",
        ],
    )
    .await?;
    let p = |i: usize| -> anyhow::Result<SocketAddr> {
        let a: SocketAddr = addrs[i].parse()?;
        Ok(SocketAddr::from(([127, 0, 0, 1], a.port())))
    };
    Ok(Shim {
        http: p(0)?,
        grpc: p(1)?,
        health: p(2)?,
        _process: process,
        _dir: dir,
    })
}

/// Model-server pods on `127.0.0.{20+i}` sharing one port.
async fn pods(n: u8) -> anyhow::Result<(u16, Vec<Upstream>)> {
    'retry: for _ in 0..20 {
        let first = Upstream::start_on("p0", MODEL, "127.0.0.20:0".parse()?).await?;
        let port = first.addr.port();
        let mut out = vec![first];
        for i in 1..n {
            match Upstream::start_on(&format!("p{i}"), MODEL, ip_port(i, port)).await {
                Ok(u) => out.push(u),
                Err(_) => continue 'retry,
            }
        }
        return Ok((port, out));
    }
    anyhow::bail!("no common free port")
}

fn ip(i: u8) -> String {
    format!("127.0.0.{}", 20 + i)
}

fn ip_port(i: u8, port: u16) -> SocketAddr {
    SocketAddr::new(ip(i).parse().unwrap(), port)
}

async fn ready_endpoints(shim: &Shim) -> Vec<String> {
    let Ok(r) = http_client()
        .get(format!("http://{}/v1/endpoints", shim.http))
        .send()
        .await
    else {
        return Vec::new();
    };
    let text = r.text().await.unwrap_or_default();
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    for _ in 0..1500 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

/// One response seen by the load loop.
#[derive(Debug, Clone)]
struct Seen {
    sent: Instant,
    status: u16,
    served_by: String,
}

/// Requests sent continuously through `url` from 4 loops until `stop`.
fn load(
    url: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Arc<Mutex<Vec<Seen>>>, Vec<tokio::task::JoinHandle<()>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (url, stop, seen) = (url.clone(), stop.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let client = http_client();
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let body = json!({"model": MODEL, "max_tokens": 2, "messages": [
                    {"role": "system", "content": format!("Tenant {} context. ", n % 7).repeat(40)},
                    {"role": "user", "content": format!("worker {worker} question {n}")}]});
                let sent = Instant::now();
                let (status, served_by) = match client.post(&url).json(&body).send().await {
                    Ok(r) => (
                        r.status().as_u16(),
                        r.headers()
                            .get("x-served-by")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string(),
                    ),
                    Err(_) => (0, String::new()),
                };
                seen.lock().unwrap().push(Seen {
                    sent,
                    status,
                    served_by,
                });
            }
        }));
    }
    (seen, tasks)
}

/// The churn scenario against a gateway at `url`; returns what the load saw.
async fn churn(api: &KubeApi, shim: &Shim, port: u16, url: String) -> anyhow::Result<()> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (seen, tasks) = load(url, stop.clone());
    let served = |name: &str, after: Instant| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|s| s.served_by == name && s.sent >= after)
            .count()
    };
    // Wait for traffic on the three first pods.
    until("p0..p2 serve", async || {
        (0..3).all(|i| served(&format!("p{i}"), Instant::now() - Duration::from_secs(3600)) > 0)
    })
    .await;

    // 1. p1 turns unready.
    let mut p1 = PodSpec::ready(NS, "p1", APP, &ip(1));
    p1.ready = false;
    api.apply_pod(&p1);
    let p1_addr = ip_port(1, port).to_string();
    until("p1 out of host-shim", async || {
        !ready_endpoints(shim).await.contains(&p1_addr)
    })
    .await;
    let p1_out = Instant::now();

    // 2. A new pod p3 is added: it gets picks.
    api.apply_pod(&PodSpec::ready(NS, "p3", APP, &ip(3)));
    until("p3 serves", async || served("p3", p1_out) > 0).await;

    // 3. p2 is deleted.
    api.delete_pod(NS, "p2");
    let p2_addr = ip_port(2, port).to_string();
    until("p2 out of host-shim", async || {
        !ready_endpoints(shim).await.contains(&p2_addr)
    })
    .await;
    let p2_out = Instant::now();

    // 4. p2 is replaced by a new pod at the same address (a new UID): it serves again.
    let replacing = Instant::now();
    let mut p2_new = PodSpec::ready(NS, "p2-new", APP, &ip(2));
    p2_new.uid = Some("replacement".into());
    api.apply_pod(&p2_new);
    until("the replacement serves", async || {
        served("p2", replacing) > 0
    })
    .await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let seen = seen.lock().unwrap().clone();
    let failed: Vec<&Seen> = seen.iter().filter(|s| s.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        seen.len(),
        &failed[..failed.len().min(5)]
    );
    let to_p1 = seen
        .iter()
        .filter(|s| s.served_by == "p1" && s.sent >= p1_out)
        .count();
    assert_eq!(to_p1, 0, "requests sent to p1 after it left host-shim");
    let to_p2 = seen
        .iter()
        .filter(|s| s.served_by == "p2" && s.sent >= p2_out && s.sent < replacing)
        .count();
    assert_eq!(
        to_p2, 0,
        "requests sent to p2 between its removal and its replacement"
    );
    let mut by_pod: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &seen {
        *by_pod.entry(s.served_by.as_str()).or_default() += 1;
    }
    println!(
        "{} requests: {by_pod:?}; to p2 between removal and replacement: {to_p2}",
        seen.len()
    );
    Ok(())
}

async fn cluster() -> anyhow::Result<(KubeApi, u16, Vec<Upstream>)> {
    let (port, pods) = pods(4).await?;
    let api = KubeApi::start().await?;
    api.apply_pool(pool_v1alpha2(NS, POOL, APP, port));
    for i in 0..3 {
        api.apply_pod(&PodSpec::ready(NS, &format!("p{i}"), APP, &ip(i)));
    }
    Ok((api, port, pods))
}

async fn wait_serving(shim: &Shim, n: usize) {
    until("host-shim has the pods", async || {
        ready_endpoints(shim).await.len() >= n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_proc_keeps_serving_through_pod_churn() -> anyhow::Result<()> {
    let (api, port, _pods) = cluster().await?;
    let mut args = guide_args();
    args.push("--secure-serving=false".into());
    let shim = start_shim(&api, args, "extproc").await?;
    wait_serving(&shim, 3).await;
    let envoy = Gateway::builder()
        .ext_proc(shim.grpc, "FULL_DUPLEX_STREAMED")
        .start()
        .await?;
    churn(&api, &shim, port, chat_url(&envoy)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_picks_keep_serving_through_pod_churn() -> anyhow::Result<()> {
    let (api, port, pods) = cluster().await?;
    let shim = start_shim(&api, guide_args(), "affinity").await?;
    wait_serving(&shim, 3).await;
    let all: Vec<String> = pods.iter().map(|p| p.addr.to_string()).collect();
    let config = json!({"endpoints": all,
        "hostShim": {"cluster": "host-shim", "timeoutMs": 5000}});
    let envoy = Gateway::builder()
        .host_shim(shim.http)
        .affinity(config)
        .start()
        .await?;
    churn(&api, &shim, port, chat_url(&envoy)).await
}

/// The guide's exact scheduler arguments: TLS on the ext_proc port (a self-signed
/// certificate, as the EPP), gRPC health `readiness` once the pool's pods are listed, picks
/// on the metrics port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_scheduler_arguments_start_and_serve_picks() -> anyhow::Result<()> {
    let (api, port, _pods) = cluster().await?;
    let shim = start_shim(&api, guide_args(), "guide").await?;
    wait_serving(&shim, 3).await;
    // ext_proc answers over TLS only.
    let tls = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .http2_prior_knowledge()
        .build()?;
    let r = tls.post(format!("https://{}/", shim.grpc)).send().await;
    assert!(r.is_ok(), "TLS ext_proc port: {r:?}");
    let plain = http_client()
        .get(format!("http://{}/", shim.grpc))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));
    // A pick through the HTTP pick API names one of the pool's pods.
    let r = http_client()
        .get(format!("http://{}/debug/state", shim.http))
        .send()
        .await?;
    let state: Value = r.json().await?;
    let eps: Vec<String> = state["endpoints"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["endpoint"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let want: Vec<String> = (0..3).map(|i| ip_port(i, port).to_string()).collect();
    for w in &want {
        assert!(eps.contains(w), "{w} not in {eps:?}");
    }
    let _ = shim.health;
    Ok(())
}
