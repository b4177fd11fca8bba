//! Pick-time accounting over the HTTP API: a pick counts in flight at once (`/debug/state`),
//! teaches the index before any served report, and `POST /v1/completed` ends it.

mod common;

use common::{http, three_pods};
use host_shim::endpoint::Endpoint;
use host_shim::scheduler::PickRequest;
use host_shim::server::wire::{encode_pick, encode_served};
use infergate_core::prefix::BlockHasher;

fn request(seed: u32) -> PickRequest {
    let text = format!("shared system prompt {seed}: answer briefly. ").repeat(40);
    PickRequest {
        model: "Qwen/Qwen3-0.6B".into(),
        block_hashes: BlockHasher::default().hashes("Qwen/Qwen3-0.6B", text.as_bytes()),
        prompt_tokens: (text.len() / 4) as u64,
        ..Default::default()
    }
}

async fn pick(addr: std::net::SocketAddr, req: &PickRequest) -> (Endpoint, String) {
    let (status, headers, _) = http(addr, "POST", "/v1/pick", encode_pick(req, 256, "")).await;
    assert_eq!(status, 200);
    let h = |k: &str| headers[k].to_str().unwrap().to_string();
    (
        h("x-gateway-destination-endpoint").parse().unwrap(),
        h("x-infergate-prefix-match"),
    )
}

async fn in_flight(addr: std::net::SocketAddr) -> Vec<(String, u64)> {
    let (status, _, body) = http(addr, "GET", "/debug/state", vec![]).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["endpoint"].as_str().unwrap().to_string(),
                e["in_flight"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn picks_count_at_once_and_completion_reports_end_them() {
    let (_pods, shim) = three_pods().await;
    let req = request(1);
    let blocks = req.block_hashes.len();
    let (first, _) = pick(shim.http, &req).await;
    // No served report yet: the second request of the burst already finds the prefix.
    let (second, matched) = pick(shim.http, &req).await;
    assert_eq!(second, first);
    assert_eq!(matched, format!("{blocks}/{blocks}"));
    let count = |v: &[(String, u64)], e: &Endpoint| {
        v.iter()
            .find(|(x, _)| *x == e.to_string())
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(count(&in_flight(shim.http).await, &first), 2);

    let done = encode_served(&first, &req.block_hashes);
    let (status, _, _) = http(shim.http, "POST", "/v1/completed", done.clone()).await;
    assert_eq!(status, 204);
    assert_eq!(count(&in_flight(shim.http).await, &first), 1);
    assert_eq!(http(shim.http, "POST", "/v1/completed", done).await.0, 204);
    assert_eq!(count(&in_flight(shim.http).await, &first), 0);

    // Hostile or unknown input is refused with the field named.
    let stranger: Endpoint = "10.99.0.1:8000".parse().unwrap();
    let (status, _, body) = http(
        shim.http,
        "POST",
        "/v1/completed",
        encode_served(&stranger, &[1]),
    )
    .await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("endpoint"));
    let (status, _, body) =
        http(shim.http, "POST", "/v1/completed", b"IGSV\x01junk".to_vec()).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("error"));
    assert_eq!(http(shim.http, "GET", "/v1/completed", vec![]).await.0, 405);
}
