//! The proxy-wasm side of [`Host`]: what the rate-limit flow asks of Envoy, as host calls
//! for the current request (all through [`glue::host`], none of which can panic).

use crate::store::SharedDataStore;
use crate::{global, Shared};
use infergate_core::auth::identity::IDENTITY_PROPERTY;
use infergate_core::openai::SUMMARY_PROPERTY;
use infergate_core::ratelimit::counter::CounterStore;
use infergate_core::ratelimit::decision::Usage;
use infergate_core::ratelimit::flow::{Event, Host};
use infergate_core::ratelimit::rls::Descriptor;
use infergate_glue::{self as glue, host};
use proxy_wasm::types::LogLevel;

glue::wasm_host!(
    /// The current request's host; the calls every flow makes are [`glue::Stream`]'s.
    WasmHost,
    Shared
);

impl Host for WasmHost {
    fn request_headers(&self) -> Vec<(String, String)> {
        host::request_headers()
    }
    fn replace_request_body(&mut self, old_size: usize, body: &[u8]) {
        host::replace_request_body(old_size, body);
    }
    fn identity(&self) -> Option<Vec<u8>> {
        host::property(vec![IDENTITY_PROPERTY])
    }
    fn source_address(&self) -> Option<String> {
        host::property_text(vec!["source", "address"])
    }
    fn publish_summary(&mut self, summary: &[u8]) {
        host::set_property(vec![SUMMARY_PROPERTY], summary);
    }
    fn counters(&self) -> &dyn CounterStore {
        &SharedDataStore
    }
    fn now_ms(&self) -> u64 {
        host::now_millis()
    }
    fn dispatch_rls(&mut self, cluster: &str, message: &[u8], timeout_ms: u64) -> Option<u32> {
        global::dispatch(cluster, message, timeout_ms).ok()
    }
    fn queue_rls_settlement(&mut self, descriptors: Vec<Descriptor>, hits: u64) {
        self.shared.settlements.push((descriptors, hits));
    }
    fn response_header(&self, name: &str) -> Option<String> {
        host::response_header(name)
    }
    fn set_response_header(&mut self, name: &str, value: Option<&str>) {
        host::set_response_header(name, value);
    }
    fn response_body(&self, size: usize) -> Vec<u8> {
        host::response_body(size)
    }
    fn replace_response_body(&mut self, size: usize, body: &[u8]) {
        host::replace_response_body(size, body);
    }
    fn response_code(&self) -> u64 {
        host::property_u64(vec!["response", "code"]).unwrap_or(0)
    }
    fn count(&mut self, event: Event) {
        self.shared.metrics.bump(event);
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
