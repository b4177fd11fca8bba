//! Prefix stickiness for `max-score-picker`: while the load is balanced, the endpoint that
//! holds the longest part of the prompt's prefix keeps the request, whatever the load scorers
//! say about a few queued requests.
//!
//! Without it a known prefix group moved off its holder ("spread") whenever one request more
//! was queued there: the queue scorer is min-max normalised, so a single queued request costs
//! the holder its whole queue score, and near-equal KV usage decides the rest. SMG's (SGLang's)
//! `cache_aware` router never spreads at moderate load: it sends a request to its best prefix
//! match while the load is balanced (abs threshold 64, rel 1.5 on its in-flight counts) and
//! its match ratio is above `cache_threshold` (0.3). This rule does the same inside host-shim's
//! scoring pipeline:
//!
//! 1. the candidates whose matched prefix is at least `prefixAffinityThreshold` of the prompt's
//!    blocks and that are not overloaded are the *holders*; overloaded means the endpoint's
//!    load is more than `affinityBalanceAbsThreshold` (16) above the least-loaded candidate's *and*
//!    more than `affinityBalanceRelThreshold` (1.5) times it (both tests, as SGLang's);
//! 2. if there are holders, the picker chooses among those with the longest match (a prefix
//!    replicated on several endpoints still goes to the best-scoring copy); otherwise among all.
//!
//! Load is `affinityLoad`: `requests` (default: running + waiting + dispatched since the
//! scrape, what SMG's in-flight count measures) or `queue` (waiting + dispatched only).
//!
//! Saturation does not end a holder's claim unless `affinitySaturationAware` is set (default
//! off, like the prefix scorer's `saturationAware`; a config that turns that on should turn
//! this on too, or a saturated holder keeps its groups through this rule): then a saturated
//! holder is no holder while another candidate is not saturated.

use crate::scheduler::plugin::Candidate;
use crate::scheduler::PickRequest;
use infergate_core::config::ConfigError;
use serde::Deserialize;

/// Default of `prefixAffinityThreshold`: SMG's `--cache-threshold`.
pub const DEFAULT_THRESHOLD: f64 = 0.3;
/// Default of `affinityBalanceAbsThreshold`, requests. Decided live (`make
/// bench-routing-live`, 4 pods at 0.05–0.35 of capacity): 16 and 32 tie on shared-prefix
/// (74.4 vs 74.5% prefix hit), 16 wins on zipf-hot (TTFT p90/p99 240/315 vs 324/839 ms, max/mean
/// requests 1.23 vs 1.49: a hot prefix must spread sooner) and multi-turn (41.3 vs 40.3%).
pub const DEFAULT_ABS: f64 = 16.0;
/// Default of `affinityBalanceRelThreshold`.
pub const DEFAULT_REL: f64 = 1.5;

/// What the balance guard compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AffinityLoad {
    /// Requests at the endpoint: running + waiting + dispatched since its scrape.
    #[default]
    Requests,
    /// Waiting requests + dispatched since its scrape.
    Queue,
}

/// The prefix-affinity rule's parameters (part of `max-score-picker`'s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrefixAffinity {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Matched fraction of the prompt's blocks from which an endpoint is a holder.
    pub threshold: f64,
    /// Guard, absolute part (requests beyond the least-loaded candidate).
    pub abs: f64,
    /// Guard, relative part (multiple of the least-loaded candidate's load).
    pub rel: f64,
    /// What the guard compares.
    pub load: AffinityLoad,
    /// Whether a saturated endpoint loses its claim while another candidate is not saturated.
    pub saturation_aware: bool,
}

impl Default for PrefixAffinity {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: DEFAULT_THRESHOLD,
            abs: DEFAULT_ABS,
            rel: DEFAULT_REL,
            load: AffinityLoad::default(),
            saturation_aware: false,
        }
    }
}

impl PrefixAffinity {
    /// The rule from the picker's optional parameters; `path` names the parameters object in
    /// errors.
    pub fn new(
        enabled: Option<bool>,
        threshold: Option<f64>,
        abs: Option<f64>,
        rel: Option<f64>,
        load: Option<AffinityLoad>,
        path: &str,
    ) -> Result<Self, ConfigError> {
        let d = Self::default();
        let check = |v: Option<f64>, field: &str, max: f64| match v {
            Some(v) if !(v.is_finite() && (0.0..=max).contains(&v)) => Err(ConfigError::new(
                format!("{path}.{field}"),
                if max.is_finite() {
                    format!("must be a number from 0 to {max}")
                } else {
                    "must be a finite number ≥ 0".to_string()
                },
            )),
            _ => Ok(v),
        };
        Ok(Self {
            enabled: enabled.unwrap_or(d.enabled),
            threshold: check(threshold, "prefixAffinityThreshold", 1.0)?.unwrap_or(d.threshold),
            abs: check(abs, "affinityBalanceAbsThreshold", f64::INFINITY)?.unwrap_or(d.abs),
            rel: check(rel, "affinityBalanceRelThreshold", f64::INFINITY)?.unwrap_or(d.rel),
            load: load.unwrap_or(d.load),
            saturation_aware: d.saturation_aware,
        })
    }

    fn load_of(&self, c: &Candidate<'_>) -> f64 {
        let q = c.effective_waiting();
        (match self.load {
            AffinityLoad::Requests => q + c.metrics.running,
            AffinityLoad::Queue => q,
        }) as f64
    }

    /// The candidates the picker should choose among: the balanced holders of the longest
    /// prefix match, or `None` when the rule does not apply (disabled, no prompt blocks, or
    /// no balanced candidate holds enough of the prefix).
    pub fn restrict(&self, req: &PickRequest, candidates: &[Candidate<'_>]) -> Option<Vec<usize>> {
        let total = req.block_hashes.len();
        if !self.enabled || total == 0 || candidates.len() < 2 {
            return None;
        }
        let min_load = candidates
            .iter()
            .map(|c| self.load_of(c))
            .fold(f64::INFINITY, f64::min);
        let headroom_elsewhere = candidates.iter().any(|c| !c.saturated);
        let holder = |c: &Candidate<'_>| {
            let l = self.load_of(c);
            let overloaded = l - min_load > self.abs && l > min_load * self.rel;
            let saturated = self.saturation_aware && c.saturated && headroom_elsewhere;
            c.prefix_blocks > 0
                && c.prefix_blocks as f64 >= self.threshold * total as f64
                && !overloaded
                && !saturated
        };
        let best = candidates
            .iter()
            .filter(|c| holder(c))
            .map(|c| c.prefix_blocks)
            .max()?;
        Some(
            (0..candidates.len())
                .filter(|&i| holder(&candidates[i]) && candidates[i].prefix_blocks == best)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::scorers::test_support::*;

    fn req(blocks: u64) -> PickRequest {
        PickRequest {
            block_hashes: (1..=blocks).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn holder_keeps_its_group_under_a_small_load_difference() {
        // The holder has 3 more queued requests and fuller KV: still the holder's.
        let st = states(&[(3, 0.5), (0, 0.1), (0, 0.1)]);
        let c = candidates(&st, &[8, 0, 0]);
        assert_eq!(
            PrefixAffinity::default().restrict(&req(10), &c),
            Some(vec![0])
        );
        // Disabled, or a match below the threshold, leaves the choice to the scores.
        let off = PrefixAffinity {
            enabled: false,
            ..Default::default()
        };
        assert_eq!(off.restrict(&req(10), &c), None);
        let c = candidates(&st, &[2, 0, 0]);
        assert_eq!(PrefixAffinity::default().restrict(&req(10), &c), None);
        // No prompt blocks: nothing to stick to.
        assert_eq!(PrefixAffinity::default().restrict(&req(0), &c), None);
    }

    #[test]
    fn longest_match_wins_and_replicas_stay_candidates() {
        let st = states(&[(0, 0.0), (0, 0.0), (0, 0.0)]);
        let c = candidates(&st, &[6, 9, 9]);
        assert_eq!(
            PrefixAffinity::default().restrict(&req(10), &c),
            Some(vec![1, 2])
        );
    }

    #[test]
    fn hot_prefix_moves_once_the_balance_guard_trips() {
        let rule = PrefixAffinity::new(None, None, Some(10.0), Some(2.0), None, "p").unwrap();
        // Holder 25 requests vs 14: 11 more (> 10) but not 2×: it keeps the group.
        let st = states(&[(25, 0.0), (14, 0.0)]);
        let c = candidates(&st, &[10, 0]);
        assert_eq!(rule.restrict(&req(10), &c), Some(vec![0]));
        // 25 vs 5: both tests exceeded; no other holder, so the rule gives up and the
        // scores decide.
        let st = states(&[(25, 0.0), (5, 0.0)]);
        let c = candidates(&st, &[10, 0]);
        assert_eq!(rule.restrict(&req(10), &c), None);
        // A second holder within the guard takes over.
        let st = states(&[(25, 0.0), (5, 0.0), (8, 0.0)]);
        let c = candidates(&st, &[10, 0, 10]);
        assert_eq!(rule.restrict(&req(10), &c), Some(vec![2]));
        // Dispatches since the scrape count; running requests count under `requests` only.
        let st = states(&[(5, 0.0), (5, 0.0)]);
        let mut c = candidates(&st, &[10, 0]);
        c[0].dispatched.requests = 20;
        assert_eq!(rule.restrict(&req(10), &c), None);
        let mut st = states(&[(0, 0.0), (0, 0.0)]);
        st[0].metrics.as_mut().unwrap().running = 30;
        st[1].metrics.as_mut().unwrap().running = 2;
        let c = candidates(&st, &[10, 0]);
        assert_eq!(rule.restrict(&req(10), &c), None);
        let queue = PrefixAffinity {
            load: AffinityLoad::Queue,
            ..rule
        };
        assert_eq!(queue.restrict(&req(10), &c), Some(vec![0]));
    }

    #[test]
    fn saturation_ends_the_claim_only_when_configured() {
        let st = states(&[(0, 0.0), (0, 0.0)]);
        let mut c = candidates(&st, &[10, 5]);
        c[0].saturated = true;
        let aware = PrefixAffinity {
            saturation_aware: true,
            ..Default::default()
        };
        assert_eq!(
            PrefixAffinity::default().restrict(&req(10), &c),
            Some(vec![0])
        );
        assert_eq!(aware.restrict(&req(10), &c), Some(vec![1]));
        // Everyone saturated: moving buys no headroom, the claim stays.
        c[1].saturated = true;
        assert_eq!(aware.restrict(&req(10), &c), Some(vec![0]));
    }

    #[test]
    fn bad_parameters_name_the_field() {
        let err = PrefixAffinity::new(None, Some(1.5), None, None, None, "plugins[3].parameters")
            .unwrap_err();
        assert_eq!(err.path, "plugins[3].parameters.prefixAffinityThreshold");
        let err = PrefixAffinity::new(None, None, Some(f64::NAN), None, None, "p").unwrap_err();
        assert_eq!(err.path, "p.affinityBalanceAbsThreshold");
        let err = PrefixAffinity::new(None, None, None, Some(-1.0), None, "p").unwrap_err();
        assert_eq!(err.path, "p.affinityBalanceRelThreshold");
    }
}
