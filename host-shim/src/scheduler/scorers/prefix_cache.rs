//! `prefix-cache-scorer`: prefers the endpoint most likely to hold the prompt's prefix in its
//! KV cache, scoring matched blocks / prompt blocks from the approximate prefix index.
//!
//! Unlike GIE's scorer, a saturated endpoint (per the saturation detector) gets no prefix
//! credit by default (`saturationAware: true`): a popular prefix would otherwise pin all its
//! traffic to one endpoint however long its queue grows. Once it spills over, the endpoint
//! that served also caches the prefix, so hot prefixes replicate instead of hot-spotting.
//!
//! Its parameters also set how prompts are hashed and how the index is sized (llm-d names
//! where they exist): `hashBlockSize` (alias `blockSize`, prompt bytes per block),
//! `maxPrefixBlocksToMatch`, `lruCapacityPerServer` (index blocks while a pod has not
//! reported its KV capacity), plus `bytesPerToken` and `maxBlocksPerServer`.

use crate::index::IndexSizing;
use crate::scheduler::plugin::{Candidate, Scorer};
use crate::scheduler::PickRequest;
use infergate_core::config::ConfigError;
use infergate_core::prefix::BlockHasher;
use serde::Deserialize;

/// Plugin type name.
pub const TYPE: &str = "prefix-cache-scorer";

/// Parameters of `prefix-cache-scorer`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixCacheParams {
    /// Prompt bytes per hashed block.
    #[serde(alias = "blockSize")]
    pub hash_block_size: Option<usize>,
    /// Most leading blocks hashed and matched per request.
    pub max_prefix_blocks_to_match: Option<usize>,
    /// Index capacity per endpoint before its KV capacity is known.
    pub lru_capacity_per_server: Option<usize>,
    /// Average prompt bytes per token.
    pub bytes_per_token: Option<f64>,
    /// Upper bound of any endpoint's index capacity, in blocks.
    pub max_blocks_per_server: Option<usize>,
    /// Give saturated endpoints no prefix credit (default `true`).
    pub saturation_aware: Option<bool>,
}

impl PrefixCacheParams {
    /// Applies the parameters to the hasher and index sizing; `path` names the parameters
    /// object in errors.
    pub fn apply(
        &self,
        hasher: &mut BlockHasher,
        sizing: &mut IndexSizing,
        path: &str,
    ) -> Result<(), ConfigError> {
        let positive = |v: usize, f: &str| {
            if v == 0 {
                Err(ConfigError::new(
                    format!("{path}.{f}"),
                    "must be greater than 0",
                ))
            } else {
                Ok(v)
            }
        };
        if let Some(v) = self.hash_block_size {
            hasher.block_size = positive(v, "hashBlockSize")?;
            sizing.block_bytes = v;
        }
        if let Some(v) = self.max_prefix_blocks_to_match {
            hasher.max_blocks = positive(v, "maxPrefixBlocksToMatch")?;
        }
        if let Some(v) = self.lru_capacity_per_server {
            sizing.default_blocks = positive(v, "lruCapacityPerServer")?;
        }
        if let Some(v) = self.max_blocks_per_server {
            sizing.max_blocks = positive(v, "maxBlocksPerServer")?;
        }
        if let Some(v) = self.bytes_per_token {
            if !(v.is_finite() && v > 0.0) {
                return Err(ConfigError::new(
                    format!("{path}.bytesPerToken"),
                    "must be a positive number",
                ));
            }
            sizing.bytes_per_token = v;
        }
        Ok(())
    }
}

/// Scores by cached-prefix fraction.
#[derive(Debug)]
pub struct PrefixCacheScorer {
    saturation_aware: bool,
}

impl Default for PrefixCacheScorer {
    fn default() -> Self {
        Self {
            saturation_aware: true,
        }
    }
}

impl PrefixCacheScorer {
    /// A scorer for `params`.
    pub fn new(params: &PrefixCacheParams) -> Self {
        Self {
            saturation_aware: params.saturation_aware.unwrap_or(true),
        }
    }
}

impl Scorer for PrefixCacheScorer {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn score(&self, req: &PickRequest, candidates: &[Candidate<'_>], out: &mut [f64]) {
        let total = req.block_hashes.len();
        if total == 0 {
            return;
        }
        for (o, c) in out.iter_mut().zip(candidates) {
            if !(self.saturation_aware && c.saturated) {
                *o = c.prefix_blocks as f64 / total as f64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::scorers::test_support::*;

    #[test]
    fn scores_matched_fraction() {
        let st = states(&[(0, 0.0), (0, 0.0)]);
        let mut c = candidates(&st, &[3, 0]);
        let req = PickRequest {
            block_hashes: vec![1, 2, 3, 4],
            ..Default::default()
        };
        let scorer = PrefixCacheScorer::default();
        let mut out = [0.0; 2];
        scorer.score(&req, &c, &mut out);
        assert_eq!(out, [0.75, 0.0]);
        let mut out = [0.0; 2];
        scorer.score(&PickRequest::default(), &c, &mut out);
        assert_eq!(out, [0.0, 0.0]);

        // A saturated endpoint loses its prefix credit unless configured otherwise.
        c[0].saturated = true;
        let mut out = [0.0; 2];
        scorer.score(&req, &c, &mut out);
        assert_eq!(out, [0.0, 0.0]);
        let plain = PrefixCacheScorer::new(&PrefixCacheParams {
            saturation_aware: Some(false),
            ..Default::default()
        });
        plain.score(&req, &c, &mut out);
        assert_eq!(out, [0.75, 0.0]);
    }

    #[test]
    fn params_reject_zero_and_apply_values() {
        let mut h = BlockHasher::default();
        let mut s = IndexSizing::default();
        let zero = PrefixCacheParams {
            hash_block_size: Some(0),
            ..Default::default()
        };
        let err = zero
            .apply(&mut h, &mut s, "plugins[2].parameters")
            .unwrap_err();
        assert_eq!(err.path, "plugins[2].parameters.hashBlockSize");
        let ok = PrefixCacheParams {
            hash_block_size: Some(64),
            lru_capacity_per_server: Some(31250),
            ..Default::default()
        };
        ok.apply(&mut h, &mut s, "p").unwrap();
        assert_eq!(
            (h.block_size, s.block_bytes, s.default_blocks),
            (64, 64, 31250)
        );
    }
}
