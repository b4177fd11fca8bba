//! `infergate-ratelimit`: per-identity request and LLM-token rate counting inside Envoy.
//!
//! A thin proxy-wasm adapter over [`infergate_core::ratelimit`]: counters live in proxy-wasm
//! shared data (one store for every Envoy worker), updated with compare-and-swap; a request
//! over a limit gets a 429 with `Retry-After`, rate-limit headers and an OpenAI-style error;
//! allowed responses carry the remaining budget.

mod store;

use infergate_core::attributes::{Attribute, AttributeSource};
use infergate_core::openai_error::ErrorKind;
use infergate_core::ratelimit::config::FailureMode;
use infergate_core::ratelimit::decision::{Limiter, Outcome, RateStatus};
use infergate_core::ratelimit::{headers, RateLimitConfig};
use infergate_glue as glue;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;
use std::time::UNIX_EPOCH;
use store::SharedDataStore;

const PLUGIN: &str = "infergate-ratelimit";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(RateLimitRoot::default()) });
}}

#[derive(Clone, Copy, Default)]
struct Metrics {
    allowed: Option<u32>,
    limited: Option<u32>,
    store_failed: Option<u32>,
}

struct Shared {
    config: RateLimitConfig,
    limiter: Limiter,
    metrics: Metrics,
}

#[derive(Default)]
struct RateLimitRoot {
    shared: Option<Rc<Shared>>,
}

impl Context for RateLimitRoot {}

impl RootContext for RateLimitRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) =
            glue::load_config::<RateLimitConfig>(PLUGIN, self.get_plugin_configuration())
        else {
            return false;
        };
        let limiter = Limiter::new(config.compile());
        let metrics = Metrics {
            allowed: glue::counter("infergate.ratelimit.allowed"),
            limited: glue::counter("infergate.ratelimit.limited"),
            store_failed: glue::counter("infergate.ratelimit.store_failed"),
        };
        self.shared = Some(Rc::new(Shared {
            config,
            limiter,
            metrics,
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RateLimitFilter {
            shared: self.shared.clone(),
            status: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct RateLimitFilter {
    shared: Option<Rc<Shared>>,
    /// Status of the applied rates, for the response headers.
    status: Vec<RateStatus>,
}

/// Request attributes read from the host.
struct RequestAttributes {
    headers: Vec<(String, String)>,
    user_header: String,
    groups_header: String,
}

impl RequestAttributes {
    fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl AttributeSource for RequestAttributes {
    fn values(&self, attr: &Attribute) -> Vec<String> {
        match attr {
            Attribute::UserId => self.header(&self.user_header),
            Attribute::Groups => self
                .header(&self.groups_header)
                .iter()
                .flat_map(|v| v.split(','))
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty())
                .collect(),
            Attribute::Path => self
                .header(":path")
                .into_iter()
                .map(|p| p.split('?').next().unwrap_or_default().to_string())
                .collect(),
            Attribute::Method => self.header(":method"),
            Attribute::Host => self.header(":authority"),
            Attribute::Header(h) => self.header(h),
            // The body's model is not read in this build; limits keyed on it do not apply.
            Attribute::Model => Vec::new(),
        }
    }
}

impl RateLimitFilter {
    fn now_ms(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

impl Context for RateLimitFilter {}

impl HttpContext for RateLimitFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        if shared.limiter.limits().is_empty() {
            return Action::Continue;
        }
        let attrs = RequestAttributes {
            headers: self.get_http_request_headers(),
            user_header: shared.config.identity_headers.userid.clone(),
            groups_header: shared.config.identity_headers.groups.clone(),
        };
        let now = self.now_ms();
        match shared.limiter.check(&SharedDataStore, &attrs, now, None) {
            Outcome::Allowed { status, .. } => {
                glue::bump(shared.metrics.allowed);
                self.status = status;
                Action::Continue
            }
            Outcome::Limited {
                name,
                retry_after_secs,
                status,
            } => {
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
                Action::Pause
            }
            Outcome::StoreFailed => {
                glue::bump(shared.metrics.store_failed);
                match shared.config.failure_mode {
                    FailureMode::Allow => Action::Continue,
                    FailureMode::Deny => {
                        glue::send_error(
                            self,
                            ErrorKind::Internal,
                            "ratelimit_unavailable",
                            "Rate limits could not be checked.",
                            &[],
                        );
                        Action::Pause
                    }
                }
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(shared) = &self.shared {
            for (k, v) in headers::render(shared.config.response_headers, &self.status) {
                self.set_http_response_header(&k, Some(&v));
            }
        }
        Action::Continue
    }
}
