//! Following a response to the real token usage: the JSON body's `usage`, or the SSE stream's
//! final usage chunk (removed from what the client receives when the gateway asked for it), or,
//! for a stream cut off before its usage, what was streamed.

use super::decision::Usage;
use crate::openai::{parse_response_usage, SseConfig, SseEvent, SseParser};

/// Largest non-streaming response body kept to read its usage.
const MAX_JSON_RESPONSE: usize = 16 * 1024 * 1024;

/// How the response is being followed.
pub enum Tracker {
    /// A JSON body, copied as it passes.
    Json {
        /// The bytes so far.
        body: Vec<u8>,
        /// Too large to keep: the estimate stands.
        overflow: bool,
    },
    /// An event stream.
    Sse {
        /// The incremental parser.
        parser: Box<SseParser>,
        /// Removing the usage-only chunk the gateway asked for.
        strip: bool,
    },
}

/// What the response says about usage once it ended (or was cut).
pub enum Settlement {
    /// Real (or counted) usage.
    Usage(Usage),
    /// Nothing trustworthy: keep the up-front charge.
    KeepEstimate(String),
}

impl Tracker {
    /// Chooses by content type; `strip` removes the usage-only chunk the gateway asked for.
    pub fn for_content_type(content_type: &str, strip: bool) -> Self {
        if content_type.trim_start().starts_with("text/event-stream") {
            Self::Sse {
                parser: Box::new(SseParser::new(SseConfig {
                    strip_usage_chunk: strip,
                    ..SseConfig::default()
                })),
                strip,
            }
        } else {
            Self::Json {
                body: Vec::new(),
                overflow: false,
            }
        }
    }

    /// Follows one body chunk; returns replacement bytes when the client must get something
    /// else than the chunk (strip mode).
    pub fn feed(&mut self, chunk: &[u8], end_of_stream: bool) -> Option<Vec<u8>> {
        match self {
            Self::Json { body, overflow } => {
                if !*overflow {
                    if body.len() + chunk.len() > MAX_JSON_RESPONSE {
                        *overflow = true;
                        body.clear();
                    } else {
                        body.extend_from_slice(chunk);
                    }
                }
                None
            }
            Self::Sse { parser, strip } => {
                let mut out = Vec::new();
                let mut events: Vec<SseEvent> = Vec::new();
                // On a parser error the bytes still pass through (`out` holds them).
                let _ = parser.feed(chunk, &mut out, &mut events);
                if end_of_stream {
                    parser.finish(&mut out);
                }
                strip.then_some(out)
            }
        }
    }

    /// The usage to settle to, given the prompt estimate for streams cut before usage.
    pub fn settlement(&self, estimated_prompt: u64) -> Settlement {
        match self {
            Self::Json { overflow: true, .. } => {
                Settlement::KeepEstimate("response too large to read usage".into())
            }
            Self::Json { body, .. } => match parse_response_usage(body) {
                Ok(Some(u)) => Settlement::Usage(Usage {
                    prompt: u.prompt_tokens,
                    completion: u.completion_tokens,
                }),
                Ok(None) => Settlement::KeepEstimate("response has no usage".into()),
                Err(e) => Settlement::KeepEstimate(format!("malformed usage in response: {e}")),
            },
            Self::Sse { parser, .. } => {
                let stats = parser.stats();
                match stats.usage {
                    Some(u) => Settlement::Usage(Usage {
                        prompt: u.prompt_tokens,
                        completion: u.completion_tokens,
                    }),
                    // Cut off (or no usage chunk): charge what was streamed.
                    None => Settlement::Usage(Usage {
                        prompt: estimated_prompt,
                        completion: stats.estimated_completion_tokens(),
                    }),
                }
            }
        }
    }
}
