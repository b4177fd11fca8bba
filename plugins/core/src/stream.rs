//! What every plugin flow asks of the proxy for the request it handles, defined once: the
//! [`Step`] a callback answers with and the [`StreamHost`] calls (request headers and body,
//! local answers, resuming). Each flow's own host trait (`ratelimit::flow::Host`,
//! `affinity::flow::Host`) extends [`StreamHost`] with what only that flow needs.
//!
//! An implementation written once is reused by [`Delegate`]: the proxy-wasm glue has one
//! implementation over the current request's host calls, the unit tests one recording mock
//! (`testkit::MockStream`), and each plugin's host hands its [`StreamHost`] calls to one of
//! them.

use crate::openai_error::ErrorKind;

/// What the host does with the request after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Let the request (or this part of it) go on.
    Continue,
    /// Hold it: the flow resumes it or has answered it.
    Pause,
}

/// The host calls on the current request that every flow makes.
pub trait StreamHost {
    /// The first value of a request header (pseudo-headers included).
    fn request_header(&self, name: &str) -> Option<String>;
    /// Sets (`Some`) or removes (`None`) a request header.
    fn set_request_header(&mut self, name: &str, value: Option<&str>);
    /// The first `size` bytes of the buffered request body.
    fn request_body(&self, size: usize) -> Vec<u8>;
    /// Answers the request locally with an OpenAI-style error.
    fn send_error(&mut self, kind: ErrorKind, code: &str, message: &str, extra: &[(&str, &str)]);
    /// Answers 413: the body is larger than `limit` bytes.
    fn send_too_large(&mut self, limit: usize);
    /// Answers 400 with the body parser's OpenAI-style error `body`.
    fn send_bad_request(&mut self, body: &[u8]);
    /// Resumes a paused request.
    fn resume(&mut self);
}

/// A host whose [`StreamHost`] calls are another value's: implement this (two accessors)
/// and the [`StreamHost`] methods come with it.
pub trait Delegate {
    /// The implementation the calls go to.
    type To: StreamHost;
    /// The implementation, to read through.
    fn stream(&self) -> &Self::To;
    /// The implementation, to act through.
    fn stream_mut(&mut self) -> &mut Self::To;
}

impl<T: Delegate> StreamHost for T {
    fn request_header(&self, name: &str) -> Option<String> {
        self.stream().request_header(name)
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        self.stream_mut().set_request_header(name, value);
    }
    fn request_body(&self, size: usize) -> Vec<u8> {
        self.stream().request_body(size)
    }
    fn send_error(&mut self, kind: ErrorKind, code: &str, message: &str, extra: &[(&str, &str)]) {
        self.stream_mut().send_error(kind, code, message, extra);
    }
    fn send_too_large(&mut self, limit: usize) {
        self.stream_mut().send_too_large(limit);
    }
    fn send_bad_request(&mut self, body: &[u8]) {
        self.stream_mut().send_bad_request(body);
    }
    fn resume(&mut self) {
        self.stream_mut().resume();
    }
}

/// A flow's stat events: each bumps one counter, named here once for every adapter.
pub trait Counted: Copy + 'static {
    /// Every event, in the order of [`Counted::index`].
    const ALL: &'static [Self];
    /// The event's position in [`Counted::ALL`].
    fn index(self) -> usize;
    /// The counter's name under the plugin's stat prefix.
    fn stat(self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::Counted;
    use crate::{affinity, ratelimit};

    fn check<E: Counted + std::fmt::Debug>() {
        let mut names = std::collections::HashSet::new();
        for (i, e) in E::ALL.iter().enumerate() {
            assert_eq!(e.index(), i, "{e:?}");
            assert!(names.insert(e.stat()), "{e:?} shares a stat name");
        }
    }

    #[test]
    fn every_event_has_its_own_index_and_stat_name() {
        check::<ratelimit::host::Event>();
        check::<affinity::host::Event>();
        assert_eq!(ratelimit::host::Event::ALL.len(), 6);
        assert_eq!(affinity::host::Event::ALL.len(), 8);
    }
}
