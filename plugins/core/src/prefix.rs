//! Prefix block hashes: the shared vocabulary between the affinity plugin (which hashes the
//! prompt it holds) and host-shim (which indexes which endpoint holds which blocks).
//!
//! The canonical prompt bytes are cut into fixed-size blocks of `block_size` bytes; only whole
//! blocks are hashed (a partial tail block cannot be a cached engine block either). Hash `i` is
//! xxh64 of block `i` seeded with hash `i-1`, and the chain starts from xxh64 of the model name,
//! so two prompts share hash `i` exactly when they share model and first `i+1` blocks. At most
//! `max_blocks` hashes are produced, which bounds the cost for huge prompts.

use xxhash_rust::xxh64::xxh64;

/// Default block size in bytes: about 64 tokens of English text at ~4 bytes per token.
pub const DEFAULT_BLOCK_SIZE: usize = 256;

/// Default cap on the number of blocks hashed per request.
pub const DEFAULT_MAX_BLOCKS: usize = 256;

/// Parameters of the block hashing. Both sides of a pick must use the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHasher {
    /// Bytes per block (> 0).
    pub block_size: usize,
    /// Most hashes produced for one prompt.
    pub max_blocks: usize,
}

impl Default for BlockHasher {
    fn default() -> Self {
        Self {
            block_size: DEFAULT_BLOCK_SIZE,
            max_blocks: DEFAULT_MAX_BLOCKS,
        }
    }
}

impl BlockHasher {
    /// The seed of the chain for `model`.
    pub fn model_seed(model: &str) -> u64 {
        xxh64(model.as_bytes(), 0)
    }

    /// How many leading prompt bytes the hashes can cover: a reader that only hashes may
    /// drop the rest of a long prompt.
    pub fn window_bytes(&self) -> usize {
        self.block_size.saturating_mul(self.max_blocks)
    }

    /// Chained hashes of the whole blocks of `prompt` for `model`.
    pub fn hashes(&self, model: &str, prompt: &[u8]) -> Vec<u64> {
        if self.block_size == 0 {
            return Vec::new();
        }
        let mut prev = Self::model_seed(model);
        prompt
            .chunks_exact(self.block_size)
            .take(self.max_blocks)
            .map(|block| {
                prev = xxh64(block, prev);
                prev
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(block_size: usize) -> BlockHasher {
        BlockHasher {
            block_size,
            max_blocks: 8,
        }
    }

    #[test]
    fn shared_prefix_shares_leading_hashes_only() {
        let h = hasher(4);
        let a = h.hashes("m", b"aaaabbbbccccdddd");
        let b = h.hashes("m", b"aaaabbbbXcccdddd");
        assert_eq!(a.len(), 4);
        assert_eq!(a[..2], b[..2]);
        // Chaining: a difference in block 2 changes every later hash too.
        assert_ne!(a[2], b[2]);
        assert_ne!(a[3], b[3]);
    }

    #[test]
    fn model_seeds_the_chain() {
        let h = hasher(4);
        assert_ne!(h.hashes("m1", b"aaaa"), h.hashes("m2", b"aaaa"));
    }

    #[test]
    fn partial_tail_is_not_hashed_and_count_is_capped() {
        let h = hasher(4);
        assert_eq!(h.hashes("m", b"aaaabb").len(), 1);
        assert!(h.hashes("m", b"aaa").is_empty());
        assert_eq!(h.hashes("m", &[b'x'; 400]).len(), 8);
        assert!(hasher(0).hashes("m", b"aaaa").is_empty());
    }

    #[test]
    fn the_window_holds_exactly_what_the_hashes_read() {
        let h = hasher(4);
        let long = [b'x'; 400];
        // Hashing only the window gives the same hashes as hashing everything.
        assert_eq!(
            h.hashes("m", &long[..h.window_bytes()]),
            h.hashes("m", &long)
        );
        assert_ne!(
            h.hashes("m", &long[..h.window_bytes() - 1]),
            h.hashes("m", &long)
        );
    }

    #[test]
    fn values_are_stable_across_builds() {
        // Pinned so the plugin (wasm32) and host-shim (native) can never drift apart.
        let h = hasher(4);
        let v = h.hashes("Qwen/Qwen3-0.6B", b"abcdefgh");
        assert_eq!(v, h.hashes("Qwen/Qwen3-0.6B", b"abcdefgh"));
        assert_eq!(v[0], xxh64(b"abcd", xxh64(b"Qwen/Qwen3-0.6B", 0)));
        assert_eq!(v[1], xxh64(b"efgh", v[0]));
    }
}
