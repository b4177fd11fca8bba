//! The affinity plugin's per-request flow as a state machine, driven through a narrow
//! [`Host`] trait so whole requests run in unit tests without Envoy.
//!
//! The phases ([`Phase`]) follow one request: its headers arrive (client-sent destination
//! headers are removed); an inference `POST` waits for its complete body; with host-shim
//! configured the flow waits for the pick call's answer; then the request is forwarded with
//! exactly one destination (host-shim's pick, rendezvous hashing of the prompt prefix, or
//! round robin for requests without a prompt), or answered locally (503, 429, 413, 400). When
//! the response starts, the endpoint that served is reported; when the stream ends, its
//! completion — or, when it ends while the pick is still pending (the client went away while
//! host-shim queued it), a cancel of that pick, named by the pick id the call carried.
//!
//! The proxy-wasm adapter (`plugins/affinity`) only feeds its callbacks into a [`Flow`] and
//! carries out the [`Host`] calls (declared in [`super::host`]); every decision is made here.

pub use super::host::{Event, Host, ServedReport, Step};
use super::{affinity_key, AffinityConfig};
use crate::endpoint::{parse_list, rendezvous, Endpoint};
use crate::headers::{DESTINATION_ENDPOINT, DESTINATION_ENDPOINT_FALLBACKS};
use crate::openai::{parse_request_capped, ApiKind, RequestSummary};
use crate::openai_error::ErrorKind;
use crate::pick_wire::{encode_pick_with_id, PickQuery};
use std::cell::Cell;
use std::num::NonZeroUsize;

/// The configuration every request of a plugin instance shares.
pub struct Policy {
    /// The configuration.
    pub config: AffinityConfig,
    /// The configured endpoints, parsed.
    pub endpoints: Vec<Endpoint>,
    /// The next round-robin index.
    next: Cell<usize>,
}

impl Policy {
    /// Prepares a validated configuration.
    pub fn new(config: AffinityConfig) -> Self {
        Self {
            endpoints: config.parsed_endpoints(),
            config,
            next: Cell::new(0),
        }
    }

    fn report_served(&self) -> bool {
        self.config
            .host_shim
            .as_ref()
            .is_some_and(|s| s.report_served)
    }
}

/// Where a request stands.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Before the request headers.
    #[default]
    Headers,
    /// Headers held until the complete body arrives.
    AwaitingBody {
        /// The API the path names.
        api: ApiKind,
        /// Bytes buffered so far.
        size: usize,
    },
    /// Waiting for host-shim's pick.
    AwaitingPick {
        /// The prefix-affinity key, for the hashing fallback.
        key: u64,
        /// When the call was sent (µs since the epoch).
        started_us: u64,
        /// The id the pick call carried, for a cancel.
        pick_id: u64,
    },
    /// Sent upstream with its destination.
    Forwarded,
    /// Answered locally.
    Answered,
    /// The stream ended and its completion was reported.
    Completed,
}

/// One request's flow.
#[derive(Default)]
pub struct Flow {
    phase: Phase,
    /// Prompt block hashes (host-shim mode), for the reports.
    hashes: Vec<u64>,
    /// The endpoint host-shim picked, then the one that served: where the completion report
    /// goes.
    endpoint: Option<String>,
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

    /// The request headers arrived: strip client-sent routing headers, then route at once
    /// (no prompt), or hold the headers for the body.
    pub fn on_request_headers(
        &mut self,
        host: &mut dyn Host,
        policy: &Policy,
        end_of_stream: bool,
    ) -> Step {
        let spoofed = host.request_header(DESTINATION_ENDPOINT).is_some()
            || host
                .request_header(DESTINATION_ENDPOINT_FALLBACKS)
                .is_some();
        host.set_request_header(DESTINATION_ENDPOINT, None);
        host.set_request_header(DESTINATION_ENDPOINT_FALLBACKS, None);
        if let Some(h) = &policy.config.hint_header {
            host.set_request_header(h, None);
        }
        if spoofed {
            host.count(Event::Spoofed);
        }
        let is_post = host.request_header(":method").as_deref() == Some("POST");
        let api = host
            .request_header(":path")
            .and_then(|p| ApiKind::from_path(&p));
        match api {
            Some(api) if is_post && !end_of_stream => {
                if host
                    .request_header("content-length")
                    .and_then(|l| l.parse::<usize>().ok())
                    .is_some_and(|len| len > policy.config.max_body_bytes)
                {
                    return self.too_large(host, policy);
                }
                // Hold the headers: the destination is set once the body is parsed.
                self.phase = Phase::AwaitingBody { api, size: 0 };
                Step::Pause
            }
            // An inference POST without a body: let the parser explain what is missing.
            Some(api) if is_post => self.route_body(host, policy, api, b""),
            _ => self.route_round_robin(host, policy),
        }
    }

    /// A request body chunk arrived (`size`: bytes buffered so far).
    pub fn on_request_body(
        &mut self,
        host: &mut dyn Host,
        policy: &Policy,
        size: usize,
        end_of_stream: bool,
    ) -> Step {
        let Phase::AwaitingBody {
            api,
            size: buffered,
        } = &mut self.phase
        else {
            return Step::Continue;
        };
        *buffered = size;
        let api = *api;
        if size > policy.config.max_body_bytes {
            return self.too_large(host, policy);
        }
        if !end_of_stream {
            // Envoy keeps buffering until the end of the body.
            return Step::Pause;
        }
        let body = host.request_body(size);
        self.route_body(host, policy, api, &body)
    }

    /// The request trailers arrived: the body is complete; route now unless a pick is still
    /// in flight.
    pub fn on_request_trailers(&mut self, host: &mut dyn Host, policy: &Policy) -> Step {
        match self.phase {
            Phase::AwaitingPick { .. } => Step::Pause,
            Phase::AwaitingBody { api, size } => {
                let body = host.request_body(size);
                self.route_body(host, policy, api, &body)
            }
            _ => Step::Continue,
        }
    }

    /// host-shim answered the pick call with `headers` (`:status` included); Envoy's own
    /// answers to a failed or timed-out call come here too. Resumes the request, or answers it.
    pub fn on_pick_answer(
        &mut self,
        host: &mut dyn Host,
        policy: &Policy,
        headers: &[(String, String)],
    ) {
        let Phase::AwaitingPick {
            key, started_us, ..
        } = self.phase
        else {
            return;
        };
        self.phase = Phase::Forwarded;
        if let Some(elapsed) = host.now_us().checked_sub(started_us) {
            host.record_pick_latency(elapsed);
        }
        if self.apply_pick(host, headers).is_none()
            && self.fallback(host, policy, key) == Step::Continue
        {
            host.resume();
        }
    }

    /// The response headers arrived: report the endpoint that serves the request.
    pub fn on_response_headers(&mut self, host: &mut dyn Host, policy: &Policy) {
        if !policy.report_served() || self.hashes.is_empty() {
            return;
        }
        if let Some(endpoint) = host.upstream_address() {
            host.queue_report(ServedReport {
                endpoint: endpoint.clone(),
                hashes: self.hashes.clone(),
                completed: false,
            });
            self.endpoint = Some(endpoint);
        }
    }

    /// The stream is over (completed, failed or cancelled): host-shim stops counting it in
    /// flight at the endpoint that served it, else at the one it picked; a pick still pending
    /// (Envoy cannot cancel the call) is cancelled by its id so it leaves host-shim's queue.
    pub fn on_log(&mut self, host: &mut dyn Host, policy: &Policy) {
        if let Phase::AwaitingPick { pick_id, .. } = self.phase {
            self.phase = Phase::Completed;
            self.hashes.clear();
            host.queue_cancel(pick_id);
            return;
        }
        if !policy.report_served() {
            return;
        }
        if let Some(endpoint) = self.endpoint.take() {
            self.phase = Phase::Completed;
            host.queue_report(ServedReport {
                endpoint,
                hashes: std::mem::take(&mut self.hashes),
                completed: true,
            });
        }
    }

    /// Answers 503: no endpoint can serve the request.
    fn unavailable(&mut self, host: &mut dyn Host) -> Step {
        self.unavailable_retry_after(host, "1")
    }

    /// Answers 503 with `Retry-After: retry_after`.
    fn unavailable_retry_after(&mut self, host: &mut dyn Host, retry_after: &str) -> Step {
        self.phase = Phase::Answered;
        host.send_error(
            ErrorKind::Unavailable,
            "no_endpoint",
            "No model endpoint is available to serve this request.",
            &[("retry-after", retry_after)],
        );
        Step::Pause
    }

    fn too_large(&mut self, host: &mut dyn Host, policy: &Policy) -> Step {
        self.phase = Phase::Answered;
        host.count(Event::TooLarge);
        host.send_too_large(policy.config.max_body_bytes);
        Step::Pause
    }

    fn set_destination(
        &mut self,
        host: &mut dyn Host,
        endpoint: &Endpoint,
        fallbacks: &[Endpoint],
    ) {
        host.set_request_header(DESTINATION_ENDPOINT, Some(&endpoint.to_string()));
        if !fallbacks.is_empty() {
            let list: Vec<String> = fallbacks.iter().map(Endpoint::to_string).collect();
            host.set_request_header(DESTINATION_ENDPOINT_FALLBACKS, Some(&list.join(",")));
        }
        host.count(Event::Pick);
        self.phase = Phase::Forwarded;
    }

    /// Round-robin choice for requests without a prompt (model listing and the like).
    fn route_round_robin(&mut self, host: &mut dyn Host, policy: &Policy) -> Step {
        let Some(n) = NonZeroUsize::new(policy.endpoints.len()) else {
            return self.unavailable(host);
        };
        let i = policy.next.get() % n;
        policy.next.set(i.wrapping_add(1));
        match policy.endpoints.get(i) {
            Some(e) => {
                self.set_destination(host, e, &[]);
                Step::Continue
            }
            None => self.unavailable(host),
        }
    }

    /// The endpoints to hash over: the list last fetched from host-shim, else the configured
    /// ones.
    fn fallback_endpoints(host: &dyn Host, policy: &Policy) -> Vec<Endpoint> {
        let fetched: Vec<Endpoint> = policy
            .config
            .host_shim
            .as_ref()
            .and_then(|s| host.fetched_endpoints(&s.cluster))
            .map(|b| parse_list(&b))
            .unwrap_or_default();
        if fetched.is_empty() {
            policy.endpoints.clone()
        } else {
            fetched
        }
    }

    /// Consistent hashing of the leading prefix blocks over the known endpoints.
    fn route_by_hash(&mut self, host: &mut dyn Host, policy: &Policy, key: u64) -> Step {
        match rendezvous(key, &Self::fallback_endpoints(host, policy)) {
            Some(e) => {
                self.set_destination(host, &e, &[]);
                host.count(Event::PrefixPick);
                Step::Continue
            }
            None => self.unavailable(host),
        }
    }

    /// host-shim could not be asked (down, slow, or refused the call).
    fn fallback(&mut self, host: &mut dyn Host, policy: &Policy, key: u64) -> Step {
        host.count(Event::Fallback);
        if policy
            .config
            .host_shim
            .as_ref()
            .is_some_and(|s| s.fail_closed)
        {
            return self.unavailable(host);
        }
        self.route_by_hash(host, policy, key)
    }

    /// The request's summary: the one the rate-limit filter parsed when it covers the hashing
    /// window, else our own parse; `Err` is the 400 already sent.
    fn summarize(
        &mut self,
        host: &mut dyn Host,
        policy: &Policy,
        api: ApiKind,
        body: &[u8],
    ) -> Result<RequestSummary, Step> {
        let window = policy.config.hasher().window_bytes();
        let handed = host
            .handed_summary()
            .and_then(|b| RequestSummary::decode(&b))
            .filter(|s| s.covers(window));
        if let Some(summary) = handed {
            host.count(Event::ParseReused);
            return Ok(summary);
        }
        match parse_request_capped(api, body, window) {
            Ok(p) => Ok(RequestSummary::from(p)),
            Err(e) => {
                host.count(Event::ParseError);
                self.phase = Phase::Answered;
                host.send_bad_request(&e.to_openai_body());
                Err(Step::Pause)
            }
        }
    }

    /// Routes a request from its complete body.
    fn route_body(
        &mut self,
        host: &mut dyn Host,
        policy: &Policy,
        api: ApiKind,
        body: &[u8],
    ) -> Step {
        let parsed = match self.summarize(host, policy, api, body) {
            Ok(s) => s,
            Err(step) => return step,
        };
        let hasher = policy.config.hasher();
        let hashes = hasher.hashes(&parsed.model, &parsed.prompt_prefix);
        let key = affinity_key(
            &parsed.model,
            &parsed.prompt_prefix,
            &hashes,
            policy.config.affinity_blocks,
        );
        if let Some(h) = &policy.config.hint_header {
            host.set_request_header(h, Some(&format!("{key:016x}")));
        }
        let Some(shim) = &policy.config.host_shim else {
            return self.route_by_hash(host, policy, key);
        };
        let pick_id = host.new_pick_id();
        let query = encode_pick_with_id(
            &PickQuery {
                model: &parsed.model,
                session: parsed.session_key.as_deref(),
                subset: &[],
                prompt_tokens: parsed.estimated_prompt_tokens,
                block_size: hasher.block_size,
                hashes: &hashes,
                sheddable: false,
            },
            Some(pick_id),
        );
        self.hashes = hashes;
        match host.dispatch_pick(&shim.cluster, &shim.authority, &query, shim.timeout_ms) {
            Some(_) => {
                self.phase = Phase::AwaitingPick {
                    key,
                    started_us: host.now_us(),
                    pick_id,
                };
                Step::Pause
            }
            None => self.fallback(host, policy, key),
        }
    }

    /// Applies host-shim's answer; `None` when it did not answer usefully.
    fn apply_pick(&mut self, host: &mut dyn Host, headers: &[(String, String)]) -> Option<()> {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        // host-shim's own refusals are JSON; a 503 Envoy makes up when host-shim is down
        // (connect failure, reset) is plain text and means "ask someone else".
        let from_shim = header("content-type").is_some_and(|c| c.starts_with("application/json"));
        // host-shim's refusals say when to retry (its flow control's `retryAfterSeconds`):
        // passed on when it is a plain number of seconds, else 1.
        let retry_after = header("retry-after")
            .filter(|v| (1..=6).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or_else(|| "1".to_string());
        match header(":status").as_deref() {
            Some("200") => {
                let endpoint: Endpoint = header(DESTINATION_ENDPOINT)?.parse().ok()?;
                let fallbacks = parse_list(
                    header(DESTINATION_ENDPOINT_FALLBACKS)
                        .unwrap_or_default()
                        .as_bytes(),
                );
                self.set_destination(host, &endpoint, &fallbacks);
                self.endpoint = Some(endpoint.to_string());
                host.count(Event::PrefixPick);
                host.count(Event::ShimPick);
                host.resume();
                Some(())
            }
            Some("503") if from_shim => {
                self.unavailable_retry_after(host, &retry_after);
                Some(())
            }
            Some("429") if from_shim => {
                self.phase = Phase::Answered;
                host.send_error(
                    ErrorKind::RateLimited,
                    "overloaded",
                    "Every model endpoint is saturated; retry shortly.",
                    &[("retry-after", &retry_after)],
                );
                Some(())
            }
            _ => None,
        }
    }
}
