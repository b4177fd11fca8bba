//! The oracle: the "precise prefix cache" upper reference. It reads every engine's exact KV
//! blocks (including those its queued requests are about to compute), its queued prefill work
//! and its decode batch, and picks the engine with the least estimated time to first token:
//! the queued and own prefill, plus the decode rows that ride along in every step until then.
//! No real picker knows this much.

use crate::bench::router::{ClusterView, RouteRequest, Router};
use crate::engine::Engine;

/// Minimises the estimated TTFT using exact engine state.
#[derive(Debug, Default, Clone, Copy)]
pub struct Oracle;

/// Estimated seconds until `engine` would produce the first token of `req`.
pub fn estimated_ttft(engine: &Engine, req: &RouteRequest<'_>) -> f64 {
    let cfg = engine.config();
    let c = &cfg.cost;
    let bs = cfg.block_size;
    let max_hit = (req.prompt_len as usize).saturating_sub(1) / bs;
    let hashes = &req.block_hashes[..max_hit.min(req.block_hashes.len())];
    let cached = (engine.cached_or_pending_prefix_blocks(hashes) * bs) as u64;
    let new = u64::from(req.prompt_len) - cached;
    let queued = engine.pending_prefill_tokens();
    let decoding = engine.num_running() as f64;
    let steps = ((queued + new) as f64 / cfg.max_num_batched_tokens as f64)
        .ceil()
        .max(1.0);
    let per_step = c.fixed_s + decoding * (1.0 / c.prefill_tokens_per_s + c.decode_s_per_seq);
    queued as f64 / c.prefill_tokens_per_s + c.prefill_seconds(new, cached) + steps * per_step
}

impl Router for Oracle {
    fn name(&self) -> String {
        "oracle".into()
    }

    fn route(&mut self, req: &RouteRequest<'_>, cluster: &ClusterView<'_>) -> usize {
        (0..cluster.len())
            .map(|i| (i, estimated_ttft(cluster.exact(i), req)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(0, |(i, _)| i)
    }
}
