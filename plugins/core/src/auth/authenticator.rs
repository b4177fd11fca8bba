//! [`Authenticator`]: the compiled configuration, trying each method in order.

use super::config::{AuthConfig, IdentityHeaders};
use super::credential::{CredentialError, CredentialSource};
use super::decision::{Callout, CalloutKind, Decision, Denial, Progress, Step};
use super::identity::{self, IdentityProperties};
use super::kube::{self, Review};
use super::methods::{self, AuthMethod, Input};
use super::rules::AuthorizationConfig;
use super::{AuthHost, Identity, JwksFetch, RequestView};
use serde_json::Value;

/// One configured method with its name and credential source.
struct Named {
    name: String,
    source: CredentialSource,
    method: Box<dyn AuthMethod>,
}

/// A validated configuration, ready to authenticate requests.
pub struct Authenticator {
    methods: Vec<Named>,
    pub(crate) properties: IdentityProperties,
    /// `metadata` evaluators, run between authentication and the identity properties.
    pub(crate) metadata: super::metadata::Metadata,
    pub(crate) authorization: AuthorizationConfig,
    realm: String,
    /// Identity header names, lower case.
    pub identity_headers: IdentityHeaders,
    /// Credential headers to remove before the request goes upstream.
    pub credential_headers: Vec<String>,
    /// JWKS documents to fetch and refresh.
    pub jwks_fetches: Vec<JwksFetch>,
    /// Whether the host lets the plugin hold request headers while it reads the body.
    pub hold: crate::header_hold::HeaderHold,
}

impl Authenticator {
    /// Compiles a validated configuration.
    pub fn new(config: AuthConfig) -> Self {
        let mut credential_headers = Vec::new();
        let mut methods = Vec::new();
        let mut jwks_fetches = Vec::new();
        let forward_credential = config.forward_credential;
        for m in config.methods {
            let Some((name, source, method)) = methods::build(m) else {
                continue;
            };
            if method.reads_credential() && !forward_credential {
                if let Some(h) = source.header_name() {
                    if !credential_headers.contains(&h) {
                        credential_headers.push(h);
                    }
                }
            }
            jwks_fetches.extend(method.jwks_fetch(&name));
            methods.push(Named {
                name,
                source,
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
        let metadata =
            super::metadata::Metadata::compile("metadata", &config.metadata).unwrap_or_default();
        Self {
            methods,
            properties,
            metadata,
            authorization: config.authorization,
            realm: config.realm,
            identity_headers,
            credential_headers,
            jwks_fetches,
            hold: config.allow_on_headers_stop_iteration,
        }
    }

    /// Decides one request from the first method.
    pub fn authenticate(&self, req: &dyn RequestView, host: &dyn AuthHost) -> Decision {
        self.resume(req, host, Progress::default())
    }

    /// Continues authentication from `progress`: each method in turn until one accepts,
    /// denies or asks for a callout; a 401 when none does.
    pub fn resume(
        &self,
        req: &dyn RequestView,
        host: &dyn AuthHost,
        mut progress: Progress,
    ) -> Decision {
        while let Some(named) = self.methods.get(progress.next) {
            let index = progress.next;
            progress.next += 1;
            let credential = if named.method.reads_credential() {
                match methods::read_credential(&named.source, req) {
                    Ok(c) => Some(c),
                    Err(CredentialError::Malformed) => {
                        progress.presented_invalid = true;
                        continue;
                    }
                    Err(CredentialError::Missing) => continue,
                }
            } else {
                None
            };
            let input = Input {
                name: &named.name,
                credential: credential.as_deref(),
                req,
                host,
            };
            match named.method.authenticate(&input) {
                Step::Ask(mut callout) => {
                    callout.kind = CalloutKind::Token(index);
                    callout.progress = progress;
                    return Decision::Review(callout);
                }
                step => {
                    if let Some(d) = self.settle(req, host, named, step, &mut progress) {
                        return d;
                    }
                }
            }
        }
        Decision::Deny(Denial::unauthenticated(
            &self.realm,
            progress.presented_invalid,
        ))
    }

    /// A final decision for `step`, or `None` to try the next method.
    fn settle(
        &self,
        req: &dyn RequestView,
        host: &dyn AuthHost,
        named: &Named,
        step: Step,
        progress: &mut Progress,
    ) -> Option<Decision> {
        match step {
            Step::Accept { identity, object } if !self.metadata.is_empty() => {
                Some(self.enrich(req, host, identity, object, named.name.clone()))
            }
            Step::Accept { identity, object } => Some(Decision::Allow {
                identity: self.with_properties(req, identity, object),
                method: named.name.clone(),
            }),
            Step::Deny(d) => Some(Decision::Deny(d)),
            Step::Refuse => {
                progress.presented_invalid = true;
                None
            }
            Step::Skip => None,
            // A method asking again after its answer: fail closed.
            Step::Ask(_) => Some(Decision::Deny(Denial::unavailable())),
        }
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
        let CalloutKind::Token(index) = callout.kind else {
            return Decision::Deny(Denial::unavailable());
        };
        let Some(named) = self.methods.get(index) else {
            return Decision::Deny(Denial::unavailable());
        };
        let mut progress = callout.progress;
        let step = named.method.reviewed(&named.name, review);
        match self.settle(req, host, named, step, &mut progress) {
            Some(d) => d,
            None => self.resume(req, host, progress),
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

    /// Reads a callout's answer for the step that asked.
    pub fn read_review(&self, callout: &Callout, status: Option<u32>, body: &[u8]) -> Review {
        match callout.kind {
            CalloutKind::Token(i) => match self.methods.get(i) {
                Some(named) => named.method.read_review(status, body),
                None => Review::Failed,
            },
            CalloutKind::Access => kube::read_access_review(status, body),
            CalloutKind::Metadata(_) => Review::Failed,
        }
    }
}
