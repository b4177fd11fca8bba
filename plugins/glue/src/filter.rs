//! [`Filter`]: one request's proxy-wasm context, written once. It turns Envoy's callbacks
//! into calls on a plugin's [`Request`] (its core flow and the host it acts through) and the
//! flow's [`Step`]s into Envoy [`Action`]s; a plugin that failed to configure answers every
//! request the same way ([`Unconfigured`]).

use infergate_core::openai_error::ErrorKind;
use infergate_core::stream::Step;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

/// Envoy's answer to a filter callback.
pub fn action(step: Step) -> Action {
    match step {
        Step::Continue => Action::Continue,
        Step::Pause => Action::Pause,
    }
}

/// One request of a configured plugin: what each callback does. Callbacks a plugin does
/// not need keep their defaults (let the request go on; do nothing).
pub trait Request {
    /// The request headers arrived (`end_of_stream`: there is no body).
    fn on_request_headers(&mut self, end_of_stream: bool) -> Step;
    /// A request body chunk arrived; `size` bytes are buffered.
    fn on_request_body(&mut self, _size: usize, _end_of_stream: bool) -> Step {
        Step::Continue
    }
    /// The request trailers arrived.
    fn on_request_trailers(&mut self) -> Step {
        Step::Continue
    }
    /// The response headers arrived.
    fn on_response_headers(&mut self) {}
    /// A response body chunk of `size` bytes is passing.
    fn on_response_body(&mut self, _size: usize, _end_of_stream: bool) {}
    /// The request ended (access-log time).
    fn on_log(&mut self) {}
    /// The answer to HTTP call `token` (or its failure) is available.
    fn on_http_call_answer(&mut self, _token: u32, _body_size: usize) {}
    /// The answer to gRPC call `token` (`status`: its gRPC status, `size`: message bytes).
    fn on_grpc_call_answer(&mut self, _token: u32, _status: u32, _size: usize) {}
    /// The context is going away.
    fn on_done(&mut self) {}
}

/// What a request gets when the plugin has no configuration (Envoy does not create the
/// filter then, but a plugin that acts on every request never fails open).
#[derive(Debug, Clone, Copy)]
pub enum Unconfigured {
    /// Let it through untouched.
    Pass,
    /// Answer it with this OpenAI-style error: kind, code, message, extra headers.
    Answer(
        ErrorKind,
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    ),
}

/// One request's proxy-wasm context: a plugin's [`Request`], or `None` when not configured.
pub struct Filter<R> {
    request: Option<R>,
    unconfigured: Unconfigured,
}

impl<R: Request> Filter<R> {
    /// The context of one request (`None`: the plugin is not configured).
    pub fn new(request: Option<R>, unconfigured: Unconfigured) -> Self {
        Self {
            request,
            unconfigured,
        }
    }

    /// The request's step, or `Continue` when not configured.
    fn step(&mut self, f: impl FnOnce(&mut R) -> Step) -> Action {
        action(self.request.as_mut().map_or(Step::Continue, f))
    }
}

impl<R: Request> Context for Filter<R> {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        size: usize,
        _trailers: usize,
    ) {
        if let Some(r) = &mut self.request {
            r.on_http_call_answer(token, size);
        }
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if let Some(r) = &mut self.request {
            r.on_grpc_call_answer(token, status, size);
        }
    }

    fn on_done(&mut self) -> bool {
        if let Some(r) = &mut self.request {
            r.on_done();
        }
        true
    }
}

impl<R: Request> HttpContext for Filter<R> {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.request.is_none() {
            if let Unconfigured::Answer(kind, code, message, extra) = self.unconfigured {
                crate::send_error(kind, code, message, extra);
                return Action::Pause;
            }
        }
        self.step(|r| r.on_request_headers(end_of_stream))
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.step(|r| r.on_request_body(size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.step(|r| r.on_request_trailers())
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(r) = &mut self.request {
            r.on_response_headers();
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if let Some(r) = &mut self.request {
            r.on_response_body(size, end_of_stream);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(r) = &mut self.request {
            r.on_log();
        }
    }
}
