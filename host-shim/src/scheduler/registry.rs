//! Plugin types by name: how an `EndpointPickerConfig` plugin entry becomes a filter, scorer
//! or picker. Adding a plugin is adding its file and one arm here.

use super::filters::{least_kv_cache, least_queue};
use super::pickers::{max_score, weighted_random};
use super::plugin::{Filter, Picker, Scorer};
use super::scorers::{kv_cache_utilization, load_aware, prefix_cache, queue, session_affinity};
use infergate_core::config::ConfigError;
use serde::de::DeserializeOwned;

/// A configured plugin instance.
#[derive(Debug)]
pub enum PluginInstance {
    /// A filter.
    Filter(Box<dyn Filter>),
    /// A scorer.
    Scorer(Box<dyn Scorer>),
    /// A picker.
    Picker(Box<dyn Picker>),
    /// A profile handler; host-shim runs exactly one profile, so it has nothing to do.
    ProfileHandler,
}

/// Every plugin type this build understands.
pub const KNOWN_TYPES: &[&str] = &[
    queue::TYPE,
    kv_cache_utilization::TYPE,
    kv_cache_utilization::LEGACY_TYPE,
    prefix_cache::TYPE,
    load_aware::TYPE,
    session_affinity::TYPE,
    max_score::TYPE,
    weighted_random::TYPE,
    least_queue::TYPE,
    least_kv_cache::TYPE,
    SINGLE_PROFILE_HANDLER,
];

/// llm-d / GIE's default profile handler.
pub const SINGLE_PROFILE_HANDLER: &str = "single-profile-handler";

/// Deserializes plugin parameters, naming the offending field under `path` on error.
pub fn parse_params<T: DeserializeOwned + Default>(
    params: Option<&serde_yaml::Value>,
    path: &str,
) -> Result<T, ConfigError> {
    match params {
        None | Some(serde_yaml::Value::Null) => Ok(T::default()),
        Some(v) => serde_path_to_error::deserialize(v.clone()).map_err(|e| {
            let inner = e.path().to_string();
            let at = if inner == "." || inner == "?" || inner.is_empty() {
                path.to_string()
            } else {
                format!("{path}.{inner}")
            };
            ConfigError::new(at, e.into_inner().to_string())
        }),
    }
}

/// Builds the plugin of type `ty` from its parameters; `path` locates the entry in errors.
pub fn build(
    ty: &str,
    params: Option<&serde_yaml::Value>,
    path: &str,
) -> Result<PluginInstance, ConfigError> {
    let params_path = format!("{path}.parameters");
    let no_params = |p: Option<&serde_yaml::Value>| -> Result<(), ConfigError> {
        match p {
            None | Some(serde_yaml::Value::Null) => Ok(()),
            Some(serde_yaml::Value::Mapping(m)) if m.is_empty() => Ok(()),
            Some(_) => Err(ConfigError::new(
                params_path.clone(),
                format!("`{ty}` takes no parameters"),
            )),
        }
    };
    Ok(match ty {
        queue::TYPE => {
            no_params(params)?;
            PluginInstance::Scorer(Box::new(queue::QueueScorer))
        }
        kv_cache_utilization::TYPE | kv_cache_utilization::LEGACY_TYPE => {
            no_params(params)?;
            PluginInstance::Scorer(Box::new(kv_cache_utilization::KvCacheUtilizationScorer))
        }
        prefix_cache::TYPE => {
            // Hashing and sizing parameters are applied by the config loader.
            let p: prefix_cache::PrefixCacheParams = parse_params(params, &params_path)?;
            PluginInstance::Scorer(Box::new(prefix_cache::PrefixCacheScorer::new(&p)))
        }
        load_aware::TYPE => PluginInstance::Scorer(Box::new(load_aware::LoadAwareScorer::new(
            parse_params(params, &params_path)?,
        ))),
        session_affinity::TYPE => {
            no_params(params)?;
            PluginInstance::Scorer(Box::new(session_affinity::SessionAffinityScorer))
        }
        max_score::TYPE => {
            let p: max_score::MaxScoreParams = parse_params(params, &params_path)?;
            PluginInstance::Picker(Box::new(max_score::MaxScorePicker::new(&p, &params_path)?))
        }
        weighted_random::TYPE => {
            ignore_params(params);
            PluginInstance::Picker(Box::new(weighted_random::WeightedRandomPicker))
        }
        least_queue::TYPE => {
            no_params(params)?;
            PluginInstance::Filter(Box::new(least_queue::LeastQueueFilter))
        }
        least_kv_cache::TYPE => {
            no_params(params)?;
            PluginInstance::Filter(Box::new(least_kv_cache::LeastKvCacheFilter))
        }
        SINGLE_PROFILE_HANDLER => PluginInstance::ProfileHandler,
        other => {
            return Err(ConfigError::new(
                format!("{path}.type"),
                format!(
                    "unknown plugin type `{other}`; host-shim supports {}",
                    KNOWN_TYPES.join(", ")
                ),
            ))
        }
    })
}

/// Pickers in llm-d take `maxNumOfEndpoints`; host-shim always returns one endpoint plus
/// fallbacks, so the weighted-random picker's parameters carry no meaning here.
fn ignore_params(_params: Option<&serde_yaml::Value>) {}
