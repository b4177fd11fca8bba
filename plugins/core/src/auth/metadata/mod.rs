//! AuthPolicy `metadata.<name>.http`: HTTP calls made after authentication whose JSON answers
//! policies read as `auth.metadata.<name>` — the models-as-a-service tier lookup
//! (`POST {"groups": auth.identity.user.groups}` to `/v1/tiers/lookup`, then the identity
//! property `tier: auth.metadata.matchedTier["tier"]`).
//!
//! Semantics follow Authorino's: evaluators run in order (AuthPolicy `priority`, then name),
//! each sees the answers of those before it; a failed call (timeout, reset, non-2xx, JSON that
//! does not parse, an answer over `maxResponseBytes`) is not fatal — `auth.metadata.<name>` is
//! just absent, so identity properties selecting from it are absent and limits counting on them
//! are skipped (`failureMode: deny` answers 503 instead). A `cache` keeps successful answers in
//! shared data for `ttlSeconds` under the rendered `key` (all workers share it); failures are
//! never cached.
//!
//! ```json
//! {"name": "matchedTier", "cluster": "metadata-maas-api-8443", "authority": "maas-api:8443",
//!  "path": "/v1/tiers/lookup", "method": "POST", "contentType": "application/json",
//!  "body": {"object": {"groups": {"attribute": "auth.identity.user.groups"}}},
//!  "cache": {"key": {"selector": "auth.identity.user.username"}, "ttlSeconds": 300},
//!  "timeoutMs": 1000}
//! ```

pub mod answer;
pub mod call;
pub mod step;
pub mod template;

use crate::config::{ConfigError, Validate};
use crate::headers::normalize_header_name;
pub use answer::{decode_entry, encode_entry, read_answer, MetadataError};
pub use call::MetadataCall;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
pub use template::ValueTemplate;
use template::{parse_pieces, Compiled, Piece};

/// Most metadata evaluators one configuration may define.
pub const MAX_EVALUATORS: usize = 8;

/// Default and largest `maxResponseBytes`.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Largest `maxResponseBytes` accepted.
pub const MAX_RESPONSE_BYTES_LIMIT: usize = 1024 * 1024;

/// Largest `timeoutMs` accepted.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// Shared-data key prefix of cached answers.
pub const CACHE_PREFIX: &str = "infergate.auth.metadata.";

/// HTTP method of the call (Authorino's metadata evaluator sends GET or POST).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpMethod {
    /// No body (`Content-Type: text/plain`, as Authorino sends).
    #[default]
    #[serde(rename = "GET")]
    Get,
    /// `body` or `bodyParameters`, encoded as `contentType`.
    #[serde(rename = "POST")]
    Post,
}

impl HttpMethod {
    /// The `:method` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }
}

/// How `bodyParameters` are encoded (Authorino's default is the form encoding).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentType {
    /// `application/x-www-form-urlencoded`.
    #[default]
    #[serde(rename = "application/x-www-form-urlencoded")]
    Form,
    /// `application/json`.
    #[serde(rename = "application/json")]
    Json,
}

impl ContentType {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Form => "application/x-www-form-urlencoded",
            Self::Json => "application/json",
        }
    }
}

/// What a failed call means for the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MetadataFailureMode {
    /// `auth.metadata.<name>` is absent and the request goes on (Authorino's behaviour).
    #[default]
    Absent,
    /// The request is answered 503.
    Deny,
}

/// `{prefix}` of an `Authorization` header credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixSpec {
    /// The scheme (`Bearer` when absent).
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn default_prefix() -> String {
    "Bearer".into()
}

/// `{name}` of a header or query parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameSpec {
    /// Header or parameter name.
    pub name: String,
}

/// Authorino's `sharedSecretRef` + `credentials`: the secret the called service checks, and
/// where it goes (an `Authorization: Bearer` header by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SharedSecret {
    /// The secret's value (the translator reads it from the referenced Secret).
    pub secret: String,
    /// `Authorization: <prefix> <secret>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_header: Option<PrefixSpec>,
    /// `<name>: <secret>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_header: Option<NameSpec>,
    /// `?<name>=<secret>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_string: Option<NameSpec>,
}

/// `cache`: successful answers kept in shared data under the rendered key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheConfig {
    /// The key (e.g. `{"selector": "auth.identity.user.username"}`); a key that cannot be
    /// rendered (a missing attribute) means no caching for that request.
    pub key: ValueTemplate,
    /// Seconds an answer is kept (Authorino's default: 60).
    #[serde(default = "default_ttl")]
    pub ttl_seconds: u64,
}

fn default_ttl() -> u64 {
    60
}

fn default_timeout() -> u64 {
    1000
}

fn default_max_response() -> usize {
    DEFAULT_MAX_RESPONSE_BYTES
}

/// One `metadata.<name>.http` evaluator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetadataConfig {
    /// `auth.metadata.<name>`.
    pub name: String,
    /// Envoy cluster of the service.
    pub cluster: String,
    /// `:authority` of the call (the cluster name when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// `:path`, with optional `{selector}` placeholders (their values are percent-encoded).
    pub path: String,
    /// GET (default) or POST.
    #[serde(default)]
    pub method: HttpMethod,
    /// Encoding of `bodyParameters` (and the `Content-Type` of a POST).
    #[serde(default)]
    pub content_type: ContentType,
    /// The whole body (POST): a string as is, anything else as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<ValueTemplate>,
    /// Body parameters (POST), encoded as `contentType`; `body` supersedes them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub body_parameters: BTreeMap<String, ValueTemplate>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, ValueTemplate>,
    /// A shared secret presented to the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_secret: Option<SharedSecret>,
    /// Answer cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheConfig>,
    /// Call timeout.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Largest answer read; a larger one is a failed call.
    #[serde(default = "default_max_response")]
    pub max_response_bytes: usize,
    /// What a failed call means.
    #[serde(default)]
    pub failure_mode: MetadataFailureMode,
}

impl Validate for MetadataConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        Evaluator::compile(".", self).map(|_| ())
    }
}

/// A checked evaluator.
#[derive(Debug, Clone)]
pub(crate) struct Evaluator {
    pub(crate) config: MetadataConfig,
    pub(crate) path: Vec<Piece>,
    pub(crate) body: Option<Compiled>,
    pub(crate) parameters: Vec<(String, Compiled)>,
    pub(crate) headers: Vec<(String, Compiled)>,
    pub(crate) cache_key: Option<Compiled>,
}

/// Header names the call sets itself.
const RESERVED_HEADERS: [&str; 4] = [
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
];

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn header_safe(s: &str) -> bool {
    !s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

impl Evaluator {
    fn compile(at: &str, c: &MetadataConfig) -> Result<Self, ConfigError> {
        let f = |name: &str| {
            if at == "." {
                name.to_string()
            } else {
                format!("{at}.{name}")
            }
        };
        let tpl = |name: String, t: &ValueTemplate| {
            Compiled::compile(t).map_err(|m| ConfigError::new(name, m))
        };
        if !valid_name(&c.name) {
            return Err(ConfigError::new(
                f("name"),
                "a metadata name is a letter or `_` then letters, digits, `_`, `-` (at most 64)",
            ));
        }
        if c.cluster.is_empty() {
            return Err(ConfigError::new(f("cluster"), "must name an Envoy cluster"));
        }
        if c.authority
            .as_deref()
            .is_some_and(|a| a.is_empty() || !header_safe(a))
        {
            return Err(ConfigError::new(f("authority"), "must be a host[:port]"));
        }
        if !c.path.starts_with('/')
            || c.path
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(ConfigError::new(
                f("path"),
                "must start with `/` and hold no whitespace or control characters",
            ));
        }
        let path = parse_pieces(&c.path).map_err(|m| ConfigError::new(f("path"), m))?;
        if c.timeout_ms == 0 || c.timeout_ms > MAX_TIMEOUT_MS {
            return Err(ConfigError::new(
                f("timeoutMs"),
                format!("must be 1 to {MAX_TIMEOUT_MS}"),
            ));
        }
        if c.max_response_bytes == 0 || c.max_response_bytes > MAX_RESPONSE_BYTES_LIMIT {
            return Err(ConfigError::new(
                f("maxResponseBytes"),
                format!("must be 1 to {MAX_RESPONSE_BYTES_LIMIT}"),
            ));
        }
        if c.method == HttpMethod::Get && (c.body.is_some() || !c.body_parameters.is_empty()) {
            return Err(ConfigError::new(
                f("method"),
                "a body needs `POST` (for GET, put parameters in the path)",
            ));
        }
        if c.body.is_some() && !c.body_parameters.is_empty() {
            return Err(ConfigError::new(
                f("bodyParameters"),
                "set `body` or `bodyParameters`, not both",
            ));
        }
        let body = c.body.as_ref().map(|b| tpl(f("body"), b)).transpose()?;
        let parameters = c
            .body_parameters
            .iter()
            .map(|(k, v)| Ok((k.clone(), tpl(f(&format!("bodyParameters.{k}")), v)?)))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let mut headers = Vec::new();
        for (k, v) in &c.headers {
            let at = f(&format!("headers.{k}"));
            let name = normalize_header_name(k)
                .ok_or_else(|| ConfigError::new(at.clone(), "not a valid header name"))?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(ConfigError::new(at, "set by the call itself"));
            }
            headers.push((name, tpl(at, v)?));
        }
        if let Some(s) = &c.shared_secret {
            let n = usize::from(s.authorization_header.is_some())
                + usize::from(s.custom_header.is_some())
                + usize::from(s.query_string.is_some());
            if n > 1 {
                return Err(ConfigError::new(
                    f("sharedSecret"),
                    "set at most one of `authorizationHeader`, `customHeader`, `queryString`",
                ));
            }
            if s.secret.is_empty() || !header_safe(&s.secret) {
                return Err(ConfigError::new(
                    f("sharedSecret.secret"),
                    "must be non-empty, without line breaks",
                ));
            }
            if let Some(h) = &s.custom_header {
                let ok = normalize_header_name(&h.name)
                    .is_some_and(|n| !RESERVED_HEADERS.contains(&n.as_str()));
                if !ok {
                    return Err(ConfigError::new(
                        f("sharedSecret.customHeader.name"),
                        "not a usable header name",
                    ));
                }
            }
            if let Some(p) = &s.authorization_header {
                if !header_safe(&p.prefix) {
                    return Err(ConfigError::new(
                        f("sharedSecret.authorizationHeader.prefix"),
                        "must hold no line breaks",
                    ));
                }
            }
        }
        let cache_key = match &c.cache {
            Some(cache) => {
                if cache.ttl_seconds == 0 {
                    return Err(ConfigError::new(
                        f("cache.ttlSeconds"),
                        "must be positive (omit `cache` to call every time)",
                    ));
                }
                Some(tpl(f("cache.key"), &cache.key)?)
            }
            None => None,
        };
        Ok(Self {
            config: c.clone(),
            path,
            body,
            parameters,
            headers,
            cache_key,
        })
    }
}

/// The checked evaluators, in the order they run.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    evaluators: Vec<Evaluator>,
}

/// Where the metadata step of one request is: the authorization JSON it builds
/// (`auth.metadata.<name>` filled in as answers come) and the next evaluator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataProgress {
    next: usize,
    authorization: Value,
}

impl MetadataProgress {
    /// Starts with the authorization JSON (`{context, auth: {identity, metadata}}`).
    pub fn new(authorization: Value) -> Self {
        Self {
            next: 0,
            authorization,
        }
    }

    /// The authorization JSON with every answer so far.
    pub fn authorization(&self) -> &Value {
        &self.authorization
    }

    /// Takes the authorization JSON.
    pub fn into_authorization(self) -> Value {
        self.authorization
    }

    fn store(&mut self, name: &str, value: Value) {
        if let Some(auth) = self
            .authorization
            .get_mut("auth")
            .and_then(Value::as_object_mut)
        {
            let meta = auth
                .entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()));
            if !meta.is_object() {
                *meta = Value::Object(Default::default());
            }
            if let Some(m) = meta.as_object_mut() {
                m.insert(name.to_string(), value);
            }
        }
    }
}

/// What the metadata step needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataStep {
    /// Every evaluator ran: read the authorization JSON from the progress.
    Done,
    /// Make this call, then hand its answer to [`Metadata::answered`].
    Call(MetadataCall),
    /// A call failed with `failureMode: deny`: answer 503.
    Deny(MetadataError),
}

impl Metadata {
    /// Checks and orders the configured evaluators; errors name the field under `field`.
    pub fn compile(field: &str, list: &[MetadataConfig]) -> Result<Self, ConfigError> {
        if list.len() > MAX_EVALUATORS {
            return Err(ConfigError::new(
                field,
                format!("at most {MAX_EVALUATORS} metadata evaluators"),
            ));
        }
        let mut evaluators: Vec<Evaluator> = Vec::new();
        for (i, c) in list.iter().enumerate() {
            let at = format!("{field}[{i}]");
            if evaluators.iter().any(|e| e.config.name == c.name) {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    "names must be unique",
                ));
            }
            evaluators.push(Evaluator::compile(&at, c)?);
        }
        Ok(Self { evaluators })
    }

    /// Whether no evaluator is configured.
    pub fn is_empty(&self) -> bool {
        self.evaluators.is_empty()
    }

    /// Envoy clusters the evaluators call.
    pub fn clusters(&self) -> Vec<&str> {
        self.evaluators
            .iter()
            .map(|e| e.config.cluster.as_str())
            .collect()
    }

    /// Runs evaluators from where `progress` is: answers found in the cache (`cache_get`,
    /// shared data) are stored and the next evaluator runs; a skipped evaluator (a required
    /// attribute missing) leaves its answer absent; the first that needs a call stops here.
    pub fn advance(
        &self,
        progress: &mut MetadataProgress,
        cache_get: &dyn Fn(&str) -> Option<Vec<u8>>,
        now: u64,
    ) -> MetadataStep {
        while let Some(e) = self.evaluators.get(progress.next) {
            let index = progress.next;
            progress.next += 1;
            let call = match call::build(index, e, progress.authorization()) {
                Ok(c) => c,
                Err(err) => match e.config.failure_mode {
                    MetadataFailureMode::Deny => return MetadataStep::Deny(err),
                    MetadataFailureMode::Absent => continue,
                },
            };
            if let Some(v) = call
                .cache_key
                .as_deref()
                .and_then(cache_get)
                .and_then(|b| decode_entry(&b, now))
            {
                progress.store(&e.config.name, v);
                continue;
            }
            return MetadataStep::Call(call);
        }
        MetadataStep::Done
    }

    /// Records a call's result (from [`read_answer`]) and continues with the next evaluator.
    pub fn answered(
        &self,
        progress: &mut MetadataProgress,
        call: &MetadataCall,
        result: Result<Value, MetadataError>,
        cache_get: &dyn Fn(&str) -> Option<Vec<u8>>,
        now: u64,
    ) -> MetadataStep {
        let Some(e) = self.evaluators.get(call.index) else {
            return MetadataStep::Deny(MetadataError::Unreachable);
        };
        match result {
            Ok(v) => progress.store(&e.config.name, v),
            Err(err) if e.config.failure_mode == MetadataFailureMode::Deny => {
                return MetadataStep::Deny(err)
            }
            Err(_) => {}
        }
        self.advance(progress, cache_get, now)
    }
}

#[cfg(test)]
mod tests;
