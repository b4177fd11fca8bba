//! `infergate-auth`: token authentication inside Envoy.
//!
//! A thin proxy-wasm adapter: it gathers the request facts, asks
//! [`infergate_core::auth::Authenticator`] for a decision, and applies it — identity headers on
//! success (client-sent copies removed first), an OpenAI-style 401/403 otherwise.

use infergate_core::auth::{AuthConfig, Authenticator, Decision, RequestView};
use infergate_glue as glue;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;

const PLUGIN: &str = "infergate-auth";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(AuthRoot::default()) });
}}

#[derive(Clone, Copy, Default)]
struct Metrics {
    allowed: Option<u32>,
    denied_missing: Option<u32>,
    denied_invalid: Option<u32>,
}

#[derive(Default)]
struct AuthRoot {
    auth: Option<Rc<Authenticator>>,
    metrics: Metrics,
}

impl Context for AuthRoot {}

impl RootContext for AuthRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = glue::load_config::<AuthConfig>(PLUGIN, self.get_plugin_configuration())
        else {
            return false;
        };
        self.auth = Some(Rc::new(Authenticator::new(config)));
        self.metrics = Metrics {
            allowed: glue::counter("infergate.auth.allowed"),
            denied_missing: glue::counter("infergate.auth.denied.missing_credential"),
            denied_invalid: glue::counter("infergate.auth.denied.invalid_credential"),
        };
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuthFilter {
            auth: self.auth.clone(),
            metrics: self.metrics,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AuthFilter {
    auth: Option<Rc<Authenticator>>,
    metrics: Metrics,
}

/// Request facts read once from the host.
struct Facts {
    headers: Vec<(String, String)>,
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
}

impl Context for AuthFilter {}

impl HttpContext for AuthFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(auth) = self.auth.clone() else {
            // on_configure failed: Envoy does not create the filter then, but never fail open.
            glue::send_error(
                self,
                infergate_core::openai_error::ErrorKind::Internal,
                "gateway_misconfigured",
                "The gateway's authentication filter is not configured.",
                &[],
            );
            return Action::Pause;
        };
        // Identity headers are the gateway's to set: drop whatever the client sent.
        self.set_http_request_header(&auth.identity_headers.userid, None);
        self.set_http_request_header(&auth.identity_headers.groups, None);
        let facts = Facts {
            headers: self.get_http_request_headers(),
        };
        match auth.authenticate(&facts) {
            Decision::Allow { identity, .. } => {
                glue::bump(self.metrics.allowed);
                for h in &auth.credential_headers {
                    self.set_http_request_header(h, None);
                }
                self.set_http_request_header(&auth.identity_headers.userid, Some(&identity.userid));
                if !identity.groups.is_empty() {
                    self.set_http_request_header(
                        &auth.identity_headers.groups,
                        Some(&identity.groups.join(",")),
                    );
                }
                Action::Continue
            }
            Decision::Deny(denial) => {
                glue::bump(match denial.reason {
                    "missing_credential" => self.metrics.denied_missing,
                    _ => self.metrics.denied_invalid,
                });
                let mut extra = Vec::new();
                if let Some(w) = denial.www_authenticate.as_deref() {
                    extra.push(("www-authenticate", w));
                }
                glue::send_error(self, denial.kind, denial.code, denial.message, &extra);
                Action::Pause
            }
        }
    }
}
