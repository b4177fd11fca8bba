//! `POST /v1/responses` answers in the Responses API shapes vLLM serves: a whole `response`
//! object, or a stream of typed SSE events (`event: <type>` + `data: <json>`) ending with
//! `response.completed`, whose `response.usage` carries the token counts (the stream has no
//! `[DONE]`). A reply cut by `max_output_tokens` has `status: "incomplete"` and
//! `incomplete_details.reason: "max_output_tokens"`.

use crate::server::responses::Usage;
use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

/// Identity of one Responses answer and the numbering of its stream events.
#[derive(Debug, Clone)]
pub struct ResponsesMeta {
    id: String,
    item_id: String,
    created_at: u64,
    model: String,
    max_output_tokens: Option<u32>,
    seq: u64,
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": { "cached_tokens": u.cached_tokens },
        "output_tokens": u.completion_tokens,
        "output_tokens_details": { "reasoning_tokens": 0 },
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

fn text_part(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": [] })
}

impl ResponsesMeta {
    /// Metadata for request number `n` answered at unix time `created_at`.
    pub fn new(n: u64, created_at: u64, model: &str, max_output_tokens: Option<u32>) -> Self {
        Self {
            id: format!("resp_sim{n:016x}"),
            item_id: format!("msg_sim{n:016x}"),
            created_at,
            model: model.to_string(),
            max_output_tokens,
            seq: 0,
        }
    }

    fn message(&self, status: &str, content: Vec<Value>) -> Value {
        json!({
            "id": self.item_id,
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": content,
        })
    }

    /// The `response` object; `text` and `usage` are `None` while in progress.
    fn response(&self, done: Option<(&str, &str, &Usage)>) -> Value {
        let (status, incomplete, output, usage) = match done {
            None => ("in_progress", Value::Null, json!([]), Value::Null),
            Some((text, finish, usage)) => {
                let length = finish == "length";
                (
                    if length { "incomplete" } else { "completed" },
                    if length {
                        json!({ "reason": "max_output_tokens" })
                    } else {
                        Value::Null
                    },
                    json!([self.message("completed", vec![text_part(text)])]),
                    usage_json(usage),
                )
            }
        };
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "model": self.model,
            "status": status,
            "incomplete_details": incomplete,
            "error": null,
            "instructions": null,
            "max_output_tokens": self.max_output_tokens,
            "output": output,
            "parallel_tool_calls": true,
            "tool_choice": "auto",
            "tools": [],
            "text": { "format": { "type": "text" } },
            "usage": usage,
        })
    }

    /// The whole non-streaming answer.
    pub fn full(&self, text: &str, finish: &str, usage: &Usage) -> Value {
        self.response(Some((text, finish, usage)))
    }

    fn event(&mut self, buf: &mut BytesMut, kind: &str, mut body: Value) {
        if let Some(o) = body.as_object_mut() {
            o.insert("type".into(), kind.into());
            o.insert("sequence_number".into(), self.seq.into());
        }
        self.seq += 1;
        buf.extend_from_slice(b"event: ");
        buf.extend_from_slice(kind.as_bytes());
        buf.extend_from_slice(b"\ndata: ");
        buf.extend_from_slice(body.to_string().as_bytes());
        buf.extend_from_slice(b"\n\n");
    }

    /// The opening events: `response.created`, `response.in_progress`,
    /// `response.output_item.added`, `response.content_part.added`.
    pub fn opening(&mut self) -> Bytes {
        let mut buf = BytesMut::new();
        let r = self.response(None);
        self.event(&mut buf, "response.created", json!({ "response": r }));
        self.event(&mut buf, "response.in_progress", json!({ "response": r }));
        let item = self.message("in_progress", vec![]);
        self.event(
            &mut buf,
            "response.output_item.added",
            json!({ "output_index": 0, "item": item }),
        );
        let part = text_part("");
        let id = self.item_id.clone();
        self.event(
            &mut buf,
            "response.content_part.added",
            json!({ "item_id": id, "output_index": 0, "content_index": 0, "part": part }),
        );
        buf.freeze()
    }

    /// One `response.output_text.delta`.
    pub fn delta(&mut self, text: &str) -> Bytes {
        let mut buf = BytesMut::new();
        let id = self.item_id.clone();
        self.event(
            &mut buf,
            "response.output_text.delta",
            json!({ "item_id": id, "output_index": 0, "content_index": 0, "delta": text, "logprobs": [] }),
        );
        buf.freeze()
    }

    /// The closing events, ending with `response.completed` carrying `usage`.
    pub fn closing(&mut self, text: &str, finish: &str, usage: &Usage) -> Bytes {
        let mut buf = BytesMut::new();
        let id = self.item_id.clone();
        self.event(
            &mut buf,
            "response.output_text.done",
            json!({ "item_id": id, "output_index": 0, "content_index": 0, "text": text, "logprobs": [] }),
        );
        self.event(
            &mut buf,
            "response.content_part.done",
            json!({ "item_id": id, "output_index": 0, "content_index": 0, "part": text_part(text) }),
        );
        let item = self.message("completed", vec![text_part(text)]);
        self.event(
            &mut buf,
            "response.output_item.done",
            json!({ "output_index": 0, "item": item }),
        );
        let r = self.full(text, finish, usage);
        self.event(&mut buf, "response.completed", json!({ "response": r }));
        buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(b: &[u8]) -> Vec<(String, Value)> {
        let s = std::str::from_utf8(b).unwrap();
        s.split_terminator("\n\n")
            .map(|e| {
                let (ev, data) = e.split_once('\n').unwrap();
                let kind = ev.strip_prefix("event: ").unwrap().to_string();
                let v: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(v["type"], kind.as_str());
                (kind, v)
            })
            .collect()
    }

    #[test]
    fn stream_events_are_typed_numbered_and_end_with_usage() {
        let mut m = ResponsesMeta::new(3, 1_700_000_000, "m\"x", Some(2));
        let mut all = Vec::new();
        all.extend(events(&m.opening()));
        all.extend(events(&m.delta(" hi")));
        all.extend(events(&m.delta(" you")));
        let usage = Usage {
            prompt_tokens: 5,
            completion_tokens: 2,
            cached_tokens: 1,
        };
        all.extend(events(&m.closing(" hi you", "length", &usage)));
        let kinds: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (_, v)) in all.iter().enumerate() {
            assert_eq!(v["sequence_number"], i as u64);
        }
        let done = &all.last().unwrap().1["response"];
        assert_eq!(done["model"], "m\"x");
        assert_eq!(done["status"], "incomplete");
        assert_eq!(done["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(done["usage"]["input_tokens"], 5);
        assert_eq!(done["usage"]["output_tokens"], 2);
        assert_eq!(done["usage"]["total_tokens"], 7);
        assert_eq!(done["usage"]["input_tokens_details"]["cached_tokens"], 1);
        assert_eq!(done["output"][0]["content"][0]["text"], " hi you");
        assert_eq!(all[0].1["response"]["status"], "in_progress");
        assert!(all[0].1["response"]["usage"].is_null());
    }

    #[test]
    fn whole_answer_is_a_completed_response() {
        let m = ResponsesMeta::new(1, 1, "m", None);
        let usage = Usage {
            prompt_tokens: 1,
            completion_tokens: 1,
            cached_tokens: 0,
        };
        let r = m.full("x", "stop", &usage);
        assert_eq!(r["object"], "response");
        assert_eq!(r["status"], "completed");
        assert!(r["incomplete_details"].is_null());
        assert_eq!(r["output"][0]["type"], "message");
        assert_eq!(r["output"][0]["role"], "assistant");
        assert_eq!(r["output"][0]["content"][0]["type"], "output_text");
    }
}
