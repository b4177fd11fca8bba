//! Parsing and validating OpenAI `chat/completions` and `completions` bodies into what the
//! engine needs: the prompt as token ids and the output length.

use crate::server::error::ApiError;
use crate::tokenizer::tokenize;
use serde_json::{Map, Value};

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions`.
    Completions,
}

/// A validated generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// Endpoint.
    pub endpoint: Endpoint,
    /// Model asked for.
    pub model: String,
    /// Prompt token ids (chat messages rendered through the chat template first).
    pub prompt_tokens: Vec<u32>,
    /// `max_completion_tokens` / `max_tokens`, if given.
    pub max_tokens: Option<u32>,
    /// Whether to stream SSE.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
}

fn bad(msg: impl Into<String>, param: &'static str) -> ApiError {
    ApiError::bad_request(msg, Some(param))
}

/// Renders chat messages with a ChatML template (Qwen's), ending with the assistant header.
fn render_chat(messages: &[Value]) -> Result<String, ApiError> {
    if messages.is_empty() {
        return Err(bad(
            "messages must contain at least one message",
            "messages",
        ));
    }
    let mut out = String::new();
    for (i, m) in messages.iter().enumerate() {
        let m = m
            .as_object()
            .ok_or_else(|| bad(format!("messages[{i}] must be an object"), "messages"))?;
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("messages[{i}].role must be a string"), "messages"))?;
        let content = match m.get("content") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                        (Some("text"), Some(t)) => text.push_str(t),
                        _ => {
                            return Err(bad(
                                format!("messages[{i}].content parts must be {{\"type\": \"text\", \"text\": ...}}"),
                                "messages",
                            ))
                        }
                    }
                }
                text
            }
            Some(_) => {
                return Err(bad(
                    format!("messages[{i}].content must be a string or an array of text parts"),
                    "messages",
                ))
            }
        };
        out.push_str("<|im_start|>");
        out.push_str(role);
        out.push('\n');
        out.push_str(&content);
        out.push_str("<|im_end|>\n");
    }
    out.push_str("<|im_start|>assistant\n");
    Ok(out)
}

fn completion_prompt(prompt: Option<&Value>) -> Result<Vec<u32>, ApiError> {
    match prompt {
        Some(Value::String(s)) => Ok(tokenize(s)),
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
            Ok(tokenize(items[0].as_str().unwrap_or_default()))
        }
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_u64) => items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or_else(|| bad("token ids must fit in 32 bits", "prompt"))
            })
            .collect(),
        Some(Value::Array(_)) => Err(bad(
            "prompt must be a string, a list with one string, or a list of token ids (batched prompts are not supported by the simulator)",
            "prompt",
        )),
        Some(_) => Err(bad("prompt must be a string or a list of token ids", "prompt")),
        None => Err(bad("prompt is required", "prompt")),
    }
}

fn opt_positive(obj: &Map<String, Value>, key: &'static str) -> Result<Option<u32>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
            _ => Err(bad(format!("{key} must be at least 1, got {v}."), key)),
        },
    }
}

fn opt_bool(obj: &Map<String, Value>, key: &'static str) -> Result<bool, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(bad(format!("{key} must be a boolean, got {v}"), key)),
    }
}

/// Parses a request body for `endpoint`.
pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<GenerationRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}"), None))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object", None))?;
    let model = match obj.get("model") {
        Some(Value::String(m)) => m.clone(),
        None | Some(Value::Null) => String::new(),
        Some(_) => return Err(bad("model must be a string", "model")),
    };
    let prompt_tokens = match endpoint {
        Endpoint::Chat => match obj.get("messages") {
            Some(Value::Array(msgs)) => tokenize(&render_chat(msgs)?),
            Some(_) => return Err(bad("messages must be an array", "messages")),
            None => return Err(bad("messages is required", "messages")),
        },
        Endpoint::Completions => completion_prompt(obj.get("prompt"))?,
    };
    if prompt_tokens.is_empty() {
        return Err(bad("the prompt must not be empty", "prompt"));
    }
    let max_tokens = match endpoint {
        Endpoint::Chat => match opt_positive(obj, "max_completion_tokens")? {
            Some(n) => Some(n),
            None => opt_positive(obj, "max_tokens")?,
        },
        Endpoint::Completions => opt_positive(obj, "max_tokens")?,
    };
    if let Some(n) = obj.get("n").and_then(Value::as_u64) {
        if n != 1 {
            return Err(bad("the simulator supports only n = 1", "n"));
        }
    }
    let stream = opt_bool(obj, "stream")?;
    let include_usage = match obj.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => {
            if !stream {
                return Err(bad(
                    "Stream options can only be defined when `stream=True`.",
                    "stream_options",
                ));
            }
            opt_bool(o, "include_usage")?
        }
        Some(_) => return Err(bad("stream_options must be an object", "stream_options")),
    };
    Ok(GenerationRequest {
        endpoint,
        model,
        prompt_tokens,
        max_tokens,
        stream,
        include_usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_request_is_templated_and_tokenized() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"Hello there"}],
            "max_completion_tokens":5,"max_tokens":99,"stream":true,"stream_options":{"include_usage":true}}"#;
        let r = parse(Endpoint::Chat, body).unwrap();
        assert_eq!(r.model, "m");
        assert_eq!(r.max_tokens, Some(5));
        assert!(r.stream && r.include_usage);
        assert_eq!(
            r.prompt_tokens,
            tokenize("<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n")
        );
        // Text parts are concatenated like a plain string.
        let parts =
            br#"{"messages":[{"role":"user","content":[{"type":"text","text":"Hello there"}]}]}"#;
        assert_eq!(
            parse(Endpoint::Chat, parts).unwrap().prompt_tokens,
            r.prompt_tokens
        );
    }

    #[test]
    fn completion_prompts_accept_text_and_token_ids() {
        let r = parse(
            Endpoint::Completions,
            br#"{"model":"m","prompt":"abc def","max_tokens":3}"#,
        )
        .unwrap();
        assert_eq!(r.prompt_tokens, tokenize("abc def"));
        let r = parse(Endpoint::Completions, br#"{"prompt":[1,2,3]}"#).unwrap();
        assert_eq!(r.prompt_tokens, vec![1, 2, 3]);
        assert_eq!(r.max_tokens, None);
    }

    #[test]
    fn bad_requests_name_the_field() {
        let cases: [(&[u8], Option<&str>); 8] = [
            (b"{not json", None),
            (b"[1]", None),
            (br#"{"messages":[]}"#, Some("messages")),
            (br#"{"messages":[{"content":"x"}]}"#, Some("messages")),
            (br#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#, Some("max_tokens")),
            (br#"{"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"#, Some("stream_options")),
            (br#"{"messages":[{"role":"user","content":"x"}],"stream":"yes"}"#, Some("stream")),
            (br#"{"messages":[{"role":"user","content":"x"}],"n":2}"#, Some("n")),
        ];
        for (body, param) in cases {
            let e = parse(Endpoint::Chat, body).unwrap_err();
            assert_eq!(e.status, 400, "{}", String::from_utf8_lossy(body));
            assert_eq!(e.param, param, "{}", String::from_utf8_lossy(body));
        }
        let e = parse(Endpoint::Completions, br#"{"prompt":""}"#).unwrap_err();
        assert_eq!(e.param, Some("prompt"));
        let e = parse(Endpoint::Completions, br#"{"prompt":["a","b"]}"#).unwrap_err();
        assert_eq!(e.param, Some("prompt"));
        let body: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(body["error"]["code"], 400);
        assert_eq!(body["error"]["type"], "BadRequestError");
    }
}
