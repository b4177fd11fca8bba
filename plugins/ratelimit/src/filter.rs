//! The per-request filter: decide on the headers (request limits) or on the body (token
//! limits), answer 429s, add budget headers, follow the response and settle.

use crate::attrs::RequestAttributes;
use crate::global::{self, Verdict};
use crate::response::{Settlement, Tracker};
use crate::store::SharedDataStore;
use crate::Shared;
use infergate_core::openai::{
    parse_request_capped, request_stream_usage, ApiKind, RequestSummary, UsageInjection,
    MAX_SUMMARY_PROMPT_BYTES, SUMMARY_PROPERTY,
};
use infergate_core::openai_error::ErrorKind;
use infergate_core::ratelimit::config::FailureMode;
use infergate_core::ratelimit::decision::{
    Charge, GlobalCall, Limiter, Outcome, RateStatus, TokenEstimate,
};
use infergate_core::ratelimit::headers;
use infergate_glue as glue;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

pub(crate) struct RateLimitFilter {
    shared: Option<Rc<Shared>>,
    /// Attributes kept while the body is read.
    attrs: Option<RequestAttributes>,
    /// The API of a request whose body we wait for.
    api: Option<ApiKind>,
    /// Status of the applied rates, for the response headers.
    status: Vec<RateStatus>,
    /// Charges to settle when the response ends.
    charges: Vec<Charge>,
    /// Prompt tokens estimated for this request.
    estimated_prompt: u64,
    /// The gateway added `include_usage`: remove the usage chunk from the client's stream.
    injected_usage: bool,
    tracker: Option<Tracker>,
    settled: bool,
    /// Global mode: the calls of this request, and the ones still unanswered (call token →
    /// index into `global_calls`).
    global_calls: Vec<GlobalCall>,
    global_pending: Vec<(u32, usize)>,
    /// A local answer was sent: later callbacks must not resume the request.
    answered: bool,
    /// Bytes of request body buffered so far.
    body_size: usize,
    /// User id and model, for the usage stats.
    user: Option<String>,
    model: Option<String>,
}

impl RateLimitFilter {
    pub(crate) fn new(shared: Option<Rc<Shared>>) -> Self {
        Self {
            shared,
            attrs: None,
            api: None,
            status: Vec::new(),
            charges: Vec::new(),
            estimated_prompt: 0,
            injected_usage: false,
            tracker: None,
            settled: false,
            global_calls: Vec::new(),
            global_pending: Vec::new(),
            answered: false,
            body_size: 0,
            user: None,
            model: None,
        }
    }

    fn now_ms(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    fn attributes(&self, shared: &Shared) -> RequestAttributes {
        RequestAttributes::from_host(self, &shared.config)
    }

    /// Applies the limiter's outcome: `true` when the request may go on.
    fn apply(&mut self, shared: &Shared, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Allowed { charges, status } => {
                glue::bump(shared.metrics.allowed);
                self.status = status;
                self.charges = charges;
                true
            }
            Outcome::Limited {
                name,
                retry_after_secs,
                status,
            } => {
                self.answered = true;
                glue::bump(shared.metrics.limited);
                let retry = retry_after_secs.to_string();
                let rendered = headers::render(shared.config.response_headers, &status);
                let mut extra: Vec<(&str, &str)> = vec![("retry-after", retry.as_str())];
                extra.extend(rendered.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let message =
                    format!("Rate limit `{name}` exceeded; retry after {retry_after_secs} s.");
                glue::send_error(
                    self,
                    ErrorKind::RateLimited,
                    "rate_limit_exceeded",
                    &message,
                    &extra,
                );
                false
            }
            Outcome::StoreFailed => self.unavailable(shared, shared.config.failure_mode),
        }
    }

    /// Limits could not be checked (counters or the rate limit service failed): `true` when
    /// the failure mode lets the request go on; otherwise answers 500 once.
    fn unavailable(&mut self, shared: &Shared, mode: FailureMode) -> bool {
        glue::bump(shared.metrics.store_failed);
        match mode {
            FailureMode::Allow => true,
            FailureMode::Deny => {
                if !self.answered {
                    self.answered = true;
                    glue::send_error(
                        self,
                        ErrorKind::Internal,
                        "ratelimit_unavailable",
                        "Rate limits could not be checked.",
                        &[],
                    );
                }
                false
            }
        }
    }

    /// Answers 400 with the body parser's error.
    fn bad_request(&self, body: &[u8]) -> Action {
        glue::send_bad_request(self, body);
        Action::Pause
    }

    /// Decides a request from its complete body.
    fn decide_with_body(&mut self, shared: &Shared, api: ApiKind, body: &[u8]) -> Action {
        let parsed = match parse_request_capped(api, body, MAX_SUMMARY_PROMPT_BYTES) {
            Ok(p) => p,
            Err(e) => return self.bad_request(&e.to_openai_body()),
        };
        // Hand the parse to the affinity filter further down the chain (filter state), so
        // the body is parsed once.
        let summary = RequestSummary::of(&parsed, MAX_SUMMARY_PROMPT_BYTES);
        self.set_property(vec![SUMMARY_PROPERTY], Some(&summary.encode()));
        let choices = parsed.n.unwrap_or(1).max(1);
        let estimate = TokenEstimate {
            prompt: parsed.estimated_prompt_tokens(),
            completion_cap: parsed
                .output_token_limit()
                .unwrap_or(shared.config.default_max_tokens)
                .saturating_mul(choices),
        };
        self.estimated_prompt = estimate.prompt;
        let mut attrs = match self.attrs.take() {
            Some(a) => a,
            None => self.attributes(shared),
        };
        attrs.model = Some(parsed.model.clone());
        self.model = Some(parsed.model.clone());
        self.user = attrs
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&attrs.user_header))
            .map(|(_, v)| v.clone());
        if shared.config.global.is_some() {
            let calls = shared.limiter.global_calls(&attrs, Some(estimate));
            if calls.iter().any(|c| c.tokens) {
                if let Err(action) = self.inject_usage(shared, &parsed, body) {
                    return action;
                }
            }
            return self.start_global(shared, calls);
        }
        let outcome = shared
            .limiter
            .check(&SharedDataStore, &attrs, self.now_ms(), Some(estimate));
        if !self.apply(shared, outcome) {
            return Action::Pause;
        }
        if self.counts_tokens() {
            if let Err(action) = self.inject_usage(shared, &parsed, body) {
                return action;
            }
        }
        Action::Continue
    }

    /// Whether this request carries token charges to settle.
    fn counts_tokens(&self) -> bool {
        self.charges
            .iter()
            .any(|c| c.counts == infergate_core::ratelimit::config::Counts::Tokens)
            || self.global_calls.iter().any(|c| c.tokens)
            || (self.model.is_some() && self.shared.as_ref().is_some_and(|s| s.usage.is_some()))
    }

    /// Sends the global-mode calls; the request waits for their answers.
    fn start_global(&mut self, shared: &Shared, calls: Vec<GlobalCall>) -> Action {
        let Some(g) = &shared.config.global else {
            return Action::Continue;
        };
        for (i, call) in calls.iter().enumerate() {
            let sent = global::dispatch(self, g, &call.descriptors, call.hits);
            match sent {
                Ok(token) => self.global_pending.push((token, i)),
                Err(_) => {
                    if !self.global_failed(shared) {
                        return Action::Pause;
                    }
                }
            }
        }
        self.global_calls = calls;
        if self.global_pending.is_empty() {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    /// The rate limit service could not answer: `true` when the request may go on.
    fn global_failed(&mut self, shared: &Shared) -> bool {
        let mode = shared
            .config
            .global
            .as_ref()
            .map_or(FailureMode::Deny, |g| g.failure_mode);
        self.unavailable(shared, mode)
    }

    /// Asks the model server for a usage chunk on a stream the client did not ask usage for.
    fn inject_usage(
        &mut self,
        shared: &Shared,
        parsed: &infergate_core::openai::ParsedRequest,
        body: &[u8],
    ) -> Result<(), Action> {
        {
            match request_stream_usage(parsed, body) {
                Ok(UsageInjection::Injected(new_body)) => {
                    self.set_http_request_body(0, body.len(), &new_body);
                    // In no-hold mode the headers are gone (Envoy refuses the call) and
                    // `content-length` was dropped when they left.
                    let hold = shared.config.allow_on_headers_stop_iteration;
                    if hold.headers_editable_from_body()
                        && self.get_http_request_header("content-length").is_some()
                    {
                        self.set_http_request_header(
                            "content-length",
                            Some(&new_body.len().to_string()),
                        );
                    }
                    self.injected_usage = true;
                    glue::bump(shared.metrics.usage_injected);
                }
                Ok(UsageInjection::Unchanged) => {}
                Err(e) => {
                    self.settle_with(Settlement::KeepEstimate(String::new()));
                    self.answered = true;
                    return Err(self.bad_request(&e.to_openai_body()));
                }
            }
        }
        Ok(())
    }

    fn settle_with(&mut self, settlement: Settlement) {
        if self.settled {
            return;
        }
        self.settled = true;
        let Some(shared) = self.shared.clone() else {
            return;
        };
        match settlement {
            Settlement::Usage(usage) => {
                Limiter::settle(&SharedDataStore, &self.charges, usage);
                for call in self.global_calls.iter().filter(|c| c.tokens) {
                    let actual = call.actual(usage);
                    if actual > call.hits {
                        shared
                            .queue_global_settlement(call.descriptors.clone(), actual - call.hits);
                    }
                }
                glue::bump(shared.metrics.settled);
                if let Some(stats) = &shared.usage {
                    stats.record(self.user.as_deref(), self.model.as_deref(), usage);
                }
            }
            Settlement::KeepEstimate(why) => {
                if !why.is_empty() {
                    glue::bump(shared.metrics.usage_missing);
                    glue::log(
                        LogLevel::Warn,
                        &format!("infergate-ratelimit: {why}; the estimate stays charged"),
                    );
                }
            }
        }
    }

    /// The decision waits for the body: hold the headers where the host allows it, else let
    /// them go on and decide from the body callback (no body byte is forwarded before the
    /// decision; a 429 from there abandons the upstream request). The usage injection may
    /// grow the body after the headers left, so no-hold mode drops `content-length` here.
    fn await_body(&mut self, shared: &Shared) -> Action {
        let hold = shared.config.allow_on_headers_stop_iteration;
        if !hold.headers_editable_from_body() {
            self.set_http_request_header("content-length", None);
        }
        glue::headers_action(hold.awaiting_body())
    }

    fn too_large(&self, shared: &Shared) -> Action {
        glue::send_too_large(self, shared.config.max_body_bytes);
        Action::Pause
    }
}

impl Context for RateLimitFilter {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(pos) = self.global_pending.iter().position(|(t, _)| *t == token_id) else {
            return;
        };
        let (_, index) = self.global_pending.swap_remove(pos);
        if self.answered {
            return;
        }
        let Some(call) = self.global_calls.get(index) else {
            return;
        };
        let counts = if call.tokens {
            infergate_core::ratelimit::config::Counts::Tokens
        } else {
            infergate_core::ratelimit::config::Counts::Requests
        };
        let body = self.get_grpc_call_response_body(0, response_size);
        match global::verdict(status_code, body, &call.descriptors, counts) {
            Verdict::Ok(status) => {
                glue::bump(shared.metrics.allowed);
                self.status.extend(status);
            }
            Verdict::OverLimit {
                name,
                retry_after_secs,
                status,
            } => {
                self.apply(
                    &shared,
                    Outcome::Limited {
                        name,
                        retry_after_secs,
                        status,
                    },
                );
                return;
            }
            Verdict::Failed => {
                if !self.global_failed(&shared) {
                    return;
                }
            }
        }
        if self.global_pending.is_empty() && !self.answered {
            self.resume_http_request();
        }
    }
}

impl HttpContext for RateLimitFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        if shared.limiter.limits().is_empty() && shared.usage.is_none() {
            return Action::Continue;
        }
        let is_post = self.get_http_request_header(":method").as_deref() == Some("POST");
        let api = self
            .get_http_request_header(":path")
            .and_then(|p| ApiKind::from_path(&p));
        if let (true, Some(api), false) = (shared.needs_body && is_post, api, end_of_stream) {
            if self
                .get_http_request_header("content-length")
                .and_then(|l| l.parse::<usize>().ok())
                .is_some_and(|len| len > shared.config.max_body_bytes)
            {
                return self.too_large(&shared);
            }
            self.attrs = Some(self.attributes(&shared));
            self.api = Some(api);
            return self.await_body(&shared);
        }
        let attrs = self.attributes(&shared);
        if shared.config.global.is_some() {
            let calls = shared.limiter.global_calls(&attrs, None);
            return self.start_global(&shared, calls);
        }
        let outcome = shared
            .limiter
            .check(&SharedDataStore, &attrs, self.now_ms(), None);
        if self.apply(&shared, outcome) {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body_size = body_size;
        if !self.global_pending.is_empty() || self.answered {
            // Headers are held until the rate limit service answers; returning Continue here
            // would let the request through (and its body with it) before the verdict.
            return Action::Pause;
        }
        let (Some(shared), Some(api)) = (self.shared.clone(), self.api) else {
            return Action::Continue;
        };
        if body_size > shared.config.max_body_bytes {
            self.api = None;
            return self.too_large(&shared);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.api = None;
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        self.decide_with_body(&shared, api, &body)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if !self.global_pending.is_empty() || self.answered {
            return Action::Pause;
        }
        if let (Some(shared), Some(api)) = (self.shared.clone(), self.api.take()) {
            let body = self
                .get_http_request_body(0, self.body_size)
                .unwrap_or_default();
            return self.decide_with_body(&shared, api, &body);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        for (k, v) in headers::render(shared.config.response_headers, &self.status) {
            self.set_http_response_header(&k, Some(&v));
        }
        if self.counts_tokens() {
            let content_type = self
                .get_http_response_header("content-type")
                .unwrap_or_default();
            let tracker = Tracker::for_content_type(&content_type, self.injected_usage);
            if matches!(tracker, Tracker::Sse { strip: true, .. }) {
                // The body shrinks when the usage chunk is removed.
                self.set_http_response_header("content-length", None);
            }
            self.tracker = Some(tracker);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(mut tracker) = self.tracker.take() else {
            return Action::Continue;
        };
        let chunk = self
            .get_http_response_body(0, body_size)
            .unwrap_or_default();
        if let Some(replacement) = tracker.feed(&chunk, end_of_stream) {
            if replacement != chunk {
                self.set_http_response_body(0, body_size, &replacement);
            }
        }
        self.tracker = Some(tracker);
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.settled || !self.counts_tokens() {
            return;
        }
        let status = self
            .get_property(vec!["response", "code"])
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        let nothing = Settlement::Usage(infergate_core::ratelimit::decision::Usage {
            prompt: 0,
            completion: 0,
        });
        // Settled once the stream is over (complete, cut off, or reset), from what passed.
        let settlement = match self
            .tracker
            .as_ref()
            .map(|t| t.settlement(self.estimated_prompt))
        {
            Some(Settlement::Usage(u)) => Settlement::Usage(u),
            // An error answer without usage (upstream failure, bad request): nothing was
            // generated, so nothing is charged.
            Some(Settlement::KeepEstimate(_)) | None if status >= 400 || status == 0 => nothing,
            Some(keep) => keep,
            None => Settlement::KeepEstimate("response ended without a body".into()),
        };
        self.settle_with(settlement);
    }
}
