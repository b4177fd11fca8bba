//! The `auth` plugin's configuration types, as the plugin reads them and as the policy
//! translator writes them (`Serialize` gives back the same JSON shape: field names in camel
//! case, absent options left out). Checks serde cannot express live in [`super::validate`].

use super::credential::CredentialSource;
use super::identity::PropertyConfig;
use super::jwt::{self, Alg};
use super::kube::{FailureMode, TokenReviewConfig};
use super::rules::AuthorizationConfig;
use crate::headers::{DEFAULT_GROUPS_HEADER, DEFAULT_USER_HEADER};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Who the caller is, once authenticated.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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
    /// AuthPolicy `metadata.<name>.http` evaluators, run after authentication in this order;
    /// their answers are `auth.metadata.<name>` for the identity properties.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<super::metadata::MetadataConfig>,
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
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MethodConfig {
    /// Name used in logs, stats and shared-data keys.
    pub name: String,
    /// API keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyConfig>,
    /// Signed JWTs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
    /// Kubernetes TokenReview.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes_token_review: Option<TokenReviewConfig>,
    /// Anonymous access where its conditions hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymous: Option<AnonymousConfig>,
    /// Where the credential is read from (default `Authorization: Bearer …`).
    #[serde(default)]
    pub credentials: CredentialSource,
}

/// API keys, stored only as SHA-256 digests.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The accepted keys.
    pub keys: Vec<ApiKeyEntry>,
}

/// One accepted key.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Lower- or upper-case hex SHA-256 of the key.
    pub sha256: String,
    /// Who presents this key.
    pub identity: Identity,
}

/// Signed JWTs checked against a JWKS.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<jwt::JwksDocument>,
    /// A JWKS fetched through an Envoy cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwksUri {
    /// Envoy cluster of the identity provider.
    pub cluster: String,
    /// Request path of the JWKS.
    pub path: String,
    /// `:authority` of the request (default: the cluster name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
}
