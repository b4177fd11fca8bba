//! A test-only [`Host`] that records what the affinity flow asks of the proxy, and a driver
//! that runs a whole request through a [`Flow`].

use super::flow::{Event, Flow, Host, Policy, ServedReport, Step};
use crate::testkit::MockStream;

/// One pick call sent.
#[derive(Debug, Clone)]
pub struct Dispatched {
    pub cluster: String,
    pub authority: String,
    pub query: Vec<u8>,
    pub timeout_ms: u64,
}

/// The proxy side of one request.
pub struct MockHost {
    /// Request headers and body, the local answer, resumes.
    pub stream: MockStream,
    pub summary: Option<Vec<u8>>,
    /// The shared-data endpoint list, by host-shim cluster.
    pub fetched: Option<(String, Vec<u8>)>,
    pub dispatched: Vec<Dispatched>,
    /// `dispatch_pick` fails (the cluster is unknown).
    pub dispatch_fails: bool,
    pub now_us: u64,
    pub latencies: Vec<u64>,
    pub upstream: Option<String>,
    pub reports: Vec<ServedReport>,
    pub events: Vec<Event>,
    /// Pick ids handed out so far (ids are 1, 2, …).
    pub pick_ids: u64,
    /// Cancels queued, by pick id.
    pub cancels: Vec<u64>,
}

impl MockHost {
    /// A request with these headers and no body.
    pub fn new(headers: &[(&str, &str)]) -> Self {
        Self {
            stream: MockStream::new(headers),
            summary: None,
            fetched: None,
            dispatched: Vec::new(),
            dispatch_fails: false,
            now_us: 1_000_000_000_000_000,
            latencies: Vec::new(),
            upstream: None,
            reports: Vec::new(),
            events: Vec::new(),
            pick_ids: 0,
            cancels: Vec::new(),
        }
    }

    /// A `POST` of `body` to `path`.
    pub fn post(path: &str, body: &str) -> Self {
        Self {
            stream: MockStream::post(path, &[], body),
            ..Self::new(&[])
        }
    }

    /// How often `event` was counted.
    pub fn counted(&self, event: Event) -> usize {
        self.events.iter().filter(|e| **e == event).count()
    }
}

crate::testkit::mock_stream_host!(MockHost);

impl Host for MockHost {
    fn handed_summary(&self) -> Option<Vec<u8>> {
        self.summary.clone()
    }
    fn fetched_endpoints(&self, cluster: &str) -> Option<Vec<u8>> {
        self.fetched
            .as_ref()
            .filter(|(c, _)| c == cluster)
            .map(|(_, list)| list.clone())
    }
    fn dispatch_pick(
        &mut self,
        cluster: &str,
        authority: &str,
        query: &[u8],
        timeout_ms: u64,
    ) -> Option<u32> {
        if self.dispatch_fails {
            return None;
        }
        self.dispatched.push(Dispatched {
            cluster: cluster.to_string(),
            authority: authority.to_string(),
            query: query.to_vec(),
            timeout_ms,
        });
        u32::try_from(self.dispatched.len()).ok()
    }
    fn now_us(&self) -> u64 {
        self.now_us
    }
    fn record_pick_latency(&mut self, micros: u64) {
        self.latencies.push(micros);
    }
    fn upstream_address(&self) -> Option<String> {
        self.upstream.clone()
    }
    fn queue_report(&mut self, report: ServedReport) {
        self.reports.push(report);
    }
    fn new_pick_id(&mut self) -> u64 {
        self.pick_ids += 1;
        self.pick_ids
    }
    fn queue_cancel(&mut self, pick_id: u64) {
        self.cancels.push(pick_id);
    }
    fn count(&mut self, event: Event) {
        self.events.push(event);
    }
}

/// Sends the request's headers, then its whole body in one chunk (when it has one): the
/// step of the last callback.
pub fn send(flow: &mut Flow, host: &mut MockHost, policy: &Policy) -> Step {
    let has_body = !host.request_body.is_empty();
    let step = flow.on_request_headers(host, policy, !has_body);
    if !has_body || host.reply.is_some() {
        return step;
    }
    let size = host.request_body.len();
    flow.on_request_body(host, policy, size, true)
}

/// host-shim's (or Envoy's) answer to the pick call, as the flow reads it.
pub fn answer(flow: &mut Flow, host: &mut MockHost, policy: &Policy, headers: &[(&str, &str)]) {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    flow.on_pick_answer(host, policy, &headers);
}
