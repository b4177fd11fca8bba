//! Scorers: each rates every candidate in `0..=1`, and the profile's weights combine them.

pub mod kv_cache_utilization;
pub mod load_aware;
pub mod prefix_cache;
pub mod queue;
pub mod session_affinity;

#[cfg(test)]
pub(crate) mod test_support {
    //! Candidates for scorer and picker unit tests.

    use crate::endpoint::{EndpointState, EngineMetrics};
    use crate::index::{Dispatched, EndpointSlot, IndexSizing, SlotMap};
    use crate::scheduler::plugin::Candidate;
    use std::sync::Arc;
    use std::time::Duration;

    /// States for endpoints 10.0.0.1.. with the given waiting queues and KV usage.
    pub fn states(load: &[(u64, f64)]) -> Vec<EndpointState> {
        load.iter()
            .enumerate()
            .map(|(i, &(waiting, kv))| {
                EndpointState::scraped(
                    format!("10.0.0.{}:8000", i + 1).parse().unwrap(),
                    EngineMetrics {
                        waiting,
                        running: 0,
                        kv_cache_usage: kv,
                        kv_capacity_tokens: Some(10_000),
                        prompt_tokens_total: None,
                    },
                    Duration::ZERO,
                )
            })
            .collect()
    }

    fn slot() -> Arc<EndpointSlot> {
        SlotMap::new(IndexSizing::default()).get_or_insert(&"10.9.9.9:1".parse().unwrap())
    }

    /// Candidates over `states`, with `prefix[i]` matched blocks.
    pub fn candidates<'a>(states: &'a [EndpointState], prefix: &[usize]) -> Vec<Candidate<'a>> {
        states
            .iter()
            .enumerate()
            .map(|(i, s)| Candidate {
                state: s,
                metrics: s.metrics.unwrap(),
                dispatched: Dispatched::default(),
                prefix_blocks: prefix.get(i).copied().unwrap_or(0),
                saturated: false,
                last_pick: 0,
                in_flight: 0,
                slot: slot(),
            })
            .collect()
    }
}
