//! The current HTTP context's host calls as plain functions, for adapters that implement a
//! core flow's host trait (the calls act on whichever context Envoy is calling into, as the
//! `proxy_wasm` trait methods do). Failures of calls whose failure changes nothing are ignored
//! here once instead of in every adapter.

use infergate_core::auth::Callout;
use infergate_core::openai_error::ErrorKind;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
use std::time::{Duration, UNIX_EPOCH};

/// Seconds since the Unix epoch by the host's clock (0 if it cannot be read).
pub fn now_secs() -> u64 {
    since_epoch().as_secs()
}

/// Every request header, pseudo-headers included.
pub fn request_headers() -> Vec<(String, String)> {
    hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default()
}

/// Sets (or with `None` removes) a request header.
pub fn set_request_header(name: &str, value: Option<&str>) {
    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
}

/// A host property (`["source", "address"]`) as text.
pub fn property_text(path: Vec<&str>) -> Option<String> {
    let bytes = hostcalls::get_property(path).ok().flatten()?;
    String::from_utf8(bytes).ok()
}

/// Sets a filter-state property.
pub fn set_property(path: Vec<&str>, value: &[u8]) {
    let _ = hostcalls::set_property(path, Some(value));
}

/// The first `size` bytes of the buffered request body.
pub fn request_body(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Drops the first `size` bytes of the buffered request body.
pub fn discard_request_body(size: usize) {
    let _ = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, size, &[]);
}

/// Time since the Unix epoch by the host's clock (zero if it cannot be read).
fn since_epoch() -> Duration {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default()
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
/// for a request); `false` if that context is gone.
pub fn act_for(context_id: u32) -> bool {
    hostcalls::set_effective_context(context_id).is_ok()
}

/// A shared-data value.
pub fn shared_get(key: &str) -> Option<Vec<u8>> {
    hostcalls::get_shared_data(key).ok().and_then(|(v, _)| v)
}

/// Writes a shared-data value (a failed write is a missed cache entry).
pub fn shared_set(key: &str, value: &[u8]) {
    let _ = hostcalls::set_shared_data(key, Some(value), None);
}

/// Resumes the paused request.
pub fn resume_request() {
    let _ = hostcalls::resume_http_request();
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
    hostcalls::dispatch_http_call(
        &call.cluster,
        headers,
        body,
        vec![],
        Duration::from_millis(call.timeout_ms),
    )
    .ok()
}

/// Answers the current request with an OpenAI-style JSON error and extra headers.
pub fn send_reply(kind: ErrorKind, code: &str, message: &str, extra: &[(&str, String)]) {
    let body = infergate_core::openai_error::body(kind, code, message);
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    headers.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
    let _ = hostcalls::send_http_response(kind.status(), headers, Some(&body));
}
