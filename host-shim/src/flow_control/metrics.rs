//! Prometheus metrics of the flow controller, registered in host-shim's own registry under
//! `host_shim_flow_control_`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Why a request left the queue (or never entered it) without a pick.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `queue_full` (request limit), `bytes_full` (byte limit), `timeout` (TTL ran out),
    /// `cancelled` (the caller went away), `no_endpoint` (no endpoint can serve at all).
    pub reason: &'static str,
}

/// The flow controller's metrics.
#[derive(Debug, Clone)]
pub struct FlowMetrics {
    /// Requests waiting now.
    pub queue_length: Gauge,
    /// Bytes waiting now.
    pub queue_bytes: Gauge,
    /// Requests that entered the queue.
    pub queued: Counter,
    /// Requests picked after waiting.
    pub dispatched: Counter,
    /// Requests refused or gone, by reason.
    pub rejected: Family<ReasonLabels, Counter>,
    /// Time from entering the queue to the pick, for dispatched requests.
    pub wait: Histogram,
}

impl Default for FlowMetrics {
    fn default() -> Self {
        Self {
            queue_length: Gauge::default(),
            queue_bytes: Gauge::default(),
            queued: Counter::default(),
            dispatched: Counter::default(),
            rejected: Family::default(),
            wait: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        }
    }
}

impl FlowMetrics {
    /// Registers the metrics in `registry` (under `flow_control_`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("flow_control");
        r.register(
            "queue_length",
            "Requests waiting for an endpoint with headroom",
            m.queue_length.clone(),
        );
        r.register(
            "queue_bytes",
            "Bytes of the requests waiting",
            m.queue_bytes.clone(),
        );
        r.register("queued", "Requests that had to wait", m.queued.clone());
        r.register(
            "dispatched",
            "Requests picked after waiting",
            m.dispatched.clone(),
        );
        r.register(
            "rejected",
            "Requests refused by flow control or gone while waiting, by reason",
            m.rejected.clone(),
        );
        r.register(
            "wait_seconds",
            "Time dispatched requests waited",
            m.wait.clone(),
        );
        m
    }

    /// Counts one refusal for `reason`.
    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }
}
