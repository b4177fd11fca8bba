//! The simulator's deterministic tokenizer: the one place text becomes token ids, used both for
//! `usage` counts and for the KV-cache block hashes, so the two always agree.
//!
//! Rules (no vocabulary file, stable across versions):
//! 1. Text is split into *pieces*: a run of ASCII letters/digits or of non-ASCII characters
//!    (a "word"), a run of whitespace, or a single other character (punctuation).
//! 2. One space directly before a word is glued to it (`" cat"`), as GPT-style BPE does.
//! 3. A piece longer than [`MAX_TOKEN_BYTES`] bytes is cut into chunks of at most that many bytes
//!    (on character boundaries), each chunk one token.
//! 4. A token's id is the low 32 bits of xxh64 of its bytes (seed 0).
//!
//! English text comes out at roughly 4 characters per token, close to real BPE tokenizers.
//! The words of [`OUTPUT_WORDS`] are each exactly one token, so generated text tokenizes back to
//! the ids that produced it and a multi-turn client sending the reply back hits the prefix cache.

use xxhash_rust::xxh64::xxh64;

/// Longest token, in bytes.
pub const MAX_TOKEN_BYTES: usize = 6;

/// Words the simulated model "generates"; every entry is a single token.
pub const OUTPUT_WORDS: [&str; 16] = [
    " the", " model", " is", " a", " sim", " vllm", " pod", " and", " it", " says", " hello",
    " to", " you", " with", " some", " text",
];

/// Id of a token given its bytes.
pub fn token_id(piece: &str) -> u32 {
    xxh64(piece.as_bytes(), 0) as u32
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Word,
    Space,
    Other,
}

fn class(c: char) -> Class {
    if c.is_ascii_alphanumeric() || !c.is_ascii() {
        Class::Word
    } else if c.is_whitespace() {
        Class::Space
    } else {
        Class::Other
    }
}

/// Splits `text` into its token strings (see the module rules).
pub fn pieces(text: &str) -> Vec<&str> {
    let mut raw: Vec<(usize, usize, Class)> = Vec::new();
    for (i, c) in text.char_indices() {
        let k = class(c);
        let end = i + c.len_utf8();
        match raw.last_mut() {
            Some(last) if last.2 == k && k != Class::Other => last.1 = end,
            _ => raw.push((i, end, k)),
        }
    }
    // Glue one trailing space of a whitespace run onto the following word.
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(raw.len());
    let mut word_start: Option<usize> = None;
    for (idx, &(s, e, k)) in raw.iter().enumerate() {
        let next_is_word = raw.get(idx + 1).is_some_and(|n| n.2 == Class::Word);
        if k == Class::Space && next_is_word && text[..e].ends_with(' ') {
            if e - 1 > s {
                spans.push((s, e - 1));
            }
            word_start = Some(e - 1);
        } else {
            spans.push((word_start.take().unwrap_or(s), e));
        }
    }
    let mut out = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        let mut start = s;
        while start < e {
            let mut end = (start + MAX_TOKEN_BYTES).min(e);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            if end == start {
                // A single character wider than the limit: keep it whole.
                end = start + text[start..].chars().next().map_or(1, char::len_utf8);
            }
            out.push(&text[start..end]);
            start = end;
        }
    }
    out
}

/// Token ids of `text`.
pub fn tokenize(text: &str) -> Vec<u32> {
    pieces(text).into_iter().map(token_id).collect()
}

/// The `index`-th generated word of a reply whose stream is identified by `seed`.
pub fn output_word(seed: u64, index: u32) -> &'static str {
    let h = xxh64(&index.to_le_bytes(), seed);
    OUTPUT_WORDS[(h % OUTPUT_WORDS.len() as u64) as usize]
}

/// A synthetic token id for position `index` of a content stream `seed`, for workloads that
/// never need text (the offline benchmark). Equal `(seed, index)` give equal ids.
pub fn synthetic_token(seed: u64, index: u32) -> u32 {
    // splitmix64 finalizer: cheap, and well mixed enough that streams never collide in practice.
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(
        u64::from(index)
            .wrapping_add(1)
            .wrapping_mul(0xBF58_476D_1CE4_E5B9),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u32
}

/// Bytes standing for `tokens` (4 little-endian bytes per id), for hashers that work on bytes,
/// such as the gateway's prefix block hasher: equal token prefixes give equal byte prefixes.
pub fn token_bytes(tokens: &[u32]) -> Vec<u8> {
    tokens.iter().flat_map(|t| t.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words_spaces_and_punctuation() {
        assert_eq!(
            pieces("Hello, big world!"),
            vec!["Hello", ",", " big", " world", "!"]
        );
        assert_eq!(pieces("a  b"), vec!["a", " ", " b"]);
        assert_eq!(pieces("\n\nx"), vec!["\n\n", "x"]);
    }

    #[test]
    fn long_words_are_cut_into_bounded_tokens() {
        let p = pieces(" internationalization");
        assert!(p.iter().all(|t| t.len() <= MAX_TOKEN_BYTES));
        assert_eq!(p.concat(), " internationalization");
        assert_eq!(p.len(), 4);
        // Multi-byte characters are never split.
        let p = pieces("ééééé");
        assert_eq!(p.concat(), "ééééé");
        assert!(p.iter().all(|t| t.len() <= MAX_TOKEN_BYTES));
    }

    #[test]
    fn output_words_round_trip_as_single_tokens() {
        let text: String = (0..50).map(|i| output_word(7, i)).collect();
        let ids = tokenize(&text);
        let expected: Vec<u32> = (0..50).map(|i| token_id(output_word(7, i))).collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn tokenization_is_deterministic_and_prefix_stable() {
        let a = tokenize("The quick brown fox jumps over the lazy dog.");
        let b = tokenize("The quick brown fox jumps over the lazy dog. And more.");
        assert_eq!(a, tokenize("The quick brown fox jumps over the lazy dog."));
        assert_eq!(a[..a.len() - 1], b[..a.len() - 1]);
    }
}
