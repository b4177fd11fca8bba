//! One request: the core's [`AuthFlow`] fed by [`glue::Filter`]'s callbacks, acting through
//! [`WasmHost`]; a request whose answer waits for the rest of its body is answered from the
//! root context's timer once its deadline passes ([`answer_overdue`]).

use crate::Shared;
use infergate_core::auth::flow::{AuthFlow, FlowHost, LocalReply, Next, Stat};
use infergate_core::auth::jwt::KeySet;
use infergate_core::auth::Callout;
use infergate_core::openai_error::ErrorKind;
use infergate_glue::{self as glue, host};
use std::cell::RefCell;
use std::rc::Rc;

/// The flow's host: the current request's host calls, this VM's key sets and stats.
pub(crate) struct WasmHost<'a>(&'a Shared);

impl FlowHost for WasmHost<'_> {
    fn now(&self) -> u64 {
        host::now_secs()
    }
    fn request_headers(&self) -> Vec<(String, String)> {
        host::request_headers()
    }
    fn source_address(&self) -> Option<String> {
        host::property_text(vec!["source", "address"])
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        host::set_request_header(name, value);
    }
    fn set_identity_object(&self, object: &[u8]) {
        host::set_property(
            vec![infergate_core::auth::identity::IDENTITY_PROPERTY],
            object,
        );
    }
    fn request_body(&self, size: usize) -> Vec<u8> {
        host::request_body(size)
    }
    fn discard_request_body(&self, size: usize) {
        host::discard_request_body(size);
    }
    fn dispatch(&self, call: &Callout) -> Option<u32> {
        host::dispatch(call)
    }
    fn shared_get(&self, key: &str) -> Option<Vec<u8>> {
        host::shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8]) {
        host::shared_set(key, value);
    }
    fn key_set(&self, method: &str) -> Option<Rc<KeySet>> {
        self.0.jwks.borrow_mut().get(method)
    }
    fn send_reply(&self, r: &LocalReply) {
        host::send_reply(r.kind, r.code, &r.message, &r.headers);
    }
    fn resume(&self) {
        host::resume_request();
    }
    fn count(&self, stat: Stat) {
        glue::bump(self.0.metrics.counter(stat));
    }
}

/// Answers the waiting requests whose deadline passed (from the root context's timer).
pub(crate) fn answer_overdue(shared: &Shared) {
    let overdue = shared.draining.borrow_mut().overdue(host::now_millis());
    for (context_id, flow) in overdue {
        if let Ok(mut flow) = flow.try_borrow_mut() {
            if flow.is_draining() && host::act_for(context_id) {
                flow.on_timeout(&WasmHost(shared));
            }
        };
    }
}

/// One request: the shared configuration and the request's flow (shared with the root
/// context's timer while an answer waits for the body).
pub(crate) struct AuthRequest {
    shared: Rc<Shared>,
    context_id: u32,
    flow: Rc<RefCell<AuthFlow>>,
    /// The waiting answer's deadline is armed.
    armed: bool,
}

impl AuthRequest {
    /// The context of one request. Not configured, every request is refused (never fail
    /// open).
    pub(crate) fn filter(shared: Option<Rc<Shared>>, context_id: u32) -> glue::Filter<Self> {
        let request = shared.map(|shared| Self {
            shared,
            context_id,
            flow: Rc::default(),
            armed: false,
        });
        glue::Filter::new(
            request,
            glue::Unconfigured::Answer(
                ErrorKind::Internal,
                "gateway_misconfigured",
                "The gateway's authentication filter is not configured.",
                &[],
            ),
        )
    }

    /// Runs one step of the flow, then arms the deadline if the answer now waits for the
    /// body. `Pause` if the flow is busy (a re-entered callback, which Envoy does not do).
    fn step(&mut self, f: impl FnOnce(&mut AuthFlow, &Shared, &WasmHost) -> Next) -> Next {
        let Ok(mut flow) = self.flow.try_borrow_mut() else {
            return Next::Pause;
        };
        let next = f(&mut flow, &self.shared, &WasmHost(&self.shared));
        if flow.is_draining() && !self.armed {
            self.armed = true;
            self.shared
                .draining
                .borrow_mut()
                .arm(self.context_id, host::now_millis(), &self.flow);
        }
        next
    }
}

impl glue::Request for AuthRequest {
    fn on_request_headers(&mut self, end_of_stream: bool) -> Next {
        self.step(|flow, s, host| flow.on_headers(&s.auth, host, end_of_stream))
    }
    fn on_request_body(&mut self, size: usize, end_of_stream: bool) -> Next {
        self.step(|flow, s, host| flow.on_body(&s.auth, host, size, end_of_stream))
    }
    fn on_http_call_answer(&mut self, token: u32, body_size: usize) {
        let (status, body) = host::call_response(body_size);
        self.step(|flow, s, host| {
            flow.on_answer(&s.auth, host, token, status, &body);
            Next::Pause
        });
    }
    fn on_done(&mut self) {
        if let Ok(mut flow) = self.flow.try_borrow_mut() {
            flow.on_done();
        }
    }
}
