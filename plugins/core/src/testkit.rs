//! Test-only scaffolding shared by the flows' mock hosts: [`MockStream`], a recording
//! [`StreamHost`] (request headers and body, the local answer, resumes), which each flow's
//! `MockHost` holds and hands its [`StreamHost`] calls to through [`Delegate`].
//!
//! [`Delegate`]: crate::stream::Delegate

use crate::openai_error::ErrorKind;
use crate::stream::StreamHost;

/// A local answer a flow sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub code: String,
    pub headers: Vec<(String, String)>,
}

/// The request side of one request, as the flows see it through [`StreamHost`].
#[derive(Debug, Default)]
pub struct MockStream {
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    /// The local answer, once sent (a second one fails the test).
    pub reply: Option<Reply>,
    /// How often the request was resumed.
    pub resumed: u32,
}

/// `(name, value)` pairs as owned strings.
pub fn pairs(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The first value of `name` (any case) in `headers`.
pub fn find(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// Replaces (`Some`) or removes (`None`) every `name` in `headers`.
pub fn set(headers: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    if let Some(v) = value {
        headers.push((name.to_string(), v.to_string()));
    }
}

impl MockStream {
    /// A request with these headers and no body.
    pub fn new(headers: &[(&str, &str)]) -> Self {
        Self {
            request_headers: pairs(headers),
            ..Self::default()
        }
    }

    /// A `POST` of `body` to `path` with a `content-length` and these `extra` headers.
    pub fn post(path: &str, extra: &[(&str, &str)], body: &str) -> Self {
        let len = body.len().to_string();
        let mut headers = vec![
            (":method", "POST"),
            (":path", path),
            ("content-length", &len),
        ];
        headers.extend_from_slice(extra);
        Self {
            request_body: body.as_bytes().to_vec(),
            ..Self::new(&headers)
        }
    }

    /// The first value of a request header.
    pub fn header(&self, name: &str) -> Option<String> {
        find(&self.request_headers, name)
    }

    fn reply(&mut self, status: u32, code: &str, extra: &[(&str, &str)]) {
        assert!(self.reply.is_none(), "answered twice");
        self.reply = Some(Reply {
            status,
            code: code.to_string(),
            headers: pairs(extra),
        });
    }
}

impl StreamHost for MockStream {
    fn request_header(&self, name: &str) -> Option<String> {
        self.header(name)
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        set(&mut self.request_headers, name, value);
    }
    fn request_body(&self, size: usize) -> Vec<u8> {
        self.request_body[..size.min(self.request_body.len())].to_vec()
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
}

/// A [`MockStream`]-backed host: `Deref` to the stream so tests read `host.reply`,
/// `host.request_headers`… directly, and `Delegate` for the [`StreamHost`] calls.
macro_rules! mock_stream_host {
    ($host:ty) => {
        impl std::ops::Deref for $host {
            type Target = $crate::testkit::MockStream;
            fn deref(&self) -> &Self::Target {
                &self.stream
            }
        }
        impl std::ops::DerefMut for $host {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.stream
            }
        }
        impl $crate::stream::Delegate for $host {
            type To = $crate::testkit::MockStream;
            fn stream(&self) -> &Self::To {
                &self.stream
            }
            fn stream_mut(&mut self) -> &mut Self::To {
                &mut self.stream
            }
        }
    };
}
pub(crate) use mock_stream_host;
