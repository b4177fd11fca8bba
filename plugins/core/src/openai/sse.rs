//! Incremental parser for a `text/event-stream` response body, fed chunks of any size and
//! split (inside a UTF-8 character, inside `\r\n`, inside a field name).
//!
//! It follows the WHATWG event-stream rules: `\n`, `\r\n` and `\r` end lines; a leading BOM
//! is ignored; `:` lines are comments; `data` fields of one event are joined with `\n`; a
//! blank line dispatches the event, and an event with no `data` is not dispatched; an
//! unterminated event at end of stream is never dispatched. Memory is bounded: one line of at
//! most [`SseConfig::max_line_bytes`] and one event of at most [`SseConfig::max_event_bytes`].
//!
//! In strip mode ([`SseConfig::strip_usage_chunk`]) it also produces the bytes the client
//! should receive: the input with the usage-only chunk's event removed. Complete events are
//! released as soon as their blank line arrives (comment-only lines at once); only the
//! incomplete trailing event is held back.

use super::sse_chunk::{summarize, ChunkSummary};
use super::usage::Usage;
use std::fmt;

/// Limits and mode of an [`SseParser`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseConfig {
    /// Longest line accepted, without its terminator.
    pub max_line_bytes: usize,
    /// Largest event accepted: its joined `data` and, in strip mode, its raw bytes.
    pub max_event_bytes: usize,
    /// Remove usage-only chunks from the output (the gateway injected `include_usage`).
    pub strip_usage_chunk: bool,
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            max_line_bytes: 256 * 1024,
            max_event_bytes: 1024 * 1024,
            strip_usage_chunk: false,
        }
    }
}

/// A stream the parser gives up on; it then passes the rest through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseError {
    /// A line longer than [`SseConfig::max_line_bytes`].
    LineTooLong {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// An event larger than [`SseConfig::max_event_bytes`].
    EventTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineTooLong { limit } => write!(f, "SSE line longer than {limit} bytes"),
            Self::EventTooLarge { limit } => write!(f, "SSE event larger than {limit} bytes"),
        }
    }
}

impl std::error::Error for SseError {}

/// One dispatched event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseEvent {
    /// `data: [DONE]`.
    Done,
    /// A JSON chunk; `stripped` when it was removed from the output.
    Chunk {
        /// What the chunk says.
        summary: ChunkSummary,
        /// Removed from the strip-mode output.
        stripped: bool,
    },
    /// Data that is not a JSON chunk of a known shape.
    Unparsed {
        /// Its length.
        bytes: usize,
    },
}

/// Running totals over the events dispatched so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Events dispatched.
    pub events: u64,
    /// JSON chunks among them.
    pub chunks: u64,
    /// Events whose data was not a JSON chunk.
    pub unparsed: u64,
    /// Choices carrying generated text, summed over chunks.
    pub content_deltas: u64,
    /// Decoded bytes of generated text.
    pub content_bytes: u64,
    /// The last usage seen.
    pub usage: Option<Usage>,
    /// `data: [DONE]` seen.
    pub done: bool,
    /// A `finish_reason` seen.
    pub finished: bool,
    /// Usage-only chunks removed from the output.
    pub stripped: u64,
}

impl StreamStats {
    /// Completion tokens to charge when the stream ended without usage: the larger of the
    /// delta count (vLLM sends about one token per delta) and `ceil(content_bytes / 4)`.
    pub fn estimated_completion_tokens(&self) -> u64 {
        self.content_deltas.max(self.content_bytes.div_ceil(4))
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The incremental parser; see the module docs.
#[derive(Debug)]
pub struct SseParser {
    config: SseConfig,
    /// The incomplete line carried over from earlier chunks.
    line: Vec<u8>,
    /// The last line ended with `\r`: a `\n` next completes that terminator.
    skip_lf: bool,
    /// That line dispatched a stripped event, so the `\n` completing it is stripped too.
    drop_lf: bool,
    first_line: bool,
    /// The current event's joined data, each line followed by `\n`.
    data: Vec<u8>,
    /// The current block has a field line, so its bytes must wait for the dispatch decision.
    block_has_fields: bool,
    /// Strip mode: raw bytes not yet released.
    held: Vec<u8>,
    stats: StreamStats,
    failed: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new(config: SseConfig) -> Self {
        Self {
            config,
            line: Vec::new(),
            skip_lf: false,
            drop_lf: false,
            first_line: true,
            data: Vec::new(),
            block_has_fields: false,
            held: Vec::new(),
            stats: StreamStats::default(),
            failed: false,
        }
    }

    /// Totals so far.
    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// Whether a limit was exceeded; the parser then only passes bytes through.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Feeds the next body chunk: dispatched events are appended to `events` and, in strip
    /// mode, the bytes to forward now to `out` (outside strip mode `out` is left alone: forward
    /// the chunk itself).
    ///
    /// On `Err` the parser has failed: `out` still holds every byte to forward (held ones
    /// included), and later calls pass their chunk through to `out` without parsing.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        out: &mut Vec<u8>,
        events: &mut Vec<SseEvent>,
    ) -> Result<(), SseError> {
        if self.failed {
            if self.config.strip_usage_chunk {
                out.extend_from_slice(chunk);
            }
            return Ok(());
        }
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.skip_lf {
                self.skip_lf = false;
                if let Some((b'\n', tail)) = rest.split_first() {
                    if !std::mem::take(&mut self.drop_lf) {
                        self.hold(b"\n");
                        if !self.block_has_fields {
                            self.release(out);
                        }
                    }
                    rest = tail;
                    continue;
                }
            }
            let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if let Err(e) = self.check_sizes(rest.len(), rest.len()) {
                    return Err(self.fail(e, out, rest));
                }
                self.line.extend_from_slice(rest);
                self.hold(rest);
                break;
            };
            let (with_term, after) = rest.split_at(pos + 1);
            let (content, term) = with_term.split_at(pos);
            if let Err(e) = self.check_sizes(pos, pos + 1) {
                return Err(self.fail(e, out, rest));
            }
            self.hold(with_term);
            self.skip_lf = term == b"\r";
            self.drop_lf = false;
            let result = if self.line.is_empty() {
                self.process_line(content, out, events)
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(content);
                let result = self.process_line(&line, out, events);
                line.clear();
                self.line = line;
                result
            };
            if let Err(e) = result {
                return Err(self.fail(e, out, after));
            }
            rest = after;
        }
        Ok(())
    }

    /// Ends the stream: releases held bytes (an unterminated event is forwarded, not
    /// dispatched) and resets the line state.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.release(out);
        self.line.clear();
        self.data.clear();
        self.block_has_fields = false;
        self.skip_lf = false;
    }

    /// Checks that `line_bytes` more bytes of the current line, `raw_bytes` with its
    /// terminator, fit the limits.
    fn check_sizes(&self, line_bytes: usize, raw_bytes: usize) -> Result<(), SseError> {
        let limit = self.config.max_line_bytes;
        if self.line.len().saturating_add(line_bytes) > limit {
            return Err(SseError::LineTooLong { limit });
        }
        let limit = self.config.max_event_bytes;
        if self.config.strip_usage_chunk && self.held.len().saturating_add(raw_bytes) > limit {
            return Err(SseError::EventTooLarge { limit });
        }
        Ok(())
    }

    fn hold(&mut self, bytes: &[u8]) {
        if self.config.strip_usage_chunk {
            self.held.extend_from_slice(bytes);
        }
    }

    fn release(&mut self, out: &mut Vec<u8>) {
        if self.config.strip_usage_chunk {
            out.extend_from_slice(&self.held);
            self.held.clear();
        }
    }

    /// Gives up: everything held and `unheld` goes to `out`, unparsed from now on.
    fn fail(&mut self, err: SseError, out: &mut Vec<u8>, unheld: &[u8]) -> SseError {
        self.failed = true;
        self.release(out);
        if self.config.strip_usage_chunk {
            out.extend_from_slice(unheld);
        }
        self.line = Vec::new();
        self.data = Vec::new();
        self.held = Vec::new();
        err
    }

    fn process_line(
        &mut self,
        line: &[u8],
        out: &mut Vec<u8>,
        events: &mut Vec<SseEvent>,
    ) -> Result<(), SseError> {
        let line = if std::mem::take(&mut self.first_line) {
            line.strip_prefix(BOM).unwrap_or(line)
        } else {
            line
        };
        if line.is_empty() {
            if self.dispatch(events) {
                self.held.clear();
                self.drop_lf = self.skip_lf;
            } else {
                self.release(out);
            }
            self.block_has_fields = false;
            return Ok(());
        }
        if line.first() == Some(&b':') {
            if !self.block_has_fields {
                self.release(out);
            }
            return Ok(());
        }
        self.block_has_fields = true;
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(p) => {
                let (field, value) = line.split_at(p);
                let value = value.get(1..).unwrap_or_default();
                (field, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        // `event`, `id` and `retry` do not matter for accounting or stripping.
        if field == b"data" {
            let limit = self.config.max_event_bytes;
            if self
                .data
                .len()
                .saturating_add(value.len())
                .saturating_add(1)
                > limit
            {
                return Err(SseError::EventTooLarge { limit });
            }
            self.data.extend_from_slice(value);
            self.data.push(b'\n');
        }
        Ok(())
    }

    /// Dispatches the current event, if it has data; returns whether to strip it.
    fn dispatch(&mut self, events: &mut Vec<SseEvent>) -> bool {
        if self.data.is_empty() {
            return false;
        }
        self.data.pop();
        self.stats.events = self.stats.events.saturating_add(1);
        let (event, strip) = if self.data.trim_ascii() == b"[DONE]" {
            self.stats.done = true;
            (SseEvent::Done, false)
        } else if let Some(summary) = summarize(&self.data) {
            let s = &mut self.stats;
            s.chunks = s.chunks.saturating_add(1);
            s.content_deltas = s
                .content_deltas
                .saturating_add(summary.content_deltas.into());
            s.content_bytes = s.content_bytes.saturating_add(summary.content_bytes);
            s.finished |= summary.finished;
            if summary.usage.is_some() {
                s.usage = summary.usage;
            }
            let stripped = self.config.strip_usage_chunk && summary.usage_only;
            if stripped {
                s.stripped = s.stripped.saturating_add(1);
            }
            (SseEvent::Chunk { summary, stripped }, stripped)
        } else {
            self.stats.unparsed = self.stats.unparsed.saturating_add(1);
            (
                SseEvent::Unparsed {
                    bytes: self.data.len(),
                },
                false,
            )
        };
        self.data.clear();
        events.push(event);
        strip
    }
}

#[cfg(test)]
mod tests;
