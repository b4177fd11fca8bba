//! Signatures already verified, so a client that reuses its token pays for the signature check
//! once (RS256 and ES256 verification cost about a millisecond of Wasm CPU per request).
//!
//! Entries are keyed by the SHA-256 of method name and token (a cryptographic digest: a forged
//! token cannot collide with a cached one) and remember which key set verified them, so a
//! rotated JWKS invalidates them. Time-bound claims are re-checked on every hit; an entry lives
//! at most [`MAX_AGE_SECS`]; the cache holds at most [`MAX_ENTRIES`] tokens per worker.

use super::jwt::Claims;
use std::collections::HashMap;

/// Most cached tokens per worker; a full cache is emptied.
pub const MAX_ENTRIES: usize = 4096;
/// Longest an entry is trusted without verifying the signature again.
pub const MAX_AGE_SECS: u64 = 300;

struct Entry {
    claims: Claims,
    key_set: u64,
    verified_at: u64,
}

/// Verified tokens of one worker.
#[derive(Default)]
pub struct JwtCache {
    entries: HashMap<String, Entry>,
}

impl JwtCache {
    /// The claims of a token verified earlier with the same key set, if still fresh.
    pub fn get(&self, digest: &str, key_set: u64, now: u64) -> Option<&Claims> {
        self.entries
            .get(digest)
            .filter(|e| e.key_set == key_set && now.saturating_sub(e.verified_at) < MAX_AGE_SECS)
            .map(|e| &e.claims)
    }

    /// Remembers a verified token.
    pub fn insert(&mut self, digest: String, key_set: u64, now: u64, claims: Claims) {
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        self.entries.insert(
            digest,
            Entry {
                claims,
                key_set,
                verified_at: now,
            },
        );
    }

    /// Cached tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_only_for_the_same_key_set_and_within_the_age() {
        let mut c = JwtCache::default();
        c.insert("d".into(), 1, 100, Claims::new());
        assert!(c.get("d", 1, 100 + MAX_AGE_SECS - 1).is_some());
        assert!(
            c.get("d", 2, 101).is_none(),
            "a rotated key set must verify again"
        );
        assert!(c.get("d", 1, 100 + MAX_AGE_SECS).is_none());
        assert!(c.get("other", 1, 101).is_none());
    }

    #[test]
    fn stays_bounded() {
        let mut c = JwtCache::default();
        for i in 0..MAX_ENTRIES + 10 {
            c.insert(i.to_string(), 1, 0, Claims::new());
        }
        assert!(c.len() <= MAX_ENTRIES);
    }
}
