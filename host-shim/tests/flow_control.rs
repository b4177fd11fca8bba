//! Flow control over the real pick API and ext_proc gRPC: with every fake pod saturated, picks
//! wait in the bounded queue and are served first come first served as soon as a scrape shows
//! headroom; a full queue, a request that waited its TTL and a caller that went away get what
//! the configuration says (status, `Retry-After`, OpenAI error JSON), visible on `/metrics`.

mod common;

use common::epp::{EppStream, BUFFERED, CHAT_PATH};
use common::{eventually, http, FakePod, Shim};
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response;
use host_shim::scheduler::config::{SchedulerConfig, DEFAULT_CONFIG};
use host_shim::scheduler::PickRequest;
use host_shim::server::wire::encode_pick;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// The guide's profile plus a `flowControl` section.
fn config(flow: &str) -> SchedulerConfig {
    SchedulerConfig::parse(&format!("{DEFAULT_CONFIG}flowControl: {flow}\n")).unwrap()
}

fn request(n: u32, sheddable: bool) -> PickRequest {
    PickRequest {
        model: "Qwen/Qwen3-0.6B".into(),
        block_hashes: vec![u64::from(n) * 7919 + 1],
        prompt_tokens: 100,
        sheddable,
        ..Default::default()
    }
}

/// Two pods whose queues are over the saturation threshold (5), scraped by a host-shim.
async fn saturated(flow: Option<&str>) -> ([FakePod; 2], Shim) {
    let pods = [FakePod::start().await, FakePod::start().await];
    for p in &pods {
        p.set(|l| l.waiting = 10);
    }
    let cfg = match flow {
        Some(f) => config(f),
        None => SchedulerConfig::guide_default(),
    };
    let shim = Shim::start(&[&pods[0], &pods[1]], cfg).await;
    eventually("pods scraped", || shim.ready_count() == 2).await;
    (pods, shim)
}

/// One `host_shim_flow_control_*` sample from `/metrics` (0 when absent).
async fn metric(shim: &Shim, name: &str) -> f64 {
    let (_, _, body) = http(shim.http, "GET", "/metrics", vec![]).await;
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("host_shim_flow_control_{name} "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

async fn wait_metric(shim: &Shim, name: &str, want: f64) {
    for _ in 0..1000 {
        if metric(shim, name).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} never reached {want}");
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: serde_json::Value,
    endpoint: Option<String>,
}

async fn pick(addr: SocketAddr, req: &PickRequest) -> Answer {
    let (status, headers, body) = http(addr, "POST", "/v1/pick", encode_pick(req, 256, "")).await;
    let h = |k: &str| headers.get(k).map(|v| v.to_str().unwrap().to_string());
    Answer {
        status,
        retry_after: h("retry-after"),
        body: if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        },
        endpoint: h("x-gateway-destination-endpoint"),
    }
}

#[tokio::test]
async fn without_flow_control_nothing_waits() {
    let (_pods, shim) = saturated(None).await;
    let a = pick(shim.http, &request(1, false)).await;
    assert_eq!(a.status, 200, "the best saturated pod takes it");
    let shed = pick(shim.http, &request(2, true)).await;
    assert_eq!(shed.status, 429);
    assert_eq!(shed.retry_after.as_deref(), Some("1"));
    assert_eq!(shed.body["error"]["code"], "saturated");
    assert_eq!(metric(&shim, "queued_total").await, 0.0);
}

#[tokio::test]
async fn queued_picks_leave_in_order_as_scrapes_show_headroom_and_overflow_is_refused() {
    let (pods, shim) = saturated(Some(
        "{maxRequests: 3, defaultRequestTTL: 20s, retryAfterSeconds: 4}",
    ))
    .await;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    for n in 0..3u32 {
        let tx = done_tx.clone();
        let addr = shim.http;
        tokio::spawn(async move {
            let a = pick(addr, &request(n, false)).await;
            let _ = tx.send((n, a));
        });
        // Enqueued one after the other, so their order is known.
        wait_metric(&shim, "queue_length", f64::from(n + 1)).await;
    }
    // The queue is full: the fourth is refused at once, as configured.
    let over = pick(shim.http, &request(9, false)).await;
    assert_eq!(over.status, 429);
    assert_eq!(over.retry_after.as_deref(), Some("4"));
    assert_eq!(over.body["error"]["code"], "queue_full");
    assert_eq!(over.body["error"]["type"], "rate_limit_error");
    assert!(done_rx.try_recv().is_err(), "nothing left the queue yet");
    // Pod 0 gets room for exactly one more request per scrape (4 waiting, threshold 5): one
    // pick per scrape, first come first served.
    pods[0].set(|l| l.waiting = 4);
    let mut order = Vec::new();
    for _ in 0..3 {
        let (n, a) = done_rx.recv().await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.endpoint.as_deref(), Some(&*pods[0].endpoint.to_string()));
        order.push(n);
    }
    assert_eq!(order, [0, 1, 2]);
    assert_eq!(metric(&shim, "queue_length").await, 0.0);
    assert_eq!(metric(&shim, "queued_total").await, 3.0);
    assert_eq!(metric(&shim, "dispatched_total").await, 3.0);
    assert_rejected_once(&shim, "queue_full").await;
}

#[tokio::test]
async fn a_request_that_waits_its_ttl_gets_the_configured_answer() {
    let (_pods, shim) = saturated(Some(
        "{defaultRequestTTL: 300ms, timeoutStatus: 503, retryAfterSeconds: 7}",
    ))
    .await;
    let a = pick(shim.http, &request(1, false)).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.retry_after.as_deref(), Some("7"));
    assert_eq!(a.body["error"]["code"], "queue_timeout");
    assert_eq!(a.body["error"]["type"], "server_error");
    assert!(a.endpoint.is_none());
    assert_eq!(metric(&shim, "queue_length").await, 0.0);
}

#[tokio::test]
async fn a_caller_that_goes_away_frees_its_place_at_once() {
    let (pods, shim) = saturated(Some("{maxRequests: 1, defaultRequestTTL: 30s}")).await;
    // A raw HTTP/1.1 pick, then the connection is closed while it waits.
    let body = encode_pick(&request(1, false), 256, "");
    let mut conn = tokio::net::TcpStream::connect(shim.http).await.unwrap();
    let head = format!(
        "POST /v1/pick HTTP/1.1\r\nhost: shim\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body).await.unwrap();
    wait_metric(&shim, "queue_length", 1.0).await;
    drop(conn);
    wait_metric(&shim, "queue_length", 0.0).await;
    assert_rejected_once(&shim, "cancelled").await;
    // The freed place takes the next request, which is served once a pod has room.
    let addr = shim.http;
    let next = tokio::spawn(async move { pick(addr, &request(2, false)).await });
    wait_metric(&shim, "queue_length", 1.0).await;
    pods[1].set(|l| l.waiting = 0);
    let a = next.await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.endpoint.as_deref(), Some(&*pods[1].endpoint.to_string()));
    // Nothing was picked for the caller that left.
    let (_, _, state) = http(shim.http, "GET", "/debug/state", vec![]).await;
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    let in_flight: u64 = state["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["in_flight"].as_u64().unwrap())
        .sum();
    assert_eq!(in_flight, 1);
}

/// A pick carrying `pick_id`, as the affinity plugin sends it.
async fn pick_with_id(addr: SocketAddr, req: &PickRequest, pick_id: u64) -> Answer {
    use infergate_core::pick_wire::{encode_pick_with_id, PickQuery};
    let body = encode_pick_with_id(
        &PickQuery {
            model: &req.model,
            prompt_tokens: req.prompt_tokens,
            block_size: 256,
            hashes: &req.block_hashes,
            sheddable: req.sheddable,
            ..Default::default()
        },
        Some(pick_id),
    );
    let (status, headers, body) = http(addr, "POST", "/v1/pick", body).await;
    let h = |k: &str| headers.get(k).map(|v| v.to_str().unwrap().to_string());
    Answer {
        status,
        retry_after: h("retry-after"),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        endpoint: h("x-gateway-destination-endpoint"),
    }
}

async fn cancel(addr: SocketAddr, body: Vec<u8>) -> (u16, Vec<u8>) {
    let (status, _, body) = http(addr, "POST", "/v1/cancel", body).await;
    (status, body)
}

/// Asserts that exactly one pick was refused for `reason` (the metrics page on failure).
async fn assert_rejected_once(shim: &Shim, reason: &str) {
    let (_, _, text) = http(shim.http, "GET", "/metrics", vec![]).await;
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(&format!(
            "host_shim_flow_control_rejected_total{{reason=\"{reason}\"}} 1"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn a_cancel_by_pick_id_frees_the_place_of_a_caller_whose_call_stays_open() {
    use infergate_core::pick_wire::encode_cancel;
    let (pods, shim) = saturated(Some("{maxRequests: 1, defaultRequestTTL: 30s}")).await;
    // The plugin's call stays open (Envoy never cancels it) while its client is gone.
    let addr = shim.http;
    let queued = tokio::spawn(async move { pick_with_id(addr, &request(1, false), 0xFEED).await });
    wait_metric(&shim, "queue_length", 1.0).await;
    // An unknown id is a no-op; a malformed cancel names its field.
    assert_eq!(cancel(shim.http, encode_cancel(0xBEEF)).await.0, 204);
    let (status, body) = cancel(shim.http, encode_cancel(1)[..10].to_vec()).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("pick_id"));
    assert_eq!(metric(&shim, "queue_length").await, 1.0);
    // The cancel takes it out at once; its open call is answered.
    assert_eq!(cancel(shim.http, encode_cancel(0xFEED)).await.0, 204);
    let a = queued.await.unwrap();
    assert_eq!(a.status, 503);
    assert_eq!(a.body["error"]["code"], "cancelled");
    assert_eq!(metric(&shim, "queue_length").await, 0.0);
    assert_rejected_once(&shim, "cancelled").await;
    // The freed place takes the next request (the queue holds one), served once a pod has room.
    let next = tokio::spawn(async move { pick_with_id(addr, &request(2, false), 2).await });
    wait_metric(&shim, "queue_length", 1.0).await;
    pods[1].set(|l| l.waiting = 0);
    let a = next.await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.endpoint.as_deref(), Some(&*pods[1].endpoint.to_string()));
    assert_eq!(metric(&shim, "dispatched_total").await, 1.0);
}

/// This replica's picks not reported complete, over every endpoint (`/debug/state`).
async fn in_flight(shim: &Shim) -> u64 {
    let (_, _, state) = http(shim.http, "GET", "/debug/state", vec![]).await;
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    state["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["in_flight"].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn a_cancel_just_after_the_pick_was_made_takes_the_pick_back() {
    use infergate_core::pick_wire::encode_cancel;
    // Pods with room: every pick is made at once.
    let pods = [FakePod::start().await, FakePod::start().await];
    let shim = Shim::start(&[&pods[0], &pods[1]], config("{defaultRequestTTL: 30s}")).await;
    eventually("pods scraped", || shim.ready_count() == 2).await;
    let base = in_flight(&shim).await;
    // Picked at once; the caller left before reading the answer and cancels it.
    let a = pick_with_id(shim.http, &request(1, false), 101).await;
    assert_eq!(a.status, 200);
    assert_eq!(in_flight(&shim).await, base + 1);
    assert_eq!(cancel(shim.http, encode_cancel(101)).await.0, 204);
    assert_eq!(
        in_flight(&shim).await,
        base,
        "the unused pick no longer counts"
    );
    assert_rejected_once(&shim, "cancelled").await;
    // A second cancel of the same id (and an unknown id) takes nothing more back.
    assert_eq!(cancel(shim.http, encode_cancel(101)).await.0, 204);
    assert_eq!(cancel(shim.http, encode_cancel(5555)).await.0, 204);
    assert_eq!(in_flight(&shim).await, base);
}

#[tokio::test]
async fn a_pick_that_arrives_after_its_own_cancel_is_refused_at_once() {
    use infergate_core::pick_wire::encode_cancel;
    let (_pods, shim) = saturated(Some("{defaultRequestTTL: 30s}")).await;
    assert_eq!(cancel(shim.http, encode_cancel(77)).await.0, 204);
    let a = pick_with_id(shim.http, &request(1, false), 77).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.body["error"]["code"], "cancelled");
    assert_eq!(metric(&shim, "queued_total").await, 0.0);
    // The id is used up: the same id again waits like any other pick.
    let addr = shim.http;
    let again = tokio::spawn(async move { pick_with_id(addr, &request(2, false), 77).await });
    wait_metric(&shim, "queue_length", 1.0).await;
    assert_eq!(cancel(shim.http, encode_cancel(77)).await.0, 204);
    assert_eq!(again.await.unwrap().body["error"]["code"], "cancelled");
    assert_eq!(metric(&shim, "queue_length").await, 0.0);
}

#[tokio::test]
async fn sheddable_requests_wait_behind_the_rest() {
    let (pods, shim) = saturated(Some("{defaultRequestTTL: 20s}")).await;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    for (n, shed) in [(0u32, true), (1, false)] {
        let tx = done_tx.clone();
        let addr = shim.http;
        tokio::spawn(async move {
            let a = pick(addr, &request(n, shed)).await;
            let _ = tx.send((n, a.status));
        });
        wait_metric(&shim, "queue_length", f64::from(n + 1)).await;
    }
    pods[0].set(|l| l.waiting = 4);
    let first = done_rx.recv().await.unwrap();
    let second = done_rx.recv().await.unwrap();
    assert_eq!(
        [first, second],
        [(1, 200), (0, 200)],
        "the critical one first"
    );
}

#[tokio::test]
async fn a_completion_report_wakes_the_queue_and_a_later_arrival_does_not_jump_it() {
    let (pods, shim) = saturated(Some("{defaultRequestTTL: 20s}")).await;
    let addr = shim.http;
    let first = tokio::spawn(async move { pick(addr, &request(1, false)).await });
    wait_metric(&shim, "queue_length", 1.0).await;
    // Pod 1 gets room, and a completion report arrives right away: the waiting pick leaves.
    pods[1].set(|l| l.waiting = 0);
    let served = host_shim::server::wire::encode_served(&pods[1].endpoint, &[42]);
    let (status, _, _) = http(shim.http, "POST", "/v1/completed", served).await;
    assert_eq!(status, 204);
    let a = first.await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(metric(&shim, "dispatched_total").await, 1.0);
}

// ---- ext_proc ------------------------------------------------------------------------------

/// Sends a buffered chat request (headers, then the whole body) on `stream`.
async fn send_request(stream: &EppStream, n: u32) {
    stream
        .send_headers(CHAT_PATH, Some(BUFFERED), None, false)
        .await;
    let body = format!(
        r#"{{"model":"Qwen/Qwen3-0.6B","messages":[{{"role":"user","content":"question {n}"}}]}}"#
    );
    stream.send_body(body.into_bytes(), true).await;
}

#[tokio::test]
async fn ext_proc_waits_in_the_queue_answers_overflow_and_leaves_when_envoy_closes() {
    let (pods, shim) = saturated(Some(
        "{maxRequests: 1, defaultRequestTTL: 20s, queueFullStatus: 503, retryAfterSeconds: 3}",
    ))
    .await;
    let mut waiting = EppStream::open(&shim).await;
    send_request(&waiting, 1).await;
    // BUFFERED: the headers are answered at once, the pick rides on the body's answer.
    assert!(matches!(
        waiting.recv().await,
        processing_response::Response::RequestHeaders(_)
    ));
    wait_metric(&shim, "queue_length", 1.0).await;

    // The queue is full: the next stream gets the configured immediate answer.
    let mut over = EppStream::open(&shim).await;
    send_request(&over, 2).await;
    let _ = over.recv().await;
    match over.recv().await {
        processing_response::Response::ImmediateResponse(r) => {
            assert_eq!(r.status.unwrap().code, 503);
            let headers: Vec<(String, String)> = r
                .headers
                .unwrap()
                .set_headers
                .into_iter()
                .map(|h| {
                    let h = h.header.unwrap();
                    (h.key, String::from_utf8(h.raw_value).unwrap())
                })
                .collect();
            assert!(
                headers.contains(&("retry-after".into(), "3".into())),
                "{headers:?}"
            );
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["error"]["code"], "queue_full");
        }
        other => panic!("expected an immediate answer, got {other:?}"),
    }

    // A third stream waits too once Envoy closes the first one (its place is freed).
    drop(waiting);
    wait_metric(&shim, "queue_length", 0.0).await;
    let mut third = EppStream::open(&shim).await;
    send_request(&third, 3).await;
    let _ = third.recv().await;
    wait_metric(&shim, "queue_length", 1.0).await;
    pods[0].set(|l| l.waiting = 0);
    match third.recv().await {
        processing_response::Response::RequestBody(b) => {
            let set: Vec<String> = b
                .response
                .unwrap()
                .header_mutation
                .unwrap()
                .set_headers
                .into_iter()
                .map(|h| {
                    let h = h.header.unwrap();
                    format!("{}={}", h.key, String::from_utf8(h.raw_value).unwrap())
                })
                .collect();
            assert!(
                set.contains(&format!(
                    "x-gateway-destination-endpoint={}",
                    pods[0].endpoint
                )),
                "{set:?}"
            );
        }
        other => panic!("expected the routing answer, got {other:?}"),
    }
    assert_eq!(metric(&shim, "dispatched_total").await, 1.0);
    assert_rejected_once(&shim, "cancelled").await;
}

#[tokio::test]
async fn a_hostile_flow_control_section_is_refused_naming_the_field() {
    for (flow, field) in [
        ("{maxBytes: -3}", "flowControl.maxBytes"),
        (
            "{defaultRequestTTL: forever}",
            "flowControl.defaultRequestTTL",
        ),
        ("{queueFullStatus: 418}", "flowControl.queueFullStatus"),
        (
            "{maxRequests: 99999999999999999999999}",
            "flowControl.maxRequests",
        ),
    ] {
        let err =
            SchedulerConfig::parse(&format!("{DEFAULT_CONFIG}flowControl: {flow}\n")).unwrap_err();
        assert_eq!(err.path, field, "{flow}: {err}");
    }
    // Fields this host-shim does not know still load, as before.
    let c = config("{orderingPolicyRef: fcfs-ordering-policy, futureKnob: {a: 1}}");
    assert!(c.flow_control.enabled);
}

#[tokio::test]
async fn an_http2_pick_reset_by_its_caller_leaves_the_queue() {
    // Envoy calls the pick API over HTTP/2 and resets the stream when its client goes away.
    use http_body_util::Full;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let (_pods, shim) = saturated(Some("{defaultRequestTTL: 30s}")).await;
    let tcp = tokio::net::TcpStream::connect(shim.http).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post(format!("http://{}/v1/pick", shim.http))
        .body(Full::new(bytes::Bytes::from(encode_pick(
            &request(1, false),
            256,
            "",
        ))))
        .unwrap();
    let pending = tokio::spawn(send.send_request(req));
    wait_metric(&shim, "queue_length", 1.0).await;
    // Dropping the response future resets the stream; the connection stays open.
    pending.abort();
    wait_metric(&shim, "queue_length", 0.0).await;
    assert_rejected_once(&shim, "cancelled").await;
}

#[test]
fn the_readme_example_parses_to_what_it_says() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("### Overload: when every pod is saturated")
        .nth(1)
        .expect("the README's overload section");
    let block = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("its yaml block");
    let c = SchedulerConfig::parse(&format!("{DEFAULT_CONFIG}{block}")).unwrap();
    let f = &c.flow_control;
    assert!(f.enabled);
    assert_eq!(f.request_ttl, Duration::from_secs(5));
    assert_eq!((f.max_requests, f.max_bytes), (1024, Some(64 << 20)));
    assert_eq!(f.band(-1).max_requests, Some(64));
    assert_eq!(f.band(0).max_bytes, Some(32 << 20));
    assert_eq!(
        (f.queue_full_status, f.timeout_status, f.retry_after_secs),
        (429, 503, 1)
    );
}
