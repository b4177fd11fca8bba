//! What the affinity [`Flow`](super::flow::Flow) needs from the proxy: the [`Host`] trait the
//! proxy-wasm adapter implements (and a test-only mock host in unit tests), the counters it
//! bumps, the reports it queues and the step it answers each callback with.

pub use crate::stream::Step;
use crate::stream::{Counted, StreamHost};

/// A counter the flow bumps (the adapter maps each to an Envoy stat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A destination was set (any way).
    Pick,
    /// A destination was chosen from the prompt prefix (hashing or host-shim).
    PrefixPick,
    /// host-shim chose the destination.
    ShimPick,
    /// host-shim could not be asked or did not answer usefully.
    Fallback,
    /// The client sent a destination header of its own; it was removed.
    Spoofed,
    /// The request body could not be parsed (answered 400).
    ParseError,
    /// The rate-limit filter's parse of the body was reused.
    ParseReused,
    /// The body is larger than allowed (answered 413).
    TooLarge,
}

impl Counted for Event {
    const ALL: &'static [Self] = &[
        Self::Pick,
        Self::PrefixPick,
        Self::ShimPick,
        Self::Fallback,
        Self::Spoofed,
        Self::ParseError,
        Self::ParseReused,
        Self::TooLarge,
    ];
    fn index(self) -> usize {
        self as usize
    }
    fn stat(self) -> &'static str {
        match self {
            Self::Pick => "picks",
            Self::PrefixPick => "prefix_picks",
            Self::ShimPick => "host_shim_picks",
            Self::Fallback => "fallbacks",
            Self::Spoofed => "spoofed_destination_removed",
            Self::ParseError => "parse_errors",
            Self::ParseReused => "parses_reused",
            Self::TooLarge => "body_too_large",
        }
    }
}

/// The endpoint that served a request (or the one picked for it), and the request's prefix
/// hashes, for host-shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedReport {
    /// `ip:port` of the endpoint.
    pub endpoint: String,
    /// The request's prompt block hashes.
    pub hashes: Vec<u64>,
    /// A completion report (the request ended) rather than a served report.
    pub completed: bool,
}

/// What the flow needs from the proxy, for one request, besides the [`StreamHost`] calls
/// every flow makes.
pub trait Host: StreamHost {
    /// The request summary an earlier filter (rate limit) handed on, encoded, if any.
    fn handed_summary(&self) -> Option<Vec<u8>>;
    /// The endpoint list last fetched from host-shim through `cluster` (shared by every
    /// worker), as a comma-separated list, if any.
    fn fetched_endpoints(&self, cluster: &str) -> Option<Vec<u8>>;
    /// Sends one pick call (`POST /v1/pick` with the encoded `query`) to `cluster`; the
    /// call's token, or `None` when it could not be sent. Its answer comes back through
    /// [`Flow::on_pick_answer`](super::flow::Flow::on_pick_answer).
    fn dispatch_pick(
        &mut self,
        cluster: &str,
        authority: &str,
        query: &[u8],
        timeout_ms: u64,
    ) -> Option<u32>;
    /// Microseconds since the Unix epoch.
    fn now_us(&self) -> u64;
    /// Records how long a pick call took.
    fn record_pick_latency(&mut self, micros: u64);
    /// The `ip:port` of the upstream that is serving the request, once known.
    fn upstream_address(&self) -> Option<String>;
    /// Queues a report for the plugin's timer to send to host-shim.
    fn queue_report(&mut self, report: ServedReport);
    /// A new pick id, unique per request across workers and gateways (random), so host-shim
    /// can tell which queued pick a cancel means.
    fn new_pick_id(&mut self) -> u64;
    /// Queues a cancel of the pick sent with `pick_id` (`POST /v1/cancel`) for the plugin's
    /// timer to send: the request ended while its pick was still pending.
    fn queue_cancel(&mut self, pick_id: u64);
    /// Bumps a counter.
    fn count(&mut self, event: Event);
}
