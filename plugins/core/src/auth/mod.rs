//! Token authentication and authorization: which methods to try, in which order, and the
//! decision.
//!
//! Configured like Kuadrant AuthPolicy's `rules.authentication`, but as an ordered list: the
//! first method that accepts the request's credential wins (AuthPolicy's `priority`, made
//! explicit). The plugin adapter only gathers request facts, makes the callouts this module
//! asks for, and applies the decisions.
//!
//! # Configuration
//!
//! ```json
//! {
//!   "methods": [
//!     {"name": "keys", "apiKey": {"keys": [{"sha256": "<hex>", "identity": {"userid": "alice", "groups": ["premium"]}}]}},
//!     {"name": "oidc", "jwt": {
//!        "issuer": "https://idp.example", "audiences": ["infergate"],
//!        "algorithms": ["RS256", "ES256"], "clockSkewSeconds": 60,
//!        "jwksUri": {"cluster": "idp", "path": "/.well-known/jwks.json", "authority": "idp.example",
//!                    "refreshSeconds": 300, "timeoutMs": 2000},
//!        "claims": {"userid": "sub", "groups": "groups"}, "failureMode": "deny"}},
//!     {"name": "k8s", "kubernetesTokenReview": {
//!        "cluster": "kube-apiserver", "authority": "kubernetes.default.svc", "bearerToken": "<sa token>",
//!        "audiences": ["https://kubernetes.default.svc"], "timeoutMs": 1000,
//!        "cacheTtlSeconds": 60, "negativeCacheTtlSeconds": 10, "failureMode": "deny"}},
//!     {"name": "public", "anonymous": {"pathPrefixes": ["/v1/models"], "hosts": [], "sourceCidrs": ["10.0.0.0/8"]}}
//!   ],
//!   "authorization": {
//!     "rules": [{"groups": ["premium"], "models": ["Qwen/Qwen3-0.6B"]}, {"pathPrefixes": ["/v1/models"]}],
//!     "kubernetesSubjectAccessReview": {"cluster": "kube-apiserver", "bearerToken": "<sa token>",
//!        "verb": "get", "group": "serving.kserve.io", "resource": "llminferenceservices"}
//!   },
//!   "identityHeaders": {"userid": "x-infergate-user", "groups": "x-infergate-groups"},
//!   "forwardCredential": false
//! }
//! ```
//!
//! # Layout
//!
//! - [`config`]: the configuration types (`Serialize` too, for the policy translator);
//!   [`validate`]: their checks, naming the field.
//! - [`methods`]: one file per authentication method behind [`methods::AuthMethod`];
//!   [`authenticator`]: tries them in order ([`Authenticator`]).
//! - [`authorize`] and [`rules`]: authorization after authentication.
//! - [`decision`]: what these answer (allow, deny with the local answer, make a callout).
//! - [`flow`]: one request's state machine over a narrow host trait ([`flow::FlowHost`]), which
//!   the proxy-wasm adapter drives.
//! - The rest are the primitives: credentials, API-key digests, JWT/JWKS, Kubernetes reviews,
//!   address ranges, identity properties and selectors.

pub mod apikey;
pub mod authenticator;
pub mod authorize;
pub mod cidr;
pub mod config;
pub mod credential;
pub mod decision;
pub mod flow;
pub mod identity;
pub mod jwt;
pub mod jwt_cache;
pub mod kube;
pub mod metadata;
pub mod methods;
pub mod rules;
pub mod selector;
pub mod validate;

pub use authenticator::Authenticator;
pub use config::{
    AnonymousConfig, ApiKeyConfig, ApiKeyEntry, AuthConfig, ClaimMapping, Identity,
    IdentityHeaders, JwksUri, JwtConfig, MethodConfig,
};
pub use decision::{
    Authorization, Callout, CalloutKind, Decision, Denial, Progress, Step, DENIAL_REASONS,
};

use jwt::KeySet;
use std::rc::Rc;

/// What the adapter needs to know about a request to authenticate it.
pub trait RequestView {
    /// Every value of header `name` (lower case), in order.
    fn header_values(&self, name: &str) -> Vec<String>;
    /// `:path`, including any query string.
    fn path(&self) -> String;
    /// `:authority` (may include a port).
    fn host(&self) -> String;
    /// `:method`.
    fn method(&self) -> String {
        self.header_values(":method")
            .into_iter()
            .next()
            .unwrap_or_default()
    }
    /// The client address (`ip:port`), when known.
    fn source_address(&self) -> Option<String> {
        None
    }
}

/// What the host offers the decision besides the request: time, fetched key sets, the cache.
pub trait AuthHost {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
    /// The last good JWKS of a `jwksUri` method, by method name; `None` before the first
    /// successful fetch.
    fn key_set(&self, method: &str) -> Option<Rc<KeySet>>;
    /// A cache entry written earlier with [`Callout::cache_key`].
    fn cache_get(&self, key: &str) -> Option<Vec<u8>>;
}

/// A JWKS fetch the adapter keeps running for a `jwksUri` method.
#[derive(Debug, Clone)]
pub struct JwksFetch {
    /// Method name (the shared-data key is `infergate.auth.jwks.<name>`).
    pub method: String,
    /// Envoy cluster.
    pub cluster: String,
    /// `:path`.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// Refresh period, seconds.
    pub refresh_seconds: u64,
    /// Fetch timeout, milliseconds.
    pub timeout_ms: u64,
}

#[cfg(test)]
mod tests;
