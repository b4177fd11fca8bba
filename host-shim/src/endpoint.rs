//! What the scheduler knows about one model-server endpoint at the moment of a pick.

use crate::clock::Timestamp;
use serde::Serialize;
use std::time::Duration;

pub use infergate_core::endpoint::Endpoint;

/// Load and capacity figures scraped from an endpoint's `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct EngineMetrics {
    /// Requests queued in the engine, not yet scheduled (`vllm:num_requests_waiting`).
    pub waiting: u64,
    /// Requests being decoded (`vllm:num_requests_running`).
    pub running: u64,
    /// Fraction of the KV cache in use, `0.0..=1.0` (`vllm:kv_cache_usage_perc`).
    pub kv_cache_usage: f64,
    /// KV cache capacity in tokens (`num_gpu_blocks × block_size` of `vllm:cache_config_info`),
    /// when the engine reports it.
    pub kv_capacity_tokens: Option<u64>,
    /// Prompt tokens the engine has processed since it started (`vllm:prompt_tokens_total`),
    /// when it reports them: sizes the prefix index ([`crate::index::calibration`]).
    pub prompt_tokens_total: Option<u64>,
}

/// One endpoint's state as an input to [`crate::scheduler::Scheduler::pick`].
///
/// The caller owns this view: the live binary fills it from its scrapers, the routing
/// benchmark from its simulated pods.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EndpointState {
    /// Where requests for this endpoint go.
    #[serde(serialize_with = "ser_display")]
    pub endpoint: Endpoint,
    /// The last metrics successfully scraped, if any.
    pub metrics: Option<EngineMetrics>,
    /// When `metrics` was scraped.
    pub scraped_at: Option<Timestamp>,
    /// Whether the most recent scrape attempt succeeded. An endpoint whose last scrape
    /// failed is out of picks until a scrape succeeds again.
    pub reachable: bool,
}

fn ser_display<S: serde::Serializer>(e: &Endpoint, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(e)
}

impl EndpointState {
    /// An endpoint that has not been scraped yet (never picked until it is).
    pub fn unscraped(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            metrics: None,
            scraped_at: None,
            reachable: false,
        }
    }

    /// An endpoint whose metrics were scraped successfully at `at`.
    pub fn scraped(endpoint: Endpoint, metrics: EngineMetrics, at: Timestamp) -> Self {
        Self {
            endpoint,
            metrics: Some(metrics),
            scraped_at: Some(at),
            reachable: true,
        }
    }

    /// The metrics, if the endpoint is reachable and they are no older than `max_age` at `now`.
    pub fn fresh_metrics(&self, now: Timestamp, max_age: Duration) -> Option<&EngineMetrics> {
        if !self.reachable {
            return None;
        }
        let at = self.scraped_at?;
        if now.saturating_sub(at) > max_age {
            return None;
        }
        self.metrics.as_ref()
    }
}
