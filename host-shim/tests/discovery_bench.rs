//! Benchmark (ignored by default; run with `--ignored --nocapture`): how fast a pod's
//! readiness change reaches picks under load, through the real client path (kube-rs watch
//! over HTTPS against the `infergate_e2e::kube_api` stand-in — the protocol, not a cluster).
//!
//! - *Ready=False → last pick*: from writing the pod's `Ready=False` to the API server to the
//!   last pick that still named it (0 when no pick named it after the write);
//! - *Ready=True → first pick*: from writing `Ready=True` back to the first pick naming it
//!   (includes the pod's first `/metrics` scrape: an unscraped endpoint is never picked).
//!
//! `cargo test --profile native -p host-shim --test discovery_bench -- --ignored --nocapture`

mod common;

use common::serve_idle_metrics;
use host_shim::endpoint::Endpoint;
use host_shim::runtime::Runtime;
use host_shim::scheduler::config::SchedulerConfig;
use host_shim::scheduler::{PickRequest, Scheduler};
use host_shim::scrape::ScrapeConfig;
use host_shim::source::kube::pool::PoolApi;
use host_shim::source::kube::{KubeDiscovery, Target};
use infergate_e2e::kube_api::{pool_v1, KubeApi, PodSpec};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NS: &str = "bench";
const PODS: u8 = 4;
const ROUNDS: usize = 200;
const LOAD_TASKS: usize = 4;

fn ip(i: u8) -> String {
    format!("127.0.0.{}", 40 + i)
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn readiness_to_pick_latency() {
    // Pods on 127.0.0.40.. sharing a port.
    let first = tokio::net::TcpListener::bind("127.0.0.40:0").await.unwrap();
    let port = first.local_addr().unwrap().port();
    serve_idle_metrics(first);
    for i in 1..PODS {
        serve_idle_metrics(tokio::net::TcpListener::bind((ip(i), port)).await.unwrap());
    }
    let api = KubeApi::start().await.unwrap();
    api.apply_pool(pool_v1(NS, "pool", "vllm", &[port]));
    for i in 0..PODS {
        api.apply_pod(&PodSpec::ready(NS, &format!("p{i}"), "vllm", &ip(i)));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = api.write_kubeconfig(dir.path(), NS).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&path).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    // The EPP's scrape interval (50 ms).
    let scrape = ScrapeConfig {
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
        path: "/metrics".into(),
    };
    let rt = Runtime::new(Scheduler::new(SchedulerConfig::guide_default(), 7), scrape);
    let _task = KubeDiscovery {
        namespace: NS.into(),
        target: Target::Pool {
            name: "pool".into(),
            api: PoolApi::V1,
        },
    }
    .spawn(client, rt.clone());
    let endpoint = |i: u8| Endpoint(SocketAddr::new(ip(i).parse().unwrap(), port));
    while rt.snapshot().iter().filter(|s| s.reachable).count() < PODS as usize {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Load: picks as fast as the tasks can make them, each recorded with its instant.
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<(Instant, Endpoint)>>> = Arc::new(Mutex::new(Vec::new()));
    let picks_made = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..LOAD_TASKS {
        let (rt, stop, log, made) = (rt.clone(), stop.clone(), log.clone(), picks_made.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let req = PickRequest {
                    model: "m".into(),
                    block_hashes: vec![(n % 64) * 1000 + t as u64, 1, 2, 3],
                    prompt_tokens: 64,
                    ..Default::default()
                };
                // Stamped when the pick starts: it reads the endpoint set then, and an OS
                // preemption after it returns must not look like a late pick.
                let started = Instant::now();
                if let Ok(p) = rt.pick(&req, "bench") {
                    log.lock().unwrap().push((started, p.endpoint));
                    made.fetch_add(1, Ordering::Relaxed);
                }
                if n.is_multiple_of(8) {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }

    let started = Instant::now();
    let mut to_last = Vec::new();
    let mut to_first = Vec::new();
    let mut to_out = Vec::new();
    let mut late = 0usize;
    for round in 0..ROUNDS {
        let i = (round % PODS as usize) as u8;
        let e = endpoint(i);
        let mut spec = PodSpec::ready(NS, &format!("p{i}"), "vllm", &ip(i));
        spec.ready = false;
        log.lock().unwrap().clear();
        let t0 = Instant::now();
        api.apply_pod(&spec);
        while rt.snapshot().iter().any(|s| s.endpoint == e) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let removed_at = Instant::now();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let last = log
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, p)| *p == e && *at >= t0)
            .map(|(at, _)| *at)
            .max();
        to_last.push(last.map(|l| l - t0).unwrap_or_default());
        to_out.push(removed_at - t0);
        late += log
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, p)| *p == e && *at >= removed_at)
            .count();

        spec.ready = true;
        log.lock().unwrap().clear();
        let t1 = Instant::now();
        api.apply_pod(&spec);
        let first = loop {
            let hit = log
                .lock()
                .unwrap()
                .iter()
                .find(|(at, p)| *p == e && *at >= t1)
                .map(|(at, _)| *at);
            if let Some(at) = hit {
                break at;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        to_first.push(first - t1);
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let rate = picks_made.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    println!(
        "\n{ROUNDS} rounds, {PODS} pods, {LOAD_TASKS} pick tasks, {rate:.0} picks/s; picks naming a pod after it left the set: {late}\n\n| transition | p50 ms | p99 ms | max ms |\n|---|---|---|---|"
    );
    for (name, v) in [
        ("Ready=False → pod out of the pick set", &mut to_out),
        (
            "Ready=False → last pick naming the pod (0: none after the write)",
            &mut to_last,
        ),
        ("Ready=True → first pick naming the pod", &mut to_first),
    ] {
        let max = *v.iter().max().unwrap();
        println!(
            "| {name} | {} | {} | {} |",
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.99)),
            ms(max)
        );
    }
}
