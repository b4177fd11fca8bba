//! The simulated vLLM pod's OpenAI-compatible HTTP server.
//!
//! Routes: `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions`,
//! `POST /v1/responses`, `GET /health`, `GET /metrics`. Bad input is a 400 in vLLM's error
//! shape before any work starts (a `max_tokens` beyond the context window included); bodies
//! over [`PARSE_INLINE_BYTES`] are parsed on a blocking thread so the single-threaded runtime
//! keeps answering `/metrics` and other requests meanwhile. Every response carries `x-served-by: <name>` when a name is
//! configured. Generation goes through the engine [`driver`]; the reply text is made of
//! [`OUTPUT_WORDS`](crate::tokenizer::OUTPUT_WORDS) chosen by a hash of the prompt, so the same
//! prompt always gets the same reply (as with greedy decoding) and sending the reply back in the
//! next chat turn hits the prefix cache.

pub mod api;
pub mod driver;
pub mod error;
pub mod metrics;
pub mod responses;
pub mod responses_api;

use crate::block_hash::{block_hashes, chain_seed};
use crate::engine::{Engine, EngineConfig, TokenEvent};
use crate::tokenizer::{output_word, token_bytes, token_id};
use api::{Endpoint, GenerationRequest};
use bytes::Bytes;
use driver::{Clock, EngineHandle, Submission};
use error::ApiError;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use responses::{ResponseMeta, Usage, DONE};
use responses_api::ResponsesMeta;
use serde_json::json;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use xxhash_rust::xxh64::xxh64;

/// Bodies larger than this are parsed and tokenized off the runtime thread.
pub const PARSE_INLINE_BYTES: usize = 64 << 10;

/// Response body type of the server.
pub type Body = BoxBody<Bytes, Infallible>;

/// How the pod is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Served model name (`--model`).
    pub model: String,
    /// Value of the `x-served-by` header (`--name`), if any.
    pub served_by: Option<String>,
    /// Engine time runs this many times faster than real time.
    pub time_scale: f64,
    /// Engine limits and cost model.
    pub engine: EngineConfig,
    /// Mean output length when a request sets no `max_tokens`.
    pub default_output_tokens: u32,
    /// Relative spread (uniform ±) of that default.
    pub output_spread: f64,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
}

impl ServerConfig {
    /// Checks the configuration; returns the `x-served-by` header value, if any.
    ///
    /// # Errors
    /// Invalid engine limits, a non-positive time scale, or a name that is not a header value.
    pub fn validate(&self) -> anyhow::Result<Option<HeaderValue>> {
        self.engine.validate().map_err(anyhow::Error::msg)?;
        if !(self.time_scale > 0.0 && self.time_scale.is_finite()) {
            anyhow::bail!(
                "time scale must be a positive number, got {}",
                self.time_scale
            );
        }
        self.served_by
            .as_deref()
            .map(HeaderValue::from_str)
            .transpose()
            .map_err(|_| anyhow::anyhow!("--name must be a valid HTTP header value"))
    }
}

struct State {
    cfg: ServerConfig,
    engine: EngineHandle,
    served_by: Option<HeaderValue>,
    counter: AtomicU64,
}

/// Serves `cfg` on `listener` until the task is dropped.
///
/// # Errors
/// If the configuration is invalid or accepting connections fails.
pub async fn serve(listener: TcpListener, cfg: ServerConfig) -> anyhow::Result<()> {
    let served_by = cfg.validate()?;
    let engine = driver::spawn(Engine::new(cfg.engine), Clock::new(cfg.time_scale));
    let state = Arc::new(State {
        cfg,
        engine,
        served_by,
        counter: AtomicU64::new(0),
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    full(status, "application/json", v.to_string())
}

fn error_response(e: &ApiError) -> Response<Body> {
    full(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
        "application/json",
        e.body(),
    )
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let mut resp = route(state, req).await;
    if let Some(v) = &state.served_by {
        resp.headers_mut().insert("x-served-by", v.clone());
    }
    resp
}

async fn route(state: &State, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let m = req.method().clone();
    match (path.as_str(), &m) {
        ("/health", &Method::GET) => full(StatusCode::OK, "text/plain", ""),
        ("/v1/models", &Method::GET) => models(state),
        ("/metrics", &Method::GET) => match state.engine.snapshot().await {
            Ok(s) => full(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics::render(&state.cfg.model, &s),
            ),
            Err(_) => error_response(&ApiError::unavailable()),
        },
        ("/v1/chat/completions", &Method::POST) => generate(state, Endpoint::Chat, req).await,
        ("/v1/completions", &Method::POST) => generate(state, Endpoint::Completions, req).await,
        ("/v1/responses", &Method::POST) => generate(state, Endpoint::Responses, req).await,
        (
            "/health"
            | "/v1/models"
            | "/metrics"
            | "/v1/chat/completions"
            | "/v1/completions"
            | "/v1/responses",
            _,
        ) => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"detail": "Method Not Allowed"}),
        ),
        _ => json_response(StatusCode::NOT_FOUND, &json!({"detail": "Not Found"})),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn models(state: &State) -> Response<Body> {
    let m = &state.cfg.model;
    json_response(
        StatusCode::OK,
        &json!({
            "object": "list",
            "data": [{
                "id": m,
                "object": "model",
                "created": unix_now(),
                "owned_by": "vllm",
                "root": m,
                "parent": null,
                "max_model_len": state.cfg.engine.max_model_len,
            }]
        }),
    )
}

/// What one accepted request will produce.
struct Plan {
    prompt_len: u32,
    output: u32,
    seed: u64,
    finish: &'static str,
}

/// `limit` is the checked output length ([`GenerationRequest::output_limit`]).
fn plan(state: &State, g: &GenerationRequest, limit: Option<u32>, n: u64) -> Plan {
    let prompt_len = g.prompt_tokens.len() as u32;
    let seed = xxh64(&token_bytes(&g.prompt_tokens), 0);
    match limit {
        Some(m) => Plan {
            prompt_len,
            output: m,
            seed,
            finish: "length",
        },
        None => {
            // The model "stops" on its own: a length from the configured distribution, capped
            // by what is left of the context like vLLM's default max_tokens.
            let u = (xxh64(&n.to_le_bytes(), seed) % 10_001) as f64 / 10_000.0;
            let s = state.cfg.output_spread.clamp(0.0, 1.0);
            let mean = f64::from(state.cfg.default_output_tokens.max(1));
            let len = (mean * (1.0 - s + 2.0 * s * u)).round().max(1.0) as u32;
            let room = (state.cfg.engine.max_model_len as u32)
                .saturating_sub(prompt_len)
                .max(1);
            Plan {
                prompt_len,
                output: len.min(room),
                seed,
                finish: "stop",
            }
        }
    }
}

async fn generate(state: &State, endpoint: Endpoint, req: Request<Incoming>) -> Response<Body> {
    let limit = state.cfg.max_body_bytes;
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return error_response(&ApiError::too_large(limit))
        }
        Err(_) => {
            return error_response(&ApiError::bad_request(
                "could not read the request body",
                None,
            ))
        }
    };
    let parsed = if body.len() > PARSE_INLINE_BYTES {
        match tokio::task::spawn_blocking(move || api::parse(endpoint, &body)).await {
            Ok(r) => r,
            Err(_) => return error_response(&ApiError::unavailable()),
        }
    } else {
        api::parse(endpoint, &body)
    };
    let g = match parsed {
        Ok(g) => g,
        Err(e) => return error_response(&e),
    };
    if !g.model.is_empty() && g.model != state.cfg.model {
        return error_response(&ApiError::model_not_found(&g.model));
    }
    let limit = match g.output_limit(state.cfg.engine.max_model_len) {
        Ok(l) => l,
        Err(e) => return error_response(&e),
    };
    let n = state.counter.fetch_add(1, Ordering::Relaxed) + 1;
    let p = plan(state, &g, limit, n);
    let mut tokens = g.prompt_tokens.clone();
    tokens.extend((0..p.output).map(|i| token_id(output_word(p.seed, i))));
    let hashes = block_hashes(
        chain_seed(&state.cfg.model),
        &tokens,
        state.cfg.engine.block_size,
    );
    let (tx, rx) = mpsc::unbounded_channel();
    let sub = Submission {
        prompt_len: p.prompt_len,
        max_output: p.output,
        block_hashes: hashes,
        events: tx,
    };
    match state.engine.submit(sub).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return error_response(&ApiError::bad_request(e.to_string(), Some("max_tokens")))
        }
        Err(_) => return error_response(&ApiError::unavailable()),
    }
    if endpoint == Endpoint::Responses {
        let meta = ResponsesMeta::new(n, unix_now(), &state.cfg.model, limit);
        return if g.stream {
            responses_stream(meta, p, rx)
        } else {
            let (text, usage) = collect(&p, rx).await;
            json_response(StatusCode::OK, &meta.full(&text, p.finish, &usage))
        };
    }
    let meta = ResponseMeta::new(endpoint, n, unix_now(), &state.cfg.model);
    if g.stream {
        stream_response(meta, p, g.include_usage, rx)
    } else {
        let (text, usage) = collect(&p, rx).await;
        json_response(StatusCode::OK, &meta.full(&text, p.finish, &usage))
    }
}

/// Waits for the whole reply: its text and usage.
async fn collect(p: &Plan, mut rx: mpsc::UnboundedReceiver<TokenEvent>) -> (String, Usage) {
    let mut text = String::new();
    let mut cached = 0;
    let mut produced = 0;
    while let Some(ev) = rx.recv().await {
        text.push_str(output_word(p.seed, ev.index));
        cached = ev.cached_tokens;
        produced = ev.index + 1;
        if ev.finished {
            break;
        }
    }
    let usage = Usage {
        prompt_tokens: p.prompt_len,
        completion_tokens: produced,
        cached_tokens: cached,
    };
    (text, usage)
}

fn sse(s: impl futures_util::Stream<Item = Bytes> + Send + Sync + 'static) -> Response<Body> {
    use futures_util::StreamExt as _;
    let frames = s.map(|b| Ok::<_, Infallible>(Frame::data(b)));
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    r
}

struct ResponsesStream {
    meta: ResponsesMeta,
    plan: Plan,
    rx: mpsc::UnboundedReceiver<TokenEvent>,
    text: String,
    opened: bool,
    done: bool,
}

/// The Responses event stream: the opening events with the first token, one delta per token,
/// the closing events (with usage) after the last.
fn responses_stream(
    meta: ResponsesMeta,
    plan: Plan,
    rx: mpsc::UnboundedReceiver<TokenEvent>,
) -> Response<Body> {
    let st = ResponsesStream {
        meta,
        plan,
        rx,
        text: String::new(),
        opened: false,
        done: false,
    };
    sse(futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        // The engine went away mid-stream: end without `response.completed`.
        let ev = st.rx.recv().await?;
        let mut buf = bytes::BytesMut::new();
        if !st.opened {
            st.opened = true;
            buf.extend_from_slice(&st.meta.opening());
        }
        let word = output_word(st.plan.seed, ev.index);
        st.text.push_str(word);
        buf.extend_from_slice(&st.meta.delta(word));
        if ev.finished {
            let usage = Usage {
                prompt_tokens: st.plan.prompt_len,
                completion_tokens: ev.index + 1,
                cached_tokens: ev.cached_tokens,
            };
            buf.extend_from_slice(&st.meta.closing(&st.text, st.plan.finish, &usage));
            st.done = true;
        }
        Some((buf.freeze(), st))
    }))
}

struct StreamState {
    meta: ResponseMeta,
    plan: Plan,
    include_usage: bool,
    rx: mpsc::UnboundedReceiver<TokenEvent>,
    done: bool,
}

fn stream_response(
    meta: ResponseMeta,
    plan: Plan,
    include_usage: bool,
    rx: mpsc::UnboundedReceiver<TokenEvent>,
) -> Response<Body> {
    let st = StreamState {
        meta,
        plan,
        include_usage,
        rx,
        done: false,
    };
    let s = futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let Some(ev) = st.rx.recv().await else {
            // The engine went away mid-stream: end the stream without [DONE].
            return None;
        };
        let mut buf = bytes::BytesMut::new();
        if ev.index == 0 {
            if let Some(role) = st.meta.role_chunk() {
                buf.extend_from_slice(&role);
            }
        }
        let finish = ev.finished.then_some(st.plan.finish);
        buf.extend_from_slice(
            &st.meta
                .token_chunk(output_word(st.plan.seed, ev.index), finish),
        );
        if ev.finished {
            if st.include_usage {
                buf.extend_from_slice(&st.meta.usage_chunk(&Usage {
                    prompt_tokens: st.plan.prompt_len,
                    completion_tokens: ev.index + 1,
                    cached_tokens: ev.cached_tokens,
                }));
            }
            buf.extend_from_slice(DONE);
            st.done = true;
        }
        Some((buf.freeze(), st))
    });
    sse(s)
}
