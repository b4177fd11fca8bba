//! `prefix-cache-scorer`: prefers the endpoint most likely to hold the prompt's prefix in its
//! KV cache, scoring matched blocks / prompt blocks from the approximate prefix index.
//!
//! Unlike GIE's scorer, it has two load guards, so a popular prefix cannot pin all its traffic
//! to one endpoint however long its queue grows:
//!
//! - with `saturationAware: true` (default off), a saturated endpoint (per the saturation
//!   detector) gets no prefix credit while another candidate is not saturated. When every
//!   endpoint is saturated the credit stays: spilling then buys no headroom, it only copies
//!   prefixes into other caches and evicts theirs. Off by default because measured it costs
//!   more than it buys: on bench-routing's shared-prefix workload live through the gateway
//!   (`make bench-routing-live`) pods at 0.8 KV usage lost their groups, prefix hit 60% vs
//!   67% and TTFT p50 159 vs 73 ms, and offline from 0.05 up to 1.0 of capacity it was
//!   never better on any of the four workloads;
//! - an endpoint whose queue (waiting plus dispatched since the scrape) is more than
//!   `balanceAbsThreshold` requests longer *and* more than `balanceRelThreshold` times the
//!   shortest candidate queue gets no prefix credit, saturated or not (SGLang's cache-aware
//!   router balances on the same two tests).
//!
//! Once a prefix spills over, the endpoint that served also caches it, so hot prefixes
//! replicate instead of hot-spotting.
//!
//! Its parameters also set how prompts are hashed and how the index is sized (llm-d names
//! where they exist): `hashBlockSize` (alias `blockSize`, prompt bytes per block),
//! `maxPrefixBlocksToMatch`, `lruCapacityPerServer` (index blocks while a pod has not
//! reported its KV capacity), plus `bytesPerToken` (fixes the index size; unset, it is learned
//! from the pods' prompt-token counters, see [`crate::index::calibration`]) and
//! `maxBlocksPerServer`; and the guards:
//! `saturationAware`, `balanceAbsThreshold`, `balanceRelThreshold`; and `provisionalInsert`
//! (pick-time insertion into the index, see [`crate::scheduler`]).

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
    /// Give saturated endpoints no prefix credit while some candidate is not saturated
    /// (default `false`).
    pub saturation_aware: Option<bool>,
    /// Load guard, absolute part: an endpoint whose queue is more than this many requests
    /// longer than the shortest candidate queue gets no prefix credit (default
    /// [`DEFAULT_BALANCE_ABS_THRESHOLD`]). Both thresholds must be exceeded.
    pub balance_abs_threshold: Option<f64>,
    /// Load guard, relative part: the queue must also be more than this many times the
    /// shortest one (default [`DEFAULT_BALANCE_REL_THRESHOLD`]).
    pub balance_rel_threshold: Option<f64>,
    /// Insert a picked request's blocks into the chosen endpoint's index at pick time, before
    /// the served report confirms them (default `true`).
    pub provisional_insert: Option<bool>,
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
        for (v, f) in [
            (self.balance_abs_threshold, "balanceAbsThreshold"),
            (self.balance_rel_threshold, "balanceRelThreshold"),
        ] {
            if matches!(v, Some(v) if !(v.is_finite() && v >= 0.0)) {
                return Err(ConfigError::new(
                    format!("{path}.{f}"),
                    "must be a finite number ≥ 0",
                ));
            }
        }
        if let Some(v) = self.bytes_per_token {
            if !(v.is_finite() && v > 0.0) {
                return Err(ConfigError::new(
                    format!("{path}.bytesPerToken"),
                    "must be a positive number",
                ));
            }
            sizing.bytes_per_token = v;
            sizing.calibrate = false;
        }
        Ok(())
    }
}

/// Default of `balanceAbsThreshold`: queued requests beyond the shortest queue.
pub const DEFAULT_BALANCE_ABS_THRESHOLD: f64 = 32.0;
/// Default of `balanceRelThreshold`: multiple of the shortest queue.
pub const DEFAULT_BALANCE_REL_THRESHOLD: f64 = 1.5;

/// Scores by cached-prefix fraction.
#[derive(Debug)]
pub struct PrefixCacheScorer {
    saturation_aware: bool,
    balance_abs: f64,
    balance_rel: f64,
}

impl Default for PrefixCacheScorer {
    fn default() -> Self {
        Self::new(&PrefixCacheParams::default())
    }
}

impl PrefixCacheScorer {
    /// A scorer for `params`.
    pub fn new(params: &PrefixCacheParams) -> Self {
        Self {
            saturation_aware: params.saturation_aware.unwrap_or(false),
            balance_abs: params
                .balance_abs_threshold
                .unwrap_or(DEFAULT_BALANCE_ABS_THRESHOLD),
            balance_rel: params
                .balance_rel_threshold
                .unwrap_or(DEFAULT_BALANCE_REL_THRESHOLD),
        }
    }

    /// Whether a candidate with queue `q` is too far behind the shortest queue `min` to be
    /// worth its cached prefix (SGLang's cache-aware router balances on the same two tests).
    fn overloaded(&self, q: u64, min: u64) -> bool {
        let (q, min) = (q as f64, min as f64);
        q - min > self.balance_abs && q > min * self.balance_rel
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
        let min_queue = candidates
            .iter()
            .map(Candidate::effective_waiting)
            .min()
            .unwrap_or(0);
        // Withholding credit from a saturated endpoint only helps if another has headroom;
        // when all are saturated, spilling just duplicates prefixes and thrashes caches.
        let headroom_elsewhere = candidates.iter().any(|c| !c.saturated);
        for (o, c) in out.iter_mut().zip(candidates) {
            if self.saturation_aware && c.saturated && headroom_elsewhere {
                continue;
            }
            if self.overloaded(c.effective_waiting(), min_queue) {
                continue;
            }
            *o = c.prefix_blocks as f64 / total as f64;
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

        // A saturated endpoint keeps its prefix credit unless configured otherwise.
        c[0].saturated = true;
        let mut out = [0.0; 2];
        scorer.score(&req, &c, &mut out);
        assert_eq!(out, [0.75, 0.0]);
        let aware = PrefixCacheScorer::new(&PrefixCacheParams {
            saturation_aware: Some(true),
            ..Default::default()
        });
        let mut out = [0.0; 2];
        aware.score(&req, &c, &mut out);
        assert_eq!(out, [0.0, 0.0]);
    }

    #[test]
    fn saturation_withholds_credit_only_while_another_endpoint_has_headroom() {
        let st = states(&[(0, 0.0), (0, 0.0)]);
        let mut c = candidates(&st, &[4, 2]);
        let req = PickRequest {
            block_hashes: vec![1, 2, 3, 4],
            ..Default::default()
        };
        let scorer = PrefixCacheScorer::new(&PrefixCacheParams {
            saturation_aware: Some(true),
            ..Default::default()
        });
        c[0].saturated = true;
        let mut out = [0.0; 2];
        scorer.score(&req, &c, &mut out);
        assert_eq!(out, [0.0, 0.5]);
        // Everyone saturated: spilling would only duplicate the prefix, so credit stays.
        c[1].saturated = true;
        scorer.score(&req, &c, &mut out);
        assert_eq!(out, [1.0, 0.5]);
    }

    #[test]
    fn load_guard_needs_both_thresholds_exceeded() {
        let req = PickRequest {
            block_hashes: vec![1, 2],
            ..Default::default()
        };
        let scorer = PrefixCacheScorer::new(&PrefixCacheParams {
            balance_abs_threshold: Some(10.0),
            balance_rel_threshold: Some(2.0),
            ..Default::default()
        });
        let score = |queues: &[(u64, f64)]| {
            let st = states(queues);
            let c = candidates(&st, &[2, 2, 2]);
            let mut out = [0.0; 3];
            scorer.score(&req, &c, &mut out);
            out
        };
        // 31 vs 20: 11 more (> 10) but not 2×; 12 vs 2: 6× but only 10 more.
        assert_eq!(score(&[(31, 0.0), (20, 0.0), (25, 0.0)]), [1.0; 3]);
        assert_eq!(score(&[(12, 0.0), (2, 0.0), (5, 0.0)]), [1.0; 3]);
        // 45 vs 20: both exceeded, that endpoint alone loses its credit.
        assert_eq!(score(&[(45, 0.0), (20, 0.0), (25, 0.0)]), [0.0, 1.0, 1.0]);
        // Dispatches since the scrape count as queued.
        let st = states(&[(20, 0.0), (20, 0.0), (20, 0.0)]);
        let mut c = candidates(&st, &[2, 2, 2]);
        c[2].dispatched.requests = 30;
        let mut out = [0.0; 3];
        scorer.score(&req, &c, &mut out);
        assert_eq!(out, [1.0, 1.0, 0.0]);
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
        let negative = PrefixCacheParams {
            balance_rel_threshold: Some(-1.0),
            ..Default::default()
        };
        let err = negative.apply(&mut h, &mut s, "p").unwrap_err();
        assert_eq!(err.path, "p.balanceRelThreshold");
    }
}
