//! `jwt`: signed JWTs checked against an inline or fetched JWKS; verified tokens are
//! remembered per worker (see [`crate::auth::jwt_cache`]).

use super::{AuthMethod, Input};
use crate::auth::apikey::digest_hex;
use crate::auth::config::{ClaimMapping, JwtConfig};
use crate::auth::decision::{Denial, Step};
use crate::auth::jwt::{self as token, KeySet};
use crate::auth::jwt_cache::JwtCache;
use crate::auth::kube::FailureMode;
use crate::auth::{Identity, JwksFetch};
use crate::config::ConfigError;
use serde_json::Value;
use std::cell::RefCell;
use std::rc::Rc;

/// Issuer, algorithms, exactly one key source, and a failure mode that can apply.
pub(crate) fn validate(j: &JwtConfig, at: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    if j.issuer.is_empty() {
        return Err(ConfigError::new(at("jwt.issuer"), "must not be empty"));
    }
    if j.algorithms.is_empty() {
        return Err(ConfigError::new(at("jwt.algorithms"), "must not be empty"));
    }
    match (&j.jwks, &j.jwks_uri) {
        (Some(doc), None) => {
            let set =
                KeySet::from_document(doc).map_err(|e| ConfigError::new(at("jwt.jwks"), e))?;
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
    Ok(())
}

enum Keys {
    Inline(Rc<KeySet>),
    /// Fetched by the adapter; the fetch's settings.
    Fetched {
        cluster: String,
        path: String,
        authority: String,
        refresh_seconds: u64,
        timeout_ms: u64,
    },
}

/// A compiled `jwt` method.
pub struct Jwt {
    keys: Keys,
    validation: token::Validation,
    claims: ClaimMapping,
    failure: FailureMode,
    /// Tokens whose signature this worker already verified.
    cache: RefCell<JwtCache>,
}

impl Jwt {
    /// Compiles a validated configuration.
    pub fn new(j: JwtConfig) -> Self {
        let keys = match (&j.jwks, &j.jwks_uri) {
            (_, Some(u)) => Keys::Fetched {
                cluster: u.cluster.clone(),
                path: u.path.clone(),
                authority: u.authority.clone().unwrap_or_else(|| u.cluster.clone()),
                refresh_seconds: u.refresh_seconds,
                timeout_ms: u.timeout_ms,
            },
            (Some(doc), None) => {
                Keys::Inline(Rc::new(KeySet::from_document(doc).unwrap_or_default()))
            }
            (None, None) => Keys::Inline(Rc::new(KeySet::default())),
        };
        Self {
            keys,
            validation: token::Validation {
                issuer: j.issuer,
                audiences: j.audiences,
                algorithms: j.algorithms,
                clock_skew_secs: j.clock_skew_seconds,
            },
            claims: j.claims,
            failure: j.failure_mode,
            cache: RefCell::default(),
        }
    }

    /// Verifies `credential` (or finds it verified earlier with the same key set).
    fn claims_of(
        &self,
        input: &Input<'_>,
        credential: &str,
        set: &KeySet,
    ) -> Option<token::Claims> {
        let now = input.host.now();
        let digest = digest_hex(&[input.name, credential]);
        let cached = self
            .cache
            .borrow()
            .get(&digest, set.generation, now)
            .cloned();
        match cached {
            Some(c) => token::recheck_claims(&c, &self.validation, now)
                .ok()
                .map(|()| c),
            None => {
                let c = token::verify(credential, set, &self.validation, now).ok()?;
                self.cache
                    .borrow_mut()
                    .insert(digest, set.generation, now, c.clone());
                Some(c)
            }
        }
    }
}

impl AuthMethod for Jwt {
    fn authenticate(&self, input: &Input<'_>) -> Step {
        let Some(credential) = input.credential else {
            return Step::Skip;
        };
        if !token::looks_like_jwt(credential) {
            return Step::Refuse;
        }
        let set = match &self.keys {
            Keys::Inline(k) => Some(k.clone()),
            Keys::Fetched { .. } => input.host.key_set(input.name),
        };
        let Some(set) = set else {
            return match self.failure {
                FailureMode::Deny => Step::Deny(Denial::unavailable()),
                _ => Step::Refuse,
            };
        };
        let Some(claims) = self.claims_of(input, credential, &set) else {
            return Step::Refuse;
        };
        let user = token::claim(&claims, &self.claims.userid)
            .and_then(|v| v.as_str())
            .filter(|u| !u.is_empty());
        match user {
            Some(u) => Step::Accept {
                identity: Identity {
                    userid: u.to_string(),
                    groups: token::groups_of(token::claim(&claims, &self.claims.groups)),
                    ..Identity::default()
                },
                object: Some(Value::Object(claims)),
            },
            None => Step::Refuse,
        }
    }

    fn jwks_fetch(&self, name: &str) -> Option<JwksFetch> {
        match &self.keys {
            Keys::Inline(_) => None,
            Keys::Fetched {
                cluster,
                path,
                authority,
                refresh_seconds,
                timeout_ms,
            } => Some(JwksFetch {
                method: name.to_string(),
                cluster: cluster.clone(),
                path: path.clone(),
                authority: authority.clone(),
                refresh_seconds: *refresh_seconds,
                timeout_ms: *timeout_ms,
            }),
        }
    }
}
