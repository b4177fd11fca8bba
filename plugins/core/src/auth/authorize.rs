//! Authorization of an authenticated identity: the allow rules, then optionally a Kubernetes
//! SubjectAccessReview (cached in shared data).

use super::apikey::digest_hex;
use super::authenticator::Authenticator;
use super::decision::{Authorization, Callout, CalloutKind, Denial};
use super::kube::{self, FailureMode, Review};
use super::rules::Verdict;
use super::{AuthHost, Identity, RequestView};

/// Path of the SubjectAccessReview API.
pub const PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

impl Authenticator {
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
            Verdict::Deny => return Authorization::Deny(Denial::forbidden()),
            Verdict::NeedModel => return Authorization::NeedModel,
            Verdict::Allow => {}
        }
        let Some(sar) = &self.authorization.kubernetes_subject_access_review else {
            return Authorization::Allow;
        };
        let path = req.path();
        let Some((namespace, name)) = kube::namespace_and_name(&path) else {
            return Authorization::Deny(Denial::forbidden());
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
            Some(_) => Authorization::Deny(Denial::forbidden()),
            None => Authorization::Review(Callout::kube(
                CalloutKind::Access,
                sar.api(),
                PATH,
                kube::access_review_body(sar, identity, namespace, name),
                cache_key,
                (sar.cache_ttl_seconds, sar.cache_ttl_seconds),
            )),
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
            Review::Rejected => Authorization::Deny(Denial::forbidden()),
            Review::Failed => match mode {
                FailureMode::Deny => Authorization::Deny(Denial::unavailable()),
                FailureMode::Allow => Authorization::Allow,
                FailureMode::Reject => Authorization::Deny(Denial::forbidden()),
            },
        }
    }
}
