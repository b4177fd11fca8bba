//! The router interface of the benchmark: what a routing policy sees and decides.
//!
//! A router gets each request once, at arrival, with the cluster as an endpoint picker would
//! see it: metrics scraped every `scrape_interval` (stale in between, as in production), plus
//! exact engine state that only the oracle is meant to read. It answers an engine index.

use crate::bench::workload::RequestSpec;
use crate::block_hash::BlockHash;
use crate::engine::Engine;
use crate::tokenizer::token_bytes;

/// One engine's metrics as of its last scrape; the fields of vLLM's `/metrics` a picker reads
/// (and exactly host-shim's `EngineMetrics`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ScrapedMetrics {
    /// `vllm:num_requests_waiting`.
    pub waiting: u64,
    /// `vllm:num_requests_running`.
    pub running: u64,
    /// `vllm:kv_cache_usage_perc`, 0..=1.
    pub kv_cache_usage: f64,
    /// `num_gpu_blocks × block_size` from `vllm:cache_config_info`.
    pub kv_capacity_tokens: u64,
    /// When the scrape happened, seconds of virtual time.
    pub scraped_at: f64,
}

/// A request to place.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// Request id (its index in the workload).
    pub id: u64,
    /// Virtual time now, seconds.
    pub now: f64,
    /// Model name.
    pub model: &'a str,
    /// Prompt length, tokens.
    pub prompt_len: u32,
    /// Chained hashes of the prompt's full blocks at the engines' block size (vLLM's own
    /// prefix-cache keys: what a precise prefix-cache scorer would index).
    pub block_hashes: &'a [BlockHash],
    /// The full request, for routers that need the prompt itself.
    pub spec: &'a RequestSpec,
}

impl RouteRequest<'_> {
    /// The prompt's token ids.
    pub fn prompt_tokens(&self) -> Vec<u32> {
        self.spec.prompt_tokens()
    }

    /// The prompt as bytes (4 per token), for routers that hash prompt bytes like the
    /// gateway's affinity plugin does; equal token prefixes give equal byte prefixes.
    pub fn prompt_bytes(&self) -> Vec<u8> {
        token_bytes(&self.prompt_tokens())
    }
}

/// The cluster at the moment of a pick.
#[derive(Debug, Clone, Copy)]
pub struct ClusterView<'a> {
    /// Virtual time now, seconds.
    pub now: f64,
    pub(crate) scraped: &'a [ScrapedMetrics],
    pub(crate) engines: &'a [Engine],
}

impl<'a> ClusterView<'a> {
    /// A view over `engines` with their last `scraped` metrics (same length).
    pub fn new(now: f64, scraped: &'a [ScrapedMetrics], engines: &'a [Engine]) -> Self {
        Self {
            now,
            scraped,
            engines,
        }
    }

    /// Number of engines.
    pub fn len(&self) -> usize {
        self.engines.len()
    }

    /// Whether there are no engines.
    pub fn is_empty(&self) -> bool {
        self.engines.is_empty()
    }

    /// Engine `i`'s last scraped metrics (what a real picker knows).
    pub fn metrics(&self, i: usize) -> &ScrapedMetrics {
        &self.scraped[i]
    }

    /// Engine `i`'s exact current state: its KV blocks, queues and pending work. Only the
    /// oracle reads this; it is the upper reference no real picker can reach.
    pub fn exact(&self, i: usize) -> &Engine {
        &self.engines[i]
    }
}

/// A routing policy.
pub trait Router {
    /// Name in the report.
    fn name(&self) -> String;

    /// Picks the engine (index `< cluster.len()`) for `req`.
    fn route(&mut self, req: &RouteRequest<'_>, cluster: &ClusterView<'_>) -> usize;

    /// Told when a request finished (its last token), for routers that track in-flight work.
    fn on_finished(&mut self, _id: u64, _engine: usize, _now: f64) {}
}
