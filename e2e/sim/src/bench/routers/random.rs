//! Uniform random choice (seeded), the baseline of every load-balancing paper.

use crate::bench::router::{ClusterView, RouteRequest, Router};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Picks an engine uniformly at random.
#[derive(Debug)]
pub struct RandomPick {
    rng: ChaCha8Rng,
}

impl RandomPick {
    /// A router drawing from a generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Router for RandomPick {
    fn name(&self) -> String {
        "random".into()
    }

    fn route(&mut self, _req: &RouteRequest<'_>, cluster: &ClusterView<'_>) -> usize {
        self.rng.gen_range(0..cluster.len())
    }
}
