//! `load-aware-scorer` (llm-d): an absolute load score rather than a relative one. An idle
//! queue scores 0.5, a queue at `threshold` or longer scores 0, linearly in between, so an
//! overloaded endpoint loses even when every endpoint is busy.

use crate::scheduler::plugin::{Candidate, Scorer};
use crate::scheduler::PickRequest;
use serde::Deserialize;

/// Plugin type name.
pub const TYPE: &str = "load-aware-scorer";

/// Parameters of `load-aware-scorer`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadAwareParams {
    /// Queue length that scores 0 (default 128, as llm-d).
    #[serde(default = "default_threshold")]
    pub threshold: u64,
}

fn default_threshold() -> u64 {
    128
}

impl Default for LoadAwareParams {
    fn default() -> Self {
        Self {
            threshold: default_threshold(),
        }
    }
}

/// Scores by absolute queue length.
#[derive(Debug)]
pub struct LoadAwareScorer {
    threshold: u64,
}

impl LoadAwareScorer {
    /// A scorer for `params` (a threshold of 0 is treated as 1).
    pub fn new(params: LoadAwareParams) -> Self {
        Self {
            threshold: params.threshold.max(1),
        }
    }
}

impl Scorer for LoadAwareScorer {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn score(&self, _req: &PickRequest, candidates: &[Candidate<'_>], out: &mut [f64]) {
        for (o, c) in out.iter_mut().zip(candidates) {
            let q = c.effective_waiting().min(self.threshold);
            *o = 0.5 * (1.0 - q as f64 / self.threshold as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::scorers::test_support::*;

    #[test]
    fn idle_half_overloaded_zero() {
        let st = states(&[(0, 0.0), (5, 0.0), (50, 0.0)]);
        let c = candidates(&st, &[]);
        let mut out = [0.0; 3];
        LoadAwareScorer::new(LoadAwareParams { threshold: 10 }).score(
            &PickRequest::default(),
            &c,
            &mut out,
        );
        assert_eq!(out, [0.5, 0.25, 0.0]);
    }
}
