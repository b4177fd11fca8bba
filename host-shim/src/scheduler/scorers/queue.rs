//! `queue-scorer`: prefers short queues. Scores are min-max normalised over the candidates
//! (shortest queue 1, longest 0), as GIE's queue scorer does; the queue counts requests
//! dispatched since the last scrape, so a burst between two scrapes spreads out.

use crate::scheduler::plugin::{Candidate, Scorer};
use crate::scheduler::PickRequest;

/// Plugin type name.
pub const TYPE: &str = "queue-scorer";

/// Scores by waiting-queue length.
#[derive(Debug, Default)]
pub struct QueueScorer;

impl Scorer for QueueScorer {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn score(&self, _req: &PickRequest, candidates: &[Candidate<'_>], out: &mut [f64]) {
        let qs = candidates.iter().map(|c| c.effective_waiting());
        let (lo, hi) = qs.fold((u64::MAX, 0), |(lo, hi), q| (lo.min(q), hi.max(q)));
        for (o, c) in out.iter_mut().zip(candidates) {
            *o = if hi == lo {
                1.0
            } else {
                (hi - c.effective_waiting()) as f64 / (hi - lo) as f64
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::scorers::test_support::*;

    #[test]
    fn shortest_queue_scores_highest_and_dispatches_count() {
        let st = states(&[(0, 0.0), (5, 0.0), (10, 0.0)]);
        let mut c = candidates(&st, &[]);
        let mut out = [0.0; 3];
        QueueScorer.score(&PickRequest::default(), &c, &mut out);
        assert_eq!(out, [1.0, 0.5, 0.0]);
        c[0].dispatched.requests = 10;
        QueueScorer.score(&PickRequest::default(), &c, &mut out);
        assert_eq!(out, [0.0, 1.0, 0.0]);
    }
}
