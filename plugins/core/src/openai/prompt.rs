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
    /// The canonical bytes (see the module docs); only the first ones when the parse was
    /// capped ([`super::parse_request_capped`]).
    pub bytes: Vec<u8>,
    /// The length of the whole canonical prompt (`bytes.len()` unless capped).
    pub len: u64,
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
    /// Most bytes kept.
    limit: usize,
    /// Bytes rendered, kept or not.
    len: u64,
    tokens: TokenEstimator,
    messages: u32,
    media_parts: u32,
}

impl PromptBuilder {
    /// A builder keeping at most `limit` bytes, for a body of `body_len` bytes (the canonical
    /// prompt is never longer than the body plus a little framing, so that is the capacity).
    pub fn new(body_len: usize, limit: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(body_len.min(limit)),
            limit,
            ..Self::default()
        }
    }

    fn put(&mut self, data: &[u8]) {
        self.len = self.len.saturating_add(data.len() as u64);
        let room = self.limit.saturating_sub(self.bytes.len());
        self.bytes
            .extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
    }

    /// Starts a chat message (charged the per-message template overhead).
    pub fn begin_message(&mut self, role: &str) {
        self.put(role.as_bytes());
        self.put(&[ROLE_END]);
        self.messages = self.messages.saturating_add(1);
        self.tokens.add_message();
    }

    /// Ends a chat message or a completions item.
    pub fn end_message(&mut self) {
        self.put(&[MESSAGE_END]);
    }

    pub fn text(&mut self, text: &str) {
        self.put(text.as_bytes());
        self.tokens.add_text(text);
    }

    fn marker(&mut self, kind: &[u8], payload: &[&[u8]]) {
        self.put(&[MARKER]);
        self.put(kind);
        for p in payload {
            self.put(&[ROLE_END]);
            self.put(p);
        }
        self.put(&[MARKER]);
    }

    pub fn media(&mut self, kind: &str, digest: u64) {
        self.marker(kind.as_bytes(), &[&hex(digest)]);
        self.media_parts = self.media_parts.saturating_add(1);
        self.tokens.add_media_part();
    }

    pub fn tool_call(&mut self, name: &str, arguments: &str) {
        self.marker(b"tool_call", &[name.as_bytes(), arguments.as_bytes()]);
        self.tokens.add_text(name);
        self.tokens.add_text(arguments);
    }

    /// The `tools` marker, charged `tokens`.
    pub fn tools(&mut self, digest: u64, tokens: &TokenEstimator) {
        self.marker(b"tools", &[&hex(digest)]);
        self.tokens.merge(tokens);
    }

    pub fn token_ids(&mut self, ids: &[u64]) {
        let mut list = Vec::with_capacity(ids.len().saturating_mul(6));
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                list.push(b',');
            }
            // Writing to a Vec cannot fail.
            let _ = write!(list, "{id}");
        }
        self.marker(b"token_ids", &[&list]);
        self.tokens.add_exact_tokens(ids.len() as u64);
    }

    pub fn finish(self) -> CanonicalPrompt {
        CanonicalPrompt {
            estimated_tokens: self.tokens.estimate(),
            bytes: self.bytes,
            len: self.len,
            messages: self.messages,
            media_parts: self.media_parts,
        }
    }
}

/// `v` as 16 lowercase hex digits.
fn hex(v: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'0'; 16];
    for (i, d) in out.iter_mut().enumerate() {
        let nibble = ((v >> ((15 - i) * 4)) & 0xF) as usize;
        *d = DIGITS.get(nibble).copied().unwrap_or(b'0');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_framing() {
        let mut b = PromptBuilder::new(0, usize::MAX);
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
        assert_eq!(p.len, p.bytes.len() as u64);
    }

    #[test]
    fn a_capped_prompt_keeps_its_head_and_counts_everything() {
        let render = |limit: usize| {
            let mut b = PromptBuilder::new(0, limit);
            b.begin_message("user");
            b.text("hello wörld ");
            b.media("image_url", 0xab);
            b.token_ids(&[7, 8, 9]);
            b.end_message();
            b.finish()
        };
        let whole = render(usize::MAX);
        for limit in [0, 1, 5, 13, 30, whole.bytes.len(), whole.bytes.len() + 10] {
            let capped = render(limit);
            let kept = limit.min(whole.bytes.len());
            assert_eq!(capped.bytes, whole.bytes[..kept], "limit {limit}");
            assert_eq!(capped.len, whole.len);
            assert_eq!(capped.estimated_tokens, whole.estimated_tokens);
            assert_eq!((capped.messages, capped.media_parts), (1, 1));
        }
    }
}
