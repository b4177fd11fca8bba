//! The proxy-wasm side of [`Host`]: what the rate-limit flow asks of Envoy, as host calls
//! for the current request.

use crate::store::SharedDataStore;
use crate::{global, Shared};
use infergate_core::auth::identity::IDENTITY_PROPERTY;
use infergate_core::openai::SUMMARY_PROPERTY;
use infergate_core::openai_error::ErrorKind;
use infergate_core::ratelimit::counter::CounterStore;
use infergate_core::ratelimit::decision::Usage;
use infergate_core::ratelimit::flow::{Event, Host};
use infergate_core::ratelimit::rls::Descriptor;
use infergate_glue as glue;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::LogLevel;
use std::rc::Rc;

/// The current request's host: proxy-wasm's default context methods address the context
/// whose callback is running.
pub(crate) struct WasmHost {
    pub shared: Rc<Shared>,
}

impl Context for WasmHost {}
impl HttpContext for WasmHost {}

impl Host for WasmHost {
    fn request_header(&self, name: &str) -> Option<String> {
        self.get_http_request_header(name)
    }
    fn request_headers(&self) -> Vec<(String, String)> {
        self.get_http_request_headers()
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        self.set_http_request_header(name, value);
    }
    fn request_body(&self, size: usize) -> Vec<u8> {
        self.get_http_request_body(0, size).unwrap_or_default()
    }
    fn replace_request_body(&mut self, old_size: usize, body: &[u8]) {
        self.set_http_request_body(0, old_size, body);
    }
    fn identity(&self) -> Option<Vec<u8>> {
        self.get_property(vec![IDENTITY_PROPERTY])
    }
    fn source_address(&self) -> Option<String> {
        glue::host::property_text(vec!["source", "address"])
    }
    fn publish_summary(&mut self, summary: &[u8]) {
        self.set_property(vec![SUMMARY_PROPERTY], Some(summary));
    }
    fn counters(&self) -> &dyn CounterStore {
        &SharedDataStore
    }
    fn now_ms(&self) -> u64 {
        glue::host::now_millis()
    }
    fn dispatch_rls(&mut self, cluster: &str, message: &[u8], timeout_ms: u64) -> Option<u32> {
        global::dispatch(self, cluster, message, timeout_ms).ok()
    }
    fn queue_rls_settlement(&mut self, descriptors: Vec<Descriptor>, hits: u64) {
        self.shared.queue_global_settlement(descriptors, hits);
    }
    fn send_error(&mut self, kind: ErrorKind, code: &str, message: &str, extra: &[(&str, &str)]) {
        glue::send_error(self, kind, code, message, extra);
    }
    fn send_too_large(&mut self, limit: usize) {
        glue::send_too_large(self, limit);
    }
    fn send_bad_request(&mut self, body: &[u8]) {
        glue::send_bad_request(self, body);
    }
    fn resume(&mut self) {
        self.resume_http_request();
    }
    fn response_header(&self, name: &str) -> Option<String> {
        self.get_http_response_header(name)
    }
    fn set_response_header(&mut self, name: &str, value: Option<&str>) {
        self.set_http_response_header(name, value);
    }
    fn response_body(&self, size: usize) -> Vec<u8> {
        self.get_http_response_body(0, size).unwrap_or_default()
    }
    fn replace_response_body(&mut self, size: usize, body: &[u8]) {
        self.set_http_response_body(0, size, body);
    }
    fn response_code(&self) -> u64 {
        self.get_property(vec!["response", "code"])
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    }
    fn count(&mut self, event: Event) {
        let m = &self.shared.metrics;
        glue::bump(match event {
            Event::Allowed => m.allowed,
            Event::Limited => m.limited,
            Event::StoreFailed => m.store_failed,
            Event::Settled => m.settled,
            Event::UsageInjected => m.usage_injected,
            Event::UsageMissing => m.usage_missing,
        });
    }
    fn record_usage(&mut self, user: Option<&str>, model: Option<&str>, usage: Usage) {
        if let Some(stats) = &self.shared.usage {
            stats.record(user, model, usage);
        }
    }
    fn warn(&mut self, message: &str) {
        glue::log(LogLevel::Warn, message);
    }
}
