//! The `affinity` plugin's configuration.

use crate::config::{ConfigError, Validate};
use crate::endpoint::Endpoint;
use serde::Deserialize;

/// Configuration of the endpoint-hint plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AffinityConfig {
    /// The model-server endpoints (`ip:port`) requests may be sent to.
    pub endpoints: Vec<String>,
}

impl AffinityConfig {
    /// The endpoints, parsed. Only call after [`Validate::validate`] succeeded.
    pub fn parsed_endpoints(&self) -> Vec<Endpoint> {
        self.endpoints
            .iter()
            .filter_map(|e| e.parse().ok())
            .collect()
    }
}

impl Validate for AffinityConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::new(
                "endpoints",
                "at least one endpoint is required",
            ));
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            e.parse::<Endpoint>()
                .map_err(|m| ConfigError::new(format!("endpoints[{i}]"), m))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    #[test]
    fn validates_endpoints() {
        let ok = parse::<AffinityConfig>(br#"{"endpoints":["127.0.0.1:9000"]}"#).unwrap();
        assert_eq!(ok.parsed_endpoints().len(), 1);
        let err =
            parse::<AffinityConfig>(br#"{"endpoints":["127.0.0.1:9000","pod:80"]}"#).unwrap_err();
        assert_eq!(err.path, "endpoints[1]");
        assert!(parse::<AffinityConfig>(br#"{"endpoints":[]}"#).is_err());
    }
}
