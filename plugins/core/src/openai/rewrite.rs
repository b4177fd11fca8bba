//! Asking the model server for a usage chunk on a stream the client did not ask usage for.
//!
//! The body is spliced, not re-serialized: every byte outside the inserted text stays as the
//! client sent it (key order, number spelling, whitespace), so nothing the client meant can
//! be lost in a round trip through a JSON value.

use super::error::{BodyError, BodyErrorKind};
use super::request::ParsedRequest;
use super::scan::{self, Member};
use std::ops::Range;

/// The outcome of asking for stream usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageInjection {
    /// Forward the body unchanged: not a stream, the API always reports usage, or the client
    /// already set `stream_options.include_usage: true` (and so expects the usage chunk).
    Unchanged,
    /// Forward this body instead; the stream will end with a usage-only chunk the client did
    /// not ask for, which [`super::SseParser`] in strip mode removes.
    Injected(Vec<u8>),
}

/// Injects `stream_options.include_usage: true` when `req` needs it
/// ([`ParsedRequest::needs_usage_injection`]); `body` is the body `req` was parsed from.
pub fn request_stream_usage(req: &ParsedRequest, body: &[u8]) -> Result<UsageInjection, BodyError> {
    if req.needs_usage_injection() {
        inject_include_usage(body)
    } else {
        Ok(UsageInjection::Unchanged)
    }
}

/// Sets `stream_options.include_usage` to `true` in a JSON object body, whatever `stream` says.
///
/// Absent or `null` `stream_options` becomes `{"include_usage":true}`; an object gains
/// `"include_usage":true` (or has `false`/`null` replaced by `true`); already `true` is
/// [`UsageInjection::Unchanged`]. A `stream_options` or `include_usage` of another type, or one
/// that appears twice, is an error naming it.
pub fn inject_include_usage(body: &[u8]) -> Result<UsageInjection, BodyError> {
    let top = scan::object(body, scan::skip_ws(body, 0)).ok_or_else(not_an_object)?;
    let Some(options) = single(&top.members, "stream_options", "stream_options")? else {
        let (at, text): (usize, &[u8]) = match top.members.last() {
            Some(last) => (
                last.value.end,
                br#","stream_options":{"include_usage":true}"#,
            ),
            None => (top.close, br#""stream_options":{"include_usage":true}"#),
        };
        return Ok(splice(body, at..at, text));
    };
    let value = options.value.clone();
    match body.get(value.start) {
        Some(b'n') => Ok(splice(body, value, br#"{"include_usage":true}"#)),
        Some(b'{') => {
            let inner = scan::object(body, value.start).ok_or_else(not_an_object)?;
            let path = "stream_options.include_usage";
            match single(&inner.members, "include_usage", path)? {
                None => {
                    let at = value.start + 1;
                    let text: &[u8] = if inner.members.is_empty() {
                        br#""include_usage":true"#
                    } else {
                        br#""include_usage":true,"#
                    };
                    Ok(splice(body, at..at, text))
                }
                Some(flag) => match body.get(flag.value.clone()) {
                    Some(b"true") => Ok(UsageInjection::Unchanged),
                    Some(b"false" | b"null") => Ok(splice(body, flag.value.clone(), b"true")),
                    _ => Err(BodyError::invalid(path, "expected a boolean")),
                },
            }
        }
        _ => Err(BodyError::invalid(
            "stream_options",
            "expected a stream_options object",
        )),
    }
}

fn not_an_object() -> BodyError {
    BodyError {
        kind: BodyErrorKind::Syntax,
        path: String::new(),
        message: "expected a well-formed JSON object".to_owned(),
    }
}

/// The member named `key`, if exactly one; a duplicate is an error (parsers disagree on them).
fn single<'m>(
    members: &'m [Member],
    key: &str,
    path: &str,
) -> Result<Option<&'m Member>, BodyError> {
    let mut found = members.iter().filter(|m| m.key == key);
    let first = found.next();
    if found.next().is_some() {
        return Err(BodyError::invalid(path, "appears more than once"));
    }
    Ok(first)
}

fn splice(body: &[u8], range: Range<usize>, text: &[u8]) -> UsageInjection {
    let mut out = Vec::with_capacity(body.len() + text.len());
    out.extend_from_slice(body.get(..range.start).unwrap_or_default());
    out.extend_from_slice(text);
    out.extend_from_slice(body.get(range.end..).unwrap_or_default());
    UsageInjection::Injected(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{parse_request, ApiKind};

    fn injected(body: &str) -> String {
        match inject_include_usage(body.as_bytes()).unwrap() {
            UsageInjection::Injected(b) => String::from_utf8(b).unwrap(),
            UsageInjection::Unchanged => body.to_owned(),
        }
    }

    #[test]
    fn adds_stream_options_preserving_every_other_byte() {
        let body = r#"{"model":"m", "seed": 123456789012345678901234567890, "temperature":1e-1,"messages":[{"role":"user","content":"}"}],"stream":true }"#;
        let out = injected(body);
        assert_eq!(
            out,
            r#"{"model":"m", "seed": 123456789012345678901234567890, "temperature":1e-1,"messages":[{"role":"user","content":"}"}],"stream":true,"stream_options":{"include_usage":true} }"#
        );
        let req = parse_request(ApiKind::ChatCompletions, out.as_bytes()).unwrap();
        assert_eq!(req.include_usage, Some(true));
    }

    #[test]
    fn edits_existing_stream_options() {
        assert_eq!(
            injected(r#"{"stream_options":null,"x":1}"#),
            r#"{"stream_options":{"include_usage":true},"x":1}"#
        );
        assert_eq!(
            injected(r#"{"stream_options":{ },"x":1}"#),
            r#"{"stream_options":{"include_usage":true },"x":1}"#
        );
        assert_eq!(
            injected(r#"{"stream_options":{"continuous_usage_stats":false}}"#),
            r#"{"stream_options":{"include_usage":true,"continuous_usage_stats":false}}"#
        );
        assert_eq!(
            injected(r#"{"stream_options":{"include_usage": false}}"#),
            r#"{"stream_options":{"include_usage": true}}"#
        );
        assert_eq!(
            injected(r#"{"stream_options":{"include_usage":null}}"#),
            r#"{"stream_options":{"include_usage":true}}"#
        );
        assert_eq!(
            inject_include_usage(br#"{"stream_options":{"include_usage":true}}"#).unwrap(),
            UsageInjection::Unchanged
        );
        // Escaped keys are the same keys.
        assert_eq!(
            inject_include_usage(br#"{"stream\u005foptions":{"include_usage":true}}"#).unwrap(),
            UsageInjection::Unchanged
        );
        assert_eq!(
            injected("{}"),
            r#"{"stream_options":{"include_usage":true}}"#
        );
    }

    #[test]
    fn wrong_types_and_duplicates_are_errors_naming_the_field() {
        let e = inject_include_usage(br#"{"stream_options":true}"#).unwrap_err();
        assert_eq!(e.path, "stream_options");
        let e = inject_include_usage(br#"{"stream_options":{"include_usage":"yes"}}"#).unwrap_err();
        assert_eq!(e.path, "stream_options.include_usage");
        let e =
            inject_include_usage(br#"{"stream_options":{},"stream_options":null}"#).unwrap_err();
        assert_eq!(e.message, "appears more than once");
        for bad in [
            &b"[]"[..],
            b"",
            b"{\"a\":",
            b"{\"stream_options\":{\"include_usage\":tr",
        ] {
            assert!(inject_include_usage(bad).is_err());
        }
    }

    #[test]
    fn only_streaming_chat_and_completions_without_usage_are_rewritten() {
        let chat = |b: &str| parse_request(ApiKind::ChatCompletions, b.as_bytes()).unwrap();
        let body = r#"{"model":"m","messages":[],"stream":true}"#;
        assert!(matches!(
            request_stream_usage(&chat(body), body.as_bytes()).unwrap(),
            UsageInjection::Injected(_)
        ));
        let body = r#"{"model":"m","messages":[]}"#;
        assert_eq!(
            request_stream_usage(&chat(body), body.as_bytes()).unwrap(),
            UsageInjection::Unchanged
        );
        let body =
            r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#;
        assert_eq!(
            request_stream_usage(&chat(body), body.as_bytes()).unwrap(),
            UsageInjection::Unchanged
        );
        let body = r#"{"model":"m","input":"x","stream":true}"#;
        let req = parse_request(ApiKind::Responses, body.as_bytes()).unwrap();
        assert_eq!(
            request_stream_usage(&req, body.as_bytes()).unwrap(),
            UsageInjection::Unchanged
        );
        let body =
            r#"{"model":"m","prompt":"x","stream":true,"stream_options":{"include_usage":false}}"#;
        let req = parse_request(ApiKind::Completions, body.as_bytes()).unwrap();
        assert!(matches!(
            request_stream_usage(&req, body.as_bytes()).unwrap(),
            UsageInjection::Injected(_)
        ));
    }
}
