//! The authentication methods: one file each, behind one trait.
//!
//! Adding a method: a config struct with a field in [`MethodConfig`] (`config.rs`), one file
//! here implementing [`AuthMethod`] with its `validate` and `new`, and one line in each of
//! [`validate`] and [`build`] below. It is testable without Envoy: build an
//! [`super::Authenticator`] from JSON and drive it, or a whole request through
//! [`super::flow::AuthFlow`] with the test host.

pub mod anonymous;
pub mod api_key;
pub mod jwt;
pub mod token_review;

use super::config::MethodConfig;
use super::credential::CredentialSource;
use super::decision::Step;
use super::kube::Review;
use super::{AuthHost, JwksFetch, RequestView};
use crate::config::ConfigError;

/// What a method sees of one request.
pub struct Input<'a> {
    /// The method's configured name.
    pub name: &'a str,
    /// The credential read from the method's [`CredentialSource`] (`None` for methods that
    /// read none).
    pub credential: Option<&'a str>,
    /// The request.
    pub req: &'a dyn RequestView,
    /// Time, key sets, the review cache.
    pub host: &'a dyn AuthHost,
}

/// One configured authentication method.
pub trait AuthMethod {
    /// Whether the method reads a credential; when it does, a missing one skips the method and
    /// a malformed one counts as refused, before [`AuthMethod::authenticate`] is called.
    fn reads_credential(&self) -> bool {
        true
    }

    /// Decides one request (or asks for a callout).
    fn authenticate(&self, input: &Input<'_>) -> Step;

    /// Reads the answer to a callout this method asked for.
    fn read_review(&self, _status: Option<u32>, _body: &[u8]) -> Review {
        Review::Failed
    }

    /// Decides after a callout this method asked for was answered (from the cache or the
    /// service). Only methods that ask need it.
    fn reviewed(&self, _name: &str, _review: Review) -> Step {
        Step::Refuse
    }

    /// The JWKS this method needs fetched and kept fresh, if any.
    fn jwks_fetch(&self, _name: &str) -> Option<JwksFetch> {
        None
    }
}

/// How many method kinds `m` sets (exactly one is valid).
pub(crate) fn kinds(m: &MethodConfig) -> usize {
    usize::from(m.api_key.is_some())
        + usize::from(m.anonymous.is_some())
        + usize::from(m.jwt.is_some())
        + usize::from(m.kubernetes_token_review.is_some())
}

/// Checks the kind-specific part of method `m`; `at` makes a field path under the method.
pub(crate) fn validate(m: &MethodConfig, at: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    if let Some(c) = &m.api_key {
        api_key::validate(c, at)?;
    }
    if let Some(c) = &m.jwt {
        jwt::validate(c, at)?;
    }
    if let Some(c) = &m.kubernetes_token_review {
        token_review::validate(c, at)?;
    }
    if let Some(c) = &m.anonymous {
        anonymous::validate(c, at)?;
    }
    Ok(())
}

/// Compiles the method `m` sets (a validated configuration sets exactly one).
pub(crate) fn build(m: MethodConfig) -> Option<(String, CredentialSource, Box<dyn AuthMethod>)> {
    let method: Box<dyn AuthMethod> = if let Some(c) = m.api_key {
        Box::new(api_key::ApiKey::new(c))
    } else if let Some(c) = m.jwt {
        Box::new(jwt::Jwt::new(c))
    } else if let Some(c) = m.kubernetes_token_review {
        Box::new(token_review::TokenReview::new(c))
    } else if let Some(c) = m.anonymous {
        Box::new(anonymous::Anonymous::new(c))
    } else {
        return None;
    };
    Some((m.name, m.credentials, method))
}

/// Reads the credential of `source` from the request: every value of its header (or query
/// parameter), of which exactly one must be present.
pub(crate) fn read_credential(
    source: &CredentialSource,
    req: &dyn RequestView,
) -> Result<String, super::credential::CredentialError> {
    let owned: Vec<String> = match source {
        CredentialSource::QueryString { name } => {
            super::credential::query_values(&req.path(), name)
                .into_iter()
                .map(str::to_string)
                .collect()
        }
        source => source
            .header_name()
            .map(|h| req.header_values(&h))
            .unwrap_or_default(),
    };
    let values: Vec<&str> = owned.iter().map(String::as_str).collect();
    source.extract(&values).map(str::to_string)
}
