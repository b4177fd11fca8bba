//! `infergate-ratelimit`: per-identity request and LLM-token rate counting inside Envoy.
//!
//! A thin proxy-wasm adapter over [`infergate_core::ratelimit`]: counters live in proxy-wasm
//! shared data (one store for every Envoy worker), updated with compare-and-swap. Request
//! limits are decided on the headers. Token limits hold the request until its body is read,
//! charge an estimate (prompt estimate + completion cap) before it goes upstream, and settle to
//! the real usage when the response ends — from the JSON `usage`, or the stream's usage chunk,
//! which the plugin asks for (`stream_options.include_usage`) when the client did not and then
//! removes from what the client receives.

mod filter;
mod global;
mod host;
mod store;
mod usage_stats;

use infergate_core::ratelimit::flow::{Event, Policy};
use infergate_core::ratelimit::rls::{self, Descriptor};
use infergate_core::ratelimit::RateLimitConfig;
use infergate_glue as glue;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::rc::Rc;
use std::time::Duration;

const PLUGIN: &str = "infergate-ratelimit";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(RateLimitRoot::default()) });
}}

/// What every request context of this VM shares.
pub(crate) struct Shared {
    /// The compiled configuration.
    pub policy: Policy,
    /// The flow's counters, `infergate.ratelimit.<event>`.
    pub metrics: glue::Counters<Event>,
    /// Per-user and per-model usage counters, when configured.
    pub usage: Option<usage_stats::UsageStats>,
    /// Global mode: token usage above the estimate (`hits` more units for these
    /// descriptors), sent from the timer.
    pub settlements: glue::Queue<(Vec<Descriptor>, u64)>,
}

/// Global settlements kept while the service is unreachable; older ones are dropped.
const MAX_QUEUED_SETTLEMENTS: usize = 4096;
/// Settlements sent per timer tick.
const SETTLEMENTS_PER_TICK: usize = 64;

#[derive(Default)]
struct RateLimitRoot {
    shared: Option<Rc<Shared>>,
}

impl Context for RateLimitRoot {}

impl RootContext for RateLimitRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = glue::load_config::<RateLimitConfig>(PLUGIN) else {
            return false;
        };
        let metrics = glue::Counters::define("infergate.ratelimit");
        if config.global.is_some() && config.counts_tokens() {
            glue::host::set_tick_period(Duration::from_millis(100));
        }
        let usage = config.usage_stats.clone().map(usage_stats::UsageStats::new);
        self.shared = Some(Rc::new(Shared {
            policy: Policy::new(config),
            metrics,
            settlements: glue::Queue::new(MAX_QUEUED_SETTLEMENTS),
            usage,
        }));
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(g) = &shared.policy.config.global else {
            return;
        };
        for (descriptors, hits) in shared.settlements.take(SETTLEMENTS_PER_TICK) {
            let hits = u32::try_from(hits).unwrap_or(u32::MAX);
            let message = rls::encode_request(&g.domain, &descriptors, hits);
            let _ = global::dispatch(&g.cluster, &message, g.timeout_ms);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(filter::RateLimitRequest::filter(
            self.shared.clone(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
