//! `weighted-random-picker`: picks with probability proportional to the total score, which
//! trades a little affinity for no hot spots. Candidates scoring 0 are never picked unless
//! all do, then the pick is uniform.

use crate::scheduler::plugin::{Candidate, Picker};
use crate::scheduler::rng::Rng;
use crate::scheduler::PickRequest;

/// Plugin type name.
pub const TYPE: &str = "weighted-random-picker";

/// Picks at random, weighted by score.
#[derive(Debug, Default)]
pub struct WeightedRandomPicker;

impl Picker for WeightedRandomPicker {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn pick(
        &self,
        _req: &PickRequest,
        candidates: &[Candidate<'_>],
        totals: &[f64],
        rng: &Rng,
    ) -> usize {
        let n = candidates.len().min(totals.len());
        let sum: f64 = totals[..n].iter().map(|t| t.max(0.0)).sum();
        if sum <= 0.0 || !sum.is_finite() {
            return (rng.next_u64() % n.max(1) as u64) as usize;
        }
        let mut target = rng.next_f64() * sum;
        for (i, t) in totals[..n].iter().enumerate() {
            let w = t.max(0.0);
            if target < w {
                return i;
            }
            target -= w;
        }
        // Rounding left a sliver past the last weight: take the last positive one.
        totals[..n].iter().rposition(|t| *t > 0.0).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::scorers::test_support::*;

    #[test]
    fn frequency_follows_weight_and_zero_is_never_picked() {
        let st = states(&[(0, 0.0); 3]);
        let c = candidates(&st, &[]);
        let rng = Rng::new(42);
        let mut hits = [0usize; 3];
        for _ in 0..3000 {
            hits[WeightedRandomPicker.pick(&PickRequest::default(), &c, &[3.0, 1.0, 0.0], &rng)] +=
                1;
        }
        assert_eq!(hits[2], 0);
        assert!(hits[0] > 2 * hits[1], "{hits:?}");
        assert!(hits[1] > 0);
        let i = WeightedRandomPicker.pick(&PickRequest::default(), &c, &[0.0; 3], &rng);
        assert!(i < 3);
    }
}
