//! Rate limiting: window grammar and the `ratelimit` plugin's configuration.

pub mod window;

use crate::config::{ConfigError, Validate};
use serde::Deserialize;

/// Configuration of the rate-limit plugin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The limits. Counting is delivered by the rate-limit issue; until then a configuration
    /// that asks for limits is refused rather than silently not enforced.
    #[serde(default)]
    pub limits: Vec<serde_json::Value>,
}

impl Validate for RateLimitConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.limits.is_empty() {
            return Err(ConfigError::new(
                "limits",
                "limits are not supported by this build of infergate-ratelimit; refusing to run without enforcing them",
            ));
        }
        Ok(())
    }
}
