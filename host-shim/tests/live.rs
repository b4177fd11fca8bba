//! host-shim live: real HTTP pods on 127.0.0.1 serving vLLM metrics, real scrapers, the
//! HTTP pick API, and the binary's CLI.

mod common;

use common::{eventually, http, three_pods, FakePod, Shim};
use host_shim::endpoint::Endpoint;
use host_shim::scheduler::config::SchedulerConfig;
use host_shim::scheduler::PickRequest;
use host_shim::server::wire::{encode_pick, encode_served};
use infergate_core::prefix::BlockHasher;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn request(text: &str) -> PickRequest {
    PickRequest {
        model: "Qwen/Qwen3-0.6B".into(),
        block_hashes: BlockHasher::default().hashes("Qwen/Qwen3-0.6B", text.as_bytes()),
        prompt_tokens: (text.len() / 4) as u64,
        ..Default::default()
    }
}

fn long(seed: u32) -> String {
    format!("system prompt {seed}: be brief. ").repeat(60)
}

async fn pick(
    shim: &Shim,
    req: &PickRequest,
    subset: &str,
) -> (u16, Option<Endpoint>, hyper::HeaderMap, String) {
    let (status, headers, body) =
        http(shim.http, "POST", "/v1/pick", encode_pick(req, 256, subset)).await;
    let ep = headers
        .get("x-gateway-destination-endpoint")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (
        status,
        ep,
        headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn pick_api_follows_served_reports_and_load() {
    let (pods, shim) = three_pods().await;

    let req = request(&long(1));
    let (status, first, headers, _) = pick(&shim, &req, "").await;
    assert_eq!(status, 200);
    let first = first.unwrap();
    assert!(pods.iter().any(|p| p.endpoint == first));
    let fallbacks = headers["x-gateway-destination-endpoint-fallbacks"]
        .to_str()
        .unwrap();
    assert_eq!(fallbacks.split(',').count(), 2);
    assert!(!fallbacks.contains(&first.to_string()));

    // Another endpoint actually served it (say, an Envoy retry): the index follows.
    let served = pods
        .iter()
        .map(|p| p.endpoint)
        .find(|e| *e != first)
        .unwrap();
    let (status, _, _) = http(
        shim.http,
        "POST",
        "/v1/served",
        encode_served(&served, &req.block_hashes),
    )
    .await;
    assert_eq!(status, 204);
    let (_, again, headers, _) = pick(&shim, &req, "").await;
    assert_eq!(again, Some(served));
    let n = req.block_hashes.len();
    assert_eq!(
        headers["x-infergate-prefix-match"].to_str().unwrap(),
        format!("{n}/{n}")
    );

    // The served pod becomes overloaded: new scrapes move the prefix elsewhere.
    let hot = pods.iter().find(|p| p.endpoint == served).unwrap();
    hot.set(|l| {
        l.waiting = 60;
        l.kv = 0.97;
    });
    eventually("overload scraped", || {
        shim.runtime
            .snapshot()
            .iter()
            .any(|s| s.endpoint == served && s.metrics.is_some_and(|m| m.waiting == 60))
    })
    .await;
    let (_, moved, _, _) = pick(&shim, &req, "").await;
    assert_ne!(moved, Some(served));
}

#[tokio::test]
async fn unhealthy_and_unreachable_pods_leave_picks_and_come_back() {
    let a = FakePod::start().await;
    let b = FakePod::start().await;
    let shim = Shim::start(&[&a, &b], SchedulerConfig::guide_default()).await;
    eventually("both ready", || shim.ready_count() == 2).await;
    let only_a = a.endpoint.to_string();
    let req = request(&long(2));
    assert_eq!(pick(&shim, &req, &only_a).await.0, 200);

    a.set(|l| l.down = true); // /metrics answers 500
    eventually("a out", || shim.ready_count() == 1).await;
    let (status, _, headers, body) = pick(&shim, &req, &only_a).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "1");
    for i in 0..10 {
        let (status, ep, _, _) = pick(&shim, &request(&long(100 + i)), "").await;
        assert_eq!((status, ep), (200, Some(b.endpoint)));
    }

    a.set(|l| l.down = false);
    eventually("a back", || shim.ready_count() == 2).await;
    assert_eq!(pick(&shim, &req, &only_a).await.1, Some(a.endpoint));

    // A pod that goes away entirely (connection refused).
    let b_ep = b.endpoint;
    drop(b);
    eventually("b out", || shim.ready_count() == 1).await;
    let (status, _, _, _) = pick(&shim, &req, &b_ep.to_string()).await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn pick_api_errors_metrics_and_debug_state() {
    let a = FakePod::start().await;
    let shim = Shim::start(&[&a], SchedulerConfig::guide_default()).await;
    eventually("ready", || shim.ready_count() == 1).await;

    let (status, _, body) = http(shim.http, "POST", "/v1/pick", b"IGPK\x01\x00".to_vec()).await;
    assert_eq!(status, 400);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("block_size"),
        "{v}"
    );

    let (status, _, body) = http(
        shim.http,
        "POST",
        "/v1/pick",
        encode_pick(&request(&long(3)), 64, ""),
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("block_size"));

    let stranger: Endpoint = "10.99.0.1:8000".parse().unwrap();
    let (status, _, body) = http(
        shim.http,
        "POST",
        "/v1/served",
        encode_served(&stranger, &[1]),
    )
    .await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("endpoint"));

    assert_eq!(pick(&shim, &request(&long(4)), "").await.0, 200);
    let (status, headers, body) = http(shim.http, "GET", "/metrics", vec![]).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .contains("openmetrics"));
    let text = String::from_utf8(body).unwrap();
    for needle in [
        "host_shim_picks_total{outcome=\"ok\",api=\"http\"} 1",
        "host_shim_picks_total{outcome=\"bad_request\",api=\"http\"} 2",
        "host_shim_pick_duration_seconds_count 1",
        "host_shim_prefix_index_capacity_blocks{",
        "host_shim_endpoint_score{",
        "host_shim_endpoint_ready{",
        "host_shim_prefix_hit_ratio",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }

    let (status, _, body) = http(shim.http, "GET", "/debug/state", vec![]).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["endpoints"][0]["endpoint"], a.endpoint.to_string());
    assert_eq!(v["endpoints"][0]["ready"], true);
    assert_eq!(
        v["endpoints"][0]["metrics"]["kv_capacity_tokens"],
        4096 * 16
    );
    assert_eq!(v["config"]["picker"], "max-score-picker");

    assert_eq!(http(shim.http, "GET", "/healthz", vec![]).await.0, 200);
    assert_eq!(http(shim.http, "GET", "/nope", vec![]).await.0, 404);
    assert_eq!(http(shim.http, "GET", "/v1/pick", vec![]).await.0, 405);
}

#[tokio::test]
async fn endpoints_file_is_reloaded_and_a_bad_edit_keeps_the_last_list() {
    use host_shim::runtime::Runtime;
    use host_shim::scheduler::Scheduler;
    use host_shim::source::file::FileSource;
    use std::time::Duration;

    let a = FakePod::start().await;
    let b = FakePod::start().await;
    let dir = std::env::temp_dir().join(format!("host-shim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("endpoints.txt");
    std::fs::write(&path, format!("# pods\n{}\n", a.endpoint)).unwrap();

    let rt = Runtime::new(
        Scheduler::new(SchedulerConfig::guide_default(), 1),
        common::fast_scrape(),
    );
    rt.start_source(Box::new(FileSource::new(&path, Duration::from_millis(20))))
        .unwrap();
    assert_eq!(rt.snapshot().len(), 1);

    std::fs::write(&path, format!("{}\n{}\n", a.endpoint, b.endpoint)).unwrap();
    eventually("two endpoints", || rt.snapshot().len() == 2).await;

    std::fs::write(&path, "10.0.0.1:8000\nnot-an-endpoint\n").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let eps: Vec<Endpoint> = rt.snapshot().iter().map(|s| s.endpoint).collect();
    assert_eq!(eps, vec![a.endpoint, b.endpoint]);

    // A bad file at start is an error naming the line.
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, "10.0.0.1:8000\n\npod-a:80\n").unwrap();
    let err = FileSource::new(&bad, Duration::from_secs(1));
    let rt2 = Runtime::new(
        Scheduler::new(SchedulerConfig::guide_default(), 1),
        common::fast_scrape(),
    );
    let e = rt2.start_source(Box::new(err)).unwrap_err();
    assert!(e.origin.ends_with("bad.txt:3"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn binary_prints_its_addresses_and_rejects_bad_config() {
    let pod = FakePod::start().await;
    let bin = env!("CARGO_BIN_EXE_host-shim");
    let mut child = Command::new(bin)
        .args([
            "--endpoints",
            &pod.endpoint.to_string(),
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let http_line = lines.next().unwrap().unwrap();
    let grpc_line = lines.next().unwrap().unwrap();
    let http_addr: std::net::SocketAddr = http_line
        .strip_prefix("http listening on ")
        .unwrap()
        .parse()
        .unwrap();
    let grpc_addr: std::net::SocketAddr = grpc_line
        .strip_prefix("grpc listening on ")
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(http_addr.port(), 0);
    assert_ne!(grpc_addr.port(), 0);
    assert_eq!(http(http_addr, "GET", "/healthz", vec![]).await.0, 200);
    child.kill().unwrap();
    let _ = child.wait();

    // Start-up refusals: a non-zero exit with the offending field on stderr.
    let refused = |args: &[&str]| {
        let out = Command::new(bin)
            .args(args)
            .args(["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let bad = "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: d\n  plugins:\n  - pluginRef: queue\n";
    let err = refused(&["--endpoints", "127.0.0.1:1", "--config-text", bad]);
    assert!(
        err.contains("schedulingProfiles[0].plugins[0].pluginRef"),
        "{err}"
    );
    let err = refused(&["--endpoints", "127.0.0.1:1,pod-b:80"]);
    assert!(
        err.contains("--endpoints:1") && err.contains("pod-b:80"),
        "{err}"
    );
}

#[tokio::test]
async fn pick_api_speaks_http2_prior_knowledge() {
    // proxy-wasm's dispatch_http_call may reach host-shim over an HTTP/2 cluster.
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    let a = FakePod::start().await;
    let shim = Shim::start(&[&a], SchedulerConfig::guide_default()).await;
    eventually("ready", || shim.ready_count() == 1).await;
    let stream = tokio::net::TcpStream::connect(shim.http).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post(format!("http://{}/v1/pick", shim.http))
        .body(Full::new(Bytes::from(encode_pick(
            &request(&long(9)),
            256,
            "",
        ))))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-gateway-destination-endpoint"]
            .to_str()
            .unwrap(),
        a.endpoint.to_string()
    );
    let _ = resp.into_body().collect().await.unwrap();
}

#[tokio::test]
async fn config_file_reload_applies_good_edits_and_keeps_the_last_good_config() {
    use host_shim::runtime::Runtime;
    use host_shim::scheduler::Scheduler;
    use std::time::Duration;

    let dir = std::env::temp_dir().join(format!("host-shim-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("epp.yaml");
    std::fs::write(&path, host_shim::scheduler::config::DEFAULT_CONFIG).unwrap();
    let mut initial = SchedulerConfig::guide_default();
    initial.max_fallbacks = 1; // as from --fallbacks 1: not part of the file, must survive
    let rt = Runtime::new(Scheduler::new(initial, 1), common::fast_scrape());
    rt.watch_config_file(
        path.clone(),
        Duration::from_millis(20),
        host_shim::scheduler::config::DEFAULT_CONFIG.to_string(),
    );

    let weighted = "apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: weighted-random-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 1
  - pluginRef: weighted-random-picker
";
    std::fs::write(&path, weighted).unwrap();
    eventually("reloaded", || {
        rt.scheduler.config().picker.type_name() == "weighted-random-picker"
    })
    .await;

    std::fs::write(
        &path,
        weighted.replace(
            "queue-scorer\n    weight: 1",
            "queue-scorer\n    weight: lots",
        ),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cfg = rt.scheduler.config();
    assert_eq!(cfg.picker.type_name(), "weighted-random-picker");
    assert_eq!(cfg.scorers[0].weight, 1.0);
    assert_eq!(cfg.max_fallbacks, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn served_reports_reach_peer_replicas_so_they_agree() {
    let pods = [
        FakePod::start().await,
        FakePod::start().await,
        FakePod::start().await,
    ];
    let refs = [&pods[0], &pods[1], &pods[2]];
    let a = Shim::start(&refs, SchedulerConfig::guide_default()).await;
    let b = Shim::start(&refs, SchedulerConfig::guide_default()).await;
    a.runtime.set_peers(&[b.http]);
    b.runtime.set_peers(&[a.http]);
    eventually("both ready", || {
        a.ready_count() == 3 && b.ready_count() == 3
    })
    .await;

    let req = request(&long(77));
    let (_, picked, _, _) = pick(&a, &req, "").await;
    // Replica A learns that some other pod served; B never saw the request.
    let served = pods
        .iter()
        .map(|p| p.endpoint)
        .find(|e| Some(*e) != picked)
        .unwrap();
    let (status, _, _) = http(
        a.http,
        "POST",
        "/v1/served",
        encode_served(&served, &req.block_hashes),
    )
    .await;
    assert_eq!(status, 204);
    eventually("B indexed the report", || {
        b.runtime
            .scheduler
            .index_stats()
            .iter()
            .any(|(e, s)| *e == served && s.blocks == req.block_hashes.len())
    })
    .await;
    assert_eq!(pick(&b, &req, "").await.1, Some(served));
    // Reports that came from a peer are not forwarded again. A report B receives directly
    // reaches A through the same FIFO queue any echo of A's own report would have used, so
    // once it arrived, A must have seen exactly one peer report.
    let other = request(&long(78));
    let (status, _, _) = http(
        b.http,
        "POST",
        "/v1/served",
        encode_served(&served, &other.block_hashes),
    )
    .await;
    assert_eq!(status, 204);
    let peer_line = "host_shim_served_reports_total{outcome=\"ok\",api=\"peer\"}";
    let mut text = String::new();
    for _ in 0..1000 {
        let (_, _, metrics) = http(a.http, "GET", "/metrics", vec![]).await;
        text = String::from_utf8(metrics).unwrap();
        if text.contains(peer_line) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(text.contains(&format!("{peer_line} 1\n")), "{text}");
}
