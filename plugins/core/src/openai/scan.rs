//! Byte spans of an object's members in JSON text, without building a value: what a body
//! rewrite needs to splice a field in while leaving every other byte as the client sent it.
//!
//! Iterative (no recursion, so nesting depth costs nothing), never panics, and rejects
//! anything that is not well-formed at the level it walks; nested values are skipped by
//! bracket counting, so callers must have validated the body with serde_json first.

use std::borrow::Cow;
use std::ops::Range;

/// One `"key": value` member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The decoded key.
    pub key: String,
    /// The value's bytes.
    pub value: Range<usize>,
}

/// An object's members and the offset of its closing `}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Object {
    pub members: Vec<Member>,
    pub close: usize,
}

/// Offset of the first non-whitespace byte at or after `i`.
pub(crate) fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while matches!(s.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The members of the object whose `{` is at `open`; `None` if it is not well-formed.
pub(crate) fn object(s: &[u8], open: usize) -> Option<Object> {
    if s.get(open) != Some(&b'{') {
        return None;
    }
    let mut members = Vec::new();
    let mut i = skip_ws(s, open + 1);
    if s.get(i) == Some(&b'}') {
        return Some(Object { members, close: i });
    }
    loop {
        let key_end = string_end(s, i)?;
        let key = decode_key(s.get(i..key_end)?)?.into_owned();
        i = skip_ws(s, key_end);
        if s.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(s, i + 1);
        let end = value_end(s, start)?;
        members.push(Member {
            key,
            value: start..end,
        });
        i = skip_ws(s, end);
        match s.get(i) {
            Some(b',') => i = skip_ws(s, i + 1),
            Some(b'}') => return Some(Object { members, close: i }),
            _ => return None,
        }
    }
}

/// Offset just past the string whose opening quote is at `i`.
fn string_end(s: &[u8], i: usize) -> Option<usize> {
    if s.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        j += find_quote_or_backslash(s.get(j..)?)?;
        match s.get(j)? {
            b'"' => return Some(j + 1),
            _ => j += 2,
        }
    }
}

/// Offset of the first `"` or `\\` in `s`: a string's end or its next escape.
///
/// Eight bytes at a time with the classic "has zero byte" bit trick (Wasm has no SIMD by
/// default, but it has 64-bit integers); the lowest flagged byte is always a true match.
fn find_quote_or_backslash(s: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let mut words = s.chunks_exact(8);
    let mut base = 0;
    for word in &mut words {
        let Ok(bytes) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let v = u64::from_le_bytes(bytes);
        let hits = zero_bytes(v ^ (LO * u64::from(b'"'))) | zero_bytes(v ^ (LO * u64::from(b'\\')));
        if hits != 0 {
            return Some(base + (hits.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|p| base + p)
}

/// A key's text: borrowed when it has no escapes, decoded by serde_json otherwise.
fn decode_key(quoted: &[u8]) -> Option<Cow<'_, str>> {
    let inner = quoted.get(1..quoted.len().checked_sub(1)?)?;
    if inner.contains(&b'\\') {
        serde_json::from_slice::<String>(quoted)
            .ok()
            .map(Cow::Owned)
    } else {
        std::str::from_utf8(inner).ok().map(Cow::Borrowed)
    }
}

/// Offset just past the value starting at `i`.
fn value_end(s: &[u8], i: usize) -> Option<usize> {
    match s.get(i)? {
        b'"' => string_end(s, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                j += s
                    .get(j..)?
                    .iter()
                    .position(|&b| matches!(b, b'"' | b'{' | b'[' | b'}' | b']'))?;
                match s.get(j)? {
                    b'"' => {
                        j = string_end(s, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(b) = s.get(j) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(s: &[u8]) -> Option<Vec<(String, String)>> {
        let o = object(s, skip_ws(s, 0))?;
        Some(
            o.members
                .into_iter()
                .map(|m| {
                    let v = String::from_utf8(s[m.value].to_vec()).unwrap();
                    (m.key, v)
                })
                .collect(),
        )
    }

    #[test]
    fn spans_members_with_nested_values_strings_and_escapes() {
        let s = br#" { "a" : 1 , "b\u0022":{"x":["}",{"y":"\"]"}]},"c":"q\\","d":[] ,"e":null}"#;
        let k = keys(s).unwrap();
        assert_eq!(
            k,
            vec![
                ("a".into(), "1".into()),
                ("b\"".into(), r#"{"x":["}",{"y":"\"]"}]}"#.into()),
                ("c".into(), r#""q\\""#.into()),
                ("d".into(), "[]".into()),
                ("e".into(), "null".into()),
            ]
        );
        assert_eq!(keys(b"{}").unwrap(), vec![]);
        assert_eq!(keys(b"{ \n}").unwrap(), vec![]);
    }

    #[test]
    fn rejects_malformed_and_truncated_without_panicking() {
        for bad in [
            &b""[..],
            b"[",
            b"{",
            b"{\"a\"",
            b"{\"a\":",
            b"{\"a\":1",
            b"{\"a\":1,",
            b"{\"a\" 1}",
            b"{a:1}",
            b"{\"a\":{\"b\":1}",
            b"{\"a\":\"\\",
            b"{\"a\":]}",
            b"{\"a\":}",
            b"{\"\xff\":1}",
        ] {
            assert_eq!(keys(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn finds_string_ends_across_blocks() {
        for at in [0, 1, 7, 8, 9, 31, 32, 33, 100, 119] {
            let mut s = vec![b'a'; 120];
            s[at] = b'"';
            assert_eq!(find_quote_or_backslash(&s), Some(at));
            s[at] = b'\\';
            assert_eq!(find_quote_or_backslash(&s), Some(at));
        }
        assert_eq!(find_quote_or_backslash(&[b'a'; 70]), None);
        // Bytes one off the targets (and the borrow the bit trick can cause) are no match.
        let near = [0x21u8, 0x23, 0x5B, 0x5D, 0x00, 0xFF, 0x01, 0xA2, 0xDC, 0x80];
        assert_eq!(find_quote_or_backslash(&near), None);
        let mut s = [0x01u8, 0x00, b'"', 0x22 ^ 0x80, 0, 0, 0, 0, b'\\'];
        assert_eq!(find_quote_or_backslash(&s), Some(2));
        s[2] = b'x';
        assert_eq!(find_quote_or_backslash(&s), Some(8));
        let long = format!(r#"{{"k":"{}\"{}","z":1}}"#, "x".repeat(100), "y".repeat(40));
        let o = object(long.as_bytes(), 0).unwrap();
        assert_eq!(o.members.len(), 2);
    }

    #[test]
    fn deep_nesting_is_iterative() {
        let mut s = b"{\"a\":".to_vec();
        s.extend(std::iter::repeat_n(b'[', 1_000_000));
        s.extend(std::iter::repeat_n(b']', 1_000_000));
        s.push(b'}');
        assert_eq!(keys(&s).unwrap().len(), 1);
    }
}
