//! The proxy-wasm side of [`Host`]: what the affinity flow asks of Envoy, as host calls for
//! the current request (all through [`glue::host`], none of which can panic).

use crate::{endpoints_key, Shared};
use infergate_core::affinity::flow::{Event, Host, ServedReport};
use infergate_core::openai::SUMMARY_PROPERTY;
use infergate_glue::{self as glue, host};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

glue::wasm_host!(
    /// The current request's host; the calls every flow makes are [`glue::Stream`]'s.
    WasmHost,
    Shared
);

impl Host for WasmHost {
    fn handed_summary(&self) -> Option<Vec<u8>> {
        host::property(vec![SUMMARY_PROPERTY])
    }
    fn fetched_endpoints(&self, cluster: &str) -> Option<Vec<u8>> {
        host::shared_get(&endpoints_key(cluster))
    }
    fn dispatch_pick(
        &mut self,
        cluster: &str,
        authority: &str,
        query: &[u8],
        timeout_ms: u64,
    ) -> Option<u32> {
        host::http_call(
            cluster,
            vec![
                (":method", "POST"),
                (":path", "/v1/pick"),
                (":authority", authority),
                ("content-type", "application/octet-stream"),
            ],
            Some(query),
            Duration::from_millis(timeout_ms),
        )
        .ok()
    }
    fn now_us(&self) -> u64 {
        host::now_micros()
    }
    fn record_pick_latency(&mut self, micros: u64) {
        glue::record(self.shared.metrics.pick_latency_us, micros);
    }
    fn upstream_address(&self) -> Option<String> {
        host::property_text(vec!["upstream", "address"])
    }
    fn queue_report(&mut self, report: ServedReport) {
        if self.shared.reports.push(report) {
            glue::bump(self.shared.metrics.reports_dropped);
        }
    }
    fn new_pick_id(&mut self) -> u64 {
        // SipHash under this VM's random keys (WASI `random_get`) of a per-VM counter and the
        // clock: unique across workers and gateways in practice.
        let n = self.shared.pick_ids.next.get();
        self.shared.pick_ids.next.set(n.wrapping_add(1));
        let mut h = self.shared.pick_ids.keys.build_hasher();
        h.write_u64(n);
        h.write_u64(host::now_micros());
        h.finish()
    }
    fn queue_cancel(&mut self, pick_id: u64) {
        if self.shared.cancels.push(pick_id) {
            glue::bump(self.shared.metrics.reports_dropped);
        }
    }
    fn count(&mut self, event: Event) {
        self.shared.events.bump(event);
    }
}
