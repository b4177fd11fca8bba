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

pub mod apikey;
pub mod cidr;
pub mod credential;
pub mod identity;
pub mod jwt;
pub mod jwt_cache;
pub mod kube;
pub mod rules;
pub mod selector;

use crate::config::{ConfigError, Validate};
use crate::headers::{normalize_header_name, DEFAULT_GROUPS_HEADER, DEFAULT_USER_HEADER};
use crate::openai_error::ErrorKind;
use apikey::KeyDigest;
use cidr::Cidr;
use credential::{query_values, CredentialError, CredentialSource};
use identity::{IdentityProperties, PropertyConfig};
use jwt::{Alg, KeySet};
use kube::{FailureMode, Review, TokenReviewConfig};
use rules::{AuthorizationConfig, Verdict};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Who the caller is, once authenticated.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    /// Stable user id (rate-limit counters key on it).
    pub userid: String,
    /// Groups or tiers the user belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Further properties (`tier`, `org`, any claim): what policies see as `auth.identity.<name>`.
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
}

/// The `auth` plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    /// Methods in the order they are tried.
    pub methods: Vec<MethodConfig>,
    /// Authorization after authentication (everyone authenticated is authorized when absent).
    #[serde(default)]
    pub authorization: AuthorizationConfig,
    /// Headers that carry the identity to later filters and upstream.
    #[serde(default)]
    pub identity_headers: IdentityHeaders,
    /// Keep the credential header on the upstream request (default: removed).
    #[serde(default)]
    pub forward_credential: bool,
    /// The identity object's properties (AuthPolicy `response.success.filters.<name>.json.
    /// properties`), evaluated against the authorization JSON after authentication; `userid`
    /// and `groups` among them replace the method's defaults.
    #[serde(default)]
    pub identity_properties: BTreeMap<String, PropertyConfig>,
    /// Realm named in `WWW-Authenticate`.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// The host lets this plugin hold request headers while it reads the body (Envoy's
    /// `allow_on_headers_stop_iteration`); default: no-hold mode.
    #[serde(default)]
    pub allow_on_headers_stop_iteration: crate::header_hold::HeaderHold,
}

fn default_realm() -> String {
    "infergate".to_string()
}

/// Names of the identity headers. Client-sent copies are always removed.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityHeaders {
    /// Header for the user id.
    #[serde(default = "default_user_header")]
    pub userid: String,
    /// Header for the groups, comma separated.
    #[serde(default = "default_groups_header")]
    pub groups: String,
}

fn default_user_header() -> String {
    DEFAULT_USER_HEADER.to_string()
}

fn default_groups_header() -> String {
    DEFAULT_GROUPS_HEADER.to_string()
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        Self {
            userid: default_user_header(),
            groups: default_groups_header(),
        }
    }
}

/// One named authentication method. Exactly one of the method kinds must be set.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MethodConfig {
    /// Name used in logs, stats and shared-data keys.
    pub name: String,
    /// API keys.
    pub api_key: Option<ApiKeyConfig>,
    /// Signed JWTs.
    pub jwt: Option<JwtConfig>,
    /// Kubernetes TokenReview.
    pub kubernetes_token_review: Option<TokenReviewConfig>,
    /// Anonymous access where its conditions hold.
    pub anonymous: Option<AnonymousConfig>,
    /// Where the credential is read from (default `Authorization: Bearer …`).
    #[serde(default)]
    pub credentials: CredentialSource,
}

/// API keys, stored only as SHA-256 digests.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The accepted keys.
    pub keys: Vec<ApiKeyEntry>,
}

/// One accepted key.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Lower- or upper-case hex SHA-256 of the key.
    pub sha256: String,
    /// Who presents this key.
    pub identity: Identity,
}

/// Signed JWTs checked against a JWKS.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: String,
    /// `aud` must hold one of these (not checked when empty).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted algorithms (default: RS256/384/512, PS256, ES256/384, EdDSA; HS256 only when
    /// listed). `none` is never accepted.
    #[serde(default = "Alg::asymmetric")]
    pub algorithms: Vec<Alg>,
    /// Leeway for `exp`/`nbf` in seconds (default 60).
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u64,
    /// An inline JWKS document (`{"keys":[…]}`).
    #[serde(default)]
    pub jwks: Option<jwt::JwksDocument>,
    /// A JWKS fetched through an Envoy cluster.
    #[serde(default)]
    pub jwks_uri: Option<JwksUri>,
    /// Which claims make the identity.
    #[serde(default)]
    pub claims: ClaimMapping,
    /// Until the first JWKS fetch succeeded: `deny` (503, default) or `reject` (401).
    #[serde(default)]
    pub failure_mode: FailureMode,
}

fn default_skew() -> u64 {
    60
}

/// Where the JWKS is fetched from.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwksUri {
    /// Envoy cluster of the identity provider.
    pub cluster: String,
    /// Request path of the JWKS.
    pub path: String,
    /// `:authority` of the request (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Refresh period in seconds (default 300); a failed fetch is retried after 5 s, keeping
    /// the last good key set.
    #[serde(default = "default_refresh")]
    pub refresh_seconds: u64,
    /// Fetch timeout in milliseconds (default 2000).
    #[serde(default = "default_jwks_timeout")]
    pub timeout_ms: u64,
}

fn default_refresh() -> u64 {
    300
}

fn default_jwks_timeout() -> u64 {
    2000
}

/// Claim names (dotted paths into nested objects) that make the identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimMapping {
    /// User id claim (default `sub`); a token without it is refused.
    #[serde(default = "default_sub")]
    pub userid: String,
    /// Groups claim (default `groups`): an array of strings or a space-separated string.
    #[serde(default = "default_groups_claim")]
    pub groups: String,
}

fn default_sub() -> String {
    "sub".to_string()
}

fn default_groups_claim() -> String {
    "groups".to_string()
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            userid: default_sub(),
            groups: default_groups_claim(),
        }
    }
}

/// Anonymous access, limited to requests matching all given conditions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnonymousConfig {
    /// The request path must start with one of these (any path when empty).
    #[serde(default)]
    pub path_prefixes: Vec<String>,
    /// The request host (without port) must be one of these (any host when empty).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The client address (Envoy's `source.address`) must lie in one of these ranges
    /// (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`; any address when empty).
    #[serde(default)]
    pub source_cidrs: Vec<String>,
    /// Identity given to anonymous callers (user id `anonymous` by default).
    #[serde(default)]
    pub identity: Option<Identity>,
}

fn check_api(at: &dyn Fn(&str) -> String, api: kube::ApiServer<'_>) -> Result<(), ConfigError> {
    if api.cluster.is_empty() {
        return Err(ConfigError::new(
            at("cluster"),
            "must name an Envoy cluster",
        ));
    }
    if api.bearer_token.is_empty() {
        return Err(ConfigError::new(
            at("bearerToken"),
            "the service-account token the gateway presents to the kube-apiserver is required",
        ));
    }
    if api.timeout_ms == 0 {
        return Err(ConfigError::new(at("timeoutMs"), "must be positive"));
    }
    Ok(())
}

impl Validate for AuthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.methods.is_empty() {
            return Err(ConfigError::new(
                "methods",
                "at least one authentication method is required (use `anonymous` to allow everyone)",
            ));
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, m) in self.methods.iter().enumerate() {
            let at = |f: &str| format!("methods[{i}].{f}");
            let kinds = usize::from(m.api_key.is_some())
                + usize::from(m.anonymous.is_some())
                + usize::from(m.jwt.is_some())
                + usize::from(m.kubernetes_token_review.is_some());
            if kinds != 1 {
                return Err(ConfigError::new(
                    at("name"),
                    format!(
                        "method `{}` must set exactly one of `apiKey`, `jwt`, `kubernetesTokenReview`, `anonymous`",
                        m.name
                    ),
                ));
            }
            if names.contains(&m.name.as_str()) {
                return Err(ConfigError::new(at("name"), "method names must be unique"));
            }
            names.push(&m.name);
            if let Some(k) = &m.api_key {
                for (j, key) in k.keys.iter().enumerate() {
                    if KeyDigest::from_hex(&key.sha256).is_none() {
                        return Err(ConfigError::new(
                            at(&format!("apiKey.keys[{j}].sha256")),
                            "must be 64 hex digits (the SHA-256 of the key, never the key itself)",
                        ));
                    }
                    if key.identity.userid.is_empty() {
                        return Err(ConfigError::new(
                            at(&format!("apiKey.keys[{j}].identity.userid")),
                            "must not be empty",
                        ));
                    }
                }
            }
            if let Some(j) = &m.jwt {
                if j.issuer.is_empty() {
                    return Err(ConfigError::new(at("jwt.issuer"), "must not be empty"));
                }
                if j.algorithms.is_empty() {
                    return Err(ConfigError::new(at("jwt.algorithms"), "must not be empty"));
                }
                match (&j.jwks, &j.jwks_uri) {
                    (Some(doc), None) => {
                        let set = KeySet::from_document(doc)
                            .map_err(|e| ConfigError::new(at("jwt.jwks"), e))?;
                        let usable = set
                            .keys
                            .iter()
                            .any(|k| j.algorithms.iter().any(|a| k.usable_for(*a)));
                        if !usable {
                            return Err(ConfigError::new(
                                at("jwt.jwks"),
                                "no key fits any of the allowed `algorithms`",
                            ));
                        }
                    }
                    (None, Some(u)) => {
                        if u.cluster.is_empty() || !u.path.starts_with('/') {
                            return Err(ConfigError::new(
                                at("jwt.jwksUri"),
                                "needs a `cluster` and a `path` starting with `/`",
                            ));
                        }
                        if u.refresh_seconds == 0 || u.timeout_ms == 0 {
                            return Err(ConfigError::new(
                                at("jwt.jwksUri.refreshSeconds"),
                                "`refreshSeconds` and `timeoutMs` must be positive",
                            ));
                        }
                    }
                    _ => {
                        return Err(ConfigError::new(
                            at("jwt"),
                            "set exactly one of `jwks` (inline) and `jwksUri`",
                        ))
                    }
                }
                if j.failure_mode == FailureMode::Allow {
                    return Err(ConfigError::new(
                        at("jwt.failureMode"),
                        "`allow` cannot apply to JWTs (no key to check them with); use `deny` (503) or `reject` (401)",
                    ));
                }
            }
            if let Some(t) = &m.kubernetes_token_review {
                check_api(&|f| at(&format!("kubernetesTokenReview.{f}")), t.api())?;
            }
            if let Some(a) = &m.anonymous {
                for (j, c) in a.source_cidrs.iter().enumerate() {
                    if Cidr::parse(c).is_none() {
                        return Err(ConfigError::new(
                            at(&format!("anonymous.sourceCidrs[{j}]")),
                            "not an address range like `10.0.0.0/8` or `fd00::/8`",
                        ));
                    }
                }
            }
            if let CredentialSource::CustomHeader { name } = &m.credentials {
                if normalize_header_name(name).is_none() {
                    return Err(ConfigError::new(
                        at("credentials.customHeader.name"),
                        "not a valid header name",
                    ));
                }
            }
        }
        IdentityProperties::compile("identityProperties", &self.identity_properties)?;
        if let Some(s) = &self.authorization.kubernetes_subject_access_review {
            check_api(
                &|f| format!("authorization.kubernetesSubjectAccessReview.{f}"),
                s.api(),
            )?;
        }
        for (field, name) in [
            ("identityHeaders.userid", &self.identity_headers.userid),
            ("identityHeaders.groups", &self.identity_headers.groups),
        ] {
            if normalize_header_name(name).is_none() {
                return Err(ConfigError::new(field, "not a valid header name"));
            }
        }
        Ok(())
    }
}

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

/// How far authentication got, so it can resume after a callout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    next: usize,
    presented_invalid: bool,
}

/// Which review a callout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewKind {
    /// A TokenReview for method index `.0`.
    Token(usize),
    /// The SubjectAccessReview of `authorization`.
    Access,
}

/// An HTTP call to the kube-apiserver the adapter must make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    /// What is reviewed.
    pub kind: ReviewKind,
    /// Envoy cluster.
    pub cluster: String,
    /// `:authority`.
    pub authority: String,
    /// `:path`.
    pub path: &'static str,
    /// `Authorization` value of the call.
    pub authorization: String,
    /// JSON body.
    pub body: Vec<u8>,
    /// Timeout in milliseconds.
    pub timeout_ms: u64,
    /// Shared-data key for the answer.
    pub cache_key: String,
    /// Seconds to keep an accepted answer.
    pub ttl_accepted: u64,
    /// Seconds to keep a rejected answer.
    pub ttl_rejected: u64,
    /// Where authentication resumes if this method rejects.
    pub progress: Progress,
}

/// The outcome of authentication (or of one step of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through as `identity` (authorization follows).
    Allow {
        /// The caller.
        identity: Identity,
        /// Name of the method that accepted.
        method: String,
    },
    /// Answer locally.
    Deny(Denial),
    /// Ask the kube-apiserver, then resume with [`Authenticator::token_reviewed`].
    Review(Callout),
}

/// The outcome of authorization (or of one step of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// Authorized.
    Allow,
    /// Answer locally (403, or 503 when the kube-apiserver is unavailable).
    Deny(Denial),
    /// Read the body and call [`Authenticator::authorize`] again with its `model`.
    NeedModel,
    /// Ask the kube-apiserver, then finish with [`Authenticator::access_reviewed`].
    Review(Callout),
}

/// A local answer for a denied request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// 401, 403 or 503.
    pub kind: ErrorKind,
    /// Machine-readable code for the OpenAI error body.
    pub code: &'static str,
    /// Human-readable message. Never says whether a key or user exists.
    pub message: &'static str,
    /// `WWW-Authenticate` value for 401s.
    pub www_authenticate: Option<String>,
    /// Stat name suffix for the reason.
    pub reason: &'static str,
}

/// Every denial reason, for defining stats up front.
pub const DENIAL_REASONS: [&str; 4] = [
    "missing_credential",
    "invalid_credential",
    "forbidden",
    "unavailable",
];

enum Keys {
    Inline(Rc<KeySet>),
    Fetched,
}

enum Method {
    ApiKey {
        digests: Vec<KeyDigest>,
        identities: Vec<Identity>,
    },
    Jwt {
        keys: Keys,
        validation: jwt::Validation,
        claims: ClaimMapping,
        failure: FailureMode,
    },
    TokenReview(TokenReviewConfig),
    Anonymous {
        conditions: AnonymousConfig,
        cidrs: Vec<Cidr>,
        identity: Identity,
    },
}

struct Named {
    name: String,
    source: CredentialSource,
    method: Method,
}

/// A JWKS fetch the adapter keeps running for a `jwksUri` method.
#[derive(Debug, Clone)]
pub struct JwksFetch {
    /// Method name (the shared-data key is `infergate.auth.jwks.<name>`).
    pub method: String,
    /// Envoy cluster, path, authority.
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

/// A validated configuration, ready to authenticate requests.
pub struct Authenticator {
    methods: Vec<Named>,
    properties: IdentityProperties,
    authorization: AuthorizationConfig,
    realm: String,
    /// Identity header names, lower case.
    pub identity_headers: IdentityHeaders,
    /// Credential headers to remove before the request goes upstream.
    pub credential_headers: Vec<String>,
    /// JWKS documents to fetch and refresh.
    pub jwks_fetches: Vec<JwksFetch>,
    /// Tokens whose signature this worker already verified.
    jwt_cache: std::cell::RefCell<jwt_cache::JwtCache>,
}

fn digest_hex(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    KeyDigest::from_bytes(h.finalize().into()).to_hex()
}

impl Authenticator {
    /// Compiles a validated configuration.
    pub fn new(config: AuthConfig) -> Self {
        let mut credential_headers = Vec::new();
        let mut methods = Vec::new();
        let mut jwks_fetches = Vec::new();
        for m in config.methods {
            let needs_credential = m.anonymous.is_none();
            if needs_credential && !config.forward_credential {
                if let Some(h) = m.credentials.header_name() {
                    if !credential_headers.contains(&h) {
                        credential_headers.push(h);
                    }
                }
            }
            let method = if let Some(k) = m.api_key {
                let (digests, identities) = k
                    .keys
                    .into_iter()
                    .filter_map(|e| KeyDigest::from_hex(&e.sha256).map(|d| (d, e.identity)))
                    .unzip();
                Method::ApiKey {
                    digests,
                    identities,
                }
            } else if let Some(j) = m.jwt {
                let keys = match (&j.jwks, &j.jwks_uri) {
                    (_, Some(u)) => {
                        jwks_fetches.push(JwksFetch {
                            method: m.name.clone(),
                            cluster: u.cluster.clone(),
                            path: u.path.clone(),
                            authority: u.authority.clone().unwrap_or_else(|| u.cluster.clone()),
                            refresh_seconds: u.refresh_seconds,
                            timeout_ms: u.timeout_ms,
                        });
                        Keys::Fetched
                    }
                    (Some(doc), None) => {
                        Keys::Inline(Rc::new(KeySet::from_document(doc).unwrap_or_default()))
                    }
                    (None, None) => Keys::Inline(Rc::new(KeySet::default())),
                };
                Method::Jwt {
                    keys,
                    validation: jwt::Validation {
                        issuer: j.issuer,
                        audiences: j.audiences,
                        algorithms: j.algorithms,
                        clock_skew_secs: j.clock_skew_seconds,
                    },
                    claims: j.claims,
                    failure: j.failure_mode,
                }
            } else if let Some(t) = m.kubernetes_token_review {
                Method::TokenReview(t)
            } else if let Some(a) = m.anonymous {
                let identity = a.identity.clone().unwrap_or_else(|| Identity {
                    userid: "anonymous".to_string(),
                    ..Identity::default()
                });
                let cidrs = a
                    .source_cidrs
                    .iter()
                    .filter_map(|c| Cidr::parse(c))
                    .collect();
                Method::Anonymous {
                    conditions: a,
                    cidrs,
                    identity,
                }
            } else {
                continue;
            };
            methods.push(Named {
                name: m.name,
                source: m.credentials,
                method,
            });
        }
        let identity_headers = IdentityHeaders {
            userid: config.identity_headers.userid.to_ascii_lowercase(),
            groups: config.identity_headers.groups.to_ascii_lowercase(),
        };
        let properties =
            IdentityProperties::compile("identityProperties", &config.identity_properties)
                .unwrap_or_default();
        Self {
            methods,
            properties,
            authorization: config.authorization,
            realm: config.realm,
            identity_headers,
            credential_headers,
            jwks_fetches,
            jwt_cache: Default::default(),
        }
    }

    /// Decides one request from the first method.
    pub fn authenticate(&self, req: &dyn RequestView, host: &dyn AuthHost) -> Decision {
        self.resume(req, host, Progress::default())
    }

    /// Continues authentication from `progress`.
    pub fn resume(
        &self,
        req: &dyn RequestView,
        host: &dyn AuthHost,
        mut progress: Progress,
    ) -> Decision {
        while let Some(named) = self.methods.get(progress.next) {
            let index = progress.next;
            progress.next += 1;
            let allow = |identity: Identity, object: Option<Value>| Decision::Allow {
                identity: self.with_properties(req, identity, object),
                method: named.name.clone(),
            };
            if let Method::Anonymous {
                conditions,
                cidrs,
                identity,
            } = &named.method
            {
                if anonymous_allowed(conditions, cidrs, req) {
                    return allow(identity.clone(), None);
                }
                continue;
            }
            let owned = match &named.source {
                CredentialSource::QueryString { name } => query_values(&req.path(), name)
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
                source => source
                    .header_name()
                    .map(|h| req.header_values(&h))
                    .unwrap_or_default(),
            };
            let values: Vec<&str> = owned.iter().map(String::as_str).collect();
            let credential = match named.source.extract(&values) {
                Ok(c) => c,
                Err(CredentialError::Malformed) => {
                    progress.presented_invalid = true;
                    continue;
                }
                Err(CredentialError::Missing) => continue,
            };
            match &named.method {
                Method::ApiKey {
                    digests,
                    identities,
                } => {
                    let presented = KeyDigest::of(credential.as_bytes());
                    match apikey::find_match(digests, &presented).and_then(|i| identities.get(i)) {
                        Some(id) => return allow(id.clone(), None),
                        None => progress.presented_invalid = true,
                    }
                }
                Method::Jwt {
                    keys,
                    validation,
                    claims,
                    failure,
                } => {
                    if !jwt::looks_like_jwt(credential) {
                        progress.presented_invalid = true;
                        continue;
                    }
                    let set = match keys {
                        Keys::Inline(k) => Some(k.clone()),
                        Keys::Fetched => host.key_set(&named.name),
                    };
                    let Some(set) = set else {
                        match failure {
                            FailureMode::Deny => return Decision::Deny(self.unavailable()),
                            _ => {
                                progress.presented_invalid = true;
                                continue;
                            }
                        }
                    };
                    let digest = digest_hex(&[&named.name, credential]);
                    let set_id = set.generation;
                    let cached = self
                        .jwt_cache
                        .borrow()
                        .get(&digest, set_id, host.now())
                        .cloned();
                    let verified = match cached {
                        Some(c) => jwt::recheck_claims(&c, validation, host.now()).map(|()| c),
                        None => {
                            let v = jwt::verify(credential, &set, validation, host.now());
                            if let Ok(c) = &v {
                                self.jwt_cache.borrow_mut().insert(
                                    digest,
                                    set_id,
                                    host.now(),
                                    c.clone(),
                                );
                            }
                            v
                        }
                    };
                    match verified {
                        Ok(c) => {
                            let user = jwt::claim(&c, &claims.userid)
                                .and_then(|v| v.as_str())
                                .filter(|u| !u.is_empty());
                            match user {
                                Some(u) => {
                                    let id = Identity {
                                        userid: u.to_string(),
                                        groups: jwt::groups_of(jwt::claim(&c, &claims.groups)),
                                        ..Identity::default()
                                    };
                                    return allow(id, Some(Value::Object(c)));
                                }
                                None => progress.presented_invalid = true,
                            }
                        }
                        Err(_) => progress.presented_invalid = true,
                    }
                }
                Method::TokenReview(t) => {
                    let cache_key = format!(
                        "infergate.auth.tokenreview.{}",
                        digest_hex(&[&named.name, credential])
                    );
                    match host
                        .cache_get(&cache_key)
                        .and_then(|e| kube::decode_entry(&e, host.now()))
                    {
                        Some(Review::Accepted(id)) => {
                            let object = identity::token_review_object(&id);
                            return allow(id, Some(object));
                        }
                        Some(_) => progress.presented_invalid = true,
                        None => {
                            return Decision::Review(Callout {
                                kind: ReviewKind::Token(index),
                                cluster: t.cluster.clone(),
                                authority: t.authority.clone(),
                                path: "/apis/authentication.k8s.io/v1/tokenreviews",
                                authorization: format!("Bearer {}", t.bearer_token),
                                body: kube::token_review_body(credential, &t.audiences),
                                timeout_ms: t.timeout_ms,
                                cache_key,
                                ttl_accepted: t.cache_ttl_seconds,
                                ttl_rejected: t.negative_cache_ttl_seconds,
                                progress,
                            })
                        }
                    }
                }
                Method::Anonymous { .. } => {}
            }
        }
        Decision::Deny(self.unauthenticated(progress.presented_invalid))
    }

    /// Whether a callout's answer came from the cache or the kube-apiserver, the adapter
    /// stores it under [`Callout::cache_key`] with [`Self::cache_entry`], then resumes here.
    pub fn token_reviewed(
        &self,
        req: &dyn RequestView,
        host: &dyn AuthHost,
        callout: &Callout,
        review: Review,
    ) -> Decision {
        let ReviewKind::Token(index) = callout.kind else {
            return Decision::Deny(self.unavailable());
        };
        let Some(named) = self.methods.get(index) else {
            return Decision::Deny(self.unavailable());
        };
        let Method::TokenReview(t) = &named.method else {
            return Decision::Deny(self.unavailable());
        };
        let mut progress = callout.progress;
        match review {
            Review::Accepted(identity) => {
                let object = identity::token_review_object(&identity);
                Decision::Allow {
                    identity: self.with_properties(req, identity, Some(object)),
                    method: named.name.clone(),
                }
            }
            Review::Rejected => {
                progress.presented_invalid = true;
                self.resume(req, host, progress)
            }
            Review::Failed => match t.failure_mode {
                FailureMode::Deny => Decision::Deny(self.unavailable()),
                FailureMode::Allow => Decision::Allow {
                    identity: t.failure_identity.clone().unwrap_or_else(|| Identity {
                        userid: "unverified".to_string(),
                        ..Identity::default()
                    }),
                    method: named.name.clone(),
                },
                FailureMode::Reject => {
                    progress.presented_invalid = true;
                    self.resume(req, host, progress)
                }
            },
        }
    }

    /// The shared-data value to store for a review answer at `now` (nothing for failures).
    pub fn cache_entry(callout: &Callout, review: &Review, now: u64) -> Option<Vec<u8>> {
        let ttl = match review {
            Review::Accepted(_) => callout.ttl_accepted,
            Review::Rejected => callout.ttl_rejected,
            Review::Failed => return None,
        };
        if ttl == 0 {
            return None;
        }
        kube::encode_entry(now.saturating_add(ttl), review)
    }

    /// Applies `identityProperties` to an authenticated identity; `object` is what Authorino
    /// would hold as `auth.identity` (JWT claims, the TokenReview status), else the identity's
    /// own object (an API key's precomputed properties).
    fn with_properties(
        &self,
        req: &dyn RequestView,
        identity: Identity,
        object: Option<Value>,
    ) -> Identity {
        if self.properties.is_empty() {
            return identity;
        }
        let object = object.unwrap_or_else(|| identity::identity_object(&identity));
        let json = identity::authorization_json(req, object, Value::Object(Default::default()));
        let props = self.properties.build(&json);
        identity::apply(identity, props)
    }

    /// Whether any authorization rule may need the body's `model`.
    pub fn rules_need_model(&self) -> bool {
        self.authorization
            .rules
            .iter()
            .any(|r| !r.models.is_empty())
    }

    /// Largest body read for a `models` rule.
    pub fn max_body_bytes(&self) -> usize {
        self.authorization.max_body_bytes
    }

    /// Authorizes an authenticated identity; `model` once the body was read.
    pub fn authorize(
        &self,
        req: &dyn RequestView,
        host: &dyn AuthHost,
        identity: &Identity,
        model: Option<&str>,
    ) -> Authorization {
        match self.authorization.verdict(req, identity, model) {
            Verdict::Deny => return Authorization::Deny(self.forbidden()),
            Verdict::NeedModel => return Authorization::NeedModel,
            Verdict::Allow => {}
        }
        let Some(sar) = &self.authorization.kubernetes_subject_access_review else {
            return Authorization::Allow;
        };
        let path = req.path();
        let Some((namespace, name)) = kube::namespace_and_name(&path) else {
            return Authorization::Deny(self.forbidden());
        };
        let groups = identity.groups.join("\n");
        let cache_key = format!(
            "infergate.auth.accessreview.{}",
            digest_hex(&[
                &identity.userid,
                &groups,
                namespace,
                name,
                &sar.verb,
                &sar.group,
                &sar.resource
            ])
        );
        match host
            .cache_get(&cache_key)
            .and_then(|e| kube::decode_entry(&e, host.now()))
        {
            Some(Review::Accepted(_)) => Authorization::Allow,
            Some(_) => Authorization::Deny(self.forbidden()),
            None => Authorization::Review(Callout {
                kind: ReviewKind::Access,
                cluster: sar.cluster.clone(),
                authority: sar.authority.clone(),
                path: "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                authorization: format!("Bearer {}", sar.bearer_token),
                body: kube::access_review_body(sar, identity, namespace, name),
                timeout_ms: sar.timeout_ms,
                cache_key,
                ttl_accepted: sar.cache_ttl_seconds,
                ttl_rejected: sar.cache_ttl_seconds,
                progress: Progress::default(),
            }),
        }
    }

    /// Finishes authorization with a SubjectAccessReview answer.
    pub fn access_reviewed(&self, review: Review) -> Authorization {
        let mode = self
            .authorization
            .kubernetes_subject_access_review
            .as_ref()
            .map(|s| s.failure_mode)
            .unwrap_or_default();
        match review {
            Review::Accepted(_) => Authorization::Allow,
            Review::Rejected => Authorization::Deny(self.forbidden()),
            Review::Failed => match mode {
                FailureMode::Deny => Authorization::Deny(self.unavailable()),
                FailureMode::Allow => Authorization::Allow,
                FailureMode::Reject => Authorization::Deny(self.forbidden()),
            },
        }
    }

    /// Reads a kube-apiserver answer for `callout`.
    pub fn read_review(&self, callout: &Callout, status: Option<u32>, body: &[u8]) -> Review {
        match callout.kind {
            ReviewKind::Token(_) => {
                kube::read_token_review(status, body, self.review_audiences(callout))
            }
            ReviewKind::Access => kube::read_access_review(status, body),
        }
    }

    fn review_audiences(&self, callout: &Callout) -> &[String] {
        match callout.kind {
            ReviewKind::Token(i) => match self.methods.get(i).map(|m| &m.method) {
                Some(Method::TokenReview(t)) => &t.audiences,
                _ => &[],
            },
            ReviewKind::Access => &[],
        }
    }

    fn unauthenticated(&self, presented_invalid: bool) -> Denial {
        if presented_invalid {
            Denial {
                kind: ErrorKind::Unauthenticated,
                code: "invalid_api_key",
                message: "The credential presented is not valid.",
                www_authenticate: Some(format!(
                    "Bearer realm=\"{}\", error=\"invalid_token\"",
                    self.realm
                )),
                reason: "invalid_credential",
            }
        } else {
            Denial {
                kind: ErrorKind::Unauthenticated,
                code: "missing_credential",
                message: "This endpoint requires a credential.",
                www_authenticate: Some(format!("Bearer realm=\"{}\"", self.realm)),
                reason: "missing_credential",
            }
        }
    }

    fn forbidden(&self) -> Denial {
        Denial {
            kind: ErrorKind::Forbidden,
            code: "permission_denied",
            message: "The credential is valid but does not grant access to this resource.",
            www_authenticate: None,
            reason: "forbidden",
        }
    }

    fn unavailable(&self) -> Denial {
        Denial {
            kind: ErrorKind::Unavailable,
            code: "authentication_unavailable",
            message: "The gateway cannot verify credentials right now; retry shortly.",
            www_authenticate: None,
            reason: "unavailable",
        }
    }
}

fn anonymous_allowed(c: &AnonymousConfig, cidrs: &[Cidr], req: &dyn RequestView) -> bool {
    let path_ok = c.path_prefixes.is_empty() || {
        let path = req.path();
        c.path_prefixes.iter().any(|p| path.starts_with(p.as_str()))
    };
    let host_ok = c.hosts.is_empty() || {
        let host = req.host();
        let host = crate::headers::strip_port(&host);
        c.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    };
    let source_ok = c.source_cidrs.is_empty()
        || req
            .source_address()
            .and_then(|a| cidr::ip_of(&a))
            .is_some_and(|ip| cidrs.iter().any(|c| c.contains(ip)));
    path_ok && host_ok && source_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    struct Req {
        headers: Vec<(&'static str, &'static str)>,
        path: &'static str,
        host: &'static str,
    }

    impl RequestView for Req {
        fn header_values(&self, name: &str) -> Vec<String> {
            self.headers
                .iter()
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .collect()
        }
        fn path(&self) -> String {
            self.path.to_string()
        }
        fn host(&self) -> String {
            self.host.to_string()
        }
    }

    struct NoHost;

    impl AuthHost for NoHost {
        fn now(&self) -> u64 {
            1_800_000_000
        }
        fn key_set(&self, _method: &str) -> Option<Rc<KeySet>> {
            None
        }
        fn cache_get(&self, _key: &str) -> Option<Vec<u8>> {
            None
        }
    }

    fn req(headers: Vec<(&'static str, &'static str)>) -> Req {
        Req {
            headers,
            path: "/v1/chat/completions",
            host: "gw.example:443",
        }
    }

    fn config(extra: &str) -> Authenticator {
        let alice = KeyDigest::of(b"alice-key").to_hex();
        let text = format!(
            r#"{{"methods":[{{"name":"keys","apiKey":{{"keys":[{{"sha256":"{alice}","identity":{{"userid":"alice","groups":["premium"]}}}}]}}}}{extra}]}}"#
        );
        Authenticator::new(parse::<AuthConfig>(text.as_bytes()).unwrap())
    }

    #[test]
    fn accepts_a_known_key() {
        let a = config("");
        match a.authenticate(&req(vec![("authorization", "Bearer alice-key")]), &NoHost) {
            Decision::Allow { identity, method } => {
                assert_eq!(identity.userid, "alice");
                assert_eq!(identity.groups, vec!["premium"]);
                assert_eq!(method, "keys");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.credential_headers, vec!["authorization"]);
    }

    #[test]
    fn unknown_and_missing_keys_get_distinct_401s_that_reveal_nothing() {
        let a = config("");
        let Decision::Deny(d) =
            a.authenticate(&req(vec![("authorization", "Bearer nope")]), &NoHost)
        else {
            panic!()
        };
        assert_eq!(d.kind, ErrorKind::Unauthenticated);
        assert!(d
            .www_authenticate
            .as_deref()
            .unwrap()
            .contains("invalid_token"));
        let Decision::Deny(m) = a.authenticate(&req(vec![]), &NoHost) else {
            panic!()
        };
        assert_eq!(
            m.www_authenticate.as_deref(),
            Some("Bearer realm=\"infergate\"")
        );
        // Duplicated Authorization headers are refused even if one is valid.
        let dup = req(vec![
            ("authorization", "Bearer alice-key"),
            ("authorization", "Bearer other"),
        ]);
        assert!(matches!(a.authenticate(&dup, &NoHost), Decision::Deny(_)));
    }

    #[test]
    fn anonymous_only_where_conditions_hold() {
        let a = config(
            r#",{"name":"public","anonymous":{"pathPrefixes":["/public/"],"hosts":["gw.example"]}}"#,
        );
        let mut r = req(vec![]);
        assert!(matches!(a.authenticate(&r, &NoHost), Decision::Deny(_)));
        r.path = "/public/v1/models";
        match a.authenticate(&r, &NoHost) {
            Decision::Allow { identity, .. } => assert_eq!(identity.userid, "anonymous"),
            other => panic!("{other:?}"),
        }
        r.host = "other.example";
        assert!(matches!(a.authenticate(&r, &NoHost), Decision::Deny(_)));
    }

    #[test]
    fn config_errors_name_the_field() {
        let err = parse::<AuthConfig>(br#"{"methods":[{"name":"k","apiKey":{"keys":[{"sha256":"plain-key","identity":{"userid":"a"}}]}}]}"#).unwrap_err();
        assert_eq!(err.path, "methods[0].apiKey.keys[0].sha256");
        let err = parse::<AuthConfig>(br#"{"methods":[{"name":"k"}]}"#).unwrap_err();
        assert!(err.message.contains("exactly one"), "{err}");
        let err = parse::<AuthConfig>(br#"{"methods":[]}"#).unwrap_err();
        assert_eq!(err.path, "methods");
        let err = parse::<AuthConfig>(br#"{}"#).unwrap_err();
        assert!(err.message.contains("missing field `methods`"), "{err}");
    }

    /// A host with a cache and fetched key sets, as the adapter's shared data provides them.
    #[derive(Default)]
    struct MemHost {
        cache: std::cell::RefCell<std::collections::HashMap<String, Vec<u8>>>,
        keys: Option<Rc<KeySet>>,
    }

    impl AuthHost for MemHost {
        fn now(&self) -> u64 {
            1_800_000_000
        }
        fn key_set(&self, _method: &str) -> Option<Rc<KeySet>> {
            self.keys.clone()
        }
        fn cache_get(&self, key: &str) -> Option<Vec<u8>> {
            self.cache.borrow().get(key).cloned()
        }
    }

    fn parse_auth(v: serde_json::Value) -> Authenticator {
        Authenticator::new(parse::<AuthConfig>(v.to_string().as_bytes()).unwrap())
    }

    fn review_ok() -> Review {
        Review::Accepted(Identity {
            userid: "system:serviceaccount:ns:sa".into(),
            groups: vec!["g".into()],
            ..Identity::default()
        })
    }

    #[test]
    fn token_review_asks_once_then_answers_from_the_cache() {
        let a = parse_auth(serde_json::json!({"methods": [
            {"name": "k8s", "kubernetesTokenReview": {"cluster": "kube", "bearerToken": "sa", "audiences": ["aud"]}},
            {"name": "public", "anonymous": {"pathPrefixes": ["/public"]}}
        ]}));
        let host = MemHost::default();
        let r = req(vec![("authorization", "Bearer zz-secret-zz")]);
        let Decision::Review(c) = a.authenticate(&r, &host) else {
            panic!("expected a callout")
        };
        assert_eq!(c.cluster, "kube");
        assert_eq!(c.path, "/apis/authentication.k8s.io/v1/tokenreviews");
        assert_eq!(c.authorization, "Bearer sa");
        assert!(c.cache_key.starts_with("infergate.auth.tokenreview."));
        assert!(
            !c.cache_key.contains("secret"),
            "the token must not be in the key"
        );
        // The answer is cached, and the next request makes no callout.
        let entry = Authenticator::cache_entry(&c, &review_ok(), host.now()).unwrap();
        host.cache.borrow_mut().insert(c.cache_key.clone(), entry);
        match a.token_reviewed(&r, &host, &c, review_ok()) {
            Decision::Allow { identity, method } => {
                assert_eq!(identity.userid, "system:serviceaccount:ns:sa");
                assert_eq!(method, "k8s");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(a.authenticate(&r, &host), Decision::Allow { .. }));
        // A rejection resumes with the next method: 401 (anonymous does not cover the path).
        let Decision::Deny(d) = a.token_reviewed(&r, &host, &c, Review::Rejected) else {
            panic!()
        };
        assert_eq!(d.reason, "invalid_credential");
        // The default failure mode fails closed with a 503.
        let Decision::Deny(d) = a.token_reviewed(&r, &host, &c, Review::Failed) else {
            panic!()
        };
        assert_eq!(d.kind, ErrorKind::Unavailable);
        assert!(Authenticator::cache_entry(&c, &Review::Failed, 0).is_none());
        // The audience must come back in the answer.
        let answer = br#"{"kind":"TokenReview","status":{"authenticated":true,"audiences":["other"],"user":{"username":"u"}}}"#;
        assert_eq!(a.read_review(&c, Some(201), answer), Review::Rejected);
    }

    #[test]
    fn jwt_keys_missing_follow_the_failure_mode() {
        let token = jwt::testing::sign(
            jwt::testing::TestKey::Rsa,
            Alg::RS256,
            None,
            &serde_json::json!({"iss": "i", "sub": "alice", "exp": 1_900_000_000u64}),
        );
        let header = format!("Bearer {token}");
        let r = Req {
            headers: vec![("authorization", Box::leak(header.into_boxed_str()))],
            path: "/v1/chat/completions",
            host: "gw",
        };
        let method = |mode: &str| {
            parse_auth(serde_json::json!({"methods": [{"name": "o", "jwt": {
                "issuer": "i", "jwksUri": {"cluster": "idp", "path": "/jwks"}, "failureMode": mode}}]}))
        };
        let Decision::Deny(d) = method("deny").authenticate(&r, &MemHost::default()) else {
            panic!()
        };
        assert_eq!(d.kind, ErrorKind::Unavailable);
        let Decision::Deny(d) = method("reject").authenticate(&r, &MemHost::default()) else {
            panic!()
        };
        assert_eq!(d.kind, ErrorKind::Unauthenticated);
        let keys = KeySet::from_json(
            jwt::testing::jwks(&[(jwt::testing::TestKey::Rsa, "k")])
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let host = MemHost {
            keys: Some(Rc::new(keys)),
            ..MemHost::default()
        };
        match method("deny").authenticate(&r, &host) {
            Decision::Allow { identity, .. } => assert_eq!(identity.userid, "alice"),
            other => panic!("{other:?}"),
        }
        assert_eq!(method("deny").jwks_fetches.len(), 1);
    }

    #[test]
    fn remembered_jwt_verifications_follow_key_rotation_and_expiry() {
        struct At(u64, Rc<KeySet>);
        impl AuthHost for At {
            fn now(&self) -> u64 {
                self.0
            }
            fn key_set(&self, _method: &str) -> Option<Rc<KeySet>> {
                Some(self.1.clone())
            }
            fn cache_get(&self, _key: &str) -> Option<Vec<u8>> {
                None
            }
        }
        let set = |key| {
            Rc::new(
                KeySet::from_json(jwt::testing::jwks(&[(key, "k")]).to_string().as_bytes())
                    .unwrap(),
            )
        };
        let token = jwt::testing::sign(
            jwt::testing::TestKey::Rsa,
            Alg::RS256,
            None,
            &serde_json::json!({"iss": "i", "sub": "alice", "exp": 1_000u64}),
        );
        let header = format!("Bearer {token}");
        let r = Req {
            headers: vec![("authorization", Box::leak(header.into_boxed_str()))],
            path: "/v1/chat/completions",
            host: "gw",
        };
        let a = parse_auth(serde_json::json!({"methods": [{"name": "o", "jwt": {
            "issuer": "i", "jwksUri": {"cluster": "idp", "path": "/jwks"}}}]}));
        let rsa = set(jwt::testing::TestKey::Rsa);
        assert!(matches!(
            a.authenticate(&r, &At(900, rsa.clone())),
            Decision::Allow { .. }
        ));
        // Remembered: still accepted with the same keys…
        assert!(matches!(
            a.authenticate(&r, &At(950, rsa.clone())),
            Decision::Allow { .. }
        ));
        // …but not once the key set rotated to one without the signing key,
        let ec = set(jwt::testing::TestKey::P256);
        assert!(matches!(
            a.authenticate(&r, &At(950, ec)),
            Decision::Deny(_)
        ));
        // …nor after the token expired.
        assert!(matches!(
            a.authenticate(&r, &At(5_000, rsa)),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn rules_and_access_reviews() {
        let a = parse_auth(serde_json::json!({
            "methods": [{"name": "any", "anonymous": {}}],
            "authorization": {
                "rules": [{"pathPrefixes": ["/ns/"], "models": ["m1"]}, {"httpMethods": ["GET"]}],
                "kubernetesSubjectAccessReview": {"cluster": "kube", "bearerToken": "sa", "failureMode": "allow"}
            }
        }));
        let host = MemHost::default();
        let id = Identity {
            userid: "u".into(),
            groups: vec![],
            ..Identity::default()
        };
        let mut r = req(vec![(":method", "POST")]);
        r.path = "/ns/model/v1/chat/completions";
        assert_eq!(a.authorize(&r, &host, &id, None), Authorization::NeedModel);
        assert!(matches!(
            a.authorize(&r, &host, &id, Some("m2")),
            Authorization::Deny(Denial {
                kind: ErrorKind::Forbidden,
                ..
            })
        ));
        let Authorization::Review(c) = a.authorize(&r, &host, &id, Some("m1")) else {
            panic!()
        };
        let body: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
        assert_eq!(body["spec"]["resourceAttributes"]["namespace"], "ns");
        assert_eq!(body["spec"]["resourceAttributes"]["name"], "model");
        assert_eq!(a.access_reviewed(Review::Failed), Authorization::Allow);
        assert!(matches!(
            a.access_reviewed(Review::Rejected),
            Authorization::Deny(_)
        ));
        // Cached denial: no callout.
        let entry = Authenticator::cache_entry(&c, &Review::Rejected, host.now()).unwrap();
        host.cache.borrow_mut().insert(c.cache_key.clone(), entry);
        assert!(matches!(
            a.authorize(&r, &host, &id, Some("m1")),
            Authorization::Deny(_)
        ));
        // Without a namespace and name in the path there is nothing to review.
        let mut get = req(vec![(":method", "GET")]);
        get.path = "/v1";
        assert!(matches!(
            a.authorize(&get, &host, &id, None),
            Authorization::Deny(_)
        ));
        assert!(a.rules_need_model());
    }

    #[test]
    fn anonymous_by_source_range() {
        struct From(&'static str);
        impl RequestView for From {
            fn header_values(&self, _: &str) -> Vec<String> {
                Vec::new()
            }
            fn path(&self) -> String {
                "/".into()
            }
            fn host(&self) -> String {
                "h".into()
            }
            fn source_address(&self) -> Option<String> {
                Some(self.0.to_string())
            }
        }
        let a = parse_auth(serde_json::json!({"methods": [
            {"name": "lan", "anonymous": {"sourceCidrs": ["10.0.0.0/8"]}}]}));
        assert!(matches!(
            a.authenticate(&From("10.1.2.3:555"), &NoHost),
            Decision::Allow { .. }
        ));
        assert!(matches!(
            a.authenticate(&From("11.1.2.3:555"), &NoHost),
            Decision::Deny(_)
        ));
        assert!(
            a.credential_headers.is_empty(),
            "anonymous reads no credential"
        );
    }

    #[test]
    fn new_config_errors_name_the_field() {
        let cases = [
            (
                r#"{"methods":[{"name":"o","jwt":{"issuer":"i"}}]}"#,
                "methods[0].jwt",
            ),
            (
                r#"{"methods":[{"name":"o","jwt":{"issuer":"i","jwks":{"keys":[]}}}]}"#,
                "methods[0].jwt.jwks",
            ),
            (
                r#"{"methods":[{"name":"o","jwt":{"issuer":"i","jwksUri":{"cluster":"c","path":"/j"},"failureMode":"allow"}}]}"#,
                "methods[0].jwt.failureMode",
            ),
            (
                r#"{"methods":[{"name":"o","jwt":{"issuer":"i","algorithms":["none"],"jwksUri":{"cluster":"c","path":"/j"}}}]}"#,
                "methods[0].jwt.algorithms[0]",
            ),
            (
                r#"{"methods":[{"name":"k","kubernetesTokenReview":{"cluster":"c","bearerToken":""}}]}"#,
                "methods[0].kubernetesTokenReview.bearerToken",
            ),
            (
                r#"{"methods":[{"name":"a","anonymous":{"sourceCidrs":["10.0.0.0/40"]}}]}"#,
                "methods[0].anonymous.sourceCidrs[0]",
            ),
            (
                r#"{"methods":[{"name":"a","anonymous":{}},{"name":"a","anonymous":{}}]}"#,
                "methods[1].name",
            ),
            (
                r#"{"methods":[{"name":"a","anonymous":{}}],"authorization":{"kubernetesSubjectAccessReview":{"cluster":"","bearerToken":"t"}}}"#,
                "authorization.kubernetesSubjectAccessReview.cluster",
            ),
        ];
        for (text, path) in cases {
            let err = parse::<AuthConfig>(text.as_bytes()).unwrap_err();
            assert_eq!(err.path, path, "{text}: {err}");
        }
    }
}
