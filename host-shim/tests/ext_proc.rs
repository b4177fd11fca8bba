//! The Endpoint Picker Protocol: a real tonic gRPC client drives host-shim's ext_proc server
//! the way Envoy does (headers, streamed body chunks, end of stream, response headers).

mod common;

use common::epp::*;
use common::{three_pods, Shim};
use envoy_types::pb::envoy::config::core::v3::HeaderMap;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    body_mutation, processing_request, processing_response, HttpHeaders,
};
use host_shim::endpoint::Endpoint;
use host_shim::scheduler::config::SchedulerConfig;

#[tokio::test]
async fn full_duplex_pick_sets_header_metadata_and_follows_the_served_endpoint() {
    let (pods, shim) = three_pods().await;
    let body = chat_body(&"You are a careful assistant. ".repeat(80));
    let mut s = EppStream::open(&shim).await;
    let (picked, first) = full_duplex_pick(&mut s, &body, None).await;
    assert!(pods.iter().any(|p| p.endpoint == picked));
    let r = first.response.as_ref().unwrap();
    let fallbacks = set_header(r, "x-gateway-destination-endpoint-fallbacks").unwrap();
    assert_eq!(lb_metadata(&first), format!("{picked},{fallbacks}"));
    assert_eq!(fallbacks.split(',').count(), 2);

    // Envoy reports that another endpoint served (e.g. after a retry).
    let served = pods
        .iter()
        .map(|p| p.endpoint)
        .find(|e| *e != picked)
        .unwrap();
    s.send(req(
        processing_request::Request::ResponseHeaders(HttpHeaders {
            headers: Some(HeaderMap {
                headers: vec![hv(":status", "200")],
            }),
            ..Default::default()
        }),
        None,
        Some(metadata(
            "envoy.lb",
            "x-gateway-destination-endpoint-served",
            &[served.to_string()],
        )),
    ))
    .await;
    assert!(matches!(
        s.recv().await,
        processing_response::Response::ResponseHeaders(_)
    ));
    drop(s);

    // Same prompt again: it goes where the prefix really is.
    let mut s2 = EppStream::open(&shim).await;
    let (again, _) = full_duplex_pick(&mut s2, &body, None).await;
    assert_eq!(again, served);
}

#[tokio::test]
async fn buffered_mode_answers_headers_then_mutates_on_the_body() {
    let (pods, shim) = three_pods().await;
    let mut s = EppStream::open(&shim).await;
    s.send_headers(CHAT_PATH, Some(BUFFERED), None, false).await;
    match s.recv().await {
        processing_response::Response::RequestHeaders(h) => {
            assert!(h.response.is_none_or(|c| c.header_mutation.is_none()))
        }
        other => panic!("{other:?}"),
    }
    s.send_body(chat_body("short"), true).await;
    let resp = s.recv_full().await;
    let r = resp.response.as_ref().unwrap();
    assert!(matches!(r, processing_response::Response::RequestBody(_)));
    let ep: Endpoint = set_header(r, "x-gateway-destination-endpoint")
        .unwrap()
        .parse()
        .unwrap();
    assert!(pods.iter().any(|p| p.endpoint == ep));
    assert!(lb_metadata(&resp).starts_with(&ep.to_string()));
}

#[tokio::test]
async fn subset_hint_is_honoured_and_an_unservable_subset_is_503() {
    let (pods, shim) = three_pods().await;
    let body = chat_body("subset test");
    for _ in 0..3 {
        let mut s = EppStream::open(&shim).await;
        let md = metadata(
            "envoy.lb.subset_hint",
            "x-gateway-destination-endpoint-subset",
            &[pods[1].endpoint.to_string()],
        );
        let (ep, first) = full_duplex_pick(&mut s, &body, Some(md)).await;
        assert_eq!(ep, pods[1].endpoint);
        assert!(set_header(
            first.response.as_ref().unwrap(),
            "x-gateway-destination-endpoint-fallbacks"
        )
        .is_none());
    }

    let mut s = EppStream::open(&shim).await;
    let md = metadata(
        "envoy.lb.subset_hint",
        "x-gateway-destination-endpoint-subset",
        &["10.200.0.1:8000".into()],
    );
    s.send(req(
        processing_request::Request::RequestHeaders(headers("/v1/chat/completions", &[], false)),
        Some(FULL_DUPLEX),
        Some(md),
    ))
    .await;
    s.send_body(body, true).await;
    let ir = s.recv_immediate().await;
    assert_eq!(ir.status.unwrap().code, 503);
    let hs = ir.headers.unwrap().set_headers;
    assert!(hs
        .iter()
        .any(|h| h.header.as_ref().unwrap().key == "retry-after"));
}

#[tokio::test]
async fn bad_bodies_get_400_naming_the_field_and_no_pods_get_503() {
    let (_pods, shim) = three_pods().await;
    let mut s = EppStream::open(&shim).await;
    s.send_headers(CHAT_PATH, Some(FULL_DUPLEX), None, false)
        .await;
    s.send_body(
        br#"{"messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
        true,
    )
    .await;
    let ir = s.recv_immediate().await;
    assert_eq!(ir.status.unwrap().code, 400);
    let v: serde_json::Value = serde_json::from_slice(&ir.body).unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("model"),
        "{v}"
    );

    // A GET without body is picked from its headers alone.
    let mut s = EppStream::open(&shim).await;
    s.send_headers("/v1/models", Some(FULL_DUPLEX), None, true)
        .await;
    let r = s.recv().await;
    assert!(
        set_header(&r, "x-gateway-destination-endpoint").is_some(),
        "{r:?}"
    );

    // No endpoints at all.
    let empty = Shim::start(&[], SchedulerConfig::guide_default()).await;
    let mut s = EppStream::open(&empty).await;
    s.send_headers(CHAT_PATH, Some(FULL_DUPLEX), None, false)
        .await;
    s.send_body(chat_body("x"), true).await;
    let ir = s.recv_immediate().await;
    assert_eq!(ir.status.unwrap().code, 503)
}

#[tokio::test]
async fn grpc_health_reports_serving() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let (_pods, shim) = three_pods().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", shim.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = HealthClient::new(channel);
    for service in ["", "envoy.service.ext_proc.v3.ExternalProcessor"] {
        let r = c
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, 1, "{service}: {r:?}"); // SERVING
    }
}

#[tokio::test]
async fn streamed_mode_acknowledges_chunks_and_full_duplex_handles_trailers() {
    use envoy_types::pb::envoy::service::ext_proc::v3::HttpTrailers;
    let (pods, shim) = three_pods().await;
    let body = chat_body(&"streamed ".repeat(100));

    // STREAMED: headers answered at once, each non-final chunk answered empty, the final one
    // carries the mutation.
    let mut s = EppStream::open(&shim).await;
    s.send_headers(CHAT_PATH, Some(STREAMED), None, false).await;
    assert!(matches!(
        s.recv().await,
        processing_response::Response::RequestHeaders(_)
    ));
    let (a, b) = body.split_at(body.len() / 2);
    s.send_body(a.to_vec(), false).await;
    let r = s.recv().await;
    assert!(matches!(r, processing_response::Response::RequestBody(_)));
    assert!(set_header(&r, "x-gateway-destination-endpoint").is_none());
    s.send_body(b.to_vec(), true).await;
    let r = s.recv().await;
    let ep: Endpoint = set_header(&r, "x-gateway-destination-endpoint")
        .unwrap()
        .parse()
        .unwrap();
    assert!(pods.iter().any(|p| p.endpoint == ep));

    // FULL_DUPLEX with trailers: the body ends with the trailers, so the echoed body does
    // not claim end of stream, and the trailers are answered last.
    let mut s = EppStream::open(&shim).await;
    s.send_headers(CHAT_PATH, Some(FULL_DUPLEX), None, false)
        .await;
    s.send_body(body.clone(), false).await;
    s.send(req(
        processing_request::Request::RequestTrailers(HttpTrailers::default()),
        None,
        None,
    ))
    .await;
    let r = s.recv().await;
    assert!(
        set_header(&r, "x-gateway-destination-endpoint").is_some(),
        "{r:?}"
    );
    let mut echoed = Vec::new();
    loop {
        match s.recv().await {
            processing_response::Response::RequestBody(b) => {
                let Some(body_mutation::Mutation::StreamedResponse(sr)) =
                    b.response.unwrap().body_mutation.unwrap().mutation
                else {
                    panic!("expected streamed body")
                };
                assert!(!sr.end_of_stream);
                echoed.extend_from_slice(&sr.body);
            }
            processing_response::Response::RequestTrailers(_) => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(echoed, body);
}
