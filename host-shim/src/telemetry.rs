//! host-shim's own Prometheus metrics, served at `/metrics` of the HTTP listener.

use crate::endpoint::Endpoint;
use crate::index::IndexStats;
use crate::scheduler::{EndpointScore, Pick, PickError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::RwLock;
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
    /// `endpoint_score`'s gauges by endpoint: every pick sets one per candidate, and looking
    /// them up by label would format and allocate a string each time (37 µs a pick at 256
    /// endpoints).
    score_gauges: RwLock<HashMap<Endpoint, Gauge<f64, AtomicU64>>>,
    picked: Family<EndpointLabels, Counter>,
    index_blocks: Family<EndpointLabels, Gauge>,
    index_capacity: Family<EndpointLabels, Gauge>,
    index_bytes: Family<EndpointLabels, Gauge>,
    prefix_blocks_requested: Counter,
    prefix_blocks_matched: Counter,
    prefix_hit_ratio: Gauge<f64, AtomicU64>,
    served_reports: Family<OutcomeLabels, Counter>,
    endpoint_ready: Family<EndpointLabels, Gauge>,
    /// Kubernetes endpoint discovery's metrics.
    pub discovery: crate::source::kube::metrics::DiscoveryMetrics,
    /// The flow controller's metrics.
    pub flow: crate::flow_control::metrics::FlowMetrics,
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
        let discovery = crate::source::kube::metrics::DiscoveryMetrics::register(&mut registry);
        let flow = crate::flow_control::metrics::FlowMetrics::register(&mut registry);
        Self {
            discovery,
            flow,
            registry,
            picks,
            pick_latency,
            endpoint_score,
            score_gauges: RwLock::new(HashMap::new()),
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
                self.set_scores(&p.scores);
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

    /// Sets every candidate's `endpoint_score`, creating gauges only for new endpoints.
    fn set_scores(&self, scores: &[EndpointScore]) {
        let mut missing = Vec::new();
        {
            let gauges = self.score_gauges.read().unwrap_or_else(|p| p.into_inner());
            for s in scores {
                match gauges.get(&s.endpoint) {
                    Some(g) => {
                        g.set(s.score);
                    }
                    None => missing.push(*s),
                }
            }
        }
        if missing.is_empty() {
            return;
        }
        let mut gauges = self.score_gauges.write().unwrap_or_else(|p| p.into_inner());
        for s in missing {
            let gauge = self
                .endpoint_score
                .get_or_create(&label(&s.endpoint))
                .clone();
            gauge.set(s.score);
            gauges.insert(s.endpoint, gauge);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(scores: &[(&str, f64)]) -> Result<Pick, PickError> {
        let scores: Vec<EndpointScore> = scores
            .iter()
            .map(|(e, score)| EndpointScore {
                endpoint: e.parse().unwrap(),
                score: *score,
            })
            .collect();
        Ok(Pick {
            endpoint: scores[0].endpoint,
            fallbacks: Vec::new(),
            matched_blocks: 1,
            total_blocks: 2,
            scores,
        })
    }

    fn score_line<'a>(text: &'a str, endpoint: &str) -> Option<&'a str> {
        let prefix = format!("host_shim_endpoint_score{{endpoint=\"{endpoint}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(prefix.as_str()))
    }

    #[test]
    fn endpoint_scores_follow_the_latest_pick_through_the_gauge_cache() {
        let t = Telemetry::new();
        t.record_pick("http", &pick(&[("10.0.0.1:8000", 1.5)]), Duration::ZERO);
        // The cached gauge is the exported one: a second pick moves it, a new endpoint joins.
        t.record_pick(
            "http",
            &pick(&[("10.0.0.1:8000", 4.25), ("10.0.0.2:8000", 0.5)]),
            Duration::ZERO,
        );
        let text = t.render(&[], &[]);
        assert_eq!(score_line(&text, "10.0.0.1:8000"), Some("4.25"));
        assert_eq!(score_line(&text, "10.0.0.2:8000"), Some("0.5"));
        assert!(text.contains("host_shim_picks_total{outcome=\"ok\",api=\"http\"} 2"));
    }
}
