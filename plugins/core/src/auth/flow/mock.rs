//! A test host for [`super::AuthFlow`]: records every host call, answers from its fields.

use super::{FlowHost, LocalReply, Stat};
use crate::auth::decision::Callout;
use crate::auth::jwt::KeySet;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// One request's host: its headers and body, the shared data, and what the flow did.
#[derive(Default)]
pub struct MockHost {
    /// Seconds since the epoch.
    pub now: u64,
    /// The request headers (pseudo-headers included); edited by the flow.
    pub headers: RefCell<Vec<(String, String)>>,
    /// The client address.
    pub source: Option<String>,
    /// The buffered request body.
    pub body: Vec<u8>,
    /// Shared data (shared by "workers": clone the `Rc` into another host).
    pub shared: Rc<RefCell<HashMap<String, Vec<u8>>>>,
    /// Fetched key sets by method.
    pub key_sets: HashMap<String, Rc<KeySet>>,
    /// Whether callouts can be sent (an unknown cluster when false).
    pub cluster_missing: bool,
    /// Callouts sent, in order; a call's token is its index + 1.
    pub sent: RefCell<Vec<Callout>>,
    /// The filter-state identity object.
    pub identity: RefCell<Option<Vec<u8>>>,
    /// Body bytes dropped, per call.
    pub discarded: RefCell<Vec<usize>>,
    /// Local answers sent.
    pub replies: RefCell<Vec<LocalReply>>,
    /// How often the request was resumed.
    pub resumed: Cell<usize>,
    /// Stats counted.
    pub stats: RefCell<Vec<Stat>>,
}

impl MockHost {
    /// A request with these headers at a fixed time.
    pub fn request(headers: &[(&str, &str)]) -> Self {
        Self {
            now: 1_800_000_000,
            headers: RefCell::new(
                headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Self::default()
        }
    }

    /// The values of request header `name` now.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .borrow()
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// How often `stat` was counted.
    pub fn counted(&self, stat: Stat) -> usize {
        self.stats.borrow().iter().filter(|s| **s == stat).count()
    }

    /// The status of the only local answer, if one was sent.
    pub fn replied(&self) -> Option<u32> {
        let replies = self.replies.borrow();
        assert!(replies.len() <= 1, "answered twice: {replies:?}");
        replies.first().map(|r| r.kind.status())
    }
}

impl FlowHost for MockHost {
    fn now(&self) -> u64 {
        self.now
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        self.headers.borrow().clone()
    }

    fn source_address(&self) -> Option<String> {
        self.source.clone()
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let mut headers = self.headers.borrow_mut();
        headers.retain(|(k, _)| k != name);
        if let Some(v) = value {
            headers.push((name.to_string(), v.to_string()));
        }
    }

    fn set_identity_object(&self, object: &[u8]) {
        *self.identity.borrow_mut() = Some(object.to_vec());
    }

    fn request_body(&self, size: usize) -> Vec<u8> {
        self.body.iter().take(size).copied().collect()
    }

    fn dispatch(&self, call: &Callout) -> Option<u32> {
        if self.cluster_missing {
            return None;
        }
        let mut sent = self.sent.borrow_mut();
        sent.push(call.clone());
        u32::try_from(sent.len()).ok()
    }

    fn discard_request_body(&self, size: usize) {
        self.discarded.borrow_mut().push(size);
    }

    fn shared_get(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.borrow().get(key).cloned()
    }

    fn shared_set(&self, key: &str, value: &[u8]) {
        self.shared
            .borrow_mut()
            .insert(key.to_string(), value.to_vec());
    }

    fn key_set(&self, method: &str) -> Option<Rc<KeySet>> {
        self.key_sets.get(method).cloned()
    }

    fn send_reply(&self, reply: &LocalReply) {
        self.replies.borrow_mut().push(reply.clone());
    }

    fn resume(&self) {
        self.resumed.set(self.resumed.get() + 1);
    }

    fn count(&self, stat: Stat) {
        self.stats.borrow_mut().push(stat);
    }
}
