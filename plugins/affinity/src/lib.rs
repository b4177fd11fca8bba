//! `infergate-affinity`: prefix-affinity endpoint hints inside Envoy.
//!
//! Every request leaves this filter with exactly one `x-gateway-destination-endpoint`, chosen by
//! the gateway: client-sent copies (and the fallback list) are removed first, so no client can
//! make the ORIGINAL_DST cluster connect to an address of its choosing.
//!
//! Inference requests (`/v1/chat/completions`, `/v1/completions`, `/v1/responses`) are held
//! until their body is complete, parsed once with `infergate_core::openai`, and cut into prefix
//! block hashes. With `hostShim` configured the plugin asks host-shim for the endpoint with a
//! compact call (model, hashes, token estimate: ~2 KB at most, whatever the prompt size);
//! without it, or when host-shim is down or slow, requests sharing their leading blocks go to
//! the same endpoint by rendezvous hashing. The header is set while the request headers are
//! still held (`allow_on_headers_stop_iteration`), which Envoy 1.40 honours for ORIGINAL_DST.
//! The endpoint that actually served is reported back to host-shim from a timer, off the
//! request path, and so is the request's end (`/v1/completed`), so host-shim's count of
//! requests in flight per endpoint follows the streams. Every pick call carries a random pick
//! id; a stream that ends while its pick is still pending (the client went away while
//! host-shim queued it — Envoy cannot cancel a Wasm filter's call) sends `POST /v1/cancel`
//! with that id from the next tick, and host-shim drops the queued pick.

mod filter;
mod host;

use filter::AffinityRequest;
use infergate_core::affinity::flow::{Event, Policy, ServedReport};
use infergate_core::affinity::{AffinityConfig, HostShimConfig};
use infergate_core::endpoint::Endpoint;
use infergate_core::pick_wire::{encode_cancel, encode_served};
use infergate_glue as glue;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::rc::Rc;
use std::time::Duration;

const PLUGIN: &str = "infergate-affinity";

/// Served reports kept while host-shim is unreachable; older ones are dropped.
const MAX_QUEUED_REPORTS: usize = 1024;
/// Reports sent per timer tick (served and completion reports).
const REPORTS_PER_TICK: usize = 128;
/// Timer period for sending reports.
const REPORT_PERIOD: Duration = Duration::from_millis(100);
/// Ticks between refreshes of the endpoint list from host-shim (1 s).
const ENDPOINT_REFRESH_TICKS: u32 = 10;

/// Shared-data key of the endpoint list last fetched from host-shim through `cluster`; shared
/// by every worker, so the fallback uses a fresh list even when host-shim is gone.
pub(crate) fn endpoints_key(cluster: &str) -> String {
    format!("infergate.affinity.endpoints.{cluster}")
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(AffinityRoot::default()) });
}}

/// Stats of the plugin besides the flow's counters.
#[derive(Clone, Copy, Default)]
pub(crate) struct Metrics {
    pub pick_latency_us: Option<u32>,
    pub reports_sent: Option<u32>,
    pub reports_dropped: Option<u32>,
    pub cancels_sent: Option<u32>,
}

/// What every request context of this VM shares.
pub(crate) struct Shared {
    pub policy: Policy,
    pub metrics: Metrics,
    /// The flow's counters, `infergate.affinity.<event>`.
    pub events: glue::Counters<Event>,
    /// Served and completion reports for the timer to send.
    pub reports: glue::Queue<ServedReport>,
    /// Pick ids of pending picks whose stream ended, for the timer to cancel.
    pub cancels: glue::Queue<u64>,
    /// Where pick ids come from.
    pub pick_ids: PickIds,
}

/// This VM's source of pick ids: random keys and a counter.
pub(crate) struct PickIds {
    pub keys: RandomState,
    pub next: Cell<u64>,
}

#[derive(Default)]
struct AffinityRoot {
    shared: Option<Rc<Shared>>,
    ticks: u32,
    /// The endpoint-list call in flight.
    endpoints_call: Option<u32>,
}

impl Context for AffinityRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if self.endpoints_call != Some(token_id) {
            return;
        }
        self.endpoints_call = None;
        let Some(shim) = self
            .shared
            .as_ref()
            .and_then(|s| s.policy.config.host_shim.clone())
        else {
            return;
        };
        let (status, body) = glue::host::call_response(body_size);
        let ok = status == Some(200);
        let list = infergate_core::endpoint::parse_list(&body);
        // Keep the last good list: an error or an empty answer changes nothing.
        if ok && !list.is_empty() {
            let text: Vec<String> = list.iter().map(Endpoint::to_string).collect();
            glue::host::shared_set(&endpoints_key(&shim.cluster), text.join(",").as_bytes());
        }
    }
}

impl RootContext for AffinityRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = glue::load_config::<AffinityConfig>(PLUGIN) else {
            return false;
        };
        let metrics = Metrics {
            pick_latency_us: glue::histogram("infergate.affinity.pick_latency_us"),
            reports_sent: glue::counter("infergate.affinity.served_reports_sent"),
            reports_dropped: glue::counter("infergate.affinity.served_reports_dropped"),
            cancels_sent: glue::counter("infergate.affinity.pick_cancels_sent"),
        };
        if config.host_shim.is_some() {
            glue::host::set_tick_period(REPORT_PERIOD);
        }
        self.shared = Some(Rc::new(Shared {
            policy: Policy::new(config),
            metrics,
            events: glue::Counters::define("infergate.affinity"),
            reports: glue::Queue::new(MAX_QUEUED_REPORTS),
            cancels: glue::Queue::new(MAX_QUEUED_REPORTS),
            pick_ids: PickIds {
                keys: RandomState::new(),
                next: Cell::new(0),
            },
        }));
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(shim) = &shared.policy.config.host_shim else {
            return;
        };
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks % ENDPOINT_REFRESH_TICKS == 1 && self.endpoints_call.is_none() {
            self.endpoints_call = glue::host::http_call(
                &shim.cluster,
                vec![
                    (":method", "GET"),
                    (":path", "/v1/endpoints"),
                    (":authority", &shim.authority),
                ],
                None,
                timer_call_timeout(shim),
            )
            .ok();
        }
        // Cancels first: a queued pick whose client is gone holds a place someone else waits for.
        let m = &shared.metrics;
        for pick_id in shared.cancels.take(REPORTS_PER_TICK) {
            post_to_shim(
                shim,
                "/v1/cancel",
                &encode_cancel(pick_id),
                m.cancels_sent,
                m.reports_dropped,
            );
        }
        if !shim.report_served {
            return;
        }
        for report in shared.reports.take(REPORTS_PER_TICK) {
            let path = if report.completed {
                "/v1/completed"
            } else {
                "/v1/served"
            };
            let body = encode_served(&report.endpoint, &report.hashes);
            post_to_shim(shim, path, &body, m.reports_sent, m.reports_dropped);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AffinityRequest::filter(self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The timeout of the timer's calls to host-shim (the pick timeout, at least 200 ms).
fn timer_call_timeout(shim: &HostShimConfig) -> Duration {
    Duration::from_millis(shim.timeout_ms.max(200))
}

/// POSTs one binary message (a cancel or a report) to host-shim from the timer, counted in
/// `sent`, or in `dropped` when the host refuses the call.
fn post_to_shim(
    shim: &HostShimConfig,
    path: &str,
    body: &[u8],
    sent: Option<u32>,
    dropped: Option<u32>,
) {
    let call = glue::host::http_call(
        &shim.cluster,
        vec![
            (":method", "POST"),
            (":path", path),
            (":authority", &shim.authority),
            ("content-type", "application/octet-stream"),
        ],
        Some(body),
        timer_call_timeout(shim),
    );
    glue::bump(if call.is_ok() { sent } else { dropped });
}
