//! The input: Kubernetes resources read from multi-document YAML, typed as far as we use them.
//!
//! Kuadrant policies are read strictly (`deny_unknown_fields`): a field this translator does
//! not know is an error naming it, never a silently ignored setting. Gateway API and GIE
//! resources are read leniently: only the fields we use are looked at.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `metadata` of any object.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace (`default` when absent).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Meta {
    /// The namespace, `default` when unset.
    pub fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

/// A Kuadrant `targetRef` (`LocalPolicyTargetReferenceWithSectionName`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    /// `gateway.networking.k8s.io`.
    pub group: String,
    /// `Gateway` or `HTTPRoute`.
    pub kind: String,
    /// Name, in the policy's namespace.
    pub name: String,
    /// Listener name (Gateway) or rule name (HTTPRoute).
    #[serde(default)]
    pub section_name: Option<String>,
}

/// `{predicate: "<CEL>"}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WhenPredicate {
    /// The CEL expression.
    pub predicate: String,
}

/// `atomic` (default) or `merge`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    /// The more specific (defaults) / less specific (overrides) policy wins as a whole.
    #[default]
    Atomic,
    /// Rules (by name) are merged; the winner of a conflict as for `atomic`.
    Merge,
}

// ---------------------------------------------------------------------------------------------
// AuthPolicy (kuadrant.io/v1)

/// `AuthPolicy.spec`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthPolicySpec {
    /// What it attaches to.
    pub target_ref: TargetRef,
    /// Implicit defaults.
    #[serde(default)]
    pub rules: Option<AuthRules>,
    /// Top-level conditions.
    #[serde(default)]
    pub when: Vec<WhenPredicate>,
    /// Explicit defaults.
    #[serde(default)]
    pub defaults: Option<AuthMergeable>,
    /// Overrides.
    #[serde(default)]
    pub overrides: Option<AuthMergeable>,
}

/// `defaults` / `overrides` of an AuthPolicy.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthMergeable {
    /// Merge strategy.
    #[serde(default)]
    pub strategy: Strategy,
    /// The rules.
    #[serde(default)]
    pub rules: Option<AuthRules>,
    /// Conditions.
    #[serde(default)]
    pub when: Vec<WhenPredicate>,
}

/// `rules` of an AuthPolicy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthRules {
    /// Identity sources, by name.
    #[serde(default)]
    pub authentication: BTreeMap<String, AuthenticationRule>,
    /// Authorization checks, by name.
    #[serde(default)]
    pub authorization: BTreeMap<String, AuthorizationRule>,
    /// External metadata, by name (`auth.metadata.<name>`).
    #[serde(default)]
    pub metadata: BTreeMap<String, crate::metadata::MetadataRule>,
    /// Response shaping (only the identity filter is supported).
    #[serde(default)]
    pub response: Option<ResponseRules>,
}

/// One `rules.authentication.<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthenticationRule {
    /// API keys from labelled Secrets.
    #[serde(default)]
    pub api_key: Option<ApiKeySpec>,
    /// JWT.
    #[serde(default)]
    pub jwt: Option<JwtSpec>,
    /// Kubernetes TokenReview.
    #[serde(default)]
    pub kubernetes_token_review: Option<TokenReviewSpec>,
    /// Anonymous access (`{}`).
    #[serde(default)]
    pub anonymous: Option<serde_json::Map<String, Value>>,
    /// Where the credential is.
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// Conditions for this source.
    #[serde(default)]
    pub when: Vec<WhenPredicate>,
    /// Lower is tried first.
    #[serde(default)]
    pub priority: Option<i64>,
}

/// `apiKey`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeySpec {
    /// Which Secrets hold the keys.
    pub selector: LabelSelector,
    /// Secrets of every namespace (else the policy's).
    #[serde(default)]
    pub all_namespaces: bool,
}

/// A label selector (only `matchLabels`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels that must all be present with these values.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// `jwt`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtSpec {
    /// OIDC issuer (`iss`).
    #[serde(default)]
    pub issuer_url: Option<String>,
    /// JWKS location.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// JWKS refresh seconds.
    #[serde(default)]
    pub ttl: Option<u64>,
}

/// `kubernetesTokenReview`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenReviewSpec {
    /// Audiences the token must be valid for.
    #[serde(default)]
    pub audiences: Vec<String>,
}

/// `credentials`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credentials {
    /// `Authorization: <prefix> <credential>`.
    #[serde(default)]
    pub authorization_header: Option<PrefixSpec>,
    /// A custom header.
    #[serde(default)]
    pub custom_header: Option<NameSpec>,
    /// A query parameter.
    #[serde(default)]
    pub query_string: Option<NameSpec>,
}

/// `{prefix}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixSpec {
    /// Scheme (`Bearer` when absent).
    #[serde(default)]
    pub prefix: Option<String>,
}

/// `{name}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameSpec {
    /// Header or parameter name.
    pub name: String,
}

/// One `rules.authorization.<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationRule {
    /// Kubernetes SubjectAccessReview.
    #[serde(default)]
    pub kubernetes_subject_access_review: Option<SarSpec>,
    /// Pattern matching on identity and request attributes.
    #[serde(default)]
    pub pattern_matching: Option<PatternMatching>,
    /// Conditions.
    #[serde(default)]
    pub when: Vec<WhenPredicate>,
    /// Order.
    #[serde(default)]
    pub priority: Option<i64>,
}

/// `patternMatching`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternMatching {
    /// Patterns, all must hold.
    pub patterns: Vec<PatternSpec>,
}

/// A `patternMatching` pattern: a CEL predicate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternSpec {
    /// The CEL expression.
    pub predicate: String,
}

/// `kubernetesSubjectAccessReview`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SarSpec {
    /// The user reviewed.
    #[serde(default)]
    pub user: Option<ValueOrSelector>,
    /// Groups reviewed.
    #[serde(default)]
    pub authorization_groups: Option<ValueOrSelector>,
    /// The resource.
    #[serde(default)]
    pub resource_attributes: Option<ResourceAttributes>,
}

/// `resourceAttributes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceAttributes {
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<ValueOrSelector>,
    /// API group.
    #[serde(default)]
    pub group: Option<ValueOrSelector>,
    /// Resource.
    #[serde(default)]
    pub resource: Option<ValueOrSelector>,
    /// Name.
    #[serde(default)]
    pub name: Option<ValueOrSelector>,
    /// Verb.
    #[serde(default)]
    pub verb: Option<ValueOrSelector>,
}

/// `{value}` | `{selector}` | `{expression}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueOrSelector {
    /// Static value.
    #[serde(default)]
    pub value: Option<Value>,
    /// Authorization JSON path.
    #[serde(default)]
    pub selector: Option<String>,
    /// CEL expression.
    #[serde(default)]
    pub expression: Option<String>,
}

/// `response`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseRules {
    /// `success`.
    #[serde(default)]
    pub success: Option<SuccessResponse>,
}

/// `response.success`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuccessResponse {
    /// Dynamic metadata for other filters (`identity` is what rate limits read).
    #[serde(default)]
    pub filters: BTreeMap<String, SuccessItem>,
}

/// One `response.success.filters.<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuccessItem {
    /// JSON object built from properties.
    pub json: JsonProperties,
}

/// `json.properties`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonProperties {
    /// Property → source.
    pub properties: BTreeMap<String, ValueOrSelector>,
}

// ---------------------------------------------------------------------------------------------
// RateLimitPolicy (kuadrant.io/v1) and TokenRateLimitPolicy (kuadrant.io/v1alpha1)

/// `spec` of RateLimitPolicy and TokenRateLimitPolicy (same shape).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitSpec {
    /// What it attaches to.
    pub target_ref: TargetRef,
    /// Implicit defaults.
    #[serde(default)]
    pub limits: Option<BTreeMap<String, LimitSpec>>,
    /// Top-level conditions.
    #[serde(default)]
    pub when: Vec<WhenPredicate>,
    /// Explicit defaults.
    #[serde(default)]
    pub defaults: Option<LimitsMergeable>,
    /// Overrides.
    #[serde(default)]
    pub overrides: Option<LimitsMergeable>,
}

/// `defaults` / `overrides` of a rate-limit policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsMergeable {
    /// Merge strategy.
    #[serde(default)]
    pub strategy: Strategy,
    /// The limits.
    #[serde(default)]
    pub limits: BTreeMap<String, LimitSpec>,
    /// Conditions.
    #[serde(default)]
    pub when: Vec<WhenPredicate>,
}

/// One named limit.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitSpec {
    /// Rates, all must hold.
    pub rates: Vec<RateSpec>,
    /// Counter qualifiers.
    #[serde(default)]
    pub counters: Vec<CounterSpec>,
    /// Conditions.
    #[serde(default)]
    pub when: Vec<WhenPredicate>,
}

/// `{limit, window}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// Units per window.
    pub limit: u64,
    /// Kuadrant window.
    pub window: String,
}

/// `{expression}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CounterSpec {
    /// CEL expression (an attribute path).
    pub expression: String,
}

// ---------------------------------------------------------------------------------------------
// The loaded set

/// One resource as read.
#[derive(Debug, Clone)]
pub struct Object {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata`.
    pub meta: Meta,
    /// The whole document.
    pub doc: Value,
    /// The file it came from.
    pub source: PathBuf,
}

impl Object {
    /// `Kind namespace/name`, as errors name it.
    pub fn id(&self) -> String {
        format!("{} {}/{}", self.kind, self.meta.ns(), self.meta.name)
    }

    /// Deserializes `spec` strictly; errors name the field.
    pub fn spec<T: DeserializeOwned>(&self) -> Result<T> {
        let spec = self.doc.get("spec").cloned().unwrap_or(Value::Null);
        serde_path_to_error::deserialize(spec).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." || path.is_empty() {
                "spec".to_string()
            } else {
                format!("spec.{path}")
            };
            Error::new(self.id(), field, e.into_inner().to_string())
        })
    }
}

/// Every resource read, in input order.
#[derive(Debug, Clone, Default)]
pub struct Bundle {
    /// The objects.
    pub objects: Vec<Object>,
}

impl Bundle {
    /// Reads files and folders (`.yaml`, `.yml`, `.json`, recursively, sorted by name).
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        for p in paths {
            collect(p, &mut files)?;
        }
        let mut bundle = Bundle::default();
        for f in files {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| Error::new(f.display().to_string(), ".", e.to_string()))?;
            bundle.add_yaml(&text, &f)?;
        }
        Ok(bundle)
    }

    /// Adds the documents of a multi-document YAML text.
    pub fn add_yaml(&mut self, text: &str, source: &Path) -> Result<()> {
        for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let at = || format!("{} (document {})", source.display(), i + 1);
            let doc = Value::deserialize(de).map_err(|e| Error::new(at(), ".", e.to_string()))?;
            if doc.is_null() {
                continue;
            }
            let s = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let (api_version, kind) = (s("apiVersion"), s("kind"));
            if kind.is_empty() {
                return Err(Error::new(at(), "kind", "every document needs a `kind`"));
            }
            if kind == "List" {
                let items = doc.get("items").and_then(Value::as_array).cloned();
                let text = serde_yaml::to_string(&items.unwrap_or_default())
                    .map_err(|e| Error::new(at(), "items", e.to_string()))?;
                for item in serde_yaml::from_str::<Vec<Value>>(&text).unwrap_or_default() {
                    let t = serde_yaml::to_string(&item).unwrap_or_default();
                    self.add_yaml(&t, source)?;
                }
                continue;
            }
            let meta: Meta = doc
                .get("metadata")
                .cloned()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| Error::new(at(), "metadata", e.to_string()))?
                .unwrap_or_default();
            let mut doc = doc;
            let id = format!("{kind} {}/{}", meta.ns(), meta.name);
            crate::versions::upgrade(&id, &kind, &api_version, &mut doc)?;
            self.objects.push(Object {
                api_version,
                kind,
                meta,
                doc,
                source: source.to_path_buf(),
            });
        }
        Ok(())
    }

    /// Objects of a kind.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects.iter().filter(move |o| o.kind == kind)
    }
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let err = |e: std::io::Error| Error::new(p.display().to_string(), ".", e.to_string());
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            let yamlish = e
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"));
            if e.is_dir() || yamlish {
                collect(&e, out)?;
            }
        }
    } else {
        std::fs::metadata(p).map_err(err)?;
        out.push(p.to_path_buf());
    }
    Ok(())
}

/// Reads a string field at a JSON pointer.
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}
