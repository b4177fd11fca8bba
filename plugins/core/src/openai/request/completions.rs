//! `/v1/completions` request bodies: `prompt` as a string, an array of strings, an array of
//! token ids, or an array of token-id arrays (each item rendered in order).

use super::super::de::{opt_bool, opt_count, Expected, Obj, Text};
use super::super::error::BodyError;
use super::super::prompt::PromptBuilder;
use super::{Common, StreamOptions};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;

#[derive(Debug, Deserialize)]
#[serde(expecting = "a JSON object")]
pub(crate) struct CompletionsBody<'a> {
    #[serde(default, borrow)]
    model: Option<Text<'a>>,
    #[serde(default, borrow)]
    prompt: Option<Prompt<'a>>,
    #[serde(default, deserialize_with = "opt_count")]
    max_tokens: Option<u64>,
    #[serde(default, deserialize_with = "opt_count")]
    n: Option<u64>,
    #[serde(default, deserialize_with = "opt_bool")]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<Obj<StreamOptions>>,
    #[serde(default, borrow)]
    user: Option<Text<'a>>,
}

/// One rendered prompt item.
#[derive(Debug)]
enum Item<'a> {
    Text(Text<'a>),
    TokenIds(Vec<u64>),
}

/// `prompt`: a single item, or an array whose elements are strings, token ids (together one
/// token-id item) or token-id arrays.
#[derive(Debug)]
struct Prompt<'a>(Vec<Item<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Prompt<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PromptVisitor(PhantomData))
    }
}

struct PromptVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for PromptVisitor<'a> {
    type Value = Prompt<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, an array of strings, or an array of token ids")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Prompt(vec![Item::Text(Text(v.into()))]))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Prompt(vec![Item::Text(Text(v.to_owned().into()))]))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        let mut ids = Vec::new();
        while let Some(el) = seq.next_element::<Element<'a>>()? {
            match el {
                Element::Id(id) => ids.push(id),
                Element::Text(t) => items.push(Item::Text(t)),
                Element::Ids(v) => items.push(Item::TokenIds(v)),
            }
        }
        if !ids.is_empty() {
            items.push(Item::TokenIds(ids));
        }
        Ok(Prompt(items))
    }
}

enum Element<'a> {
    Text(Text<'a>),
    Id(u64),
    Ids(Vec<u64>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Element<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ElementVisitor(PhantomData))
    }
}

struct ElementVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ElementVisitor<'a> {
    type Value = Element<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, a token id, or an array of token ids")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Element::Text(Text(v.into())))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Element::Text(Text(v.to_owned().into())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Element::Id(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut ids = Vec::new();
        while let Some(id) = seq.next_element::<u64>()? {
            ids.push(id);
        }
        Ok(Element::Ids(ids))
    }
}

impl Expected for CompletionsBody<'_> {
    const EXPECTED: &'static str = "a JSON object";
}

impl<'a> CompletionsBody<'a> {
    pub fn into_common(self, mut b: PromptBuilder) -> Result<Common<'a>, BodyError> {
        let prompt = self
            .prompt
            .ok_or_else(|| BodyError::invalid("prompt", "is required"))?;
        for item in &prompt.0 {
            match item {
                Item::Text(t) => b.text(t.as_str()),
                Item::TokenIds(ids) => b.token_ids(ids),
            }
            b.end_message();
        }
        Ok(Common {
            model: self.model,
            prompt: b.finish(),
            max_tokens: self.max_tokens,
            max_completion_tokens: None,
            max_output_tokens: None,
            n: self.n,
            stream: self.stream,
            stream_options: self.stream_options,
            user: self.user,
            safety_identifier: None,
            prompt_cache_key: None,
        })
    }
}
