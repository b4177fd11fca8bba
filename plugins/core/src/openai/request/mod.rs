//! Parsing an inference request body once: model, canonical prompt, token estimate, output
//! limits, streaming flags and session key.
//!
//! Each API has its own typed, borrowing serde model (`chat`, `completions`, `responses`)
//! that skips unknown fields and rejects duplicate known ones (so the gateway and the model
//! server cannot disagree about which `model` a body names). All of them reduce to one
//! [`ParsedRequest`].

mod chat;
mod completions;
mod content;
mod responses;

use super::api::ApiKind;
use super::de::{opt_bool, Expected, Obj, Text};
use super::error::{parse_json, BodyError};
use super::prompt::{CanonicalPrompt, PromptBuilder};
use serde::Deserialize;

/// What the gateway needs to know about an inference request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRequest {
    /// The API the body was parsed as.
    pub api: ApiKind,
    /// `model`: never empty.
    pub model: String,
    /// The prompt in canonical form, with its token estimate.
    pub prompt: CanonicalPrompt,
    /// `max_tokens` (Chat Completions, deprecated there; Completions).
    pub max_tokens: Option<u64>,
    /// `max_completion_tokens` (Chat Completions).
    pub max_completion_tokens: Option<u64>,
    /// `max_output_tokens` (Responses).
    pub max_output_tokens: Option<u64>,
    /// `n`: choices to generate (Chat Completions, Completions).
    pub n: Option<u64>,
    /// `stream`; `null` or absent is `false`.
    pub stream: bool,
    /// `stream_options.include_usage` as sent (`None` when absent or `null`).
    pub include_usage: Option<bool>,
    /// `user`.
    pub user: Option<String>,
    /// The key that groups a client's requests: `prompt_cache_key`, else `user`, else
    /// `safety_identifier`.
    pub session_key: Option<String>,
}

impl ParsedRequest {
    /// Estimated prompt tokens (see [`super::tokens`]).
    pub fn estimated_prompt_tokens(&self) -> u64 {
        self.prompt.estimated_tokens
    }

    /// The cap on generated tokens per choice the request sets, if any:
    /// `max_completion_tokens`, else `max_tokens`, else `max_output_tokens`.
    pub fn output_token_limit(&self) -> Option<u64> {
        self.max_completion_tokens
            .or(self.max_tokens)
            .or(self.max_output_tokens)
    }

    /// Whether a streamed response will carry usage only if the gateway asks for it.
    pub fn needs_usage_injection(&self) -> bool {
        self.stream && self.api.usage_needs_stream_options() && self.include_usage != Some(true)
    }
}

/// `stream_options`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a stream_options object")]
pub(crate) struct StreamOptions {
    #[serde(default, deserialize_with = "opt_bool")]
    include_usage: Option<bool>,
}

impl Expected for StreamOptions {
    const EXPECTED: &'static str = "a stream_options object";
}

/// What every API's body reduces to before validation.
struct Common<'a> {
    model: Option<Text<'a>>,
    prompt: CanonicalPrompt,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    n: Option<u64>,
    stream: Option<bool>,
    stream_options: Option<Obj<StreamOptions>>,
    user: Option<Text<'a>>,
    safety_identifier: Option<Text<'a>>,
    prompt_cache_key: Option<Text<'a>>,
}

/// Parses a request body for `api`.
///
/// Errors name the offending field: a missing or empty `model`, a missing `messages`
/// (chat) or `prompt` (completions), a field of the wrong type, malformed or truncated JSON.
pub fn parse_request(api: ApiKind, body: &[u8]) -> Result<ParsedRequest, BodyError> {
    parse_request_capped(api, body, usize::MAX)
}

/// [`parse_request`], keeping at most `max_prompt_bytes` of the canonical prompt (the token
/// estimate and [`CanonicalPrompt::len`] still cover all of it): a reader that only hashes a
/// bounded prefix neither copies nor holds the rest of a long prompt.
pub fn parse_request_capped(
    api: ApiKind,
    body: &[u8],
    max_prompt_bytes: usize,
) -> Result<ParsedRequest, BodyError> {
    let b = PromptBuilder::new(body.len(), max_prompt_bytes);
    let common = match api {
        ApiKind::ChatCompletions => parse_json::<Obj<chat::ChatBody<'_>>>(body)?
            .0
            .into_common(b)?,
        ApiKind::Completions => parse_json::<Obj<completions::CompletionsBody<'_>>>(body)?
            .0
            .into_common(b)?,
        ApiKind::Responses => parse_json::<Obj<responses::ResponsesBody<'_>>>(body)?
            .0
            .into_common(b)?,
    };
    let model = common
        .model
        .ok_or_else(|| BodyError::invalid("model", "is required"))?;
    if model.as_str().is_empty() {
        return Err(BodyError::invalid("model", "must not be empty"));
    }
    let owned = |t: &Option<Text<'_>>| t.as_ref().map(|t| t.as_str().to_owned());
    let user = owned(&common.user);
    let session_key = owned(&common.prompt_cache_key)
        .or_else(|| user.clone())
        .or_else(|| owned(&common.safety_identifier));
    Ok(ParsedRequest {
        api,
        model: model.as_str().to_owned(),
        prompt: common.prompt,
        max_tokens: common.max_tokens,
        max_completion_tokens: common.max_completion_tokens,
        max_output_tokens: common.max_output_tokens,
        n: common.n,
        stream: common.stream.unwrap_or(false),
        include_usage: common.stream_options.and_then(|o| o.include_usage),
        user,
        session_key,
    })
}

#[cfg(test)]
mod tests;
