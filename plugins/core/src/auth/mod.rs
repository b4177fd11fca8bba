//! Token authentication: which methods to try, in which order, and the decision.
//!
//! Configured like Kuadrant AuthPolicy's `rules.authentication`, but as an ordered list: the
//! first method that accepts the request's credential wins (AuthPolicy's `priority`, made
//! explicit). The plugin adapter only gathers request facts and applies the [`Decision`].

pub mod apikey;
pub mod credential;

use crate::config::{ConfigError, Validate};
use crate::headers::{normalize_header_name, DEFAULT_GROUPS_HEADER, DEFAULT_USER_HEADER};
use crate::openai_error::ErrorKind;
use apikey::KeyDigest;
use credential::{query_values, CredentialError, CredentialSource};
use serde::Deserialize;

/// Who the caller is, once authenticated.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    /// Stable user id (rate-limit counters key on it).
    pub userid: String,
    /// Groups or tiers the user belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The `auth` plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    /// Methods in the order they are tried.
    pub methods: Vec<MethodConfig>,
    /// Headers that carry the identity to later filters and upstream.
    #[serde(default)]
    pub identity_headers: IdentityHeaders,
    /// Keep the credential header on the upstream request (default: removed).
    #[serde(default)]
    pub forward_credential: bool,
    /// Realm named in `WWW-Authenticate`.
    #[serde(default = "default_realm")]
    pub realm: String,
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
    /// Name used in logs and stats.
    pub name: String,
    /// API keys.
    pub api_key: Option<ApiKeyConfig>,
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
    /// Identity given to anonymous callers (user id `anonymous` by default).
    #[serde(default)]
    pub identity: Option<Identity>,
}

impl Validate for AuthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.methods.is_empty() {
            return Err(ConfigError::new(
                "methods",
                "at least one authentication method is required (use `anonymous` to allow everyone)",
            ));
        }
        for (i, m) in self.methods.iter().enumerate() {
            let at = |f: &str| format!("methods[{i}].{f}");
            let kinds = usize::from(m.api_key.is_some()) + usize::from(m.anonymous.is_some());
            if kinds != 1 {
                return Err(ConfigError::new(
                    at("name"),
                    format!(
                        "method `{}` must set exactly one of `apiKey`, `anonymous`",
                        m.name
                    ),
                ));
            }
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
            if let CredentialSource::CustomHeader { name } = &m.credentials {
                if normalize_header_name(name).is_none() {
                    return Err(ConfigError::new(
                        at("credentials.customHeader.name"),
                        "not a valid header name",
                    ));
                }
            }
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
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through as `identity`.
    Allow {
        /// The caller.
        identity: Identity,
        /// Name of the method that accepted.
        method: String,
    },
    /// Answer locally.
    Deny(Denial),
}

/// A local answer for a denied request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// 401 or 403.
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

enum Method {
    ApiKey {
        name: String,
        source: CredentialSource,
        digests: Vec<KeyDigest>,
        identities: Vec<Identity>,
    },
    Anonymous {
        name: String,
        conditions: AnonymousConfig,
        identity: Identity,
    },
}

/// A validated configuration, ready to authenticate requests.
pub struct Authenticator {
    methods: Vec<Method>,
    realm: String,
    /// Identity header names, lower case.
    pub identity_headers: IdentityHeaders,
    /// Credential headers to remove before the request goes upstream.
    pub credential_headers: Vec<String>,
}

impl Authenticator {
    /// Compiles a validated configuration.
    pub fn new(config: AuthConfig) -> Self {
        let mut credential_headers = Vec::new();
        let mut methods = Vec::new();
        for m in config.methods {
            if let Some(k) = m.api_key {
                if let Some(h) = m.credentials.header_name() {
                    if !config.forward_credential && !credential_headers.contains(&h) {
                        credential_headers.push(h);
                    }
                }
                let (digests, identities) = k
                    .keys
                    .into_iter()
                    .filter_map(|e| KeyDigest::from_hex(&e.sha256).map(|d| (d, e.identity)))
                    .unzip();
                methods.push(Method::ApiKey {
                    name: m.name,
                    source: m.credentials,
                    digests,
                    identities,
                });
            } else if let Some(a) = m.anonymous {
                let identity = a.identity.clone().unwrap_or_else(|| Identity {
                    userid: "anonymous".to_string(),
                    groups: Vec::new(),
                });
                methods.push(Method::Anonymous {
                    name: m.name,
                    conditions: a,
                    identity,
                });
            }
        }
        let identity_headers = IdentityHeaders {
            userid: config.identity_headers.userid.to_ascii_lowercase(),
            groups: config.identity_headers.groups.to_ascii_lowercase(),
        };
        Self {
            methods,
            realm: config.realm,
            identity_headers,
            credential_headers,
        }
    }

    /// Decides one request.
    pub fn authenticate(&self, req: &dyn RequestView) -> Decision {
        let mut presented_invalid = false;
        for method in &self.methods {
            match method {
                Method::ApiKey {
                    name,
                    source,
                    digests,
                    identities,
                } => {
                    let owned = match source.header_name() {
                        Some(h) => req.header_values(&h),
                        None => match source {
                            CredentialSource::QueryString { name } => {
                                query_values(&req.path(), name)
                                    .into_iter()
                                    .map(str::to_string)
                                    .collect()
                            }
                            _ => Vec::new(),
                        },
                    };
                    let values: Vec<&str> = owned.iter().map(String::as_str).collect();
                    match source.extract(&values) {
                        Ok(key) => {
                            let presented = KeyDigest::of(key.as_bytes());
                            match apikey::find_match(digests, &presented) {
                                Some(i) => {
                                    return Decision::Allow {
                                        identity: identities[i].clone(),
                                        method: name.clone(),
                                    }
                                }
                                None => presented_invalid = true,
                            }
                        }
                        Err(CredentialError::Malformed) => presented_invalid = true,
                        Err(CredentialError::Missing) => {}
                    }
                }
                Method::Anonymous {
                    name,
                    conditions,
                    identity,
                } => {
                    if anonymous_allowed(conditions, req) {
                        return Decision::Allow {
                            identity: identity.clone(),
                            method: name.clone(),
                        };
                    }
                }
            }
        }
        Decision::Deny(self.unauthenticated(presented_invalid))
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
}

fn anonymous_allowed(c: &AnonymousConfig, req: &dyn RequestView) -> bool {
    let path_ok = c.path_prefixes.is_empty() || {
        let path = req.path();
        c.path_prefixes.iter().any(|p| path.starts_with(p.as_str()))
    };
    let host_ok = c.hosts.is_empty() || {
        let host = req.host();
        let host = strip_port(&host);
        c.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    };
    path_ok && host_ok
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        // [v6]:port
        return authority
            .split_once(']')
            .map(|(h, _)| &authority[..h.len() + 1])
            .unwrap_or(authority);
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
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
        match a.authenticate(&req(vec![("authorization", "Bearer alice-key")])) {
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
        let Decision::Deny(d) = a.authenticate(&req(vec![("authorization", "Bearer nope")])) else {
            panic!()
        };
        assert_eq!(d.kind, ErrorKind::Unauthenticated);
        assert!(d
            .www_authenticate
            .as_deref()
            .unwrap()
            .contains("invalid_token"));
        let Decision::Deny(m) = a.authenticate(&req(vec![])) else {
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
        assert!(matches!(a.authenticate(&dup), Decision::Deny(_)));
    }

    #[test]
    fn anonymous_only_where_conditions_hold() {
        let a = config(
            r#",{"name":"public","anonymous":{"pathPrefixes":["/public/"],"hosts":["gw.example"]}}"#,
        );
        let mut r = req(vec![]);
        assert!(matches!(a.authenticate(&r), Decision::Deny(_)));
        r.path = "/public/v1/models";
        match a.authenticate(&r) {
            Decision::Allow { identity, .. } => assert_eq!(identity.userid, "anonymous"),
            other => panic!("{other:?}"),
        }
        r.host = "other.example";
        assert!(matches!(a.authenticate(&r), Decision::Deny(_)));
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

    #[test]
    fn strips_ports_from_hosts() {
        assert_eq!(strip_port("a.b:8443"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
