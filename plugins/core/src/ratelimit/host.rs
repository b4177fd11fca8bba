//! What the rate-limit [`Flow`](super::flow::Flow) needs from the proxy: the [`Host`] trait
//! the proxy-wasm adapter implements (and a test-only mock host in unit tests), the counters it
//! bumps and the step it answers each callback with.

use super::counter::CounterStore;
use super::decision::Usage;
use super::rls::Descriptor;
pub use crate::stream::Step;
use crate::stream::{Counted, StreamHost};

/// A counter the flow bumps (the adapter maps each to an Envoy stat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A request (or one rate limit service call) was within its limits.
    Allowed,
    /// A request was answered 429.
    Limited,
    /// Limits could not be checked (counters or the rate limit service failed).
    StoreFailed,
    /// Token charges were settled to a usage.
    Settled,
    /// The gateway asked the model server for a stream usage chunk.
    UsageInjected,
    /// The response carried no trustworthy usage: the estimate stays charged.
    UsageMissing,
}

impl Counted for Event {
    const ALL: &'static [Self] = &[
        Self::Allowed,
        Self::Limited,
        Self::StoreFailed,
        Self::Settled,
        Self::UsageInjected,
        Self::UsageMissing,
    ];
    fn index(self) -> usize {
        self as usize
    }
    fn stat(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Limited => "limited",
            Self::StoreFailed => "store_failed",
            Self::Settled => "settled",
            Self::UsageInjected => "usage_injected",
            Self::UsageMissing => "usage_missing",
        }
    }
}

/// What the flow needs from the proxy, for one request, besides the [`StreamHost`] calls
/// every flow makes.
pub trait Host: StreamHost {
    /// Every request header, in order.
    fn request_headers(&self) -> Vec<(String, String)>;
    /// Replaces the first `old_size` bytes of the buffered request body.
    fn replace_request_body(&mut self, old_size: usize, body: &[u8]);
    /// The auth plugin's encoded identity object (filter state), when present.
    fn identity(&self) -> Option<Vec<u8>>;
    /// The client's `ip:port`.
    fn source_address(&self) -> Option<String>;
    /// Hands the parsed request's summary to later filters (filter state), so the body is
    /// parsed once.
    fn publish_summary(&mut self, summary: &[u8]);
    /// The counter store shared by every worker.
    fn counters(&self) -> &dyn CounterStore;
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Sends one `ShouldRateLimit` call (an encoded `RateLimitRequest`) to `cluster`; the
    /// call's token, or `None` when it could not be sent. Its answer comes back through
    /// [`Flow::on_rls_answer`](super::flow::Flow::on_rls_answer).
    fn dispatch_rls(&mut self, cluster: &str, message: &[u8], timeout_ms: u64) -> Option<u32>;
    /// Queues `hits` more units for `descriptors`, sent later by the plugin's timer.
    fn queue_rls_settlement(&mut self, descriptors: Vec<Descriptor>, hits: u64);
    /// The first value of a response header.
    fn response_header(&self, name: &str) -> Option<String>;
    /// Sets (`Some`) or removes (`None`) a response header.
    fn set_response_header(&mut self, name: &str, value: Option<&str>);
    /// The first `size` bytes of the current response body chunk.
    fn response_body(&self, size: usize) -> Vec<u8>;
    /// Replaces the first `size` bytes of the current response body chunk.
    fn replace_response_body(&mut self, size: usize, body: &[u8]);
    /// The response's status code, 0 when there was none (stream reset).
    fn response_code(&self) -> u64;
    /// Bumps a counter.
    fn count(&mut self, event: Event);
    /// Adds one request's usage to its user's and model's usage stats.
    fn record_usage(&mut self, user: Option<&str>, model: Option<&str>, usage: Usage);
    /// Logs a warning.
    fn warn(&mut self, message: &str);
}
