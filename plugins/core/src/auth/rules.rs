//! Authorization after authentication: allow rules on host, path, HTTP method, identity and
//! the body's `model`, then optionally a Kubernetes SubjectAccessReview.

use super::kube::SubjectAccessReviewConfig;
use super::{Identity, RequestView};
use crate::headers::strip_port;
use serde::{Deserialize, Serialize};

/// Top-level `authorization`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// Allow rules: a request is authorized when one rule matches (every rule when empty).
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Ask the kube-apiserver too (after the rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_subject_access_review: Option<SubjectAccessReviewConfig>,
    /// Largest body read for a `models` condition (default 8 MiB; larger gets 413).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

fn default_max_body() -> usize {
    8 * 1024 * 1024
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            kubernetes_subject_access_review: None,
            max_body_bytes: default_max_body(),
        }
    }
}

/// One allow rule: every condition given must hold (an empty list means any).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Request host (without port), case-insensitive.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Request path prefixes.
    #[serde(default)]
    pub path_prefixes: Vec<String>,
    /// HTTP methods (`GET`, `POST`).
    #[serde(default)]
    pub http_methods: Vec<String>,
    /// The identity must be in one of these groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The identity's user id must be one of these.
    #[serde(default)]
    pub users: Vec<String>,
    /// The request body's `model` must be one of these (the body is read only when needed).
    #[serde(default)]
    pub models: Vec<String>,
}

/// What the rules say with what is known so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A rule matches.
    Allow,
    /// No rule can match.
    Deny,
    /// Only a rule with a `models` condition can still match: read the body.
    NeedModel,
}

impl Rule {
    fn headers_match(&self, req: &dyn RequestView, id: &Identity) -> bool {
        let host = req.host();
        let host = strip_port(&host);
        let path = req.path();
        let method = req.method();
        (self.hosts.is_empty() || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
            && (self.path_prefixes.is_empty()
                || self
                    .path_prefixes
                    .iter()
                    .any(|p| path.starts_with(p.as_str())))
            && (self.http_methods.is_empty()
                || self
                    .http_methods
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(&method)))
            && (self.groups.is_empty() || self.groups.iter().any(|g| id.groups.contains(g)))
            && (self.users.is_empty() || self.users.contains(&id.userid))
    }
}

impl AuthorizationConfig {
    /// Evaluates the rules; `model` is the body's model once read (`Some("")` when the body
    /// has none or is not an OpenAI request).
    pub fn verdict(&self, req: &dyn RequestView, id: &Identity, model: Option<&str>) -> Verdict {
        if self.rules.is_empty() {
            return Verdict::Allow;
        }
        let mut need_model = false;
        for r in self.rules.iter().filter(|r| r.headers_match(req, id)) {
            if r.models.is_empty() {
                return Verdict::Allow;
            }
            match model {
                Some(m) if r.models.iter().any(|x| x == m) => return Verdict::Allow,
                Some(_) => {}
                None => need_model = true,
            }
        }
        if need_model {
            Verdict::NeedModel
        } else {
            Verdict::Deny
        }
    }
}
