//! `max-score-picker`: the highest total score wins.
//!
//! Totals within `tieTolerance` of the best are a tie. Tiny score gaps (a fraction of a percent
//! of KV-cache usage between idle pods) carry no information, while the pods' last scrape
//! cannot show the prefill a pod started a few milliseconds ago; so by default
//! (`tieBreaker: leastRecentlyPicked`) a tie goes to the endpoint this scheduler picked least
//! recently, which spreads equal-looking load the way round robin does. Among endpoints never
//! picked, and with `tieBreaker: affinityHash`, ties are broken by rendezvous hashing on the
//! request's affinity key (its first prefix block, else its session key), so independent
//! scheduler replicas make the same choice for a new prefix; a request with neither key breaks
//! those ties at random.
//!
//! Before any of that, the prefix-affinity rule ([`super::prefix_affinity`], on by default)
//! narrows the choice to the balanced endpoints holding the longest part of the prompt's
//! prefix, so a known prefix group stays on its holder until the balance guard trips.

use super::prefix_affinity::{AffinityLoad, PrefixAffinity};
use crate::scheduler::plugin::{Candidate, Picker};
use crate::scheduler::rng::Rng;
use crate::scheduler::{endpoint_key, PickRequest};
use infergate_core::config::ConfigError;
use serde::Deserialize;

/// Plugin type name.
pub const TYPE: &str = "max-score-picker";

/// Default of `tieTolerance`, in units of weighted total score.
pub const DEFAULT_TIE_TOLERANCE: f64 = 0.05;

/// How a tie between best-scoring candidates is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TieBreaker {
    /// The endpoint this scheduler picked least recently (never-picked ones by hash).
    #[default]
    LeastRecentlyPicked,
    /// Rendezvous hash of the request's affinity key: every replica picks alike.
    AffinityHash,
    /// The endpoint with the fewest of this scheduler's requests in flight (picked, not
    /// reported complete), then the least recently picked.
    FewestInFlight,
}

/// Parameters of `max-score-picker`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaxScoreParams {
    /// llm-d's number of endpoints to return; host-shim always returns one endpoint plus
    /// fallbacks, so it is accepted and ignored.
    pub max_num_of_endpoints: Option<serde_yaml::Value>,
    /// Totals closer than this to the best count as a tie (default
    /// [`DEFAULT_TIE_TOLERANCE`]; the guide's weights sum to 7).
    pub tie_tolerance: Option<f64>,
    /// How ties are broken (default `leastRecentlyPicked`).
    pub tie_breaker: Option<TieBreaker>,
    /// Prefer the balanced holders of the longest prefix match (default `true`).
    pub prefix_affinity: Option<bool>,
    /// Matched fraction of the prompt from which an endpoint is a holder (default 0.3).
    pub prefix_affinity_threshold: Option<f64>,
    /// A holder loaded more than this many requests above the least-loaded candidate (and
    /// more than `affinityBalanceRelThreshold` times it) is not preferred (default 16).
    pub affinity_balance_abs_threshold: Option<f64>,
    /// Relative part of that guard (default 1.5).
    pub affinity_balance_rel_threshold: Option<f64>,
    /// What the guard compares: `requests` (running + waiting + dispatched, default) or
    /// `queue` (waiting + dispatched).
    pub affinity_load: Option<AffinityLoad>,
    /// A saturated holder loses its claim while another candidate is not saturated (default
    /// `false`; set it with the prefix scorer's `saturationAware`).
    pub affinity_saturation_aware: Option<bool>,
}

/// Picks the best-scoring candidate.
#[derive(Debug, Clone, Copy)]
pub struct MaxScorePicker {
    tolerance: f64,
    tie_breaker: TieBreaker,
    affinity: PrefixAffinity,
}

impl Default for MaxScorePicker {
    fn default() -> Self {
        Self {
            tolerance: DEFAULT_TIE_TOLERANCE,
            tie_breaker: TieBreaker::default(),
            affinity: PrefixAffinity::default(),
        }
    }
}

impl MaxScorePicker {
    /// A picker for `params`; `path` names the parameters object in errors.
    pub fn new(params: &MaxScoreParams, path: &str) -> Result<Self, ConfigError> {
        let tolerance = params.tie_tolerance.unwrap_or(DEFAULT_TIE_TOLERANCE);
        if !(tolerance.is_finite() && tolerance >= 0.0) {
            return Err(ConfigError::new(
                format!("{path}.tieTolerance"),
                "must be a finite number ≥ 0",
            ));
        }
        let mut affinity = PrefixAffinity::new(
            params.prefix_affinity,
            params.prefix_affinity_threshold,
            params.affinity_balance_abs_threshold,
            params.affinity_balance_rel_threshold,
            params.affinity_load,
            path,
        )?;
        affinity.saturation_aware = params
            .affinity_saturation_aware
            .unwrap_or(affinity.saturation_aware);
        Ok(Self {
            tolerance,
            tie_breaker: params.tie_breaker.unwrap_or_default(),
            affinity,
        })
    }
}

impl Picker for MaxScorePicker {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn pick(
        &self,
        req: &PickRequest,
        candidates: &[Candidate<'_>],
        totals: &[f64],
        rng: &Rng,
    ) -> usize {
        let n = candidates.len().min(totals.len());
        let pool: Vec<usize> = match self.affinity.restrict(req, &candidates[..n]) {
            Some(holders) => holders,
            None => (0..n).collect(),
        };
        let best = pool
            .iter()
            .map(|&i| totals[i])
            .fold(f64::NEG_INFINITY, f64::max);
        // Never below a rounding-error margin, so equal sums always tie.
        let floor = best - self.tolerance.max(1e-9);
        let key = req.affinity_key().unwrap_or_else(|| rng.next_u64());
        let hash = |i: usize| endpoint_key(&candidates[i].state.endpoint, key);
        let tied = pool.iter().copied().filter(|&i| totals[i] >= floor);
        match self.tie_breaker {
            // Oldest pick first; `!hash` so the rendezvous winner is the minimum among equals.
            TieBreaker::LeastRecentlyPicked => {
                tied.min_by_key(|&i| (candidates[i].last_pick, !hash(i)))
            }
            TieBreaker::AffinityHash => tied.max_by_key(|&i| hash(i)),
            TieBreaker::FewestInFlight => {
                tied.min_by_key(|&i| (candidates[i].in_flight, candidates[i].last_pick, !hash(i)))
            }
        }
        .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::scorers::test_support::*;

    fn hash_picker() -> MaxScorePicker {
        MaxScorePicker {
            tie_breaker: TieBreaker::AffinityHash,
            ..Default::default()
        }
    }

    #[test]
    fn highest_wins_and_ties_spread_by_key() {
        let st = states(&[(0, 0.0); 4]);
        let c = candidates(&st, &[]);
        let rng = Rng::new(1);
        let req = PickRequest::default();
        for p in [MaxScorePicker::default(), hash_picker()] {
            assert_eq!(p.pick(&req, &c, &[0.1, 0.9, 0.5, 0.2], &rng), 1);
        }

        // Never-picked endpoints tie-break by hash under both tie breakers.
        for p in [MaxScorePicker::default(), hash_picker()] {
            let mut seen = [0usize; 4];
            for k in 0..400u64 {
                let req = PickRequest {
                    block_hashes: vec![k.wrapping_mul(0x9E37_79B9_7F4A_7C15)],
                    ..Default::default()
                };
                let a = p.pick(&req, &c, &[1.0; 4], &rng);
                // Same key, same choice: replicas agree.
                assert_eq!(a, p.pick(&req, &c, &[1.0; 4], &Rng::new(99)));
                seen[a] += 1;
            }
            assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        }
    }

    #[test]
    fn near_ties_go_to_the_least_recently_picked() {
        let st = states(&[(0, 0.0); 3]);
        let mut c = candidates(&st, &[]);
        let rng = Rng::new(1);
        let req = PickRequest {
            block_hashes: vec![7],
            ..Default::default()
        };
        c[0].last_pick = 9;
        c[1].last_pick = 3;
        c[2].last_pick = 5;
        // 0.03 apart: within the default tolerance, so recency decides.
        let totals = [4.03, 4.0, 4.01];
        assert_eq!(MaxScorePicker::default().pick(&req, &c, &totals, &rng), 1);
        // A gap wider than the tolerance is a real difference.
        assert_eq!(
            MaxScorePicker::default().pick(&req, &c, &[4.2, 4.0, 4.01], &rng),
            0
        );
        // Zero tolerance: only exact ties; the hash picker ignores recency.
        let strict = MaxScorePicker::new(
            &MaxScoreParams {
                tie_tolerance: Some(0.0),
                ..Default::default()
            },
            "p",
        )
        .unwrap();
        assert_eq!(strict.pick(&req, &c, &totals, &rng), 0);
        // Fewest in flight wins before recency.
        let fewest = MaxScorePicker {
            tie_breaker: TieBreaker::FewestInFlight,
            ..Default::default()
        };
        c[0].in_flight = 2;
        c[1].in_flight = 5;
        c[2].in_flight = 2;
        assert_eq!(fewest.pick(&req, &c, &totals, &rng), 2);
        let h = hash_picker().pick(&req, &c, &[4.0; 3], &rng);
        c[h].last_pick = 100;
        assert_eq!(hash_picker().pick(&req, &c, &[4.0; 3], &rng), h);
        assert_ne!(MaxScorePicker::default().pick(&req, &c, &[4.0; 3], &rng), h);
    }

    #[test]
    fn prefix_holder_beats_better_totals_until_the_guard_trips() {
        let req = PickRequest {
            block_hashes: (1..=10).collect(),
            ..Default::default()
        };
        let rng = Rng::new(1);
        let st = states(&[(3, 0.0), (0, 0.0), (0, 0.0)]);
        let c = candidates(&st, &[8, 0, 0]);
        let totals = [3.4, 3.8, 3.8];
        assert_eq!(MaxScorePicker::default().pick(&req, &c, &totals, &rng), 0);
        let off: MaxScoreParams = serde_yaml::from_str("{prefixAffinity: false}").unwrap();
        let off = MaxScorePicker::new(&off, "p").unwrap();
        assert_ne!(off.pick(&req, &c, &totals, &rng), 0);
        // 40 queued vs 0: the holder is overloaded and the best total wins again.
        let st = states(&[(40, 0.0), (0, 0.0), (0, 0.0)]);
        let c = candidates(&st, &[8, 0, 0]);
        assert_ne!(MaxScorePicker::default().pick(&req, &c, &totals, &rng), 0);
        // Two holders: the totals choose between them.
        let st = states(&[(0, 0.0); 3]);
        let c = candidates(&st, &[8, 8, 0]);
        assert_eq!(
            MaxScorePicker::default().pick(&req, &c, &[3.0, 3.5, 4.0], &rng),
            1
        );
    }

    #[test]
    fn params_parse_and_reject_bad_tolerance() {
        let p: MaxScoreParams = serde_yaml::from_str(
            "{maxNumOfEndpoints: 1, tieTolerance: 0.1, tieBreaker: affinityHash}",
        )
        .unwrap();
        let picker = MaxScorePicker::new(&p, "p").unwrap();
        assert_eq!(picker.tie_breaker, TieBreaker::AffinityHash);
        assert_eq!(picker.tolerance, 0.1);
        let bad = MaxScoreParams {
            tie_tolerance: Some(-1.0),
            ..Default::default()
        };
        let err = MaxScorePicker::new(&bad, "plugins[3].parameters").unwrap_err();
        assert_eq!(err.path, "plugins[3].parameters.tieTolerance");
        assert!(serde_yaml::from_str::<MaxScoreParams>("{tieBreaker: random}").is_err());
    }
}
