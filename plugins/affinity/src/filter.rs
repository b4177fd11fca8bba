//! The per-request filter: strip routing headers, hold inference requests until the body is
//! complete, parse it, choose the endpoint, set the destination header.

use crate::Shared;
use infergate_core::affinity::affinity_key;
use infergate_core::endpoint::rendezvous;
use infergate_core::headers::{DESTINATION_ENDPOINT, DESTINATION_ENDPOINT_FALLBACKS};
use infergate_core::openai::{parse_request, ApiKind};
use infergate_core::openai_error::{self, ErrorKind};
use infergate_glue as glue;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub(crate) struct AffinityFilter {
    shared: Option<Rc<Shared>>,
    /// The API of a request whose body we are waiting for.
    api: Option<ApiKind>,
}

impl AffinityFilter {
    pub(crate) fn new(shared: Option<Rc<Shared>>) -> Self {
        Self { shared, api: None }
    }

    fn unavailable(&self) -> Action {
        glue::send_error(
            self,
            ErrorKind::Unavailable,
            "no_endpoint",
            "No model endpoint is available to serve this request.",
            &[],
        );
        Action::Pause
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
                self.set_http_request_header(DESTINATION_ENDPOINT, Some(&e.to_string()));
                glue::bump(shared.metrics.picks);
                Action::Continue
            }
            None => self.unavailable(),
        }
    }

    fn route_body(&self, shared: &Shared, api: ApiKind, body: &[u8]) -> Action {
        let parsed = match parse_request(api, body) {
            Ok(p) => p,
            Err(e) => {
                glue::bump(shared.metrics.parse_errors);
                let body = e.to_openai_body();
                self.send_http_response(
                    ErrorKind::BadRequest.status(),
                    vec![("content-type", "application/json")],
                    Some(&body),
                );
                return Action::Pause;
            }
        };
        let hashes = shared
            .config
            .hasher()
            .hashes(&parsed.model, &parsed.prompt.bytes);
        let key = affinity_key(
            &parsed.model,
            &parsed.prompt.bytes,
            &hashes,
            shared.config.affinity_blocks,
        );
        if let Some(h) = &shared.config.hint_header {
            self.set_http_request_header(h, Some(&format!("{key:016x}")));
        }
        let Some(endpoint) = rendezvous(key, &shared.endpoints) else {
            return self.unavailable();
        };
        self.set_http_request_header(DESTINATION_ENDPOINT, Some(&endpoint.to_string()));
        glue::bump(shared.metrics.picks);
        glue::bump(shared.metrics.prefix_picks);
        Action::Continue
    }
}

impl Context for AffinityFilter {}

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
                if let Some(len) = self
                    .get_http_request_header("content-length")
                    .and_then(|l| l.parse::<usize>().ok())
                {
                    if len > shared.config.max_body_bytes {
                        return self.too_large(&shared);
                    }
                }
                self.api = Some(api);
                // Hold the headers: the destination is set once the body is parsed.
                Action::Pause
            }
            Some(_) if is_post => {
                // An inference POST without a body: let the parser explain what is missing.
                self.route_body(&shared, api.unwrap_or(ApiKind::ChatCompletions), b"")
            }
            _ => self.route_round_robin(&shared),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
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
}

impl AffinityFilter {
    fn too_large(&mut self, shared: &Shared) -> Action {
        self.api = None;
        glue::bump(shared.metrics.too_large);
        let body = openai_error::body(
            ErrorKind::PayloadTooLarge,
            "request_too_large",
            &format!(
                "The request body exceeds the gateway's limit of {} bytes.",
                shared.config.max_body_bytes
            ),
        );
        self.send_http_response(
            ErrorKind::PayloadTooLarge.status(),
            vec![("content-type", "application/json")],
            Some(&body),
        );
        Action::Pause
    }
}
