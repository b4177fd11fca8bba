//! Kubernetes discovery end to end through the real client path (kube-rs over HTTPS with a
//! bearer token) against the list/watch stand-in `infergate_e2e::kube_api` — the protocol,
//! not a cluster: lists, chunked watch streams, bookmarks, `410 Gone`, dropped connections,
//! an API server that goes away.

mod common;

use common::{eventually_within, fast_scrape, serve_idle_metrics};
use host_shim::endpoint::Endpoint;
use host_shim::runtime::Runtime;
use host_shim::scheduler::config::SchedulerConfig;
use host_shim::scheduler::Scheduler;
use host_shim::source::kube::pool::{PoolApi, PoolSpec};
use host_shim::source::kube::{KubeDiscovery, Target};
use infergate_e2e::kube_api::{pool_v1, pool_v1alpha2, KubeApi, PodSpec};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const NS: &str = "my-first-model";
const APP: &str = "qwen3-0-6b";

/// Model-server pods on distinct loopback IPs sharing one port, as pods share a port in a
/// cluster: `127.0.0.{10+i}:port` serves vLLM metrics.
struct Pods {
    port: u16,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Pods {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Pods {
    async fn start(n: u8) -> Self {
        'retry: for _ in 0..20 {
            let first = tokio::net::TcpListener::bind("127.0.0.10:0").await.unwrap();
            let port = first.local_addr().unwrap().port();
            let mut listeners = vec![first];
            for i in 1..n {
                match tokio::net::TcpListener::bind((format!("127.0.0.{}", 10 + i), port)).await {
                    Ok(l) => listeners.push(l),
                    Err(_) => continue 'retry,
                }
            }
            let tasks = listeners.into_iter().map(serve_idle_metrics).collect();
            return Self { port, tasks };
        }
        panic!("no common free port on 127.0.0.10..");
    }

    fn ip(i: u8) -> String {
        format!("127.0.0.{}", 10 + i)
    }

    fn endpoint(&self, i: u8) -> Endpoint {
        Endpoint(SocketAddr::new(Self::ip(i).parse().unwrap(), self.port))
    }
}

struct Harness {
    api: KubeApi,
    rt: Arc<Runtime>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn client_for(api: &KubeApi, dir: &std::path::Path) -> kube::Client {
    let path = api.write_kubeconfig(dir, NS).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

async fn start(api: KubeApi, target: Target) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let client = client_for(&api, dir.path()).await;
    let rt = Runtime::new(
        Scheduler::new(SchedulerConfig::guide_default(), 7),
        fast_scrape(),
    );
    let task = KubeDiscovery {
        namespace: NS.into(),
        target,
    }
    .spawn(client, rt.clone());
    Harness {
        api,
        rt,
        task,
        _dir: dir,
    }
}

fn pool_target() -> Target {
    Target::Pool {
        name: "pool".into(),
        api: PoolApi::V1,
    }
}

fn endpoints(rt: &Runtime) -> BTreeSet<Endpoint> {
    rt.snapshot().iter().map(|s| s.endpoint).collect()
}

fn blocks(rt: &Runtime, e: &Endpoint) -> Option<usize> {
    rt.scheduler
        .index_stats()
        .into_iter()
        .find(|(x, _)| x == e)
        .map(|(_, s)| s.blocks)
}

/// Waits (up to 30 s, generous for a loaded machine) until `cond` holds.
async fn until(what: &str, cond: impl FnMut() -> bool) {
    eventually_within(what, Duration::from_secs(30), cond).await
}

fn set(eps: &[Endpoint]) -> BTreeSet<Endpoint> {
    eps.iter().copied().collect()
}

#[tokio::test]
async fn pool_pods_are_followed_through_list_and_watch() {
    let pods = Pods::start(3).await;
    let api = KubeApi::start().await.unwrap();
    api.apply_pool(pool_v1(NS, "pool", APP, &[pods.port]));
    api.apply_pod(&PodSpec::ready(NS, "p0", APP, &Pods::ip(0)));
    api.apply_pod(&PodSpec::ready(NS, "p1", APP, &Pods::ip(1)));
    // Pods that never count: another app, another namespace, not ready, no IP.
    api.apply_pod(&PodSpec::ready(NS, "redis", "redis", "127.0.0.99"));
    api.apply_pod(&PodSpec::ready("default", "elsewhere", APP, "127.0.0.98"));
    let mut unready = PodSpec::ready(NS, "starting", APP, "127.0.0.97");
    unready.ready = false;
    api.apply_pod(&unready);
    let mut pending = PodSpec::ready(NS, "pending", APP, "127.0.0.96");
    pending.ip = None;
    pending.ready = false;
    api.apply_pod(&pending);

    let h = start(api, pool_target()).await;
    until("ready", || h.rt.is_ready()).await;
    assert_eq!(endpoints(&h.rt), set(&[pods.endpoint(0), pods.endpoint(1)]));

    // Scale-out: a third pod becomes ready.
    h.api
        .apply_pod(&PodSpec::ready(NS, "p2", APP, &Pods::ip(2)));
    until("p2 added", || endpoints(&h.rt).contains(&pods.endpoint(2))).await;

    // p1 fails its readiness probe: it leaves at once, with its index.
    let p1 = pods.endpoint(1);
    until("p1 scraped", || {
        h.rt.snapshot()
            .iter()
            .any(|s| s.endpoint == p1 && s.reachable)
    })
    .await;
    assert!(h
        .rt
        .observe_served(&p1, &[11, 12, 13], host_shim::runtime::Source::Http));
    assert_eq!(blocks(&h.rt, &p1), Some(3));
    let mut p1_spec = PodSpec::ready(NS, "p1", APP, &Pods::ip(1));
    p1_spec.ready = false;
    h.api.apply_pod(&p1_spec);
    until("p1 removed", || !endpoints(&h.rt).contains(&p1)).await;
    assert_eq!(blocks(&h.rt, &p1), None, "its index is dropped");
    assert!(
        !h.rt
            .observe_served(&p1, &[1], host_shim::runtime::Source::Http),
        "unknown once removed"
    );

    // Terminating (deletionTimestamp) and then deleted.
    let mut p2_spec = PodSpec::ready(NS, "p2", APP, &Pods::ip(2));
    p2_spec.terminating = true;
    h.api.apply_pod(&p2_spec);
    until("p2 removed", || {
        !endpoints(&h.rt).contains(&pods.endpoint(2))
    })
    .await;
    h.api.delete_pod(NS, "p2");

    // The pool changes its selector: the pods follow.
    let mut pool = pool_v1(NS, "pool", "redis", &[pods.port]);
    pool["metadata"]["generation"] = 2.into();
    h.api.apply_pool(pool);
    until("selector moved", || {
        endpoints(&h.rt)
            == set(&[Endpoint(SocketAddr::new(
                "127.0.0.99".parse().unwrap(),
                pods.port,
            ))])
    })
    .await;
    // The pool is deleted: no endpoints.
    h.api
        .delete_pool("inference.networking.k8s.io/v1", NS, "pool");
    until("pool gone", || endpoints(&h.rt).is_empty()).await;
    assert!(h.rt.is_ready(), "readiness is about the first sync");
}

#[tokio::test]
async fn a_replaced_pod_at_the_same_address_starts_empty_and_a_kept_one_keeps_its_index() {
    let pods = Pods::start(2).await;
    let api = KubeApi::start().await.unwrap();
    api.apply_pool(pool_v1(NS, "pool", APP, &[pods.port]));
    api.apply_pod(&PodSpec::ready(NS, "p0", APP, &Pods::ip(0)));
    api.apply_pod(&PodSpec::ready(NS, "p1", APP, &Pods::ip(1)));
    let h = start(api, pool_target()).await;
    let (e0, e1) = (pods.endpoint(0), pods.endpoint(1));
    until("both scraped", || {
        h.rt.snapshot().iter().filter(|s| s.reachable).count() == 2
    })
    .await;
    assert!(h
        .rt
        .observe_served(&e0, &[1, 2], host_shim::runtime::Source::Http));
    assert!(h
        .rt
        .observe_served(&e1, &[3, 4, 5], host_shim::runtime::Source::Http));
    let lists = h.api.stats().lists;

    // While the watch is down, p1 is replaced by a new pod that gets the same IP, and the
    // history is compacted: the resumed watch gets 410 Gone and the client relists.
    h.api.set_down(true);
    h.api.delete_pod(NS, "p1");
    let mut replacement = PodSpec::ready(NS, "p1-new", APP, &Pods::ip(1));
    replacement.uid = Some("uid-replacement".into());
    h.api.apply_pod(&replacement);
    h.api.compact();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        endpoints(&h.rt),
        set(&[e0, e1]),
        "kept while the API server is away"
    );
    h.api.set_down(false);
    until("relisted", || h.api.stats().lists >= lists + 2).await;
    until("p1 restarted", || blocks(&h.rt, &e1) == Some(0)).await;
    assert_eq!(endpoints(&h.rt), set(&[e0, e1]));
    assert_eq!(
        blocks(&h.rt, &e0),
        Some(2),
        "p0 stayed: its index is kept across the relist"
    );
    let m = h.rt.telemetry.render(&[], &[]);
    assert!(
        m.contains("host_shim_discovery_watch_errors_total{resource=\"pods\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn a_dropped_watch_resumes_from_its_resource_version_without_relisting() {
    let pods = Pods::start(2).await;
    let api = KubeApi::start().await.unwrap();
    api.apply_pool(pool_v1(NS, "pool", APP, &[pods.port]));
    api.apply_pod(&PodSpec::ready(NS, "p0", APP, &Pods::ip(0)));
    let h = start(api, pool_target()).await;
    until("ready", || h.rt.is_ready()).await;
    until("watching", || h.api.stats().open_watches == 2).await;
    let before = h.api.stats();
    // Bookmarks keep flowing (every 200 ms); then the connections drop mid-stream.
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.api.drop_watches();
    // An event written while no watch is open arrives through the resumed watch.
    h.api
        .apply_pod(&PodSpec::ready(NS, "p1", APP, &Pods::ip(1)));
    until("p1 added", || endpoints(&h.rt).contains(&pods.endpoint(1))).await;
    let after = h.api.stats();
    assert_eq!(
        after.lists, before.lists,
        "resumed by resourceVersion, no relist"
    );
    assert!(after.watches > before.watches);
    assert_eq!(endpoints(&h.rt), set(&[pods.endpoint(0), pods.endpoint(1)]));
}

#[tokio::test]
async fn not_ready_until_the_api_server_answers_the_first_list() {
    let api = KubeApi::start().await.unwrap();
    api.set_down(true);
    api.apply_pool(pool_v1(NS, "pool", APP, &[8000]));
    api.apply_pod(&PodSpec::ready(NS, "p0", APP, "10.1.0.1"));
    let h = start(api, pool_target()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!h.rt.is_ready());
    assert!(endpoints(&h.rt).is_empty());
    h.api.set_down(false);
    until("ready", || h.rt.is_ready()).await;
    assert_eq!(endpoints(&h.rt), set(&["10.1.0.1:8000".parse().unwrap()]));
}

#[tokio::test]
async fn v1alpha2_pools_and_every_target_port() {
    let api = KubeApi::start().await.unwrap();
    api.apply_pool(pool_v1alpha2(NS, "old-pool", APP, 8000));
    // Same name in the v1 group is another object: not read with --pool-group x-k8s.io.
    api.apply_pool(pool_v1(NS, "old-pool", APP, &[9999]));
    api.apply_pod(&PodSpec::ready(NS, "p0", APP, "10.1.0.1"));
    let h = start(
        api,
        Target::Pool {
            name: "old-pool".into(),
            api: PoolApi::V1Alpha2,
        },
    )
    .await;
    until("ready", || h.rt.is_ready()).await;
    assert_eq!(endpoints(&h.rt), set(&["10.1.0.1:8000".parse().unwrap()]));

    let api2 = KubeApi::start().await.unwrap();
    api2.apply_pool(pool_v1(NS, "pool", APP, &[8000, 8001, 8002]));
    api2.apply_pod(&PodSpec::ready(NS, "p0", APP, "10.1.0.1"));
    let h2 = start(api2, pool_target()).await;
    until("three ports", || endpoints(&h2.rt).len() == 3).await;
}

#[tokio::test]
async fn selector_mode_watches_only_pods() {
    let api = KubeApi::start().await.unwrap();
    api.apply_pod(&PodSpec::ready(NS, "p0", APP, "10.1.0.1"));
    api.apply_pod(&PodSpec::ready(NS, "x", "other", "10.1.0.2"));
    let spec = PoolSpec::from_flags(&format!("app={APP}"), "8000").unwrap();
    let h = start(api, Target::Selector(spec)).await;
    until("ready", || h.rt.is_ready()).await;
    assert_eq!(endpoints(&h.rt), set(&["10.1.0.1:8000".parse().unwrap()]));
}

#[tokio::test]
async fn an_unusable_pool_spec_keeps_the_last_good_one() {
    let api = KubeApi::start().await.unwrap();
    api.apply_pool(pool_v1(NS, "pool", APP, &[8000]));
    api.apply_pod(&PodSpec::ready(NS, "p0", APP, "10.1.0.1"));
    let h = start(api, pool_target()).await;
    until("ready", || h.rt.is_ready()).await;
    let mut bad = pool_v1(NS, "pool", APP, &[8000]);
    bad["spec"]["targetPorts"] = serde_json::json!([{"number": 0}]);
    h.api.apply_pool(bad);
    // A later good change shows the bad one was read and skipped, not stuck.
    h.api.apply_pod(&PodSpec::ready(NS, "p1", APP, "10.1.0.2"));
    until("p1 added", || endpoints(&h.rt).len() == 2).await;
    assert!(endpoints(&h.rt).contains(&"10.1.0.1:8000".parse().unwrap()));
}
