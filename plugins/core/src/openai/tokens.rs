//! A cheap, conservative estimate of prompt tokens, for charging a request before the model
//! server reports its real usage.
//!
//! The formula, over the text of the prompt (not its canonical framing bytes):
//!
//! ```text
//! tokens = ceil(ascii_bytes / 4)            // English and code: ~4 bytes per BPE token
//!        + non_ascii_chars                  // CJK, accents, emoji: at most ~1 token per char
//!        + exact_token_ids                  // `/v1/completions` token-id prompts count exactly
//!        + 4 * messages                     // chat template tokens around each message
//!        + 3 (if any message)               // the reply priming (`<|im_start|>assistant\n`)
//!        + 256 * media_parts                // images, audio, files: a flat guess
//!        + tools                            // `tools`: text estimate of its keys and
//!                                           // strings + 1 per JSON value
//! ```
//!
//! It is meant to err high: one token per non-ASCII character over-counts most scripts, and
//! BPE tokenizers average more than 4 bytes per token on English prose. It is a charge to be
//! corrected by the response's `usage`, never a limit a client can rely on.

/// Template tokens charged for each chat message (role markers and separators).
pub const TOKENS_PER_MESSAGE: u64 = 4;
/// Tokens charged once for the assistant turn a chat template appends.
pub const REPLY_PRIMING_TOKENS: u64 = 3;
/// Tokens charged for each non-text content part (image, audio, file, …).
pub const TOKENS_PER_MEDIA_PART: u64 = 256;
/// ASCII bytes per token assumed for text.
pub const ASCII_BYTES_PER_TOKEN: u64 = 4;

/// Accumulates the inputs of the estimate as the prompt is rendered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenEstimator {
    ascii_bytes: u64,
    non_ascii_chars: u64,
    exact_tokens: u64,
    messages: u64,
    media_parts: u64,
}

impl TokenEstimator {
    /// Adds prompt text.
    pub fn add_text(&mut self, text: &str) {
        let (ascii, non_ascii) = count_text(text.as_bytes());
        self.ascii_bytes = self.ascii_bytes.saturating_add(ascii);
        self.non_ascii_chars = self.non_ascii_chars.saturating_add(non_ascii);
    }

    /// Adds tokens known exactly (token-id prompts).
    pub fn add_exact_tokens(&mut self, n: u64) {
        self.exact_tokens = self.exact_tokens.saturating_add(n);
    }

    /// Adds one chat message's template overhead.
    pub fn add_message(&mut self) {
        self.messages = self.messages.saturating_add(1);
    }

    /// Adds one non-text content part.
    pub fn add_media_part(&mut self) {
        self.media_parts = self.media_parts.saturating_add(1);
    }

    /// Adds everything `other` accumulated.
    pub fn merge(&mut self, other: &TokenEstimator) {
        self.ascii_bytes = self.ascii_bytes.saturating_add(other.ascii_bytes);
        self.non_ascii_chars = self.non_ascii_chars.saturating_add(other.non_ascii_chars);
        self.exact_tokens = self.exact_tokens.saturating_add(other.exact_tokens);
        self.messages = self.messages.saturating_add(other.messages);
        self.media_parts = self.media_parts.saturating_add(other.media_parts);
    }

    /// The estimate; see the module docs for the formula.
    pub fn estimate(&self) -> u64 {
        let priming = if self.messages > 0 {
            REPLY_PRIMING_TOKENS
        } else {
            0
        };
        self.ascii_bytes
            .div_ceil(ASCII_BYTES_PER_TOKEN)
            .saturating_add(self.non_ascii_chars)
            .saturating_add(self.exact_tokens)
            .saturating_add(self.messages.saturating_mul(TOKENS_PER_MESSAGE))
            .saturating_add(priming)
            .saturating_add(self.media_parts.saturating_mul(TOKENS_PER_MEDIA_PART))
    }
}

/// The text-only estimate `ceil(ascii_bytes / 4) + non_ascii_chars` of UTF-8 `text`, also
/// usable for streamed completion text.
pub fn estimate_text_tokens(text: &[u8]) -> u64 {
    let (ascii, non_ascii) = count_text(text);
    ascii
        .div_ceil(ASCII_BYTES_PER_TOKEN)
        .saturating_add(non_ascii)
}

/// (ASCII bytes, non-ASCII characters): a non-ASCII character is counted at its leading byte.
///
/// This runs over every prompt byte, so it works on eight bytes at a time (plain 64-bit
/// integer operations, fast on wasm32 without SIMD): a byte is ASCII when its top bit is
/// clear, and starts a multi-byte character when its top two bits are set (`>= 0xC0`).
fn count_text(text: &[u8]) -> (u64, u64) {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Per-byte-lane sums, added up at most 255 words at a time so no lane overflows.
    fn lanes_total(lanes: u64) -> u64 {
        // Pairs of byte lanes into four 16-bit lanes (each <= 510), then their sum (<= 2040).
        const EVEN: u64 = 0x00FF_00FF_00FF_00FF;
        let pairs = (lanes & EVEN) + ((lanes >> 8) & EVEN);
        pairs.wrapping_mul(0x0001_0001_0001_0001) >> 48
    }
    let (mut ascii, mut non_ascii) = (0u64, 0u64);
    let mut blocks = text.chunks_exact(8 * 255);
    for block in &mut blocks {
        let (a, n) = count_words(block);
        ascii += lanes_total(a);
        non_ascii += lanes_total(n);
    }
    let rest = blocks.remainder();
    let words = rest.len() / 8 * 8;
    let (a, n) = count_words(rest.get(..words).unwrap_or_default());
    ascii += lanes_total(a);
    non_ascii += lanes_total(n);
    for &b in rest.get(words..).unwrap_or_default() {
        ascii += u64::from(b < 0x80);
        non_ascii += u64::from(b >= 0xC0);
    }
    return (ascii, non_ascii);

    /// Lane sums over whole 8-byte words (at most 255 of them).
    fn count_words(bytes: &[u8]) -> (u64, u64) {
        let (mut a, mut n) = (0u64, 0u64);
        for chunk in bytes.chunks_exact(8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let v = u64::from_le_bytes(word);
            a += (!v & HIGH) >> 7;
            n += (v & (v << 1) & HIGH) >> 7;
        }
        (a, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_estimate_rounds_up_and_counts_non_ascii_chars() {
        assert_eq!(estimate_text_tokens(b""), 0);
        assert_eq!(estimate_text_tokens(b"a"), 1);
        assert_eq!(estimate_text_tokens(b"abcd"), 1);
        assert_eq!(estimate_text_tokens(b"abcde"), 2);
        // 4 CJK characters, 12 bytes: 4 tokens, not 3.
        assert_eq!(estimate_text_tokens("你好世界".as_bytes()), 4);
        // "café": 3 ASCII bytes -> 1, one accented char -> 1.
        assert_eq!(estimate_text_tokens("café".as_bytes()), 2);
        assert_eq!(estimate_text_tokens("😀".as_bytes()), 1);
    }

    #[test]
    fn estimator_adds_message_priming_exact_and_media() {
        let mut e = TokenEstimator::default();
        assert_eq!(e.estimate(), 0);
        e.add_text("You are helpful."); // 16 bytes -> 4
        e.add_message();
        e.add_text("Hi"); // 2 bytes, pooled with the above: 18 -> 5
        e.add_message();
        assert_eq!(
            e.estimate(),
            5 + 2 * TOKENS_PER_MESSAGE + REPLY_PRIMING_TOKENS
        );
        e.add_media_part();
        e.add_exact_tokens(10);
        assert_eq!(
            e.estimate(),
            5 + 2 * TOKENS_PER_MESSAGE + REPLY_PRIMING_TOKENS + TOKENS_PER_MEDIA_PART + 10
        );
    }

    #[test]
    fn estimate_is_at_least_a_real_tokenizer_count_on_typical_text() {
        // Real GPT/Qwen BPE counts for these strings are 9 and 6 tokens.
        assert!(estimate_text_tokens(b"The quick brown fox jumps over the lazy dog.") >= 9);
        assert!(estimate_text_tokens("東京は日本の首都".as_bytes()) >= 6);
    }

    #[test]
    fn word_count_matches_the_bytewise_definition_at_every_alignment() {
        let text = "aé你😀b\u{7f}\u{80}ÿ\u{10ffff} plain ascii tail".repeat(3);
        let bytes = text.as_bytes();
        for start in 0..16 {
            for end in (start..bytes.len()).step_by(5) {
                let s = &bytes[start..end];
                let ascii = s.iter().filter(|&&b| b < 0x80).count() as u64;
                let lead = s.iter().filter(|&&b| b >= 0xC0).count() as u64;
                assert_eq!(count_text(s), (ascii, lead), "{start}..{end}");
            }
        }
    }

    #[test]
    fn word_count_matches_the_bytewise_definition_on_long_text() {
        // Long enough for several full 255-word blocks, all-ASCII and all-multibyte.
        for text in ["plain ascii ".repeat(2000), "é你😀".repeat(3000)] {
            let bytes = text.as_bytes();
            let ascii = bytes.iter().filter(|&&b| b < 0x80).count() as u64;
            let lead = bytes.iter().filter(|&&b| b >= 0xC0).count() as u64;
            assert_eq!(count_text(bytes), (ascii, lead));
        }
    }

    #[test]
    fn never_overflows() {
        let mut e = TokenEstimator::default();
        e.add_exact_tokens(u64::MAX);
        e.add_media_part();
        e.add_message();
        assert_eq!(e.estimate(), u64::MAX);
    }
}
