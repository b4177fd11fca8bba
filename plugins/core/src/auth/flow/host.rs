//! What the auth flow needs from its host (the proxy-wasm adapter in Envoy, a test host in
//! unit tests): a narrow trait, so the whole per-request flow runs without Envoy.

use crate::auth::decision::{Callout, CalloutKind};
use crate::auth::jwt::KeySet;
use crate::openai_error::ErrorKind;
use std::rc::Rc;

/// What the flow tells its host to do with the current filter callback: the [`Step`]
/// every flow answers with (`Pause` while a callout or the rest of the body is awaited, or
/// once a local answer was sent).
///
/// [`Step`]: crate::stream::Step
pub use crate::stream::Step as Next;

/// A local answer: an OpenAI-style JSON error with extra headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// Status and error type.
    pub kind: ErrorKind,
    /// Machine-readable code of the error body.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Headers besides `content-type` (`www-authenticate`, `retry-after`).
    pub headers: Vec<(&'static str, String)>,
}

/// The flow's stats (the adapter maps them to counters under `infergate.auth.`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// A request was let through.
    Allowed,
    /// A request was denied, with one of [`crate::auth::DENIAL_REASONS`].
    Denied(&'static str),
    /// A callout was sent (or could not be).
    Callout(CalloutKind),
    /// A callout failed (error status, timeout, unreachable cluster).
    CalloutFailed,
    /// A cached callout answer was found.
    CacheHit,
    /// No live cached answer.
    CacheMiss,
}

/// The host calls of one HTTP context. Every method acts on the current request.
pub trait FlowHost {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
    /// Every request header (pseudo-headers included), in order.
    fn request_headers(&self) -> Vec<(String, String)>;
    /// The client address (`ip:port`), when known.
    fn source_address(&self) -> Option<String>;
    /// Sets (or with `None` removes) a request header.
    fn set_request_header(&self, name: &str, value: Option<&str>);
    /// Stores the encoded identity object where later filters read it (filter state).
    fn set_identity_object(&self, object: &[u8]);
    /// The first `size` bytes of the buffered request body.
    fn request_body(&self, size: usize) -> Vec<u8>;
    /// Sends `call` through its Envoy cluster; the call's token, or `None` when it cannot be
    /// sent (unknown cluster).
    fn dispatch(&self, call: &Callout) -> Option<u32>;
    /// Drops the first `size` bytes of the buffered request body (a denied request's body is
    /// read to its end, not kept).
    fn discard_request_body(&self, size: usize);
    /// A shared-data value (shared by the workers of this VM).
    fn shared_get(&self, key: &str) -> Option<Vec<u8>>;
    /// Writes a shared-data value (failures are ignored: a cache entry is an optimisation).
    fn shared_set(&self, key: &str, value: &[u8]);
    /// The last good JWKS of a `jwksUri` method, `None` before the first successful fetch.
    fn key_set(&self, method: &str) -> Option<Rc<KeySet>>;
    /// Answers the request locally.
    fn send_reply(&self, reply: &LocalReply);
    /// Resumes a request paused earlier (from outside a filter callback).
    fn resume(&self);
    /// Counts `stat`.
    fn count(&self, stat: Stat);
}
