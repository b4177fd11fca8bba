//! Kubernetes TokenReview (`authentication.k8s.io/v1`) and SubjectAccessReview
//! (`authorization.k8s.io/v1`): the request bodies the gateway POSTs to the kube-apiserver, the
//! answers it reads, and the cache entries that spare the common path a callout.
//!
//! The gateway calls the kube-apiserver directly through an Envoy cluster, authenticating with
//! a service-account token given in the configuration (`bearerToken`): that service account
//! needs `create` on `tokenreviews` (`system:auth-delegator` grants it) and, for
//! SubjectAccessReview, `create` on `subjectaccessreviews`.

use super::Identity;
use serde::{Deserialize, Serialize};

/// What to do when the kube-apiserver cannot be asked (error status, reset, timeout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureMode {
    /// Answer 503 `authentication_unavailable` (the default): fail closed, tell the client
    /// to retry, reveal nothing about its credential.
    #[default]
    Deny,
    /// Let the request through (TokenReview: as `failureIdentity`; SubjectAccessReview:
    /// authorized).
    Allow,
    /// Treat the credential as not accepted by this method: the next method is tried, and a
    /// 401 follows if none accepts (JWT: until the first JWKS fetch succeeded).
    Reject,
}

/// Where and how to reach the kube-apiserver (the first four fields of both review configs;
/// not flattened with serde, which costs tens of KB of Wasm).
#[derive(Debug, Clone, Copy)]
pub struct ApiServer<'a> {
    /// Envoy cluster.
    pub cluster: &'a str,
    /// `:authority`.
    pub authority: &'a str,
    /// Service-account token.
    pub bearer_token: &'a str,
    /// Timeout in milliseconds.
    pub timeout_ms: u64,
}

macro_rules! api_server {
    ($t:ty) => {
        impl $t {
            /// The kube-apiserver this review goes to.
            pub fn api(&self) -> ApiServer<'_> {
                ApiServer {
                    cluster: &self.cluster,
                    authority: &self.authority,
                    bearer_token: &self.bearer_token,
                    timeout_ms: self.timeout_ms,
                }
            }
        }
    };
}
api_server!(TokenReviewConfig);
api_server!(SubjectAccessReviewConfig);

fn default_authority() -> String {
    "kubernetes.default.svc".to_string()
}

fn default_timeout() -> u64 {
    1000
}

fn default_ttl() -> u64 {
    60
}

fn default_negative_ttl() -> u64 {
    10
}

/// `kubernetesTokenReview` method: the bearer token is reviewed by the kube-apiserver.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenReviewConfig {
    /// Envoy cluster of the kube-apiserver (HTTPS to it is the cluster's transport socket).
    pub cluster: String,
    /// `:authority` of the calls (default `kubernetes.default.svc`).
    #[serde(default = "default_authority")]
    pub authority: String,
    /// Service-account token the gateway presents to the kube-apiserver.
    pub bearer_token: String,
    /// Callout timeout in milliseconds (default 1000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// `spec.audiences` of the review; the answer's `status.audiences` must hold one of them.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Seconds an accepted token is remembered (default 60).
    #[serde(default = "default_ttl")]
    pub cache_ttl_seconds: u64,
    /// Seconds a rejected token is remembered (default 10).
    #[serde(default = "default_negative_ttl")]
    pub negative_cache_ttl_seconds: u64,
    /// When the kube-apiserver cannot answer.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Identity under `failureMode: allow` (default user `unverified`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_identity: Option<Identity>,
}

/// Authorization by SubjectAccessReview, checked after authentication.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubjectAccessReviewConfig {
    /// Envoy cluster of the kube-apiserver (HTTPS to it is the cluster's transport socket).
    pub cluster: String,
    /// `:authority` of the calls (default `kubernetes.default.svc`).
    #[serde(default = "default_authority")]
    pub authority: String,
    /// Service-account token the gateway presents to the kube-apiserver.
    pub bearer_token: String,
    /// Callout timeout in milliseconds (default 1000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Verb (default `get`).
    #[serde(default = "default_verb")]
    pub verb: String,
    /// API group of the resource (default `serving.kserve.io`).
    #[serde(default = "default_group")]
    pub group: String,
    /// Resource (default `llminferenceservices`).
    #[serde(default = "default_resource")]
    pub resource: String,
    /// Seconds an answer (either way) is remembered (default 60).
    #[serde(default = "default_ttl")]
    pub cache_ttl_seconds: u64,
    /// When the kube-apiserver cannot answer (`deny`: 503; `allow`: authorized; `reject`: 403).
    #[serde(default)]
    pub failure_mode: FailureMode,
}

fn default_verb() -> String {
    "get".to_string()
}
fn default_group() -> String {
    "serving.kserve.io".to_string()
}
fn default_resource() -> String {
    "llminferenceservices".to_string()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<S> {
    api_version: &'static str,
    kind: &'static str,
    spec: S,
}

#[derive(Serialize)]
struct TokenReviewSpec<'a> {
    token: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    audiences: &'a [String],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AccessReviewSpec<'a> {
    user: &'a str,
    groups: &'a [String],
    resource_attributes: ResourceAttributes<'a>,
}

#[derive(Serialize)]
struct ResourceAttributes<'a> {
    namespace: &'a str,
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    name: &'a str,
}

/// The TokenReview request body.
pub fn token_review_body(token: &str, audiences: &[String]) -> Vec<u8> {
    serde_json::to_vec(&Envelope {
        api_version: "authentication.k8s.io/v1",
        kind: "TokenReview",
        spec: TokenReviewSpec { token, audiences },
    })
    .unwrap_or_default()
}

/// What a review said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    /// Authenticated as this identity / access allowed.
    Accepted(Identity),
    /// Not authenticated / not allowed.
    Rejected,
    /// No usable answer (status other than 200/201, not JSON): the failure mode decides.
    Failed,
}

#[derive(Deserialize)]
struct Answer<S> {
    kind: String,
    #[serde(default)]
    status: Option<S>,
}

#[derive(Deserialize, Default)]
struct TokenReviewStatus {
    #[serde(default)]
    authenticated: bool,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    user: UserInfo,
}

#[derive(Deserialize, Default)]
struct UserInfo {
    #[serde(default)]
    username: String,
    #[serde(default)]
    groups: Vec<String>,
    /// `user.extra` (e.g. `scopes.authorization.openshift.io`), kept for identity properties.
    #[serde(default)]
    extra: std::collections::BTreeMap<String, Vec<String>>,
}

/// Where an accepted review keeps the user's `extra` in [`Identity::properties`] until the
/// TokenReview method moves it into the `auth.identity` object ([`take_extra`]).
pub const EXTRA_PROPERTY: &str = "\u{0}user.extra";

/// Removes the TokenReview `user.extra` an accepted review carried, if any.
pub fn take_extra(identity: &mut Identity) -> Option<serde_json::Value> {
    identity.properties.remove(EXTRA_PROPERTY)
}

#[derive(Deserialize, Default)]
struct AccessReviewStatus {
    #[serde(default)]
    allowed: bool,
    #[serde(default)]
    denied: bool,
}

fn answer<S: serde::de::DeserializeOwned + Default>(
    status: Option<u32>,
    body: &[u8],
    kind: &str,
) -> Option<S> {
    if !matches!(status, Some(200 | 201)) {
        return None;
    }
    let a: Answer<S> = serde_json::from_slice(body).ok()?;
    (a.kind == kind).then(|| a.status.unwrap_or_default())
}

/// Reads a TokenReview answer with HTTP status `status`.
pub fn read_token_review(status: Option<u32>, body: &[u8], audiences: &[String]) -> Review {
    let Some(s) = answer::<TokenReviewStatus>(status, body, "TokenReview") else {
        return Review::Failed;
    };
    if !s.authenticated || s.user.username.is_empty() {
        return Review::Rejected;
    }
    if !audiences.is_empty() && !s.audiences.iter().any(|a| audiences.contains(a)) {
        return Review::Rejected;
    }
    let mut identity = Identity {
        userid: s.user.username,
        groups: s.user.groups,
        ..Identity::default()
    };
    if !s.user.extra.is_empty() {
        if let Ok(extra) = serde_json::to_value(&s.user.extra) {
            identity
                .properties
                .insert(EXTRA_PROPERTY.to_string(), extra);
        }
    }
    Review::Accepted(identity)
}

/// The SubjectAccessReview request body for `identity` on resource `name` in `namespace`.
pub fn access_review_body(
    c: &SubjectAccessReviewConfig,
    identity: &Identity,
    namespace: &str,
    name: &str,
) -> Vec<u8> {
    serde_json::to_vec(&Envelope {
        api_version: "authorization.k8s.io/v1",
        kind: "SubjectAccessReview",
        spec: AccessReviewSpec {
            user: &identity.userid,
            groups: &identity.groups,
            resource_attributes: ResourceAttributes {
                namespace,
                verb: &c.verb,
                group: &c.group,
                resource: &c.resource,
                name,
            },
        },
    })
    .unwrap_or_default()
}

/// Reads a SubjectAccessReview answer.
pub fn read_access_review(status: Option<u32>, body: &[u8]) -> Review {
    match answer::<AccessReviewStatus>(status, body, "SubjectAccessReview") {
        None => Review::Failed,
        Some(s) if s.allowed && !s.denied => Review::Accepted(Identity::default()),
        Some(_) => Review::Rejected,
    }
}

/// `/<namespace>/<name>/…` → `(namespace, name)`, as OpenShift AI routes models.
pub fn namespace_and_name(path: &str) -> Option<(&str, &str)> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut segs = path.trim_start_matches('/').split('/');
    let ns = segs.next().filter(|s| !s.is_empty())?;
    let name = segs.next().filter(|s| !s.is_empty())?;
    Some((ns, name))
}

#[derive(Serialize)]
struct IdentityRef<'a> {
    userid: &'a str,
    groups: &'a [String],
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    properties: &'a std::collections::BTreeMap<String, serde_json::Value>,
}

/// A cached review answer, as stored in shared data: `<expires> A <identity json>` or
/// `<expires> R`.
pub fn encode_entry(expires: u64, review: &Review) -> Option<Vec<u8>> {
    match review {
        Review::Accepted(id) => {
            let mut out = format!("{expires} A ").into_bytes();
            out.extend(
                serde_json::to_vec(&IdentityRef {
                    userid: &id.userid,
                    groups: &id.groups,
                    properties: &id.properties,
                })
                .ok()?,
            );
            Some(out)
        }
        Review::Rejected => Some(format!("{expires} R").into_bytes()),
        Review::Failed => None,
    }
}

/// Reads a cache entry; `None` when absent, unreadable or expired at `now`.
pub fn decode_entry(bytes: &[u8], now: u64) -> Option<Review> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (expires, rest) = text.split_once(' ')?;
    if expires.parse::<u64>().ok()? <= now {
        return None;
    }
    match rest.split_once(' ') {
        Some(("A", json)) => serde_json::from_str::<Identity>(json)
            .ok()
            .map(Review::Accepted),
        None if rest == "R" => Some(Review::Rejected),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn token_review_round_trip() {
        let body = token_review_body("tok", &["aud1".to_string()]);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(v["spec"]["token"], "tok");
        assert_eq!(v["spec"]["audiences"][0], "aud1");
        let ok = json!({"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","status":{
            "authenticated":true,"audiences":["aud1"],
            "user":{"username":"system:serviceaccount:ns:sa","groups":["system:serviceaccounts","g"]}}});
        let auds = vec!["aud1".to_string()];
        match read_token_review(Some(201), ok.to_string().as_bytes(), &auds) {
            Review::Accepted(id) => {
                assert_eq!(id.userid, "system:serviceaccount:ns:sa");
                assert_eq!(id.groups, vec!["system:serviceaccounts", "g"]);
            }
            other => panic!("{other:?}"),
        }
        let other_aud = vec!["aud2".to_string()];
        assert_eq!(
            read_token_review(Some(201), ok.to_string().as_bytes(), &other_aud),
            Review::Rejected
        );
        let no = json!({"kind":"TokenReview","status":{"authenticated":false,"error":"expired"}});
        assert_eq!(
            read_token_review(Some(201), no.to_string().as_bytes(), &[]),
            Review::Rejected
        );
        assert_eq!(read_token_review(Some(500), b"{}", &[]), Review::Failed);
        assert_eq!(read_token_review(None, b"", &[]), Review::Failed);
        assert_eq!(read_token_review(Some(200), b"<html>", &[]), Review::Failed);
    }

    #[test]
    fn access_review_and_path() {
        let c: SubjectAccessReviewConfig =
            serde_json::from_value(json!({"cluster":"k","bearerToken":"t"})).unwrap();
        let id = Identity {
            userid: "u".into(),
            groups: vec!["g".into()],
            ..Identity::default()
        };
        let v: Value = serde_json::from_slice(&access_review_body(&c, &id, "ns", "m")).unwrap();
        assert_eq!(
            v["spec"]["resourceAttributes"]["resource"],
            "llminferenceservices"
        );
        assert_eq!(
            v["spec"]["resourceAttributes"]["group"],
            "serving.kserve.io"
        );
        assert_eq!(v["spec"]["resourceAttributes"]["verb"], "get");
        assert_eq!(v["spec"]["resourceAttributes"]["namespace"], "ns");
        assert_eq!(v["spec"]["user"], "u");
        let yes = json!({"kind":"SubjectAccessReview","status":{"allowed":true}});
        assert!(matches!(
            read_access_review(Some(201), yes.to_string().as_bytes()),
            Review::Accepted(_)
        ));
        let no = json!({"kind":"SubjectAccessReview","status":{"allowed":false}});
        assert_eq!(
            read_access_review(Some(201), no.to_string().as_bytes()),
            Review::Rejected
        );
        assert_eq!(read_access_review(Some(403), b""), Review::Failed);
        assert_eq!(
            namespace_and_name("/my-ns/qwen/v1/chat/completions"),
            Some(("my-ns", "qwen"))
        );
        assert_eq!(namespace_and_name("/v1?x"), None);
    }

    #[test]
    fn cache_entries_expire() {
        let id = Identity {
            userid: "u".into(),
            groups: vec!["g".into()],
            ..Identity::default()
        };
        let e = encode_entry(100, &Review::Accepted(id.clone())).unwrap();
        assert_eq!(decode_entry(&e, 99), Some(Review::Accepted(id)));
        assert_eq!(decode_entry(&e, 100), None);
        let r = encode_entry(50, &Review::Rejected).unwrap();
        assert_eq!(decode_entry(&r, 10), Some(Review::Rejected));
        assert!(encode_entry(1, &Review::Failed).is_none());
        assert_eq!(decode_entry(b"garbage", 0), None);
    }
}
