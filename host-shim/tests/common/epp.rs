//! An Envoy-like ext_proc client for host-shim's Endpoint Picker: [`EppStream`] opens one
//! `Process` stream, sends request headers / body chunks / response headers the way Envoy's
//! ext_proc filter does, and reads the answers; the helpers build the protocol messages and
//! read back the header mutations and load-balancing metadata a pick sets.

use super::Shim;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue, Metadata};
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_client::ExternalProcessorClient;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    body_mutation, processing_request, processing_response, HttpBody, HttpHeaders,
    ImmediateResponse, ProcessingRequest, ProcessingResponse, ProtocolConfiguration,
};
use envoy_types::pb::google::protobuf::{value::Kind, ListValue, Struct, Value};
use host_shim::endpoint::Endpoint;
use std::collections::HashMap;
use tokio::sync::mpsc;
use tonic::Streaming;

/// `ProcessingMode.BodySendMode` STREAMED.
pub const STREAMED: i32 = 1;
/// `ProcessingMode.BodySendMode` BUFFERED.
pub const BUFFERED: i32 = 2;
/// `ProcessingMode.BodySendMode` FULL_DUPLEX_STREAMED (as llm-d configures Envoy).
pub const FULL_DUPLEX: i32 = 4;
/// The path the suites send chat completions to.
pub const CHAT_PATH: &str = "/v1/chat/completions";

/// One ext_proc `Process` stream to host-shim's gRPC port.
pub struct EppStream {
    tx: mpsc::Sender<ProcessingRequest>,
    rx: Streaming<ProcessingResponse>,
}

impl EppStream {
    /// Opens a stream to `shim`.
    pub async fn open(shim: &Shim) -> Self {
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

    /// Sends one message.
    pub async fn send(&self, m: ProcessingRequest) {
        self.tx.send(m).await.unwrap();
    }

    /// Sends a POST's request headers for `path` with the body mode `body_mode` (`None`:
    /// the server's default) and the metadata `md`; `eos` says there is no body.
    pub async fn send_headers(
        &self,
        path: &str,
        body_mode: Option<i32>,
        md: Option<Metadata>,
        eos: bool,
    ) {
        self.send(req(
            processing_request::Request::RequestHeaders(headers(path, &[], eos)),
            body_mode,
            md,
        ))
        .await;
    }

    /// Sends one request-body chunk.
    pub async fn send_body(&self, body: Vec<u8>, end_of_stream: bool) {
        self.send(body_chunk(body, end_of_stream)).await;
    }

    /// The next answer's response.
    pub async fn recv(&mut self) -> processing_response::Response {
        self.recv_full().await.response.unwrap()
    }

    /// The next answer, whole (with its dynamic metadata).
    pub async fn recv_full(&mut self) -> ProcessingResponse {
        self.rx.message().await.unwrap().expect("stream ended")
    }

    /// The next answer, which must be an immediate response (a local reply).
    pub async fn recv_immediate(&mut self) -> ImmediateResponse {
        match self.recv().await {
            processing_response::Response::ImmediateResponse(ir) => ir,
            other => panic!("expected an immediate response, got {other:?}"),
        }
    }
}

/// Request headers of a JSON POST to `path` plus `extra`.
pub fn headers(path: &str, extra: &[(&str, &str)], eos: bool) -> HttpHeaders {
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

/// One header.
pub fn hv(k: &str, v: &str) -> HeaderValue {
    HeaderValue {
        key: k.into(),
        raw_value: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A `ProcessingRequest` carrying `r`, the body mode `body_mode` and the metadata `md`.
pub fn req(
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
pub fn body_chunk(body: Vec<u8>, end_of_stream: bool) -> ProcessingRequest {
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

/// Metadata with `values` as a list under `ns` / `key` (as Envoy sends the subset hint or
/// the served endpoint).
pub fn metadata(ns: &str, key: &str, values: &[String]) -> Metadata {
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

/// A chat completion body whose system prompt is `system`.
pub fn chat_body(system: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": "Qwen/Qwen3-0.6B",
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": "hello"}
        ]
    }))
    .unwrap()
}

/// The value a request-headers or request-body answer sets for the header `name`.
pub fn set_header(r: &processing_response::Response, name: &str) -> Option<String> {
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

/// The `envoy.lb` / `x-gateway-destination-endpoint` dynamic metadata of an answer.
pub fn lb_metadata(r: &ProcessingResponse) -> String {
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
pub async fn full_duplex_pick(
    s: &mut EppStream,
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
