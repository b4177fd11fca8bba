//! The per-request filter: feeds proxy-wasm's callbacks into the core's rate-limit
//! [`Flow`], which decides everything and acts through [`WasmHost`].

use crate::host::WasmHost;
use crate::Shared;
use infergate_core::ratelimit::flow::{Flow, Step};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

/// One request: its flow, and the host it acts through (`None`: not configured).
pub(crate) struct RateLimitFilter {
    flow: Flow,
    host: Option<WasmHost>,
}

impl RateLimitFilter {
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

impl Context for RateLimitFilter {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        if let Some(host) = &mut self.host {
            let body = host.get_grpc_call_response_body(0, response_size);
            let policy = Rc::clone(&host.shared);
            self.flow
                .on_rls_answer(host, &policy.policy, token_id, status_code, body);
        }
    }
}

impl HttpContext for RateLimitFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(host) = &mut self.host else {
            return Action::Continue;
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

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(host) = &mut self.host {
            self.flow.on_response_body(host, body_size, end_of_stream);
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
