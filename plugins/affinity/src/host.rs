//! The proxy-wasm side of [`Host`]: what the affinity flow asks of Envoy, as host calls for
//! the current request.

use crate::{endpoints_key, Shared};
use infergate_core::affinity::flow::{Event, Host, ServedReport};
use infergate_core::openai::SUMMARY_PROPERTY;
use infergate_core::openai_error::ErrorKind;
use infergate_glue as glue;
use proxy_wasm::traits::{Context, HttpContext};
use std::rc::Rc;
use std::time::Duration;

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
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        self.set_http_request_header(name, value);
    }
    fn request_body(&self, size: usize) -> Vec<u8> {
        self.get_http_request_body(0, size).unwrap_or_default()
    }
    fn handed_summary(&self) -> Option<Vec<u8>> {
        self.get_property(vec![SUMMARY_PROPERTY])
    }
    fn fetched_endpoints(&self, cluster: &str) -> Option<Vec<u8>> {
        self.get_shared_data(&endpoints_key(cluster)).0
    }
    fn dispatch_pick(
        &mut self,
        cluster: &str,
        authority: &str,
        query: &[u8],
        timeout_ms: u64,
    ) -> Option<u32> {
        self.dispatch_http_call(
            cluster,
            vec![
                (":method", "POST"),
                (":path", "/v1/pick"),
                (":authority", authority),
                ("content-type", "application/octet-stream"),
            ],
            Some(query),
            vec![],
            Duration::from_millis(timeout_ms),
        )
        .ok()
    }
    fn now_us(&self) -> u64 {
        glue::host::now_micros()
    }
    fn record_pick_latency(&mut self, micros: u64) {
        glue::record(self.shared.metrics.pick_latency_us, micros);
    }
    fn upstream_address(&self) -> Option<String> {
        glue::host::property_text(vec!["upstream", "address"])
    }
    fn queue_report(&mut self, report: ServedReport) {
        self.shared.queue_report(report);
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
    fn count(&mut self, event: Event) {
        let m = &self.shared.metrics;
        glue::bump(match event {
            Event::Pick => m.picks,
            Event::PrefixPick => m.prefix_picks,
            Event::ShimPick => m.shim_picks,
            Event::Fallback => m.fallbacks,
            Event::Spoofed => m.spoofed,
            Event::ParseError => m.parse_errors,
            Event::ParseReused => m.parses_reused,
            Event::TooLarge => m.too_large,
        });
    }
}
