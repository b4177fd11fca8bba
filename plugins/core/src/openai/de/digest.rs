//! Digests of JSON values the prompt includes but the gateway does not interpret: media
//! payloads and tool definitions.

use super::Text;
use crate::openai::tokens::TokenEstimator;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use xxhash_rust::xxh64::xxh64;

/// A digest and token estimate of an arbitrary JSON value, for request fields the model sees
/// as prompt but the gateway need not understand (`tools`).
///
/// The digest covers structure, keys and scalars in order. The estimate is the text estimate
/// of every key and string plus one token per value (punctuation and numbers). Nesting is
/// bounded by serde_json's recursion limit (128), beyond which the body is rejected.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JsonDigest {
    pub digest: u64,
    pub tokens: TokenEstimator,
    /// `[]`, `{}`, `""` or `null`.
    pub empty: bool,
}

impl<'de> Deserialize<'de> for JsonDigest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonDigestVisitor)
    }
}

struct JsonDigestVisitor;

impl JsonDigestVisitor {
    fn scalar(tag: u64, bytes: &[u8], empty: bool) -> JsonDigest {
        let mut tokens = TokenEstimator::default();
        tokens.add_exact_tokens(1);
        JsonDigest {
            digest: xxh64(bytes, tag),
            tokens,
            empty,
        }
    }
}

impl<'de> Visitor<'de> for JsonDigestVisitor {
    type Value = JsonDigest;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let mut d = Self::scalar(1, v.as_bytes(), v.is_empty());
        d.tokens.add_text(v);
        Ok(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Self::scalar(2, &[u8::from(v)], false))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Self::scalar(3, &v.to_le_bytes(), false))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Self::scalar(4, &v.to_le_bytes(), false))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Self::scalar(5, &v.to_le_bytes(), false))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Self::scalar(6, &[], true))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut d = Self::scalar(7, &[], true);
        while let Some(el) = seq.next_element::<JsonDigest>()? {
            d.digest = xxh64(&el.digest.to_le_bytes(), d.digest);
            d.tokens.merge(&el.tokens);
            d.empty = false;
        }
        Ok(d)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut d = Self::scalar(8, &[], true);
        while let Some(key) = map.next_key::<Text<'_>>()? {
            let value = map.next_value::<JsonDigest>()?;
            d.digest = xxh64(
                &value.digest.to_le_bytes(),
                xxh64(key.as_str().as_bytes(), d.digest),
            );
            d.tokens.add_text(key.as_str());
            d.tokens.merge(&value.tokens);
            d.empty = false;
        }
        Ok(d)
    }
}

/// A stable digest of a media payload (`image_url`, `input_audio`, `file`, …) so two requests
/// with different images do not look like a shared prefix, without copying the payload.
///
/// A string hashes as itself; an object hashes each string member (key and value, in order),
/// skipping other members; any other JSON value hashes as nothing. Never fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct MediaDigest(pub u64);

impl<'de> Deserialize<'de> for MediaDigest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MediaVisitor)
    }
}

struct MediaVisitor;

impl<'de> Visitor<'de> for MediaVisitor {
    type Value = MediaDigest;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a media reference")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(MediaDigest(xxh64(v.as_bytes(), 0)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut h = 0;
        while let Some(key) = map.next_key::<Text<'_>>()? {
            if let Some(StrDigest(Some(MediaDigest(v)))) = map.next_value::<Option<StrDigest>>()? {
                h = xxh64(&v.to_le_bytes(), xxh64(key.as_str().as_bytes(), h));
            }
        }
        Ok(MediaDigest(h))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(MediaDigest(0))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(MediaDigest(0))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(MediaDigest(0))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(MediaDigest(0))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(MediaDigest(0))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(MediaDigest(0))
    }
}

/// The digest of a string member inside a media object, `None`-like for other values.
struct StrDigest(Option<MediaDigest>);

impl<'de> Deserialize<'de> for StrDigest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrDigestVisitor)
    }
}

struct StrDigestVisitor;

impl<'de> Visitor<'de> for StrDigestVisitor {
    type Value = StrDigest;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(StrDigest(Some(MediaDigest(xxh64(v.as_bytes(), 0)))))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(StrDigest(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(StrDigest(None))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(StrDigest(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(StrDigest(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(StrDigest(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(StrDigest(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(StrDigest(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_digest_distinguishes_payloads_and_accepts_anything() {
        let d = |s: &str| serde_json::from_str::<MediaDigest>(s).unwrap().0;
        assert_eq!(
            d(r#"{"url":"a","detail":"low"}"#),
            d(r#"{"url":"a","detail":"low"}"#)
        );
        assert_ne!(d(r#"{"url":"a"}"#), d(r#"{"url":"b"}"#));
        assert_ne!(d(r#"{"url":"a"}"#), d(r#"{"uri":"a"}"#));
        assert_eq!(d(r#"{"url":"a","n":[1,{"x":2}]}"#), d(r#"{"url":"a"}"#));
        assert_eq!(d(r#""a""#), xxh64(b"a", 0));
        for other in ["1", "-1", "1.5", "true", "null", "[1,[2]]"] {
            let _ = d(other);
        }
    }

    #[test]
    fn json_digest_covers_structure_and_counts_text() {
        let d = |s: &str| serde_json::from_str::<JsonDigest>(s).unwrap();
        let a = d(
            r#"[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]"#,
        );
        let b = d(
            r#"[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]"#,
        );
        assert_eq!(a.digest, b.digest);
        for other in [
            r#"[{"type":"function","function":{"name":"get_time","parameters":{"type":"object"}}}]"#,
            r#"[{"type":"function","function":{"name":"get_weather","parameters":{"type":"objects"}}}]"#,
            r#"[{"type":"function"},{"function":{"name":"get_weather","parameters":{"type":"object"}}}]"#,
            r#"[[1],[]]"#,
            r#"[[],[1]]"#,
        ] {
            assert_ne!(a.digest, d(other).digest, "{other}");
        }
        assert_ne!(d("[[1],[]]").digest, d("[[],[1]]").digest);
        assert!(a.tokens.estimate() >= 10);
        assert!(d("[]").empty && d("{}").empty && d("null").empty && !a.empty);
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert!(serde_json::from_str::<JsonDigest>(&deep).is_err());
    }
}
