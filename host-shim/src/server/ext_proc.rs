//! The Endpoint Picker Protocol over Envoy ext_proc (GIE proposal 004), so host-shim can be an
//! InferencePool's EPP.
//!
//! Per request stream:
//!
//! 1. Request headers: the path, the session key (`x-session-token` or
//!    `x-infergate-session`), `x-infergate-sheddable: true`, and the subset hint from
//!    `metadata_context.filter_metadata["envoy.lb.subset_hint"]["x-gateway-destination-endpoint-subset"]`
//!    (a list of `ip:port` or `ip` strings) are read.
//! 2. The body is buffered to its end (at most `max_body_bytes`, else 413), parsed with
//!    [`infergate_core::openai::parse_request`] (the same canonical prompt the affinity plugin
//!    hashes), and hashed with the scheduler's [`infergate_core::prefix::BlockHasher`].
//! 3. The pick is answered with a header mutation setting `x-gateway-destination-endpoint`
//!    (the primary) and `x-gateway-destination-endpoint-fallbacks`, `clear_route_cache`, and
//!    dynamic metadata `envoy.lb` / `x-gateway-destination-endpoint` = `primary,fallback,…`.
//!    No endpoint → immediate 503; shed → immediate 429; bad body → immediate 400 (OpenAI
//!    error JSON naming the field). With flow control on ([`crate::flow_control`]) the pick
//!    may wait in the queue first (the stream is answered when it leaves the queue: the pick,
//!    or the configured 429/503 with `Retry-After`); a stream Envoy closes meanwhile leaves
//!    the queue at once.
//! 4. Response headers: the endpoint that served is read from
//!    `metadata_context.filter_metadata["envoy.lb"]["x-gateway-destination-endpoint-served"]`
//!    or the response header of that name, else assumed to be the primary, and the prefix
//!    index is updated with it.
//!
//! Body modes (taken from `protocol_config` when Envoy sends it, else the configured
//! default): `FULL_DUPLEX_STREAMED` (llm-d's choice) — nothing is answered until the body
//! ends, then the headers response (with the mutation) and the whole body as
//! `streamed_response` chunks of ≤ 64 KiB; `BUFFERED` / `BUFFERED_PARTIAL` / `STREAMED` —
//! headers are answered at once, non-final chunks get empty answers, and the mutation rides on
//! the final body response; `NONE` — the pick is made from the headers alone. With
//! `STREAMED`, Envoy may forward the headers upstream before the body ends, so the routing
//! mutation can come too late: use `FULL_DUPLEX_STREAMED` or `BUFFERED` in deployments.

use crate::endpoint::Endpoint;
use crate::flow_control::refusal::Refusal;
use crate::runtime::{Runtime, Source};
use crate::scheduler::{Pick, PickRequest, SubsetEntry};
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::ExternalProcessor;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    body_mutation, processing_request, processing_response, BodyMutation, BodyResponse,
    CommonResponse, HeaderMutation, HeadersResponse, HttpHeaders, ImmediateResponse,
    ProcessingRequest, ProcessingResponse, StreamedBodyResponse, TrailersResponse,
};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use futures_util::Stream;
use infergate_core::headers::{DESTINATION_ENDPOINT, DESTINATION_ENDPOINT_FALLBACKS};
use infergate_core::openai::{parse_request_capped, ApiKind, BodyError};
use infergate_core::openai_error::{self, ErrorKind};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

/// Dynamic metadata namespace of the destination (Envoy's load-balancer namespace).
pub const LB_NAMESPACE: &str = "envoy.lb";
/// Dynamic metadata namespace of the subset hint.
pub const SUBSET_NAMESPACE: &str = "envoy.lb.subset_hint";
/// Key of the subset hint list.
pub const SUBSET_KEY: &str = "x-gateway-destination-endpoint-subset";
/// Key (metadata and response header) naming the endpoint that served.
pub const SERVED_KEY: &str = "x-gateway-destination-endpoint-served";
/// Request headers read as the session key, first present wins.
pub const SESSION_HEADERS: &[&str] = &["x-session-token", "x-infergate-session"];
/// Request header marking a request sheddable (`true`/`1`).
pub const SHEDDABLE_HEADER: &str = "x-infergate-sheddable";

/// Largest body chunk sent back in `streamed_response`.
const CHUNK: usize = 64 * 1024;

/// How the request body reaches the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// Not sent: pick from headers.
    None,
    /// Chunks, each answered; headers answered first.
    Streamed,
    /// One message (`BUFFERED`, `BUFFERED_PARTIAL`); headers answered first.
    Buffered,
    /// Chunks, unanswered; the processor answers headers and echoes the body at the end.
    FullDuplex,
}

impl BodyMode {
    fn from_proto(mode: i32) -> Self {
        match BodySendMode::try_from(mode) {
            Ok(BodySendMode::Streamed) => Self::Streamed,
            Ok(BodySendMode::Buffered | BodySendMode::BufferedPartial) => Self::Buffered,
            Ok(BodySendMode::FullDuplexStreamed) => Self::FullDuplex,
            _ => Self::None,
        }
    }
}

/// ext_proc server settings.
#[derive(Debug, Clone)]
pub struct EppConfig {
    /// Request body mode assumed when Envoy does not send `protocol_config`.
    pub default_body_mode: BodyMode,
    /// Largest request body buffered for a pick.
    pub max_body_bytes: usize,
}

impl Default for EppConfig {
    fn default() -> Self {
        Self {
            default_body_mode: BodyMode::FullDuplex,
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The `ExternalProcessor` service.
#[derive(Debug, Clone)]
pub struct EppService {
    runtime: Arc<Runtime>,
    config: Arc<EppConfig>,
}

impl EppService {
    /// A service picking with `runtime`.
    pub fn new(runtime: Arc<Runtime>, config: EppConfig) -> Self {
        Self {
            runtime,
            config: Arc::new(config),
        }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ProcessingResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalProcessor for EppService {
    type ProcessStream = ResponseStream;

    async fn process(
        &self,
        request: Request<Streaming<ProcessingRequest>>,
    ) -> Result<Response<Self::ProcessStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel::<Result<ProcessingResponse, Status>>(8);
        let mut session = EppSession::new(self.runtime.clone(), self.config.clone());
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(msg)) => {
                        let mut out = session.on_message(msg);
                        if let Some(pending) = session.pending.take() {
                            match session.await_pick(pending, &mut inbound).await {
                                Some(more) => out.extend(more),
                                // Envoy closed the stream while the pick waited.
                                None => break,
                            }
                        }
                        for resp in out {
                            if tx.send(Ok(resp)).await.is_err() {
                                session.finish();
                                return;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, "ext_proc stream ended with an error");
                        break;
                    }
                }
            }
            session.finish();
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// One request's pass through the protocol.
struct EppSession {
    rt: Arc<Runtime>,
    cfg: Arc<EppConfig>,
    mode: Option<BodyMode>,
    response_full_duplex: bool,
    path: String,
    session_key: Option<String>,
    sheddable: bool,
    subset: Option<Vec<SubsetEntry>>,
    body: Vec<u8>,
    picked: Option<(Endpoint, Vec<u64>)>,
    decided: bool,
    served_reported: bool,
    /// The endpoint the served report named.
    served: Option<Endpoint>,
    /// A pick decided on but not made yet (it may wait in the flow control queue).
    pending: Option<(PickRequest, Stage)>,
    /// Whether the request trailers are acknowledged after the pending pick's answer.
    ack_trailers: bool,
}

impl EppSession {
    fn new(rt: Arc<Runtime>, cfg: Arc<EppConfig>) -> Self {
        Self {
            rt,
            cfg,
            mode: None,
            response_full_duplex: false,
            path: String::new(),
            session_key: None,
            sheddable: false,
            subset: None,
            body: Vec::new(),
            picked: None,
            decided: false,
            served_reported: false,
            served: None,
            pending: None,
            ack_trailers: false,
        }
    }

    fn mode(&self) -> BodyMode {
        self.mode.unwrap_or(self.cfg.default_body_mode)
    }

    fn on_message(&mut self, msg: ProcessingRequest) -> Vec<ProcessingResponse> {
        if let Some(pc) = &msg.protocol_config {
            if self.mode.is_none() {
                self.mode = Some(BodyMode::from_proto(pc.request_body_mode));
                self.response_full_duplex =
                    BodyMode::from_proto(pc.response_body_mode) == BodyMode::FullDuplex;
            }
        }
        let metadata = msg.metadata_context.as_ref().map(|m| &m.filter_metadata);
        let Some(request) = msg.request else {
            return Vec::new();
        };
        match request {
            processing_request::Request::RequestHeaders(h) => {
                self.read_request_headers(&h, metadata);
                if h.end_of_stream || self.mode() == BodyMode::None {
                    self.decide(Stage::Headers)
                } else if self.mode() == BodyMode::FullDuplex {
                    Vec::new()
                } else {
                    vec![respond(processing_response::Response::RequestHeaders(
                        HeadersResponse::default(),
                    ))]
                }
            }
            processing_request::Request::RequestBody(b) => {
                if self.decided {
                    return self.pass_body(b.body, b.end_of_stream);
                }
                if self.body.len() + b.body.len() > self.cfg.max_body_bytes {
                    self.decided = true;
                    return vec![immediate(
                        413,
                        ErrorKind::PayloadTooLarge,
                        "request_too_large",
                        &format!(
                            "request body exceeds {} bytes, the most host-shim buffers for a pick",
                            self.cfg.max_body_bytes
                        ),
                    )];
                }
                self.body.extend_from_slice(&b.body);
                match (b.end_of_stream, self.mode()) {
                    (true, mode) => self.decide(Stage::Body {
                        mode,
                        trailers: false,
                    }),
                    (false, BodyMode::Buffered) => self.decide(Stage::Body {
                        mode: BodyMode::Buffered,
                        trailers: false,
                    }),
                    (false, BodyMode::Streamed) => vec![respond(
                        processing_response::Response::RequestBody(BodyResponse::default()),
                    )],
                    (false, _) => Vec::new(),
                }
            }
            processing_request::Request::RequestTrailers(_) => {
                let mut out = if self.decided {
                    Vec::new()
                } else {
                    self.decide(Stage::Body {
                        mode: self.mode(),
                        trailers: true,
                    })
                };
                if self.pending.is_some() {
                    // Acknowledged after the pick's own answer (which may be an immediate one).
                    self.ack_trailers = true;
                } else if !out.iter().any(is_immediate) {
                    out.push(respond(processing_response::Response::RequestTrailers(
                        TrailersResponse::default(),
                    )));
                }
                out
            }
            processing_request::Request::ResponseHeaders(h) => {
                self.report_served(&h, metadata);
                vec![respond(processing_response::Response::ResponseHeaders(
                    HeadersResponse::default(),
                ))]
            }
            processing_request::Request::ResponseBody(b) => {
                let response = if self.response_full_duplex {
                    streamed_body(b.body, b.end_of_stream)
                } else {
                    BodyResponse::default()
                };
                vec![respond(processing_response::Response::ResponseBody(
                    response,
                ))]
            }
            processing_request::Request::ResponseTrailers(_) => {
                vec![respond(processing_response::Response::ResponseTrailers(
                    TrailersResponse::default(),
                ))]
            }
        }
    }

    /// Body chunks arriving after the decision (only when Envoy keeps streaming after an
    /// immediate response or in modes where we already answered) are acknowledged.
    fn pass_body(&mut self, body: Vec<u8>, end: bool) -> Vec<ProcessingResponse> {
        match self.mode() {
            BodyMode::FullDuplex => vec![respond(processing_response::Response::RequestBody(
                streamed_body(body, end),
            ))],
            _ => vec![respond(processing_response::Response::RequestBody(
                BodyResponse::default(),
            ))],
        }
    }

    fn read_request_headers(
        &mut self,
        h: &HttpHeaders,
        metadata: Option<&HashMap<String, Struct>>,
    ) {
        for hv in h.headers.iter().flat_map(|m| m.headers.iter()) {
            let key = hv.key.to_ascii_lowercase();
            let value = header_value(hv);
            if key == ":path" {
                self.path = value;
            } else if SESSION_HEADERS.contains(&key.as_str()) && self.session_key.is_none() {
                if !value.is_empty() {
                    self.session_key = Some(value);
                }
            } else if key == SHEDDABLE_HEADER {
                self.sheddable = matches!(value.trim(), "true" | "1");
            }
        }
        self.subset = metadata
            .and_then(|m| m.get(SUBSET_NAMESPACE))
            .and_then(|s| s.fields.get(SUBSET_KEY))
            .map(|v| {
                strings_of(v)
                    .iter()
                    .filter_map(|s| match s.parse::<SubsetEntry>() {
                        Ok(e) => Some(e),
                        Err(m) => {
                            tracing::warn!(entry = %s, error = %m, "ignoring bad subset hint entry");
                            None
                        }
                    })
                    .collect()
            });
    }

    /// The pick request for what was read; the body's parse error when it is malformed.
    fn build_request(&self) -> Result<PickRequest, BodyError> {
        let hasher = self.rt.scheduler.hasher();
        let mut req = PickRequest {
            session_key: self.session_key.clone(),
            subset: self.subset.clone(),
            sheddable: self.sheddable,
            prompt_tokens: (self.body.len() / 4) as u64,
            ..Default::default()
        };
        if self.body.is_empty() {
            return Ok(req);
        }
        let Some(api) = ApiKind::from_path(&self.path) else {
            // Not an inference API we parse: route by load alone.
            return Ok(req);
        };
        // Only the hashed window of the prompt is kept; the estimate covers all of it.
        let parsed = parse_request_capped(api, &self.body, hasher.window_bytes())?;
        req.block_hashes = hasher.hashes(&parsed.model, &parsed.prompt.bytes);
        req.prompt_tokens = parsed.estimated_prompt_tokens();
        if req.session_key.is_none() {
            req.session_key = parsed.session_key.clone();
        }
        req.model = parsed.model;
        Ok(req)
    }

    fn decide(&mut self, stage: Stage) -> Vec<ProcessingResponse> {
        self.decided = true;
        let req = match self.build_request() {
            Ok(r) => r,
            Err(e) => {
                self.rt.telemetry.record_bad_request("ext_proc");
                return vec![immediate(
                    400,
                    ErrorKind::BadRequest,
                    "invalid_request",
                    &e.to_string(),
                )];
            }
        };
        self.pending = Some((req, stage));
        Vec::new()
    }

    /// Makes the pending pick (waiting in the flow control queue if it must) and answers it;
    /// `None` when Envoy closed the stream meanwhile (the wait is abandoned). Messages that
    /// arrive while the pick waits are handled after its answer.
    async fn await_pick(
        &mut self,
        (req, stage): (PickRequest, Stage),
        inbound: &mut Streaming<ProcessingRequest>,
    ) -> Option<Vec<ProcessingResponse>> {
        let hashes = req.block_hashes.clone();
        let bytes = self.body.len() as u64;
        let rt = self.rt.clone();
        let pick = crate::flow_control::pick(&rt, req, bytes, "ext_proc");
        tokio::pin!(pick);
        let mut early = Vec::new();
        let answer = loop {
            tokio::select! {
                a = &mut pick => break a,
                m = inbound.message() => match m {
                    Ok(Some(m)) => early.push(m),
                    _ => return None,
                },
            }
        };
        let mut out = match answer {
            Ok(p) => self.conclude(p, hashes, stage),
            Err(refusal) => vec![refused(&refusal)],
        };
        if std::mem::take(&mut self.ack_trailers) && !out.iter().any(is_immediate) {
            out.push(respond(processing_response::Response::RequestTrailers(
                TrailersResponse::default(),
            )));
        }
        for m in early {
            out.extend(self.on_message(m));
        }
        Some(out)
    }

    /// The responses that route to `pick`.
    fn conclude(&mut self, pick: Pick, hashes: Vec<u64>, stage: Stage) -> Vec<ProcessingResponse> {
        let (mutation, metadata) = destination(&pick);
        self.picked = Some((pick.endpoint, hashes));
        let common = CommonResponse {
            header_mutation: Some(mutation),
            clear_route_cache: true,
            ..Default::default()
        };
        match stage {
            Stage::Headers => vec![ProcessingResponse {
                response: Some(processing_response::Response::RequestHeaders(
                    HeadersResponse {
                        response: Some(common),
                    },
                )),
                dynamic_metadata: Some(metadata),
                ..Default::default()
            }],
            Stage::Body {
                mode: BodyMode::FullDuplex,
                trailers,
            } => {
                let mut out = vec![ProcessingResponse {
                    response: Some(processing_response::Response::RequestHeaders(
                        HeadersResponse {
                            response: Some(common),
                        },
                    )),
                    dynamic_metadata: Some(metadata),
                    ..Default::default()
                }];
                let body = std::mem::take(&mut self.body);
                let chunks: Vec<&[u8]> = if body.is_empty() {
                    vec![&[]]
                } else {
                    body.chunks(CHUNK).collect()
                };
                let last = chunks.len() - 1;
                for (i, c) in chunks.into_iter().enumerate() {
                    out.push(respond(processing_response::Response::RequestBody(
                        streamed_body(c.to_vec(), i == last && !trailers),
                    )));
                }
                out
            }
            Stage::Body { .. } => vec![ProcessingResponse {
                response: Some(processing_response::Response::RequestBody(BodyResponse {
                    response: Some(common),
                })),
                dynamic_metadata: Some(metadata),
                ..Default::default()
            }],
        }
    }

    fn report_served(&mut self, h: &HttpHeaders, metadata: Option<&HashMap<String, Struct>>) {
        let Some((primary, hashes)) = &self.picked else {
            return;
        };
        if self.served_reported {
            return;
        }
        let from_metadata = metadata
            .and_then(|m| m.get(LB_NAMESPACE))
            .and_then(|s| s.fields.get(SERVED_KEY))
            .and_then(|v| strings_of(v).into_iter().next());
        let from_header = || {
            h.headers
                .iter()
                .flat_map(|m| m.headers.iter())
                .find(|hv| hv.key.eq_ignore_ascii_case(SERVED_KEY))
                .map(header_value)
        };
        let served = from_metadata
            .or_else(from_header)
            .and_then(|s| s.trim().parse::<Endpoint>().ok())
            .unwrap_or(*primary);
        self.rt.observe_served(&served, hashes, Source::ExtProc);
        self.served = Some(served);
        self.served_reported = true;
    }

    /// At stream end (Envoy closes the ext_proc stream when the request ends): if no
    /// response headers came, credit the primary; then the request no longer counts in
    /// flight.
    fn finish(&mut self) {
        let Some((primary, hashes)) = self.picked.take() else {
            return;
        };
        if !self.served_reported {
            self.rt.observe_served(&primary, &hashes, Source::ExtProc);
            self.served_reported = true;
        }
        let served = self.served.unwrap_or(primary);
        self.rt.observe_completed(&served, &hashes);
    }
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    Headers,
    Body { mode: BodyMode, trailers: bool },
}

fn respond(r: processing_response::Response) -> ProcessingResponse {
    ProcessingResponse {
        response: Some(r),
        ..Default::default()
    }
}

fn is_immediate(r: &ProcessingResponse) -> bool {
    matches!(
        r.response,
        Some(processing_response::Response::ImmediateResponse(_))
    )
}

fn streamed_body(body: Vec<u8>, end_of_stream: bool) -> BodyResponse {
    BodyResponse {
        response: Some(CommonResponse {
            body_mutation: Some(BodyMutation {
                mutation: Some(body_mutation::Mutation::StreamedResponse(
                    StreamedBodyResponse {
                        body,
                        end_of_stream,
                        ..Default::default()
                    },
                )),
            }),
            ..Default::default()
        }),
    }
}

fn header_value(hv: &HeaderValue) -> String {
    if hv.raw_value.is_empty() {
        hv.value.clone()
    } else {
        String::from_utf8_lossy(&hv.raw_value).into_owned()
    }
}

fn strings_of(v: &Value) -> Vec<String> {
    match &v.kind {
        Some(Kind::StringValue(s)) => s.split(',').map(|x| x.trim().to_string()).collect(),
        Some(Kind::ListValue(l)) => l.values.iter().flat_map(strings_of).collect(),
        _ => Vec::new(),
    }
}

fn set_header(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            raw_value: value.as_bytes().to_vec(),
            ..Default::default()
        }),
        // OVERWRITE_IF_EXISTS_OR_ADD: a client-sent copy never survives.
        append_action: 2,
        ..Default::default()
    }
}

fn string_value(s: String) -> Value {
    Value {
        kind: Some(Kind::StringValue(s)),
    }
}

/// The header mutation and `envoy.lb` metadata that route to `pick`.
fn destination(pick: &Pick) -> (HeaderMutation, Struct) {
    let mut set_headers = vec![set_header(DESTINATION_ENDPOINT, &pick.endpoint.to_string())];
    let mut remove_headers = Vec::new();
    let fallbacks: Vec<String> = pick.fallbacks.iter().map(|e| e.to_string()).collect();
    if fallbacks.is_empty() {
        remove_headers.push(DESTINATION_ENDPOINT_FALLBACKS.to_string());
    } else {
        set_headers.push(set_header(
            DESTINATION_ENDPOINT_FALLBACKS,
            &fallbacks.join(","),
        ));
    }
    let all = std::iter::once(pick.endpoint.to_string())
        .chain(fallbacks)
        .collect::<Vec<_>>()
        .join(",");
    let lb = Struct {
        fields: HashMap::from([(DESTINATION_ENDPOINT.to_string(), string_value(all))]),
    };
    let metadata = Struct {
        fields: HashMap::from([(
            LB_NAMESPACE.to_string(),
            Value {
                kind: Some(Kind::StructValue(lb)),
            },
        )]),
    };
    (
        HeaderMutation {
            set_headers,
            remove_headers,
        },
        metadata,
    )
}

fn immediate(status: u16, kind: ErrorKind, code: &str, message: &str) -> ProcessingResponse {
    let mut set_headers = vec![set_header("content-type", "application/json")];
    if status == 429 || status == 503 {
        set_headers.push(set_header("retry-after", "1"));
    }
    respond(processing_response::Response::ImmediateResponse(
        ImmediateResponse {
            status: Some(HttpStatus {
                code: i32::from(status),
            }),
            headers: Some(HeaderMutation {
                set_headers,
                remove_headers: Vec::new(),
            }),
            body: openai_error::body(kind, code, message),
            details: format!("host-shim: {message}"),
            ..Default::default()
        },
    ))
}

/// The immediate answer of a refused pick: its status, OpenAI error body and `Retry-After`.
fn refused(r: &Refusal) -> ProcessingResponse {
    respond(processing_response::Response::ImmediateResponse(
        ImmediateResponse {
            status: Some(HttpStatus {
                code: i32::from(r.status),
            }),
            headers: Some(HeaderMutation {
                set_headers: vec![
                    set_header("content-type", "application/json"),
                    set_header("retry-after", &r.retry_after.to_string()),
                ],
                remove_headers: Vec::new(),
            }),
            body: r.body(),
            details: format!("host-shim: {}", r.message),
            ..Default::default()
        },
    ))
}
