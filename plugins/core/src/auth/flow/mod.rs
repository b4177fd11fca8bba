//! One request through the auth plugin, as a state machine driven through [`FlowHost`].
//!
//! The adapter feeds it Envoy's callbacks — [`AuthFlow::on_headers`], [`AuthFlow::on_body`],
//! [`AuthFlow::on_answer`] (a callout's answer or timeout), [`AuthFlow::on_done`] — and
//! returns the [`Next`] it gets. The phase ([`Phase`]) says what the request waits for:
//! headers → (awaiting a callout) → (awaiting the body for a `models` rule) → forwarded, or
//! answered locally at any point. Authentication decides first ([`Authenticator::authenticate`],
//! resumed after a TokenReview), then the identity headers and filter state are written, then
//! authorization (rules, the body's `model`, a SubjectAccessReview).
//!
//! **Adding a callout kind** (for example an HTTP metadata call whose JSON answer is kept as
//! `auth.metadata.<name>`): add a variant to [`CalloutKind`]; build a [`Callout`] where the
//! step runs (cluster, method, path, authority, headers, body, timeout, cache key and TTLs —
//! check [`FlowHost::shared_get`] under the cache key first) and hand it to
//! [`AuthFlow::dispatch`], which sends it and parks the request in
//! [`Phase::AwaitingCallout`]; then add an arm for the variant in [`AuthFlow::answered`],
//! which receives the status and body (status `None` on a timeout or reset), stores what is
//! worth caching with [`FlowHost::shared_set`] and continues with the next step. Everything
//! else — pausing, resuming from the callout's answer, the body arriving meanwhile, the
//! stream being cut — is already the machine's.

mod deadlines;
mod host;
#[cfg(test)]
pub mod mock;
#[cfg(test)]
mod tests;

pub use deadlines::{Deadlines, DRAIN_TIMEOUT_MS};
pub use host::{FlowHost, LocalReply, Next, Stat};

use super::decision::{Authorization, Callout, CalloutKind, Decision, Denial};
use super::kube::{self, Review};
use super::{identity, AuthHost, Authenticator, Identity, RequestView};
use crate::openai::{parse_request, ApiKind};
use crate::openai_error::ErrorKind;
use std::rc::Rc;

/// Request facts read once from the host.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Every request header, in order.
    pub headers: Vec<(String, String)>,
    /// The client address.
    pub source: Option<String>,
}

impl Facts {
    fn pseudo(&self, name: &str) -> String {
        self.header_values(name)
            .into_iter()
            .next()
            .unwrap_or_default()
    }
}

impl RequestView for Facts {
    fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn path(&self) -> String {
        self.pseudo(":path")
    }

    fn host(&self) -> String {
        self.pseudo(":authority")
    }

    fn source_address(&self) -> Option<String> {
        self.source.clone()
    }
}

/// Time, key sets and the review cache, as the decision sees them, counting cache hits.
struct Via<'a>(&'a dyn FlowHost);

impl AuthHost for Via<'_> {
    fn now(&self) -> u64 {
        self.0.now()
    }

    fn key_set(&self, method: &str) -> Option<Rc<super::jwt::KeySet>> {
        self.0.key_set(method)
    }

    fn cache_get(&self, key: &str) -> Option<Vec<u8>> {
        let value = self.0.shared_get(key);
        let live = value.as_deref().is_some_and(|v| {
            kube::decode_entry(v, self.0.now()).is_some()
                || super::metadata::decode_entry(v, self.0.now()).is_some()
        });
        self.0.count(if live {
            Stat::CacheHit
        } else {
            Stat::CacheMiss
        });
        value
    }
}

/// Where a request is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Phase {
    /// Nothing decided yet.
    #[default]
    Headers,
    /// Authenticated; a `models` rule waits for the complete body.
    AwaitingBody,
    /// A callout is out; its answer (or timeout) continues the request.
    AwaitingCallout {
        /// The call.
        callout: Box<Callout>,
        /// The host's token for it.
        token: u32,
    },
    /// Allowed: the request goes on upstream.
    Forwarded,
    /// Denied while the client is still sending its body: the answer goes out once the body
    /// has been read (and dropped), after more than the body limit, or when the adapter's
    /// timer fires ([`AuthFlow::on_timeout`]). Answering first makes Envoy reset the rest of
    /// the HTTP/2 stream (`RST_STREAM NO_ERROR`, which RFC 9113 §8.1 allows), and clients
    /// still uploading then report a stream error instead of the answer (curl 7.88:
    /// `curl: (92) Stream error in the HTTP/2 framing layer`). Only in hold mode: without it
    /// Envoy delivers no body to a filter that paused the headers, and letting the headers
    /// go on would send an unauthenticated request upstream.
    Draining {
        /// The answer.
        reply: LocalReply,
        /// Body bytes dropped so far.
        drained: usize,
    },
    /// Answered locally, or the stream ended: nothing more happens.
    Answered,
}

/// The auth flow of one request.
#[derive(Debug, Default)]
pub struct AuthFlow {
    phase: Phase,
    facts: Facts,
    identity: Option<Identity>,
    /// The body's size once complete.
    body_complete: Option<usize>,
}

impl AuthFlow {
    /// A request whose headers have not been seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where the request is.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The request headers arrived: authenticate.
    pub fn on_headers(
        &mut self,
        auth: &Authenticator,
        host: &dyn FlowHost,
        end_of_stream: bool,
    ) -> Next {
        // Identity headers are the gateway's to set: drop whatever the client sent.
        host.set_request_header(&auth.identity_headers.userid, None);
        host.set_request_header(&auth.identity_headers.groups, None);
        if end_of_stream {
            self.body_complete = Some(0);
        }
        self.facts = Facts {
            headers: host.request_headers(),
            source: host.source_address(),
        };
        let decision = auth.authenticate(&self.facts, &Via(host));
        self.decided(auth, host, decision)
    }

    /// Request body data arrived (`size` bytes buffered so far).
    pub fn on_body(
        &mut self,
        auth: &Authenticator,
        host: &dyn FlowHost,
        size: usize,
        end_of_stream: bool,
    ) -> Next {
        let awaiting_body = match self.phase {
            Phase::AwaitingBody => true,
            Phase::AwaitingCallout { .. } => false,
            Phase::Draining { .. } => return self.drain(auth, host, size, end_of_stream),
            _ => return Next::Continue,
        };
        if size > auth.max_body_bytes() {
            self.phase = Phase::Answered;
            host.send_reply(&LocalReply {
                kind: ErrorKind::PayloadTooLarge,
                code: "request_too_large",
                message: "The request body exceeds the gateway's limit for authorization."
                    .to_string(),
                headers: Vec::new(),
            });
            return Next::Pause;
        }
        if !end_of_stream {
            return Next::Pause;
        }
        self.body_complete = Some(size);
        if awaiting_body {
            return self.read_model(auth, host, size);
        }
        // A callout is still out; its answer finishes the request.
        Next::Pause
    }

    /// The answer to callout `token` (`status` `None`: timed out or reset).
    pub fn on_answer(
        &mut self,
        auth: &Authenticator,
        host: &dyn FlowHost,
        token: u32,
        status: Option<u32>,
        body: &[u8],
    ) {
        let phase = std::mem::take(&mut self.phase);
        let Phase::AwaitingCallout { callout, token: t } = phase else {
            self.phase = phase;
            return;
        };
        if t != token {
            self.phase = Phase::AwaitingCallout { callout, token: t };
            return;
        }
        // Outside a filter callback: going on means resuming the paused request.
        if self.answered(auth, host, *callout, status, body) == Next::Continue {
            host.resume();
        }
    }

    /// The stream ended (completed or cut): a late answer changes nothing.
    pub fn on_done(&mut self) {
        self.phase = Phase::Answered;
    }

    /// Sends `callout`, or treats it as failed when it cannot be sent.
    pub fn dispatch(
        &mut self,
        auth: &Authenticator,
        host: &dyn FlowHost,
        callout: Callout,
    ) -> Next {
        host.count(Stat::Callout(callout.kind));
        match host.dispatch(&callout) {
            Some(token) => {
                self.phase = Phase::AwaitingCallout {
                    callout: Box::new(callout),
                    token,
                };
                Next::Pause
            }
            // The cluster does not exist or the call cannot be made: as a failed answer.
            None => self.answered(auth, host, callout, None, &[]),
        }
    }

    /// Continues with the answer to `callout`.
    fn answered(
        &mut self,
        auth: &Authenticator,
        host: &dyn FlowHost,
        callout: Callout,
        status: Option<u32>,
        body: &[u8],
    ) -> Next {
        self.phase = Phase::Headers;
        if let CalloutKind::Metadata(_) = callout.kind {
            let out = auth.metadata_answered(&Via(host), callout, status, body);
            if out.failed.is_some() {
                host.count(Stat::CalloutFailed);
            }
            if let Some((key, value)) = &out.cache {
                host.shared_set(key, value);
            }
            return self.decided(auth, host, out.decision);
        }
        let review = auth.read_review(&callout, status, body);
        if review == Review::Failed {
            host.count(Stat::CalloutFailed);
        }
        if let Some(entry) = Authenticator::cache_entry(&callout, &review, host.now()) {
            host.shared_set(&callout.cache_key, &entry);
        }
        match callout.kind {
            CalloutKind::Token(_) => {
                let decision = auth.token_reviewed(&self.facts, &Via(host), &callout, review);
                self.decided(auth, host, decision)
            }
            CalloutKind::Access => {
                let authz = auth.access_reviewed(review);
                self.authorized(auth, host, authz)
            }
            CalloutKind::Metadata(_) => self.lost(host),
        }
    }

    fn decided(&mut self, auth: &Authenticator, host: &dyn FlowHost, decision: Decision) -> Next {
        match decision {
            Decision::Allow { identity, .. } => {
                for h in &auth.credential_headers {
                    host.set_request_header(h, None);
                }
                let headers = &auth.identity_headers;
                host.set_request_header(&headers.userid, Some(&identity.userid));
                if !identity.groups.is_empty() {
                    host.set_request_header(&headers.groups, Some(&identity.groups.join(",")));
                }
                // The whole identity object (every property) for the rate limiter.
                let Some(object) = identity::encode(&identity) else {
                    return self.lost(host);
                };
                host.set_identity_object(&object);
                self.identity = Some(identity);
                self.authorize(auth, host, None)
            }
            Decision::Deny(d) => self.deny(auth, host, &d),
            Decision::Review(c) => self.dispatch(auth, host, c),
        }
    }

    fn authorize(
        &mut self,
        auth: &Authenticator,
        host: &dyn FlowHost,
        model: Option<&str>,
    ) -> Next {
        let Some(identity) = &self.identity else {
            return self.lost(host);
        };
        let authz = auth.authorize(&self.facts, &Via(host), identity, model);
        self.authorized(auth, host, authz)
    }

    fn authorized(
        &mut self,
        auth: &Authenticator,
        host: &dyn FlowHost,
        authz: Authorization,
    ) -> Next {
        match authz {
            Authorization::Allow => {
                host.count(Stat::Allowed);
                self.phase = Phase::Forwarded;
                Next::Continue
            }
            Authorization::Deny(d) => self.deny(auth, host, &d),
            Authorization::Review(c) => self.dispatch(auth, host, c),
            Authorization::NeedModel => {
                self.phase = Phase::AwaitingBody;
                match self.body_complete {
                    Some(size) => self.read_model(auth, host, size),
                    // Hold mode keeps the headers paused; no-hold mode lets them go on (or
                    // resumes them after a callout) and the body callback decides, answering
                    // 403 from there before any body byte is forwarded.
                    None => match auth.hold.awaiting_body() {
                        crate::header_hold::AtHeaders::Hold => Next::Pause,
                        crate::header_hold::AtHeaders::Continue => Next::Continue,
                    },
                }
            }
        }
    }

    /// The body is complete: read its `model` and finish authorization.
    fn read_model(&mut self, auth: &Authenticator, host: &dyn FlowHost, size: usize) -> Next {
        let body = if size == 0 {
            Vec::new()
        } else {
            host.request_body(size)
        };
        // No model (not an OpenAI request, or a malformed one): no `models` rule matches.
        let model = ApiKind::from_path(&self.facts.path())
            .and_then(|api| parse_request(api, &body).ok())
            .map(|p| p.model)
            .unwrap_or_default();
        self.authorize(auth, host, Some(&model))
    }

    fn deny(&mut self, auth: &Authenticator, host: &dyn FlowHost, denial: &Denial) -> Next {
        host.count(Stat::Denied(denial.reason));
        let mut headers = Vec::new();
        if let Some(w) = &denial.www_authenticate {
            headers.push(("www-authenticate", w.clone()));
        }
        if denial.kind == ErrorKind::Unavailable {
            headers.push(("retry-after", "1".to_string()));
        }
        let reply = LocalReply {
            kind: denial.kind,
            code: denial.code,
            message: denial.message.to_string(),
            headers,
        };
        // The client is still sending its body and the body callbacks will come (hold mode):
        // read the rest before answering, see [`Phase::Draining`].
        if self.body_complete.is_none() && auth.hold.allowed() {
            self.phase = Phase::Draining { reply, drained: 0 };
            return Next::Pause;
        }
        self.phase = Phase::Answered;
        host.send_reply(&reply);
        Next::Pause
    }

    /// The answer waits while the rest of the body is read and dropped.
    fn drain(
        &mut self,
        auth: &Authenticator,
        host: &dyn FlowHost,
        size: usize,
        end_of_stream: bool,
    ) -> Next {
        let Phase::Draining { drained, .. } = &mut self.phase else {
            return Next::Continue;
        };
        host.discard_request_body(size);
        *drained = drained.saturating_add(size);
        if end_of_stream || *drained > auth.max_body_bytes() {
            self.answer_now(host);
        }
        Next::Pause
    }

    /// The draining timer fired: answer now, whatever is left of the body.
    pub fn on_timeout(&mut self, host: &dyn FlowHost) {
        if self.is_draining() {
            self.answer_now(host);
        }
    }

    /// Whether an answer waits for the rest of the body (the adapter arms a timer for it).
    pub fn is_draining(&self) -> bool {
        matches!(self.phase, Phase::Draining { .. })
    }

    fn answer_now(&mut self, host: &dyn FlowHost) {
        if let Phase::Draining { reply, .. } = std::mem::replace(&mut self.phase, Phase::Answered) {
            host.send_reply(&reply);
        }
    }

    /// A state that cannot happen; fail closed.
    fn lost(&mut self, host: &dyn FlowHost) -> Next {
        self.phase = Phase::Answered;
        host.send_reply(&LocalReply {
            kind: ErrorKind::Internal,
            code: "internal_error",
            message: "The gateway's authentication filter lost track of this request.".to_string(),
            headers: Vec::new(),
        });
        host.count(Stat::Denied("unavailable"));
        Next::Pause
    }
}
