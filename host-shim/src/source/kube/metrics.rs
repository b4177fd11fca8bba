//! Prometheus metrics of endpoint discovery, registered in host-shim's own registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label naming the watched resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// `pods` or `inferencepools`.
    pub resource: &'static str,
}

/// Discovery's metrics (all zero when endpoints are static).
#[derive(Debug, Clone, Default)]
pub struct DiscoveryMetrics {
    /// Errors of a watch (list failed, stream broke, 410 Gone, API server unreachable):
    /// the last known endpoints are kept meanwhile.
    pub watch_errors: Family<ResourceLabels, Counter>,
    /// Complete (re)lists received.
    pub lists: Family<ResourceLabels, Counter>,
    /// 1 after a watch delivered something, 0 after it failed (until it delivers again).
    pub watch_up: Family<ResourceLabels, Gauge>,
    /// Endpoints discovery currently publishes.
    pub endpoints: Gauge,
    /// 1 once the first lists have completed.
    pub synced: Gauge,
}

impl DiscoveryMetrics {
    /// Registers the metrics in `registry` (under `discovery_`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("discovery");
        r.register(
            "watch_errors",
            "Kubernetes watch errors (the last known endpoints are kept meanwhile)",
            m.watch_errors.clone(),
        );
        r.register(
            "lists",
            "Complete Kubernetes (re)lists received",
            m.lists.clone(),
        );
        r.register(
            "watch_up",
            "1 after the watch delivered, 0 after it failed",
            m.watch_up.clone(),
        );
        r.register(
            "endpoints",
            "Endpoints published by discovery",
            m.endpoints.clone(),
        );
        r.register(
            "synced",
            "1 once the first pool and pod lists completed",
            m.synced.clone(),
        );
        m
    }
}
