//! A test-only [`Host`] that records what the flow asks of the proxy, and a driver that runs a
//! whole request and response through a [`Flow`].

use super::counter::{CounterStore, MemoryStore};
use super::decision::Usage;
use super::flow::{Event, Flow, Host, Policy, Step};
use super::rls::Descriptor;
use crate::testkit::{find, set, MockStream};

/// One `ShouldRateLimit` call sent.
#[derive(Debug, Clone)]
pub struct Dispatched {
    pub cluster: String,
    pub message: Vec<u8>,
    pub timeout_ms: u64,
}

/// The proxy side of one request.
pub struct MockHost {
    /// Request headers and body, the local answer, resumes.
    pub stream: MockStream,
    pub identity: Option<Vec<u8>>,
    pub source: Option<String>,
    pub summary: Option<Vec<u8>>,
    pub store: MemoryStore,
    pub now_ms: u64,
    pub dispatched: Vec<Dispatched>,
    /// `dispatch_rls` fails (the cluster is unknown).
    pub dispatch_fails: bool,
    pub queued: Vec<(Vec<Descriptor>, u64)>,
    pub response_headers: Vec<(String, String)>,
    /// The response chunk being passed; what the client gets once replaced.
    pub response_chunk: Vec<u8>,
    pub response_code: u64,
    pub events: Vec<Event>,
    pub usage: Vec<(Option<String>, Option<String>, Usage)>,
    pub warnings: Vec<String>,
}

impl MockHost {
    /// A request with these headers and no body.
    pub fn new(headers: &[(&str, &str)]) -> Self {
        Self {
            stream: MockStream::new(headers),
            identity: None,
            source: Some("10.0.0.7:5555".into()),
            summary: None,
            store: MemoryStore::default(),
            now_ms: 1_000_000_000_000,
            dispatched: Vec::new(),
            dispatch_fails: false,
            queued: Vec::new(),
            response_headers: Vec::new(),
            response_chunk: Vec::new(),
            response_code: 0,
            events: Vec::new(),
            usage: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// A `POST` of `body` to `path` by `user`.
    pub fn post(path: &str, user: &str, body: &str) -> Self {
        Self {
            stream: MockStream::post(path, &[("x-infergate-user", user)], body),
            ..Self::new(&[])
        }
    }

    /// The next request on the same counters and clock.
    pub fn next(self, headers: &[(&str, &str)], body: &str) -> Self {
        let mut h = Self::new(headers);
        h.request_body = body.as_bytes().to_vec();
        h.store = self.store;
        h.now_ms = self.now_ms;
        h
    }

    /// How often `event` was counted.
    pub fn counted(&self, event: Event) -> usize {
        self.events.iter().filter(|e| **e == event).count()
    }

    /// The first value of a response header.
    pub fn response_header_value(&self, name: &str) -> Option<String> {
        find(&self.response_headers, name)
    }

    /// The first value of a request header.
    pub fn request_header_value(&self, name: &str) -> Option<String> {
        find(&self.request_headers, name)
    }
}

crate::testkit::mock_stream_host!(MockHost);

impl Host for MockHost {
    fn request_headers(&self) -> Vec<(String, String)> {
        self.stream.request_headers.clone()
    }
    fn replace_request_body(&mut self, old_size: usize, body: &[u8]) {
        self.stream
            .request_body
            .splice(..old_size, body.iter().copied());
    }
    fn identity(&self) -> Option<Vec<u8>> {
        self.identity.clone()
    }
    fn source_address(&self) -> Option<String> {
        self.source.clone()
    }
    fn publish_summary(&mut self, summary: &[u8]) {
        self.summary = Some(summary.to_vec());
    }
    fn counters(&self) -> &dyn CounterStore {
        &self.store
    }
    fn now_ms(&self) -> u64 {
        self.now_ms
    }
    fn dispatch_rls(&mut self, cluster: &str, message: &[u8], timeout_ms: u64) -> Option<u32> {
        if self.dispatch_fails {
            return None;
        }
        self.dispatched.push(Dispatched {
            cluster: cluster.to_string(),
            message: message.to_vec(),
            timeout_ms,
        });
        u32::try_from(self.dispatched.len()).ok()
    }
    fn queue_rls_settlement(&mut self, descriptors: Vec<Descriptor>, hits: u64) {
        self.queued.push((descriptors, hits));
    }
    fn response_header(&self, name: &str) -> Option<String> {
        find(&self.response_headers, name)
    }
    fn set_response_header(&mut self, name: &str, value: Option<&str>) {
        set(&mut self.response_headers, name, value);
    }
    fn response_body(&self, size: usize) -> Vec<u8> {
        self.response_chunk[..size.min(self.response_chunk.len())].to_vec()
    }
    fn replace_response_body(&mut self, size: usize, body: &[u8]) {
        self.response_chunk.splice(..size, body.iter().copied());
    }
    fn response_code(&self) -> u64 {
        self.response_code
    }
    fn count(&mut self, event: Event) {
        self.events.push(event);
    }
    fn record_usage(&mut self, user: Option<&str>, model: Option<&str>, usage: Usage) {
        self.usage
            .push((user.map(str::to_string), model.map(str::to_string), usage));
    }
    fn warn(&mut self, message: &str) {
        self.warnings.push(message.to_string());
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

/// Answers `code` with `content_type` in `chunks` (the last one ends the stream) and ends the
/// stream: what the client received.
pub fn respond(
    flow: &mut Flow,
    host: &mut MockHost,
    policy: &Policy,
    code: u64,
    content_type: &str,
    chunks: &[&str],
) -> String {
    host.response_code = code;
    host.response_headers = vec![
        (":status".into(), code.to_string()),
        ("content-type".into(), content_type.into()),
    ];
    flow.on_response_headers(host, policy);
    let mut received = String::new();
    for (i, chunk) in chunks.iter().enumerate() {
        host.response_chunk = chunk.as_bytes().to_vec();
        flow.on_response_body(host, chunk.len(), i + 1 == chunks.len());
        received.push_str(&String::from_utf8_lossy(&host.response_chunk));
    }
    flow.on_log(host, policy);
    received
}
