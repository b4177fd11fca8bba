//! `infergate-ratelimit`: per-identity request and LLM-token rate counting.
//!
//! This build loads and validates its configuration and counts the requests it sees; a
//! configuration that asks for limits is refused (see `RateLimitConfig`) until counting lands.

use infergate_core::ratelimit::RateLimitConfig;
use infergate_glue as glue;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

const PLUGIN: &str = "infergate-ratelimit";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(RateLimitRoot::default()) });
}}

#[derive(Default)]
struct RateLimitRoot {
    seen: Option<u32>,
}

impl Context for RateLimitRoot {}

impl RootContext for RateLimitRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        if glue::load_config::<RateLimitConfig>(PLUGIN, self.get_plugin_configuration()).is_none() {
            return false;
        }
        self.seen = glue::counter("infergate.ratelimit.requests");
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RateLimitFilter { seen: self.seen }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct RateLimitFilter {
    seen: Option<u32>,
}

impl Context for RateLimitFilter {}

impl HttpContext for RateLimitFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        glue::bump(self.seen);
        Action::Continue
    }
}
