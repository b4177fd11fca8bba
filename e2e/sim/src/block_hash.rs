//! Chained block hashes, as vLLM's automatic prefix caching computes them: the hash of block `i`
//! covers its `block_size` token ids *and* the hash of block `i-1`, so equal hashes mean equal
//! whole prefixes. Only full blocks are hashed; a partial tail block is never shared.

use xxhash_rust::xxh64::xxh64;

/// Hash of one full block of tokens.
pub type BlockHash = u64;

/// The seed of every chain: distinct models (or cache salts) never share blocks.
pub fn chain_seed(model: &str) -> BlockHash {
    xxh64(model.as_bytes(), 0x5eed)
}

/// Hashes of every full `block_size` block of `tokens`, chained from `seed`.
///
/// # Panics
/// If `block_size` is 0 (engine configs are validated before use).
pub fn block_hashes(seed: BlockHash, tokens: &[u32], block_size: usize) -> Vec<BlockHash> {
    assert!(block_size > 0, "block_size must be positive");
    let mut prev = seed;
    let mut buf = Vec::with_capacity(block_size * 4);
    tokens
        .chunks_exact(block_size)
        .map(|block| {
            buf.clear();
            buf.extend(block.iter().flat_map(|t| t.to_le_bytes()));
            prev = xxh64(&buf, prev);
            prev
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_prefix_shares_exactly_the_leading_full_blocks() {
        let a: Vec<u32> = (0..40).collect();
        let mut b = a.clone();
        b[20] = 999;
        let ha = block_hashes(chain_seed("m"), &a, 8);
        let hb = block_hashes(chain_seed("m"), &b, 8);
        assert_eq!(ha.len(), 5);
        assert_eq!(ha[..2], hb[..2]);
        assert!(ha[2..].iter().zip(&hb[2..]).all(|(x, y)| x != y));
        // Partial tail blocks are not hashed; other models never match.
        assert_eq!(block_hashes(chain_seed("m"), &a[..15], 8).len(), 1);
        assert_ne!(block_hashes(chain_seed("n"), &a, 8)[0], ha[0]);
    }
}
