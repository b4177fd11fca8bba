//! [`Stream`]: the current request's [`StreamHost`] calls over [`crate::host`], written once
//! for every adapter (each plugin's host hands them over with
//! [`Delegate`](infergate_core::stream::Delegate)).

use crate::host;
use infergate_core::openai_error::ErrorKind;
pub use infergate_core::stream::{Delegate, StreamHost};

/// The request whose callback is running, as a [`StreamHost`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Stream;

impl StreamHost for Stream {
    fn request_header(&self, name: &str) -> Option<String> {
        host::request_header(name)
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        host::set_request_header(name, value);
    }
    fn request_body(&self, size: usize) -> Vec<u8> {
        host::request_body(size)
    }
    fn send_error(&mut self, kind: ErrorKind, code: &str, message: &str, extra: &[(&str, &str)]) {
        crate::send_error(kind, code, message, extra);
    }
    fn send_too_large(&mut self, limit: usize) {
        crate::send_too_large(limit);
    }
    fn send_bad_request(&mut self, body: &[u8]) {
        crate::send_bad_request(body);
    }
    fn resume(&mut self) {
        host::resume_request();
    }
}

/// Declares an adapter's host for a core flow: `struct $name { shared: Rc<$shared> }`, whose
/// [`StreamHost`] calls are [`Stream`]'s (through
/// [`Delegate`](infergate_core::stream::Delegate)), with `$name::new(shared)`. The adapter
/// then implements only its flow's own `Host` methods.
#[macro_export]
macro_rules! wasm_host {
    ($(#[$meta:meta])* $name:ident, $shared:ty) => {
        $(#[$meta])*
        pub(crate) struct $name {
            /// What every request context of this VM shares.
            pub shared: ::std::rc::Rc<$shared>,
            stream: $crate::Stream,
        }

        impl $name {
            /// The host of one request.
            pub(crate) fn new(shared: ::std::rc::Rc<$shared>) -> Self {
                Self {
                    shared,
                    stream: $crate::Stream,
                }
            }
        }

        impl $crate::stream::Delegate for $name {
            type To = $crate::Stream;
            fn stream(&self) -> &$crate::Stream {
                &self.stream
            }
            fn stream_mut(&mut self) -> &mut $crate::Stream {
                &mut self.stream
            }
        }
    };
}
