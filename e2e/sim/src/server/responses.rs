//! Response bodies in the shapes vLLM's OpenAI server produces for Chat Completions and
//! Completions: whole JSON answers and SSE `data:` chunks for streaming. (Responses API
//! answers are built by [`responses_api`](crate::server::responses_api).)

use crate::server::api::Endpoint;
use bytes::Bytes;
use serde_json::{json, Value};

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: u32,
}

impl Usage {
    fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "completion_tokens": self.completion_tokens,
            "prompt_tokens_details": { "cached_tokens": self.cached_tokens },
        })
    }
}

/// Identity of one response: id, creation time, model, endpoint.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    endpoint: Endpoint,
    id: String,
    created: u64,
    model: String,
    /// `data: {"id":...,"model":...,"choices":[{"index":0,` — the constant head of a chunk.
    head: String,
}

/// The SSE terminator.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

impl ResponseMeta {
    /// Metadata for request number `n` answered at unix time `created`.
    pub fn new(endpoint: Endpoint, n: u64, created: u64, model: &str) -> Self {
        let (id, object) = match endpoint {
            Endpoint::Chat => (format!("chatcmpl-sim{n:016x}"), "chat.completion.chunk"),
            Endpoint::Completions | Endpoint::Responses => {
                (format!("cmpl-sim{n:016x}"), "text_completion")
            }
        };
        let head = format!(
            "data: {{\"id\":{},\"object\":\"{object}\",\"created\":{created},\"model\":{},\"choices\":[",
            Value::from(id.as_str()),
            Value::from(model)
        );
        Self {
            endpoint,
            id,
            created,
            model: model.to_string(),
            head,
        }
    }

    /// The first chat chunk: the assistant role with empty content (completions have none).
    pub fn role_chunk(&self) -> Option<Bytes> {
        match self.endpoint {
            Endpoint::Chat => Some(Bytes::from(format!(
                "{}{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n",
                self.head
            ))),
            Endpoint::Completions | Endpoint::Responses => None,
        }
    }

    /// A chunk carrying `text`; `finish` set on the last one.
    pub fn token_chunk(&self, text: &str, finish: Option<&str>) -> Bytes {
        let text = Value::from(text);
        let finish = finish.map_or(Value::Null, Value::from);
        Bytes::from(match self.endpoint {
            Endpoint::Chat => format!(
                "{}{{\"index\":0,\"delta\":{{\"content\":{text}}},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n",
                self.head
            ),
            Endpoint::Completions | Endpoint::Responses => format!(
                "{}{{\"index\":0,\"text\":{text},\"logprobs\":null,\"finish_reason\":{finish},\"stop_reason\":null}}]}}\n\n",
                self.head
            ),
        })
    }

    /// The final usage chunk (`choices: []`), sent when `stream_options.include_usage` is set.
    pub fn usage_chunk(&self, usage: &Usage) -> Bytes {
        Bytes::from(format!("{}],\"usage\":{}}}\n\n", self.head, usage.json()))
    }

    /// The whole non-streaming answer.
    pub fn full(&self, text: &str, finish: &str, usage: &Usage) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "message": { "role": "assistant", "content": text, "tool_calls": [] },
                "logprobs": null,
                "finish_reason": finish,
                "stop_reason": null,
            }),
            Endpoint::Completions | Endpoint::Responses => json!({
                "index": 0,
                "text": text,
                "logprobs": null,
                "finish_reason": finish,
                "stop_reason": null,
            }),
        };
        json!({
            "id": self.id,
            "object": match self.endpoint {
                Endpoint::Chat => "chat.completion",
                Endpoint::Completions | Endpoint::Responses => "text_completion",
            },
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage.json(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunk(b: &Bytes) -> Value {
        let s = std::str::from_utf8(b).unwrap();
        let body = s
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn chunks_are_valid_json_in_openai_shape() {
        let m = ResponseMeta::new(Endpoint::Chat, 7, 1_700_000_000, "Qwen/\"x\"");
        let role = parse_chunk(&m.role_chunk().unwrap());
        assert_eq!(role["object"], "chat.completion.chunk");
        assert_eq!(role["model"], "Qwen/\"x\"");
        assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
        let tok = parse_chunk(&m.token_chunk(" hi\"", Some("length")));
        assert_eq!(tok["choices"][0]["delta"]["content"], " hi\"");
        assert_eq!(tok["choices"][0]["finish_reason"], "length");
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 3,
            cached_tokens: 8,
        };
        let u = parse_chunk(&m.usage_chunk(&usage));
        assert_eq!(u["choices"], json!([]));
        assert_eq!(u["usage"]["total_tokens"], 13);
        assert_eq!(u["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
        let c = ResponseMeta::new(Endpoint::Completions, 7, 1, "m");
        assert!(c.role_chunk().is_none());
        let t = parse_chunk(&c.token_chunk("a", None));
        assert_eq!(t["object"], "text_completion");
        assert_eq!(t["choices"][0]["text"], "a");
        assert!(t["choices"][0]["finish_reason"].is_null());
        assert_eq!(c.full("abc", "stop", &usage)["choices"][0]["text"], "abc");
    }
}
