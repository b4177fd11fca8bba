//! `infergate-affinity`: prefix-affinity endpoint hints inside Envoy.
//!
//! Every request leaves this filter with exactly one `x-gateway-destination-endpoint`, chosen by
//! the gateway: client-sent copies (and the fallback list) are removed first, so no client can
//! make the ORIGINAL_DST cluster connect to an address of its choosing.
//!
//! Inference requests (`/v1/chat/completions`, `/v1/completions`, `/v1/responses`) are held
//! until their body is complete, parsed once with `infergate_core::openai`, and cut into
//! prefix block hashes; requests sharing a prompt prefix go to the same endpoint (rendezvous
//! hashing over the configured endpoints). The header is set from the body callback while the
//! request headers are still held, which Envoy 1.40 honours for the ORIGINAL_DST choice.

mod filter;

use filter::AffinityFilter;
use infergate_core::affinity::AffinityConfig;
use infergate_core::endpoint::Endpoint;
use infergate_glue as glue;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::cell::Cell;
use std::rc::Rc;

const PLUGIN: &str = "infergate-affinity";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(AffinityRoot::default()) });
}}

/// Stats of the plugin.
#[derive(Clone, Copy, Default)]
pub(crate) struct Metrics {
    pub picks: Option<u32>,
    pub prefix_picks: Option<u32>,
    pub spoofed: Option<u32>,
    pub parse_errors: Option<u32>,
    pub too_large: Option<u32>,
}

/// What every request context of this VM shares.
pub(crate) struct Shared {
    pub config: AffinityConfig,
    pub endpoints: Vec<Endpoint>,
    pub next: Cell<usize>,
    pub metrics: Metrics,
}

#[derive(Default)]
struct AffinityRoot {
    shared: Option<Rc<Shared>>,
}

impl Context for AffinityRoot {}

impl RootContext for AffinityRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) =
            glue::load_config::<AffinityConfig>(PLUGIN, self.get_plugin_configuration())
        else {
            return false;
        };
        let metrics = Metrics {
            picks: glue::counter("infergate.affinity.picks"),
            prefix_picks: glue::counter("infergate.affinity.prefix_picks"),
            spoofed: glue::counter("infergate.affinity.spoofed_destination_removed"),
            parse_errors: glue::counter("infergate.affinity.parse_errors"),
            too_large: glue::counter("infergate.affinity.body_too_large"),
        };
        self.shared = Some(Rc::new(Shared {
            endpoints: config.parsed_endpoints(),
            config,
            next: Cell::new(0),
            metrics,
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AffinityFilter::new(self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
