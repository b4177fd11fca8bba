//! The metadata step of the auth flow: after a method accepts the caller and before the
//! identity properties are built, each evaluator runs (cached answer, else an HTTP call
//! through Envoy); the answers become `auth.metadata.<name>` in the authorization JSON the
//! properties select from.

use super::{read_answer, MetadataCall, MetadataError, MetadataProgress, MetadataStep};
use crate::auth::decision::{Callout, CalloutKind, Decision, Denial, Progress};
use crate::auth::{identity, AuthHost, Authenticator, Identity, RequestView};
use serde_json::Value;

/// What a metadata callout carries through the host: the caller accepted so far and the
/// authorization JSON being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataPending {
    /// The accepted caller (properties not applied yet).
    pub identity: Identity,
    /// The method that accepted.
    pub method: String,
    /// The run so far.
    pub progress: MetadataProgress,
    /// The call out.
    pub call: MetadataCall,
}

/// What the flow does with a metadata answer: the decision, a cache entry to write, and
/// whether the call failed (for the `callouts.failed` stat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataOutcome {
    /// What happens to the request next.
    pub decision: Decision,
    /// `(key, value)` to store in shared data.
    pub cache: Option<(String, Vec<u8>)>,
    /// The call failed.
    pub failed: Option<MetadataError>,
}

impl MetadataCall {
    /// The host callout for this call.
    fn callout(&self, pending: MetadataPending) -> Callout {
        let get = |name: &str| self.header(name).unwrap_or_default().to_string();
        let method = match self.header(":method") {
            Some("POST") => "POST",
            _ => "GET",
        };
        Callout {
            kind: CalloutKind::Metadata(self.index),
            cluster: self.cluster.clone(),
            authority: get(":authority"),
            method,
            path: get(":path"),
            authorization: String::new(),
            headers: self
                .headers
                .iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .cloned()
                .collect(),
            body: self.body.clone(),
            timeout_ms: self.timeout_ms,
            cache_key: self.cache_key.clone().unwrap_or_default(),
            ttl_accepted: self.ttl_seconds,
            ttl_rejected: 0,
            progress: Progress::default(),
            metadata: Some(Box::new(pending)),
        }
    }
}

impl Authenticator {
    /// A method accepted `identity` (`object`: what Authorino holds as `auth.identity`): run
    /// the metadata evaluators, then apply the identity properties.
    pub(crate) fn enrich(
        &self,
        req: &dyn RequestView,
        host: &dyn AuthHost,
        identity: Identity,
        object: Option<Value>,
        method: String,
    ) -> Decision {
        let object = object.unwrap_or_else(|| identity::identity_object(&identity));
        let json = identity::authorization_json(req, object, Value::Object(Default::default()));
        let progress = MetadataProgress::new(json);
        self.continue_metadata(host, identity, method, progress, None)
    }

    fn continue_metadata(
        &self,
        host: &dyn AuthHost,
        identity: Identity,
        method: String,
        mut progress: MetadataProgress,
        answer: Option<(&MetadataCall, Result<Value, MetadataError>)>,
    ) -> Decision {
        let get = |k: &str| host.cache_get(k);
        let step = match answer {
            Some((call, result)) => {
                self.metadata
                    .answered(&mut progress, call, result, &get, host.now())
            }
            None => self.metadata.advance(&mut progress, &get, host.now()),
        };
        match step {
            MetadataStep::Done => {
                let props = self.properties.build(progress.authorization());
                Decision::Allow {
                    identity: identity::apply(identity, props),
                    method,
                }
            }
            MetadataStep::Call(call) => {
                let pending = MetadataPending {
                    identity,
                    method,
                    progress,
                    call: call.clone(),
                };
                Decision::Review(call.callout(pending))
            }
            MetadataStep::Deny(_) => Decision::Deny(Denial::unavailable()),
        }
    }

    /// The answer to a metadata callout (`status` `None`: timed out or reset): the next
    /// evaluator, or the decision with the identity properties applied.
    pub fn metadata_answered(
        &self,
        host: &dyn AuthHost,
        callout: Callout,
        status: Option<u32>,
        body: &[u8],
    ) -> MetadataOutcome {
        let Some(pending) = callout.metadata else {
            return MetadataOutcome {
                decision: Decision::Deny(Denial::unavailable()),
                cache: None,
                failed: Some(MetadataError::Unreachable),
            };
        };
        let MetadataPending {
            identity,
            method,
            progress,
            call,
        } = *pending;
        let result = read_answer(&call, status, None, body.len(), body);
        let cache = result
            .as_ref()
            .ok()
            .and_then(|v| call.cache_entry(v, host.now()));
        let failed = result.as_ref().err().copied();
        let decision =
            self.continue_metadata(host, identity, method, progress, Some((&call, result)));
        MetadataOutcome {
            decision,
            cache,
            failed,
        }
    }
}
