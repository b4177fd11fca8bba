//! Least-queue: the engine with the fewest waiting + running requests by its last scrape, the
//! load-only picker. Ties rotate so idle engines share equally.

use crate::bench::router::{ClusterView, RouteRequest, Router};

/// Picks the least loaded engine by scraped queue length.
#[derive(Debug, Default)]
pub struct LeastQueue {
    rotate: usize,
}

impl Router for LeastQueue {
    fn name(&self) -> String {
        "least-queue".into()
    }

    fn route(&mut self, _req: &RouteRequest<'_>, cluster: &ClusterView<'_>) -> usize {
        let n = cluster.len();
        self.rotate = (self.rotate + 1) % n;
        (0..n)
            .map(|k| (self.rotate + k) % n)
            .min_by_key(|&i| {
                let m = cluster.metrics(i);
                m.waiting + m.running
            })
            .unwrap_or(0)
    }
}
