//! The host calls the adapters make, as plain functions that never panic.
//!
//! proxy-wasm's trait methods (`Context::get_property`, `HttpContext::get_http_request_header`,
//! `send_http_response`, …) call `hostcalls` and `.unwrap()` the result, and the string getters
//! for headers also unwrap a UTF-8 conversion: a host call that fails, or one header value
//! that is not UTF-8 (obs-text bytes, which HTTP/1.1 and Envoy accept), panics the plugin's VM
//! and every later request on that worker fails. These functions call `hostcalls` directly,
//! read headers as bytes (converted lossily), and turn a failure into a [`HostError`] that is
//! logged once here and returned as `None` / `Err` / a default the caller documents.
//!
//! The calls act on whichever context Envoy is calling into, as the trait methods do (a root
//! context acting for a request first calls [`act_for`]).

use infergate_core::auth::Callout;
use infergate_core::openai_error::ErrorKind;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, Status};
use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

/// A host call the host refused: which call, and the status it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError {
    /// The host call (`get_property`, `dispatch_http_call`, …).
    pub call: &'static str,
    /// What the host answered.
    pub status: Status,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host call `{}` failed: {:?}", self.call, self.status)
    }
}

impl std::error::Error for HostError {}

/// `r` with a failure typed and logged (at `level`).
fn checked<T>(call: &'static str, level: LogLevel, r: Result<T, Status>) -> Result<T, HostError> {
    r.map_err(|status| failed(call, level, status))
}

/// A failure, logged once (not generic: one copy of the formatting code in the plugin).
#[cold]
#[inline(never)]
fn failed(call: &'static str, level: LogLevel, status: Status) -> HostError {
    let e = HostError { call, status };
    crate::log(level, &e.to_string());
    e
}

/// A call whose failure means the host is in a state the plugin cannot help: warned about.
fn warned<T>(call: &'static str, r: Result<T, Status>) -> Result<T, HostError> {
    checked(call, LogLevel::Warn, r)
}

/// Header bytes as text; bytes that are not UTF-8 become U+FFFD (a credential or key with
/// such bytes then matches nothing, as it would not have matched anyway).
fn text(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn header(map: MapType, call: &'static str, name: &str) -> Option<String> {
    warned(call, hostcalls::get_map_value_bytes(map, name))
        .ok()
        .flatten()
        .map(text)
}

fn headers(map: MapType, call: &'static str) -> Vec<(String, String)> {
    warned(call, hostcalls::get_map_bytes(map))
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, text(v)))
        .collect()
}

fn set_header(map: MapType, call: &'static str, name: &str, value: Option<&str>) {
    let _ = warned(call, hostcalls::set_map_value(map, name, value));
}

fn buffer(kind: BufferType, call: &'static str, size: usize) -> Vec<u8> {
    warned(call, hostcalls::get_buffer(kind, 0, size))
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn set_buffer(kind: BufferType, call: &'static str, size: usize, value: &[u8]) {
    let _ = warned(call, hostcalls::set_buffer(kind, 0, size, value));
}

/// The first value of a request header (pseudo-headers included).
pub fn request_header(name: &str) -> Option<String> {
    header(MapType::HttpRequestHeaders, "get_request_header", name)
}

/// Every request header, pseudo-headers included (none if the host refuses).
pub fn request_headers() -> Vec<(String, String)> {
    headers(MapType::HttpRequestHeaders, "get_request_headers")
}

/// Sets (or with `None` removes) a request header.
pub fn set_request_header(name: &str, value: Option<&str>) {
    set_header(
        MapType::HttpRequestHeaders,
        "set_request_header",
        name,
        value,
    );
}

/// The first value of a response header.
pub fn response_header(name: &str) -> Option<String> {
    header(MapType::HttpResponseHeaders, "get_response_header", name)
}

/// Sets (or with `None` removes) a response header.
pub fn set_response_header(name: &str, value: Option<&str>) {
    set_header(
        MapType::HttpResponseHeaders,
        "set_response_header",
        name,
        value,
    );
}

/// The first `size` bytes of the buffered request body (empty if the host refuses).
pub fn request_body(size: usize) -> Vec<u8> {
    buffer(BufferType::HttpRequestBody, "get_request_body", size)
}

/// Replaces the first `old_size` bytes of the buffered request body with `body`.
pub fn replace_request_body(old_size: usize, body: &[u8]) {
    set_buffer(
        BufferType::HttpRequestBody,
        "set_request_body",
        old_size,
        body,
    );
}

/// Drops the first `size` bytes of the buffered request body.
pub fn discard_request_body(size: usize) {
    replace_request_body(size, &[]);
}

/// The first `size` bytes of the current response body chunk (empty if the host refuses).
pub fn response_body(size: usize) -> Vec<u8> {
    buffer(BufferType::HttpResponseBody, "get_response_body", size)
}

/// Replaces the first `size` bytes of the current response body chunk with `body`.
pub fn replace_response_body(size: usize, body: &[u8]) {
    set_buffer(
        BufferType::HttpResponseBody,
        "set_response_body",
        size,
        body,
    );
}

/// A host property (`["response", "code"]`), `None` when absent or refused.
pub fn property(path: Vec<&str>) -> Option<Vec<u8>> {
    warned("get_property", hostcalls::get_property(path))
        .ok()
        .flatten()
}

/// A host property (`["source", "address"]`) as text.
pub fn property_text(path: Vec<&str>) -> Option<String> {
    String::from_utf8(property(path)?).ok()
}

/// A host property holding an integer (`["response", "code"]`: 8 bytes, little endian).
pub fn property_u64(path: Vec<&str>) -> Option<u64> {
    let bytes = <[u8; 8]>::try_from(property(path)?.as_slice()).ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Sets a filter-state property.
pub fn set_property(path: Vec<&str>, value: &[u8]) {
    let _ = warned("set_property", hostcalls::set_property(path, Some(value)));
}

/// Time since the Unix epoch by the host's clock (zero if it cannot be read).
fn since_epoch() -> Duration {
    warned("get_current_time", hostcalls::get_current_time())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default()
}

/// Seconds since the Unix epoch by the host's clock (0 if it cannot be read).
pub fn now_secs() -> u64 {
    since_epoch().as_secs()
}

/// Milliseconds since the Unix epoch by the host's clock (0 if it cannot be read).
pub fn now_millis() -> u64 {
    u64::try_from(since_epoch().as_millis()).unwrap_or(u64::MAX)
}

/// Microseconds since the Unix epoch by the host's clock (0 if it cannot be read).
pub fn now_micros() -> u64 {
    u64::try_from(since_epoch().as_micros()).unwrap_or(u64::MAX)
}

/// Makes `context_id` the context later host calls act on (a root context's timer acting
/// for a request); `false` if that context is gone (not logged: it ended meanwhile).
pub fn act_for(context_id: u32) -> bool {
    hostcalls::set_effective_context(context_id).is_ok()
}

/// A shared-data value and its CAS version (`None` when absent or refused).
pub fn shared_get_versioned(key: &str) -> Option<(Vec<u8>, Option<u32>)> {
    let (value, cas) = warned("get_shared_data", hostcalls::get_shared_data(key)).ok()?;
    Some((value?, cas))
}

/// A shared-data value.
pub fn shared_get(key: &str) -> Option<Vec<u8>> {
    shared_get_versioned(key).map(|(v, _)| v)
}

/// Writes a shared-data value (a failed write is a missed cache entry); whether it was kept.
pub fn shared_set(key: &str, value: &[u8]) -> bool {
    warned(
        "set_shared_data",
        hostcalls::set_shared_data(key, Some(value), None),
    )
    .is_ok()
}

/// Resumes the paused request.
pub fn resume_request() {
    let _ = warned("resume_http_request", hostcalls::resume_http_request());
}

/// Sends an HTTP call through Envoy cluster `cluster`; its token. A refusal (no such
/// cluster) is logged at debug level: the callers count it as a failed call.
pub fn http_call(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<u32, HostError> {
    checked(
        "dispatch_http_call",
        LogLevel::Debug,
        hostcalls::dispatch_http_call(cluster, headers, body, vec![], timeout),
    )
}

/// Sends one unary gRPC call (`service`/`method`, an encoded `message`) through cluster
/// `cluster`; its token. Its answer comes to the context that called.
pub fn grpc_call(
    cluster: &str,
    service: &str,
    method: &str,
    message: &[u8],
    timeout: Duration,
) -> Result<u32, HostError> {
    checked(
        "dispatch_grpc_call",
        LogLevel::Debug,
        hostcalls::dispatch_grpc_call(cluster, service, method, vec![], Some(message), timeout),
    )
}

/// Sends a core [`Callout`] through its Envoy cluster; its token, or `None` when the host
/// refuses (no such cluster).
pub fn dispatch(call: &Callout) -> Option<u32> {
    let mut headers: Vec<(&str, &str)> = vec![
        (":method", call.method),
        (":path", &call.path),
        (":authority", &call.authority),
    ];
    headers.extend(call.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if !call.authorization.is_empty() {
        headers.push(("authorization", &call.authorization));
    }
    let body = (!call.body.is_empty()).then_some(call.body.as_slice());
    http_call(
        &call.cluster,
        headers,
        body,
        Duration::from_millis(call.timeout_ms),
    )
    .ok()
}

/// The headers of the HTTP call answer being delivered (`on_http_call_response`).
pub fn call_response_headers() -> Vec<(String, String)> {
    headers(
        MapType::HttpCallResponseHeaders,
        "get_call_response_headers",
    )
}

/// The HTTP call answer being delivered: its `:status` (when it parses) and its first
/// `body_size` body bytes.
pub fn call_response(body_size: usize) -> (Option<u32>, Vec<u8>) {
    let status = header(
        MapType::HttpCallResponseHeaders,
        "get_call_response_header",
        ":status",
    )
    .and_then(|s| s.parse().ok());
    let body = buffer(
        BufferType::HttpCallResponseBody,
        "get_call_response_body",
        body_size,
    );
    (status, body)
}

/// The first `size` bytes of the gRPC answer being delivered (`on_grpc_call_response`).
pub fn grpc_response_body(size: usize) -> Vec<u8> {
    buffer(
        BufferType::GrpcReceiveBuffer,
        "get_grpc_response_body",
        size,
    )
}

/// Answers the current request locally.
pub fn send_response(status: u32, headers: Vec<(&str, &str)>, body: &[u8]) {
    let _ = warned(
        "send_http_response",
        hostcalls::send_http_response(status, headers, Some(body)),
    );
}

/// Answers the current request with an OpenAI-style JSON error and extra headers.
pub fn send_reply(kind: ErrorKind, code: &str, message: &str, extra: &[(&str, String)]) {
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    crate::send_error(kind, code, message, &extra);
}

/// The plugin configuration handed to `on_configure` (`None` if there is none).
pub fn plugin_configuration() -> Option<Vec<u8>> {
    warned(
        "get_plugin_configuration",
        hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX),
    )
    .ok()
    .flatten()
}

/// Sets the root context's timer period; `false` if the host refuses.
pub fn set_tick_period(period: Duration) -> bool {
    warned("set_tick_period", hostcalls::set_tick_period(period)).is_ok()
}
