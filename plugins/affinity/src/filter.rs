//! The per-request filter: strip routing headers, hold inference requests until the body is
//! complete, parse it, ask host-shim (or hash), set the destination header, and report the
//! endpoint that served.

use crate::{ServedReport, Shared};
use infergate_core::affinity::affinity_key;
use infergate_core::endpoint::{parse_list, rendezvous, Endpoint};
use infergate_core::headers::{DESTINATION_ENDPOINT, DESTINATION_ENDPOINT_FALLBACKS};
use infergate_core::openai::{parse_request_capped, ApiKind, RequestSummary, SUMMARY_PROPERTY};
use infergate_core::openai_error::ErrorKind;
use infergate_core::pick_wire::{encode_pick, PickQuery};
use infergate_glue as glue;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

/// A pick call in flight.
struct PendingPick {
    key: u64,
    started: SystemTime,
}

pub(crate) struct AffinityFilter {
    shared: Option<Rc<Shared>>,
    /// The API of a request whose body we are waiting for.
    api: Option<ApiKind>,
    pending: Option<PendingPick>,
    /// Prompt block hashes, for the served report.
    hashes: Vec<u64>,
    /// Bytes of request body buffered so far.
    body_size: usize,
    /// The endpoint host-shim picked, then the one that served: where the completion report
    /// goes.
    endpoint: Option<String>,
}

impl AffinityFilter {
    pub(crate) fn new(shared: Option<Rc<Shared>>) -> Self {
        Self {
            shared,
            api: None,
            pending: None,
            hashes: Vec::new(),
            body_size: 0,
            endpoint: None,
        }
    }

    fn unavailable(&self) -> Action {
        glue::send_error(
            self,
            ErrorKind::Unavailable,
            "no_endpoint",
            "No model endpoint is available to serve this request.",
            &[("retry-after", "1")],
        );
        Action::Pause
    }

    fn set_destination(&self, shared: &Shared, endpoint: &Endpoint, fallbacks: &[Endpoint]) {
        self.set_http_request_header(DESTINATION_ENDPOINT, Some(&endpoint.to_string()));
        if !fallbacks.is_empty() {
            let list: Vec<String> = fallbacks.iter().map(Endpoint::to_string).collect();
            self.set_http_request_header(DESTINATION_ENDPOINT_FALLBACKS, Some(&list.join(",")));
        }
        glue::bump(shared.metrics.picks);
    }

    /// Round-robin choice for requests without a prompt (model listing and the like).
    fn route_round_robin(&self, shared: &Shared) -> Action {
        let Some(n) = std::num::NonZeroUsize::new(shared.endpoints.len()) else {
            return self.unavailable();
        };
        let i = shared.next.get() % n;
        shared.next.set(i.wrapping_add(1));
        match shared.endpoints.get(i) {
            Some(e) => {
                self.set_destination(shared, e, &[]);
                Action::Continue
            }
            None => self.unavailable(),
        }
    }

    /// The endpoints to hash over: the list last fetched from host-shim (in shared data, so
    /// every worker has it), else the configured ones.
    fn fallback_endpoints(&self, shared: &Shared) -> Vec<Endpoint> {
        let fetched: Vec<Endpoint> = shared
            .config
            .host_shim
            .as_ref()
            .and_then(|s| self.get_shared_data(&crate::endpoints_key(&s.cluster)).0)
            .map(|b| parse_list(&b))
            .unwrap_or_default();
        if fetched.is_empty() {
            shared.endpoints.clone()
        } else {
            fetched
        }
    }

    /// Consistent hashing of the leading prefix blocks over the known endpoints.
    fn route_by_hash(&self, shared: &Shared, key: u64) -> Action {
        match rendezvous(key, &self.fallback_endpoints(shared)) {
            Some(e) => {
                self.set_destination(shared, &e, &[]);
                glue::bump(shared.metrics.prefix_picks);
                Action::Continue
            }
            None => self.unavailable(),
        }
    }

    /// The request's summary: the one the rate-limit filter parsed (filter state) when it
    /// covers the hashing window, else our own parse; `Err` is the 400 already sent.
    fn summarize(
        &mut self,
        shared: &Shared,
        api: ApiKind,
        body: &[u8],
    ) -> Result<RequestSummary, Action> {
        let window = shared.config.hasher().window_bytes();
        let handed = self
            .get_property(vec![SUMMARY_PROPERTY])
            .and_then(|b| RequestSummary::decode(&b))
            .filter(|s| s.covers(window));
        if let Some(summary) = handed {
            glue::bump(shared.metrics.parses_reused);
            return Ok(summary);
        }
        match parse_request_capped(api, body, window) {
            Ok(p) => Ok(RequestSummary::from(p)),
            Err(e) => {
                glue::bump(shared.metrics.parse_errors);
                glue::send_bad_request(self, &e.to_openai_body());
                Err(Action::Pause)
            }
        }
    }

    fn route_body(&mut self, shared: &Shared, api: ApiKind, body: &[u8]) -> Action {
        let parsed = match self.summarize(shared, api, body) {
            Ok(s) => s,
            Err(action) => return action,
        };
        let hasher = shared.config.hasher();
        let hashes = hasher.hashes(&parsed.model, &parsed.prompt_prefix);
        let key = affinity_key(
            &parsed.model,
            &parsed.prompt_prefix,
            &hashes,
            shared.config.affinity_blocks,
        );
        if let Some(h) = &shared.config.hint_header {
            self.set_http_request_header(h, Some(&format!("{key:016x}")));
        }
        let Some(shim) = &shared.config.host_shim else {
            return self.route_by_hash(shared, key);
        };
        let query = encode_pick(&PickQuery {
            model: &parsed.model,
            session: parsed.session_key.as_deref(),
            subset: &[],
            prompt_tokens: parsed.estimated_prompt_tokens,
            block_size: hasher.block_size,
            hashes: &hashes,
            sheddable: false,
        });
        self.hashes = hashes;
        let call = self.dispatch_http_call(
            &shim.cluster,
            vec![
                (":method", "POST"),
                (":path", "/v1/pick"),
                (":authority", &shim.authority),
                ("content-type", "application/octet-stream"),
            ],
            Some(&query),
            vec![],
            Duration::from_millis(shim.timeout_ms),
        );
        match call {
            Ok(_) => {
                self.pending = Some(PendingPick {
                    key,
                    started: self.get_current_time(),
                });
                Action::Pause
            }
            Err(_) => self.fallback(shared, key),
        }
    }

    /// host-shim could not be asked (down, slow, or refused the call).
    fn fallback(&self, shared: &Shared, key: u64) -> Action {
        glue::bump(shared.metrics.fallbacks);
        if shared
            .config
            .host_shim
            .as_ref()
            .is_some_and(|s| s.fail_closed)
        {
            return self.unavailable();
        }
        self.route_by_hash(shared, key)
    }

    fn too_large(&mut self, shared: &Shared) -> Action {
        self.api = None;
        glue::bump(shared.metrics.too_large);
        glue::send_too_large(self, shared.config.max_body_bytes);
        Action::Pause
    }

    /// Applies host-shim's answer; `None` when it did not answer usefully.
    fn apply_pick(&mut self, shared: &Shared) -> Option<()> {
        let headers = self.get_http_call_response_headers();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        // host-shim's own refusals are JSON; a 503 Envoy makes up when host-shim is down
        // (connect failure, reset) is plain text and means "ask someone else".
        let from_shim = header("content-type").is_some_and(|c| c.starts_with("application/json"));
        match header(":status").as_deref() {
            Some("200") => {
                let endpoint: Endpoint = header(DESTINATION_ENDPOINT)?.parse().ok()?;
                let fallbacks = parse_list(
                    header(DESTINATION_ENDPOINT_FALLBACKS)
                        .unwrap_or_default()
                        .as_bytes(),
                );
                self.set_destination(shared, &endpoint, &fallbacks);
                self.endpoint = Some(endpoint.to_string());
                glue::bump(shared.metrics.prefix_picks);
                glue::bump(shared.metrics.shim_picks);
                self.resume_http_request();
                Some(())
            }
            Some("503") if from_shim => {
                self.unavailable();
                Some(())
            }
            Some("429") if from_shim => {
                glue::send_error(
                    self,
                    ErrorKind::RateLimited,
                    "overloaded",
                    "Every model endpoint is saturated; retry shortly.",
                    &[("retry-after", "1")],
                );
                Some(())
            }
            _ => None,
        }
    }
}

impl Context for AffinityFilter {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        _num_headers: usize,
        _body_size: usize,
        _num_trailers: usize,
    ) {
        let (Some(shared), Some(pending)) = (self.shared.clone(), self.pending.take()) else {
            return;
        };
        if let Ok(elapsed) = self.get_current_time().duration_since(pending.started) {
            glue::record(
                shared.metrics.pick_latency_us,
                u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            );
        }
        if self.apply_pick(&shared).is_none() {
            if let Action::Continue = self.fallback(&shared, pending.key) {
                self.resume_http_request();
            }
        }
    }
}

impl HttpContext for AffinityFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return self.unavailable();
        };
        let spoofed = self.get_http_request_header(DESTINATION_ENDPOINT).is_some()
            || self
                .get_http_request_header(DESTINATION_ENDPOINT_FALLBACKS)
                .is_some();
        self.set_http_request_header(DESTINATION_ENDPOINT, None);
        self.set_http_request_header(DESTINATION_ENDPOINT_FALLBACKS, None);
        if let Some(h) = &shared.config.hint_header {
            self.set_http_request_header(h, None);
        }
        if spoofed {
            glue::bump(shared.metrics.spoofed);
        }
        let is_post = self.get_http_request_header(":method").as_deref() == Some("POST");
        let api = self
            .get_http_request_header(":path")
            .and_then(|p| ApiKind::from_path(&p));
        match api {
            Some(api) if is_post && !end_of_stream => {
                if self
                    .get_http_request_header("content-length")
                    .and_then(|l| l.parse::<usize>().ok())
                    .is_some_and(|len| len > shared.config.max_body_bytes)
                {
                    return self.too_large(&shared);
                }
                self.api = Some(api);
                // Hold the headers: the destination is set once the body is parsed.
                Action::Pause
            }
            // An inference POST without a body: let the parser explain what is missing.
            Some(api) if is_post => self.route_body(&shared, api, b""),
            _ => self.route_round_robin(&shared),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body_size = body_size;
        let (Some(shared), Some(api)) = (self.shared.clone(), self.api) else {
            return Action::Continue;
        };
        if body_size > shared.config.max_body_bytes {
            return self.too_large(&shared);
        }
        if !end_of_stream {
            // Envoy keeps buffering until the end of the body.
            return Action::Pause;
        }
        self.api = None;
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        self.route_body(&shared, api, &body)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the body: route now unless a pick is still in flight.
        if self.pending.is_some() {
            return Action::Pause;
        }
        if let (Some(shared), Some(api)) = (self.shared.clone(), self.api.take()) {
            let body = self
                .get_http_request_body(0, self.body_size)
                .unwrap_or_default();
            return self.route_body(&shared, api, &body);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        let report = shared
            .config
            .host_shim
            .as_ref()
            .is_some_and(|s| s.report_served);
        if report && !self.hashes.is_empty() {
            let served = self
                .get_property(vec!["upstream", "address"])
                .and_then(|b| String::from_utf8(b).ok());
            if let Some(endpoint) = served {
                shared.queue_report(ServedReport {
                    endpoint: endpoint.clone(),
                    hashes: self.hashes.clone(),
                    completed: false,
                });
                self.endpoint = Some(endpoint);
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        // The stream is over (completed, failed or cancelled): host-shim stops counting it in
        // flight at the endpoint that served it, else at the one it picked.
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let report = shared
            .config
            .host_shim
            .as_ref()
            .is_some_and(|s| s.report_served);
        if let (true, Some(endpoint)) = (report, self.endpoint.take()) {
            shared.queue_report(ServedReport {
                endpoint,
                hashes: std::mem::take(&mut self.hashes),
                completed: true,
            });
        }
    }
}
