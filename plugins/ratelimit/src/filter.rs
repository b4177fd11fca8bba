//! One request: the core's rate-limit [`Flow`] fed by [`glue::Filter`]'s callbacks, acting
//! through [`WasmHost`].

use crate::host::WasmHost;
use crate::Shared;
use infergate_core::ratelimit::flow::{Flow, Step};
use infergate_glue::{self as glue, host};
use std::rc::Rc;

/// One request's flow and the host it acts through.
pub(crate) struct RateLimitRequest {
    flow: Flow,
    host: WasmHost,
    shared: Rc<Shared>,
}

impl RateLimitRequest {
    /// The context of one request (passes every request when not configured).
    pub(crate) fn filter(shared: Option<Rc<Shared>>) -> glue::Filter<Self> {
        let request = shared.map(|shared| Self {
            flow: Flow::new(),
            host: WasmHost::new(Rc::clone(&shared)),
            shared,
        });
        glue::Filter::new(request, glue::Unconfigured::Pass)
    }
}

impl glue::Request for RateLimitRequest {
    fn on_request_headers(&mut self, end_of_stream: bool) -> Step {
        let policy = &self.shared.policy;
        self.flow
            .on_request_headers(&mut self.host, policy, end_of_stream)
    }
    fn on_request_body(&mut self, size: usize, end_of_stream: bool) -> Step {
        let policy = &self.shared.policy;
        self.flow
            .on_request_body(&mut self.host, policy, size, end_of_stream)
    }
    fn on_request_trailers(&mut self) -> Step {
        self.flow
            .on_request_trailers(&mut self.host, &self.shared.policy)
    }
    fn on_grpc_call_answer(&mut self, token: u32, status: u32, size: usize) {
        let body = Some(host::grpc_response_body(size));
        let policy = &self.shared.policy;
        self.flow
            .on_rls_answer(&mut self.host, policy, token, status, body);
    }
    fn on_response_headers(&mut self) {
        self.flow
            .on_response_headers(&mut self.host, &self.shared.policy);
    }
    fn on_response_body(&mut self, size: usize, end_of_stream: bool) {
        self.flow
            .on_response_body(&mut self.host, size, end_of_stream);
    }
    fn on_log(&mut self) {
        self.flow.on_log(&mut self.host, &self.shared.policy);
    }
}
