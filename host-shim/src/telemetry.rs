//! host-shim's own Prometheus metrics, served at `/metrics` of the HTTP listener.

use crate::endpoint::Endpoint;
use crate::index::IndexStats;
use crate::scheduler::{Pick, PickError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Label set naming a pick outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok`, `no_ready_endpoint`, `subset_unavailable`, `saturated`, `bad_request`.
    pub outcome: &'static str,
    /// `http` (pick API) or `ext_proc`.
    pub api: &'static str,
}

/// Label set naming an endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// `ip:port`.
    pub endpoint: String,
}

/// All metrics, registered once.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    picks: Family<OutcomeLabels, Counter>,
    pick_latency: Histogram,
    endpoint_score: Family<EndpointLabels, Gauge<f64, AtomicU64>>,
    picked: Family<EndpointLabels, Counter>,
    index_blocks: Family<EndpointLabels, Gauge>,
    index_capacity: Family<EndpointLabels, Gauge>,
    index_bytes: Family<EndpointLabels, Gauge>,
    prefix_blocks_requested: Counter,
    prefix_blocks_matched: Counter,
    prefix_hit_ratio: Gauge<f64, AtomicU64>,
    served_reports: Family<OutcomeLabels, Counter>,
    endpoint_ready: Family<EndpointLabels, Gauge>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// Registers every metric under the `host_shim` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("host_shim");
        let picks = Family::<OutcomeLabels, Counter>::default();
        registry.register("picks", "Endpoint picks by outcome", picks.clone());
        let pick_latency = Histogram::new(exponential_buckets(1e-6, 2.0, 20));
        registry.register(
            "pick_duration_seconds",
            "Time to decide one pick, inside host-shim",
            pick_latency.clone(),
        );
        let endpoint_score = Family::<EndpointLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "endpoint_score",
            "Weighted total score of each endpoint at the latest pick that scored it",
            endpoint_score.clone(),
        );
        let picked = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "endpoint_picks",
            "Picks per chosen endpoint",
            picked.clone(),
        );
        let index_blocks = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "prefix_index_blocks",
            "Prefix blocks held in each endpoint's index",
            index_blocks.clone(),
        );
        let index_capacity = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "prefix_index_capacity_blocks",
            "Capacity of each endpoint's index, from its KV cache size",
            index_capacity.clone(),
        );
        let index_bytes = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "prefix_index_bytes",
            "Heap bytes of each endpoint's index",
            index_bytes.clone(),
        );
        let prefix_blocks_requested = Counter::default();
        registry.register(
            "prefix_blocks_requested",
            "Prompt blocks in picked requests",
            prefix_blocks_requested.clone(),
        );
        let prefix_blocks_matched = Counter::default();
        registry.register(
            "prefix_blocks_matched",
            "Prompt blocks the chosen endpoint was expected to have cached",
            prefix_blocks_matched.clone(),
        );
        let prefix_hit_ratio = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "prefix_hit_ratio",
            "prefix_blocks_matched / prefix_blocks_requested since start",
            prefix_hit_ratio.clone(),
        );
        let served_reports = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "served_reports",
            "Served-endpoint reports by outcome (`ok`, `unknown_endpoint`, `bad_request`)",
            served_reports.clone(),
        );
        let endpoint_ready = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "endpoint_ready",
            "1 when the endpoint is reachable with fresh metrics",
            endpoint_ready.clone(),
        );
        Self {
            registry,
            picks,
            pick_latency,
            endpoint_score,
            picked,
            index_blocks,
            index_capacity,
            index_bytes,
            prefix_blocks_requested,
            prefix_blocks_matched,
            prefix_hit_ratio,
            served_reports,
            endpoint_ready,
        }
    }

    /// Records one pick decision that took `took`.
    pub fn record_pick(&self, api: &'static str, result: &Result<Pick, PickError>, took: Duration) {
        self.pick_latency.observe(took.as_secs_f64());
        let outcome = match result {
            Ok(p) => {
                for s in &p.scores {
                    self.endpoint_score
                        .get_or_create(&label(&s.endpoint))
                        .set(s.score);
                }
                self.picked.get_or_create(&label(&p.endpoint)).inc();
                self.prefix_blocks_requested.inc_by(p.total_blocks as u64);
                self.prefix_blocks_matched.inc_by(p.matched_blocks as u64);
                let req = self.prefix_blocks_requested.get();
                if req > 0 {
                    self.prefix_hit_ratio
                        .set(self.prefix_blocks_matched.get() as f64 / req as f64);
                }
                "ok"
            }
            Err(PickError::NoReadyEndpoint) => "no_ready_endpoint",
            Err(PickError::SubsetUnavailable) => "subset_unavailable",
            Err(PickError::Saturated) => "saturated",
        };
        self.picks
            .get_or_create(&OutcomeLabels { outcome, api })
            .inc();
    }

    /// Counts a request rejected before scheduling.
    pub fn record_bad_request(&self, api: &'static str) {
        self.picks
            .get_or_create(&OutcomeLabels {
                outcome: "bad_request",
                api,
            })
            .inc();
    }

    /// Counts one served-endpoint report.
    pub fn record_served(&self, api: &'static str, outcome: &'static str) {
        self.served_reports
            .get_or_create(&OutcomeLabels { outcome, api })
            .inc();
    }

    /// Forgets the per-endpoint series of an endpoint that left the pool.
    pub fn forget_endpoint(&self, e: &Endpoint) {
        let l = label(e);
        self.endpoint_score.remove(&l);
        self.picked.remove(&l);
        self.index_blocks.remove(&l);
        self.index_capacity.remove(&l);
        self.index_bytes.remove(&l);
        self.endpoint_ready.remove(&l);
    }

    /// Renders the OpenMetrics text, after refreshing the gauges read from `index` and
    /// `ready`.
    pub fn render(&self, index: &[(Endpoint, IndexStats)], ready: &[(Endpoint, bool)]) -> String {
        for (e, s) in index {
            let l = label(e);
            self.index_blocks.get_or_create(&l).set(s.blocks as i64);
            self.index_capacity.get_or_create(&l).set(s.capacity as i64);
            self.index_bytes.get_or_create(&l).set(s.bytes as i64);
        }
        for (e, r) in ready {
            self.endpoint_ready
                .get_or_create(&label(e))
                .set(i64::from(*r));
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

fn label(e: &Endpoint) -> EndpointLabels {
    EndpointLabels {
        endpoint: e.to_string(),
    }
}
