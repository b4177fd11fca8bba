//! Parsing plugin configuration with errors that name the offending field.
//!
//! Envoy hands each plugin its configuration as bytes in `on_configure`. A user who gets it
//! wrong must see which plugin, which field and why, in Envoy's log, and Envoy must refuse to
//! load the filter rather than run with a half-understood config.

use serde::de::DeserializeOwned;
use std::fmt;

/// A configuration the plugin cannot run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the offending field (`methods[0].apiKey.keys[1].sha256`), or `.` for the
    /// document itself.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// An error about the field at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Checks a parsed configuration for constraints serde cannot express.
pub trait Validate {
    /// Returns the first constraint the configuration breaks.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Largest configuration accepted, so a runaway config cannot exhaust a Wasm VM's memory.
pub const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// Parses and validates a JSON configuration.
///
/// An empty document is treated as `{}` so a plugin with all-default settings needs no
/// configuration at all.
pub fn parse<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, ConfigError> {
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::new(
            ".",
            format!(
                "configuration is {} bytes; the limit is {MAX_CONFIG_BYTES}",
                bytes.len()
            ),
        ));
    }
    let text = if bytes.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        bytes
    };
    let mut de = serde_json::Deserializer::from_slice(text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        ConfigError::new(path, e.into_inner().to_string())
    })?;
    de.end()
        .map_err(|e| ConfigError::new(".", format!("trailing data after the document: {e}")))?;
    value.validate()?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        port: u16,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        items: Vec<Inner>,
    }

    impl Validate for Doc {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.items.iter().any(|i| i.port == 0) {
                return Err(ConfigError::new("items[].port", "must not be 0"));
            }
            Ok(())
        }
    }

    #[test]
    fn names_the_field_with_the_wrong_type() {
        let err = parse::<Doc>(br#"{"items":[{"port":1},{"port":"x"}]}"#).unwrap_err();
        assert_eq!(err.path, "items[1].port");
        assert!(err.message.contains("invalid type"), "{err}");
    }

    #[test]
    fn names_unknown_fields() {
        let err = parse::<Doc>(br#"{"itemz":[]}"#).unwrap_err();
        assert!(err.message.contains("unknown field `itemz`"), "{err}");
    }

    #[test]
    fn empty_config_means_defaults() {
        let doc = parse::<Doc>(b"  \n").unwrap();
        assert!(doc.items.is_empty());
    }

    #[test]
    fn rejects_truncated_and_trailing_input() {
        assert!(parse::<Doc>(br#"{"items":[{"port":1}"#).is_err());
        let err = parse::<Doc>(br#"{} {}"#).unwrap_err();
        assert!(err.message.contains("trailing"), "{err}");
    }

    #[test]
    fn runs_validation() {
        let err = parse::<Doc>(br#"{"items":[{"port":0}]}"#).unwrap_err();
        assert_eq!(err.to_string(), "field `items[].port`: must not be 0");
    }

    #[test]
    fn rejects_oversized_documents() {
        let big = vec![b' '; MAX_CONFIG_BYTES + 1];
        assert!(parse::<Doc>(&big).unwrap_err().message.contains("limit"));
    }
}
