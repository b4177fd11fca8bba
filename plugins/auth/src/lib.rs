//! `infergate-auth`: token authentication and authorization inside Envoy.
//!
//! A thin proxy-wasm adapter. Each request's flow is
//! [`infergate_core::auth::flow::AuthFlow`]: this crate feeds it Envoy's callbacks and carries
//! out what it asks through [`request::WasmHost`] (headers, body, callouts to Kubernetes TokenReview /
//! SubjectAccessReview through Envoy clusters, shared data, local answers, resuming). The root
//! context keeps JWKS documents fetched and fresh (on its timer, in shared data; see [`jwks`]).

mod jwks;
mod metrics;
mod request;

use infergate_core::auth::flow::{AuthFlow, Deadlines};
use infergate_core::auth::{AuthConfig, Authenticator};
use infergate_glue::{self as glue, host};
use jwks::{JwksCache, JwksFetcher};
use metrics::Metrics;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use request::AuthRequest;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

const PLUGIN: &str = "infergate-auth";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(AuthRoot::default()) });
}}

/// What every HTTP context of this VM shares.
pub(crate) struct Shared {
    pub auth: Authenticator,
    pub metrics: Metrics,
    pub jwks: RefCell<JwksCache>,
    /// Requests whose answer waits for the rest of the body, by deadline.
    pub draining: RefCell<Deadlines<RefCell<AuthFlow>>>,
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
        let (status, body) = host::call_response(size);
        match self
            .fetcher
            .on_response(token, status, &body, host::now_secs())
        {
            Some(Ok(())) => glue::bump(shared.metrics.jwks_fetched),
            Some(Err(_)) => glue::bump(shared.metrics.jwks_fetch_failed),
            None => {}
        }
    }
}

impl RootContext for AuthRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = glue::load_config::<AuthConfig>(PLUGIN) else {
            return false;
        };
        let auth = Authenticator::new(config);
        self.fetcher = JwksFetcher::new(auth.jwks_fetches.clone());
        if auth.hold.allowed() {
            host::set_tick_period(Duration::from_millis(500));
        } else if !auth.jwks_fetches.is_empty() {
            host::set_tick_period(Duration::from_secs(1));
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
            request::answer_overdue(shared);
        }
        let now = host::now_secs();
        for (cluster, headers, timeout, index) in self.fetcher.due(now) {
            let hs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match host::http_call(&cluster, hs, None, timeout) {
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
        Some(Box::new(AuthRequest::filter(
            self.shared.clone(),
            context_id,
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
