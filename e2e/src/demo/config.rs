//! The demo's configuration file: which model, how many pods, the users and their keys, and
//! each plugin's configuration.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::Path;

/// The built-in configuration: the guide's deployment (two `Qwen/Qwen3-0.6B` pods behind an
/// HTTPS gateway, under `/my-first-model/qwen3-0-6b/`) with one API-key user.
pub const DEFAULT_CONFIG: &str = include_str!("../../demo/gateway.yaml");

/// The demo configuration (YAML).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DemoConfig {
    /// Model the simulated pods serve.
    pub model: String,
    /// Number of simulated pods.
    pub pods: usize,
    /// HTTPS listener port (0 = any free port).
    pub https_port: u16,
    /// Plain HTTP listener port (0 = any free port).
    pub http_port: u16,
    /// Envoy worker threads.
    #[serde(default = "one")]
    pub concurrency: u32,
    /// Path prefix that is stripped before the request reaches a pod, as the guide's
    /// HTTPRoute does for `/<namespace>/<model>/`. Requests without it are routed unchanged.
    #[serde(default)]
    pub route_prefix: Option<String>,
    /// API-key users. A user without `key` gets a random one at start; the plugin only ever
    /// sees SHA-256 digests.
    #[serde(default)]
    pub users: Vec<DemoUser>,
    /// Plugin configurations, by plugin name (`auth`, `ratelimit`, `affinity`), in chain order.
    /// The launcher adds the users' keys to `auth.methods` (first) and the launched pods to
    /// `affinity.endpoints` when it is absent.
    pub plugins: serde_json::Map<String, Value>,
}

fn one() -> u32 {
    1
}

/// A user of the demo.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DemoUser {
    /// User id.
    pub userid: String,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Tier: the identity property `auth.identity.tier` limits branch on.
    #[serde(default)]
    pub tier: Option<String>,
    /// The API key; generated when absent.
    #[serde(default)]
    pub key: Option<String>,
}

/// The plugins the launcher knows, in the only order that makes sense.
pub const PLUGIN_ORDER: [&str; 3] = ["auth", "ratelimit", "affinity"];

impl DemoConfig {
    /// Parses a configuration, refusing unknown plugins and impossible sizes.
    pub fn parse(text: &str) -> Result<Self> {
        let config: Self = serde_yaml::from_str(text).context("demo configuration")?;
        if config.pods == 0 || config.pods > 64 {
            bail!("demo configuration: `pods` must be between 1 and 64");
        }
        for name in config.plugins.keys() {
            if !PLUGIN_ORDER.contains(&name.as_str()) {
                bail!(
                    "demo configuration: unknown plugin `plugins.{name}` (known: {})",
                    PLUGIN_ORDER.join(", ")
                );
            }
        }
        Ok(config)
    }

    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// The built-in configuration.
    pub fn builtin() -> Result<Self> {
        Self::parse(DEFAULT_CONFIG)
    }

    /// The configuration of `plugin` as the launcher hands it to Envoy, with the users' key
    /// digests and the pods' endpoints filled in.
    pub fn plugin_config(
        &self,
        plugin: &str,
        keys: &[(DemoUser, String)],
        endpoints: &[String],
    ) -> Option<Value> {
        let mut config = self.plugins.get(plugin)?.clone();
        if config.is_null() {
            config = json!({});
        }
        match plugin {
            "auth" if !keys.is_empty() => {
                let entries: Vec<Value> = keys
                    .iter()
                    .map(|(u, key)| {
                        let mut identity = json!({"userid": u.userid, "groups": u.groups});
                        if let Some(tier) = &u.tier {
                            identity["properties"] = json!({ "tier": tier });
                        }
                        json!({
                            "sha256": infergate_core::auth::apikey::KeyDigest::of(key.as_bytes()).to_hex(),
                            "identity": identity,
                        })
                    })
                    .collect();
                let method = json!({"name": "demo-api-keys", "apiKey": {"keys": entries}});
                let mut methods = config["methods"].as_array().cloned().unwrap_or_default();
                methods.insert(0, method);
                config["methods"] = Value::Array(methods);
            }
            "affinity" if config.get("endpoints").is_none() => {
                config["endpoints"] = json!(endpoints);
            }
            _ => {}
        }
        Some(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_config_is_the_guides_deployment() {
        let c = DemoConfig::builtin().unwrap();
        assert_eq!(c.model, "Qwen/Qwen3-0.6B");
        assert_eq!(c.pods, 2);
        assert_eq!(
            c.route_prefix.as_deref(),
            Some("/my-first-model/qwen3-0-6b/")
        );
        let user = c.users[0].clone();
        let auth = c.plugin_config("auth", &[(user, "k".into())], &[]).unwrap();
        assert_eq!(auth["methods"][0]["name"], "demo-api-keys");
        assert_eq!(
            auth["methods"][0]["apiKey"]["keys"][0]["identity"]["properties"]["tier"],
            "premium"
        );
        // Both tiers, and the plugins accept the built-in configurations.
        let tiers: Vec<_> = c.users.iter().filter_map(|u| u.tier.clone()).collect();
        assert_eq!(tiers, vec!["premium", "free"]);
        infergate_core::config::parse::<infergate_core::auth::AuthConfig>(
            auth.to_string().as_bytes(),
        )
        .unwrap();
        let rl = c.plugin_config("ratelimit", &[], &[]).unwrap();
        infergate_core::config::parse::<infergate_core::ratelimit::RateLimitConfig>(
            rl.to_string().as_bytes(),
        )
        .unwrap();
        let aff = c
            .plugin_config("affinity", &[], &["127.0.0.1:1".into()])
            .unwrap();
        assert_eq!(aff["endpoints"][0], "127.0.0.1:1");
    }

    #[test]
    fn rejects_unknown_plugins_and_fields() {
        let err = DemoConfig::parse(
            "model: m\npods: 1\nhttpsPort: 0\nhttpPort: 0\nplugins: {authz: {}}\n",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("plugins.authz"), "{err:#}");
        let err = DemoConfig::parse(
            "model: m\npods: 1\nhttpsPort: 0\nhttpPort: 0\nplugins: {}\npodz: 2\n",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("podz"), "{err:#}");
        assert!(
            DemoConfig::parse("model: m\npods: 0\nhttpsPort: 0\nhttpPort: 0\nplugins: {}\n")
                .is_err()
        );
    }
}
