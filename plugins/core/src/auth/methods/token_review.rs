//! `kubernetesTokenReview`: the bearer token is reviewed by the kube-apiserver; answers are
//! cached in shared data (accepted and rejected tokens for their own TTLs).

use super::{AuthMethod, Input};
use crate::auth::apikey::digest_hex;
use crate::auth::decision::{Callout, CalloutKind, Denial, Step};
use crate::auth::kube::{self, FailureMode, Review, TokenReviewConfig};
use crate::auth::{identity, Identity};
use crate::config::ConfigError;

/// Path of the TokenReview API.
pub const PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// The kube-apiserver must be reachable and the gateway must present a token.
pub(crate) fn validate(
    t: &TokenReviewConfig,
    at: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    check_api(&|f| at(&format!("kubernetesTokenReview.{f}")), t.api())
}

/// Checks where and how the kube-apiserver is reached (TokenReview and SubjectAccessReview).
pub(crate) fn check_api(
    at: &dyn Fn(&str) -> String,
    api: kube::ApiServer<'_>,
) -> Result<(), ConfigError> {
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

/// A compiled `kubernetesTokenReview` method.
pub struct TokenReview {
    config: TokenReviewConfig,
}

impl TokenReview {
    /// Wraps a validated configuration.
    pub fn new(config: TokenReviewConfig) -> Self {
        Self { config }
    }
}

impl AuthMethod for TokenReview {
    fn authenticate(&self, input: &Input<'_>) -> Step {
        let Some(credential) = input.credential else {
            return Step::Skip;
        };
        let t = &self.config;
        let cache_key = format!(
            "infergate.auth.tokenreview.{}",
            digest_hex(&[input.name, credential])
        );
        match input
            .host
            .cache_get(&cache_key)
            .and_then(|e| kube::decode_entry(&e, input.host.now()))
        {
            Some(review) => self.reviewed(input.name, review),
            None => Step::Ask(Callout::kube(
                // The authenticator sets the method index and the progress.
                CalloutKind::Token(0),
                t.api(),
                PATH,
                kube::token_review_body(credential, &t.audiences),
                cache_key,
                (t.cache_ttl_seconds, t.negative_cache_ttl_seconds),
            )),
        }
    }

    fn read_review(&self, status: Option<u32>, body: &[u8]) -> Review {
        kube::read_token_review(status, body, &self.config.audiences)
    }

    fn reviewed(&self, _name: &str, review: Review) -> Step {
        match review {
            Review::Accepted(mut identity) => {
                // `user.extra` belongs to `auth.identity`, not to the identity object the
                // rate limiter reads (only the AuthPolicy's properties go there).
                let extra = kube::take_extra(&mut identity);
                let mut object = identity::token_review_object(&identity);
                if let (Some(extra), Some(user)) = (extra, object.get_mut("user")) {
                    user["extra"] = extra;
                }
                Step::Accept {
                    identity,
                    object: Some(object),
                }
            }
            Review::Rejected => Step::Refuse,
            Review::Failed => {
                match self.config.failure_mode {
                    FailureMode::Deny => Step::Deny(Denial::unavailable()),
                    FailureMode::Allow => Step::Accept {
                        identity: self.config.failure_identity.clone().unwrap_or_else(|| {
                            Identity {
                                userid: "unverified".to_string(),
                                ..Identity::default()
                            }
                        }),
                        object: None,
                    },
                    FailureMode::Reject => Step::Refuse,
                }
            }
        }
    }
}
