//! proxy-wasm glue shared by the infergate plugins.
//!
//! What every adapter needs, once: loading a configuration the same way in every plugin (so a
//! bad one is reported the same way everywhere), answering a request locally with an
//! OpenAI-style error, stats; [`host`] — every host call the adapters make, none of which can
//! panic; [`stream`] — the [`StreamHost`](infergate_core::stream::StreamHost) calls every
//! flow makes; [`filter`] — the per-request proxy-wasm context over a core flow; [`queue`] —
//! the bounded queue request contexts leave timer work in.

pub mod filter;
pub mod host;
pub mod queue;
pub mod stream;

pub use filter::{Filter, Request, Unconfigured};
pub use queue::Queue;
pub use stream::Stream;

use infergate_core::config::{self, Validate};
use infergate_core::header_hold::AtHeaders;
use infergate_core::openai_error::{self, ErrorKind};
use infergate_core::stream::Counted;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, LogLevel};
use serde::de::DeserializeOwned;

/// Reads and parses the plugin configuration (call it from `on_configure`).
///
/// On failure logs `<plugin>: invalid configuration: field `…`: …` at error level, which Envoy
/// prints in its log next to its own "Unable to create Wasm HTTP filter" line, and returns
/// `None` so `on_configure` can return `false` and Envoy refuses the filter.
pub fn load_config<T: DeserializeOwned + Validate>(plugin: &str) -> Option<T> {
    let bytes = host::plugin_configuration().unwrap_or_default();
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

/// Answers the current request locally with an OpenAI-style JSON error.
pub fn send_error(kind: ErrorKind, code: &str, message: &str, extra_headers: &[(&str, &str)]) {
    let body = openai_error::body(kind, code, message);
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    headers.extend_from_slice(extra_headers);
    host::send_response(kind.status(), headers, &body);
}

/// Answers 413: the request body is larger than `limit` bytes.
pub fn send_too_large(limit: usize) {
    send_error(
        ErrorKind::PayloadTooLarge,
        "request_too_large",
        &format!("The request body exceeds the gateway's limit of {limit} bytes."),
        &[],
    );
}

/// Answers 400 with the body parser's OpenAI-style error.
pub fn send_bad_request(body: &[u8]) {
    host::send_response(
        ErrorKind::BadRequest.status(),
        vec![("content-type", "application/json")],
        body,
    );
}

/// Defines a counter metric, or `None` if the host refuses (the plugin then runs without it).
pub fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, name).ok()
}

/// One counter per event of a flow (`<prefix>.<event's stat name>`), defined together.
pub struct Counters<E> {
    ids: Vec<Option<u32>>,
    events: std::marker::PhantomData<E>,
}

impl<E: Counted> Counters<E> {
    /// Defines `<prefix>.<stat>` for every event.
    pub fn define(prefix: &str) -> Self {
        Self {
            ids: E::ALL
                .iter()
                .map(|e| counter(&format!("{prefix}.{}", e.stat())))
                .collect(),
            events: std::marker::PhantomData,
        }
    }

    /// Increments the counter of `event`.
    pub fn bump(&self, event: E) {
        bump(self.ids.get(event.index()).copied().flatten());
    }
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
