//! One request: the core's affinity [`Flow`] fed by [`glue::Filter`]'s callbacks, acting
//! through [`WasmHost`].

use crate::host::WasmHost;
use crate::Shared;
use infergate_core::affinity::flow::{Flow, Step};
use infergate_core::openai_error::ErrorKind;
use infergate_glue::{self as glue, host};
use std::rc::Rc;

/// One request's flow and the host it acts through.
pub(crate) struct AffinityRequest {
    flow: Flow,
    host: WasmHost,
    shared: Rc<Shared>,
}

impl AffinityRequest {
    /// The context of one request. Not configured, no destination can be chosen: every
    /// request is answered 503.
    pub(crate) fn filter(shared: Option<Rc<Shared>>) -> glue::Filter<Self> {
        let request = shared.map(|shared| Self {
            flow: Flow::new(),
            host: WasmHost::new(Rc::clone(&shared)),
            shared,
        });
        glue::Filter::new(
            request,
            glue::Unconfigured::Answer(
                ErrorKind::Unavailable,
                "no_endpoint",
                "No model endpoint is available to serve this request.",
                &[("retry-after", "1")],
            ),
        )
    }
}

impl glue::Request for AffinityRequest {
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
    fn on_http_call_answer(&mut self, _token: u32, _body_size: usize) {
        let headers = host::call_response_headers();
        self.flow
            .on_pick_answer(&mut self.host, &self.shared.policy, &headers);
    }
    fn on_response_headers(&mut self) {
        self.flow
            .on_response_headers(&mut self.host, &self.shared.policy);
    }
    fn on_log(&mut self) {
        self.flow.on_log(&mut self.host, &self.shared.policy);
    }
}
