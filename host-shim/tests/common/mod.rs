//! Shared helpers: fake vLLM pods serving Prometheus text, and an in-process host-shim.
#![allow(dead_code)]

pub mod epp;

use bytes::Bytes;
use host_shim::endpoint::Endpoint;
use host_shim::runtime::Runtime;
use host_shim::scheduler::config::SchedulerConfig;
use host_shim::scheduler::Scheduler;
use host_shim::scrape::ScrapeConfig;
use host_shim::server::ext_proc::EppConfig;
use host_shim::source::static_list::StaticSource;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// What a fake pod reports.
#[derive(Debug, Clone, Copy)]
pub struct PodLoad {
    pub waiting: u64,
    pub running: u64,
    pub kv: f64,
    /// Answer 500 to `/metrics` (an unhealthy pod).
    pub down: bool,
}

impl Default for PodLoad {
    fn default() -> Self {
        Self {
            waiting: 0,
            running: 0,
            kv: 0.1,
            down: false,
        }
    }
}

/// A small HTTP server serving vLLM-named metrics.
pub struct FakePod {
    pub endpoint: Endpoint,
    pub load: Arc<Mutex<PodLoad>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakePod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakePod {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let load = Arc::new(Mutex::new(PodLoad::default()));
        let l2 = load.clone();
        let task = tokio::spawn(async move {
            // Connections live in this set, so aborting the pod closes them too.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let load = l2.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let load = *load.lock().unwrap();
                        async move {
                            let mut resp = Response::new(Full::new(Bytes::new()));
                            if req.uri().path() != "/metrics" {
                                *resp.status_mut() = StatusCode::NOT_FOUND;
                            } else if load.down {
                                *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                            } else {
                                *resp.body_mut() = Full::new(Bytes::from(vllm_page(&load)));
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            endpoint: Endpoint(addr),
            load,
            task,
        }
    }

    pub fn set(&self, f: impl FnOnce(&mut PodLoad)) {
        f(&mut self.load.lock().unwrap());
    }
}

/// A vLLM v1 `/metrics` page.
pub fn vllm_page(l: &PodLoad) -> String {
    format!(
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{{engine=\"0\",model_name=\"Qwen/Qwen3-0.6B\"}} {}\n\
         # TYPE vllm:num_requests_waiting gauge\n\
         vllm:num_requests_waiting{{engine=\"0\",model_name=\"Qwen/Qwen3-0.6B\"}} {}\n\
         # TYPE vllm:kv_cache_usage_perc gauge\n\
         vllm:kv_cache_usage_perc{{engine=\"0\",model_name=\"Qwen/Qwen3-0.6B\"}} {}\n\
         vllm:cache_config_info{{block_size=\"16\",num_gpu_blocks=\"4096\",enable_prefix_caching=\"True\"}} 1.0\n",
        l.running, l.waiting, l.kv
    )
}

/// An in-process host-shim serving HTTP and gRPC on ephemeral ports.
pub struct Shim {
    pub runtime: Arc<Runtime>,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Shim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub fn fast_scrape() -> ScrapeConfig {
    ScrapeConfig {
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(500),
        path: "/metrics".into(),
    }
}

impl Shim {
    pub async fn start(pods: &[&FakePod], config: SchedulerConfig) -> Self {
        let list = pods
            .iter()
            .map(|p| p.endpoint.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let runtime = Runtime::new(Scheduler::new(config, 7), fast_scrape());
        runtime
            .start_source(Box::new(StaticSource::new(list)))
            .unwrap();
        let http_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (http, grpc) = (http_l.local_addr().unwrap(), grpc_l.local_addr().unwrap());
        let rt1 = runtime.clone();
        let rt2 = runtime.clone();
        let tasks = vec![
            tokio::spawn(async move {
                let _ = host_shim::server::http::serve(http_l, rt1).await;
            }),
            tokio::spawn(async move {
                let _ = host_shim::server::grpc::serve(grpc_l, rt2, EppConfig::default()).await;
            }),
        ];
        Self {
            runtime,
            http,
            grpc,
            tasks,
        }
    }

    /// Number of endpoints that are ready now.
    pub fn ready_count(&self) -> usize {
        let now = self.runtime.clock().now();
        let staleness = self.runtime.scheduler.config().staleness;
        self.runtime
            .snapshot()
            .iter()
            .filter(|s| s.fresh_metrics(now, staleness).is_some())
            .count()
    }
}

/// Polls `cond` every 10 ms until it holds; panics after 10 s (a hang, not a timing check).
pub async fn eventually(what: &str, cond: impl FnMut() -> bool) {
    eventually_within(what, Duration::from_secs(10), cond).await
}

/// Polls `cond` every 10 ms until it holds; panics once `limit` has passed (a guard against a
/// hang, not a timing check).
pub async fn eventually_within(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cond(), "never happened within {limit:?}: {what}");
}

/// Three fake pods and a host-shim (guide profile) that has scraped all of them.
pub async fn three_pods() -> ([FakePod; 3], Shim) {
    let pods = [
        FakePod::start().await,
        FakePod::start().await,
        FakePod::start().await,
    ];
    let shim = Shim::start(
        &[&pods[0], &pods[1], &pods[2]],
        SchedulerConfig::guide_default(),
    )
    .await;
    eventually("pods ready", || shim.ready_count() == 3).await;
    (pods, shim)
}

/// A plain HTTP/1.1 exchange; returns status, headers and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (u16, hyper::HeaderMap, Vec<u8>) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

/// Serves an idle vLLM pod's `/metrics` page on `listener` (any path, HTTP/1.1) until the
/// runtime ends: for tests that place pods on chosen loopback addresses.
pub fn serve_idle_metrics(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    use hyper::service::service_fn;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
                    let page = vllm_page(&PodLoad::default());
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from(page)),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}
