//! OpenAI request/response body and SSE parsing, host-independent.
//!
//! Public API:
//!
//! - [`ApiKind`] and [`ApiKind::from_path`]: which API a request path targets.
//! - [`parse_request`] → [`ParsedRequest`]: model, [`CanonicalPrompt`] (format in [`prompt`]),
//!   estimated prompt tokens ([`tokens`]), output limits, `stream`, `include_usage`, session key.
//! - [`request_stream_usage`] / [`inject_include_usage`] → [`UsageInjection`]: ask the model
//!   server for a usage chunk on a stream, preserving the rest of the body byte for byte.
//! - [`parse_response_usage`] → [`Usage`]: usage of a non-streaming response.
//! - [`SseParser`]: incremental SSE parser over any chunking, yielding [`SseEvent`]s and
//!   [`StreamStats`], optionally stripping the injected usage-only chunk.
//! - [`RequestSummary`]: a parse handed from one filter to the next (filter state), so a body
//!   is parsed once per request.
//! - [`BodyError`]: every body failure, naming the field (`messages[2].content: …`), with
//!   [`BodyError::to_openai_body`] for the 400 answer.

mod api;
mod de;
mod error;
pub mod prompt;
mod request;
mod rewrite;
mod scan;
mod sse;
mod sse_chunk;
mod summary;
pub mod tokens;
mod usage;

pub use api::ApiKind;
pub use error::{BodyError, BodyErrorKind};
pub use prompt::CanonicalPrompt;
pub use request::{parse_request, parse_request_capped, ParsedRequest};
pub use rewrite::{inject_include_usage, request_stream_usage, UsageInjection};
pub use sse::{SseConfig, SseError, SseEvent, SseParser, StreamStats};
pub use sse_chunk::ChunkSummary;
pub use summary::{RequestSummary, MAX_SUMMARY_PROMPT_BYTES, SUMMARY_PROPERTY};
pub use usage::{parse_response_usage, Usage};
