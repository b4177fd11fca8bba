//! The three plugin kinds of a scheduling profile: filters, scorers and pickers.
//!
//! A pick runs the configured filters in order, then every scorer (each yielding a score in
//! `0..=1` per candidate, combined by weight), then one picker. Each plugin is one file under
//! `filters/`, `scorers/` or `pickers/` and one line in [`super::registry`].

use super::rng::Rng;
use super::PickRequest;
use crate::endpoint::{EndpointState, EngineMetrics};
use crate::index::{Dispatched, EndpointSlot};
use std::fmt;
use std::sync::Arc;

/// An endpoint still in the running for a pick, with everything the plugins may look at.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// The caller's view of the endpoint.
    pub state: &'a EndpointState,
    /// Its fresh metrics.
    pub metrics: EngineMetrics,
    /// Requests and tokens sent to it since those metrics were scraped.
    pub dispatched: Dispatched,
    /// Leading blocks of the request's prompt it likely has cached.
    pub prefix_blocks: usize,
    /// Whether the saturation detector says it has no headroom (queue or KV cache at the
    /// thresholds, counting dispatches since the last scrape).
    pub saturated: bool,
    /// Sequence number of the last pick that chose this endpoint (0 = never): lower means
    /// picked longer ago.
    pub last_pick: u64,
    /// This scheduler's requests in flight there (picked, not reported complete), at most
    /// what the last scrape plus the dispatches since can account for.
    pub in_flight: u64,
    pub(crate) slot: Arc<EndpointSlot>,
}

impl Candidate<'_> {
    /// Queue length including requests dispatched since the last scrape: what the engine's
    /// queue is now, as far as this scheduler can tell.
    pub fn effective_waiting(&self) -> u64 {
        self.metrics.waiting + self.dispatched.requests
    }

    /// KV-cache usage including the prompt tokens dispatched since the last scrape (when the
    /// engine reports its capacity), at most 1.
    pub fn effective_kv_usage(&self) -> f64 {
        let extra = match self.metrics.kv_capacity_tokens {
            Some(cap) if cap > 0 => self.dispatched.tokens as f64 / cap as f64,
            _ => 0.0,
        };
        (self.metrics.kv_cache_usage + extra).min(1.0)
    }
}

/// Narrows the candidates. A filter that would remove every candidate is skipped by the
/// scheduler, so filters express preferences that never turn a servable request away.
pub trait Filter: Send + Sync + fmt::Debug {
    /// The plugin type name in `EndpointPickerConfig` (`least-queue-filter`).
    fn type_name(&self) -> &'static str;
    /// Removes candidates from `candidates`.
    fn filter(&self, req: &PickRequest, candidates: &mut Vec<Candidate<'_>>);
}

/// Scores each candidate in `0..=1`; higher is better.
pub trait Scorer: Send + Sync + fmt::Debug {
    /// The plugin type name in `EndpointPickerConfig` (`queue-scorer`).
    fn type_name(&self) -> &'static str;
    /// Writes the score of `candidates[i]` to `out[i]`; `out` starts zeroed and has the same
    /// length as `candidates`.
    fn score(&self, req: &PickRequest, candidates: &[Candidate<'_>], out: &mut [f64]);
}

/// Chooses one candidate from the weighted total scores.
pub trait Picker: Send + Sync + fmt::Debug {
    /// The plugin type name in `EndpointPickerConfig` (`max-score-picker`).
    fn type_name(&self) -> &'static str;
    /// The index of the chosen candidate; `candidates` is never empty and `totals[i]` is the
    /// weighted score of `candidates[i]`.
    fn pick(
        &self,
        req: &PickRequest,
        candidates: &[Candidate<'_>],
        totals: &[f64],
        rng: &Rng,
    ) -> usize;
}
