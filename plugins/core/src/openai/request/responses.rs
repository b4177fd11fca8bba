//! `/v1/responses` request bodies: `instructions` (rendered first, as a `system` message) and
//! `input`, a string (one `user` message) or an array of items.

use super::super::de::{opt_bool, opt_count, Expected, JsonDigest, Obj, Text};
use super::super::error::BodyError;
use super::super::prompt::PromptBuilder;
use super::content::Content;
use super::Common;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;

#[derive(Debug, Deserialize)]
#[serde(expecting = "a JSON object")]
pub(crate) struct ResponsesBody<'a> {
    #[serde(default, borrow)]
    model: Option<Text<'a>>,
    #[serde(default, borrow)]
    instructions: Option<Text<'a>>,
    #[serde(default, borrow)]
    input: Option<Input<'a>>,
    #[serde(default)]
    tools: Option<JsonDigest>,
    #[serde(default, deserialize_with = "opt_count")]
    max_output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "opt_bool")]
    stream: Option<bool>,
    #[serde(default, borrow)]
    user: Option<Text<'a>>,
    #[serde(default, borrow)]
    safety_identifier: Option<Text<'a>>,
    #[serde(default, borrow)]
    prompt_cache_key: Option<Text<'a>>,
}

#[derive(Debug)]
enum Input<'a> {
    Text(Text<'a>),
    Items(Vec<Item<'a>>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Input<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(InputVisitor(PhantomData))
    }
}

struct InputVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for InputVisitor<'a> {
    type Value = Input<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or an array of input items")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Input::Text(Text(v.into())))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Input::Text(Text(v.to_owned().into())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Obj<Item<'a>>>()? {
            items.push(item.0);
        }
        Ok(Input::Items(items))
    }
}

/// An input item: a message (`type` absent or `message`), a `function_call`, a
/// `function_call_output`, or another item type rendered as an empty message of that role.
#[derive(Debug, Deserialize)]
#[serde(expecting = "an input item object")]
struct Item<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    role: Option<Text<'a>>,
    #[serde(default, borrow)]
    content: Option<Content<'a>>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    arguments: Option<Text<'a>>,
    #[serde(default, borrow)]
    output: Option<Content<'a>>,
}

impl Expected for ResponsesBody<'_> {
    const EXPECTED: &'static str = "a JSON object";
}

impl Expected for Item<'_> {
    const EXPECTED: &'static str = "an input item object";
}

impl<'a> ResponsesBody<'a> {
    pub fn into_common(self, mut b: PromptBuilder) -> Result<Common<'a>, BodyError> {
        if let Some(tools) = self.tools.filter(|t| !t.empty) {
            b.tools(tools.digest, &tools.tokens);
        }
        if let Some(instructions) = &self.instructions {
            b.begin_message("system");
            b.text(instructions.as_str());
            b.end_message();
        }
        match &self.input {
            None => {}
            Some(Input::Text(t)) => {
                b.begin_message("user");
                b.text(t.as_str());
                b.end_message();
            }
            Some(Input::Items(items)) => {
                for (i, item) in items.iter().enumerate() {
                    render_item(&mut b, item, i)?;
                }
            }
        }
        Ok(Common {
            model: self.model,
            prompt: b.finish(),
            max_tokens: None,
            max_completion_tokens: None,
            max_output_tokens: self.max_output_tokens,
            n: None,
            stream: self.stream,
            stream_options: None,
            user: self.user,
            safety_identifier: self.safety_identifier,
            prompt_cache_key: self.prompt_cache_key,
        })
    }
}

fn render_item(b: &mut PromptBuilder, item: &Item<'_>, i: usize) -> Result<(), BodyError> {
    match item.kind.as_ref().map_or("message", Text::as_str) {
        "message" => {
            let role = item
                .role
                .as_ref()
                .ok_or_else(|| BodyError::invalid(format!("input[{i}].role"), "is required"))?;
            b.begin_message(role.as_str());
            if let Some(content) = &item.content {
                content.render(b, &|| format!("input[{i}].content"))?;
            }
        }
        "function_call" => {
            b.begin_message("assistant");
            let name = item.name.as_ref().map_or("", Text::as_str);
            let args = item.arguments.as_ref().map_or("", Text::as_str);
            b.tool_call(name, args);
        }
        "function_call_output" => {
            b.begin_message("tool");
            if let Some(output) = &item.output {
                output.render(b, &|| format!("input[{i}].output"))?;
            }
        }
        other => b.begin_message(other),
    }
    b.end_message();
    Ok(())
}
