//! The `affinity` plugin's configuration, its prefix-affinity key, and its per-request
//! [`flow`] (driven through the [`host::Host`] trait by the proxy-wasm adapter).

pub mod flow;
#[cfg(test)]
mod flow_tests;
pub mod host;
#[cfg(test)]
mod mock_host;

use crate::config::{ConfigError, Validate};
use crate::endpoint::Endpoint;
use crate::headers::normalize_header_name;
use crate::prefix::{BlockHasher, DEFAULT_BLOCK_SIZE, DEFAULT_MAX_BLOCKS};
use serde::Deserialize;

/// Configuration of the endpoint-hint plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AffinityConfig {
    /// The model-server endpoints (`ip:port`) requests may be sent to.
    pub endpoints: Vec<String>,
    /// Bytes per prefix block (must match host-shim's).
    #[serde(default = "block_size")]
    pub block_size: usize,
    /// Most prefix blocks hashed per request.
    #[serde(default = "max_blocks")]
    pub max_blocks: usize,
    /// Leading blocks that choose the endpoint when no picker answers (consistent hashing).
    #[serde(default = "affinity_blocks")]
    pub affinity_blocks: usize,
    /// Largest request body buffered (413 beyond).
    #[serde(default = "max_body_bytes")]
    pub max_body_bytes: usize,
    /// Sidecar-less mode: also set this header to the prefix key (hex) so a RING_HASH or
    /// MAGLEV cluster with a `hash_policy` on it keeps prefixes together.
    #[serde(default)]
    pub hint_header: Option<String>,
    /// Ask host-shim for each pick (else: consistent hashing over `endpoints`).
    #[serde(default)]
    pub host_shim: Option<HostShimConfig>,
    /// The host lets this plugin hold request headers while it reads the body (Envoy's
    /// `allow_on_headers_stop_iteration`). Required: the plugin chooses the route from the body.
    #[serde(default)]
    pub allow_on_headers_stop_iteration: crate::header_hold::HeaderHold,
}

/// How to reach host-shim's pick API.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostShimConfig {
    /// The Envoy cluster that reaches host-shim's HTTP listener.
    pub cluster: String,
    /// `:authority` of the calls.
    #[serde(default = "shim_authority")]
    pub authority: String,
    /// Pick call timeout; on timeout or error the plugin falls back to consistent hashing.
    #[serde(default = "shim_timeout")]
    pub timeout_ms: u64,
    /// Answer 503 instead of falling back when host-shim cannot be asked.
    #[serde(default)]
    pub fail_closed: bool,
    /// Report the endpoint that actually served each request, so host-shim's prefix index
    /// follows reality.
    #[serde(default = "yes")]
    pub report_served: bool,
}

fn shim_authority() -> String {
    "host-shim".to_string()
}

fn shim_timeout() -> u64 {
    50
}

/// Largest `hostShim.timeoutMs` accepted.
pub const MAX_SHIM_TIMEOUT_MS: u64 = 10_000;

fn yes() -> bool {
    true
}

fn block_size() -> usize {
    DEFAULT_BLOCK_SIZE
}

fn max_blocks() -> usize {
    DEFAULT_MAX_BLOCKS
}

fn affinity_blocks() -> usize {
    4
}

fn max_body_bytes() -> usize {
    8 * 1024 * 1024
}

impl AffinityConfig {
    /// The endpoints, parsed. Only call after [`Validate::validate`] succeeded.
    pub fn parsed_endpoints(&self) -> Vec<Endpoint> {
        self.endpoints
            .iter()
            .filter_map(|e| e.parse().ok())
            .collect()
    }

    /// The block hasher these settings describe.
    pub fn hasher(&self) -> BlockHasher {
        BlockHasher {
            block_size: self.block_size,
            max_blocks: self.max_blocks,
        }
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
        if !(16..=65_536).contains(&self.block_size) {
            return Err(ConfigError::new(
                "blockSize",
                "must be between 16 and 65536 bytes",
            ));
        }
        if !(1..=4096).contains(&self.max_blocks) {
            return Err(ConfigError::new("maxBlocks", "must be between 1 and 4096"));
        }
        if self.affinity_blocks == 0 || self.affinity_blocks > self.max_blocks {
            return Err(ConfigError::new(
                "affinityBlocks",
                "must be between 1 and maxBlocks",
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::new("maxBodyBytes", "must be positive"));
        }
        if let Some(h) = &self.hint_header {
            if normalize_header_name(h).is_none() {
                return Err(ConfigError::new("hintHeader", "not a valid header name"));
            }
        }
        if let Some(s) = &self.host_shim {
            if s.cluster.is_empty() {
                return Err(ConfigError::new("hostShim.cluster", "must not be empty"));
            }
            if !(1..=MAX_SHIM_TIMEOUT_MS).contains(&s.timeout_ms) {
                return Err(ConfigError::new(
                    "hostShim.timeoutMs",
                    format!("must be between 1 and {MAX_SHIM_TIMEOUT_MS}"),
                ));
            }
        }
        self.allow_on_headers_stop_iteration.require(
            "affinity",
            "it sets the destination before Envoy's router takes the route",
        )?;
        Ok(())
    }
}

/// The key that keeps a prompt prefix on one endpoint when the choice is made by consistent
/// hashing: the chained hash of the first `affinity_blocks` blocks (fewer if the prompt is
/// shorter), or a hash of the whole prompt when it is shorter than one block.
pub fn affinity_key(model: &str, prompt: &[u8], hashes: &[u64], affinity_blocks: usize) -> u64 {
    let n = affinity_blocks.min(hashes.len());
    match n.checked_sub(1).and_then(|i| hashes.get(i)) {
        Some(h) => *h,
        None => xxhash_rust::xxh64::xxh64(prompt, BlockHasher::model_seed(model)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    #[test]
    fn validates_endpoints_and_sizes() {
        let ok = parse::<AffinityConfig>(
            br#"{"endpoints":["127.0.0.1:9000"],"allowOnHeadersStopIteration":true}"#,
        )
        .unwrap();
        assert_eq!(ok.parsed_endpoints().len(), 1);
        assert_eq!(ok.hasher().block_size, DEFAULT_BLOCK_SIZE);
        let err =
            parse::<AffinityConfig>(br#"{"endpoints":["127.0.0.1:9000","pod:80"]}"#).unwrap_err();
        assert_eq!(err.path, "endpoints[1]");
        assert!(parse::<AffinityConfig>(br#"{"endpoints":[]}"#).is_err());
        let err =
            parse::<AffinityConfig>(br#"{"endpoints":["127.0.0.1:1"],"blockSize":0}"#).unwrap_err();
        assert_eq!(err.path, "blockSize");
        let err = parse::<AffinityConfig>(br#"{"endpoints":["127.0.0.1:1"],"hintHeader":"a b"}"#)
            .unwrap_err();
        assert_eq!(err.path, "hintHeader");
        // Without the host's header hold the plugin cannot route: refused, naming the field.
        let err = parse::<AffinityConfig>(br#"{"endpoints":["127.0.0.1:1"]}"#).unwrap_err();
        assert_eq!(err.path, "allowOnHeadersStopIteration");
    }

    #[test]
    fn key_follows_the_leading_blocks() {
        let h = BlockHasher {
            block_size: 4,
            max_blocks: 16,
        };
        let a = b"sys-prompt-shared-part|question one";
        let b = b"sys-prompt-shared-part|another question";
        let ka = affinity_key("m", a, &h.hashes("m", a), 4);
        let kb = affinity_key("m", b, &h.hashes("m", b), 4);
        assert_eq!(ka, kb, "same first 16 bytes, same key");
        let kc = affinity_key(
            "m",
            b"different start....",
            &h.hashes("m", b"different start...."),
            4,
        );
        assert_ne!(ka, kc);
        // Shorter than one block: the whole prompt decides.
        assert_ne!(
            affinity_key("m", b"ab", &[], 4),
            affinity_key("m", b"ac", &[], 4)
        );
    }
}
