//! The canonical prompt: one byte sequence per request, in prompt order, so requests that
//! share a system prompt or conversation history share a byte prefix (which
//! [`crate::prefix::BlockHasher`] turns into shared block hashes).
//!
//! # Format
//!
//! Three ASCII control bytes frame the text; all string content is the JSON-decoded UTF-8
//! (so `"\u00e9"` and `"é"` give the same bytes):
//!
//! ```text
//! chat / responses:  [tools] message*   message = role US body RS
//! completions:       (item RS)*         item    = body
//! body               = (text | marker)*
//! marker             = GS kind US payload GS
//! ```
//!
//! with `US` = 0x1F, `RS` = 0x1E, `GS` = 0x1D and these markers:
//!
//! | marker | from |
//! |---|---|
//! | `GS <part type> US <16 lowercase hex digits> GS` | a non-text content part (`image_url`, `input_audio`, `file`, `input_image`, …); the digits are an xxh64 digest of its payload's strings, so different images differ |
//! | `GS tool_call US <name> US <arguments> GS` | a chat `tool_calls[]` entry, or a Responses `function_call` item |
//! | `GS token_ids US <id>,<id>,… GS` | a `/v1/completions` token-id prompt |
//! | `GS tools US <16 lowercase hex digits> GS` | a non-empty `tools` array (Chat Completions, Responses), first because chat templates render tools ahead of the conversation; the digits digest the whole value |
//!
//! Text parts of one message are concatenated with nothing between them. The Responses API's
//! `instructions` become a leading `system` message, so a chat request and a responses request
//! with the same system prompt share a prefix. The framing is not an escape-proof encoding: a
//! prompt containing these control bytes can imitate framing, which at worst shares a prefix
//! hash it should not, which is harmless for a routing hint.

use super::tokens::TokenEstimator;
use std::io::Write as _;

/// Ends a role.
pub const ROLE_END: u8 = 0x1F;
/// Ends a message (or a completions prompt item).
pub const MESSAGE_END: u8 = 0x1E;
/// Opens and closes a marker.
pub const MARKER: u8 = 0x1D;

/// A request's prompt in canonical form, with the counts its token estimate came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CanonicalPrompt {
    /// The canonical bytes (see the module docs).
    pub bytes: Vec<u8>,
    /// Chat messages / Responses items (including `instructions`); 0 for completions.
    pub messages: u32,
    /// Non-text content parts.
    pub media_parts: u32,
    /// The estimated prompt tokens ([`super::tokens`]).
    pub estimated_tokens: u64,
}

/// Renders a prompt into canonical bytes while feeding the token estimate.
#[derive(Debug, Default)]
pub(crate) struct PromptBuilder {
    bytes: Vec<u8>,
    tokens: TokenEstimator,
    messages: u32,
    media_parts: u32,
}

impl PromptBuilder {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
            ..Self::default()
        }
    }

    /// Starts a chat message (charged the per-message template overhead).
    pub fn begin_message(&mut self, role: &str) {
        self.bytes.extend_from_slice(role.as_bytes());
        self.bytes.push(ROLE_END);
        self.messages = self.messages.saturating_add(1);
        self.tokens.add_message();
    }

    /// Ends a chat message or a completions item.
    pub fn end_message(&mut self) {
        self.bytes.push(MESSAGE_END);
    }

    pub fn text(&mut self, text: &str) {
        self.bytes.extend_from_slice(text.as_bytes());
        self.tokens.add_text(text);
    }

    pub fn media(&mut self, kind: &str, digest: u64) {
        self.bytes.push(MARKER);
        self.bytes.extend_from_slice(kind.as_bytes());
        self.bytes.push(ROLE_END);
        push_hex(&mut self.bytes, digest);
        self.bytes.push(MARKER);
        self.media_parts = self.media_parts.saturating_add(1);
        self.tokens.add_media_part();
    }

    pub fn tool_call(&mut self, name: &str, arguments: &str) {
        self.bytes.push(MARKER);
        self.bytes.extend_from_slice(b"tool_call");
        self.bytes.push(ROLE_END);
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(ROLE_END);
        self.bytes.extend_from_slice(arguments.as_bytes());
        self.bytes.push(MARKER);
        self.tokens.add_text(name);
        self.tokens.add_text(arguments);
    }

    /// The `tools` marker, charged `tokens`.
    pub fn tools(&mut self, digest: u64, tokens: &TokenEstimator) {
        self.bytes.push(MARKER);
        self.bytes.extend_from_slice(b"tools");
        self.bytes.push(ROLE_END);
        push_hex(&mut self.bytes, digest);
        self.bytes.push(MARKER);
        self.tokens.merge(tokens);
    }

    pub fn token_ids(&mut self, ids: &[u64]) {
        self.bytes.push(MARKER);
        self.bytes.extend_from_slice(b"token_ids");
        self.bytes.push(ROLE_END);
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                self.bytes.push(b',');
            }
            // Writing to a Vec cannot fail.
            let _ = write!(self.bytes, "{id}");
        }
        self.bytes.push(MARKER);
        self.tokens.add_exact_tokens(ids.len() as u64);
    }

    pub fn finish(self) -> CanonicalPrompt {
        CanonicalPrompt {
            estimated_tokens: self.tokens.estimate(),
            bytes: self.bytes,
            messages: self.messages,
            media_parts: self.media_parts,
        }
    }
}

fn push_hex(out: &mut Vec<u8>, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        let nibble = ((v >> (shift * 4)) & 0xF) as usize;
        out.push(DIGITS.get(nibble).copied().unwrap_or(b'0'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_framing() {
        let mut b = PromptBuilder::with_capacity(0);
        b.begin_message("user");
        b.text("hi ");
        b.media("image_url", 0xab);
        b.tool_call("f", "{}");
        b.end_message();
        b.token_ids(&[1, 22]);
        let p = b.finish();
        assert_eq!(
            p.bytes,
            b"user\x1fhi \x1dimage_url\x1f00000000000000ab\x1d\x1dtool_call\x1ff\x1f{}\x1d\x1e\x1dtoken_ids\x1f1,22\x1d"
        );
        assert_eq!((p.messages, p.media_parts), (1, 1));
        // "hi " + "f" + "{}" = 6 ASCII bytes -> 2, + 2 exact, + message, priming and media.
        assert_eq!(p.estimated_tokens, 2 + 2 + 4 + 3 + 256);
    }
}
