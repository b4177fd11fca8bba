//! `infergate-affinity`: endpoint hints inside Envoy.
//!
//! Every request leaves this filter with exactly one `x-gateway-destination-endpoint`, chosen
//! by the gateway: client-sent copies (and the fallback list) are removed first, so no client
//! can make the ORIGINAL_DST cluster connect to an address of its choosing. This build spreads
//! requests round-robin over the configured endpoints.

use infergate_core::affinity::AffinityConfig;
use infergate_core::endpoint::Endpoint;
use infergate_core::headers::{DESTINATION_ENDPOINT, DESTINATION_ENDPOINT_FALLBACKS};
use infergate_core::openai_error::ErrorKind;
use infergate_glue as glue;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::Cell;
use std::rc::Rc;

const PLUGIN: &str = "infergate-affinity";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(AffinityRoot::default()) });
}}

#[derive(Default)]
struct AffinityRoot {
    endpoints: Rc<Vec<String>>,
    next: Rc<Cell<usize>>,
    picks: Option<u32>,
    spoofed: Option<u32>,
}

impl Context for AffinityRoot {}

impl RootContext for AffinityRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) =
            glue::load_config::<AffinityConfig>(PLUGIN, self.get_plugin_configuration())
        else {
            return false;
        };
        self.endpoints = Rc::new(
            config
                .parsed_endpoints()
                .iter()
                .map(Endpoint::to_string)
                .collect(),
        );
        self.picks = glue::counter("infergate.affinity.picks");
        self.spoofed = glue::counter("infergate.affinity.spoofed_destination_removed");
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AffinityFilter {
            endpoints: self.endpoints.clone(),
            next: self.next.clone(),
            picks: self.picks,
            spoofed: self.spoofed,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AffinityFilter {
    endpoints: Rc<Vec<String>>,
    next: Rc<Cell<usize>>,
    picks: Option<u32>,
    spoofed: Option<u32>,
}

impl Context for AffinityFilter {}

impl HttpContext for AffinityFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let spoofed = self.get_http_request_header(DESTINATION_ENDPOINT).is_some()
            || self
                .get_http_request_header(DESTINATION_ENDPOINT_FALLBACKS)
                .is_some();
        self.set_http_request_header(DESTINATION_ENDPOINT, None);
        self.set_http_request_header(DESTINATION_ENDPOINT_FALLBACKS, None);
        if spoofed {
            glue::bump(self.spoofed);
        }
        if self.endpoints.is_empty() {
            glue::send_error(
                self,
                ErrorKind::Unavailable,
                "no_endpoint",
                "No model endpoint is available to serve this request.",
                &[],
            );
            return Action::Pause;
        }
        let i = self.next.get() % self.endpoints.len();
        self.next.set(i.wrapping_add(1));
        let chosen = self.endpoints[i].clone();
        self.set_http_request_header(DESTINATION_ENDPOINT, Some(&chosen));
        glue::bump(self.picks);
        Action::Continue
    }
}
