//! proxy-wasm glue shared by the infergate plugins.
//!
//! Small on purpose: loading a configuration the same way in every plugin (so a bad one is
//! reported the same way everywhere) and answering a request locally with an OpenAI-style error;
//! [`host`] has the current request's host calls for adapters that drive a core flow.

pub mod host;

use infergate_core::config::{self, Validate};
use infergate_core::header_hold::AtHeaders;
use infergate_core::openai_error::{self, ErrorKind};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use serde::de::DeserializeOwned;

/// Parses the plugin configuration handed to `on_configure`.
///
/// On failure logs `<plugin>: invalid configuration: field `…`: …` at error level, which Envoy
/// prints in its log next to its own "Unable to create Wasm HTTP filter" line, and returns
/// `None` so `on_configure` can return `false` and Envoy refuses the filter.
pub fn load_config<T: DeserializeOwned + Validate>(
    plugin: &str,
    bytes: Option<Vec<u8>>,
) -> Option<T> {
    let bytes = bytes.unwrap_or_default();
    match config::parse::<T>(&bytes) {
        Ok(c) => {
            log(LogLevel::Info, &format!("{plugin}: configuration loaded"));
            Some(c)
        }
        Err(e) => {
            log(
                LogLevel::Error,
                &format!("{plugin}: invalid configuration: {e}"),
            );
            None
        }
    }
}

/// Logs through the host, ignoring a failing host call (nothing better can be done with it).
pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Answers the request locally with an OpenAI-style JSON error.
pub fn send_error<C: HttpContext + ?Sized>(
    ctx: &C,
    kind: ErrorKind,
    code: &str,
    message: &str,
    extra_headers: &[(&str, &str)],
) {
    let body = openai_error::body(kind, code, message);
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    headers.extend_from_slice(extra_headers);
    ctx.send_http_response(kind.status(), headers, Some(&body));
}

/// Answers 413: the request body is larger than `limit` bytes.
pub fn send_too_large<C: HttpContext + ?Sized>(ctx: &C, limit: usize) {
    send_error(
        ctx,
        ErrorKind::PayloadTooLarge,
        "request_too_large",
        &format!("The request body exceeds the gateway's limit of {limit} bytes."),
        &[],
    );
}

/// Answers 400 with the body parser's OpenAI-style error.
pub fn send_bad_request<C: HttpContext + ?Sized>(ctx: &C, body: &[u8]) {
    ctx.send_http_response(
        ErrorKind::BadRequest.status(),
        vec![("content-type", "application/json")],
        Some(body),
    );
}

/// A finished callout's answer, read in `on_http_call_response`: its `:status` (when it
/// parses) and its body.
pub fn call_response<C: Context + ?Sized>(ctx: &C, body_size: usize) -> (Option<u32>, Vec<u8>) {
    let status = ctx
        .get_http_call_response_header(":status")
        .and_then(|s| s.parse().ok());
    let body = ctx
        .get_http_call_response_body(0, body_size)
        .unwrap_or_default();
    (status, body)
}

/// Defines a counter metric, or `None` if the host refuses (the plugin then runs without it).
pub fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, name).ok()
}

/// Defines a histogram metric, or `None` if the host refuses.
pub fn histogram(name: &str) -> Option<u32> {
    hostcalls::define_metric(proxy_wasm::types::MetricType::Histogram, name).ok()
}

/// Records a value in a histogram defined with [`histogram`].
pub fn record(metric: Option<u32>, value: u64) {
    if let Some(id) = metric {
        let _ = hostcalls::record_metric(id, value);
    }
}

/// Increments a counter defined with [`counter`].
pub fn bump(metric: Option<u32>) {
    if let Some(id) = metric {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

/// The request-headers callback's answer when the decision waits for the body: `Pause` only
/// where the configuration says the host allows holding headers (see
/// [`infergate_core::header_hold`]), else `Continue` and the body callback decides.
pub fn headers_action(step: AtHeaders) -> Action {
    match step {
        AtHeaders::Hold => Action::Pause,
        AtHeaders::Continue => Action::Continue,
    }
}
