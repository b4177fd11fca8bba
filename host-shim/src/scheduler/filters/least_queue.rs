//! `least-queue-filter`: keeps the endpoints whose queue is in the lowest of N equal bands
//! between the shortest and the longest queue (N = number of candidates), as GIE's filter of
//! the same name does.

use crate::scheduler::plugin::{Candidate, Filter};
use crate::scheduler::PickRequest;

/// Plugin type name.
pub const TYPE: &str = "least-queue-filter";

/// Keeps the candidates with the shortest queues.
#[derive(Debug, Default)]
pub struct LeastQueueFilter;

impl Filter for LeastQueueFilter {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn filter(&self, _req: &PickRequest, candidates: &mut Vec<Candidate<'_>>) {
        let qs = candidates.iter().map(|c| c.effective_waiting() as f64);
        let band = super::least_kv_cache::lowest_band(qs, candidates.len());
        if let Some(limit) = band {
            candidates.retain(|c| c.effective_waiting() as f64 <= limit);
        }
    }
}
