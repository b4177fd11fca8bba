//! `infergate-auth`: token authentication and authorization inside Envoy.
//!
//! A thin proxy-wasm adapter: it gathers the request facts, asks
//! [`infergate_core::auth::Authenticator`] for a decision, makes the callouts the decision asks
//! for (Kubernetes TokenReview / SubjectAccessReview, through Envoy clusters), keeps JWKS
//! documents fetched and fresh (from the root context's timer, in shared data), and applies the
//! outcome — identity headers on success (client-sent copies removed first), an OpenAI-style
//! 401/403/503 otherwise.

mod jwks;

use infergate_core::auth::kube::{self, Review};
use infergate_core::auth::{
    AuthConfig, AuthHost, Authenticator, Authorization, Callout, CalloutKind, Decision, Denial,
    Identity, RequestView, DENIAL_REASONS,
};
use infergate_core::header_hold::{AfterCallout, HeaderHold};
use infergate_core::openai::{parse_request, ApiKind};
use infergate_core::openai_error::ErrorKind;
use infergate_glue as glue;
use jwks::{JwksCache, JwksFetcher};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

const PLUGIN: &str = "infergate-auth";

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
            callout_failures: c("callouts.failed"),
            cache_hits: c("cache.hits"),
            cache_misses: c("cache.misses"),
            jwks_fetched: c("jwks.fetched"),
            jwks_fetch_failed: c("jwks.fetch_failed"),
        }
    }

    fn denied(&self, reason: &str) -> Option<u32> {
        DENIAL_REASONS
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.denied.get(i).copied().flatten())
    }
}

/// What every HTTP context of this VM shares.
struct Shared {
    auth: Authenticator,
    metrics: Metrics,
    jwks: RefCell<JwksCache>,
    /// Whether headers may be held while the body is read (else the no-hold mode).
    hold: HeaderHold,
}

#[derive(Default)]
struct AuthRoot {
    shared: Option<Rc<Shared>>,
    fetcher: JwksFetcher,
}

fn now_secs(ctx: &dyn Context) -> u64 {
    ctx.get_current_time()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Context for AuthRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let (status, body) = glue::call_response(self, body_size);
        let now = now_secs(self);
        let ok = self.fetcher.on_response(token_id, status, &body, now);
        match ok {
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
        let hold = config.allow_on_headers_stop_iteration;
        let auth = Authenticator::new(config);
        self.fetcher = JwksFetcher::new(auth.jwks_fetches.clone());
        if !auth.jwks_fetches.is_empty() {
            self.set_tick_period(Duration::from_secs(1));
        }
        self.shared = Some(Rc::new(Shared {
            auth,
            metrics: Metrics::define(),
            jwks: RefCell::new(JwksCache::default()),
            hold,
        }));
        true
    }

    fn on_tick(&mut self) {
        let now = now_secs(self);
        for (cluster, headers, timeout, index) in self.fetcher.due(now) {
            let hs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let sent = self.dispatch_http_call(&cluster, hs, None, vec![], timeout);
            match sent {
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

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuthFilter {
            shared: self.shared.clone(),
            facts: None,
            pending: None,
            identity: None,
            want_body: false,
            body_done: None,
            in_callback: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Time, key sets and the review cache, as the decision sees them.
struct Host<'a> {
    now: u64,
    shared: &'a Shared,
}

impl AuthHost for Host<'_> {
    fn now(&self) -> u64 {
        self.now
    }

    fn key_set(&self, method: &str) -> Option<Rc<infergate_core::auth::jwt::KeySet>> {
        self.shared.jwks.borrow_mut().get(method)
    }

    fn cache_get(&self, key: &str) -> Option<Vec<u8>> {
        let value = hostcalls::get_shared_data(key).ok().and_then(|(v, _)| v);
        let live = value
            .as_deref()
            .is_some_and(|v| kube::decode_entry(v, self.now).is_some());
        glue::bump(if live {
            self.shared.metrics.cache_hits
        } else {
            self.shared.metrics.cache_misses
        });
        value
    }
}

/// Request facts read once from the host.
struct Facts {
    headers: Vec<(String, String)>,
    source: Option<String>,
}

impl Facts {
    fn pseudo(&self, name: &str) -> String {
        self.header_values(name)
            .into_iter()
            .next()
            .unwrap_or_default()
    }
}

impl RequestView for Facts {
    fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn path(&self) -> String {
        self.pseudo(":path")
    }

    fn host(&self) -> String {
        self.pseudo(":authority")
    }

    fn source_address(&self) -> Option<String> {
        self.source.clone()
    }
}

struct AuthFilter {
    shared: Option<Rc<Shared>>,
    facts: Option<Facts>,
    /// The review being asked.
    pending: Option<Callout>,
    /// Authenticated, authorization in progress.
    identity: Option<Identity>,
    /// A `models` rule waits for the body.
    want_body: bool,
    /// The body's size once complete.
    body_done: Option<usize>,
    /// Inside a callback that is not a filter callback: continuing means resuming.
    in_callback: bool,
}

impl AuthFilter {
    fn host<'a>(&self, shared: &'a Shared) -> Host<'a> {
        Host {
            now: now_secs(self),
            shared,
        }
    }

    fn deny(&mut self, shared: &Shared, denial: &Denial) -> Action {
        glue::bump(shared.metrics.denied(denial.reason));
        let mut extra = Vec::new();
        if let Some(w) = denial.www_authenticate.as_deref() {
            extra.push(("www-authenticate", w));
        }
        if denial.kind == ErrorKind::Unavailable {
            extra.push(("retry-after", "1"));
        }
        glue::send_error(self, denial.kind, denial.code, denial.message, &extra);
        self.pending = None;
        self.want_body = false;
        Action::Pause
    }

    fn proceed(&mut self, shared: &Shared) -> Action {
        glue::bump(shared.metrics.allowed);
        self.want_body = false;
        if self.in_callback {
            self.resume_http_request();
        }
        Action::Continue
    }

    fn dispatch(&mut self, shared: &Shared, callout: Callout) -> Action {
        glue::bump(match callout.kind {
            CalloutKind::Token(_) => shared.metrics.token_review_callouts,
            CalloutKind::Access => shared.metrics.access_review_callouts,
        });
        let sent = self.dispatch_http_call(
            &callout.cluster,
            vec![
                (":method", "POST"),
                (":path", &callout.path),
                (":authority", &callout.authority),
                ("content-type", "application/json"),
                ("accept", "application/json"),
                ("authorization", &callout.authorization),
            ],
            Some(&callout.body),
            vec![],
            Duration::from_millis(callout.timeout_ms),
        );
        match sent {
            Ok(_) => {
                self.pending = Some(callout);
                Action::Pause
            }
            // The cluster does not exist or the call cannot be made: as a failed review.
            Err(_) => self.reviewed(shared, callout, Review::Failed),
        }
    }

    fn reviewed(&mut self, shared: &Shared, callout: Callout, review: Review) -> Action {
        if review == Review::Failed {
            glue::bump(shared.metrics.callout_failures);
        }
        let now = now_secs(self);
        if let Some(entry) = Authenticator::cache_entry(&callout, &review, now) {
            let _ = hostcalls::set_shared_data(&callout.cache_key, Some(&entry), None);
        }
        match callout.kind {
            CalloutKind::Token(_) => {
                let Some(facts) = self.facts.take() else {
                    return self.proceed_never(shared);
                };
                let host = self.host(shared);
                let decision = shared.auth.token_reviewed(&facts, &host, &callout, review);
                self.facts = Some(facts);
                self.decided(shared, decision)
            }
            CalloutKind::Access => {
                let authz = shared.auth.access_reviewed(review);
                self.authorized(shared, authz)
            }
        }
    }

    /// A state that cannot happen; fail closed.
    fn proceed_never(&mut self, shared: &Shared) -> Action {
        glue::send_error(
            self,
            ErrorKind::Internal,
            "internal_error",
            "The gateway's authentication filter lost track of this request.",
            &[],
        );
        glue::bump(shared.metrics.denied("unavailable"));
        Action::Pause
    }

    fn decided(&mut self, shared: &Shared, decision: Decision) -> Action {
        match decision {
            Decision::Allow { identity, .. } => {
                for h in &shared.auth.credential_headers {
                    self.set_http_request_header(h, None);
                }
                let headers = &shared.auth.identity_headers;
                self.set_http_request_header(&headers.userid, Some(&identity.userid));
                if !identity.groups.is_empty() {
                    self.set_http_request_header(&headers.groups, Some(&identity.groups.join(",")));
                }
                // The whole identity object (every property) for the rate limiter.
                let Some(object) = infergate_core::auth::identity::encode(&identity) else {
                    return self.proceed_never(shared);
                };
                self.set_property(
                    vec![infergate_core::auth::identity::IDENTITY_PROPERTY],
                    Some(&object),
                );
                self.identity = Some(identity);
                self.authorize(shared, None)
            }
            Decision::Deny(d) => self.deny(shared, &d),
            Decision::Review(c) => self.dispatch(shared, c),
        }
    }

    fn authorize(&mut self, shared: &Shared, model: Option<&str>) -> Action {
        let (Some(facts), Some(identity)) = (self.facts.take(), self.identity.take()) else {
            return self.proceed_never(shared);
        };
        let host = self.host(shared);
        let authz = shared.auth.authorize(&facts, &host, &identity, model);
        self.facts = Some(facts);
        self.identity = Some(identity);
        self.authorized(shared, authz)
    }

    fn authorized(&mut self, shared: &Shared, authz: Authorization) -> Action {
        match authz {
            Authorization::Allow => self.proceed(shared),
            Authorization::Deny(d) => self.deny(shared, &d),
            Authorization::Review(c) => self.dispatch(shared, c),
            Authorization::NeedModel => {
                self.want_body = true;
                match self.body_done {
                    Some(size) => self.read_model(shared, size),
                    None => self.wait_for_body(shared),
                }
            }
        }
    }

    /// A `models` rule needs the complete body. Hold mode keeps the headers paused; no-hold
    /// mode lets them go on (resuming them when a callout's answer got us here) and the body
    /// callback decides, answering 403 from there before any body byte is forwarded.
    fn wait_for_body(&mut self, shared: &Shared) -> Action {
        if self.in_callback {
            if shared.hold.after_callout() == AfterCallout::Resume {
                self.resume_http_request();
            }
            return Action::Pause;
        }
        glue::headers_action(shared.hold.awaiting_body())
    }

    /// The body is complete: read its `model` and finish authorization.
    fn read_model(&mut self, shared: &Shared, size: usize) -> Action {
        self.want_body = false;
        let body = if size == 0 {
            Vec::new()
        } else {
            self.get_http_request_body(0, size).unwrap_or_default()
        };
        let api = self
            .facts
            .as_ref()
            .and_then(|f| ApiKind::from_path(&f.path()));
        // No model (not an OpenAI request, or a malformed one): no `models` rule matches.
        let model = api
            .and_then(|api| parse_request(api, &body).ok())
            .map(|p| p.model)
            .unwrap_or_default();
        self.authorize(shared, Some(&model))
    }
}

impl Context for AuthFilter {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let (Some(shared), Some(callout)) = (self.shared.clone(), self.pending.take()) else {
            return;
        };
        let (status, body) = glue::call_response(self, body_size);
        let review = shared.auth.read_review(&callout, status, &body);
        self.in_callback = true;
        let _ = self.reviewed(&shared, callout, review);
        self.in_callback = false;
    }
}

impl HttpContext for AuthFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            // on_configure failed: Envoy does not create the filter then, but never fail open.
            glue::send_error(
                self,
                ErrorKind::Internal,
                "gateway_misconfigured",
                "The gateway's authentication filter is not configured.",
                &[],
            );
            return Action::Pause;
        };
        // Identity headers are the gateway's to set: drop whatever the client sent.
        self.set_http_request_header(&shared.auth.identity_headers.userid, None);
        self.set_http_request_header(&shared.auth.identity_headers.groups, None);
        if end_of_stream {
            self.body_done = Some(0);
        }
        let source = self
            .get_property(vec!["source", "address"])
            .and_then(|b| String::from_utf8(b).ok());
        let facts = Facts {
            headers: self.get_http_request_headers(),
            source,
        };
        let host = self.host(&shared);
        let decision = shared.auth.authenticate(&facts, &host);
        self.facts = Some(facts);
        self.decided(&shared, decision)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        if !self.want_body && self.pending.is_none() {
            return Action::Continue;
        }
        if body_size > shared.auth.max_body_bytes() {
            self.want_body = false;
            self.pending = None;
            glue::send_error(
                self,
                ErrorKind::PayloadTooLarge,
                "request_too_large",
                "The request body exceeds the gateway's limit for authorization.",
                &[],
            );
            return Action::Pause;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.body_done = Some(body_size);
        if self.want_body && self.pending.is_none() {
            return self.read_model(&shared, body_size);
        }
        // A review is still out; its answer finishes the request.
        Action::Pause
    }
}
