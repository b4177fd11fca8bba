//! `kv-cache-utilization-scorer` (also accepted as `kv-cache-scorer`): prefers free KV cache,
//! scoring `1 - usage`. Usage counts prompt tokens dispatched since the last scrape against
//! the engine's reported capacity.

use crate::scheduler::plugin::{Candidate, Scorer};
use crate::scheduler::PickRequest;

/// Plugin type name.
pub const TYPE: &str = "kv-cache-utilization-scorer";
/// Older name of the same plugin.
pub const LEGACY_TYPE: &str = "kv-cache-scorer";

/// Scores by free KV-cache fraction.
#[derive(Debug, Default)]
pub struct KvCacheUtilizationScorer;

impl Scorer for KvCacheUtilizationScorer {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn score(&self, _req: &PickRequest, candidates: &[Candidate<'_>], out: &mut [f64]) {
        for (o, c) in out.iter_mut().zip(candidates) {
            *o = 1.0 - c.effective_kv_usage();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::scorers::test_support::*;

    #[test]
    fn free_cache_scores_higher_and_pending_tokens_count() {
        let st = states(&[(0, 0.2), (0, 0.9)]);
        let mut c = candidates(&st, &[]);
        let mut out = [0.0; 2];
        KvCacheUtilizationScorer.score(&PickRequest::default(), &c, &mut out);
        assert!((out[0] - 0.8).abs() < 1e-9 && (out[1] - 0.1).abs() < 1e-9);
        // 5000 pending tokens of a 10000-token cache: +0.5 usage.
        c[0].dispatched.tokens = 5000;
        KvCacheUtilizationScorer.score(&PickRequest::default(), &c, &mut out);
        assert!((out[0] - 0.3).abs() < 1e-9);
    }
}
