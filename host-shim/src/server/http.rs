//! The HTTP listener (HTTP/1.1 and HTTP/2 cleartext on one port):
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/pick` | a pick, [`super::wire`] encoding; with flow control on it may wait in the queue ([`crate::flow_control`]), and a caller that goes away leaves it |
//! | `POST /v1/served` | a served-endpoint report, [`super::wire`] encoding (from a peer replica when it carries [`crate::peers::PEER_HEADER`]) |
//! | `POST /v1/completed` | a completion report (the request ended; same encoding as a served report): it no longer counts in flight |
//! | `POST /v1/cancel` | a cancel ([`super::wire`] encoding): the queued pick that carried this pick id leaves the queue at once; `204` whether or not one did |
//! | `GET /metrics` | host-shim's Prometheus metrics (OpenMetrics text) |
//! | `GET /healthz` | `200 ok` while the process runs |
//! | `GET /v1/endpoints` | the ready endpoints, comma separated (the plugin's fallback list) |
//! | `GET /debug/state` | JSON: config, endpoints with metrics, readiness, dispatch counts, index size |

use super::wire;
use crate::runtime::{Runtime, Source};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use infergate_core::headers::{DESTINATION_ENDPOINT, DESTINATION_ENDPOINT_FALLBACKS};
use infergate_core::openai_error::{self, ErrorKind};
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Response header carrying `matched/total` prefix blocks of a pick.
pub const PREFIX_MATCH_HEADER: &str = "x-infergate-prefix-match";

type Body = Full<Bytes>;

/// Serves the HTTP API on `listener` until accepting fails.
pub async fn serve(listener: TcpListener, runtime: Arc<Runtime>) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let rt = runtime.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let rt = rt.clone();
                async move { Ok::<_, Infallible>(route(req, &rt).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn route(req: Request<Incoming>, rt: &Arc<Runtime>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/pick") => match read_body(req).await {
            Ok(b) => pick(&b, rt).await,
            Err(r) => r,
        },
        (&Method::POST, "/v1/served") => {
            let source = if req.headers().contains_key(crate::peers::PEER_HEADER) {
                Source::Peer
            } else {
                Source::Http
            };
            match read_body(req).await {
                Ok(b) => served(&b, rt, source),
                Err(r) => r,
            }
        }
        (&Method::POST, "/v1/completed") => match read_body(req).await {
            Ok(b) => completed(&b, rt),
            Err(r) => r,
        },
        (&Method::POST, "/v1/cancel") => match read_body(req).await {
            Ok(b) => cancel(&b, rt),
            Err(r) => r,
        },
        (&Method::GET, "/metrics") => {
            let text = rt
                .telemetry
                .render(&rt.scheduler.index_stats(), &readiness(rt));
            let mut r = Response::new(Body::from(text));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/v1/endpoints") => {
            // The ready endpoints, comma separated: the affinity plugin keeps this list for
            // its consistent-hashing fallback when host-shim cannot be reached.
            let ready: Vec<String> = readiness(rt)
                .into_iter()
                .filter(|(_, r)| *r)
                .map(|(e, _)| e.to_string())
                .collect();
            text(StatusCode::OK, &ready.join(","))
        }
        (&Method::GET, "/debug/state") => debug_state(rt),
        (
            _,
            "/v1/pick" | "/v1/served" | "/v1/completed" | "/v1/cancel" | "/metrics" | "/healthz"
            | "/debug/state",
        ) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), wire::MAX_MESSAGE_BYTES)
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            ErrorKind::BadRequest,
            "invalid_request",
            &format!("cannot read body: {e}"),
        )),
    }
}

async fn pick(body: &[u8], rt: &Arc<Runtime>) -> Response<Body> {
    let wp = match wire::decode_pick(body) {
        Ok(w) => w,
        Err(e) => {
            rt.telemetry.record_bad_request("http");
            return error(
                StatusCode::BAD_REQUEST,
                ErrorKind::BadRequest,
                "invalid_request",
                &e.to_string(),
            );
        }
    };
    let ours = rt.scheduler.hasher().block_size;
    if wp.block_size != 0
        && !wp.request.block_hashes.is_empty()
        && usize::from(wp.block_size) != ours
    {
        rt.telemetry.record_bad_request("http");
        return error(
            StatusCode::BAD_REQUEST,
            ErrorKind::BadRequest,
            "invalid_request",
            &format!(
                "field `block_size`: the client hashed {}-byte blocks, host-shim indexes {ours}-byte blocks",
                wp.block_size
            ),
        );
    }
    // The plugin sends hashes, not the prompt: its size is estimated from the token count.
    let bytes = wp.request.prompt_tokens.saturating_mul(4);
    match crate::flow_control::pick_with_id(rt, wp.request, bytes, "http", wp.pick_id).await {
        Ok(p) => {
            let mut r = Response::new(Body::default());
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&p.endpoint.to_string()) {
                h.insert(DESTINATION_ENDPOINT, v);
            }
            if !p.fallbacks.is_empty() {
                let list = p
                    .fallbacks
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                if let Ok(v) = HeaderValue::from_str(&list) {
                    h.insert(DESTINATION_ENDPOINT_FALLBACKS, v);
                }
            }
            if let Ok(v) =
                HeaderValue::from_str(&format!("{}/{}", p.matched_blocks, p.total_blocks))
            {
                h.insert(PREFIX_MATCH_HEADER, v);
            }
            r
        }
        Err(refusal) => {
            let mut r = Response::new(Body::from(refusal.body()));
            *r.status_mut() =
                StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let h = r.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            h.insert(RETRY_AFTER, HeaderValue::from(refusal.retry_after));
            r
        }
    }
}

fn served(body: &[u8], rt: &Runtime, source: Source) -> Response<Body> {
    match wire::decode_served(body) {
        Ok(s) => {
            if rt.observe_served(&s.endpoint, &s.block_hashes, source) {
                let mut r = Response::new(Body::default());
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            } else {
                text(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "field `endpoint`: {} is not in the endpoint pool\n",
                        s.endpoint
                    ),
                )
            }
        }
        Err(e) => {
            rt.telemetry.record_served(source.api(), "bad_request");
            error(
                StatusCode::BAD_REQUEST,
                ErrorKind::BadRequest,
                "invalid_request",
                &e.to_string(),
            )
        }
    }
}

fn completed(body: &[u8], rt: &Runtime) -> Response<Body> {
    match wire::decode_served(body) {
        Ok(s) if rt.observe_completed(&s.endpoint, &s.block_hashes) => {
            let mut r = Response::new(Body::default());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Ok(s) => text(
            StatusCode::NOT_FOUND,
            &format!(
                "field `endpoint`: {} is not in the endpoint pool\n",
                s.endpoint
            ),
        ),
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            ErrorKind::BadRequest,
            "invalid_request",
            &e.to_string(),
        ),
    }
}

fn cancel(body: &[u8], rt: &Runtime) -> Response<Body> {
    match wire::decode_cancel(body) {
        Ok(id) => {
            crate::flow_control::cancel(rt, id);
            let mut r = Response::new(Body::default());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            ErrorKind::BadRequest,
            "invalid_request",
            &e.to_string(),
        ),
    }
}

fn readiness(rt: &Runtime) -> Vec<(crate::endpoint::Endpoint, bool)> {
    let now = rt.clock().now();
    let staleness = rt.scheduler.config().staleness;
    rt.snapshot()
        .iter()
        .map(|s| (s.endpoint, s.fresh_metrics(now, staleness).is_some()))
        .collect()
}

#[derive(Serialize)]
struct DebugState {
    config: DebugConfig,
    now_ms: u128,
    endpoints: Vec<DebugEndpoint>,
}

#[derive(Serialize)]
struct DebugConfig {
    scorers: Vec<(String, f64)>,
    filters: Vec<&'static str>,
    picker: &'static str,
    staleness_ms: u128,
    block_size: usize,
    max_blocks: usize,
    saturation_queue_depth: u64,
    saturation_kv_util: f64,
}

#[derive(Serialize)]
struct DebugEndpoint {
    #[serde(flatten)]
    state: crate::endpoint::EndpointState,
    ready: bool,
    age_ms: Option<u128>,
    index: Option<crate::index::IndexStats>,
    /// This replica's picks there not reported complete (before the scrape cap).
    in_flight: u64,
}

fn debug_state(rt: &Runtime) -> Response<Body> {
    let cfg = rt.scheduler.config();
    let now = rt.clock().now();
    let index = rt.scheduler.index_stats();
    let in_flight = rt.scheduler.in_flight(now);
    let endpoints = rt
        .snapshot()
        .into_iter()
        .map(|s| DebugEndpoint {
            ready: s.fresh_metrics(now, cfg.staleness).is_some(),
            age_ms: s.scraped_at.map(|t| now.saturating_sub(t).as_millis()),
            index: index
                .iter()
                .find(|(e, _)| *e == s.endpoint)
                .map(|(_, i)| *i),
            in_flight: in_flight
                .iter()
                .find(|(e, _)| *e == s.endpoint)
                .map_or(0, |(_, n)| *n),
            state: s,
        })
        .collect();
    let state = DebugState {
        config: DebugConfig {
            scorers: cfg
                .scorers
                .iter()
                .map(|s| (s.name.clone(), s.weight))
                .collect(),
            filters: cfg.filters.iter().map(|f| f.type_name()).collect(),
            picker: cfg.picker.type_name(),
            staleness_ms: cfg.staleness.as_millis(),
            block_size: cfg.hasher.block_size,
            max_blocks: cfg.hasher.max_blocks,
            saturation_queue_depth: cfg.saturation.queue_depth,
            saturation_kv_util: cfg.saturation.kv_util,
        },
        now_ms: now.as_millis(),
        endpoints,
    };
    let body = serde_json::to_vec_pretty(&state).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn error(status: StatusCode, kind: ErrorKind, code: &str, message: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(openai_error::body(kind, code, message)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
