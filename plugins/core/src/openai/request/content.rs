//! Message content shared by Chat Completions and Responses: a string, or an array of typed
//! parts, rendered into the canonical prompt.

use super::super::de::{Expected, MediaDigest, Obj, Text};
use super::super::error::BodyError;
use super::super::prompt::PromptBuilder;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;
use xxhash_rust::xxh64::xxh64;

/// `content`: a string or an array of content parts.
#[derive(Debug)]
pub(crate) enum Content<'a> {
    Text(Text<'a>),
    Parts(Vec<Part<'a>>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ContentVisitor(PhantomData))
    }
}

struct ContentVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ContentVisitor<'a> {
    type Value = Content<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or an array of content parts")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Content::Text(Text(v.into())))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Content::Text(Text(v.to_owned().into())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Content::Text(Text(v.into())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut parts = Vec::new();
        while let Some(part) = seq.next_element::<Obj<Part<'a>>>()? {
            parts.push(part.0);
        }
        Ok(Content::Parts(parts))
    }
}

/// One content part. Text lives in `text` (or `refusal`); everything else is media, known by
/// the field named like its type, whose payload is only digested.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a content part object")]
pub(crate) struct Part<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default, borrow)]
    refusal: Option<Text<'a>>,
    #[serde(default)]
    image_url: Option<MediaDigest>,
    #[serde(default)]
    input_audio: Option<MediaDigest>,
    #[serde(default)]
    audio_url: Option<MediaDigest>,
    #[serde(default)]
    video_url: Option<MediaDigest>,
    #[serde(default)]
    image_embeds: Option<MediaDigest>,
    #[serde(default)]
    file: Option<MediaDigest>,
    #[serde(default)]
    file_id: Option<MediaDigest>,
    #[serde(default)]
    file_data: Option<MediaDigest>,
    #[serde(default)]
    file_url: Option<MediaDigest>,
}

impl Expected for Part<'_> {
    const EXPECTED: &'static str = "a content part object";
}

/// Part types whose `text` field is prompt text.
const TEXT_TYPES: [&str; 5] = [
    "text",
    "input_text",
    "output_text",
    "reasoning_text",
    "summary_text",
];

impl Part<'_> {
    fn media_fields(&self) -> [(&'static str, Option<MediaDigest>); 9] {
        [
            ("image_url", self.image_url),
            ("input_audio", self.input_audio),
            ("audio_url", self.audio_url),
            ("video_url", self.video_url),
            ("image_embeds", self.image_embeds),
            ("file", self.file),
            ("file_id", self.file_id),
            ("file_data", self.file_data),
            ("file_url", self.file_url),
        ]
    }

    /// The part's type, or the one its fields imply when `type` is omitted.
    fn kind(&self) -> Option<&str> {
        if let Some(kind) = &self.kind {
            return Some(kind.as_str());
        }
        if self.text.is_some() {
            return Some("text");
        }
        if self.refusal.is_some() {
            return Some("refusal");
        }
        self.media_fields()
            .into_iter()
            .find(|(_, d)| d.is_some())
            .map(|(name, _)| name)
    }

    /// Renders this part; `path` names it in errors (`messages[1].content[0]`).
    fn render(&self, b: &mut PromptBuilder, path: &dyn Fn() -> String) -> Result<(), BodyError> {
        let Some(kind) = self.kind() else {
            return Err(BodyError::invalid(
                format!("{}.type", path()),
                "is required",
            ));
        };
        if TEXT_TYPES.contains(&kind) {
            let text = self
                .text
                .as_ref()
                .ok_or_else(|| BodyError::invalid(format!("{}.text", path()), "is required"))?;
            b.text(text.as_str());
        } else if kind == "refusal" {
            let text = self
                .refusal
                .as_ref()
                .ok_or_else(|| BodyError::invalid(format!("{}.refusal", path()), "is required"))?;
            b.text(text.as_str());
        } else {
            let digest = self
                .media_fields()
                .into_iter()
                .filter_map(|(name, d)| d.map(|d| (name, d.0)))
                .fold(0u64, |h, (name, d)| {
                    xxh64(&d.to_le_bytes(), xxh64(name.as_bytes(), h))
                });
            b.media(kind, digest);
        }
        Ok(())
    }
}

impl Content<'_> {
    /// Renders the content; `path` names the `content` field in errors.
    pub fn render(
        &self,
        b: &mut PromptBuilder,
        path: &dyn Fn() -> String,
    ) -> Result<(), BodyError> {
        match self {
            Content::Text(t) => b.text(t.as_str()),
            Content::Parts(parts) => {
                for (j, part) in parts.iter().enumerate() {
                    part.render(b, &|| format!("{}[{j}]", path()))?;
                }
            }
        }
        Ok(())
    }
}
