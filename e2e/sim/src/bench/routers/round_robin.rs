//! Round-robin: engines in turn, blind to load and cache.

use crate::bench::router::{ClusterView, RouteRequest, Router};

/// Cycles through the engines.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: usize,
}

impl Router for RoundRobin {
    fn name(&self) -> String {
        "round-robin".into()
    }

    fn route(&mut self, _req: &RouteRequest<'_>, cluster: &ClusterView<'_>) -> usize {
        let pick = self.next % cluster.len();
        self.next = pick + 1;
        pick
    }
}
