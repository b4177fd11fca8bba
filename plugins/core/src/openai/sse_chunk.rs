//! What one streamed JSON chunk says: its usage, whether it is the usage-only chunk, and how
//! much generated text it carries (for charging a stream cut before its usage arrives).
//!
//! Understands Chat Completions chunks (`choices[].delta.content`, `reasoning_content`,
//! `reasoning`, `refusal`, `tool_calls[].function.arguments`), Completions chunks
//! (`choices[].text`) and Responses events (`delta` text, `response.usage` in
//! `response.completed`). Shapes it does not know are measured as carrying nothing.

use super::de::TextLen;
use super::usage::{Usage, UsageWire};
use serde::Deserialize;

/// The facts of one JSON data payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkSummary {
    /// Its usage, when it carries a well-formed non-null `usage` (or `response.usage`).
    pub usage: Option<Usage>,
    /// `"choices": []` with a `usage` object: the chunk `include_usage` adds at the end.
    pub usage_only: bool,
    /// Choices (or Responses `delta` events) carrying non-empty generated text.
    pub content_deltas: u32,
    /// Decoded UTF-8 bytes of that text.
    pub content_bytes: u64,
    /// A choice with a non-null `finish_reason`.
    pub finished: bool,
}

#[derive(Deserialize)]
struct ChunkWire {
    #[serde(default)]
    choices: Option<Vec<ChoiceWire>>,
    #[serde(default)]
    usage: Option<UsageWire>,
    #[serde(default)]
    delta: TextLen,
    #[serde(default)]
    response: Option<ResponseWire>,
}

#[derive(Deserialize)]
struct ResponseWire {
    #[serde(default)]
    usage: Option<UsageWire>,
}

#[derive(Deserialize)]
struct ChoiceWire {
    #[serde(default)]
    delta: Option<DeltaWire>,
    #[serde(default)]
    text: TextLen,
    #[serde(default)]
    finish_reason: TextLen,
}

#[derive(Deserialize)]
struct DeltaWire {
    #[serde(default)]
    content: TextLen,
    #[serde(default)]
    reasoning_content: TextLen,
    #[serde(default)]
    reasoning: TextLen,
    #[serde(default)]
    refusal: TextLen,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDeltaWire>>,
}

#[derive(Deserialize)]
struct ToolCallDeltaWire {
    #[serde(default)]
    function: Option<FunctionDeltaWire>,
}

#[derive(Deserialize)]
struct FunctionDeltaWire {
    #[serde(default)]
    name: TextLen,
    #[serde(default)]
    arguments: TextLen,
}

impl DeltaWire {
    fn text_bytes(&self) -> usize {
        let calls: usize = self
            .tool_calls
            .iter()
            .flatten()
            .filter_map(|c| c.function.as_ref())
            .map(|f| f.name.bytes().saturating_add(f.arguments.bytes()))
            .fold(0, usize::saturating_add);
        [
            self.content,
            self.reasoning_content,
            self.reasoning,
            self.refusal,
        ]
        .iter()
        .map(|t| t.bytes())
        .fold(calls, usize::saturating_add)
    }
}

/// Summarizes a data payload; `None` when it is not a JSON object of a known chunk shape.
pub(crate) fn summarize(data: &[u8]) -> Option<ChunkSummary> {
    let wire: ChunkWire = serde_json::from_slice(data).ok()?;
    let mut s = ChunkSummary::default();
    let usage = wire.usage.or(wire.response.and_then(|r| r.usage));
    s.usage = usage.and_then(|u| u.into_usage("usage").ok());
    s.usage_only = s.usage.is_some() && wire.choices.as_ref().is_some_and(Vec::is_empty);
    let mut add = |bytes: usize| {
        if bytes > 0 {
            s.content_deltas = s.content_deltas.saturating_add(1);
            s.content_bytes = s.content_bytes.saturating_add(bytes as u64);
        }
    };
    for choice in wire.choices.iter().flatten() {
        let delta = choice.delta.as_ref().map_or(0, DeltaWire::text_bytes);
        add(delta.saturating_add(choice.text.bytes()));
        if choice.finish_reason.0.is_some() {
            s.finished = true;
        }
    }
    add(wire.delta.bytes());
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_only_chunk() {
        let s = summarize(br#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":7,"total_tokens":10,"completion_tokens":3}}"#).unwrap();
        assert!(s.usage_only);
        assert_eq!(s.usage.unwrap().completion_tokens, 3);
        assert_eq!(s.content_deltas, 0);
    }

    #[test]
    fn content_chunks_are_measured_and_null_usage_is_none() {
        let s = summarize(
            br#"{"choices":[{"index":0,"delta":{"content":"caf\u00e9"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        )
        .unwrap();
        assert_eq!(
            (s.content_deltas, s.content_bytes, s.usage, s.usage_only),
            (1, 5, None, false)
        );
        let s = summarize(br#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#).unwrap();
        assert_eq!(s.content_deltas, 0);
        let s = summarize(br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\""}}]}},{"text":"xy","finish_reason":"length"}]}"#).unwrap();
        assert_eq!(
            (s.content_deltas, s.content_bytes, s.finished),
            (2, 6, true)
        );
    }

    #[test]
    fn usage_alongside_choices_is_not_usage_only() {
        let s = summarize(br#"{"choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#).unwrap();
        assert!(!s.usage_only);
        assert_eq!(s.usage.unwrap().total_tokens, 2);
    }

    #[test]
    fn responses_events() {
        let s = summarize(br#"{"type":"response.output_text.delta","item_id":"i","output_index":0,"content_index":0,"delta":"Hello"}"#).unwrap();
        assert_eq!((s.content_deltas, s.content_bytes), (1, 5));
        let s = summarize(br#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":4,"output_tokens":2,"total_tokens":6}}}"#).unwrap();
        assert_eq!(s.usage.unwrap().prompt_tokens, 4);
        assert!(!s.usage_only);
    }

    #[test]
    fn garbage_is_none() {
        for bad in [
            &b"not json"[..],
            b"[1]",
            b"{\"choices\":5}",
            b"{\"choices\":[",
            b"",
        ] {
            assert_eq!(summarize(bad), None);
        }
        // A malformed usage object does not make the chunk unreadable, it just has no usage.
        let s = summarize(br#"{"choices":[],"usage":{"completion_tokens":1}}"#).unwrap();
        assert_eq!((s.usage, s.usage_only), (None, false));
    }
}
