//! `/v1/chat/completions` request bodies.

use super::super::de::{opt_bool, opt_count, Expected, JsonDigest, Obj, Text};
use super::super::error::BodyError;
use super::super::prompt::PromptBuilder;
use super::content::Content;
use super::{Common, StreamOptions};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(expecting = "a JSON object")]
pub(crate) struct ChatBody<'a> {
    #[serde(default, borrow)]
    model: Option<Text<'a>>,
    #[serde(default, borrow)]
    messages: Option<Vec<Obj<Message<'a>>>>,
    #[serde(default)]
    tools: Option<JsonDigest>,
    #[serde(default, deserialize_with = "opt_count")]
    max_tokens: Option<u64>,
    #[serde(default, deserialize_with = "opt_count")]
    max_completion_tokens: Option<u64>,
    #[serde(default, deserialize_with = "opt_count")]
    n: Option<u64>,
    #[serde(default, deserialize_with = "opt_bool")]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<Obj<StreamOptions>>,
    #[serde(default, borrow)]
    user: Option<Text<'a>>,
    #[serde(default, borrow)]
    safety_identifier: Option<Text<'a>>,
    #[serde(default, borrow)]
    prompt_cache_key: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a message object")]
struct Message<'a> {
    #[serde(borrow)]
    role: Text<'a>,
    #[serde(default, borrow)]
    content: Option<Content<'a>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<Obj<ToolCall<'a>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a tool call object")]
struct ToolCall<'a> {
    #[serde(default, borrow)]
    function: Option<Obj<Function<'a>>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a function object")]
struct Function<'a> {
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    arguments: Option<Text<'a>>,
}

impl Expected for ChatBody<'_> {
    const EXPECTED: &'static str = "a JSON object";
}

impl Expected for Message<'_> {
    const EXPECTED: &'static str = "a message object";
}

impl Expected for ToolCall<'_> {
    const EXPECTED: &'static str = "a tool call object";
}

impl Expected for Function<'_> {
    const EXPECTED: &'static str = "a function object";
}

impl<'a> ChatBody<'a> {
    pub fn into_common(self, mut b: PromptBuilder) -> Result<Common<'a>, BodyError> {
        let messages = self
            .messages
            .ok_or_else(|| BodyError::invalid("messages", "is required"))?;
        if let Some(tools) = self.tools.filter(|t| !t.empty) {
            b.tools(tools.digest, &tools.tokens);
        }
        for (i, m) in messages.iter().enumerate() {
            b.begin_message(m.role.as_str());
            if let Some(content) = &m.content {
                content.render(&mut b, &|| format!("messages[{i}].content"))?;
            }
            for call in m.tool_calls.iter().flatten() {
                if let Some(f) = &call.function {
                    let name = f.name.as_ref().map_or("", Text::as_str);
                    let args = f.arguments.as_ref().map_or("", Text::as_str);
                    b.tool_call(name, args);
                }
            }
            b.end_message();
        }
        Ok(Common {
            model: self.model,
            prompt: b.finish(),
            max_tokens: self.max_tokens,
            max_completion_tokens: self.max_completion_tokens,
            max_output_tokens: None,
            n: self.n,
            stream: self.stream,
            stream_options: self.stream_options,
            user: self.user,
            safety_identifier: self.safety_identifier,
            prompt_cache_key: self.prompt_cache_key,
        })
    }
}
