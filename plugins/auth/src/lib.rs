//! `infergate-auth`: token authentication and authorization inside Envoy.
//!
//! A thin proxy-wasm adapter. Each request's flow is
//! [`infergate_core::auth::flow::AuthFlow`]: this crate feeds it Envoy's callbacks and carries
//! out what it asks through [`WasmHost`] (headers, body, callouts to Kubernetes TokenReview /
//! SubjectAccessReview through Envoy clusters, shared data, local answers, resuming). The root
//! context keeps JWKS documents fetched and fresh (on its timer, in shared data; see [`jwks`]).

mod jwks;

use infergate_core::auth::flow::{AuthFlow, FlowHost, LocalReply, Next, Stat};
use infergate_core::auth::jwt::KeySet;
use infergate_core::auth::{AuthConfig, Authenticator, Callout, CalloutKind, DENIAL_REASONS};
use infergate_core::openai_error::ErrorKind;
use infergate_glue::{self as glue, host};
use jwks::{JwksCache, JwksFetcher};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;

const PLUGIN: &str = "infergate-auth";

/// Longest a denied request's answer waits for the rest of its body (see
/// [`infergate_core::auth::flow::Phase::Draining`]); checked on the root context's timer.
const DRAIN_TIMEOUT_MS: u64 = 2000;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(AuthRoot::default()) });
}}

/// Stats, all under `wasmcustom.infergate.auth.`.
#[derive(Clone, Default)]
struct Metrics {
    allowed: Option<u32>,
    /// Parallel to [`DENIAL_REASONS`].
    denied: Vec<Option<u32>>,
    token_review_callouts: Option<u32>,
    access_review_callouts: Option<u32>,
    metadata_callouts: Option<u32>,
    callout_failures: Option<u32>,
    cache_hits: Option<u32>,
    cache_misses: Option<u32>,
    jwks_fetched: Option<u32>,
    jwks_fetch_failed: Option<u32>,
}

impl Metrics {
    fn define() -> Self {
        let c = |n: &str| glue::counter(&format!("infergate.auth.{n}"));
        Self {
            allowed: c("allowed"),
            denied: DENIAL_REASONS
                .iter()
                .map(|r| c(&format!("denied.{r}")))
                .collect(),
            token_review_callouts: c("callouts.token_review"),
            access_review_callouts: c("callouts.access_review"),
            metadata_callouts: c("callouts.metadata"),
            callout_failures: c("callouts.failed"),
            cache_hits: c("cache.hits"),
            cache_misses: c("cache.misses"),
            jwks_fetched: c("jwks.fetched"),
            jwks_fetch_failed: c("jwks.fetch_failed"),
        }
    }

    fn counter(&self, stat: Stat) -> Option<u32> {
        match stat {
            Stat::Allowed => self.allowed,
            Stat::Denied(reason) => DENIAL_REASONS
                .iter()
                .position(|r| *r == reason)
                .and_then(|i| self.denied.get(i).copied().flatten()),
            Stat::Callout(CalloutKind::Token(_)) => self.token_review_callouts,
            Stat::Callout(CalloutKind::Access) => self.access_review_callouts,
            Stat::Callout(CalloutKind::Metadata(_)) => self.metadata_callouts,
            Stat::CalloutFailed => self.callout_failures,
            Stat::CacheHit => self.cache_hits,
            Stat::CacheMiss => self.cache_misses,
        }
    }
}

/// A request whose answer waits for its body: context id, deadline (ms), its flow.
type Draining = (u32, u64, Weak<RefCell<AuthFlow>>);

/// What every HTTP context of this VM shares.
struct Shared {
    auth: Authenticator,
    metrics: Metrics,
    jwks: RefCell<JwksCache>,
    /// Requests whose answer waits for the rest of the body: context, deadline (ms), flow.
    draining: RefCell<Vec<Draining>>,
}

#[derive(Default)]
struct AuthRoot {
    shared: Option<Rc<Shared>>,
    fetcher: JwksFetcher,
}

impl Context for AuthRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        size: usize,
        _trailers: usize,
    ) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let (status, body) = glue::call_response(self, size);
        match self
            .fetcher
            .on_response(token, status, &body, host::now_secs())
        {
            Some(true) => glue::bump(shared.metrics.jwks_fetched),
            Some(false) => glue::bump(shared.metrics.jwks_fetch_failed),
            None => {}
        }
    }
}

impl RootContext for AuthRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = glue::load_config::<AuthConfig>(PLUGIN, self.get_plugin_configuration())
        else {
            return false;
        };
        let auth = Authenticator::new(config);
        self.fetcher = JwksFetcher::new(auth.jwks_fetches.clone());
        if auth.hold.allowed() {
            self.set_tick_period(Duration::from_millis(500));
        } else if !auth.jwks_fetches.is_empty() {
            self.set_tick_period(Duration::from_secs(1));
        }
        self.shared = Some(Rc::new(Shared {
            auth,
            metrics: Metrics::define(),
            jwks: RefCell::new(JwksCache::default()),
            draining: RefCell::default(),
        }));
        true
    }

    fn on_tick(&mut self) {
        if let Some(shared) = &self.shared {
            answer_overdue(shared);
        }
        let now = host::now_secs();
        for (cluster, headers, timeout, index) in self.fetcher.due(now) {
            let hs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match self.dispatch_http_call(&cluster, hs, None, vec![], timeout) {
                Ok(token) => self.fetcher.sent(index, token, now),
                Err(_) => {
                    self.fetcher.failed(index, now);
                    if let Some(s) = &self.shared {
                        glue::bump(s.metrics.jwks_fetch_failed);
                    }
                }
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuthFilter {
            shared: self.shared.clone(),
            context_id,
            flow: Rc::default(),
            armed: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The flow's host: the current request's host calls, this VM's key sets and stats.
struct WasmHost<'a>(&'a Shared);

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

/// Answers the draining requests whose deadline passed (from the root context's timer).
fn answer_overdue(shared: &Shared) {
    let now = host::now_millis();
    let overdue: Vec<_> = {
        let mut draining = shared.draining.borrow_mut();
        let (due, keep) = draining
            .drain(..)
            .partition(|(_, deadline, _)| *deadline <= now);
        *draining = keep;
        due
    };
    for (context_id, _, flow) in overdue {
        let Some(cell) = flow.upgrade() else { continue };
        if let Ok(mut flow) = cell.try_borrow_mut() {
            if flow.is_draining() && host::act_for(context_id) {
                flow.on_timeout(&WasmHost(shared));
            }
        };
    }
}

/// One request: the shared configuration and the request's flow (shared with the root
/// context's timer while an answer waits for the body).
struct AuthFilter {
    shared: Option<Rc<Shared>>,
    context_id: u32,
    flow: Rc<RefCell<AuthFlow>>,
    /// The draining timer is set.
    armed: bool,
}

impl AuthFilter {
    /// Runs one step of the flow, then sets the draining timer if the answer now waits.
    /// `None` if the flow is busy (a re-entered callback, which Envoy does not do).
    fn step<T>(
        &mut self,
        shared: &Shared,
        f: impl FnOnce(&mut AuthFlow, &WasmHost) -> T,
    ) -> Option<T> {
        let Ok(mut flow) = self.flow.try_borrow_mut() else {
            return None;
        };
        let out = f(&mut flow, &WasmHost(shared));
        if flow.is_draining() && !self.armed {
            self.armed = true;
            let deadline = host::now_millis().saturating_add(DRAIN_TIMEOUT_MS);
            let weak = Rc::downgrade(&self.flow);
            shared
                .draining
                .borrow_mut()
                .push((self.context_id, deadline, weak));
        }
        Some(out)
    }
}

/// Envoy's answer to a filter callback (`None`: the flow was busy; hold the request).
fn action(next: Option<Next>) -> Action {
    match next {
        Some(Next::Continue) => Action::Continue,
        Some(Next::Pause) | None => Action::Pause,
    }
}

impl Context for AuthFilter {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        size: usize,
        _trailers: usize,
    ) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let (status, body) = glue::call_response(self, size);
        self.step(&shared, |flow, host| {
            flow.on_answer(&shared.auth, host, token, status, &body)
        });
    }

    fn on_done(&mut self) -> bool {
        if let Ok(mut flow) = self.flow.try_borrow_mut() {
            flow.on_done();
        }
        true
    }
}

impl HttpContext for AuthFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            // on_configure failed: Envoy does not create the filter then, but never fail open.
            host::send_reply(
                ErrorKind::Internal,
                "gateway_misconfigured",
                "The gateway's authentication filter is not configured.",
                &[],
            );
            return Action::Pause;
        };
        action(self.step(&shared, |flow, host| {
            flow.on_headers(&shared.auth, host, end_of_stream)
        }))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        action(self.step(&shared, |flow, host| {
            flow.on_body(&shared.auth, host, body_size, end_of_stream)
        }))
    }
}
