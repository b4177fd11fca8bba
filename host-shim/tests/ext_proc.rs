//! The Endpoint Picker Protocol: a real tonic gRPC client drives host-shim's ext_proc server
//! the way Envoy does (headers, streamed body chunks, end of stream, response headers).

mod common;

use common::{three_pods, Shim};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue, Metadata};
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_client::ExternalProcessorClient;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    body_mutation, processing_request, processing_response, HttpBody, HttpHeaders,
    ProcessingRequest, ProcessingResponse, ProtocolConfiguration,
};
use envoy_types::pb::google::protobuf::{value::Kind, ListValue, Struct, Value};
use host_shim::endpoint::Endpoint;
use host_shim::scheduler::config::SchedulerConfig;
use std::collections::HashMap;
use tokio::sync::mpsc;
use tonic::Streaming;

const FULL_DUPLEX: i32 = 4;
const BUFFERED: i32 = 2;

struct Stream {
    tx: mpsc::Sender<ProcessingRequest>,
    rx: Streaming<ProcessingResponse>,
}

impl Stream {
    async fn open(shim: &Shim) -> Self {
        let mut client = ExternalProcessorClient::connect(format!("http://{}", shim.grpc))
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel::<ProcessingRequest>(16);
        let outbound =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let rx = client.process(outbound).await.unwrap().into_inner();
        Self { tx, rx }
    }

    async fn send(&self, m: ProcessingRequest) {
        self.tx.send(m).await.unwrap();
    }

    async fn recv(&mut self) -> processing_response::Response {
        self.recv_full().await.response.unwrap()
    }

    async fn recv_full(&mut self) -> ProcessingResponse {
        self.rx.message().await.unwrap().expect("stream ended")
    }
}

fn headers(path: &str, extra: &[(&str, &str)], eos: bool) -> HttpHeaders {
    let mut hs = vec![
        hv(":method", "POST"),
        hv(":path", path),
        hv("content-type", "application/json"),
    ];
    hs.extend(extra.iter().map(|(k, v)| hv(k, v)));
    HttpHeaders {
        headers: Some(HeaderMap { headers: hs }),
        end_of_stream: eos,
        ..Default::default()
    }
}

fn hv(k: &str, v: &str) -> HeaderValue {
    HeaderValue {
        key: k.into(),
        raw_value: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn req(
    r: processing_request::Request,
    body_mode: Option<i32>,
    md: Option<Metadata>,
) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(r),
        protocol_config: body_mode.map(|m| ProtocolConfiguration {
            request_body_mode: m,
            ..Default::default()
        }),
        metadata_context: md,
        ..Default::default()
    }
}

/// A request-body message (no mode change, no metadata).
fn body_chunk(body: Vec<u8>, end_of_stream: bool) -> ProcessingRequest {
    req(
        processing_request::Request::RequestBody(HttpBody {
            body,
            end_of_stream,
            ..Default::default()
        }),
        None,
        None,
    )
}

fn metadata(ns: &str, key: &str, values: &[String]) -> Metadata {
    let list = Value {
        kind: Some(Kind::ListValue(ListValue {
            values: values
                .iter()
                .map(|s| Value {
                    kind: Some(Kind::StringValue(s.clone())),
                })
                .collect(),
        })),
    };
    Metadata {
        filter_metadata: HashMap::from([(
            ns.to_string(),
            Struct {
                fields: HashMap::from([(key.to_string(), list)]),
            },
        )]),
        ..Default::default()
    }
}

fn chat_body(system: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": "Qwen/Qwen3-0.6B",
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": "hello"}
        ]
    }))
    .unwrap()
}

fn set_header(r: &processing_response::Response, name: &str) -> Option<String> {
    let common = match r {
        processing_response::Response::RequestHeaders(h) => h.response.as_ref(),
        processing_response::Response::RequestBody(b) => b.response.as_ref(),
        _ => None,
    }?;
    common
        .header_mutation
        .as_ref()?
        .set_headers
        .iter()
        .filter_map(|o| o.header.as_ref())
        .find(|h| h.key == name)
        .map(|h| String::from_utf8(h.raw_value.clone()).unwrap())
}

fn lb_metadata(r: &ProcessingResponse) -> String {
    let md = r.dynamic_metadata.as_ref().expect("dynamic metadata");
    let Some(Kind::StructValue(lb)) = &md.fields["envoy.lb"].kind else {
        panic!("envoy.lb is not a struct")
    };
    match &lb.fields["x-gateway-destination-endpoint"].kind {
        Some(Kind::StringValue(s)) => s.clone(),
        other => panic!("unexpected {other:?}"),
    }
}

/// Full-duplex streamed request: returns the picked endpoint and the echoed body.
async fn full_duplex_pick(
    s: &mut Stream,
    body: &[u8],
    md: Option<Metadata>,
) -> (Endpoint, ProcessingResponse) {
    s.send(req(
        processing_request::Request::RequestHeaders(headers("/v1/chat/completions", &[], false)),
        Some(FULL_DUPLEX),
        md,
    ))
    .await;
    let chunks: Vec<&[u8]> = body.chunks(body.len() / 3 + 1).collect();
    let last = chunks.len() - 1;
    for (i, c) in chunks.iter().enumerate() {
        s.send(body_chunk(c.to_vec(), i == last)).await;
    }
    let first = s.recv_full().await;
    let r = first.response.as_ref().unwrap();
    assert!(
        matches!(r, processing_response::Response::RequestHeaders(_)),
        "{r:?}"
    );
    let ep: Endpoint = set_header(r, "x-gateway-destination-endpoint")
        .unwrap()
        .parse()
        .unwrap();
    let processing_response::Response::RequestHeaders(h) = r else {
        unreachable!()
    };
    assert!(h.response.as_ref().unwrap().clear_route_cache);

    let mut echoed = Vec::new();
    loop {
        match s.recv().await {
            processing_response::Response::RequestBody(b) => {
                let m = b.response.unwrap().body_mutation.unwrap().mutation.unwrap();
                let body_mutation::Mutation::StreamedResponse(sr) = m else {
                    panic!("expected a streamed response, got {m:?}")
                };
                echoed.extend_from_slice(&sr.body);
                if sr.end_of_stream {
                    break;
                }
            }
            other => panic!("expected body, got {other:?}"),
        }
    }
    assert_eq!(echoed, body, "the body must pass through unchanged");
    (ep, first)
}

#[tokio::test]
async fn full_duplex_pick_sets_header_metadata_and_follows_the_served_endpoint() {
    let (pods, shim) = three_pods().await;
    let body = chat_body(&"You are a careful assistant. ".repeat(80));
    let mut s = Stream::open(&shim).await;
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
    let mut s2 = Stream::open(&shim).await;
    let (again, _) = full_duplex_pick(&mut s2, &body, None).await;
    assert_eq!(again, served);
}

#[tokio::test]
async fn buffered_mode_answers_headers_then_mutates_on_the_body() {
    let (pods, shim) = three_pods().await;
    let mut s = Stream::open(&shim).await;
    s.send(req(
        processing_request::Request::RequestHeaders(headers("/v1/chat/completions", &[], false)),
        Some(BUFFERED),
        None,
    ))
    .await;
    match s.recv().await {
        processing_response::Response::RequestHeaders(h) => {
            assert!(h.response.is_none_or(|c| c.header_mutation.is_none()))
        }
        other => panic!("{other:?}"),
    }
    s.send(body_chunk(chat_body("short"), true)).await;
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
        let mut s = Stream::open(&shim).await;
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

    let mut s = Stream::open(&shim).await;
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
    s.send(body_chunk(body, true)).await;
    match s.recv().await {
        processing_response::Response::ImmediateResponse(ir) => {
            assert_eq!(ir.status.unwrap().code, 503);
            let hs = ir.headers.unwrap().set_headers;
            assert!(hs
                .iter()
                .any(|h| h.header.as_ref().unwrap().key == "retry-after"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_bodies_get_400_naming_the_field_and_no_pods_get_503() {
    let (_pods, shim) = three_pods().await;
    let mut s = Stream::open(&shim).await;
    s.send(req(
        processing_request::Request::RequestHeaders(headers("/v1/chat/completions", &[], false)),
        Some(FULL_DUPLEX),
        None,
    ))
    .await;
    s.send(body_chunk(
        br#"{"messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
        true,
    ))
    .await;
    match s.recv().await {
        processing_response::Response::ImmediateResponse(ir) => {
            assert_eq!(ir.status.unwrap().code, 400);
            let v: serde_json::Value = serde_json::from_slice(&ir.body).unwrap();
            assert!(
                v["error"]["message"].as_str().unwrap().contains("model"),
                "{v}"
            );
        }
        other => panic!("{other:?}"),
    }

    // A GET without body is picked from its headers alone.
    let mut s = Stream::open(&shim).await;
    s.send(req(
        processing_request::Request::RequestHeaders(headers("/v1/models", &[], true)),
        Some(FULL_DUPLEX),
        None,
    ))
    .await;
    let r = s.recv().await;
    assert!(
        set_header(&r, "x-gateway-destination-endpoint").is_some(),
        "{r:?}"
    );

    // No endpoints at all.
    let empty = Shim::start(&[], SchedulerConfig::guide_default()).await;
    let mut s = Stream::open(&empty).await;
    s.send(req(
        processing_request::Request::RequestHeaders(headers("/v1/chat/completions", &[], false)),
        Some(FULL_DUPLEX),
        None,
    ))
    .await;
    s.send(body_chunk(chat_body("x"), true)).await;
    match s.recv().await {
        processing_response::Response::ImmediateResponse(ir) => {
            assert_eq!(ir.status.unwrap().code, 503)
        }
        other => panic!("{other:?}"),
    }
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
    let mut s = Stream::open(&shim).await;
    s.send(req(
        processing_request::Request::RequestHeaders(headers("/v1/chat/completions", &[], false)),
        Some(1),
        None,
    ))
    .await;
    assert!(matches!(
        s.recv().await,
        processing_response::Response::RequestHeaders(_)
    ));
    let (a, b) = body.split_at(body.len() / 2);
    s.send(body_chunk(a.to_vec(), false)).await;
    let r = s.recv().await;
    assert!(matches!(r, processing_response::Response::RequestBody(_)));
    assert!(set_header(&r, "x-gateway-destination-endpoint").is_none());
    s.send(body_chunk(b.to_vec(), true)).await;
    let r = s.recv().await;
    let ep: Endpoint = set_header(&r, "x-gateway-destination-endpoint")
        .unwrap()
        .parse()
        .unwrap();
    assert!(pods.iter().any(|p| p.endpoint == ep));

    // FULL_DUPLEX with trailers: the body ends with the trailers, so the echoed body does
    // not claim end of stream, and the trailers are answered last.
    let mut s = Stream::open(&shim).await;
    s.send(req(
        processing_request::Request::RequestHeaders(headers("/v1/chat/completions", &[], false)),
        Some(FULL_DUPLEX),
        None,
    ))
    .await;
    s.send(body_chunk(body.clone(), false)).await;
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
