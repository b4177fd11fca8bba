//! `EndpointPickerConfig`, in llm-d's format, turned into a runnable [`SchedulerConfig`].
//!
//! Both apiVersions are accepted: `llm-d.ai/v1alpha1` and the older
//! `inference.networking.x-k8s.io/v1alpha1`. The document may be YAML or JSON. Every error
//! names the offending field (`schedulingProfiles[0].plugins[2].pluginRef`), so a bad config
//! is rejected at start and a bad reload keeps the last good one.
//!
//! ```yaml
//! apiVersion: inference.networking.x-k8s.io/v1alpha1
//! kind: EndpointPickerConfig
//! plugins:
//! - type: queue-scorer
//! - type: prefix-cache-scorer
//!   parameters: {hashBlockSize: 256}
//! schedulingProfiles:
//! - name: default
//!   plugins:
//!   - pluginRef: queue-scorer
//!     weight: 2
//!   - pluginRef: prefix-cache-scorer
//!     weight: 3
//! saturationDetector: {queueDepthThreshold: 5, kvCacheUtilThreshold: 0.8}
//! ```

use super::pickers::max_score::MaxScorePicker;
use super::plugin::{Candidate, Filter, Picker, Scorer};
use super::registry::{self, PluginInstance};
use super::scorers::prefix_cache::{self, PrefixCacheParams};
use crate::index::IndexSizing;
use infergate_core::config::ConfigError;
use infergate_core::prefix::BlockHasher;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// The apiVersions accepted.
pub const API_VERSIONS: &[&str] = &[
    "llm-d.ai/v1alpha1",
    "inference.networking.x-k8s.io/v1alpha1",
];

/// The kind accepted.
pub const KIND: &str = "EndpointPickerConfig";

/// The deployment guide's configuration, used when none is given.
pub const DEFAULT_CONFIG: &str = "\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    api_version: String,
    kind: String,
    #[serde(default)]
    plugins: Vec<RawPlugin>,
    #[serde(default)]
    scheduling_profiles: Vec<RawProfile>,
    #[serde(default)]
    saturation_detector: Option<RawSaturation>,
    // Accepted so upstream documents load verbatim; `featureGates` and `flowControl` configure
    // flow control (`crate::flow_control::config`), the rest features host-shim does not have.
    #[serde(default)]
    feature_gates: Option<serde_yaml::Value>,
    #[serde(default)]
    data: Option<serde_yaml::Value>,
    #[serde(default)]
    flow_control: Option<serde_yaml::Value>,
    #[serde(default)]
    metadata: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPlugin {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    parameters: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawProfile {
    name: String,
    #[serde(default)]
    plugins: Vec<RawPluginRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPluginRef {
    plugin_ref: String,
    #[serde(default)]
    weight: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSaturation {
    #[serde(default)]
    queue_depth_threshold: Option<u64>,
    #[serde(default)]
    kv_cache_util_threshold: Option<f64>,
    #[serde(default)]
    metrics_staleness_threshold: Option<String>,
}

/// When an endpoint counts as saturated (GIE's saturation detector).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Saturation {
    /// Waiting requests at or above which an endpoint is saturated.
    pub queue_depth: u64,
    /// KV-cache usage at or above which an endpoint is saturated.
    pub kv_util: f64,
}

impl Default for Saturation {
    fn default() -> Self {
        Self {
            queue_depth: 5,
            kv_util: 0.8,
        }
    }
}

impl Saturation {
    /// Whether the candidate has no headroom left.
    pub fn is_saturated(&self, c: &Candidate<'_>) -> bool {
        c.effective_waiting() >= self.queue_depth || c.effective_kv_usage() >= self.kv_util
    }
}

/// A scorer and its weight in the profile.
#[derive(Debug)]
pub struct WeightedScorer {
    /// The name the profile refers to it by.
    pub name: String,
    /// The scorer.
    pub scorer: Box<dyn Scorer>,
    /// Its weight (≥ 0).
    pub weight: f64,
}

/// A resolved scheduling profile plus the settings around it.
#[derive(Debug)]
pub struct SchedulerConfig {
    /// Filters, in profile order.
    pub filters: Vec<Box<dyn Filter>>,
    /// Scorers with weights.
    pub scorers: Vec<WeightedScorer>,
    /// The picker (`max-score-picker` unless the profile names another).
    pub picker: Box<dyn Picker>,
    /// The saturation thresholds for shedding.
    pub saturation: Saturation,
    /// Metrics older than this take an endpoint out of picks.
    pub staleness: Duration,
    /// Fallback endpoints returned with each pick.
    pub max_fallbacks: usize,
    /// How prompts are hashed into prefix blocks.
    pub hasher: BlockHasher,
    /// How the prefix index is sized.
    pub sizing: IndexSizing,
    /// Whether a pick inserts the prompt's blocks into the chosen endpoint's prefix index at
    /// once (`prefix-cache-scorer` parameter `provisionalInsert`, default `true`), rather than
    /// only when the served report arrives.
    pub provisional_insert: bool,
    /// The wait queue for picks when every endpoint is saturated (`flowControl`).
    pub flow_control: crate::flow_control::config::FlowControlConfig,
}

/// Default staleness bound.
pub const DEFAULT_STALENESS: Duration = Duration::from_secs(2);

impl SchedulerConfig {
    /// Parses an `EndpointPickerConfig` document (YAML or JSON).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::new(".", "the EndpointPickerConfig is empty"));
        }
        let de = serde_yaml::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let msg = e.into_inner().to_string();
            // `?` is serde_path_to_error's name for a key it could not read.
            let path = if path.is_empty() || path == "?" {
                ".".into()
            } else {
                path
            };
            ConfigError::new(path, msg)
        })?;
        Self::from_raw(raw)
    }

    /// The deployment guide's configuration (queue 2, kv-cache 2, prefix-cache 3).
    pub fn guide_default() -> Self {
        match Self::parse(DEFAULT_CONFIG) {
            Ok(c) => c,
            // DEFAULT_CONFIG is a constant covered by tests; this arm is unreachable.
            Err(e) => unreachable!("built-in config invalid: {e}"),
        }
    }

    fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        if !API_VERSIONS.contains(&raw.api_version.as_str()) {
            return Err(ConfigError::new(
                "apiVersion",
                format!(
                    "`{}` is not supported; use one of {}",
                    raw.api_version,
                    API_VERSIONS.join(", ")
                ),
            ));
        }
        if raw.kind != KIND {
            return Err(ConfigError::new(
                "kind",
                format!("`{}` is not `{KIND}`", raw.kind),
            ));
        }
        let _ = (&raw.data, &raw.metadata);
        let flow_control = crate::flow_control::config::FlowControlConfig::from_epp(
            raw.feature_gates.as_ref(),
            raw.flow_control.as_ref(),
        )?;

        let mut hasher = BlockHasher::default();
        let mut sizing = IndexSizing::default();
        let mut provisional_insert = true;
        let mut by_name: HashMap<String, (usize, PluginInstance)> = HashMap::new();
        for (i, p) in raw.plugins.iter().enumerate() {
            let path = format!("plugins[{i}]");
            let name = p.name.clone().unwrap_or_else(|| p.ty.clone());
            if name.is_empty() {
                return Err(ConfigError::new(
                    format!("{path}.name"),
                    "must not be empty",
                ));
            }
            let instance = registry::build(&p.ty, p.parameters.as_ref(), &path)?;
            if p.ty == prefix_cache::TYPE {
                let params: PrefixCacheParams =
                    registry::parse_params(p.parameters.as_ref(), &format!("{path}.parameters"))?;
                params.apply(&mut hasher, &mut sizing, &format!("{path}.parameters"))?;
                provisional_insert = params.provisional_insert.unwrap_or(true);
            }
            if by_name.insert(name.clone(), (i, instance)).is_some() {
                return Err(ConfigError::new(
                    format!("{path}.name"),
                    format!("plugin name `{name}` is used twice"),
                ));
            }
        }

        let profile = match raw.scheduling_profiles.as_slice() {
            [] => {
                return Err(ConfigError::new(
                    "schedulingProfiles",
                    "at least one scheduling profile is required",
                ))
            }
            [one] => one,
            more => {
                return Err(ConfigError::new(
                    "schedulingProfiles",
                    format!(
                        "host-shim runs a single profile; found {} (prefill/decode \
                         disaggregation profiles are not supported)",
                        more.len()
                    ),
                ))
            }
        };
        if profile.name.is_empty() {
            return Err(ConfigError::new(
                "schedulingProfiles[0].name",
                "must not be empty",
            ));
        }

        let mut filters = Vec::new();
        let mut scorers = Vec::new();
        let mut picker: Option<Box<dyn Picker>> = None;
        let mut used = HashMap::new();
        for (j, r) in profile.plugins.iter().enumerate() {
            let path = format!("schedulingProfiles[0].plugins[{j}]");
            if used.insert(r.plugin_ref.clone(), j).is_some() {
                return Err(ConfigError::new(
                    format!("{path}.pluginRef"),
                    format!("`{}` is referenced twice", r.plugin_ref),
                ));
            }
            let Some((_, instance)) = by_name.remove(&r.plugin_ref) else {
                return Err(ConfigError::new(
                    format!("{path}.pluginRef"),
                    format!("no plugin named `{}` in `plugins`", r.plugin_ref),
                ));
            };
            let weight_given = r.weight.is_some();
            match instance {
                PluginInstance::Scorer(scorer) => {
                    let weight = r.weight.unwrap_or(1.0);
                    if !(weight.is_finite() && weight >= 0.0) {
                        return Err(ConfigError::new(
                            format!("{path}.weight"),
                            "must be a finite number ≥ 0",
                        ));
                    }
                    scorers.push(WeightedScorer {
                        name: r.plugin_ref.clone(),
                        scorer,
                        weight,
                    });
                }
                PluginInstance::Filter(f) if !weight_given => filters.push(f),
                PluginInstance::Picker(p) if !weight_given => {
                    if picker.replace(p).is_some() {
                        return Err(ConfigError::new(
                            format!("{path}.pluginRef"),
                            "a profile has one picker; this is the second",
                        ));
                    }
                }
                PluginInstance::ProfileHandler => {
                    return Err(ConfigError::new(
                        format!("{path}.pluginRef"),
                        "a profile handler belongs in `plugins`, not in a profile",
                    ))
                }
                PluginInstance::Filter(_) | PluginInstance::Picker(_) => {
                    return Err(ConfigError::new(
                        format!("{path}.weight"),
                        "only scorers take a weight",
                    ))
                }
            }
        }

        let mut saturation = Saturation::default();
        let mut staleness = DEFAULT_STALENESS;
        if let Some(s) = &raw.saturation_detector {
            if let Some(q) = s.queue_depth_threshold {
                saturation.queue_depth = q;
            }
            if let Some(k) = s.kv_cache_util_threshold {
                if !(k > 0.0 && k <= 1.0) {
                    return Err(ConfigError::new(
                        "saturationDetector.kvCacheUtilThreshold",
                        "must be in (0, 1]",
                    ));
                }
                saturation.kv_util = k;
            }
            if let Some(d) = &s.metrics_staleness_threshold {
                staleness = parse_duration(d).map_err(|m| {
                    ConfigError::new("saturationDetector.metricsStalenessThreshold", m)
                })?;
            }
        }

        Ok(Self {
            filters,
            scorers,
            picker: picker.unwrap_or_else(|| Box::new(MaxScorePicker::default())),
            saturation,
            staleness,
            max_fallbacks: 2,
            hasher,
            sizing,
            provisional_insert,
            flow_control,
        })
    }
}

/// Parses a Go-style duration: `200ms`, `2s`, `1.5s`, `1m`, `500us`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{s}` has no unit (use ms, s or m)"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` does not start with a number"))?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}` has unknown unit `{unit}`")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("`{s}` must be a positive duration"));
    }
    // `from_secs_f64` panics past u64::MAX seconds (found by the fuzzer: `18446744073709551615s`).
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is too long a duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn default_is_the_guide() {
        let c = SchedulerConfig::guide_default();
        let w: Vec<(&str, f64)> = c
            .scorers
            .iter()
            .map(|s| (s.name.as_str(), s.weight))
            .collect();
        assert_eq!(
            w,
            [
                ("queue-scorer", 2.0),
                ("kv-cache-utilization-scorer", 2.0),
                ("prefix-cache-scorer", 3.0)
            ]
        );
        assert_eq!(c.picker.type_name(), "max-score-picker");
        assert_eq!(c.staleness, DEFAULT_STALENESS);
    }
}
