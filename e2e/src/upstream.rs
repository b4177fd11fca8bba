//! A minimal OpenAI-compatible model server for the harness: enough of vLLM's API for the
//! gateway's tests to see what reached the upstream and who served it.
//!
//! Every response carries `x-served-by: <name>`; every request is recorded (method, path,
//! headers, body) so tests can assert that, for example, a credential was not forwarded.
//!
//! Usage is reported as vLLM does; `prompt_tokens` is `ceil(body bytes / 4)`. A streaming
//! request with `x-test-truncate-after: N` is cut off (connection reset) after N content
//! chunks, before its usage chunk and `[DONE]`; with `x-test-malformed-usage` the `usage` object
//! has values of the wrong type.

use anyhow::Result;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Largest request body the upstream reads.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lower case, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl Recorded {
    /// Every value of header `name`.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A running upstream; stops when dropped.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name, returned in `x-served-by`.
    pub name: String,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Upstream {
    /// Starts serving model `model` on a free loopback port.
    pub async fn start(name: &str, model: &str) -> Result<Self> {
        Self::start_on(name, model, "127.0.0.1:0".parse()?).await
    }

    /// Starts serving on `addr`.
    pub async fn start_on(name: &str, model: &str, addr: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            name: name.to_string(),
            model: model.to_string(),
            requests: Mutex::new(Vec::new()),
            recording: AtomicBool::new(true),
            kv_blocks: AtomicU64::new(DEFAULT_KV_BLOCKS),
            waiting: AtomicU64::new(0),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            name: name.to_string(),
            state: shared,
            task,
        })
    }

    /// Sets the KV capacity its metrics report (`vllm:cache_config_info` `num_gpu_blocks`, of
    /// 16 tokens each).
    pub fn set_kv_blocks(&self, blocks: u64) {
        self.state.kv_blocks.store(blocks, Ordering::Relaxed);
    }

    /// Sets the queue length its metrics report (`vllm:num_requests_waiting`; 0 unless told
    /// otherwise): above host-shim's queue threshold, the pod counts as saturated.
    pub fn set_waiting(&self, requests: u64) {
        self.state.waiting.store(requests, Ordering::Relaxed);
    }

    /// Stops keeping a copy of every request (benchmarks send gigabytes of prompts).
    pub fn stop_recording(&self) {
        self.state.recording.store(false, Ordering::Relaxed);
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// KV blocks (of 16 tokens) an upstream reports unless told otherwise.
const DEFAULT_KV_BLOCKS: u64 = 4096;

struct State {
    name: String,
    model: String,
    requests: Mutex<Vec<Recorded>>,
    recording: AtomicBool,
    kv_blocks: AtomicU64,
    waiting: AtomicU64,
    in_flight: std::sync::atomic::AtomicUsize,
}

/// vLLM-named metrics, so host-shim can scrape this upstream like a vLLM pod.
fn metrics(state: &State) -> String {
    let running = state.in_flight.load(Ordering::Relaxed);
    let m = &state.model;
    let blocks = state.kv_blocks.load(Ordering::Relaxed);
    let waiting = state.waiting.load(Ordering::Relaxed);
    format!(
        "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{{model_name=\"{m}\"}} {running}\n\
         # TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{{model_name=\"{m}\"}} {waiting}\n\
         # TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{{model_name=\"{m}\"}} 0.0\n\
         # TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{{block_size=\"16\",num_gpu_blocks=\"{blocks}\"}} 1.0\n"
    )
}

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(body.into())
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert("content-type", v);
    }
    resp
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = json!({"object": "error", "message": message, "type": "BadRequestError", "param": null, "code": status.as_u16()});
    full(status, "application/json", body.to_string())
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let truncate = req
        .headers()
        .get("x-test-truncate-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let malformed_usage = req.headers().contains_key("x-test-malformed-usage");
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(error(StatusCode::PAYLOAD_TOO_LARGE, "body too large")),
    };
    // Scrapes are not requests the gateway sent: keep them out of the record.
    let record = path != "/metrics" && state.recording.load(Ordering::Relaxed);
    if let (true, Ok(mut r)) = (record, state.requests.lock()) {
        r.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            headers,
            body: body.clone(),
        });
    }
    let route = path.split('?').next().unwrap_or_default();
    let mut resp = match (method.as_str(), route) {
        ("GET", "/health") => full(StatusCode::OK, "text/plain", ""),
        ("GET", "/metrics") => full(StatusCode::OK, "text/plain; version=0.0.4", metrics(&state)),
        ("GET", "/v1/models") => full(
            StatusCode::OK,
            "application/json",
            json!({"object": "list", "data": [{"id": state.model, "object": "model", "owned_by": "infergate"}]}).to_string(),
        ),
        ("POST", "/v1/chat/completions") => {
            completion(&state, &body, true, truncate, malformed_usage)
        }
        ("POST", "/v1/completions") => completion(&state, &body, false, truncate, malformed_usage),
        _ => error(StatusCode::NOT_FOUND, "not found"),
    };
    if let Ok(v) = state.name.parse() {
        resp.headers_mut().insert("x-served-by", v);
    }
    Ok(resp)
}

fn completion(
    state: &State,
    body: &[u8],
    chat: bool,
    truncate: Option<usize>,
    malformed_usage: bool,
) -> Response<Body> {
    let req: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    let Some(model) = req["model"].as_str() else {
        return error(StatusCode::BAD_REQUEST, "`model` is required");
    };
    if model != state.model {
        return error(
            StatusCode::NOT_FOUND,
            &format!("The model `{model}` does not exist."),
        );
    }
    let prompt_tokens = body.len().div_ceil(4).max(1) as u64;
    let max = req["max_completion_tokens"]
        .as_u64()
        .or_else(|| req["max_tokens"].as_u64())
        .unwrap_or(8)
        .clamp(1, 64);
    let words: Vec<String> = (0..max).map(|i| format!("tok{i} ")).collect();
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": max, "total_tokens": prompt_tokens + max});
    let usage = if malformed_usage {
        json!({"prompt_tokens": "many", "completion_tokens": -1})
    } else {
        usage
    };

    let id = format!("cmpl-{}", state.name);
    let object = if chat {
        "chat.completion"
    } else {
        "text_completion"
    };
    if req["stream"].as_bool() != Some(true) {
        let text: String = words.concat();
        let choice = if chat {
            json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"})
        } else {
            json!({"index": 0, "text": text, "finish_reason": "length"})
        };
        let out = json!({"id": id, "object": object, "created": 0, "model": model, "choices": [choice], "usage": usage});
        return full(StatusCode::OK, "application/json", out.to_string());
    }
    let include_usage = req["stream_options"]["include_usage"].as_bool() == Some(true);
    let chunk_object = if chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let mut events: Vec<String> = Vec::new();
    let n = words.len();
    for (i, w) in words.into_iter().enumerate() {
        let finish = if i + 1 == n {
            json!("length")
        } else {
            Value::Null
        };
        let choice = if chat {
            json!({"index": 0, "delta": {"content": w}, "finish_reason": finish})
        } else {
            json!({"index": 0, "text": w, "finish_reason": finish})
        };
        events.push(json!({"id": id, "object": chunk_object, "created": 0, "model": model, "choices": [choice]}).to_string());
    }
    if include_usage {
        events.push(json!({"id": id, "object": chunk_object, "created": 0, "model": model, "choices": [], "usage": usage}).to_string());
    }
    events.push("[DONE]".to_string());
    let cut = truncate.unwrap_or(usize::MAX);
    let stream =
        futures_util::stream::iter(events.into_iter().enumerate()).then(move |(i, e)| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            if i >= cut {
                return Err(std::io::Error::other("truncated by x-test-truncate-after"));
            }
            Ok(Frame::data(Bytes::from(format!("data: {e}\n\n"))))
        });
    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
    if let Ok(v) = "text/event-stream".parse() {
        resp.headers_mut().insert("content-type", v);
    }
    resp
}
