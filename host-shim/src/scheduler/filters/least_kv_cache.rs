//! `least-kv-cache-filter`: keeps the endpoints whose KV-cache usage is in the lowest of N
//! equal bands between the least and the most used (N = number of candidates).

use crate::scheduler::plugin::{Candidate, Filter};
use crate::scheduler::PickRequest;

/// Plugin type name.
pub const TYPE: &str = "least-kv-cache-filter";

/// Keeps the candidates with the emptiest KV caches.
#[derive(Debug, Default)]
pub struct LeastKvCacheFilter;

/// Upper bound of the lowest of `n` bands spanning `values`, or `None` if there are none.
pub(crate) fn lowest_band(values: impl Iterator<Item = f64>, n: usize) -> Option<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (n > 0 && lo.is_finite()).then(|| lo + (hi - lo) / n as f64)
}

impl Filter for LeastKvCacheFilter {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn filter(&self, _req: &PickRequest, candidates: &mut Vec<Candidate<'_>>) {
        let band = lowest_band(
            candidates.iter().map(|c| c.effective_kv_usage()),
            candidates.len(),
        );
        if let Some(limit) = band {
            candidates.retain(|c| c.effective_kv_usage() <= limit + 1e-12);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_band_spans_min_to_range_over_n() {
        assert_eq!(lowest_band([0.0, 10.0].into_iter(), 2), Some(5.0));
        assert_eq!(lowest_band([3.0, 3.0, 3.0].into_iter(), 3), Some(3.0));
        assert_eq!(lowest_band(std::iter::empty(), 0), None);
    }
}
