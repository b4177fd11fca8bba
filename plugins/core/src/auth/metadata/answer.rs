//! Reading a metadata call's answer, and the shared-data form of a cached answer.

use super::MetadataCall;
use serde_json::Value;

/// Why a metadata call gave no value. Each is logged and counted by its [`Self::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataError {
    /// No answer: the call timed out, was reset, or the cluster has no healthy host.
    Unreachable,
    /// An answer that is not 2xx.
    Status(u32),
    /// An answer larger than `maxResponseBytes`.
    Oversized,
    /// A `Content-Type: application/json` answer that does not parse.
    NotJson,
    /// A text answer that is not UTF-8.
    NotText,
    /// The call needs an attribute the request lacks (a CEL expression's missing value).
    MissingInput,
    /// A rendered header value holds a line break.
    BadValue,
}

impl MetadataError {
    /// Stat / log name.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Status(_) => "status",
            Self::Oversized => "oversized",
            Self::NotJson => "not_json",
            Self::NotText => "not_text",
            Self::MissingInput => "missing_input",
            Self::BadValue => "bad_value",
        }
    }
}

/// Every [`MetadataError::reason`], for defining stats up front.
pub const METADATA_ERROR_REASONS: [&str; 7] = [
    "unreachable",
    "status",
    "oversized",
    "not_json",
    "not_text",
    "missing_input",
    "bad_value",
];

/// Reads an answer: `status` (`None` when the call failed), its `Content-Type`, the full body
/// size and the body read. A 2xx JSON answer (`application/json`, Authorino's test) is parsed;
/// any other 2xx answer is its text as a string, as Authorino keeps it. When the host does not
/// say the `Content-Type` (`None`), an answer whose first non-blank byte is `{` or `[` is JSON.
pub fn read_answer(
    call: &MetadataCall,
    status: Option<u32>,
    content_type: Option<&str>,
    body_size: usize,
    body: &[u8],
) -> Result<Value, MetadataError> {
    let status = status.ok_or(MetadataError::Unreachable)?;
    if !(200..300).contains(&status) {
        return Err(MetadataError::Status(status));
    }
    if body_size > call.max_response_bytes || body.len() > call.max_response_bytes {
        return Err(MetadataError::Oversized);
    }
    let json = match content_type {
        Some(c) => c.to_ascii_lowercase().contains("application/json"),
        None => body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{' || *b == b'['),
    };
    if json {
        serde_json::from_slice(body).map_err(|_| MetadataError::NotJson)
    } else {
        std::str::from_utf8(body)
            .map(|s| Value::String(s.to_string()))
            .map_err(|_| MetadataError::NotText)
    }
}

/// The shared-data value for an answer kept until `expires` (seconds): `<expires> <json>`.
pub fn encode_entry(expires: u64, value: &Value) -> Option<Vec<u8>> {
    let mut out = format!("{expires} ").into_bytes();
    out.extend(serde_json::to_vec(value).ok()?);
    Some(out)
}

/// Reads a cached answer; `None` when unreadable or expired at `now`.
pub fn decode_entry(bytes: &[u8], now: u64) -> Option<Value> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (expires, json) = text.split_once(' ')?;
    if expires.parse::<u64>().ok()? <= now {
        return None;
    }
    serde_json::from_str(json).ok()
}

impl MetadataCall {
    /// The shared-data value to store for a successful answer at `now` (`None` when the
    /// evaluator does not cache or the key could not be rendered).
    pub fn cache_entry(&self, value: &Value, now: u64) -> Option<(String, Vec<u8>)> {
        let key = self.cache_key.clone()?;
        if self.ttl_seconds == 0 {
            return None;
        }
        Some((
            key,
            encode_entry(now.saturating_add(self.ttl_seconds), value)?,
        ))
    }
}
