//! What authentication and authorization answer: allow, deny (with the local answer), or make
//! a callout first; and the callouts themselves.

use super::Identity;
use crate::openai_error::ErrorKind;
use serde_json::Value;

/// How far authentication got, so it can resume after a callout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Index of the next method to try.
    pub(crate) next: usize,
    /// Some method saw a credential and refused it (the final 401 says `invalid_token`).
    pub(crate) presented_invalid: bool,
}

/// Which step a callout belongs to, so its answer goes back to that step.
///
/// A new kind of callout (say, a metadata HTTP call) is one more variant here, built where
/// its step runs and matched where [`super::flow::AuthFlow`] reads answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalloutKind {
    /// A TokenReview for method index `.0`.
    Token(usize),
    /// The SubjectAccessReview of `authorization`.
    Access,
    /// The HTTP call of metadata evaluator `.0` (`auth.metadata.<name>`).
    Metadata(usize),
}

/// An HTTP call the adapter must make through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    /// What is asked.
    pub kind: CalloutKind,
    /// Envoy cluster.
    pub cluster: String,
    /// `:authority`.
    pub authority: String,
    /// `:method`.
    pub method: &'static str,
    /// `:path`.
    pub path: String,
    /// `Authorization` value of the call (none sent when empty).
    pub authorization: String,
    /// Further request headers.
    pub headers: Vec<(String, String)>,
    /// Body (JSON for the Kubernetes reviews).
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
    /// A metadata call's state (the accepted caller, the authorization JSON so far).
    pub metadata: Option<Box<super::metadata::step::MetadataPending>>,
}

impl Callout {
    /// A JSON `POST` to the kube-apiserver (TokenReview, SubjectAccessReview).
    pub(crate) fn kube(
        kind: CalloutKind,
        api: super::kube::ApiServer<'_>,
        path: &str,
        body: Vec<u8>,
        cache_key: String,
        ttls: (u64, u64),
    ) -> Self {
        Self {
            kind,
            cluster: api.cluster.to_string(),
            authority: api.authority.to_string(),
            method: "POST",
            path: path.to_string(),
            authorization: format!("Bearer {}", api.bearer_token),
            headers: vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("accept".to_string(), "application/json".to_string()),
            ],
            body,
            timeout_ms: api.timeout_ms,
            cache_key,
            ttl_accepted: ttls.0,
            ttl_rejected: ttls.1,
            progress: Progress::default(),
            metadata: None,
        }
    }
}

/// The outcome of authentication (or of one step of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through as `identity` (authorization follows).
    Allow {
        /// The caller, with `identityProperties` applied.
        identity: Identity,
        /// Name of the method that accepted.
        method: String,
    },
    /// Answer locally.
    Deny(Denial),
    /// Ask the kube-apiserver, then resume with [`super::Authenticator::token_reviewed`].
    Review(Callout),
}

/// The outcome of authorization (or of one step of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// Authorized.
    Allow,
    /// Answer locally (403, or 503 when the kube-apiserver is unavailable).
    Deny(Denial),
    /// Read the body and call [`super::Authenticator::authorize`] again with its `model`.
    NeedModel,
    /// Ask the kube-apiserver, then finish with [`super::Authenticator::access_reviewed`].
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

impl Denial {
    /// 401: no method accepted; `presented_invalid` when some credential was refused.
    pub fn unauthenticated(realm: &str, presented_invalid: bool) -> Self {
        if presented_invalid {
            Self {
                kind: ErrorKind::Unauthenticated,
                code: "invalid_api_key",
                message: "The credential presented is not valid.",
                www_authenticate: Some(format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_token\""
                )),
                reason: "invalid_credential",
            }
        } else {
            Self {
                kind: ErrorKind::Unauthenticated,
                code: "missing_credential",
                message: "This endpoint requires a credential.",
                www_authenticate: Some(format!("Bearer realm=\"{realm}\"")),
                reason: "missing_credential",
            }
        }
    }

    /// 403: authenticated but not authorized.
    pub fn forbidden() -> Self {
        Self {
            kind: ErrorKind::Forbidden,
            code: "permission_denied",
            message: "The credential is valid but does not grant access to this resource.",
            www_authenticate: None,
            reason: "forbidden",
        }
    }

    /// 503: the credential cannot be checked now (keys or kube-apiserver unavailable).
    pub fn unavailable() -> Self {
        Self {
            kind: ErrorKind::Unavailable,
            code: "authentication_unavailable",
            message: "The gateway cannot verify credentials right now; retry shortly.",
            www_authenticate: None,
            reason: "unavailable",
        }
    }
}

/// What one authentication method says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Accepted as `identity`; `object` is what Authorino holds as `auth.identity` when it is
    /// richer than the identity itself (JWT claims, the TokenReview status).
    Accept {
        /// The caller.
        identity: Identity,
        /// The identity object for `identityProperties` selectors.
        object: Option<Value>,
    },
    /// Nothing for this method here (no credential where it looks, conditions not met): the
    /// next method is tried.
    Skip,
    /// A credential was presented and refused: the next method is tried, and the final 401
    /// says `invalid_token`.
    Refuse,
    /// Stop here with this answer (keys unavailable under `failureMode: deny`).
    Deny(Denial),
    /// Make this callout; its answer goes to [`super::method::AuthMethod::reviewed`].
    Ask(Callout),
}
