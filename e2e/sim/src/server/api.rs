//! Parsing and validating OpenAI `chat/completions`, `completions` and `responses` bodies into
//! what the engine needs: the prompt as token ids and the output length, checked against the
//! context window the way vLLM checks it (so an absurd `max_tokens` is a 400, never work).

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
    /// `POST /v1/responses`.
    Responses,
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
    /// `max_completion_tokens` / `max_tokens` (Responses: `max_output_tokens`), if given, as
    /// sent: checked against the context window by [`GenerationRequest::output_limit`].
    pub max_tokens: Option<u64>,
    /// Whether to stream SSE.
    pub stream: bool,
    /// `stream_options.include_usage` (always true for Responses, whose last event has usage).
    pub include_usage: bool,
}

impl GenerationRequest {
    /// The output length to plan for within `max_model_len`: `Some(max_tokens)` when it fits,
    /// `None` when unset (the model stops by itself, at the latest at the end of the window).
    ///
    /// # Errors
    /// vLLM's 400s: a prompt that fills the window, or `max_tokens` larger than what is left.
    pub fn output_limit(&self, max_model_len: usize) -> Result<Option<u32>, ApiError> {
        let input = self.prompt_tokens.len();
        if input >= max_model_len {
            let (msg, param) = match self.endpoint {
                Endpoint::Responses => (
                    format!(
                        "The engine prompt length {input} exceeds the max_model_len {max_model_len}. Please reduce prompt."
                    ),
                    "input",
                ),
                Endpoint::Chat | Endpoint::Completions => (
                    format!(
                        "This model's maximum context length is {max_model_len} tokens. However, your request has {input} input tokens. Please reduce the length of the input messages."
                    ),
                    if self.endpoint == Endpoint::Chat { "messages" } else { "prompt" },
                ),
            };
            return Err(bad(msg, param));
        }
        let room = (max_model_len - input) as u64;
        match self.max_tokens {
            None => Ok(None),
            Some(m) if m <= room => Ok(Some(u32::try_from(m).unwrap_or(u32::MAX))),
            Some(m) => Err(bad(
                format!(
                    "'max_tokens' or 'max_completion_tokens' is too large: {m}. This model's maximum context length is {max_model_len} tokens and your request has {input} input tokens ({m} > {max_model_len} - {input})."
                ),
                match self.endpoint {
                    Endpoint::Responses => "max_output_tokens",
                    Endpoint::Chat | Endpoint::Completions => "max_tokens",
                },
            )),
        }
    }
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
        let content = content_text(m.get("content"), &format!("messages[{i}]"), "messages")?;
        push_turn(&mut out, role, &content);
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

fn opt_positive(obj: &Map<String, Value>, key: &'static str) -> Result<Option<u64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err(bad(format!("{key} must be at least 1, got {v}."), key)),
        },
    }
}

/// The text of a message `content`: a string, or an array of text parts (`text`, and the
/// Responses API's `input_text` / `output_text`).
fn content_text(
    content: Option<&Value>,
    at: &str,
    param: &'static str,
) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for p in parts {
                match (
                    p.get("type").and_then(Value::as_str),
                    p.get("text").and_then(Value::as_str),
                ) {
                    (Some("text" | "input_text" | "output_text"), Some(t)) => text.push_str(t),
                    _ => {
                        return Err(bad(
                            format!(
                                "{at}.content parts must be {{\"type\": \"text\", \"text\": ...}}"
                            ),
                            param,
                        ))
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(bad(
            format!("{at}.content must be a string or an array of text parts"),
            param,
        )),
    }
}

/// Appends one ChatML turn.
fn push_turn(out: &mut String, role: &str, content: &str) {
    out.push_str("<|im_start|>");
    out.push_str(role);
    out.push('\n');
    out.push_str(content);
    out.push_str("<|im_end|>\n");
}

/// Renders a Responses request: `instructions` as a system turn, then `input` (a string is
/// one user turn; an array holds message items, `function_call` and `function_call_output`).
fn render_responses(obj: &Map<String, Value>) -> Result<String, ApiError> {
    let mut out = String::new();
    match obj.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => push_turn(&mut out, "system", s),
        Some(_) => return Err(bad("instructions must be a string", "instructions")),
    }
    match obj.get("input") {
        Some(Value::String(s)) => push_turn(&mut out, "user", s),
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("input[{i}]");
                let item = item
                    .as_object()
                    .ok_or_else(|| bad(format!("{at} must be an object"), "input"))?;
                let text_field = |key: &str| -> Result<String, ApiError> {
                    item.get(key)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| bad(format!("{at}.{key} must be a string"), "input"))
                };
                match item.get("type").and_then(Value::as_str) {
                    None | Some("message") => {
                        let role = text_field("role")?;
                        let content = content_text(item.get("content"), &at, "input")?;
                        push_turn(&mut out, &role, &content);
                    }
                    Some("function_call") => {
                        push_turn(&mut out, "assistant", &text_field("arguments")?)
                    }
                    Some("function_call_output") => {
                        push_turn(&mut out, "tool", &text_field("output")?)
                    }
                    Some(other) => {
                        return Err(bad(
                            format!("{at}.type {other:?} is not supported by the simulator"),
                            "input",
                        ))
                    }
                }
            }
        }
        Some(Value::Array(_)) => return Err(bad("input must not be empty", "input")),
        Some(_) => return Err(bad("input must be a string or an array of items", "input")),
        None => return Err(bad("input is required", "input")),
    }
    out.push_str("<|im_start|>assistant\n");
    Ok(out)
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
        Endpoint::Responses => tokenize(&render_responses(obj)?),
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
        Endpoint::Responses => opt_positive(obj, "max_output_tokens")?,
    };
    if let Some(n) = obj.get("n").and_then(Value::as_u64) {
        if n != 1 {
            return Err(bad("the simulator supports only n = 1", "n"));
        }
    }
    let stream = opt_bool(obj, "stream")?;
    let include_usage = match obj.get("stream_options") {
        _ if endpoint == Endpoint::Responses => true,
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
