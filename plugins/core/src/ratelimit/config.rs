//! The `ratelimit` plugin's configuration, shaped like Kuadrant RateLimitPolicy /
//! TokenRateLimitPolicy `limits`.

use super::window::parse_window_ms;
use crate::attributes::{Attribute, Predicate, PredicateConfig};
use crate::config::{ConfigError, Validate};
use crate::headers::{normalize_header_name, DEFAULT_GROUPS_HEADER, DEFAULT_USER_HEADER};
use serde::{Deserialize, Serialize};

/// Configuration of the rate-limit plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The limits; a request must fit every limit that applies to it.
    #[serde(default)]
    pub limits: Vec<LimitConfig>,
    /// Headers the auth plugin sets with the identity.
    #[serde(default)]
    pub identity_headers: IdentityHeaderNames,
    /// Rate-limit headers on answers.
    #[serde(default)]
    pub response_headers: HeaderStyle,
    /// Completion tokens charged up front when a request sets no `max_tokens`.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u64,
    /// Largest request body buffered to estimate tokens (413 beyond).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// What to do when the counters cannot be updated.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Per-identity and per-model token usage exported as Envoy stats (for billing).
    #[serde(default)]
    pub usage_stats: Option<UsageStatsConfig>,
    /// Count in a shared rate limit service (Envoy RLS v3, e.g. Limitador) instead of this
    /// Envoy's shared data, so several gateway replicas share one budget.
    #[serde(default)]
    pub global: Option<GlobalConfig>,
    /// The host lets this plugin hold request headers while it reads the body (Envoy's
    /// `allow_on_headers_stop_iteration`); default: no-hold mode.
    #[serde(default)]
    pub allow_on_headers_stop_iteration: crate::header_hold::HeaderHold,
}

/// Which identities and models get their own usage counters. Cardinality is bounded: the
/// allow-listed names, plus up to `maxTracked` further names first seen by each Envoy worker;
/// everything else is counted under `_other`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageStatsConfig {
    /// User ids that always get their own counters.
    #[serde(default)]
    pub users: Vec<String>,
    /// Models that always get their own counters.
    #[serde(default)]
    pub models: Vec<String>,
    /// Further names tracked per worker, first come first served.
    #[serde(default)]
    pub max_tracked: usize,
}

/// Stat-name-safe form of a user id or model (`[A-Za-z0-9_-]`, others become `_`, at most 64
/// bytes).
pub fn stat_name_part(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Global mode: descriptors go to an Envoy RLS v3 service.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalConfig {
    /// Envoy cluster (HTTP/2) of the rate limit service.
    pub cluster: String,
    /// RLS domain (Limitador namespace).
    #[serde(default = "default_domain")]
    pub domain: String,
    /// Call timeout.
    #[serde(default = "default_rls_timeout")]
    pub timeout_ms: u64,
    /// What happens when the service cannot answer in time.
    #[serde(default)]
    pub failure_mode: FailureMode,
}

fn default_domain() -> String {
    "infergate".into()
}

fn default_rls_timeout() -> u64 {
    100
}

/// What happens to a request when its limits cannot be checked.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum FailureMode {
    /// Refuse it (500), as Kuadrant does by default.
    #[default]
    Deny,
    /// Let it through uncounted.
    Allow,
}

fn default_max_tokens() -> u64 {
    4096
}

fn default_max_body() -> usize {
    8 * 1024 * 1024
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            limits: Vec::new(),
            identity_headers: IdentityHeaderNames::default(),
            response_headers: HeaderStyle::default(),
            default_max_tokens: default_max_tokens(),
            max_body_bytes: default_max_body(),
            failure_mode: FailureMode::default(),
            usage_stats: None,
            global: None,
            allow_on_headers_stop_iteration: Default::default(),
        }
    }
}

/// Names of the identity headers set by the auth plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityHeaderNames {
    /// User id header.
    #[serde(default = "user_header")]
    pub userid: String,
    /// Groups header (comma separated).
    #[serde(default = "groups_header")]
    pub groups: String,
}

fn user_header() -> String {
    DEFAULT_USER_HEADER.into()
}

fn groups_header() -> String {
    DEFAULT_GROUPS_HEADER.into()
}

impl Default for IdentityHeaderNames {
    fn default() -> Self {
        Self {
            userid: user_header(),
            groups: groups_header(),
        }
    }
}

/// Which rate-limit headers answers carry.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum HeaderStyle {
    /// IETF draft `RateLimit-Policy` and `RateLimit`.
    #[default]
    Draft,
    /// `x-ratelimit-limit-requests`, `x-ratelimit-remaining-tokens`, … (OpenAI's names).
    XRatelimit,
    /// None (429s still carry `Retry-After`).
    None,
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Counts {
    /// One per request.
    #[default]
    Requests,
    /// LLM tokens: prompt × `promptWeight` + completion × `completionWeight`.
    Tokens,
}

/// One limit. `P` is the condition type: the plugin reads [`PredicateConfig`]; the policy
/// translator (`infergate-policies`) writes its own compiled predicates with the same JSON
/// shape. Serialized, empty lists and weights of 1 are left out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitConfig<P = PredicateConfig> {
    /// Name, shown in headers and stats.
    pub name: String,
    /// One or more rates; all must hold.
    pub rates: Vec<RateConfig>,
    /// Attributes whose values key the counter (one counter per distinct combination). A
    /// request lacking one of them is not subject to the limit (Limitador's rule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counters: Vec<String>,
    /// Conditions, all of which must hold for the limit to apply.
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<P>,
    /// What is counted.
    #[serde(default)]
    pub counts: Counts,
    /// Weight of a prompt token (token limits).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub prompt_weight: u64,
    /// Weight of a completion token (token limits).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub completion_weight: u64,
}

fn one() -> u64 {
    1
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

/// `limit` per `window`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateConfig {
    /// Most units per window.
    pub limit: u64,
    /// Window length in Kuadrant's grammar (`1s`, `1m`, `1h30m`, `500ms`).
    pub window: String,
}

/// A compiled limit.
#[derive(Debug, Clone)]
pub struct Limit {
    /// Name.
    pub name: String,
    /// `(limit, window_ms)` pairs.
    pub rates: Vec<(u64, u64)>,
    /// Counter key attributes.
    pub counters: Vec<Attribute>,
    /// Conditions.
    pub when: Vec<Predicate>,
    /// What is counted.
    pub counts: Counts,
    /// Prompt token weight.
    pub prompt_weight: u64,
    /// Completion token weight.
    pub completion_weight: u64,
}

impl RateLimitConfig {
    /// Compiles the limits. Only call after [`Validate::validate`] succeeded; invalid entries
    /// are skipped here.
    pub fn compile(&self) -> Vec<Limit> {
        self.limits
            .iter()
            .filter_map(|l| compile_limit(l).ok())
            .collect()
    }

    /// Whether any limit counts tokens (the body must then be read).
    pub fn counts_tokens(&self) -> bool {
        self.limits.iter().any(|l| l.counts == Counts::Tokens)
    }
}

fn compile_limit(l: &LimitConfig) -> Result<Limit, ConfigError> {
    let mut rates = Vec::new();
    for (j, r) in l.rates.iter().enumerate() {
        let ms = parse_window_ms(&r.window)
            .map_err(|m| ConfigError::new(format!("rates[{j}].window"), m))?;
        rates.push((r.limit, ms));
    }
    let counters = l
        .counters
        .iter()
        .enumerate()
        .map(|(j, c)| {
            Attribute::parse(c)
                .map_err(|m| ConfigError::new(format!("counters[{j}]"), m.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let when = l
        .when
        .iter()
        .enumerate()
        .map(|(j, p)| {
            Predicate::compile(p).map_err(|m| ConfigError::new(format!("when[{j}]"), m.to_string()))
        })
        .collect::<Result<_, _>>()?;
    Ok(Limit {
        name: l.name.clone(),
        rates,
        counters,
        when,
        counts: l.counts,
        prompt_weight: l.prompt_weight,
        completion_weight: l.completion_weight,
    })
}

impl Validate for RateLimitConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let mut names = Vec::new();
        for (i, l) in self.limits.iter().enumerate() {
            let at =
                |e: ConfigError| ConfigError::new(format!("limits[{i}].{}", e.path), e.message);
            if l.name.is_empty() || l.name.contains(['"', '|', '\\']) || !l.name.is_ascii() {
                return Err(ConfigError::new(
                    format!("limits[{i}].name"),
                    "must be non-empty ASCII without `\"`, `|` or `\\`",
                ));
            }
            if names.contains(&&l.name) {
                return Err(ConfigError::new(
                    format!("limits[{i}].name"),
                    format!("duplicate limit name `{}`", l.name),
                ));
            }
            names.push(&l.name);
            if l.rates.is_empty() {
                return Err(ConfigError::new(
                    format!("limits[{i}].rates"),
                    "at least one rate is required",
                ));
            }
            compile_limit(l).map_err(at)?;
        }
        for (field, name) in [
            ("identityHeaders.userid", &self.identity_headers.userid),
            ("identityHeaders.groups", &self.identity_headers.groups),
        ] {
            if normalize_header_name(name).is_none() {
                return Err(ConfigError::new(field, "not a valid header name"));
            }
        }
        if let Some(g) = &self.global {
            if g.cluster.is_empty() {
                return Err(ConfigError::new("global.cluster", "must not be empty"));
            }
            if g.domain.is_empty() {
                return Err(ConfigError::new("global.domain", "must not be empty"));
            }
            if !(1..=10_000).contains(&g.timeout_ms) {
                return Err(ConfigError::new(
                    "global.timeoutMs",
                    "must be between 1 and 10000",
                ));
            }
            for (i, l) in self.limits.iter().enumerate() {
                for (j, r) in l.rates.iter().enumerate() {
                    if parse_window_ms(&r.window).is_ok_and(|ms| ms % 1000 != 0) {
                        return Err(ConfigError::new(
                            format!("limits[{i}].rates[{j}].window"),
                            "global limits count in whole seconds (the rate limit service's unit)",
                        ));
                    }
                }
            }
        }
        if let Some(u) = &self.usage_stats {
            if u.max_tracked > 10_000 {
                return Err(ConfigError::new(
                    "usageStats.maxTracked",
                    "at most 10000 (each is an Envoy stat)",
                ));
            }
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::new("maxBodyBytes", "must be positive"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    #[test]
    fn parses_limits_and_names_bad_fields() {
        let c = parse::<RateLimitConfig>(
            br#"{"limits":[{"name":"per-user","rates":[{"limit":100,"window":"1s"},{"limit":1000,"window":"1m"}],"counters":["auth.identity.userid"]},
                 {"name":"tokens","rates":[{"limit":5000,"window":"1h"}],"counts":"tokens","completionWeight":3,
                  "when":[{"attribute":"identity.groups","eq":"free"}]}]}"#,
        )
        .unwrap();
        let limits = c.compile();
        assert_eq!(limits.len(), 2);
        assert_eq!(limits[0].rates, vec![(100, 1000), (1000, 60_000)]);
        assert_eq!(limits[1].counts, Counts::Tokens);
        assert!(c.counts_tokens());

        let err = parse::<RateLimitConfig>(
            br#"{"limits":[{"name":"a","rates":[{"limit":1,"window":"1d"}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "limits[0].rates[0].window");
        let err = parse::<RateLimitConfig>(br#"{"limits":[{"name":"a","rates":[{"limit":1,"window":"1s"}],"counters":["request.body.x"]}]}"#).unwrap_err();
        assert_eq!(err.path, "limits[0].counters[0]");
        let err = parse::<RateLimitConfig>(br#"{"limits":[{"name":"a","rates":[]}]}"#).unwrap_err();
        assert_eq!(err.path, "limits[0].rates");
        let err = parse::<RateLimitConfig>(br#"{"limits":[{"name":"a","rates":[{"limit":1,"window":"1s"}]},{"name":"a","rates":[{"limit":1,"window":"1s"}]}]}"#).unwrap_err();
        assert!(err.message.contains("duplicate"), "{err}");
        let err = parse::<RateLimitConfig>(
            br#"{"limits":[{"name":"a","rates":[{"limit":-1,"window":"1s"}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "limits[0].rates[0].limit");
        let err = parse::<RateLimitConfig>(br#"{"responseHeaders":"fancy"}"#).unwrap_err();
        assert_eq!(err.path, "responseHeaders");
    }

    #[test]
    fn limits_round_trip_through_json_leaving_defaults_out() {
        // The shape the policy translator writes: no weights of 1, no empty lists.
        let written = serde_json::json!([
            {"name": "per-user", "rates": [{"limit": 100, "window": "1s"}],
             "counters": ["auth.identity.userid"], "counts": "requests"},
            {"name": "tokens", "rates": [{"limit": 5000, "window": "1h"}], "counts": "tokens",
             "completionWeight": 3, "when": [{"attribute": "identity.groups", "eq": "free"}]}
        ]);
        type Generic = LimitConfig<serde_json::Value>;
        let limits: Vec<Generic> = serde_json::from_value(written.clone()).unwrap();
        assert_eq!(limits[1].prompt_weight, 1);
        assert_eq!(limits[1].completion_weight, 3);
        assert_eq!(serde_json::to_value(&limits).unwrap(), written);
        // What it serializes is what the plugin reads.
        let plugin = parse::<RateLimitConfig>(
            serde_json::json!({ "limits": written })
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(plugin.limits[1].counts, Counts::Tokens);
        assert_eq!(plugin.limits[0].rates, limits[0].rates);
    }
}
