//! Token usage reported by the model server, from a JSON response or a stream chunk.

use super::de::{opt_count, Expected, Obj};
use super::error::{parse_json, BodyError};
use serde::Deserialize;

/// Tokens a request really used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// `prompt_tokens` (Responses: `input_tokens`).
    pub prompt_tokens: u64,
    /// `completion_tokens` (Responses: `output_tokens`); 0 when absent.
    pub completion_tokens: u64,
    /// `total_tokens`; the sum of the above when absent.
    pub total_tokens: u64,
    /// `prompt_tokens_details.cached_tokens` (Responses: `input_tokens_details`), when sent.
    pub cached_tokens: Option<u64>,
}

/// The wire form of `usage` in every OpenAI API.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a usage object")]
pub(crate) struct UsageWire {
    #[serde(default, alias = "input_tokens", deserialize_with = "opt_count")]
    prompt_tokens: Option<u64>,
    #[serde(default, alias = "output_tokens", deserialize_with = "opt_count")]
    completion_tokens: Option<u64>,
    #[serde(default, deserialize_with = "opt_count")]
    total_tokens: Option<u64>,
    #[serde(default, alias = "input_tokens_details")]
    prompt_tokens_details: Option<Obj<DetailsWire>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a token details object")]
struct DetailsWire {
    #[serde(default, deserialize_with = "opt_count")]
    cached_tokens: Option<u64>,
}

impl Expected for UsageWire {
    const EXPECTED: &'static str = "a usage object";
}

impl Expected for DetailsWire {
    const EXPECTED: &'static str = "a token details object";
}

impl Expected for ResponseBody {
    const EXPECTED: &'static str = "a JSON object";
}

impl UsageWire {
    /// Validates; `path` names the `usage` object in errors.
    pub fn into_usage(self, path: &str) -> Result<Usage, BodyError> {
        let prompt_tokens = self
            .prompt_tokens
            .ok_or_else(|| BodyError::invalid(format!("{path}.prompt_tokens"), "is required"))?;
        let completion_tokens = self.completion_tokens.unwrap_or(0);
        Ok(Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: self
                .total_tokens
                .unwrap_or(prompt_tokens.saturating_add(completion_tokens)),
            cached_tokens: self.prompt_tokens_details.and_then(|d| d.0.cached_tokens),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a JSON object")]
struct ResponseBody {
    #[serde(default)]
    usage: Option<Obj<UsageWire>>,
}

/// The `usage` of a non-streaming Chat Completions, Completions or Responses body.
///
/// `Ok(None)` when the body has no `usage` (or `"usage": null`), as in error bodies; a body
/// that is not a JSON object, or a malformed `usage`, is an error naming the field.
pub fn parse_response_usage(body: &[u8]) -> Result<Option<Usage>, BodyError> {
    parse_json::<Obj<ResponseBody>>(body)?
        .0
        .usage
        .map(|u| u.0.into_usage("usage"))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::BodyErrorKind;

    #[test]
    fn chat_usage_with_cached_tokens() {
        let body = br#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":12,"total_tokens":17,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":8}}}"#;
        assert_eq!(
            parse_response_usage(body).unwrap(),
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 5,
                total_tokens: 17,
                cached_tokens: Some(8)
            })
        );
    }

    #[test]
    fn vllm_null_details_and_missing_total() {
        let body =
            br#"{"usage":{"prompt_tokens":3,"completion_tokens":4,"prompt_tokens_details":null}}"#;
        let u = parse_response_usage(body).unwrap().unwrap();
        assert_eq!((u.total_tokens, u.cached_tokens), (7, None));
    }

    #[test]
    fn responses_api_names() {
        let body = br#"{"object":"response","usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":2},"output_tokens":6,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":16}}"#;
        let u = parse_response_usage(body).unwrap().unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.total_tokens,
                u.cached_tokens
            ),
            (10, 6, 16, Some(2))
        );
    }

    #[test]
    fn absent_usage_is_none() {
        assert_eq!(
            parse_response_usage(br#"{"error":{"message":"x"}}"#).unwrap(),
            None
        );
        assert_eq!(parse_response_usage(br#"{"usage":null}"#).unwrap(), None);
    }

    #[test]
    fn malformed_usage_names_the_field() {
        let e = parse_response_usage(br#"{"usage":{"prompt_tokens":"12"}}"#).unwrap_err();
        assert_eq!(e.path, "usage.prompt_tokens");
        assert!(e.message.contains("non-negative integer"), "{e}");
        let e = parse_response_usage(br#"{"usage":{"completion_tokens":1}}"#).unwrap_err();
        assert_eq!(e.to_string(), "usage.prompt_tokens: is required");
        let e = parse_response_usage(br#"{"usage":[1]}"#).unwrap_err();
        assert_eq!(e.path, "usage");
        let e = parse_response_usage(
            br#"{"usage":{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":-3}}}"#,
        )
        .unwrap_err();
        assert_eq!(e.path, "usage.prompt_tokens_details.cached_tokens");
    }

    #[test]
    fn not_json_or_truncated_is_an_error() {
        let e = parse_response_usage(b"<html>").unwrap_err();
        assert_eq!(e.kind, BodyErrorKind::Syntax);
        let e = parse_response_usage(br#"{"usage":{"prompt_tokens":1"#).unwrap_err();
        assert_eq!(e.kind, BodyErrorKind::Truncated);
        let e = parse_response_usage(b"[]").unwrap_err();
        assert!(e.message.contains("a JSON object"), "{e}");
        assert!(parse_response_usage(b"").is_err());
    }
}
