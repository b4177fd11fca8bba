//! The per-request filter: feeds proxy-wasm's callbacks into the core's affinity [`Flow`],
//! which decides everything and acts through [`WasmHost`].

use crate::host::WasmHost;
use crate::Shared;
use infergate_core::affinity::flow::{Flow, Step};
use infergate_core::openai_error::ErrorKind;
use infergate_glue as glue;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

/// One request: its flow, and the host it acts through (`None`: not configured).
pub(crate) struct AffinityFilter {
    flow: Flow,
    host: Option<WasmHost>,
}

impl AffinityFilter {
    pub(crate) fn new(shared: Option<Rc<Shared>>) -> Self {
        Self {
            flow: Flow::new(),
            host: shared.map(|shared| WasmHost { shared }),
        }
    }
}

fn action(step: Step) -> Action {
    match step {
        Step::Continue => Action::Continue,
        Step::Pause => Action::Pause,
    }
}

impl Context for AffinityFilter {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        _num_headers: usize,
        _body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(host) = &mut self.host {
            let headers = host.get_http_call_response_headers();
            let shared = Rc::clone(&host.shared);
            self.flow.on_pick_answer(host, &shared.policy, &headers);
        }
    }
}

impl HttpContext for AffinityFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(host) = &mut self.host else {
            // Not configured: no destination can be chosen.
            glue::send_error(
                self,
                ErrorKind::Unavailable,
                "no_endpoint",
                "No model endpoint is available to serve this request.",
                &[("retry-after", "1")],
            );
            return Action::Pause;
        };
        let shared = Rc::clone(&host.shared);
        action(
            self.flow
                .on_request_headers(host, &shared.policy, end_of_stream),
        )
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(host) = &mut self.host else {
            return Action::Continue;
        };
        let shared = Rc::clone(&host.shared);
        action(
            self.flow
                .on_request_body(host, &shared.policy, body_size, end_of_stream),
        )
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let Some(host) = &mut self.host else {
            return Action::Continue;
        };
        let shared = Rc::clone(&host.shared);
        action(self.flow.on_request_trailers(host, &shared.policy))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(host) = &mut self.host {
            let shared = Rc::clone(&host.shared);
            self.flow.on_response_headers(host, &shared.policy);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(host) = &mut self.host {
            let shared = Rc::clone(&host.shared);
            self.flow.on_log(host, &shared.policy);
        }
    }
}
