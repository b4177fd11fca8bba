//! API keys kept only as SHA-256 digests and compared in constant time.

use sha2::{Digest, Sha256};

/// A SHA-256 digest of an API key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyDigest([u8; 32]);

impl std::fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Digests are not secrets, but keep logs short.
        write!(f, "KeyDigest({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

impl KeyDigest {
    /// Digest of a presented key.
    pub fn of(key: &[u8]) -> Self {
        Self(Sha256::digest(key).into())
    }

    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(hex: &str) -> Option<Self> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
        }
        Some(Self(out))
    }

    /// Lower-case hex form.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Equality whose running time does not depend on where the digests differ.
    pub fn ct_eq(&self, other: &Self) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        // black_box keeps the optimizer from turning the fold into an early-exit compare.
        std::hint::black_box(diff) == 0
    }
}

/// Hex SHA-256 over length-prefixed `parts` (cache keys: no two part lists collide, and no
/// secret appears in the key).
pub fn digest_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    KeyDigest::from_bytes(h.finalize().into()).to_hex()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Finds which of `digests` matches `presented`, comparing against every entry so the time
/// taken does not reveal the position (or existence) of a match.
pub fn find_match(digests: &[KeyDigest], presented: &KeyDigest) -> Option<usize> {
    let mut found = None;
    for (i, d) in digests.iter().enumerate() {
        if d.ct_eq(presented) && found.is_none() {
            found = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_known_vector() {
        // sha256("abc")
        let d = KeyDigest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(KeyDigest::from_hex(&d.to_hex().to_uppercase()), Some(d));
    }

    #[test]
    fn rejects_bad_hex() {
        assert!(KeyDigest::from_hex("abc").is_none());
        assert!(KeyDigest::from_hex(&"g".repeat(64)).is_none());
        assert!(KeyDigest::from_hex(&"é".repeat(32)).is_none());
    }

    #[test]
    fn finds_the_matching_key() {
        let keys = vec![KeyDigest::of(b"one"), KeyDigest::of(b"two")];
        assert_eq!(find_match(&keys, &KeyDigest::of(b"two")), Some(1));
        assert_eq!(find_match(&keys, &KeyDigest::of(b"three")), None);
        assert_eq!(find_match(&[], &KeyDigest::of(b"one")), None);
    }
}
