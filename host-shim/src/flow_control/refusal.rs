//! What a client gets when no endpoint is picked: status, OpenAI error JSON and `Retry-After`,
//! built once for the pick API and ext_proc.

use super::config::FlowControlConfig;
use super::queue::Full;
use crate::scheduler::PickError;
use infergate_core::openai_error::{self, ErrorKind};

/// A refused pick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status (429 or 503).
    pub status: u16,
    /// The OpenAI error `code`.
    pub code: &'static str,
    /// The OpenAI error message.
    pub message: String,
    /// `Retry-After` seconds.
    pub retry_after: u64,
}

impl Refusal {
    fn new(status: u16, code: &'static str, message: String, retry_after: u64) -> Self {
        Self {
            status,
            code,
            message,
            retry_after,
        }
    }

    /// The scheduler's own refusal (503 no endpoint, 429 shed), as before flow control.
    pub fn from_pick(e: PickError, cfg: &FlowControlConfig) -> Self {
        let code = match e {
            PickError::Saturated => "saturated",
            _ => "no_endpoint",
        };
        Self::new(e.http_status(), code, e.to_string(), cfg.retry_after_secs)
    }

    /// The queue had no room.
    pub fn queue_full(cfg: &FlowControlConfig, full: Full) -> Self {
        let what = match full {
            Full::Requests => "request",
            Full::Bytes => "byte",
        };
        Self::new(
            cfg.queue_full_status,
            "queue_full",
            format!(
                "every endpoint is saturated and the wait queue is at its {what} limit; retry later"
            ),
            cfg.retry_after_secs,
        )
    }

    /// The request waited its whole TTL.
    pub fn timed_out(cfg: &FlowControlConfig) -> Self {
        Self::new(
            cfg.timeout_status,
            "queue_timeout",
            format!(
                "every endpoint stayed saturated for the {} ms this request may wait; retry later",
                cfg.request_ttl.as_millis()
            ),
            cfg.retry_after_secs,
        )
    }

    /// The caller cancelled the pick (`POST /v1/cancel`) while it waited; nobody reads this
    /// answer but it is a true one.
    pub fn cancelled(cfg: &FlowControlConfig) -> Self {
        Self::new(
            cfg.timeout_status,
            "cancelled",
            "the request was cancelled while it waited for an endpoint".to_string(),
            cfg.retry_after_secs,
        )
    }

    /// The OpenAI error kind of the status.
    pub fn kind(&self) -> ErrorKind {
        match self.status {
            429 => ErrorKind::RateLimited,
            _ => ErrorKind::Unavailable,
        }
    }

    /// The OpenAI error JSON body.
    pub fn body(&self) -> Vec<u8> {
        openai_error::body(self.kind(), self.code, &self.message)
    }
}
