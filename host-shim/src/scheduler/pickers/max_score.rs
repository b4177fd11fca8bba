//! `max-score-picker`: the highest total score wins.
//!
//! Ties are broken by rendezvous hashing on the request's affinity key (its first prefix
//! block, else its session key), so equal-scoring endpoints share new prefixes out evenly
//! and independent scheduler replicas make the same choice; a request with neither key
//! breaks ties at random.

use crate::scheduler::plugin::{Candidate, Picker};
use crate::scheduler::rng::Rng;
use crate::scheduler::{endpoint_key, PickRequest};

/// Plugin type name.
pub const TYPE: &str = "max-score-picker";

/// Scores closer than this are a tie.
const EPSILON: f64 = 1e-9;

/// Picks the best-scoring candidate.
#[derive(Debug, Default)]
pub struct MaxScorePicker;

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
        let best = totals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let key = req.affinity_key().unwrap_or_else(|| rng.next_u64());
        (0..candidates.len())
            .filter(|&i| totals[i] >= best - EPSILON)
            .max_by_key(|&i| endpoint_key(&candidates[i].state.endpoint, key))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::scorers::test_support::*;

    #[test]
    fn highest_wins_and_ties_spread_by_key() {
        let st = states(&[(0, 0.0); 4]);
        let c = candidates(&st, &[]);
        let rng = Rng::new(1);
        let req = PickRequest::default();
        assert_eq!(
            MaxScorePicker.pick(&req, &c, &[0.1, 0.9, 0.5, 0.2], &rng),
            1
        );

        let mut seen = [0usize; 4];
        for k in 0..400u64 {
            let req = PickRequest {
                block_hashes: vec![k.wrapping_mul(0x9E37_79B9_7F4A_7C15)],
                ..Default::default()
            };
            let a = MaxScorePicker.pick(&req, &c, &[1.0; 4], &rng);
            // Same key, same choice: replicas agree.
            assert_eq!(a, MaxScorePicker.pick(&req, &c, &[1.0; 4], &Rng::new(99)));
            seen[a] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}
