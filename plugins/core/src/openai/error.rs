//! The typed error for a rejected OpenAI body, naming the offending field.

use crate::openai_error::{self, ErrorKind};
use std::fmt;

/// How a body failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyErrorKind {
    /// Not JSON, or JSON followed by trailing data.
    Syntax,
    /// The JSON ends early: a truncated body.
    Truncated,
    /// Well-formed JSON with a missing field, a field of the wrong type, or a bad value.
    Invalid,
}

/// A body the gateway rejects; the adapter answers 400 with [`BodyError::to_openai_body`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    /// How it failed.
    pub kind: BodyErrorKind,
    /// Path of the offending field (`messages[2].content`); empty for the body as a whole.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl BodyError {
    /// An [`BodyErrorKind::Invalid`] error about the field at `path`.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: BodyErrorKind::Invalid,
            path: path.into(),
            message: message.into(),
        }
    }

    /// Classifies a serde_json error found at `path` (serde_path_to_error syntax; `.` = root).
    pub(crate) fn from_json(err: &serde_json::Error, path: &str) -> Self {
        use serde_json::error::Category;
        let kind = match err.classify() {
            Category::Eof => BodyErrorKind::Truncated,
            Category::Data => BodyErrorKind::Invalid,
            Category::Syntax | Category::Io => BodyErrorKind::Syntax,
        };
        let mut path = if path == "." {
            String::new()
        } else {
            path.to_owned()
        };
        let full = err.to_string();
        // Field errors read better without serde_json's position suffix; syntax errors need it.
        let message = if kind == BodyErrorKind::Invalid {
            let suffix = format!(" at line {} column {}", err.line(), err.column());
            full.strip_suffix(&suffix).unwrap_or(&full).to_owned()
        } else {
            full
        };
        // "missing field `role`" at `messages[0]` reads best as `messages[0].role: is required`.
        let field_error = |prefix: &str, said: &'static str| {
            message
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix('`'))
                .map(|field| (field.to_owned(), said))
        };
        let named = field_error("missing field `", "is required")
            .or_else(|| field_error("duplicate field `", "appears more than once"));
        if let Some((field, said)) = named {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&field);
            return Self {
                kind,
                path,
                message: said.to_owned(),
            };
        }
        Self {
            kind,
            path,
            message,
        }
    }

    /// The OpenAI-style 400 body (`invalid_request_error`) carrying [`fmt::Display`]'s text.
    pub fn to_openai_body(&self) -> Vec<u8> {
        openai_error::body(ErrorKind::BadRequest, "invalid_request", &self.to_string())
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for BodyError {}

/// Parses `body` as `T`, tracking the path so a failure names the field.
///
/// One path-tracking parse rather than a fast parse plus a second, tracking one on failure:
/// each is a full instantiation of the deserializer for every body type, and in a Wasm plugin
/// the second copy costs more (module size) than tracking costs on the happy path.
pub(crate) fn parse_json<'de, T: serde::Deserialize<'de>>(body: &'de [u8]) -> Result<T, BodyError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) => {
            let path = e.path().to_string();
            Err(BodyError::from_json(e.inner(), &path))
        }
        Ok(value) => match de.end() {
            Ok(()) => Ok(value),
            Err(e) => Err(BodyError::from_json(&e, ".")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_openai_body_name_the_field() {
        let e = BodyError::invalid("messages[2].content", "expected a string");
        assert_eq!(e.to_string(), "messages[2].content: expected a string");
        let v: serde_json::Value = serde_json::from_slice(&e.to_openai_body()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(
            v["error"]["message"],
            "messages[2].content: expected a string"
        );
        assert_eq!(BodyError::invalid("", "bad").to_string(), "bad");
    }

    #[test]
    fn classifies_syntax_truncation_and_trailing_data() {
        #[derive(serde::Deserialize, Debug)]
        struct T {
            #[allow(dead_code)]
            a: u32,
        }
        let e = parse_json::<T>(b"{\"a\":").unwrap_err();
        assert_eq!(e.kind, BodyErrorKind::Truncated);
        let e = parse_json::<T>(b"{\"a\" 1}").unwrap_err();
        assert_eq!(e.kind, BodyErrorKind::Syntax);
        let e = parse_json::<T>(b"{\"a\":1} x").unwrap_err();
        assert_eq!(e.kind, BodyErrorKind::Syntax);
        assert!(e.path.is_empty());
        let e = parse_json::<T>(b"{}").unwrap_err();
        assert_eq!((e.path.as_str(), e.message.as_str()), ("a", "is required"));
        let e = parse_json::<T>(b"{\"a\":\"x\"}").unwrap_err();
        assert_eq!(e.kind, BodyErrorKind::Invalid);
        assert_eq!(e.path, "a");
        assert!(!e.message.contains("line"), "{}", e.message);
    }
}
