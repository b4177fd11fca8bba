//! A test-only [`Host`] that records what the affinity flow asks of the proxy, and a driver
//! that runs a whole request through a [`Flow`].

use super::flow::{Event, Flow, Host, Policy, ServedReport, Step};
use crate::openai_error::ErrorKind;

/// A local answer the flow sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub code: String,
    pub headers: Vec<(String, String)>,
}

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
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
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
    pub reply: Option<Reply>,
    pub resumed: u32,
    pub events: Vec<Event>,
}

impl MockHost {
    /// A request with these headers and no body.
    pub fn new(headers: &[(&str, &str)]) -> Self {
        Self {
            request_headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            request_body: Vec::new(),
            summary: None,
            fetched: None,
            dispatched: Vec::new(),
            dispatch_fails: false,
            now_us: 1_000_000_000_000_000,
            latencies: Vec::new(),
            upstream: None,
            reports: Vec::new(),
            reply: None,
            resumed: 0,
            events: Vec::new(),
        }
    }

    /// A `POST` of `body` to `path`.
    pub fn post(path: &str, body: &str) -> Self {
        let len = body.len().to_string();
        let mut h = Self::new(&[
            (":method", "POST"),
            (":path", path),
            ("content-length", &len),
        ]);
        h.request_body = body.as_bytes().to_vec();
        h
    }

    /// How often `event` was counted.
    pub fn counted(&self, event: Event) -> usize {
        self.events.iter().filter(|e| **e == event).count()
    }

    /// The first value of a request header.
    pub fn header(&self, name: &str) -> Option<String> {
        self.request_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    fn reply(&mut self, status: u32, code: &str, extra: &[(&str, &str)]) {
        assert!(self.reply.is_none(), "answered twice");
        self.reply = Some(Reply {
            status,
            code: code.to_string(),
            headers: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
    }
}

impl Host for MockHost {
    fn request_header(&self, name: &str) -> Option<String> {
        self.header(name)
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        self.request_headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            self.request_headers.push((name.to_string(), v.to_string()));
        }
    }
    fn request_body(&self, size: usize) -> Vec<u8> {
        self.request_body[..size.min(self.request_body.len())].to_vec()
    }
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
    fn send_error(&mut self, kind: ErrorKind, code: &str, _message: &str, extra: &[(&str, &str)]) {
        self.reply(kind.status(), code, extra);
    }
    fn send_too_large(&mut self, _limit: usize) {
        self.reply(413, "request_too_large", &[]);
    }
    fn send_bad_request(&mut self, _body: &[u8]) {
        self.reply(400, "bad_request", &[]);
    }
    fn resume(&mut self) {
        self.resumed += 1;
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
