//! The rate-limit plugin's per-request flow as a state machine, driven through a narrow
//! [`Host`] trait so whole requests run in unit tests without Envoy.
//!
//! The phases ([`Phase`]) follow one request: its headers arrive; if its token estimate needs
//! the body, the flow waits for the complete body; in global mode it waits for the rate limit
//! service's answers; then the request is forwarded with its charges, or answered locally
//! (429, 413, 400, 500). When the response ends, token charges settle to the real usage.
//!
//! The proxy-wasm adapter (`plugins/ratelimit`) only feeds its callbacks into a [`Flow`] and
//! carries out the [`Host`] calls (declared in [`super::host`]); every decision is made here.
//!
//! Over 500 lines on purpose: the phases and every transition between them are read together
//! (the mock-host tests are in `flow_tests.rs`).

use super::attrs::RequestAttributes;
use super::config::{Counts, FailureMode, GlobalConfig, RateLimitConfig};
use super::decision::{Charge, GlobalCall, Limiter, Outcome, RateStatus, TokenEstimate, Usage};
use super::headers;
pub use super::host::{Event, Host, Step};
use super::response::{Settlement, Tracker};
use super::rls;
use super::verdict::{verdict, Verdict};
use crate::attributes::Attribute;
use crate::openai::{
    parse_request_capped, request_stream_usage, ApiKind, ParsedRequest, RequestSummary,
    UsageInjection, MAX_SUMMARY_PROMPT_BYTES,
};
use crate::openai_error::ErrorKind;

/// The compiled configuration every request of a plugin instance shares.
pub struct Policy {
    /// The configuration.
    pub config: RateLimitConfig,
    /// Its compiled limits.
    pub limiter: Limiter,
    /// Whether a request's body must be read (token limits, usage stats, `model` counters).
    pub needs_body: bool,
}

impl Policy {
    /// Compiles a validated configuration.
    pub fn new(config: RateLimitConfig) -> Self {
        let limiter = Limiter::new(config.compile());
        let needs_body = config.counts_tokens()
            || config.usage_stats.is_some()
            || limiter
                .limits()
                .iter()
                .any(|l| l.counters.contains(&Attribute::Model));
        Self {
            config,
            limiter,
            needs_body,
        }
    }

    /// Nothing to count or record: requests pass untouched.
    fn passthrough(&self) -> bool {
        self.limiter.limits().is_empty() && self.config.usage_stats.is_none()
    }
}

/// Where a request stands.
#[derive(Default)]
pub enum Phase {
    /// Before the request headers.
    #[default]
    Headers,
    /// Waiting for the complete body to estimate tokens.
    AwaitingBody {
        /// The API the path names.
        api: ApiKind,
        /// Attributes read at the headers.
        attrs: Box<RequestAttributes>,
        /// Bytes buffered so far.
        size: usize,
    },
    /// Waiting for the rate limit service: `(call token, index into the calls)` unanswered.
    AwaitingRls {
        /// Calls not answered yet.
        pending: Vec<(u32, usize)>,
    },
    /// Sent upstream with its charges.
    Forwarded,
    /// Answered locally: later callbacks must not resume it.
    Answered,
    /// Its charges are final (settled, or answered with the estimate kept).
    Settled,
}

/// What settlement needs to know about the request's tokens.
#[derive(Default)]
struct TokenUse {
    /// Prompt tokens estimated.
    estimated_prompt: u64,
    /// The gateway added `include_usage`: remove the usage chunk from the client's stream.
    injected: bool,
    /// User id, for the usage stats.
    user: Option<String>,
    /// Model, for the usage stats.
    model: Option<String>,
}

/// One request's flow.
#[derive(Default)]
pub struct Flow {
    phase: Phase,
    /// Status of the applied rates, for the response headers.
    status: Vec<RateStatus>,
    /// Global mode: headers the rate limit service asked to add (checked, first name wins).
    service_headers: Vec<(String, String)>,
    /// Local charges to settle.
    charges: Vec<Charge>,
    /// Global mode: this request's rate limit service calls.
    calls: Vec<GlobalCall>,
    tokens: TokenUse,
    tracker: Option<Tracker>,
}

impl Flow {
    /// A request before its headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where the request stands.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    fn answered(&self) -> bool {
        matches!(self.phase, Phase::Answered | Phase::Settled)
    }

    /// The request headers arrived: decide on them (request limits), or wait for the body
    /// (token limits, usage stats, `model` counters) or for the rate limit service.
    pub fn on_request_headers(
        &mut self,
        host: &mut dyn Host,
        policy: &Policy,
        end_of_stream: bool,
    ) -> Step {
        if policy.passthrough() {
            self.phase = Phase::Forwarded;
            return Step::Continue;
        }
        let is_post = host.request_header(":method").as_deref() == Some("POST");
        let api = host
            .request_header(":path")
            .and_then(|p| ApiKind::from_path(&p));
        if let (true, Some(api), false) = (policy.needs_body && is_post, api, end_of_stream) {
            if host
                .request_header("content-length")
                .and_then(|l| l.parse::<usize>().ok())
                .is_some_and(|len| len > policy.config.max_body_bytes)
            {
                return self.too_large(host, policy);
            }
            let attrs = Box::new(attributes(host, policy));
            self.phase = Phase::AwaitingBody {
                api,
                attrs,
                size: 0,
            };
            return await_body(host, policy);
        }
        let attrs = attributes(host, policy);
        if let Some(g) = &policy.config.global {
            let calls = policy.limiter.global_calls(&attrs, None);
            return self.start_global(host, g, calls);
        }
        let outcome = policy
            .limiter
            .check(host.counters(), &attrs, host.now_ms(), None);
        self.apply(host, policy, outcome)
    }

    /// A request body chunk arrived (`size`: bytes buffered so far).
    pub fn on_request_body(
        &mut self,
        host: &mut dyn Host,
        policy: &Policy,
        size: usize,
        end_of_stream: bool,
    ) -> Step {
        match &mut self.phase {
            // Headers are held until the service answers; going on here would let the
            // request through (and its body with it) before the verdict.
            Phase::AwaitingRls { .. } | Phase::Answered | Phase::Settled => Step::Pause,
            Phase::AwaitingBody { size: buffered, .. } => {
                *buffered = size;
                if size > policy.config.max_body_bytes {
                    return self.too_large(host, policy);
                }
                if !end_of_stream {
                    return Step::Pause;
                }
                self.decide_with_body(host, policy)
            }
            Phase::Headers | Phase::Forwarded => Step::Continue,
        }
    }

    /// The request trailers arrived: the body is complete.
    pub fn on_request_trailers(&mut self, host: &mut dyn Host, policy: &Policy) -> Step {
        match self.phase {
            Phase::AwaitingRls { .. } | Phase::Answered | Phase::Settled => Step::Pause,
            Phase::AwaitingBody { .. } => self.decide_with_body(host, policy),
            Phase::Headers | Phase::Forwarded => Step::Continue,
        }
    }

    /// The rate limit service answered call `token` with gRPC status `grpc_status` (non-zero
    /// for a failure or a timeout) and `body`. Resumes the request once every call answered
    /// within the limits.
    pub fn on_rls_answer(
        &mut self,
        host: &mut dyn Host,
        policy: &Policy,
        token: u32,
        grpc_status: u32,
        body: Option<Vec<u8>>,
    ) {
        let Phase::AwaitingRls { pending } = &mut self.phase else {
            return;
        };
        let Some(pos) = pending.iter().position(|(t, _)| *t == token) else {
            return;
        };
        let (_, index) = pending.swap_remove(pos);
        let Some(call) = self.calls.get(index) else {
            return;
        };
        let counts = if call.tokens {
            Counts::Tokens
        } else {
            Counts::Requests
        };
        match verdict(grpc_status, body, &call.descriptors, counts) {
            Verdict::Ok { status, headers } => {
                host.count(Event::Allowed);
                self.status.extend(status);
                self.add_service_headers(headers);
            }
            Verdict::OverLimit {
                name,
                retry_after_secs,
                status,
                headers,
            } => {
                // The over-limit call's headers come first: they describe the limit hit.
                let earlier = std::mem::replace(&mut self.service_headers, headers);
                self.add_service_headers(earlier);
                let limited = Outcome::Limited {
                    name,
                    retry_after_secs,
                    status,
                };
                self.apply(host, policy, limited);
                return;
            }
            Verdict::Failed => {
                let mode = policy
                    .config
                    .global
                    .as_ref()
                    .map_or(FailureMode::Deny, |g| g.failure_mode);
                if !self.unavailable(host, mode) {
                    return;
                }
            }
        }
        if matches!(&self.phase, Phase::AwaitingRls { pending } if pending.is_empty()) {
            self.phase = Phase::Forwarded;
            host.resume();
        }
    }

    /// The response headers arrived: add the rate-limit headers, and start following the
    /// body when token charges settle to its usage.
    pub fn on_response_headers(&mut self, host: &mut dyn Host, policy: &Policy) {
        let own = headers::render(policy.config.response_headers, &self.status);
        for (k, v) in own
            .iter()
            .chain(headers::without(&self.service_headers, &own))
        {
            host.set_response_header(k, Some(v));
        }
        if self.counts_tokens(policy) {
            let content_type = host.response_header("content-type").unwrap_or_default();
            let tracker = Tracker::for_content_type(&content_type, self.tokens.injected);
            if matches!(tracker, Tracker::Sse { strip: true, .. }) {
                // The body shrinks when the usage chunk is removed.
                host.set_response_header("content-length", None);
            }
            self.tracker = Some(tracker);
        }
    }

    /// A response body chunk of `size` bytes passed.
    pub fn on_response_body(&mut self, host: &mut dyn Host, size: usize, end_of_stream: bool) {
        let Some(tracker) = self.tracker.as_mut() else {
            return;
        };
        let chunk = host.response_body(size);
        if let Some(replacement) = tracker.feed(&chunk, end_of_stream) {
            if replacement != chunk {
                host.replace_response_body(size, &replacement);
            }
        }
    }

    /// The stream is over (complete, cut off, or reset): settle from what passed.
    pub fn on_log(&mut self, host: &mut dyn Host, policy: &Policy) {
        if matches!(self.phase, Phase::Settled) || !self.counts_tokens(policy) {
            return;
        }
        let status = host.response_code();
        let nothing = Settlement::Usage(Usage {
            prompt: 0,
            completion: 0,
        });
        let settlement = match self
            .tracker
            .as_ref()
            .map(|t| t.settlement(self.tokens.estimated_prompt))
        {
            Some(Settlement::Usage(u)) => Settlement::Usage(u),
            // An error answer without usage (upstream failure, bad request): nothing was
            // generated, so nothing is charged.
            Some(Settlement::KeepEstimate(_)) | None if status >= 400 || status == 0 => nothing,
            Some(keep) => keep,
            None => Settlement::KeepEstimate("response ended without a body".into()),
        };
        self.settle(host, policy, settlement);
    }

    /// Keeps the service's `headers` whose names are not kept yet.
    fn add_service_headers(&mut self, headers: Vec<(String, String)>) {
        for (k, v) in headers {
            if !self.service_headers.iter().any(|(n, _)| *n == k) {
                self.service_headers.push((k, v));
            }
        }
    }

    /// Whether this request carries token charges to settle (or usage to record).
    fn counts_tokens(&self, policy: &Policy) -> bool {
        self.charges.iter().any(|c| c.counts == Counts::Tokens)
            || self.calls.iter().any(|c| c.tokens)
            || (self.tokens.model.is_some() && policy.config.usage_stats.is_some())
    }

    /// Applies the limiter's outcome.
    fn apply(&mut self, host: &mut dyn Host, policy: &Policy, outcome: Outcome) -> Step {
        match outcome {
            Outcome::Allowed { charges, status } => {
                host.count(Event::Allowed);
                self.status = status;
                self.charges = charges;
                self.phase = Phase::Forwarded;
                Step::Continue
            }
            Outcome::Limited {
                name,
                retry_after_secs,
                status,
            } => {
                self.phase = Phase::Answered;
                host.count(Event::Limited);
                let retry = retry_after_secs.to_string();
                let mut own = vec![("retry-after".to_string(), retry.clone())];
                own.extend(headers::render(policy.config.response_headers, &status));
                let service = headers::without(&self.service_headers, &own);
                let extra: Vec<(&str, &str)> = own
                    .iter()
                    .chain(service)
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let message =
                    format!("Rate limit `{name}` exceeded; retry after {retry_after_secs} s.");
                host.send_error(
                    ErrorKind::RateLimited,
                    "rate_limit_exceeded",
                    &message,
                    &extra,
                );
                Step::Pause
            }
            Outcome::StoreFailed => {
                if self.unavailable(host, policy.config.failure_mode) {
                    self.phase = Phase::Forwarded;
                    Step::Continue
                } else {
                    Step::Pause
                }
            }
        }
    }

    /// Limits could not be checked: `true` when `mode` lets the request go on; otherwise
    /// answers 500 once.
    fn unavailable(&mut self, host: &mut dyn Host, mode: FailureMode) -> bool {
        host.count(Event::StoreFailed);
        match mode {
            FailureMode::Allow => true,
            FailureMode::Deny => {
                if !self.answered() {
                    self.phase = Phase::Answered;
                    host.send_error(
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

    fn too_large(&mut self, host: &mut dyn Host, policy: &Policy) -> Step {
        self.phase = Phase::Answered;
        host.send_too_large(policy.config.max_body_bytes);
        Step::Pause
    }

    /// Decides a request from its complete body (the phase is [`Phase::AwaitingBody`]).
    fn decide_with_body(&mut self, host: &mut dyn Host, policy: &Policy) -> Step {
        let Phase::AwaitingBody { api, attrs, size } =
            std::mem::replace(&mut self.phase, Phase::Forwarded)
        else {
            return Step::Continue;
        };
        let mut attrs = *attrs;
        let body = host.request_body(size);
        let parsed = match parse_request_capped(api, &body, MAX_SUMMARY_PROMPT_BYTES) {
            Ok(p) => p,
            Err(e) => {
                self.phase = Phase::Answered;
                host.send_bad_request(&e.to_openai_body());
                return Step::Pause;
            }
        };
        let summary = RequestSummary::of(&parsed, MAX_SUMMARY_PROMPT_BYTES);
        host.publish_summary(&summary.encode());
        let choices = parsed.n.unwrap_or(1).max(1);
        let estimate = TokenEstimate {
            prompt: parsed.estimated_prompt_tokens(),
            completion_cap: parsed
                .output_token_limit()
                .unwrap_or(policy.config.default_max_tokens)
                .saturating_mul(choices),
        };
        self.tokens.estimated_prompt = estimate.prompt;
        attrs.model = Some(parsed.model.clone());
        self.tokens.model = Some(parsed.model.clone());
        self.tokens.user = attrs.user_header_value();
        if let Some(g) = &policy.config.global {
            let calls = policy.limiter.global_calls(&attrs, Some(estimate));
            if calls.iter().any(|c| c.tokens) {
                if let Err(step) = self.inject_usage(host, policy, &parsed, &body) {
                    return step;
                }
            }
            return self.start_global(host, g, calls);
        }
        let outcome = policy
            .limiter
            .check(host.counters(), &attrs, host.now_ms(), Some(estimate));
        if self.apply(host, policy, outcome) == Step::Pause {
            return Step::Pause;
        }
        if self.counts_tokens(policy) {
            if let Err(step) = self.inject_usage(host, policy, &parsed, &body) {
                return step;
            }
        }
        Step::Continue
    }

    /// Sends the global-mode calls; the request waits for their answers.
    fn start_global(
        &mut self,
        host: &mut dyn Host,
        g: &GlobalConfig,
        calls: Vec<GlobalCall>,
    ) -> Step {
        let mut pending = Vec::new();
        for (i, call) in calls.iter().enumerate() {
            let hits = u32::try_from(call.hits).unwrap_or(u32::MAX);
            let message = rls::encode_request(&g.domain, &call.descriptors, hits);
            match host.dispatch_rls(&g.cluster, &message, g.timeout_ms) {
                Some(token) => pending.push((token, i)),
                None => {
                    if !self.unavailable(host, g.failure_mode) {
                        return Step::Pause;
                    }
                }
            }
        }
        self.calls = calls;
        if pending.is_empty() {
            self.phase = Phase::Forwarded;
            Step::Continue
        } else {
            self.phase = Phase::AwaitingRls { pending };
            Step::Pause
        }
    }

    /// Asks the model server for a usage chunk on a stream the client did not ask usage for.
    fn inject_usage(
        &mut self,
        host: &mut dyn Host,
        policy: &Policy,
        parsed: &ParsedRequest,
        body: &[u8],
    ) -> Result<(), Step> {
        match request_stream_usage(parsed, body) {
            Ok(UsageInjection::Injected(new_body)) => {
                host.replace_request_body(body.len(), &new_body);
                // In no-hold mode the headers are gone (Envoy refuses the call) and
                // `content-length` was dropped when they left.
                let hold = policy.config.allow_on_headers_stop_iteration;
                if hold.headers_editable_from_body()
                    && host.request_header("content-length").is_some()
                {
                    host.set_request_header("content-length", Some(&new_body.len().to_string()));
                }
                self.tokens.injected = true;
                host.count(Event::UsageInjected);
                Ok(())
            }
            Ok(UsageInjection::Unchanged) => Ok(()),
            Err(e) => {
                // Answered with whatever was charged kept as it is.
                self.phase = Phase::Settled;
                host.send_bad_request(&e.to_openai_body());
                Err(Step::Pause)
            }
        }
    }

    fn settle(&mut self, host: &mut dyn Host, policy: &Policy, settlement: Settlement) {
        self.phase = Phase::Settled;
        match settlement {
            Settlement::Usage(usage) => {
                Limiter::settle(host.counters(), &self.charges, usage);
                for call in self.calls.iter().filter(|c| c.tokens) {
                    let actual = call.actual(usage);
                    if actual > call.hits {
                        host.queue_rls_settlement(call.descriptors.clone(), actual - call.hits);
                    }
                }
                host.count(Event::Settled);
                if policy.config.usage_stats.is_some() {
                    host.record_usage(
                        self.tokens.user.as_deref(),
                        self.tokens.model.as_deref(),
                        usage,
                    );
                }
            }
            Settlement::KeepEstimate(why) => {
                host.count(Event::UsageMissing);
                host.warn(&format!(
                    "infergate-ratelimit: {why}; the estimate stays charged"
                ));
            }
        }
    }
}

/// The request's attributes, read from the host.
fn attributes(host: &dyn Host, policy: &Policy) -> RequestAttributes {
    RequestAttributes::new(
        host.request_headers(),
        host.identity().as_deref(),
        host.source_address(),
        &policy.config,
    )
}

/// The decision waits for the body: hold the headers where the host allows it, else let them
/// go on and decide from the body callback (no body byte is forwarded before the decision; a
/// 429 from there abandons the upstream request). The usage injection may grow the body after
/// the headers left, so no-hold mode drops `content-length` here.
fn await_body(host: &mut dyn Host, policy: &Policy) -> Step {
    let hold = policy.config.allow_on_headers_stop_iteration;
    if !hold.headers_editable_from_body() {
        host.set_request_header("content-length", None);
    }
    match hold.awaiting_body() {
        crate::header_hold::AtHeaders::Hold => Step::Pause,
        crate::header_hold::AtHeaders::Continue => Step::Continue,
    }
}
